//! `--trace` and `--trace-json`: every header and frame in and out of a live connection,
//! decoded as `amqpwire decode` would (credentials masked unless `--show-secrets`), as it
//! happens.
//!
//! The engine hands the trace callback whole headers and frames with their offsets in each
//! direction's stream; each direction of each connection has its own [`Inspector`], which
//! also joins multi-frame deliveries so that the message is shown with its last frame.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use amqpwire::capture::{ConnectionInfo, Direction as CaptureDirection, PcapWriter, WriterOptions};
use amqpwire::codec::DecodeOptions;
use amqpwire::connection::{Direction, TraceFn, TraceItem, TraceRecord};
use amqpwire::frame::{Frame, FrameBody};
use amqpwire::inspect::{
    json::{trace_lines, write_trace_lines},
    render_text, Inspector, Record,
};
use amqpwire::runtime::{EndedFn, SharedTrace, StartedFn, TransportEnd};
use amqpwire::script::record::Recorder;
use amqpwire::types::Performative;

/// The trace options every networked command takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct TraceArgs {
    /// Print each frame in and out as it happens (on standard error): time, direction,
    /// channel, performative and its fields, offsets.
    #[arg(long)]
    pub(crate) trace: bool,
    /// Write each frame in and out as a JSON line (schema: docs/trace-format.md, plus
    /// `direction`, `time` and `connection`) to FILE (`-`: standard output, which then
    /// holds the JSON lines alone: `listening on URL` and a demo's steps go to standard
    /// error; refused where standard output carries data, as `receive`'s messages).
    /// With `--trace` too, both are written.
    #[arg(long, value_name = "FILE")]
    pub(crate) trace_json: Option<String>,
    /// Show credentials (SASL PLAIN passwords, tokens) in the trace instead of masking them.
    #[arg(long)]
    pub(crate) show_secrets: bool,
    /// Record each connection as a script (docs/scripts.md) that replays this side's
    /// peer's counterpart: a client's frames as `send`, the server's as `expect` (for
    /// `serve` and `iothub emulate`, the client is the side recorded). FILE holds the
    /// first connection, FILE-2… the next (before the extension: rec.jsonl, rec-2.jsonl).
    #[arg(long, value_name = "FILE")]
    pub(crate) record: Option<std::path::PathBuf>,
    /// The side `--record` replays: the client (its frames sent, the server's expected:
    /// a script to play against a server with `script --connect`), or the server (its
    /// frames sent, the client's expected: a scripted server for `script --listen`, that
    /// a client can be run against again without the server).
    #[arg(long, value_enum, value_name = "SIDE", default_value = "client", requires = "record")]
    pub(crate) record_side: RecordSide,
    /// Draw every connection's frames as a ladder (a sequence diagram) in FILE, one
    /// self-contained HTML page, written again as frames come (at most four times a
    /// second, each value cut to 4,096 characters; the whole is in --trace-json).
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<std::path::PathBuf>,
    /// Write every connection's plaintext AMQP bytes, both directions, to FILE as a pcapng
    /// capture that Wireshark and tshark decode as AMQP (synthetic TCP on port 5672), even
    /// when the real transport was TLS or WebSocket (each connection's SYN is commented
    /// with its transport and URL); flushed as it goes. A connection ends with a FIN
    /// exchange once both closes have passed, a relayed one when it is over (a reset if a
    /// side reset it), a server's client that goes away when its transport ends, a
    /// client's at the latest when the command ends (or is stopped by SIGINT or SIGTERM).
    #[arg(long, value_name = "FILE")]
    pub(crate) pcap: Option<std::path::PathBuf>,
}

/// The side a recording replays (`--record-side`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum RecordSide {
    /// The client's frames are sent, the server's expected.
    #[default]
    Client,
    /// The server's frames are sent, the client's expected.
    Server,
}

/// The trace options of the demos, whose output is the trace.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct DemoTraceArgs {
    /// Write the trace as JSON lines to FILE (`-`: standard output) instead of text.
    #[arg(long, value_name = "FILE")]
    pub(crate) trace_json: Option<String>,
    /// Show credentials (passwords, token signatures) instead of masking them.
    #[arg(long)]
    pub(crate) show_secrets: bool,
    /// Also write every connection's plaintext AMQP bytes to FILE as a pcapng capture.
    #[arg(long, value_name = "FILE")]
    pub(crate) pcap: Option<std::path::PathBuf>,
}

impl TraceArgs {
    /// Refuses `--trace-json -` for a command whose standard output carries `data`: the
    /// two would interleave.
    pub(crate) fn stdout_free_for(&self, data: &str) -> Result<(), String> {
        match self.trace_json.as_deref() {
            Some("-") => Err(format!(
                "--trace-json -: standard output carries {data}; write the trace to a file"
            )),
            _ => Ok(()),
        }
    }
}

