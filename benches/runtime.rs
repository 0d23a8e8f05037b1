//! The runtime over loopback TCP: an amqpwire client sending to an amqpwire listener whose
//! receiver decodes every message. A bench binary (not criterion): each scenario runs a
//! fixed number of messages and prints its rate; the 64 KiB scenario also measures plain
//! tokio TCP moving the same bytes on this machine in the same run, as the baseline.
//!
//! `cargo bench --bench runtime` (figures in docs/performance.md).

use std::time::{Duration, Instant};

#[path = "../tests/support/pki.rs"]
mod pki;

use amqpwire::message::Message;
use amqpwire::runtime::{Connection, ListenOptions, Listener, Sender};
use amqpwire::sasl::Credentials;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Runs `f` on a thread of its own with a single-threaded runtime, as a separate process
/// would: the client and the server each get one core.
fn on_own_thread<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(f);
    });
}

/// What a server thread reports: each message's body length, and at the end the most heap
/// its thread held at once while serving its one connection.
struct Server {
    url: String,
    done: mpsc::UnboundedReceiver<usize>,
    peak: std::sync::mpsc::Receiver<u64>,
}

/// Starts a listener on a thread of its own, for one connection, whose application decodes
/// and (for unsettled ones) accepts every message, reporting each to `done`.
fn server() -> Server {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (peak_tx, peak) = std::sync::mpsc::channel();
    let (tx, done) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let info = allocation_counter::measure(|| {
            rt.block_on(async move {
                let listener = listen().await;
                let _ = url_tx.send(listener.endpoint().to_string());
                let incoming = listener.accept().await.expect("accept");
                serve(incoming, tx).await;
            });
        });
        let _ = peak_tx.send(info.bytes_max);
    });
    Server { url: url_rx.recv().expect("the server started"), done, peak }
}

async fn listen() -> Listener {
    let credentials = Credentials::new(|| "n".into()).anonymous(true);
    let options = ListenOptions {
        authenticator: Some(std::sync::Arc::new(move || Some(Box::new(credentials.clone()) as _))),
        ..ListenOptions::default()
    };
    Listener::bind("amqp://127.0.0.1:0", options).await.expect("bind")
}

/// Serves one connection until it has ended and every receiver has finished.
async fn serve(incoming: amqpwire::runtime::Incoming, tx: mpsc::UnboundedSender<usize>) {
    let Ok(mut conn) = incoming.establish().await else { return };
    let mut receivers = tokio::task::JoinSet::new();
    while let Some(req) = conn.next_link().await {
        let Ok(rx) = req.accept_receiver(None, 1000) else { continue };
        let tx = tx.clone();
        receivers.spawn(async move {
            while let Ok(d) = rx.recv().await {
                let m = d.message().expect("a message");
                let n = m.body.as_data().map_or(0, |b| b.len());
                if !d.settled {
                    let _ = rx.accept(&d);
                }
                let _ = tx.send(n);
            }
        });
    }
    while receivers.join_next().await.is_some() {}
}

/// A server for every connection, on this thread.
async fn serve_here() -> (String, mpsc::UnboundedReceiver<usize>) {
    let listener = listen().await;
    let url = listener.endpoint().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(serve(incoming, tx.clone()));
        }
    });
    (url, rx)
}

/// Runs one scenario's client on `rt` against a fresh server thread, then prints the peak
/// heap of each end of the connection.
fn with_server<T>(
    rt: &tokio::runtime::Runtime,
    what: &str,
    f: impl AsyncFnOnce(&str, &mut mpsc::UnboundedReceiver<usize>) -> T,
) -> T {
    let mut server = server();
    let mut out = None;
    let client = allocation_counter::measure(|| {
        out = Some(rt.block_on(f(&server.url, &mut server.done)));
    });
    let server_peak = server.peak.recv().expect("the server ended");
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "  {what:<46} peak heap: client end {:.2} MiB, server end {:.2} MiB",
        mib(client.bytes_max),
        mib(server_peak)
    );
    out.expect("ran")
}

