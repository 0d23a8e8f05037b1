//! Running the `amqpwire` binary from a test: to completion, or as a server that is
//! killed when dropped.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary, run from the crate's directory.
pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_amqpwire"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs the binary to completion, failing the test if it takes longer than 60 s.
pub(crate) fn run(args: &[&str]) -> Output {
    let child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run amqpwire");
    let start = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(start.elapsed() < Duration::from_secs(60), "amqpwire {args:?} took too long");
    out
}

/// Runs the binary to completion with `stdin` as its standard input, written beside the
/// reading of its output: `amqpwire decode` prints as it reads, so a large input would
/// otherwise fill both pipes.
pub(crate) fn run_with_input<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run amqpwire");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().expect("wait");
    // (A command that ends without reading all of its input closes the pipe early.)
    match writer.join().expect("writer") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
        _ => out,
    }
}

/// Output bytes as text.
pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A running `amqpwire` (a server), killed when dropped.
pub(crate) struct Running {
    child: Child,
    /// The lines it printed on standard output before it was ready.
    pub(crate) lines: Vec<String>,
}

impl Running {
    /// Starts `cmd` and reads its standard output until `ready` says the lines so far are
    /// all it prints before serving.
    pub(crate) fn start(mut cmd: Command, ready: impl Fn(&[String]) -> bool) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start amqpwire");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            lines.push(line.expect("a line"));
            if ready(&lines) {
                return Self { child, lines };
            }
        }
        let _ = child.kill();
        let status = child.wait();
        panic!("amqpwire ended ({status:?}) before it was ready; it printed {lines:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The writing end of a pipe whose reader is gone (a `| head` that has ended): every
/// write to it fails. (The reader is a process that ends at once.)
pub(crate) fn closed_pipe() -> std::process::ChildStdin {
    let mut reader = std::process::Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run true");
    let writer = reader.stdin.take().expect("its standard input");
    reader.wait().expect("true ends");
    writer
}

/// Runs `amqpwire ARGS` to completion with its standard output sent to `stdout` (a pipe
/// no one reads, a full device), standard input empty and standard error kept.
pub(crate) fn run_writing_to<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    stdout: impl Into<Stdio>,
) -> Output {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("run amqpwire")
}

/// Waits for `child` to end and takes what it wrote; `None`, and the child killed, if it is
/// still running after `limit` (a bound that only guards a hang).
pub(crate) fn wait_within(
    child: std::process::Child,
    limit: std::time::Duration,
) -> Option<Output> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(o) => Some(o.expect("wait for amqpwire")),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            None
        }
    }
}
