//! `amqpwire decode`: annotate a captured byte stream, or the AMQP connections of a pcap or
//! pcapng capture.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use amqpwire::capture::{
    event_json, event_text, is_capture, Block, CaptureDecoder, CaptureEvent, CaptureStream,
    EventKind,
};
use amqpwire::codec::DecodeOptions;
use amqpwire::inspect::{
    json::{record_json, write_record_json},
    looks_like_hex, parse_hex, render_text, Inspector, Record,
};

/// Arguments of `amqpwire decode`.
#[derive(clap::Args, Debug)]
pub(crate) struct DecodeArgs {
    /// A file holding the stream, as raw bytes or as hex text (spaces and newlines
    /// allowed), or a pcap or pcapng capture (recognised by its magic number: every AMQP
    /// connection in it is decoded, over TCP or WebSocket); `-` or nothing reads standard
    /// input.
    file: Option<PathBuf>,
    /// The stream as hex on the command line instead of a file.
    #[arg(long, value_name = "HEX", conflicts_with = "file")]
    hex: Option<String>,
    /// One JSON object per line (schema: docs/trace-format.md) instead of the text tree.
    #[arg(long)]
    json: bool,
    /// Refuse everything the spec forbids (an error per offending frame).
    #[arg(long, conflicts_with = "lenient")]
    strict: bool,
    /// Accept deviations real peers are known to send, reporting each as a warning
    /// (the default).
    #[arg(long)]
    lenient: bool,
    /// Show credentials (SASL PLAIN passwords, SAS token signatures) instead of masking
    /// them with `*`.
    #[arg(long)]
    show_secrets: bool,
    /// Also write a ladder view to OUT: one self-contained HTML page drawing every frame
    /// as an arrow between the two sides. The input may also be a JSON trace
    /// (`--trace-json` of the live commands), both directions of every connection.
    #[arg(long, value_name = "OUT")]
    html: Option<PathBuf>,
    /// Decrypt the TLS connections of a capture (TLS 1.3, and TLS 1.2 with AES-GCM or
    /// ChaCha20-Poly1305) with this key log: the NSS format that SSLKEYLOGFILE makes
    /// browsers, curl, OpenSSL, Node, rustls and `amqpwire proxy` write.
    #[arg(long, value_name = "FILE")]
    keylog: Option<PathBuf>,
}

pub(crate) fn run(args: &DecodeArgs) -> Result<ExitCode, String> {
    let opts = if args.strict { DecodeOptions::STRICT } else { DecodeOptions::LENIENT };
    if let Some(h) = &args.hex {
        let bytes = parse_hex(h.as_bytes())?;
        let input = Input { source: Box::new(&bytes[..]), name: "--hex".into(), live: false };
        return decode(args, opts, input);
    }
    let mut input = Input::open(args)?;
    // What the input is, from its first bytes: a capture and a byte stream are read a
    // piece at a time; hex text and a JSON trace are read whole.
    let head = input.first(64)?;
    let hex_text =
        !head.is_empty() && head.iter().all(|c| c.is_ascii_hexdigit() || c.is_ascii_whitespace());
    let json = args.html.is_some() && looks_like_json(&head);
    if !hex_text && !json {
        // Hex text with a stray character or two in its first bytes (a paste gone wrong)
        // is read as bytes, which then look like some text protocol: say why.
        if almost_hex(&head) {
            if let Err(why) = parse_hex(&head) {
                eprintln!("amqpwire: read as bytes, not as hex text: {why}");
            }
        }
        input.source = Box::new(std::io::Cursor::new(head).chain(input.source));
        return decode(args, opts, input);
    }
    let mut all = head;
    input.read_rest(&mut all)?;
    // (White space alone in the first bytes: what follows it decides.)
    if let (Some(out), true) = (&args.html, looks_like_json(&all)) {
        // A JSON trace: its lines already say direction, connection and time.
        let text = String::from_utf8_lossy(&all);
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| format!("line {} of the trace: {e}", i + 1))
            })
            .collect::<Result<Vec<serde_json::Value>, String>>()?;
        write_html(out, &lines, args)?;
        return Ok(ExitCode::SUCCESS);
    }
    let bytes = if looks_like_hex(&all) {
        parse_hex(&all)?
    } else {
        // Hex text whose first bytes were hex and whose later ones have a stray character:
        // read as bytes, as above, and said why.
        if almost_hex(&all) {
            if let Err(why) = parse_hex(&all) {
                eprintln!("amqpwire: read as bytes, not as hex text: {why}");
            }
        }
        all
    };
    decode(args, opts, Input { source: Box::new(&bytes[..]), name: input.name, live: false })
}

/// The input, read as it is decoded.
struct Input<'a> {
    source: Box<dyn Read + 'a>,
    /// What to call it in an error: the file's name, or standard input.
    name: String,
    /// Whether it is standard input, decoded as the bytes arrive (a pipe from a live
    /// capture) rather than in whole pieces.
    live: bool,
}