async fn sender(url: &str, name: &str) -> (Connection, Sender) {
    let conn = Connection::connect(url).await.expect("connect");
    let s = conn.begin_session().await.expect("session");
    let snd = s.sender(name, "bench").await.expect("sender");
    (conn, snd)
}

fn report(what: &str, n: usize, bytes: usize, t: Duration) {
    let secs = t.as_secs_f64();
    println!(
        "{what:<48} {n:>8} msgs {:>12.0} msg/s {:>9.1} MiB/s",
        n as f64 / secs,
        bytes as f64 / secs / 1048576.0
    );
}

async fn presettled(url: &str, done: &mut mpsc::UnboundedReceiver<usize>, n: usize) {
    let (conn, snd) = sender(url, "presettled").await;
    let m = Message::with_data(vec![7u8; 100]);
    let t = Instant::now();
    for _ in 0..n {
        snd.send_settled(&m).await.expect("send");
    }
    for _ in 0..n {
        done.recv().await.expect("received");
    }
    report("pre-settled, 100 B, receiver decodes", n, n * 100, t.elapsed());
    conn.close(None).await.expect("close");
}

async fn unsettled(
    url: &str,
    done: &mut mpsc::UnboundedReceiver<usize>,
    n: usize,
    window: usize,
) -> f64 {
    let (conn, snd) = sender(url, "unsettled").await;
    let m = Message::with_data(vec![7u8; 100]);
    let t = Instant::now();
    let mut flight = std::collections::VecDeque::new();
    for _ in 0..n {
        flight.push_back(snd.send_pipelined(&m).await.expect("send"));
        if flight.len() >= window {
            flight.pop_front().expect("one").await.expect("outcome");
        }
    }
    while let Some(p) = flight.pop_front() {
        p.await.expect("outcome");
    }
    let e = t.elapsed();
    let what = format!("unsettled, 100 B, outcomes awaited, {window} in flight");
    report(&what, n, n * 100, e);
    for _ in 0..n {
        done.recv().await.expect("received");
    }
    conn.close(None).await.expect("close");
    n as f64 / e.as_secs_f64()
}

async fn large(url: &str, done: &mut mpsc::UnboundedReceiver<usize>, n: usize) -> f64 {
    let (conn, snd) = sender(url, "large").await;
    let m = Message::with_data(vec![7u8; 64 * 1024]);
    let t = Instant::now();
    for _ in 0..n {
        snd.send_settled(&m).await.expect("send");
    }
    for _ in 0..n {
        done.recv().await.expect("received");
    }
    let e = t.elapsed();
    report("pre-settled, 64 KiB, receiver decodes", n, n * 65536, e);
    conn.close(None).await.expect("close");
    (n * 65536) as f64 / e.as_secs_f64()
}

/// Plain tokio TCP moving `n` 64 KiB writes to a reader that reads 256 KiB at a time (as
/// amqpwire does): the baseline for `large`.
async fn baseline(n: usize) -> f64 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    on_own_thread(async move {
        l.set_nonblocking(true).expect("nonblocking");
        let l = tokio::net::TcpListener::from_std(l).expect("listener");
        let (mut s, _) = l.accept().await.expect("accept");
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        while total < n * 65536 {
            let k = s.read(&mut buf).await.expect("read");
            if k == 0 {
                break;
            }
            total += k;
        }
        let _ = done_tx.send(());
    });
    let mut w = tokio::net::TcpStream::connect(addr).await.expect("connect");
    w.set_nodelay(true).expect("nodelay");
    let chunk = vec![7u8; 64 * 1024];
    let t = Instant::now();
    for _ in 0..n {
        w.write_all(&chunk).await.expect("write");
    }
    done_rx.await.expect("reader");
    let e = t.elapsed();
    report("baseline: plain tokio TCP, 64 KiB writes", n, n * 65536, e);
    (n * 65536) as f64 / e.as_secs_f64()
}