impl DemoTraceArgs {
    /// The demo's tracer: text on standard output unless JSON to a file is asked for.
    pub(crate) fn tracer(&self) -> Result<Arc<Tracer>, String> {
        let args = TraceArgs {
            trace: self.trace_json.is_none(),
            trace_json: self.trace_json.clone(),
            show_secrets: self.show_secrets,
            record: None,
            record_side: RecordSide::Client,
            html: None,
            pcap: self.pcap.clone(),
        };
        Tracer::new(&args, true)?.ok_or_else(|| "no trace".to_owned())
    }
}

/// A step of a demo, on standard output between the frames of its trace (on standard
/// error when standard output carries the JSON trace).
pub(crate) fn say(line: &str) {
    let mut out = super::words();
    let _ = writeln!(out, "\n=== {line}");
    let _ = out.flush();
}

/// One connection's `--record` script, the file it grows in (once opened), and the
/// connection's place in the order connections first sent something.
type Recording = (Recorder, Option<std::fs::File>, u64);

/// Where trace lines go, shared by every connection of a command.
pub(crate) struct Tracer {
    /// `--trace`'s text (standard error; the demos' standard output).
    text: Option<Mutex<Box<dyn Write + Send>>>,
    /// `--trace-json`'s lines.
    json: Option<Mutex<Box<dyn Write + Send>>>,
    show_secrets: bool,
    start: Instant,
    /// Per connection: the inspectors of the incoming and outgoing streams.
    streams: Mutex<HashMap<u64, [Inspector; 2]>>,
    /// Frames are printed (a trace was asked for, not only a recording).
    print: bool,
    /// `--record FILE`: the client side of each connection is recorded for replay.
    record: Option<std::path::PathBuf>,
    /// `--record-side server`: the server's frames are the ones replayed.
    record_server: bool,
    /// The command is a server (`for_server`): its clients' bytes come in.
    server: bool,
    /// Per connection: its script so far and the file it grows in.
    recorders: Mutex<HashMap<u64, Recording>>,
    /// How many connections have been recorded (each recording's file is numbered).
    recorded: std::sync::atomic::AtomicU64,
    /// Recordings numbered by their connections' numbers (a relay's and a server's, which
    /// count from 1 as their traces and captures do), not in the order they began.
    record_by_number: bool,
    /// `--html FILE`: the page, written again off the relay path as lines come.
    html: Option<Arc<LivePage>>,
    /// `--pcap FILE`, and the connections started in it (with their transport and URL).
    pcap: Option<Mutex<(PcapWriter<std::fs::File>, HashSet<u64>)>>,
    /// Per connection whose first `close` has passed: whether the client sent it.
    closes: Mutex<HashMap<u64, bool>>,
    /// Per connection, the real addresses of its client and server, when known (for the
    /// capture's comment on the connection's SYN).
    addresses: Mutex<HashMap<u64, [Option<std::net::SocketAddr>; 2]>>,
    /// [`Tracer::finish`] has run: nothing more is traced, captured or recorded.
    finished: std::sync::atomic::AtomicBool,
    /// How the two directions (inspector 0 and 1) are named in traces, and their arrows:
    /// `in` and `out`, or a relay's `c2s` and `s2c`.
    lanes: [(&'static str, &'static str); 2],
}

impl Drop for Tracer {
    /// A command that ends without [`Tracer::finish`] (an error on its way out) still
    /// leaves its page with every line it saw.
    fn drop(&mut self) {
        if let Some(page) = &self.html {
            page.finish();
        }
    }
}

/// `--html FILE` while the command runs: lines are added as frames pass, and a thread of
/// its own writes the page again at most every [`LivePage::EVERY`], so that neither a
/// long exchange (each write is the whole page) nor a large message holds up relaying.
/// Each write replaces the file at once (a new file renamed over it), so a reader or a
/// killed process never leaves half a page.
pub(crate) struct LivePage {
    path: std::path::PathBuf,
    state: Mutex<PageState>,
    wake: std::sync::Condvar,
    /// Whether a write failed (said once).
    failed: std::sync::atomic::AtomicBool,
    /// The writer thread, joined before the last page is written (so that no earlier
    /// page it was writing can replace the last).
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct PageState {
    /// Each line as the page holds it ([`amqpwire::inspect::html::ladder_item`]), shared
    /// so that the writer takes them with a copy of pointers, not of the text.
    items: Vec<Arc<str>>,
    /// Lines came since the page was last written.
    dirty: bool,
    /// The command ended: the last page is written, and the thread ends.
    done: bool,
}

impl LivePage {
    /// How often the page is written at most.
    const EVERY: std::time::Duration = std::time::Duration::from_millis(250);

    /// The longest text a line of the page keeps of one value (a frame's hex, a large
    /// message's data): the page is for reading, and a 4 MiB message would make it
    /// tens of megabytes. The whole value is in `--trace-json` and `--pcap`.
    const TEXT_KEPT: usize = 4096;

    fn start(path: std::path::PathBuf) -> Arc<Self> {
        let page = Arc::new(Self {
            path,
            state: Mutex::default(),
            wake: std::sync::Condvar::new(),
            failed: std::sync::atomic::AtomicBool::new(false),
            writer: Mutex::new(None),
        });
        let writer = Arc::clone(&page);
        let handle = std::thread::spawn(move || writer.run());
        if let Ok(mut w) = page.writer.lock() {
            *w = Some(handle);
        }
        page
    }

