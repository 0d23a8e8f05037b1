//! `amqpwire send` and `amqpwire receive`: a client on any URL, with progress on a
//! terminal, a summary line at the end, and the trace if asked.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amqpwire::codec::Value;
use amqpwire::inspect::hex;
use amqpwire::message::{AnnotationMap, Message};
use amqpwire::runtime::transport::{ClientTlsConfig, Endpoint};
use amqpwire::runtime::{ConnectOptions, Connection, Error, Transaction};
use amqpwire::types::DeliveryState;
use bytes::Bytes;

use super::trace::{TraceArgs, Tracer};

/// Arguments of `amqpwire send`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct SendArgs {
    /// Where to connect: amqp://, amqps://, ws:// or wss:// (user:password@ for SASL PLAIN).
    url: String,
    /// The address (queue, topic, node) to send to.
    #[arg(long, value_name = "ADDR")]
    to: String,
    /// The message body, as text.
    #[arg(long, conflicts_with_all = ["body_file", "size"])]
    body: Option<String>,
    /// Read the body from a file (`-`: standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "size")]
    body_file: Option<PathBuf>,
    /// A body of this many bytes (a repeating pattern), for load and large messages.
    #[arg(long, value_name = "BYTES")]
    size: Option<usize>,
    /// How many messages to send.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Send pre-settled (at most once: no outcomes awaited).
    #[arg(long)]
    settled: bool,
    /// An application property (repeatable); the value is a string.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Unsettled messages in flight at once.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Send the messages in one transaction (part 4) on the peer's coordinator, then commit
    /// it or roll it back; each message waits for its answer before the next goes.
    #[arg(long, value_name = "END", value_enum, conflicts_with = "settled")]
    transaction: Option<TxnEnd>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    trace: TraceArgs,
}

/// Arguments of `amqpwire receive`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ReceiveArgs {
    /// Where to connect: amqp://, amqps://, ws:// or wss:// (user:password@ for SASL PLAIN).
    url: String,
    /// The address to receive from.
    #[arg(long, value_name = "ADDR")]
    from: String,
    /// Stop after this many messages (default: until the time-out).
    #[arg(long)]
    count: Option<u64>,
    /// Stop when no message has come for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    timeout: Duration,
    /// One JSON object per message on standard output, instead of the body as text.
    #[arg(long)]
    json: bool,
    /// The credit window kept open (never more than the messages still wanted with
    /// --count; fewer for large messages, whose bytes queued stay under 2 MiB).
    #[arg(long, default_value_t = 1000)]
    credit: u32,
    /// Accept the messages in one transaction (part 4) on the peer's coordinator, then
    /// commit it (they are consumed) or roll it back (the peer keeps them).
    #[arg(long, value_name = "END", value_enum)]
    transaction: Option<TxnEnd>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    trace: TraceArgs,
}

/// How `--transaction` ends the transaction.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnEnd {
    /// Commit: the work takes effect.
    Commit,
    /// Roll back: the work is undone.
    Rollback,
}

/// Declares the transaction `--transaction` asks for, if it asks for one.
async fn declare(
    session: &amqpwire::runtime::Session,
    end: Option<TxnEnd>,
) -> Result<Option<Transaction>, String> {
    if end.is_none() {
        return Ok(None);
    }
    let ctl = session.coordinator().await.map_err(|e| format!("transaction controller: {e}"))?;
    let txn = ctl.declare().await.map_err(|e| format!("declare: {e}"))?;
    eprintln!("amqpwire: transaction {} declared", hex(txn.id()));
    Ok(Some(txn))
}

/// Commits or rolls back what `declare` made.
async fn discharge(txn: Option<Transaction>, end: Option<TxnEnd>) -> Result<(), String> {
    let Some(txn) = txn else { return Ok(()) };
    let id = hex(txn.id());
    let (r, done) = match end {
        Some(TxnEnd::Rollback) => (txn.rollback().await, "rolled back"),
        _ => (txn.commit().await, "committed"),
    };
    r.map_err(|e| format!("transaction {id}: {e}"))?;
    eprintln!("amqpwire: transaction {id} {done}");
    Ok(())
}