/// A broker on a thread of its own (one core, as `serve` on a busy machine), for the
/// 64 KiB scenarios: its URL, and at the end what its thread held (bytes allocated and not
/// freed, with every message it keeps) and the most it held at once.
struct BrokerThread {
    url: String,
    stats: std::sync::mpsc::Receiver<amqpwire::broker::Broker>,
    heap: std::sync::mpsc::Receiver<(i64, u64)>,
}

/// Starts a broker thread that serves until its broker has stored `stored` messages and
/// delivered `delivered` ones, then reports its heap (with the broker, and so its queues,
/// still held).
fn broker_thread(stored: u64, delivered: u64) -> BrokerThread {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (heap_tx, heap) = std::sync::mpsc::channel();
    let (stats_tx, stats) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let mut keep = None;
        let info = allocation_counter::measure(|| {
            keep = Some(rt.block_on(async move {
                let broker = amqpwire::broker::Broker::new();
                let options = amqpwire::broker::listen_options(&[], None, None);
                let listener = Listener::bind("amqp://127.0.0.1:0", options).await.expect("bind");
                let _ = url_tx.send(listener.endpoint().to_string());
                let b = broker.clone();
                tokio::spawn(async move { b.serve(listener).await });
                loop {
                    let s = broker.stats();
                    if s.messages_in >= stored && s.messages_out >= delivered {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                broker
            }));
        });
        let _ = heap_tx.send((info.bytes_current, info.bytes_max));
        if let Some(b) = keep {
            let _ = stats_tx.send(b);
        }
        drop(rt);
    });
    BrokerThread { url: url_rx.recv().expect("the broker started"), stats, heap }
}

/// `n` pre-settled 64 KiB messages into a broker on a thread of its own that keeps them
/// (`drain`: while a receiver on a thread of its own takes them as they come): the rate
/// until the broker has stored (and the receiver received) them all, and what the broker
/// held at the end per payload byte it keeps.
fn broker_large(n: usize, drain: bool) -> f64 {
    let delivered = if drain { n as u64 } else { 0 };
    let b = broker_thread(n as u64, delivered);
    let (got_tx, got_rx) = std::sync::mpsc::channel();
    if drain {
        let url = b.url.clone();
        let ready = std::sync::Arc::new(std::sync::Barrier::new(2));
        let r = std::sync::Arc::clone(&ready);
        on_own_thread(async move {
            let conn = Connection::connect(&url).await.expect("connect");
            let s = conn.begin_session().await.expect("session");
            let rx = s.receiver("drain", "bench-large-drain", 32).await.expect("receiver");
            r.wait();
            let mut bytes = 0usize;
            for _ in 0..n {
                let d = rx.recv().await.expect("a message");
                bytes += d.payload.len();
                rx.accept(&d).expect("accept");
            }
            let _ = got_tx.send(bytes);
            conn.close(None).await.expect("close");
        });
        ready.wait();
    }
    let queue = if drain { "bench-large-drain" } else { "bench-large" };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let t = Instant::now();
    rt.block_on(async {
        let conn = Connection::connect(&b.url).await.expect("connect");
        let s = conn.begin_session().await.expect("session");
        let snd = s.sender("large", queue).await.expect("sender");
        let m = Message::with_data(vec![7u8; 64 * 1024]);
        for _ in 0..n {
            snd.send_settled(&m).await.expect("send");
        }
        conn.close(None).await.expect("close");
    });
    let (kept, peak) = b.heap.recv().expect("the broker's heap");
    if drain {
        got_rx.recv().expect("the receiver");
    }
    let e = t.elapsed();
    let what = if drain {
        "64 KiB into the broker, drained at once"
    } else {
        "64 KiB into the broker, kept"
    };
    report(what, n, n * 65536, e);
    let payload = (n * 65536) as f64;
    let broker = b.stats.recv().expect("the broker");
    println!(
        "  broker thread holds {:.1} MiB at the end ({:.2} bytes per payload byte sent), peak {:.1} MiB",
        kept as f64 / 1048576.0,
        kept as f64 / payload,
        peak as f64 / 1048576.0,
    );
    drop(broker);
    payload / e.as_secs_f64()
}