    fn add(&self, lines: impl Iterator<Item = serde_json::Value>) {
        let items: Vec<Arc<str>> = lines
            .filter_map(|mut l| {
                cut_long_text(&mut l, Self::TEXT_KEPT);
                amqpwire::inspect::html::ladder_item(&l).map(Arc::from)
            })
            .collect();
        if items.is_empty() {
            return;
        }
        let Ok(mut state) = self.state.lock() else { return };
        if state.done {
            return;
        }
        state.items.extend(items);
        state.dirty = true;
        self.wake.notify_one();
    }

    /// The writer: waits for lines, writes the page, then lets lines gather for
    /// [`LivePage::EVERY`] before the next write.
    fn run(&self) {
        loop {
            // The lines taken under the lock (pointers), the page made outside it: adding
            // lines never waits for a page to be made.
            let items = {
                let Ok(mut state) = self.state.lock() else { return };
                while !state.dirty && !state.done {
                    state = match self.wake.wait(state) {
                        Ok(s) => s,
                        Err(_) => return,
                    };
                }
                if state.done {
                    return;
                }
                state.dirty = false;
                state.items.clone()
            };
            self.write(&amqpwire::inspect::html::ladder_page("amqpwire: live ladder", &items));
            // Lines gather meanwhile; the command's end cuts the wait short.
            let Ok(state) = self.state.lock() else { return };
            let _ = self.wake.wait_timeout_while(state, Self::EVERY, |s| !s.done);
        }
    }

    /// The command ends: the writer stops, and the last page is written, with every line.
    fn finish(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.done = true;
            self.wake.notify_all();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = writer {
            let _ = w.join();
        }
        let Ok(state) = self.state.lock() else { return };
        let items = state.items.clone();
        drop(state);
        self.write(&amqpwire::inspect::html::ladder_page("amqpwire: live ladder", &items));
    }

    fn write(&self, page: &str) {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".partial");
        let tmp = std::path::PathBuf::from(tmp);
        let written = std::fs::write(&tmp, page).and_then(|()| std::fs::rename(&tmp, &self.path));
        // Said once (a full disk, the folder removed), not at every write.
        if let Err(e) = written {
            if !self.failed.swap(true, std::sync::atomic::Ordering::Relaxed) {
                eprintln!("amqpwire: cannot write the page {}: {e}", self.path.display());
            }
        }
    }
}

/// Cuts every string in `v` longer than `kept` characters to its first `kept`, saying how
/// long it was.
fn cut_long_text(v: &mut serde_json::Value, kept: usize) {
    match v {
        serde_json::Value::String(s) if s.len() > kept => {
            // (More bytes than `kept` may still be no more characters.)
            let Some((end, _)) = s.char_indices().nth(kept) else { return };
            let all = s.chars().count();
            s.truncate(end);
            s.push_str(&format!("… ({all} characters in all: the whole is in --trace-json)"));
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| cut_long_text(x, kept)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| cut_long_text(x, kept)),
        _ => {}
    }
}

/// Where a traced connection goes, or was accepted: its URL (for `--pcap`'s comments),
/// known once the listener is bound for a server.
pub(crate) type Place = Arc<std::sync::OnceLock<String>>;

impl Tracer {
    /// A tracer for `args`, or `None` when tracing is off. `text_to_stdout` sends the text
    /// trace to standard output (the demo, whose output is the trace).
    pub(crate) fn new(args: &TraceArgs, text_to_stdout: bool) -> Result<Option<Arc<Self>>, String> {
        let json: Option<Box<dyn Write + Send>> = match &args.trace_json {
            Some(f) if f == "-" => {
                super::trace_to_stdout();
                Some(Box::new(std::io::stdout()))
            }
            Some(f) => {
                let file = std::fs::File::create(f)
                    .map_err(|e| format!("cannot write the trace to {f}: {e}"))?;
                Some(Box::new(std::io::BufWriter::new(file)))
            }
            None => None,
        };
        let text: Option<Box<dyn Write + Send>> = match args.trace {
            true if text_to_stdout => Some(Box::new(std::io::stdout())),
            true => Some(Box::new(std::io::stderr())),
            false => None,
        };
        let other = args.record.is_some() || args.html.is_some() || args.pcap.is_some();
        // Files written later are checked now, not found unwritable at the first frame.
        if let Some(p) = &args.html {
            std::fs::File::create(p)
                .map_err(|e| format!("cannot write the page to {}: {e}", p.display()))?;
        }
        if let Some(p) = &args.record {
            // A file there is opened, not changed (it is replaced only when a connection
            // has a line to record); none is made and removed.
            let checked = if p.exists() {
                std::fs::OpenOptions::new().append(true).open(p).map(drop)
            } else {
                std::fs::File::create(p).and_then(|_| std::fs::remove_file(p))
            };
            checked.map_err(|e| format!("cannot write the recording {}: {e}", p.display()))?;
        }
        if text.is_none() && json.is_none() && !other {
            return Ok(None);
        }
        Ok(Some(Arc::new(Self {
            text: text.map(Mutex::new),
            json: json.map(Mutex::new),
            show_secrets: args.show_secrets,
            start: Instant::now(),
            streams: Mutex::new(HashMap::new()),
            print: args.trace || args.trace_json.is_some() || args.html.is_some(),
            html: args.html.clone().map(LivePage::start),
            pcap: match &args.pcap {
                Some(p) => {
                    let file = std::fs::File::create(p)
                        .map_err(|e| format!("cannot write the capture to {}: {e}", p.display()))?;
                    // Each file its own initial sequence numbers: captures of two runs
                    // merged with mergecap stay two sets of connections to Wireshark.
                    let seed = {
                        use std::hash::{BuildHasher, Hasher};
                        std::collections::hash_map::RandomState::new().build_hasher().finish()
                    };
                    let options = WriterOptions { seed, ..WriterOptions::default() };
                    let writer = PcapWriter::new(file, options)
                        .map_err(|e| format!("cannot write the capture to {}: {e}", p.display()))?;
                    Some(Mutex::new((writer, HashSet::new())))
                }
                None => None,
            },
            closes: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
            finished: std::sync::atomic::AtomicBool::new(false),
            record: args.record.clone(),
            record_server: args.record_side == RecordSide::Server,
            server: false,
            recorders: Mutex::new(HashMap::new()),
            recorded: std::sync::atomic::AtomicU64::new(0),
            record_by_number: false,
            lanes: IN_OUT,
        })))
    }