/// TLS options of the client commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct TlsArgs {
    /// Also trust the CA certificates in this PEM file (amqps://, wss://).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// A client certificate (PEM) for TLS, with --key (SASL EXTERNAL uses its identity).
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
}

impl TlsArgs {
    fn config(&self) -> Result<ClientTlsConfig, String> {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            tls = tls.with_ca_file(ca).map_err(|e| e.to_string())?;
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls.with_client_cert_files(cert, key).map_err(|e| e.to_string())?;
        }
        Ok(tls)
    }
}

/// Connects as the client commands do: the URL, TLS options and the trace.
pub(crate) async fn connect(
    url: &str,
    tls: &TlsArgs,
    tracer: Option<&Arc<Tracer>>,
    connection: u64,
) -> Result<Connection, String> {
    let endpoint = Endpoint::parse(url).map_err(|e| format!("bad URL {url:?}: {e}"))?;
    let options = ConnectOptions {
        tls: tls.config()?,
        // The endpoint as it prints, with any password in the URL masked.
        trace: tracer.map(|t| t.for_connection(connection, &endpoint.to_string())),
        ..ConnectOptions::default()
    };
    Connection::connect_with(&endpoint, options)
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))
}

/// Progress on a terminal: a line rewritten at most twice a second.
struct Progress {
    on: bool,
    start: Instant,
    last: Instant,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Self { on: std::io::stderr().is_terminal(), start: now, last: now }
    }

    fn tick(&mut self, verb: &str, n: u64) {
        if self.on && self.last.elapsed() >= Duration::from_millis(500) {
            self.last = Instant::now();
            let rate = n as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            eprint!("\r{verb} {n} messages ({rate:.0} msg/s)   ");
        }
    }

    fn summary(&self, verb: &str, n: u64, bytes: u64, outcomes: &BTreeMap<&'static str, u64>) {
        if self.on {
            eprint!("\r");
        }
        let secs = self.start.elapsed().as_secs_f64();
        let rate = n as f64 / secs.max(1e-9);
        let mut line =
            format!("{verb} {n} messages, {bytes} bytes in {secs:.3} s ({rate:.0} msg/s)");
        if !outcomes.is_empty() {
            let parts: Vec<_> = outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
            line.push_str(&format!("; outcomes: {}", parts.join(", ")));
        }
        eprintln!("{line}");
    }
}

fn body(args: &SendArgs, i: u64) -> Result<Bytes, String> {
    if let Some(b) = &args.body {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Some(n) = args.size {
        return Ok((0..n).map(|j| b"amqpwire "[j % 9]).collect::<Vec<u8>>().into());
    }
    if let Some(f) = &args.body_file {
        return read_body_file(f);
    }
    Ok(Bytes::from(format!("message {i}")))
}

/// A message body from a file, or standard input for `-`.
pub(crate) fn read_body_file(f: &std::path::Path) -> Result<Bytes, String> {
    let mut v = Vec::new();
    if f.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
    } else {
        v = std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    }
    Ok(v.into())
}

/// What `send` and `receive` count as a message's bytes in their summaries: its body's
/// (data sections joined, or a string value's UTF-8; 0 for other bodies), the same on
/// both sides of a transfer.
fn body_len(m: &Message) -> u64 {
    m.body.bytes().map_or(0, |b| b.len() as u64)
}

/// The body as text (lossy), or its debug form when it is not bytes or a string.
pub(crate) fn body_text(m: &Message) -> String {
    match m.body.bytes() {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => format!("{:?}", m.body),
    }
}

/// A number of seconds (fractions allowed) as a duration: `--timeout` and the like.
pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?}: give 0 to 10^18 seconds"))
}

/// `--property KEY=VALUE` arguments as pairs.
pub(crate) fn properties(args: &[String]) -> Result<Vec<(String, String)>, String> {
    args.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("--property {p:?}: write KEY=VALUE"))
        })
        .collect()
}