/// The floor under keeping `bytes` of messages: memory touched for the first time, in
/// 256 KiB buffers as the broker reads into, one write per 4 KiB page (the kernel then
/// maps and zeroes each page, as it does for the broker's read buffers). Bytes per second.
fn first_touch(bytes: usize) -> f64 {
    const CHUNK: usize = 256 * 1024;
    let t = Instant::now();
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(bytes / CHUNK + 1);
    for _ in 0..bytes.div_ceil(CHUNK) {
        let mut b = vec![0u8; CHUNK];
        for page in b.chunks_mut(4096) {
            page[0] = 1;
        }
        kept.push(b);
    }
    let e = t.elapsed();
    report("baseline: memory touched for the first time", bytes / 65536, bytes, e);
    std::hint::black_box(&kept);
    bytes as f64 / e.as_secs_f64()
}

/// Plain tokio TCP ping-pong of 100-byte messages, one in flight, between two threads
/// (`same_thread`: two tasks on this thread): the floor under the round-trip scenario on
/// this machine.
async fn baseline_round_trips(n: usize, same_thread: bool) -> f64 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let echo = async move {
        l.set_nonblocking(true).expect("nonblocking");
        let l = tokio::net::TcpListener::from_std(l).expect("listener");
        let (mut s, _) = l.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 100];
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(&buf).await.is_err() {
                break;
            }
        }
    };
    if same_thread {
        tokio::spawn(echo);
    } else {
        on_own_thread(echo);
    }
    let mut w = tokio::net::TcpStream::connect(addr).await.expect("connect");
    w.set_nodelay(true).expect("nodelay");
    let mut buf = [7u8; 100];
    let t = Instant::now();
    for _ in 0..n {
        w.write_all(&buf).await.expect("write");
        w.read_exact(&mut buf).await.expect("read");
    }
    let e = t.elapsed();
    let what = if same_thread { "one thread" } else { "two threads" };
    report(&format!("baseline: plain TCP ping-pong, 100 B, {what}"), n, n * 100, e);
    n as f64 / e.as_secs_f64()
}

/// A line of /proc/self/status in KiB (Linux), 0 elsewhere.
fn status_kib(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident memory per idle connection: a broker, and `n` client connections to it in
/// this process (each pair counted whole, so the broker's share is at most this).
async fn idle_connections(n: usize) {
    let (_broker, url, _first) = broker_with_a_first_connection().await;
    let before = status_kib("VmRSS:");
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let c = Connection::connect(&url).await.expect("connect");
        c.begin_session().await.expect("session");
        conns.push(c);
    }
    let after = status_kib("VmRSS:");
    println!(
        "{:<48} {n:>8} conns {:>9.1} KiB per client + broker connection pair",
        "idle connections, each with a session",
        (after.saturating_sub(before)) as f64 / n as f64
    );
    for c in conns {
        let _ = c.close(None).await;
    }
}