    /// [`Tracer::new`] for a relay (`proxy`): its directions are `c2s` and `s2c`.
    pub(crate) fn for_relay(args: &TraceArgs) -> Result<Option<Arc<Self>>, String> {
        let Some(t) = Self::new(args, false)? else { return Ok(None) };
        let mut t = Arc::into_inner(t).ok_or("a new tracer is not shared")?;
        t.lanes = [("c2s", "->"), ("s2c", "<-")];
        t.record_by_number = true;
        Ok(Some(Arc::new(t)))
    }

    /// [`Tracer::new`] for a server: its clients' bytes come in (`--record` records them,
    /// `--pcap` writes them as the client's side).
    pub(crate) fn for_server(args: &TraceArgs) -> Result<Option<Arc<Self>>, String> {
        let Some(t) = Self::new(args, false)? else { return Ok(None) };
        let mut t = Arc::into_inner(t).ok_or("a new tracer is not shared")?;
        t.server = true;
        t.record_by_number = true;
        Ok(Some(Arc::new(t)))
    }

    /// Feeds `--pcap`: `data` that the client (`from_client`) or the server sent on
    /// `connection`, flushed at once so that a killed process keeps its capture.
    /// The connection's first bytes start it with its transport and URL (`place`) in the
    /// SYN's comment, as the proxy's captures do.
    pub(crate) fn capture_bytes(
        &self,
        connection: u64,
        place: Option<&str>,
        from_client: bool,
        data: &[u8],
    ) {
        let Some(pcap) = &self.pcap else { return };
        let Ok(mut guard) = pcap.lock() else { return };
        // Checked under the lock `finish_from` sets it under: bytes that come after it
        // never open a connection again.
        if self.is_finished() {
            return;
        }
        let now = std::time::SystemTime::now();
        self.open_in_capture(&mut guard, connection, place, now);
        let (w, _) = &mut *guard;
        let dir = if from_client {
            CaptureDirection::ClientToServer
        } else {
            CaptureDirection::ServerToClient
        };
        let _ = w.write(connection, dir, data, now);
        let _ = w.flush();
    }

    /// Starts `connection` in `--pcap` now (its SYN), when it is made (accepted, or
    /// relayed to its server) rather than when its first bytes come: a capture shows when
    /// each connection began, and one that never sends anything too.
    pub(crate) fn capture_open(&self, connection: u64, place: Option<&str>) {
        self.capture_open_noting(connection, place, None);
    }

    /// [`Tracer::capture_open`] with `note` in the SYN's comment too (a relay's upstream).
    pub(crate) fn capture_open_noting(
        &self,
        connection: u64,
        place: Option<&str>,
        note: Option<String>,
    ) {
        let Some(pcap) = &self.pcap else { return };
        let Ok(mut guard) = pcap.lock() else { return };
        if self.is_finished() {
            return;
        }
        let now = std::time::SystemTime::now();
        self.open_in_capture_noting(&mut guard, connection, place, note, now);
        let _ = guard.0.flush();
    }

    /// One direction of `connection` closed (its sender's FIN in the capture); the other
    /// may go on sending.
    pub(crate) fn capture_half_close(&self, connection: u64, from_client: bool) {
        let Some(Ok(mut guard)) = self.pcap.as_ref().map(Mutex::lock) else { return };
        let (w, started) = &mut *guard;
        if !started.contains(&connection) {
            return;
        }
        let by = if from_client {
            CaptureDirection::ClientToServer
        } else {
            CaptureDirection::ServerToClient
        };
        let _ = w.half_close(connection, by, std::time::SystemTime::now());
        let _ = w.flush();
    }