pub(crate) fn run_send(args: &SendArgs) -> Result<std::process::ExitCode, String> {
    let args = args.clone();
    one_connection(async move { send(&args).await })
}

pub(crate) fn run_receive(args: &ReceiveArgs) -> Result<std::process::ExitCode, String> {
    let args = args.clone();
    one_connection(async move { receive(&args).await })
}

/// Runs a command that drives one connection: on one worker thread unless `--threads`
/// says otherwise, and as a task on the runtime's worker rather than on the thread that
/// waits for it. The connection's driver is a task there too, so the command handing it
/// messages and taking their outcomes never wakes a thread parked elsewhere; measured with
/// `amqpwire serve` on 2 cores, one thread sends unsettled messages about 1.5 times as
/// fast as one per core did (docs/performance.md).
pub(crate) fn one_connection<T: Send + 'static>(
    command: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    let rt = runtime_with(1)?;
    rt.block_on(rt.spawn(command)).map_err(|e| format!("the command failed: {e}"))?
}

/// Worker threads of [`runtime`], from `--threads` (`None`: one per core).
static THREADS: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

pub(crate) fn set_threads(n: Option<usize>) {
    let _ = THREADS.set(n);
}

/// The runtime of the networked commands: sized to the machine (one worker thread per
/// core) unless `--threads` says otherwise, so that `serve`, `iothub emulate` and `proxy`
/// spread their connections over every core.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    runtime_with(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
}

/// A runtime of `threads` worker threads unless `--threads` says otherwise.
fn runtime_with(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let threads = THREADS.get().copied().flatten().unwrap_or(threads).max(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

async fn send(args: &SendArgs) -> Result<std::process::ExitCode, String> {
    let tracer = Tracer::new(&args.trace, false)?;
    let props = properties(&args.properties)?;
    // The body is read once (a file or standard input cannot be read twice).
    let fixed = if args.body.is_some() || args.size.is_some() || args.body_file.is_some() {
        Some(body(args, 0)?)
    } else {
        None
    };
    let conn = connect(&args.url, &args.tls, tracer.as_ref(), 1).await?;
    let result = send_on(&conn, args, fixed, &props).await;
    finish(&conn, tracer.as_deref(), result).await
}

/// Closes the connection gracefully whatever `result` is, writes out the trace, then
/// reports the command's own failure first and a failed close after it.
async fn finish(
    conn: &Connection,
    tracer: Option<&Tracer>,
    result: Result<std::process::ExitCode, String>,
) -> Result<std::process::ExitCode, String> {
    let closed = conn.close(None).await;
    if let Some(t) = tracer {
        t.finish();
    }
    let code = result?;
    closed.map_err(|e| format!("closing: {e}"))?;
    Ok(code)
}

async fn send_on(
    conn: &Connection,
    args: &SendArgs,
    fixed: Option<Bytes>,
    props: &[(String, String)],
) -> Result<std::process::ExitCode, String> {
    let session = conn.begin_session().await.map_err(|e| e.to_string())?;
    let sender = session.sender("amqpwire-send", &args.to).await.map_err(|e| e.to_string())?;
    let txn = declare(&session, args.transaction).await?;
    let mut progress = Progress::new();
    let mut tally = Tally::default();
    let mut in_flight = std::collections::VecDeque::new();
    let mut bytes = 0u64;
    // A failure says what is known of every message: nothing is lost from the user's view.
    let lost = |e: Error, tally: &Tally, in_flight: usize, sent: u64| {
        format!("{e}\n{}", tally.account(in_flight, args.count - sent, args.settled))
    };
    for i in 0..args.count {
        let mut m = Message::with_data(match &fixed {
            Some(b) => b.clone(),
            None => body(args, i)?,
        });
        if !props.is_empty() {
            let pairs =
                props.iter().map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())));
            m.application_properties = Some(AnnotationMap::from_pairs(pairs));
        }
        bytes += body_len(&m);
        if let Some(txn) = &txn {
            let outcome = sender.send_in(txn, &m).await;
            tally.add(outcome).map_err(|e| lost(e, &tally, 1, i + 1))?;
        } else if args.settled {
            sender.send_settled(&m).await.map_err(|e| lost(e, &tally, 0, i))?;
            tally.settled += 1;
        } else {
            let pending = sender.send_pipelined(&m).await;
            in_flight.push_back(pending.map_err(|e| lost(e, &tally, in_flight.len(), i))?);
            while in_flight.len() >= args.window.max(1) {
                if let Some(p) = in_flight.pop_front() {
                    let n = in_flight.len() + 1;
                    tally.add(p.await).map_err(|e| lost(e, &tally, n, i + 1))?;
                }
            }
        }
        progress.tick("sent", i + 1);
    }
    while let Some(p) = in_flight.pop_front() {
        let n = in_flight.len() + 1;
        tally.add(p.await).map_err(|e| lost(e, &tally, n, args.count))?;
    }
    discharge(txn, args.transaction).await?;
    progress.summary("sent", args.count, bytes, &tally.outcomes);
    let failed = tally.outcomes.iter().any(|(name, _)| *name != "accepted");
    Ok(if failed { std::process::ExitCode::from(1) } else { std::process::ExitCode::SUCCESS })
}