/// K clients, each on a thread of its own (as K processes would be), sending `n`
/// pre-settled 100-byte messages each to its own queue of one broker whose runtime has a
/// worker thread per core; aggregate msg/s for K = 1, 2, 4, … up to the core count, and
/// each rate as a fraction of K times the K = 1 rate.
fn cores_curve(n: usize) {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("runtime");
    let broker = amqpwire::broker::Broker::new();
    let url = rt.block_on(async {
        let options = amqpwire::broker::listen_options(&[], None, None);
        let listener = Listener::bind("amqp://127.0.0.1:0", options).await.expect("bind");
        let url = listener.endpoint().to_string();
        let b = broker.clone();
        tokio::spawn(async move { b.serve(listener).await });
        url
    });
    println!("broker on {cores} worker threads; K clients, {n} pre-settled 100 B messages each");
    let mut one = 0f64;
    let mut k = 1;
    while k <= cores.max(2) {
        let before = broker.stats().messages_in;
        let start = std::sync::Arc::new(std::sync::Barrier::new(k + 1));
        let clients: Vec<_> = (0..k)
            .map(|i| {
                let (url, start) = (url.clone(), std::sync::Arc::clone(&start));
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async move {
                        let conn = Connection::connect(&url).await.expect("connect");
                        let s = conn.begin_session().await.expect("session");
                        let snd = s.sender("s", &format!("cores-{k}-{i}")).await.expect("sender");
                        let m = Message::with_data(vec![7u8; 100]);
                        start.wait();
                        for _ in 0..n {
                            snd.send_settled(&m).await.expect("send");
                        }
                        conn.close(None).await.expect("close");
                    });
                })
            })
            .collect();
        start.wait();
        let t = Instant::now();
        for c in clients {
            c.join().expect("a client");
        }
        // Every message stored (a clean close comes after the transfers it follows).
        let want = before + (k * n) as u64;
        while broker.stats().messages_in < want {
            std::thread::sleep(Duration::from_millis(1));
        }
        let rate = (k * n) as f64 / t.elapsed().as_secs_f64();
        if k == 1 {
            one = rate;
        }
        println!(
            "  K = {k:>2}: {:>10.0} msg/s aggregate, {:.2} of {k} × K=1",
            rate,
            rate / (one * k as f64)
        );
        k *= 2;
    }
}

/// A broker on a loopback port, its URL, and one connection with a session made first, so
/// that the runtime's one-time allocations are not counted in what follows.
async fn broker_with_a_first_connection() -> (amqpwire::broker::Broker, String, Connection) {
    let broker = amqpwire::broker::Broker::new();
    let options = amqpwire::broker::listen_options(&[], None, None);
    let listener = Listener::bind("amqp://127.0.0.1:0", options).await.expect("bind");
    let url = listener.endpoint().to_string();
    let b = broker.clone();
    tokio::spawn(async move { b.serve(listener).await });
    let first = Connection::connect(&url).await.expect("connect");
    first.begin_session().await.expect("session");
    (broker, url, first)
}