    /// The SYN of `connection` with its transport and URL (`place`) and addresses in its
    /// comment, unless it is in the capture already.
    fn open_in_capture(
        &self,
        guard: &mut (PcapWriter<std::fs::File>, HashSet<u64>),
        connection: u64,
        place: Option<&str>,
        now: std::time::SystemTime,
    ) {
        self.open_in_capture_noting(guard, connection, place, None, now);
    }

    fn open_in_capture_noting(
        &self,
        guard: &mut (PcapWriter<std::fs::File>, HashSet<u64>),
        connection: u64,
        place: Option<&str>,
        note: Option<String>,
        now: std::time::SystemTime,
    ) {
        let (w, started) = guard;
        if started.insert(connection) {
            let [client, server] = self
                .addresses
                .lock()
                .ok()
                .and_then(|a| a.get(&connection).copied())
                .unwrap_or_default();
            // Where a client connects (or a server listens), when its URL names an address.
            let at = place
                .and_then(|u| u.parse::<amqpwire::runtime::transport::Endpoint>().ok())
                .and_then(|e| {
                    let ip = e.host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok()?;
                    Some(std::net::SocketAddr::new(ip, e.port))
                });
            let info = ConnectionInfo {
                client,
                server: server.or(at),
                transport: place.and_then(|u| u.split_once("://")).map(|(scheme, _)| {
                    match scheme {
                        "amqp" => "tcp",
                        "amqps" => "tls",
                        other => other,
                    }
                    .to_owned()
                }),
                url: place.map(str::to_owned),
                note,
            };
            let _ = w.open(connection, &info, now);
        }
    }

    /// Feeds `--record`: `data` sent by the client (`from_client`) or by the server.
    pub(crate) fn record_bytes(&self, connection: u64, from_client: bool, data: &[u8]) {
        let Some(path) = &self.record else { return };
        // Sent by the side replayed, or by the other.
        let ours = from_client != self.record_server;
        let Ok(mut all) = self.recorders.lock() else { return };
        // Checked under the lock `finish_from` sets it under (see `capture_bytes`).
        if self.is_finished() {
            return;
        }
        // A relay's or server's recordings are numbered as its connections are (c5's in
        // FILE-5); a client's in the order its connections first sent something.
        let (recorder, file, nth) = all.entry(connection).or_insert_with(|| {
            let nth = match self.record_by_number {
                true => connection.max(1),
                false => self.recorded.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            };
            (Recorder::new(), None, nth)
        });
        if ours {
            recorder.ours(data);
        } else {
            recorder.theirs(data);
        }
        append_recording(path, recorder, file, nth);
    }

    /// Ends the recording of `connection` (if any): what it held back is written.
    fn end_recording(&self, connection: u64) {
        let Some(path) = &self.record else { return };
        let Ok(mut all) = self.recorders.lock() else { return };
        if let Some((mut recorder, mut file, nth)) = all.remove(&connection) {
            recorder.finish();
            append_recording(path, &mut recorder, &mut file, &mut { nth });
        }
    }

    /// The callback for one client connection to `url`.
    pub(crate) fn for_connection(self: &Arc<Self>, connection: u64, url: &str) -> TraceFn {
        let me = Arc::clone(self);
        let url = url.to_owned();
        Box::new(move |r| me.record(connection, Some(&url), r))
    }

    /// The callback for the connections of a listener bound at `place`.
    pub(crate) fn shared(self: &Arc<Self>, place: Place) -> SharedTrace {
        let me = Arc::clone(self);
        Arc::new(move |n, r| me.record(me.shown(n), place.get().map(String::as_str), r))
    }

    /// The number a connection of the runtime's numbering (from 0) is shown by: a
    /// server's clients count from 1, as `proxy` and `decode` of a capture count them, so
    /// that `c1` of a server's trace is connection 1 of its capture.
    fn shown(&self, n: u64) -> u64 {
        if self.server {
            n.saturating_add(1)
        } else {
            n
        }
    }

    /// The real address of `connection`'s client (`client`) or server, for the capture.
    pub(crate) fn set_address(
        &self,
        connection: u64,
        client: bool,
        addr: Option<std::net::SocketAddr>,
    ) {
        if let (Some(addr), Ok(mut all)) = (addr, self.addresses.lock()) {
            all.entry(connection).or_default()[usize::from(!client)] = Some(addr);
        }
    }

    /// For [`ListenOptions::started`](amqpwire::runtime::ListenOptions::started): the
    /// addresses of a listener's client and of the listener's side of the connection, for
    /// the comment its capture starts with.
    pub(crate) fn started(self: &Arc<Self>, place: Place) -> StartedFn {
        let me = Arc::clone(self);
        Arc::new(move |n, client, server| {
            let n = me.shown(n);
            me.set_address(n, true, client);
            me.set_address(n, false, server);
            me.capture_open(n, place.get().map(String::as_str));
        })
    }