/// What `send` knows of its messages' fate.
#[derive(Default)]
struct Tally {
    /// Outcomes by name (inside `transactional-state` for transactional sends).
    outcomes: BTreeMap<&'static str, u64>,
    /// Sent pre-settled.
    settled: u64,
}

impl Tally {
    fn add(&mut self, outcome: Result<DeliveryState, Error>) -> Result<(), Error> {
        let state = outcome?;
        // In a transaction the outcome comes inside transactional-state (4.4.1).
        let outcome = match &state {
            DeliveryState::TransactionalState(t) => t.outcome.as_deref().unwrap_or(&state),
            other => other,
        };
        *self.outcomes.entry(outcome.name()).or_insert(0) += 1;
        Ok(())
    }

    /// Every message accounted for, after a failure.
    fn account(&self, in_flight: usize, never_sent: u64, settled_mode: bool) -> String {
        let mut parts: Vec<String> =
            self.outcomes.iter().map(|(name, n)| format!("{n} {name}")).collect();
        if settled_mode {
            parts.push(format!("{} sent pre-settled (no outcome to know)", self.settled));
        }
        parts.push(format!(
            "{in_flight} in flight with no outcome (they may or may not have arrived)"
        ));
        parts.push(format!("{never_sent} never sent"));
        format!("amqpwire: of the messages: {}", parts.join(", "))
    }
}

async fn receive(args: &ReceiveArgs) -> Result<std::process::ExitCode, String> {
    args.trace.stdout_free_for("the messages received")?;
    let tracer = Tracer::new(&args.trace, false)?;
    let conn = connect(&args.url, &args.tls, tracer.as_ref(), 1).await?;
    let result = receive_on(&conn, args).await;
    finish(&conn, tracer.as_deref(), result).await
}