/// Connection storm: `n` connections set up and torn down (open, begin, end, close), 16 at
/// a time, over plain TCP and over TLS, against the broker; beside a raw tokio accept loop
/// taking the same number of TCP connections (connect, accept, close) in the same run.
fn storm(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let pki = pki::pki();
        let broker = amqpwire::broker::Broker::new();
        let mut urls = Vec::new();
        for (scheme, tls) in [("amqp", None), ("amqps", Some(pki.server()))] {
            let options = amqpwire::broker::listen_options(&[], tls, None);
            let url = format!("{scheme}://localhost:0");
            let listener = Listener::bind(&url, options).await.expect("bind");
            urls.push(format!("{scheme}://localhost:{}", listener.endpoint().port));
            let b = broker.clone();
            tokio::spawn(async move { b.serve(listener).await });
        }
        // Raw TCP: the server accepts, writes one byte and closes; the client reads it.
        let raw = tokio::net::TcpListener::bind("localhost:0").await.expect("bind");
        let raw_port = raw.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = raw.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(b"x").await;
                });
            }
        });
        let rate = async |f: std::sync::Arc<
            dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
                + Send
                + Sync,
        >| {
            let t = Instant::now();
            let per = n / 16;
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let f = std::sync::Arc::clone(&f);
                    tokio::spawn(async move {
                        for _ in 0..per {
                            f().await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("a connector");
            }
            (per * 16) as f64 / t.elapsed().as_secs_f64()
        };
        let tcp = rate(std::sync::Arc::new(move || {
            Box::pin(async move {
                let mut s =
                    tokio::net::TcpStream::connect(("localhost", raw_port)).await.expect("tcp");
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.expect("a byte");
            })
        }))
        .await;
        let mut amqp = Vec::new();
        for (url, tls) in [(urls[0].clone(), None), (urls[1].clone(), Some(pki.client()))] {
            let r = rate(std::sync::Arc::new(move || {
                let (url, tls) = (url.clone(), tls.clone());
                Box::pin(async move {
                    let mut options = amqpwire::runtime::ConnectOptions::default();
                    if let Some(tls) = tls {
                        options.tls = tls;
                    }
                    let endpoint =
                        amqpwire::runtime::transport::Endpoint::parse(&url).expect("url");
                    let c = Connection::connect_with(&endpoint, options).await.expect("connect");
                    let s = c.begin_session().await.expect("session");
                    s.end().await.expect("end");
                    c.close(None).await.expect("close");
                })
            }))
            .await;
            amqp.push(r);
        }
        println!("connection storm, {n} connections, 16 at a time:");
        println!("  raw TCP connect, accept, 1 byte, close {tcp:>9.0} conn/s");
        println!(
            "  amqp: open, begin, end, close         {:>10.0} conn/s ({:.0} % of raw TCP)",
            amqp[0],
            100.0 * amqp[0] / tcp
        );
        println!(
            "  amqps: TLS, open, begin, end, close   {:>10.0} conn/s ({:.0} % of raw TCP)",
            amqp[1],
            100.0 * amqp[1] / tcp
        );
    });
}

/// `n` idle connections, each with a session, on one broker: the broker's resident memory
/// per connection. The clients run in a child process (this binary again, with `--clients
/// URL N`), so that each process needs only `n` descriptors and the memory measured is
/// the broker's alone. The descriptor limit is raised to its hard limit first, or the
/// bench says why it cannot hold `n`.
fn idle_broker(n: usize) {
    let need = n as u64 + 64;
    match rlimit::increase_nofile_limit(need) {
        Ok(got) if got >= need => {}
        Ok(got) => {
            println!("idle broker connections: skipped: {n} need {need} descriptors, the limit is {got} (raise the hard limit: ulimit -Hn)");
            return;
        }
        Err(e) => {
            println!("idle broker connections: skipped: cannot raise the descriptor limit: {e}");
            return;
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (broker, url, _first) = broker_with_a_first_connection().await;
        let before = status_kib("VmRSS:");
        let mut child = tokio::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["--clients", &url, &n.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the client process");
        let mut out = tokio::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line).await.expect("ready");
        assert_eq!(line.trim(), "ready", "the client process: {line}");
        while broker.stats().open_connections < n as u64 + 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = status_kib("VmRSS:");
        println!(
            "{:<48} {n:>8} conns {:>9.1} KiB per broker connection (resident, broker process only)",
            "idle broker connections, each with a session",
            (after.saturating_sub(before)) as f64 / n as f64
        );
        drop(child.stdin.take());
        let _ = child.wait().await;
    });
}

/// The child of [`idle_broker`]: `n` connections to `url`, each with a session; says
/// `ready`, then holds them until its standard input closes.
fn idle_clients(url: &str, n: usize) {
    let _ = rlimit::increase_nofile_limit(n as u64 + 64);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let c = Connection::connect(url).await.expect("connect");
            c.begin_session().await.expect("session");
            conns.push(c);
        }
        println!("ready");
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
    });
}