    /// For [`ListenOptions::ended`](amqpwire::runtime::ListenOptions::ended): a listener's
    /// connection has ended, so its trace shows what an unfinished frame left, its capture
    /// ends it as its transport did (a FIN exchange started by the side that ended it, or
    /// a reset from the client), and what the tracer kept for it is let go: a server that
    /// runs for days keeps nothing of the connections that came and went (but for the
    /// lines of an `--html` page, which shows them all).
    pub(crate) fn ended(self: &Arc<Self>) -> EndedFn {
        let me = Arc::clone(self);
        Arc::new(move |n, end| {
            let n = me.shown(n);
            me.end_connection(n);
            me.capture_end(n, end != TransportEnd::Closed, end == TransportEnd::Failed);
            me.forget(n);
            // Last: once it is said, the capture holds the end.
            me.note(
                n,
                match end {
                    TransportEnd::Closed => "ended: the server closed the transport",
                    TransportEnd::PeerClosed => "ended: the client closed its side",
                    TransportEnd::Failed => "ended: the transport failed (a reset or an error)",
                },
            );
        })
    }

    /// Writes out what is buffered (the JSON file).
    pub(crate) fn flush(&self) {
        for out in [&self.text, &self.json].into_iter().flatten() {
            if let Ok(mut out) = out.lock() {
                let _ = out.flush();
            }
        }
    }

    /// At the command's end: every connection the capture holds ends with a FIN exchange,
    /// then what is buffered is written out.
    pub(crate) fn finish(&self) {
        self.finish_from(!self.server);
    }