async fn receive_on(
    conn: &Connection,
    args: &ReceiveArgs,
) -> Result<std::process::ExitCode, String> {
    let session = conn.begin_session().await.map_err(|e| e.to_string())?;
    // With --count, credit is granted by hand and never beyond the messages still wanted:
    // a broker would otherwise send more than are taken.
    let window = if args.count.is_some() { 0 } else { args.credit.max(1) };
    let rx = session
        .receiver("amqpwire-receive", &args.from, window)
        .await
        .map_err(|e| e.to_string())?;
    // Granted against the deliveries that came (taken, queued or under way), not against
    // those written out: the ones queued while a line is written are never granted again.
    let most = args.credit.clamp(1, i32::MAX as u32);
    if let Some(count) = args.count {
        rx.set_credit_for(count, most).map_err(|e| e.to_string())?;
    }
    let txn = declare(&session, args.transaction).await?;
    let wait = args.timeout;
    let mut progress = Progress::new();
    let (mut n, mut bytes) = (0u64, 0u64);
    // Lines are written in batches: one write per message cost the client a third of its
    // time. A message is accepted only once its line is written (a batch, flushed
    // whenever no further message is waiting or 64 KiB are held): messages whose lines
    // could not be written (the reader of `| head -1` has gone) are released, not lost.
    // (Lines a pipe took before its reader went are taken: `--count` takes exactly N.)
    let mut batch = Batch::default();
    let mut gone = false;
    // A reader that goes while nothing comes (`| head -1` after its line) ends the wait at
    // once, not after --timeout.
    let mut reader_gone = std::pin::pin!(stdout_reader_gone());
    let lost = |e: Error, n: u64| format!("{e} (after {n} messages received and accepted)");
    while args.count.is_none_or(|c| n + batch.held() < c) {
        let ready = match tokio::time::timeout(Duration::ZERO, rx.recv()).await {
            Ok(r) => Some(r),
            Err(_) => {
                if !batch.write(&rx, txn.as_ref(), &mut n, &mut bytes)? {
                    gone = true;
                    break;
                }
                tokio::select! {
                    r = tokio::time::timeout(wait, rx.recv()) => r.ok(),
                    () = &mut reader_gone => {
                        // Every line is written (just above): nothing is held to release.
                        gone = true;
                        break;
                    }
                }
            }
        };
        let d = match ready {
            None => break,
            Some(r) => r.map_err(|e| lost(e, n))?,
        };
        // (A message that does not decode is shown in JSON as it came, and counts no bytes.)
        let message = d.message().map_err(|e| e.to_string());
        let size = message.as_ref().map_or(0, body_len);
        let line = if args.json {
            let mut o = serde_json::Map::new();
            o.insert("delivery_id".into(), d.delivery_id.0.into());
            o.insert("settled".into(), d.settled.into());
            o.insert("message".into(), amqpwire::inspect::json::payload_json(&d.payload, None));
            serde_json::Value::Object(o).to_string()
        } else {
            match message {
                Ok(m) => body_text(&m),
                Err(e) => {
                    // Said after what came before it is written (and accepted).
                    let _ = batch.write(&rx, txn.as_ref(), &mut n, &mut bytes);
                    return Err(e);
                }
            }
        };
        batch.add(line, d, size);
        // Top up by hand (at half), to what is still wanted.
        if let Some(count) = args.count {
            rx.set_credit_for(count, most).map_err(|e| lost(e, n))?;
        }
        if batch.full() && !batch.write(&rx, txn.as_ref(), &mut n, &mut bytes)? {
            gone = true;
            break;
        }
        progress.tick("received", n);
    }
    if !gone && !batch.write(&rx, txn.as_ref(), &mut n, &mut bytes)? {
        gone = true;
    }
    // Anything that came beyond what was wanted goes back untouched.
    while let Ok(Ok(extra)) = tokio::time::timeout(Duration::ZERO, rx.recv()).await {
        rx.release(&extra).map_err(|e| lost(e, n))?;
    }
    discharge(txn, args.transaction).await?;
    progress.summary("received", n, bytes, &BTreeMap::new());
    // A reader that went away wanted no more: nothing timed out.
    if args.count.is_some_and(|c| n < c) && !gone {
        eprintln!("amqpwire: timed out after {n} of {} messages", args.count.unwrap_or(0));
        return Ok(std::process::ExitCode::from(1));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Resolves when standard output is a pipe or socket whose reader has gone (the kernel
/// says so as an error condition on our end); never, for a terminal or a file, or where
/// that cannot be watched.
async fn stdout_reader_gone() {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        // A second descriptor of standard output's pipe, watched by the runtime (not made
        // non-blocking: the lines are written through the first). A regular file cannot be
        // watched, and a terminal never reports this.
        if let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() {
            if let Ok(pipe) = tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(fd) {
                if pipe.ready(tokio::io::Interest::ERROR).await.is_ok() {
                    return;
                }
            }
        }
    }
    std::future::pending::<()>().await
}

/// The lines of received messages not yet written, and their deliveries, not yet
/// accepted.
#[derive(Default)]
struct Batch {
    text: Vec<u8>,
    /// Each message, with the bytes of its body.
    deliveries: Vec<(amqpwire::runtime::Delivery, u64)>,
}

impl Batch {
    /// Messages held.
    fn held(&self) -> u64 {
        self.deliveries.len() as u64
    }

    fn add(&mut self, line: String, d: amqpwire::runtime::Delivery, size: u64) {
        self.text.extend_from_slice(line.as_bytes());
        self.text.push(b'\n');
        self.deliveries.push((d, size));
    }

    /// Whether to write now: 64 KiB are held.
    fn full(&self) -> bool {
        self.text.len() >= 64 * 1024
    }

    /// Writes the lines to standard output, then accepts their messages (in `txn` when
    /// there is one), counting them in `n` and their bodies' bytes in `bytes`; `Ok(false)`
    /// when the reader has gone away (a closed pipe): the messages are released instead,
    /// for another receiver. Any other write error is an error, after the messages are
    /// released.
    fn write(
        &mut self,
        rx: &amqpwire::runtime::Receiver,
        txn: Option<&amqpwire::runtime::Transaction>,
        n: &mut u64,
        bytes: &mut u64,
    ) -> Result<bool, String> {
        if self.deliveries.is_empty() {
            return Ok(true);
        }
        let mut out = std::io::stdout().lock();
        let written = out.write_all(&self.text).and_then(|()| out.flush());
        self.text.clear();
        let lost = |e: Error, n: u64| format!("{e} (after {n} messages received and accepted)");
        for (d, size) in self.deliveries.drain(..) {
            match (&written, txn) {
                (Ok(()), Some(txn)) => rx.accept_in(txn, &d).map_err(|e| lost(e, *n))?,
                (Ok(()), None) => rx.accept(&d).map_err(|e| lost(e, *n))?,
                (Err(_), _) => rx.release(&d).map_err(|e| lost(e, *n))?,
            }
            if written.is_ok() {
                *n += 1;
                *bytes += size;
            }
        }
        match written {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(format!(
                "cannot write the messages: {e} (after {n} received and accepted; those not \
                 written were released)"
            )),
        }
    }
}

/// Handles SIGINT and SIGTERM (Ctrl-C, `kill`, `timeout`) from now on, for a command that
/// serves until it is stopped, so that it can end its captures and recordings first: the
/// future ends when one comes, with the exit status a shell gives a process stopped by it
/// (130 or 143). Call it before saying where the command listens, so that a signal sent
/// once it has said so is never taken with the default action.
pub(crate) fn stop_signal() -> impl std::future::Future<Output = std::process::ExitCode> {
    use std::process::ExitCode;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
        async move {
            let (Ok(mut int), Ok(mut term)) = handlers else {
                // No handler could be set: the signals keep their default action.
                return std::future::pending().await;
            };
            tokio::select! {
                _ = int.recv() => ExitCode::from(130),
                _ = term.recv() => ExitCode::from(143),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let ctrl_c = tokio::signal::ctrl_c();
        async move {
            if ctrl_c.await.is_err() {
                return std::future::pending().await;
            }
            ExitCode::from(130)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_send_accounts_for_every_message() {
        let mut t = Tally::default();
        t.add(Ok(DeliveryState::Accepted(amqpwire::types::Accepted {}))).expect("accepted");
        t.add(Ok(DeliveryState::Released(amqpwire::types::Released {}))).expect("released");
        assert!(t.add(Err(Error::Closed)).is_err());
        let s = t.account(7, 90, false);
        assert_eq!(
            s,
            "amqpwire: of the messages: 1 accepted, 1 released, 7 in flight with no outcome \
             (they may or may not have arrived), 90 never sent"
        );
        let settled = Tally { settled: 4, ..Tally::default() };
        assert!(settled.account(0, 6, true).contains("4 sent pre-settled"));
    }
}