/// The most of a byte stream decoded at a time.
const PIECE: usize = 1 << 20;

impl Input<'_> {
    fn open(args: &DecodeArgs) -> Result<Self, String> {
        Ok(match &args.file {
            Some(p) if p.as_os_str() != "-" => Input {
                source: Box::new(
                    std::fs::File::open(p)
                        .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
                ),
                name: p.display().to_string(),
                live: false,
            },
            _ => Input {
                source: Box::new(std::io::stdin()),
                name: "standard input".into(),
                live: true,
            },
        })
    }

    /// The first `n` bytes (fewer at the end), to tell what the input is. From standard
    /// input, fewer as soon as a byte that is neither text nor white space has come (the
    /// input is bytes, not hex text or JSON): a live stream whose client sent its header
    /// and sasl-init, under `n` bytes, and waits is decoded at once.
    fn first(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut head = vec![0; n];
        let mut len = 0;
        while len < n {
            match self.source.read(&mut head[len..]) {
                Ok(0) => break,
                Ok(k) => len += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read {}: {e}", self.name)),
            }
            let binary = |b: &u8| !b.is_ascii_graphic() && !b.is_ascii_whitespace();
            if self.live && head[..len].iter().any(binary) {
                break;
            }
        }
        head.truncate(len);
        Ok(head)
    }

    /// The next piece, read into `buf` (one buffer for every piece), empty at the end:
    /// from standard input what one read gives (up to `buf`'s size), so that a live capture is decoded as it comes; from a file
    /// all of `buf`, less only at its end, so that its decoding is the same each time
    /// (what follows a fatal framing error is cut into `undecoded` lines where the
    /// pieces end).
    fn piece<'b>(&mut self, buf: &'b mut [u8]) -> Result<&'b [u8], String> {
        let mut n = 0;
        while n < buf.len() {
            match self.source.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read {}: {e}", self.name)),
            }
            if self.live {
                break;
            }
        }
        Ok(&buf[..n])
    }

    fn read_rest(&mut self, into: &mut Vec<u8>) -> Result<(), String> {
        self.source
            .read_to_end(into)
            .map(drop)
            .map_err(|e| format!("cannot read {}: {e}", self.name))
    }
}