    /// Takes no more bytes from here. Set while holding the locks the writers check it
    /// under (recorders, then the capture: no writer holds both): a writer either went
    /// before, and its connection is ended after, or sees it and writes nothing.
    fn mark_finished(&self) {
        let _recorders = self.recorders.lock();
        let _pcap = self.pcap.as_ref().map(Mutex::lock);
        self.finished.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// A command that serves (`serve`, `iothub emulate`, `proxy`) was stopped by a
    /// signal: as [`Tracer::finish`], the server's side ending each connection still
    /// open. Whatever its connections still send while the process exits is not traced,
    /// captured or recorded: each has ended there.
    pub(crate) fn stop(&self) {
        // Nothing more is traced from here, then the connections still open end: their
        // traces say so last, with what a frame cut short left, as their capture does.
        self.mark_finished();
        let open: Vec<u64> = self
            .streams
            .lock()
            .map(|s| {
                let mut open: Vec<u64> = s.keys().copied().collect();
                open.sort_unstable();
                open
            })
            .unwrap_or_default();
        for connection in open {
            for (index, (dir, arrow)) in self.lanes.iter().enumerate() {
                self.write_lines(connection, dir, arrow, &self.end_stream(connection, index));
            }
            self.note_line(connection, "ended: the command was stopped (a signal) with it open");
        }
        self.finish_from(false);
    }

    /// Ends every recording, ends every connection still open in the capture with a FIN
    /// exchange that the client (`by_client`) or the server starts, writes out what is
    /// buffered, and takes no more bytes.
    fn finish_from(&self, by_client: bool) {
        self.mark_finished();
        let recording: Vec<u64> =
            self.recorders.lock().map(|all| all.keys().copied().collect()).unwrap_or_default();
        for connection in recording {
            self.end_recording(connection);
        }
        if let Some(page) = &self.html {
            page.finish();
        }
        if let Some(Ok(mut guard)) = self.pcap.as_ref().map(Mutex::lock) {
            let (w, started) = &mut *guard;
            let by = if by_client {
                CaptureDirection::ClientToServer
            } else {
                CaptureDirection::ServerToClient
            };
            let now = std::time::SystemTime::now();
            let mut open: Vec<u64> = started.drain().collect();
            open.sort_unstable();
            for connection in open {
                let _ = w.close(connection, by, now);
            }
            let _ = w.flush();
        }
        self.flush();
    }

    /// Runs `served` (a command's serving) until it ends or `stop` (see
    /// [`stop_signal`](super::client::stop_signal)) comes; then the connections still
    /// open end in the capture, every trace and recording is written out (`tracer`), and
    /// the exit status is the signal's.
    pub(crate) async fn serve_until_stopped(
        served: impl std::future::Future<Output = Result<std::process::ExitCode, String>>,
        stop: impl std::future::Future<Output = std::process::ExitCode>,
        tracer: Option<&Arc<Self>>,
    ) -> Result<std::process::ExitCode, String> {
        tokio::select! {
            r = served => r,
            code = stop => {
                if let Some(t) = tracer {
                    t.stop();
                }
                Ok(code)
            }
        }
    }

    /// Whether [`Tracer::finish`] (or [`Tracer::stop`]) has run: later bytes are let go.
    fn is_finished(&self) -> bool {
        self.finished.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn record(&self, connection: u64, place: Option<&str>, r: &TraceRecord<'_>) {
        // A server (`for_server`) hears its clients on In; a client speaks on Out.
        let from_client = (r.direction == Direction::In) == self.server;
        self.bytes(connection, place, r.direction, from_client, r.raw);
        if let TraceItem::Frame(Frame {
            body: FrameBody::Amqp { performative: Performative::Close(_), .. },
            ..
        }) = r.item
        {
            self.close_passed(connection, from_client);
        }
    }

    /// Traces, records and captures `raw`, the next bytes of `connection` in `direction`
    /// (sent by the client or by the server, as `from_client` says).
    pub(crate) fn bytes(
        &self,
        connection: u64,
        place: Option<&str>,
        direction: Direction,
        from_client: bool,
        raw: &[u8],
    ) {
        let (index, dir, arrow) = lane(direction);
        if self.record.is_some() {
            self.record_bytes(connection, from_client, raw);
        }
        self.capture_bytes(connection, place, from_client, raw);
        if self.print {
            let records = self.inspect(connection, index, raw);
            self.write(connection, dir, arrow, &records);
        }
    }

    /// The end of a connection traced with [`Tracer::bytes`]: each direction that stopped
    /// inside a frame shows what there is of it.
    pub(crate) fn end_connection(&self, connection: u64) {
        if self.print {
            for (index, dir, arrow) in [Direction::In, Direction::Out].map(lane) {
                self.write(connection, dir, arrow, &self.end_stream(connection, index));
            }
        }
    }

    /// Runs `raw`, the next bytes of one direction (`index` 0 or 1) of `connection`,
    /// through that direction's inspector; returns what it completed.
    pub(crate) fn inspect(&self, connection: u64, index: usize, raw: &[u8]) -> Vec<Record> {
        let Ok(mut streams) = self.streams.lock() else { return Vec::new() };
        let pair = streams.entry(connection).or_insert_with(|| {
            let new = || Inspector::new(DecodeOptions::LENIENT).redact_secrets(!self.show_secrets);
            [new(), new()]
        });
        let Some(inspector) = pair.get_mut(index) else { return Vec::new() };
        inspector.push(raw);
        std::iter::from_fn(|| inspector.next_record()).collect()
    }

    /// Bytes of one direction of `connection` that are not yet a whole item (see
    /// [`Inspector::buffered`]).
    pub(crate) fn buffered(&self, connection: u64, index: usize) -> usize {
        let Ok(streams) = self.streams.lock() else { return 0 };
        streams.get(&connection).and_then(|p| p.get(index)).map_or(0, Inspector::buffered)
    }

    /// The stream of one direction (`index` 0 or 1) of `connection` has ended: what its
    /// inspector holds of an unfinished item, as a record (none when it ended between
    /// items, or was never inspected).
    pub(crate) fn end_stream(&self, connection: u64, index: usize) -> Vec<Record> {
        let Ok(mut streams) = self.streams.lock() else { return Vec::new() };
        let Some(inspector) = streams.get_mut(&connection).and_then(|p| p.get_mut(index)) else {
            return Vec::new();
        };
        inspector.finish().into_iter().collect()
    }

    /// Whether there is a text trace (which then carries the events too).
    pub(crate) fn has_text(&self) -> bool {
        self.text.is_some()
    }

    /// Whether frames are printed (not only recorded).
    pub(crate) fn prints(&self) -> bool {
        self.print
    }

    /// Forgets a connection's inspectors once it is over, and ends it in the capture with
    /// a FIN exchange (the client's first).
    pub(crate) fn forget(&self, connection: u64) {
        if let Ok(mut streams) = self.streams.lock() {
            streams.remove(&connection);
        }
        if let Ok(mut closes) = self.closes.lock() {
            closes.remove(&connection);
        }
        if let Ok(mut all) = self.addresses.lock() {
            all.remove(&connection);
        }
        // Its script is all in its file (appended as it grew): the file is closed.
        self.end_recording(connection);
        self.capture_end(connection, true, false);
    }

    /// Ends `connection` in the capture (if it is still open there): a FIN exchange that
    /// `from_client`'s side (or the server's) starts, or a reset from that side.
    pub(crate) fn capture_end(&self, connection: u64, from_client: bool, reset: bool) {
        if let Some(Ok(mut guard)) = self.pcap.as_ref().map(Mutex::lock) {
            let (w, started) = &mut *guard;
            if started.remove(&connection) {
                let by = if from_client {
                    CaptureDirection::ClientToServer
                } else {
                    CaptureDirection::ServerToClient
                };
                let now = std::time::SystemTime::now();
                let _ =
                    if reset { w.reset(connection, by, now) } else { w.close(connection, by, now) };
                let _ = w.flush();
            }
        }
    }

    /// A `close` passed on `connection`, sent by the client (`from_client`) or the server:
    /// once both have, the capture ends the connection with a FIN exchange from the side
    /// that closed first, as the TCP connection itself ends after the close exchange
    /// (2.4.3). A server's connections end so while it runs.
    fn close_passed(&self, connection: u64, from_client: bool) {
        if self.pcap.is_none() {
            return;
        }
        let Ok(mut closes) = self.closes.lock() else { return };
        match closes.get(&connection) {
            Some(first) if *first != from_client => {
                let first = *first;
                closes.remove(&connection);
                drop(closes);
                self.capture_end(connection, first, false);
            }
            Some(_) => {}
            None => {
                closes.insert(connection, from_client);
            }
        }
    }

    /// Writes `records` of `connection` in direction `dir` (`in`, `out`, `c2s`, `s2c`),
    /// shown with `arrow` in text, and flushes: a trace stopped by a signal or a crash
    /// keeps every frame written before it (the detach or end that explains a failure).
    pub(crate) fn write(&self, connection: u64, dir: &str, arrow: &str, records: &[Record]) {
        if self.is_finished() {
            return;
        }
        self.write_lines(connection, dir, arrow, records);
    }

    /// [`Tracer::write`], finished or not (the last lines of a stopped command).
    fn write_lines(&self, connection: u64, dir: &str, arrow: &str, records: &[Record]) {
        let time = self.start.elapsed().as_secs_f64();
        if let Some(page) = &self.html {
            page.add(records.iter().flat_map(|rec| trace_lines(rec, dir, time, connection)));
        }
        if self.json.is_some() {
            let mut lines = String::new();
            for rec in records {
                write_trace_lines(rec, dir, time, connection, &mut lines);
            }
            emit(&self.json, &lines);
        }
        if self.text.is_some() {
            let mut text = String::new();
            for rec in records {
                text.push_str(&format!("[{time:9.6}s] c{connection} {arrow} {dir}\n"));
                render_text(rec, &mut text);
            }
            emit(&self.text, &text);
        }
    }

    /// Writes a line about `connection` that is not a frame (a relay's events): a JSON
    /// object of kind `event` in the JSON trace, a line in the text.
    pub(crate) fn note(&self, connection: u64, event: &str) {
        if self.is_finished() {
            return;
        }
        self.note_line(connection, event);
    }

    /// [`Tracer::note`], finished or not.
    fn note_line(&self, connection: u64, event: &str) {
        let time = self.start.elapsed().as_secs_f64();
        if self.json.is_some() {
            let line = serde_json::json!({
                "kind": "event",
                "connection": connection,
                "time": (time * 1e6).round() / 1e6,
                "event": event,
            });
            emit(&self.json, &format!("{line}\n"));
        }
        emit(&self.text, &format!("[{time:9.6}s] c{connection} {event}\n"));
    }
}

/// A direction's inspector index, its name and its arrow in traces.
fn lane(direction: Direction) -> (usize, &'static str, &'static str) {
    let index = match direction {
        Direction::In => 0,
        Direction::Out => 1,
    };
    let (name, arrow) = IN_OUT[index];
    (index, name, arrow)
}

/// The names and arrows of a command's two directions in traces (inspector 0 and 1).
const IN_OUT: [(&str, &str); 2] = [("in", "<-"), ("out", "->")];

/// Writes `text` to `out`, if that output is on, and flushes it.
fn emit(out: &Option<Mutex<Box<dyn Write + Send>>>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Ok(mut out)) = out.as_ref().map(Mutex::lock) {
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Appends what `recorder` has added since it was last asked to the recording's file
/// (`path`, numbered `nth`), made at the first line. A recording that cannot be written
/// is said so once, and given up (`nth` 0).
fn append_recording(
    path: &std::path::Path,
    recorder: &mut Recorder,
    file: &mut Option<std::fs::File>,
    nth: &mut u64,
) {
    let new = recorder.take_new();
    if new.is_empty() || *nth == 0 {
        return;
    }
    if file.is_none() {
        let path = numbered(path, *nth);
        match std::fs::File::create(&path) {
            Ok(f) => *file = Some(f),
            Err(e) => {
                eprintln!("amqpwire: cannot write the recording {}: {e}", path.display());
                *nth = 0;
                return;
            }
        }
    }
    if let Some(f) = file {
        // Appended as it grows: a process stopped by a signal keeps its script.
        if let Err(e) = f.write_all(new.as_bytes()) {
            eprintln!(
                "amqpwire: cannot write the recording {}: {e}",
                numbered(path, *nth).display()
            );
            *nth = 0;
        }
    }
}

/// `FILE` for the first connection, `FILE-N` (before the extension) for the Nth.
fn numbered(path: &std::path::Path, nth: u64) -> std::path::PathBuf {
    if nth <= 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{nth}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{nth}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::cut_long_text;

    #[test]
    fn long_text_is_cut_by_characters_and_says_how_long_it_was() {
        // 3,000 characters of two bytes each: more bytes than kept, not more characters.
        let mut v = serde_json::json!({ "data": "é".repeat(3000), "short": "x" });
        cut_long_text(&mut v, 4096);
        assert_eq!(v["data"].as_str().map(|s| s.chars().count()), Some(3000));
        let mut v = serde_json::json!(["é".repeat(5000)]);
        cut_long_text(&mut v, 4096);
        let cut = v[0].as_str().unwrap_or_default();
        assert!(cut.starts_with(&"é".repeat(4096)) && !cut.starts_with(&"é".repeat(4097)));
        assert!(cut.ends_with("… (5000 characters in all: the whole is in --trace-json)"), "{cut}");
    }
}