fn main() {
    // `cargo test --benches` runs bench binaries with no arguments in test mode: keep it
    // short there. Naming scenarios (`presettled`, `unsettled`, `round-trips`, `large`,
    // `broker-large`, `idle`, `cores`, `storm`, `idle-10k`) runs only those.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, url, n] = &args[..] {
        if flag == "--clients" {
            return idle_clients(url, n.parse().expect("a count"));
        }
    }
    let quick = args.iter().any(|a| a == "--test") || std::env::var_os("QUICK").is_some();
    let names = [
        "presettled",
        "unsettled",
        "round-trips",
        "large",
        "broker-large",
        "idle",
        "cores",
        "storm",
        "idle-10k",
    ];
    let picked: Vec<&str> = names.into_iter().filter(|n| args.iter().any(|a| a == n)).collect();
    let run = |name: &str| picked.is_empty() || picked.contains(&name);
    let scale = if quick { 100 } else { 1 };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    if run("presettled") {
        with_server(&rt, "pre-settled, 100 B", async |url, done| {
            presettled(url, done, 300_000 / scale).await
        });
    }
    if run("unsettled") {
        with_server(&rt, "unsettled, 1000 in flight", async |url, done| {
            unsettled(url, done, 200_000 / scale, 1000).await
        });
    }
    if run("round-trips") {
        // Client and server on threads of their own, each waking the other over loopback
        // (as two processes would), then both on this one thread.
        let n = 20_000 / scale;
        let floor = rt.block_on(baseline_round_trips(n, false));
        let ours = with_server(&rt, "round trips, two threads", async |url, done| {
            unsettled(url, done, n, 1).await
        });
        println!(
            "round trips, two threads: amqpwire makes {:.0} % of the plain TCP ping-pong",
            100.0 * ours / floor
        );
        rt.block_on(async {
            let (local, mut local_done) = serve_here().await;
            let floor = baseline_round_trips(n, true).await;
            let ours = unsettled(&local, &mut local_done, n, 1).await;
            println!(
                "round trips, one thread: amqpwire makes {:.0} % of the plain TCP ping-pong",
                100.0 * ours / floor
            );
        });
    }
    if run("large") {
        // Both vary from run to run on a shared machine: the best of three of each, taken
        // in turns.
        let n = 16_000 / scale;
        let (mut base, mut ours) = (0f64, 0f64);
        for _ in 0..3 {
            base = base.max(rt.block_on(baseline(n)));
            let rate = with_server(&rt, "pre-settled, 64 KiB", async |url, done| {
                large(url, done, n).await
            });
            ours = ours.max(rate);
        }
        println!(
            "64 KiB: amqpwire moves {:.0} % of the plain TCP baseline (best of three each)",
            100.0 * ours / base
        );
    }
    if run("broker-large") {
        // Into the broker, kept; then drained at once. The best of three of each, beside
        // the best of three plain TCP runs, taken in turns.
        let n = 2_000 / scale;
        let (mut base, mut kept, mut drained, mut touch) = (0f64, 0f64, 0f64, 0f64);
        for _ in 0..3 {
            base = base.max(rt.block_on(baseline(n)));
            touch = touch.max(first_touch(n * 65536));
            kept = kept.max(broker_large(n, false));
            drained = drained.max(broker_large(n, true));
        }
        println!(
            "64 KiB through the broker: {:.2} of plain TCP kept, {:.2} drained at once (best of three each)",
            kept / base,
            drained / base
        );
        // A kept byte is copied from the socket as plain TCP copies it, and lands in memory
        // touched for the first time: with the two paid one after the other on the
        // broker's core, what keeping costs on this machine before any AMQP.
        println!(
            "  the copy and the first touch one after the other: {:.2} of plain TCP",
            touch / (touch + base)
        );
    }
    let hwm = status_kib("VmHWM:");
    println!("peak resident memory of the process so far: {:.1} MiB", hwm as f64 / 1024.0);
    if run("idle") {
        rt.block_on(idle_connections(1000 / scale));
    }
    if run("cores") {
        cores_curve(200_000 / scale);
    }
    if run("storm") {
        storm(8_000 / scale.min(40));
    }
    if run("idle-10k") {
        idle_broker(10_000 / scale);
    }
}