/// Decodes the input: a capture (by its magic number) or a byte stream.
fn decode(
    args: &DecodeArgs,
    opts: DecodeOptions,
    mut input: Input<'_>,
) -> Result<ExitCode, String> {
    let head = input.first(4)?;
    let capture = is_capture(&head);
    input.source = Box::new(std::io::Cursor::new(head).chain(input.source));
    if capture {
        return run_capture(args, opts, input);
    }
    if let Some(path) = &args.keylog {
        // A byte stream is already plaintext: say the key log is not used, rather than
        // let a missing or mistyped file pass unnoticed.
        return Err(format!(
            "--keylog {} applies to pcap and pcapng captures; this input is a byte stream",
            path.display()
        ));
    }
    let mut inspector = Inspector::new(opts).redact_secrets(!args.show_secrets);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut errors = 0usize;
    let mut frames = 0usize;
    let mut total = 0usize;
    let mut html = Vec::new();
    let mut text = String::new();
    let mut shown = true;
    let mut write = |rec: &Record| -> bool {
        errors += rec.errors();
        frames += usize::from(matches!(rec, Record::Frame(_)));
        text.clear();
        if args.json {
            write_record_json(rec, &mut text);
        } else {
            render_text(rec, &mut text);
        }
        if args.html.is_some() {
            html.extend(record_json(rec));
        }
        // A reader that went away (a closed pipe) stops the decoding quietly, unless the
        // page is still to be drawn.
        shown = shown && out.write_all(text.as_bytes()).is_ok();
        shown || args.html.is_some()
    };
    // One piece at a time: what is held is the piece and the frame it ends inside.
    let mut buf = vec![0; PIECE];
    loop {
        let piece = input.piece(&mut buf)?;
        if piece.is_empty() {
            break;
        }
        total += piece.len();
        inspector.push(piece);
        while let Some(r) = inspector.next_record() {
            if !write(&r) {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    if let Some(r) = inspector.finish() {
        if !write(&r) {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _ = out.flush();
    if let Some(path) = &args.html {
        write_html(path, &html, args)?;
    }
    if errors > 0 {
        eprintln!("amqpwire: {total} bytes, {frames} frames, {errors} errors");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Decodes a pcap or pcapng capture: every AMQP connection, both directions interleaved in
/// capture order, each event printed as soon as its packet is read (and, with `--html`,
/// drawn: records as they are, the capture's own events as notes). The capture is read a
/// block at a time ([`CaptureStream`]), so its size does not matter.
fn run_capture(
    args: &DecodeArgs,
    opts: DecodeOptions,
    input: Input<'_>,
) -> Result<ExitCode, String> {
    let mut decoder = CaptureDecoder::new(opts).redact_secrets(!args.show_secrets);
    if let Some(path) = &args.keylog {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let keys = amqpwire::capture::tls::KeyLog::parse(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        decoder = decoder.with_keylog(keys);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut errors = 0usize;
    let mut frames = 0usize;
    let mut html = Vec::new();
    let mut shown = true;
    let mut write = |decoder: &mut CaptureDecoder, start: Duration| -> bool {
        while let Some(ev) = decoder.next_event() {
            errors += ev.errors();
            frames += usize::from(matches!(ev.kind, EventKind::Record(Record::Frame(_))));
            if args.html.is_some() {
                html.extend(ladder_lines(&ev, start));
            }
            // A reader that went away (a closed pipe) stops the decoding quietly, unless
            // the page is still to be drawn.
            shown = shown && out.write_all(render(&ev, start, args.json).as_bytes()).is_ok();
            if !shown && args.html.is_none() {
                return false;
            }
        }
        true
    };
    // Times count from the first packet read, as Wireshark shows them: what comes before
    // it (the file's sections, errors) waits for it, up to a bound (a capture whose
    // packets are all damaged is shown as it is read, its times from the epoch).
    let mut start = None;
    let mut waiting = 0u32;
    match CaptureStream::new(input.source) {
        Ok(mut stream) => {
            while let Some(block) = stream.next_block() {
                if let (None, Ok(Block::Packet(p))) = (start, &block) {
                    start = Some(p.time);
                }
                waiting += 1;
                if start.is_none() && waiting > 4096 {
                    start = Some(Duration::ZERO);
                }
                decoder.push_block(block);
                if let Some(start) = start {
                    if !write(&mut decoder, start) {
                        // The reader went away (a closed pipe): stop quietly.
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
        }
        Err(e) => decoder.push_block(Err(e)),
    }
    decoder.finish();
    if !write(&mut decoder, start.unwrap_or(Duration::ZERO)) {
        return Ok(ExitCode::SUCCESS);
    }
    let _ = out.flush();
    if let Some(path) = &args.html {
        write_html(path, &html, args)?;
    }
    let s = decoder.stats();
    let found = s.amqp + s.websocket;
    if errors > 0 || found + s.tls == 0 {
        eprintln!(
            "amqpwire: capture of {} packets: {found} AMQP connections ({} over WebSocket), \
             {} in TLS, {} other TCP connections skipped; {frames} frames, {errors} errors",
            s.packets, s.websocket, s.tls, s.skipped
        );
    }
    Ok(if errors > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The lines the ladder view draws for a capture event: a record's JSON lines, or an
/// `event` line (a note) with the text of a connection, gap, WebSocket or TCP event.
fn ladder_lines(ev: &CaptureEvent, start: Duration) -> Vec<serde_json::Value> {
    let mut lines = event_json(ev, start);
    if matches!(ev.kind, EventKind::Record(_) | EventKind::Error(_) | EventKind::Section(_)) {
        return lines;
    }
    let mut text = String::new();
    event_text(ev, start, &mut text);
    // The text's first line, without its "[time] cN -> c2s (packet N)" head.
    let first = text.lines().next().unwrap_or_default();
    let note = first.split_once(") ").map_or(first, |(_, rest)| rest);
    for line in &mut lines {
        if let Some(o) = line.as_object_mut() {
            o.insert("kind".into(), "event".into());
            o.insert("event".into(), note.trim().into());
        }
    }
    lines
}

fn render(ev: &CaptureEvent, start: Duration, json: bool) -> String {
    if json {
        event_json(ev, start).iter().map(|j| j.to_string() + "\n").collect()
    } else {
        let mut s = String::new();
        event_text(ev, start, &mut s);
        s
    }
}

/// Whether the input is JSON lines (a trace) rather than bytes or hex.
fn looks_like_json(input: &[u8]) -> bool {
    input.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Writes the ladder view of `lines` to `path`.
fn write_html(
    path: &std::path::Path,
    lines: &[serde_json::Value],
    args: &DecodeArgs,
) -> Result<(), String> {
    let title = match &args.file {
        Some(f) if f.as_os_str() != "-" => format!("amqpwire: {}", f.display()),
        _ => "amqpwire: ladder".to_owned(),
    };
    std::fs::write(path, amqpwire::inspect::html::ladder_html(&title, lines))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Whether `text` is hex text but for a few characters: printable ASCII and white space,
/// at least 16 hex digits, and nine in ten of the other characters hex digits.
fn almost_hex(text: &[u8]) -> bool {
    let printable = text.iter().all(|c| c.is_ascii_graphic() || c.is_ascii_whitespace());
    let shown = text.iter().filter(|c| !c.is_ascii_whitespace()).count();
    let digits = text.iter().filter(|c| c.is_ascii_hexdigit()).count();
    printable && digits >= 16 && digits * 10 >= shown * 9
}
