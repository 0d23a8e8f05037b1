//! The fuzz-peer campaign: cases ([`crate::fuzzpeer`]) played against a real server or
//! client over any transport, the target's process watched, findings judged, minimised and
//! saved as replayable scripts.
//!
//! Against a server (`connect` mode) each case is one connection; after it a probe (the
//! preamble, an open, a close, every answer awaited) tells a live target from a dead or hung
//! one. Against a client (`listen` mode) the client is started for each case and must end
//! by itself once the case closes its connection.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::script::play;
use super::transport::{self, AcceptConfig, ClientTlsConfig, Endpoint, TlsServerConfig};
use crate::fuzzpeer::mutate::{mutate, Rng};
use crate::fuzzpeer::scenarios::{probe, Sasl};
use crate::fuzzpeer::strict_fault;
use crate::script::player::{parse, Failure, Player};

/// What a case did to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The target's process ended (or, without a process to watch, its port closed).
    Crash,
    /// The target stopped serving: its process lives, but connections are refused or
    /// closed unanswered.
    Refuses,
    /// A well-formed probe got no answer within the limit (a client did not end).
    Hang,
    /// The target's resident memory passed the bound.
    Grows,
    /// The target sent bytes the strict decoder flags.
    Malformed,
}

impl Kind {
    /// The word used in file names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::Refuses => "refuses",
            Self::Hang => "hang",
            Self::Grows => "grows",
            Self::Malformed => "malformed",
        }
    }
}

/// A finding: its kind and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The kind.
    pub kind: Kind,
    /// What was seen, in one line (an exit status, a decoder's complaint).
    pub detail: String,
    /// The target's last words (the new lines of its log), when it has a log.
    pub last_words: String,
    /// For a malformed answer: the frame that holds the fault, in hex.
    pub evidence: String,
}

impl Finding {
    /// What tells this finding from others of its kind (its kind, then what the target's
    /// last words name, or how it ended, or the fault): a campaign saves one finding per
    /// signature.
    pub fn signature(&self) -> String {
        signature(self)
    }
}

/// Which side the campaign attacks, and how to reach it.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Connect to a server at this endpoint.
    Connect {
        /// Where.
        endpoint: Endpoint,
        /// CAs and settings for `amqps` and `wss`.
        tls: ClientTlsConfig,
    },
    /// Listen here and let clients (started by `exec`, one per case) connect.
    Listen {
        /// Where.
        endpoint: Endpoint,
        /// The certificate for `amqps` and `wss`.
        tls: Option<TlsServerConfig>,
    },
}

/// Everything a campaign needs.
#[derive(Debug)]
pub struct Settings {
    /// The side attacked.
    pub mode: Mode,
    /// The scenarios: a name and a script each.
    pub scenarios: Vec<(String, Vec<Json>)>,
    /// How the probe authenticates.
    pub sasl: Sasl,
    /// The seed: the same seed gives the same cases.
    pub seed: u64,
    /// Stop after this many cases.
    pub cases: Option<u64>,
    /// Stop after this long: a case under way then is dropped, and a finding being
    /// minimised is saved as it stands.
    pub time: Option<Duration>,
    /// How long a case waits for each answer it paces on.
    pub within: Duration,
    /// How long the probe waits for each answer before the target counts as hung.
    pub probe_within: Duration,
    /// The command that starts the target (a server once and again after each death; a
    /// client once per case, with `{url}` and `{port}` replaced).
    pub exec: Option<String>,
    /// The target's process, when it runs already.
    pub pid: Option<u32>,
    /// The bound on the target's resident memory, in KiB.
    pub max_rss_kib: Option<u64>,
    /// Where findings and the target's log go.
    pub findings: PathBuf,
    /// Time spent minimising each finding (zero: no minimisation).
    pub minimise: Duration,
    /// The command-line options that reach the same target and play and judge its cases
    /// the same way, for the replay and regenerate lines of findings (`--connect URL
    /// --exec '…' --scenario …`).
    pub target_args: String,
    /// Print a progress line this often (`None`: never).
    pub progress: Option<Duration>,
    /// Print a line for every case: its number, scenario, time taken and mutations.
    pub verbose: bool,
    /// Where the campaign's lines (progress, findings, cases) go.
    pub say: Say,
    /// Stops the campaign when told (a signal, say): the case under way is dropped, a
    /// finding being minimised is saved as it stands, and the summary follows.
    pub stop: Stop,
}

/// Tells a campaign to stop, from anywhere (clones share it), and knows the process
/// group of the target it started, for whoever must kill it without waiting for the
/// campaign (a second Ctrl-C).
#[derive(Clone, Debug)]
pub struct Stop {
    flag: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    target: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Default for Stop {
    fn default() -> Self {
        Self {
            flag: std::sync::Arc::new(tokio::sync::watch::Sender::new(false)),
            target: std::sync::Arc::default(),
        }
    }
}

impl Stop {
    /// Stops the campaign.
    pub fn stop(&self) {
        self.flag.send_replace(true);
    }

    /// Whether it was told to stop.
    pub fn is_stopped(&self) -> bool {
        *self.flag.borrow()
    }

    /// Waits until it is told to stop.
    pub async fn stopped(&self) {
        let mut rx = self.flag.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Kills the target the campaign started, if one runs, and all it started (its
    /// process group).
    pub fn kill_target(&self) {
        kill_group(self.target.load(std::sync::atomic::Ordering::SeqCst));
    }
}

/// SIGKILL to process group `pgid` (nothing for 0): a target started with `--exec` leads a
/// group of its own, so a wrapper (`npm start`, a script) goes with what it started.
fn kill_group(pgid: u32) {
    if pgid == 0 {
        return;
    }
    // std has no killpg, and this crate has no unsafe code: kill(1) does it.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Where a campaign's lines go: a function of the application's (the CLI prints them on
/// standard error), or else INFO events of target `amqpwire::fuzz_peer`.
#[derive(Clone, Default)]
pub struct Say(pub Option<SayFn>);

/// A function that takes a campaign's lines.
pub type SayFn = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

impl Say {
    fn line(&self, line: &str) {
        match &self.0 {
            Some(f) => f(line),
            None => tracing::info!(target: "amqpwire::fuzz_peer", "{line}"),
        }
    }
}

impl std::fmt::Debug for Say {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Say(a function)" } else { "Say(tracing)" })
    }
}

/// What a campaign found, in the end.
#[derive(Debug, Default)]
pub struct Summary {
    /// Cases played.
    pub cases: u64,
    /// Time taken.
    pub elapsed: Duration,
    /// Each new finding and the file it was saved in.
    pub findings: Vec<(Finding, PathBuf)>,
    /// Findings that repeated one already saved (same kind and signature), by kind.
    pub repeats: HashMap<Kind, u64>,
    /// Of the repeated hangs, the clients judged hung after `probe_within` alone rather
    /// than four times it: once a hang that names no cause is saved, another such one can
    /// only repeat it, and a campaign against a client that hangs on most cases would
    /// otherwise spend most of its time waiting on known hangs.
    pub cut_hangs: u64,
    /// Times the target was started again after it died (while minimising too).
    pub restarts: u64,
    /// Why the campaign stopped early, if it did (not for [`Summary::interrupted`]).
    pub stopped: Option<String>,
    /// Whether [`Settings::stop`] stopped it.
    pub interrupted: bool,
    /// What was under way when [`Settings::time`] ran out, if it ran out before the
    /// campaign's end: a case (dropped, not judged nor counted) or the target's restart
    /// (left unfinished), so that the campaign ends on time.
    pub out_of_time: Option<Underway>,
    /// Cases whose client never connected (listen mode).
    pub unconnected: u64,
    /// The files of findings that do not come back alone on a freshly started target
    /// (they need what earlier cases did to it; each file says which cases).
    pub not_alone: Vec<PathBuf>,
    /// Whether the campaign ended at the last case number (`u64::MAX`), before its
    /// `--cases` or `--seconds`.
    pub no_more_cases: bool,
    /// Cases whose client sent no more than a protocol header (listen mode): most of a
    /// campaign's cases, when the client does not speak the SASL offered, and tests
    /// little.
    pub header_only: u64,
    /// Cases whose client ended with a non-zero exit status (listen mode): not judged a
    /// crash (a client may exit 1 on a refused connection), but worth a look when many.
    pub failed_exits: u64,
}

/// The line `sh -c` runs for `--exec CMD`: `exec CMD`, so that the target replaces the
/// shell and its own death and memory are what is watched. Leading `NAME=value`
/// assignments (`PEER_QUIET=1 python3 client.py`) go before `exec`, where the shell keeps
/// them for the command; after it they would be taken for the command's name.
fn exec_line(cmd: &str) -> String {
    let cmd = cmd.trim_start();
    let mut rest = cmd;
    while let Some((word, after)) = rest.split_once(char::is_whitespace) {
        let is_assignment = word.split_once('=').is_some_and(|(name, value)| {
            let mut chars = name.chars();
            chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
                && !value.contains(['\'', '"', '\\', '$', '`'])
        });
        if !is_assignment {
            break;
        }
        rest = after.trim_start();
    }
    let assignments = &cmd[..cmd.len() - rest.len()];
    format!("{assignments}exec {rest}")
}

/// The target's process: started by the campaign or watched by its id.
#[derive(Debug)]
struct Process {
    child: Option<Child>,
    /// Where the process group of a started target is told (for [`Stop::kill_target`]).
    stop: Stop,
    pid: Option<u32>,
    exec: Option<String>,
    log: PathBuf,
    /// Where the log stood before the current case.
    mark: u64,
    /// [`TARGET_LOG_LIMIT`] (smaller in tests).
    log_limit: u64,
}

/// How large the target's log may grow: past it, at the start of a case, what it holds
/// moves to `target.log.1` (the one before is dropped) and it starts again empty, so a
/// long campaign against a target that talks a lot keeps about twice this on disk (more
/// only while one case's output alone goes past it).
pub const TARGET_LOG_LIMIT: u64 = 64 << 20;

/// How much of the end of a case's output [`Process::last_words`] reads.
const LAST_WORDS_BYTES: u64 = 1 << 20;

impl Process {
    fn start(&mut self, url: &str, port: u16) -> Result<(), String> {
        let Some(cmd) = &self.exec else { return Ok(()) };
        let cmd = cmd.replace("{url}", url).replace("{port}", &port.to_string());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot write {}: {e}", self.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        // In a process group of its own: a Ctrl-C at the terminal reaches the campaign,
        // which stops and kills the target, and is not taken for the target's crash.
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new("sh")
                .arg("-c")
                .arg(exec_line(&cmd))
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err),
            0,
        )
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        self.pid = Some(child.id());
        self.stop.target.store(child.id(), std::sync::atomic::Ordering::SeqCst);
        self.child = Some(child);
        Ok(())
    }

    /// How the process ended, if it has: `exit status N`, `killed by signal N`, `gone`.
    fn ended(&mut self) -> Option<String> {
        if let Some(c) = &mut self.child {
            return match c.try_wait() {
                Ok(Some(status)) => Some(describe_status(status)),
                Ok(None) => None,
                Err(e) => Some(format!("cannot be waited for: {e}")),
            };
        }
        let pid = self.pid?;
        match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(s) if s.lines().any(|l| l.starts_with("State:") && l.contains('Z')) => {
                Some("ended (a zombie)".into())
            }
            Ok(_) => None,
            Err(_) => Some("gone".into()),
        }
    }

    /// Waits up to `limit` for the process to end.
    async fn ended_within(&mut self, limit: Duration) -> Option<String> {
        if self.child.is_none() && self.pid.is_none() {
            return None;
        }
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.ended() {
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    fn kill(&mut self) {
        if let Some(c) = &mut self.child {
            // The target and whatever it started (its process group), then the target
            // itself for certain, and reaped.
            kill_group(c.id());
            let _ = c.kill();
            let _ = c.wait();
            self.stop.target.store(0, std::sync::atomic::Ordering::SeqCst);
        }
        self.child = None;
    }

    /// Writes a line of the campaign's own into the target's log (`=== amqpwire
    /// fuzz-peer: …`), so that what the target wrote can be told apart by case.
    ///
    /// The line goes in one write, so that the target's own output (appended to the same
    /// file) cannot split it. An error when the log cannot be written (a full disk): the
    /// target's last words, which tell findings apart, would be lost too.
    fn note(&self, what: &str) -> Result<(), String> {
        if self.exec.is_none() {
            return Ok(()); // the log holds only what a started target writes
        }
        let line = format!("=== amqpwire fuzz-peer: {what}\n");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| format!("cannot write the target's log {}: {e}", self.log.display()))
    }

    /// Before a case (and its line in the log): when the log has grown past its limit,
    /// moves what it holds to `target.log.1` and empties it in place. The target appends
    /// to it (`O_APPEND`), so its next write lands at the new start; a line it writes
    /// while the log is being moved (between cases, when a target is mostly quiet) may be
    /// lost. An error when the log cannot be emptied (a full disk: the campaign could not
    /// tell findings apart).
    fn keep_log_small(&mut self) -> Result<(), String> {
        if std::fs::metadata(&self.log).map_or(0, |m| m.len()) <= self.log_limit {
            return Ok(());
        }
        let older = self.log.with_extension("log.1");
        let kept = std::fs::copy(&self.log, &older);
        if kept.is_err() {
            // Space is what is short: emptying the log is what frees it.
            let _ = std::fs::remove_file(&older);
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.log)
            .and_then(|f| f.set_len(0))
            .map_err(|e| format!("cannot empty the target's log {}: {e}", self.log.display()))?;
        self.note(&match kept {
            Ok(_) => format!("the log before this line is in {}", older.display()),
            Err(e) => format!("the log before this line could not be kept ({e})"),
        })
    }

    fn set_mark(&mut self) {
        self.mark = std::fs::metadata(&self.log).map_or(0, |m| m.len());
    }

    /// The log written since the mark: its last 80 lines (of its last MiB).
    fn last_words(&self) -> String {
        let Ok(mut f) = std::fs::File::open(&self.log) else { return String::new() };
        let mut s = String::new();
        let len = f.metadata().map_or(0, |m| m.len());
        if f.seek(SeekFrom::Start(self.mark.max(len.saturating_sub(LAST_WORDS_BYTES)))).is_err() {
            return s;
        }
        let mut buf = Vec::new();
        let _ = f.take(LAST_WORDS_BYTES).read_to_end(&mut buf);
        s = String::from_utf8_lossy(&buf).into_owned();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }
}

impl Drop for Process {
    /// A target the campaign started does not outlive it.
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    }
}

/// Where in a target's last words the failure is told: the index of the last line that
/// names an error, a panic or a signal (earlier ones may be errors it survived).
fn telling_line(last_words: &str) -> Option<usize> {
    let lines: Vec<&str> = last_words.lines().collect();
    let told = lines.iter().rposition(|l| {
        let l = l.trim_start();
        let first = l.split([':', ' ', '[']).next().unwrap_or_default();
        first.ends_with("Error")
            || first.ends_with("Exception")
            || l.contains("panicked at")
            // Go: a panic, or the runtime's fatal error; C++: an exception no one caught.
            || l.starts_with("panic: ")
            || l.starts_with("terminate called after throwing")
            || l.starts_with("fatal error: ")
            || l.starts_with("Traceback")
            || l.contains("Assertion")
            || l.contains("Segmentation fault")
            || l.contains("AddressSanitizer")
    })?;
    // A Python traceback whose exception's type says neither Error nor Exception
    // (`struct.error`, `StopIteration`, an application's own): the exception is the first
    // line after the traceback's frames.
    if lines[told].starts_with("Traceback (most recent call last):") {
        let exception = (told + 1..lines.len())
            .find(|&j| !lines[j].starts_with(' ') && !lines[j].trim().is_empty());
        return Some(exception.unwrap_or(told));
    }
    Some(told)
}

/// `s` as one word for `sh`, for the command lines a finding carries (comment lines, so
/// a word holds no line break): as it is when that is safe in any shell (no expansion,
/// brace or `=` included), in single quotes otherwise, and in `$'…'` with escapes when it
/// holds control characters.
pub fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else if s.chars().any(char::is_control) {
        let mut out = String::from("$'");
        for c in s.chars() {
            match c {
                '\\' | '\'' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What tells one finding from another: its kind, and for a target that said why it
/// died, the error's type (without its message, which may name values) and the innermost
/// place in its stack ([`stack_place`]).
fn signature(f: &Finding) -> String {
    let lines: Vec<&str> = f.last_words.lines().collect();
    if let Some(i) = telling_line(&f.last_words) {
        let told = lines[i].trim();
        // Rust names the place on the panic's own line (`thread 'x' panicked at
        // src/f.rs:10:5:`, or before 1.73 `… panicked at 'message', src/f.rs:10:5`): the
        // place, line and column kept, the thread's name (which may vary) left out.
        if let Some((_, at)) = told.split_once("panicked at ") {
            let at = at.trim_end_matches(':');
            let place = at.rsplit_once(", ").map_or(at, |(_, p)| p);
            return format!("{} panicked at {place}", f.kind.name());
        }
        // A C++ exception nothing caught: its type is the whole line (`std::…` holds
        // colons); there is no stack.
        if told.starts_with("terminate called after throwing") {
            return format!("{} {told}", f.kind.name());
        }
        // The JVM prints what was wrapped after the stack (`Caused by: …`, each with its
        // own frames): the last one is the root cause, by whose type and innermost place
        // the fault is known (the wrapper is often the same for every fault).
        let i = root_cause(&lines, i);
        let told = lines[i].trim();
        let told = told.strip_prefix("Caused by: ").unwrap_or(told);
        // The thread's name (`Exception in thread "pool-1-thread-3" java.lang.…`) may
        // vary from run to run: left out, as a Rust panic's is.
        let told = match told.strip_prefix("Exception in thread \"") {
            Some(rest) => rest.split_once("\" ").map_or(told, |(_, ty)| ty),
            None => told,
        };
        let what = told.split(':').next().unwrap_or_default();
        let place = stack_place(&lines, i).unwrap_or_default();
        return format!("{} {what} {place}", f.kind.name());
    }
    match f.kind {
        // How the process ended (a signal, an exit status) tells crashes apart.
        Kind::Crash => format!("crash {}", f.detail.rsplit(": ").next().unwrap_or_default()),
        // A decoder's complaint names the fault; keep it, less its offsets.
        Kind::Malformed => format!("malformed {}", without_offsets(&f.detail)),
        k => k.name().to_owned(),
    }
}

/// A decoder's complaint without the offsets in it (`frame at offset 85: at offset 124:
/// expected uint, …` becomes `expected uint, …`), so that the same fault found at another
/// place is the same finding.
fn without_offsets(detail: &str) -> &str {
    let mut rest = detail;
    while let Some((head, tail)) = rest.split_once(": ") {
        if head.ends_with(|c: char| c.is_ascii_digit()) && head.contains("offset ") {
            rest = tail;
        } else {
            break;
        }
    }
    rest
}

/// The lines of a target's last words worth keeping in a finding: from the line that
/// tells the failure, else the end.
fn worth_keeping(last_words: &str) -> Vec<&str> {
    let lines: Vec<&str> = last_words.lines().collect();
    match telling_line(last_words) {
        // A Python traceback comes before its error: from its start (or the 24 lines
        // before the error, of a deep one) to the error.
        Some(i) => match traceback_start(&lines, i) {
            Some(t) => lines[t.max(i.saturating_sub(24))..=i].to_vec(),
            None => {
                let mut kept: Vec<&str> = lines[i..].iter().take(16).copied().collect();
                // A JVM root cause further down, with its first frames.
                let root = root_cause(&lines, i);
                if root >= i + 16 {
                    kept.push("\t…");
                    kept.extend(lines[root..].iter().take(6));
                }
                kept
            }
        },
        None => lines[lines.len().saturating_sub(12)..].to_vec(),
    }
}

/// The line of the root cause of the JVM exception told at line `i`: the last `Caused
/// by:` of its stack trace (frames, `... n more`, suppressed exceptions and causes),
/// else `i` itself.
fn root_cause(lines: &[&str], i: usize) -> usize {
    let mut root = i;
    for (j, l) in lines.iter().enumerate().skip(i + 1) {
        let t = l.trim_start();
        if l.starts_with("Caused by: ") {
            root = j;
        } else if !(l.starts_with(char::is_whitespace)
            && (t.starts_with("at ")
                || t.starts_with("... ")
                || t.starts_with("Caused by: ")
                || t.starts_with("Suppressed: ")))
        {
            break;
        }
    }
    root
}

/// The innermost place in the stack of the error told at line `i`: below it for Node.js
/// and the JVM (`at …`), above it for Python (the last `File …` line of the traceback
/// that ends with it), and for Go the first function of the goroutine that panicked,
/// past the runtime's own frames, without its arguments (pointers that change from run
/// to run: `main.(*conn).readFrame`).
fn stack_place<'a>(lines: &[&'a str], i: usize) -> Option<&'a str> {
    let below = |from: usize, pick: &dyn Fn(&str) -> bool| {
        (from..lines.len()).find(|&j| pick(lines[j].trim()))
    };
    let told = lines[i].trim_start();
    if told.starts_with("panic: ") || told.starts_with("fatal error: ") {
        let g = below(i + 1, &|l| l.starts_with("goroutine ") && l.ends_with(':'))?;
        let frame = |l: &str| {
            !l.is_empty()
                && !l.starts_with('/')
                && !l.starts_with("panic(")
                && !l.starts_with("runtime.")
                && l.contains('(')
        };
        let f = lines[below(g + 1, &frame)?].trim();
        return Some(f.rfind('(').map_or(f, |p| &f[..p]));
    }
    let at = match traceback_start(lines, i) {
        Some(t) => (t + 1..i).rev().find(|&j| lines[j].trim_start().starts_with("File ")),
        // Node.js's own frames (`at boundsError (node:internal/buffer:86:11)`) are where
        // every bad read of a Buffer ends: the target's innermost frame tells them apart.
        None => below(i + 1, &|l| {
            (l.starts_with("at ") && !l.contains("(node:") && !l.starts_with("at node:"))
                || l.starts_with("File ")
        })
        .or_else(|| below(i + 1, &|l| l.starts_with("at "))),
    };
    at.map(|j| lines[j].trim())
}

/// Where the Python traceback that ends with the error told at line `i` starts (its
/// `Traceback (most recent call last):` line), if one does: every line between is a
/// frame of it (indented), or a chained exception's.
fn traceback_start(lines: &[&str], i: usize) -> Option<usize> {
    for j in (0..i).rev() {
        let l = lines[j];
        if l.starts_with("Traceback (most recent call last):") {
            return Some(j);
        }
        let part = l.starts_with(' ') || l.is_empty();
        if !part {
            return None;
        }
    }
    None
}

/// A campaign in progress.
pub struct Campaign {
    s: Settings,
    process: Process,
    listener: Option<(tokio::net::TcpListener, Endpoint, AcceptConfig)>,
    probe_steps: String,
    saved: HashMap<String, PathBuf>,
    /// The offending frame of the last malformed answer.
    evidence: String,
    /// Clients that connected, and that did not (listen mode).
    connected: u64,
    unconnected: u64,
    /// While judging a campaign's case (not a minimisation's) with a hang that names no
    /// cause already saved: a client then gets `probe_within` to end, not four times it.
    cut_hang_wait: bool,
    /// Whether the last case's client was judged hung after the cut wait.
    cut_hang: bool,
    /// While minimising a `grows` finding: the target is started afresh before each try.
    afresh: bool,
    /// While a finding is reproduced (a replay; minimising or trying alone a crash): after
    /// a probe that answered, how long a server's process is given to end before it is
    /// judged to have survived. A target that dies a moment after the case (printing its
    /// stack first) may still answer the probe; a campaign's next case sees it dead.
    settle: Option<Duration>,
    /// Times the target was started again after it died.
    restarts: u64,
    /// Times the campaign started the target (with `--exec`), and the first case played
    /// against its current start: a finding that needs what earlier cases did to the
    /// target needs the cases from there.
    starts: u64,
    first_case_of_start: u64,
    /// Whether the campaign's time ran out while the target was started afresh to try a
    /// finding alone.
    ran_out_restarting: bool,
    /// Whether the last case's client sent no more than a protocol header.
    header_only: bool,
    /// Whether the last case's client ended with a non-zero exit status.
    failed_exit: bool,
    /// When the campaign's time (`--seconds`) runs out, if it has a limit: a finding
    /// being minimised then is saved as it stands.
    campaign_end: Option<Instant>,
}

impl Campaign {
    /// Prepares a campaign: creates the findings directory, starts the target or binds the
    /// listener, and waits until a server target accepts connections.
    pub async fn new(s: Settings) -> Result<Self, String> {
        std::fs::create_dir_all(&s.findings)
            .map_err(|e| format!("cannot create {}: {e}", s.findings.display()))?;
        let log = s.findings.join("target.log");
        let process = Process {
            child: None,
            stop: s.stop.clone(),
            pid: s.pid,
            exec: s.exec.clone(),
            log,
            mark: 0,
            log_limit: TARGET_LOG_LIMIT,
        };
        let probe_steps = lines(&probe(&s.sasl));
        let mut c = Self {
            s,
            process,
            listener: None,
            probe_steps,
            saved: HashMap::new(),
            evidence: String::new(),
            connected: 0,
            unconnected: 0,
            cut_hang_wait: false,
            campaign_end: None,
            cut_hang: false,
            restarts: 0,
            starts: 0,
            first_case_of_start: 0,
            ran_out_restarting: false,
            afresh: false,
            settle: None,
            header_only: false,
            failed_exit: false,
        };
        if let (Some(pid), None) = (c.s.pid, &c.s.exec) {
            if let Some(how) = c.process.ended() {
                return Err(format!("--pid {pid}: no such process to watch ({how})"));
            }
        }
        match &c.s.mode {
            Mode::Connect { endpoint, tls } => {
                let (endpoint, tls) = (endpoint.clone(), tls.clone());
                c.start_server().await?;
                // A bound a freshly started target passes before any case would make
                // every case a finding of growth. (A target watched by --pid may have
                // grown already: a replayed `grows` finding runs into its own bound.)
                if let (Some(max), Some(rss)) = (c.s.max_rss_kib, c.process.rss_kib()) {
                    if rss > max {
                        let said = format!(
                            "the target already uses {} MiB before any case, past --max-rss {}",
                            rss.div_ceil(1024),
                            max / 1024
                        );
                        if c.s.exec.is_some() {
                            return Err(said);
                        }
                        c.s.say.line(&format!("fuzz-peer: {said}: every case will find growth"));
                    }
                }
                // A campaign against a target that does not pass the well-formed probe
                // would judge nothing: wrong credentials, wrong SASL, not AMQP.
                let io = transport::connect_within(&endpoint, &tls, c.handshake_limit())
                    .await
                    .map_err(|e| e.to_string())?;
                if let Err(f) = c.play_probe(io).await {
                    return Err(format!(
                        "the target does not pass the probe (the preamble, an open, a close): {f}"
                    ));
                }
            }
            Mode::Listen { endpoint, tls } => {
                AcceptConfig::check(endpoint, tls.as_ref()).map_err(|e| e.to_string())?;
                let mut endpoint = endpoint.clone();
                let tcp = tokio::net::TcpListener::bind((endpoint.host.as_str(), endpoint.port))
                    .await
                    .map_err(|e| e.to_string())?;
                if let Ok(a) = tcp.local_addr() {
                    endpoint.port = a.port();
                }
                let config = AcceptConfig::for_endpoint(&endpoint, tls.clone());
                c.listener = Some((tcp, endpoint, config));
            }
        }
        Ok(c)
    }

    /// Judges the cases after this as a replay of a saved finding: a server's process is
    /// given a moment (four times `--within`, at least a second) after the probe answered
    /// to end, before the case is judged to leave it well: a finding's "fixed" verdict
    /// does not rest on the probe outrunning a target that is dying.
    pub fn replaying(&mut self) {
        self.settle = Some(self.settle_time());
    }

    fn settle_time(&self) -> Duration {
        self.s.within.saturating_mul(4).max(Duration::from_secs(1))
    }

    /// Where a listening campaign listens.
    pub fn listening(&self) -> Option<&Endpoint> {
        self.listener.as_ref().map(|(_, e, _)| e)
    }

    /// How long a connection and its TLS and WebSocket handshakes may take: the probe's
    /// wait for an answer, and at least a second.
    fn handshake_limit(&self) -> Duration {
        self.s.probe_within.max(Duration::from_secs(1))
    }

    /// Starts a server target (when there is a command) and waits until it accepts.
    async fn start_server(&mut self) -> Result<(), String> {
        let Mode::Connect { endpoint, .. } = &self.s.mode else { return Ok(()) };
        let endpoint = endpoint.clone();
        // A name that does not resolve never will: said at once, not after 30 s of tries.
        if let Err(e) = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port)).await {
            return Err(format!("cannot resolve {}: {e}", endpoint.host));
        }
        if self.process.exec.is_some() {
            self.process.kill();
            self.process.start(&endpoint.to_string(), endpoint.port)?;
            self.starts += 1;
        }
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let addr = (endpoint.host.as_str(), endpoint.port);
            let refused = match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            // A target this campaign does not start is up already, or is not coming.
            if self.process.exec.is_none() {
                return Err(format!(
                    "nothing accepts connections at {endpoint} ({refused}): start the target \
                     first, or give --exec to have the campaign start it"
                ));
            }
            if let Some(how) = self.process.ended() {
                return Err(format!(
                    "the target ended before it accepted connections ({how}); its log: {}",
                    self.process.log.display()
                ));
            }
            if Instant::now() >= until {
                return Err(format!("the target does not accept connections at {endpoint}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Case `index`: its scenario's name and its script.
    pub fn case(&self, index: u64) -> (String, crate::fuzzpeer::mutate::Mutated) {
        case(&self.s.scenarios, self.s.seed, index)
    }

    /// Runs the campaign to its end, from case 0.
    pub async fn run(&mut self) -> Summary {
        self.run_from(0).await
    }

    /// Runs the campaign to its end, from case `first`.
    pub async fn run_from(&mut self, first: u64) -> Summary {
        let mut sum = Summary::default();
        let start = Instant::now();
        // At its time limit, the case under way is dropped as it is when stopped: a case
        // may wait several times --probe-within on a target that hangs.
        let end = self.s.time.and_then(|t| start.checked_add(t));
        self.campaign_end = end;
        let out_of_time = sleep_until_or_never(end);
        tokio::pin!(out_of_time);
        let mut last_progress = start;
        let mut played = 0u64;
        let restarts_before = self.restarts;
        let mut seen_starts = self.starts;
        self.first_case_of_start = first;
        loop {
            if self.s.cases.is_some_and(|n| played >= n)
                || self.s.time.is_some_and(|t| start.elapsed() >= t)
            {
                break;
            }
            // Case numbers end at u64::MAX: there are no cases past it.
            let Some(index) = first.checked_add(played) else {
                sum.no_more_cases = true;
                break;
            };
            if self.starts != seen_starts {
                // Started (again) since the case before: this is the first against it.
                seen_starts = self.starts;
                self.first_case_of_start = index;
            }
            let (scenario, case) = self.case(index);
            let noted = self.process.keep_log_small();
            let case_line = format!("case {index} ({scenario})");
            if let Err(e) = noted.and_then(|()| self.process.note(&case_line)) {
                sum.stopped = Some(e);
                break;
            }
            let text = lines(&case.steps);
            let t0 = Instant::now();
            self.cut_hang_wait = self.saved.contains_key(Kind::Hang.name());
            let stop = self.s.stop.clone();
            // A case under way when the campaign is stopped is dropped, not judged.
            let judged = tokio::select! {
                j = self.judge(&text) => j,
                () = stop.stopped() => {
                    sum.interrupted = true;
                    break;
                }
                () = &mut out_of_time => {
                    sum.out_of_time = Some(Underway::Case);
                    break;
                }
            };
            self.cut_hang_wait = false;
            sum.header_only += u64::from(self.header_only);
            sum.failed_exits += u64::from(self.failed_exit);
            if self.s.verbose {
                self.s.say.line(&format!(
                    "fuzz-peer: case {index} ({scenario}, {} ms): {}",
                    t0.elapsed().as_millis(),
                    case.mutations.join("; ")
                ));
            }
            match judged {
                Ok(None) => {}
                Ok(Some(f)) => {
                    let sig = signature(&f);
                    if let Some(path) = self.saved.get(&sig) {
                        if self.s.verbose {
                            self.s.say.line(&format!(
                                "fuzz-peer: case {index} ({scenario}): {}: {} (repeats {})",
                                f.kind.name(),
                                f.detail,
                                path.display()
                            ));
                        }
                        *sum.repeats.entry(f.kind).or_default() += 1;
                        sum.cut_hangs += u64::from(self.cut_hang && f.kind == Kind::Hang);
                    } else {
                        self.s.say.line(&format!(
                            "fuzz-peer: case {index} ({scenario}): {}: {}",
                            f.kind.name(),
                            f.detail
                        ));
                        let (f, path) = match self
                            .save(f, &case.steps, index, &scenario, &case.mutations)
                            .await
                            .map(|(f, path, alone)| {
                                if alone == Some(false) {
                                    sum.not_alone.push(path.clone());
                                }
                                (f, path)
                            }) {
                            Ok(saved) => saved,
                            // A finding that cannot be written is not reported as saved,
                            // and the campaign stops: it could keep none of what it finds.
                            Err(e) => {
                                sum.stopped = Some(e);
                                played += 1;
                                break;
                            }
                        };
                        // Known by what the target said both before and after minimising.
                        self.saved.insert(sig, path.clone());
                        self.saved.insert(signature(&f), path.clone());
                        sum.findings.push((f, path));
                        if self.s.stop.is_stopped() {
                            sum.interrupted = true;
                            played += 1;
                            break;
                        }
                    }
                    // Time up already (minimising took it): nothing more to start.
                    if self.s.time.is_some_and(|t| start.elapsed() >= t) {
                        if std::mem::take(&mut self.ran_out_restarting) {
                            sum.out_of_time = Some(Underway::Restart);
                        }
                        played += 1;
                        break;
                    }
                    let recovered = tokio::select! {
                        r = self.recover() => r,
                        () = stop.stopped() => {
                            sum.interrupted = true;
                            played += 1;
                            break;
                        }
                        () = &mut out_of_time => {
                            sum.out_of_time = Some(Underway::Restart);
                            played += 1;
                            break;
                        }
                    };
                    if let Err(e) = recovered {
                        sum.stopped = Some(e);
                        played += 1;
                        break;
                    }
                }
                Err(e) => {
                    sum.stopped = Some(e);
                    break;
                }
            }
            played += 1;
            if let Some(every) = self.s.progress {
                if last_progress.elapsed() >= every {
                    last_progress = Instant::now();
                    let secs = start.elapsed().as_secs_f64();
                    self.s.say.line(&format!(
                        "fuzz-peer: {played} cases ({:.1}/s), {} findings ({} repeats), {} restarts, {:.0} s",
                        played as f64 / secs.max(1e-9),
                        sum.findings.len(),
                        sum.repeats.values().sum::<u64>(),
                        self.restarts - restarts_before,
                        secs
                    ));
                }
            }
        }
        sum.cases = played;
        sum.restarts = self.restarts - restarts_before;
        sum.unconnected = self.unconnected;

        sum.elapsed = start.elapsed();
        self.process.kill();
        sum
    }

    /// After a finding: a dead server target is started again (or the campaign stops, when
    /// there is no command to start it).
    async fn recover(&mut self) -> Result<(), String> {
        if !matches!(self.s.mode, Mode::Connect { .. }) {
            return Ok(());
        }
        // Memory a target holds stays held: past --max-rss, every later case (and every
        // try at minimising a `grows` finding, even an empty one) would be judged on what
        // an earlier case made it hold. A target the campaign starts is started afresh.
        // Minimising a `grows` finding, every try starts from a fresh target: memory an
        // earlier try made it hold may show only after that try was judged.
        let grown = self.past_max_rss() || self.afresh;
        if !grown && self.server_alive().await {
            return Ok(());
        }
        if self.process.exec.is_none() {
            if grown {
                // Watched by --pid: nothing to start afresh (see the campaign's warning).
                return Ok(());
            }
            return Err("the target is down and there is no --exec to start it again".into());
        }
        self.restarts += 1;
        if grown {
            self.process.note("the target is past --max-rss: started again")?;
        } else {
            self.process.note("the target is down: started again")?;
        }
        self.start_server().await
    }

    /// Whether the target's resident memory is past `--max-rss`.
    fn past_max_rss(&self) -> bool {
        let rss = self.s.max_rss_kib.and_then(|max| Some((max, self.process.rss_kib()?)));
        rss.is_some_and(|(max, rss)| rss > max)
    }

    /// Whether a server target answers the probe.
    async fn server_alive(&mut self) -> bool {
        self.process.ended().is_none() && self.probe().await.is_none()
    }

    /// Plays one case (a script's text) and judges what the target did: `Ok(None)` when
    /// nothing is wrong, `Err` when the campaign cannot go on.
    pub async fn judge(&mut self, text: &str) -> Result<Option<Finding>, String> {
        self.process.set_mark();
        self.evidence.clear();
        self.cut_hang = false;
        self.header_only = false;
        self.failed_exit = false;
        let f = match self.s.mode.clone() {
            Mode::Connect { endpoint, tls } => self.judge_server(text, &endpoint, &tls).await?,
            Mode::Listen { .. } => self.judge_client(text).await?,
        };
        Ok(f.map(|(kind, detail)| Finding {
            kind,
            detail,
            last_words: self.process.last_words(),
            evidence: std::mem::take(&mut self.evidence),
        }))
    }

    async fn judge_server(
        &mut self,
        text: &str,
        endpoint: &Endpoint,
        tls: &ClientTlsConfig,
    ) -> Result<Option<(Kind, String)>, String> {
        let received = match transport::connect_within(endpoint, tls, self.handshake_limit()).await
        {
            Ok(io) => play_case(text, self.s.within, io).await?,
            // Accepted and then silent in its handshake: the probe judges the hang.
            Err(transport::TransportError::Timeout { .. }) => Vec::new(),
            Err(e) => return Ok(Some(self.why_unreachable(&e.to_string()).await)),
        };
        if let Some(f) = self.probe().await {
            return Ok(Some(f));
        }
        let ended = match self.settle {
            Some(d) => self.process.ended_within(d).await,
            None => self.process.ended(),
        };
        if let Some(how) = ended {
            return Ok(Some((Kind::Crash, format!("the target's process ended: {how}"))));
        }
        if let Some(fault) = strict_fault(&received).filter(|_| !leaves_amqp10_text(text)) {
            self.evidence = fault.frame;
            return Ok(Some((Kind::Malformed, fault.what)));
        }
        if let (Some(max), Some(rss)) = (self.s.max_rss_kib, self.process.rss_kib()) {
            if rss > max {
                return Ok(Some((
                    Kind::Grows,
                    format!("resident memory {rss} KiB, past the bound of {max} KiB"),
                )));
            }
        }
        Ok(None)
    }

    /// Why a server cannot be reached: its process ended, or it stopped accepting.
    async fn why_unreachable(&mut self, err: &str) -> (Kind, String) {
        match self.process.ended_within(Duration::from_secs(2)).await {
            Some(how) => (Kind::Crash, format!("the target's process ended: {how}")),
            None if self.process.pid.is_none() && self.process.child.is_none() => {
                (Kind::Crash, format!("the target stopped accepting connections: {err}"))
            }
            None => (Kind::Refuses, format!("the process lives but refuses connections: {err}")),
        }
    }

    /// Plays the probe over `io`: its verdict.
    async fn play_probe(&self, io: transport::Transport) -> Result<(), Failure> {
        let steps = match parse(&self.probe_steps, self.s.probe_within) {
            Ok(s) => s,
            Err(e) => {
                return Err(Failure { step: 0, expected: "a probe that parses".into(), got: e })
            }
        };
        let mut p = Player::new(steps);
        play(&mut p, io).await;
        match p.verdict() {
            Some(v) => v.clone(),
            None => Err(Failure {
                step: 0,
                expected: "the probe to finish".into(),
                got: "no verdict".into(),
            }),
        }
    }

    /// Probes a server target; a finding when it is dead, hung or not serving.
    async fn probe(&mut self) -> Option<(Kind, String)> {
        let Mode::Connect { endpoint, tls } = self.s.mode.clone() else { return None };
        let mut unanswered = None;
        // Two tries: one unanswered probe may be a target busy with the case before.
        for _ in 0..2 {
            let io = match transport::connect_within(&endpoint, &tls, self.handshake_limit()).await
            {
                Ok(io) => io,
                Err(transport::TransportError::Timeout { limit, .. }) => {
                    unanswered = Some((
                        Kind::Hang,
                        format!(
                            "a probe's connection got no answer within {limit:?} in its TCP, TLS or \
                             WebSocket handshake (twice)"
                        ),
                    ));
                    continue;
                }
                Err(e) => return Some(self.why_unreachable(&e.to_string()).await),
            };
            match self.play_probe(io).await {
                Ok(()) => return None,
                Err(f) if f.got.starts_with("nothing within") => {
                    unanswered = Some((
                        Kind::Hang,
                        format!(
                            "a probe got no answer within {:?} at step {} (twice)",
                            self.s.probe_within, f.step
                        ),
                    ));
                }
                Err(f) if f.got == "the peer closed" => {
                    if let Some(how) = self.process.ended_within(Duration::from_secs(2)).await {
                        return Some((Kind::Crash, format!("the target's process ended: {how}")));
                    }
                    unanswered = Some((
                        Kind::Refuses,
                        format!("probes are closed unanswered (at step {}, twice)", f.step),
                    ));
                }
                // Any other answer: the target is alive and speaking.
                _ => return None,
            }
        }
        unanswered
    }

    async fn judge_client(&mut self, text: &str) -> Result<Option<(Kind, String)>, String> {
        let Some((tcp, endpoint, config)) = &self.listener else {
            return Err("no listener".into());
        };
        let url = endpoint.to_string();
        self.process.start(&url, endpoint.port)?;
        let limit = self.handshake_limit();
        let accepted = tokio::select! {
            a = tcp.accept() => Some(a),
            () = tokio::time::sleep(limit * 4) => None,
            () = wait_ended(&mut self.process) => None,
        };
        let Some(Ok((stream, _))) = accepted else {
            // The client never came: judged by how it ended, if it did.
            let ended = self.process.ended();
            self.process.kill();
            self.unconnected += 1;
            return match ended {
                Some(how) if how.starts_with("killed") => {
                    Ok(Some((Kind::Crash, format!("the client ended before connecting: {how}"))))
                }
                // Before any case: the command is wrong, not the client.
                _ if self.connected == 0 => Err(format!(
                    "the client ({}) never connected; its output is in {}",
                    ended.unwrap_or_else(|| "still running".into()),
                    self.process.log.display()
                )),
                _ => Ok(None),
            };
        };
        self.connected += 1;
        let received = match transport::accept_within(stream, endpoint, config, limit).await {
            Ok(io) => Some(play_case(text, self.s.within, io).await?),
            // Connected, and then silent in its TLS or WebSocket handshake.
            Err(transport::TransportError::Timeout { what, limit }) => {
                self.process.kill();
                return Ok(Some((Kind::Hang, format!("{what} did not finish within {limit:?}"))));
            }
            // A TLS or WebSocket handshake that failed: nothing of AMQP was played.
            Err(_) => None,
        };
        self.header_only = received.as_ref().is_some_and(|r| r.len() <= 8);
        let received = received.unwrap_or_default();
        // Once a plain hang is saved, a client still running after the limit alone is taken
        // for a repeat of it (what it sent is still judged; a crash or a hang with telling
        // last words that would have come later is missed: docs/fuzz-peer.md says so).
        // Minimising waits the full time.
        let wait = if self.cut_hang_wait { limit } else { limit * 4 };
        let ended = self.process.ended_within(wait).await;
        self.cut_hang = ended.is_none() && self.cut_hang_wait;
        self.failed_exit =
            ended.as_deref().is_some_and(|h| h.starts_with("exit status") && h != "exit status 0");
        let malformed = |me: &mut Self| {
            strict_fault(&received).filter(|_| !leaves_amqp10_text(text)).map(|f| {
                me.evidence = f.frame;
                (Kind::Malformed, f.what)
            })
        };
        let f = match ended {
            Some(how) if how.starts_with("killed") => {
                Some((Kind::Crash, format!("the client's process ended: {how}")))
            }
            // A known hang: what the client sent may still hold a new finding.
            None if self.cut_hang => malformed(self).or_else(|| {
                Some((Kind::Hang, format!("the client did not end within {wait:?} of the case")))
            }),
            None => {
                Some((Kind::Hang, format!("the client did not end within {wait:?} of the case")))
            }
            Some(_) => malformed(self),
        };
        self.process.kill();
        Ok(f)
    }

    /// Minimises a finding's case and writes it to a file: the finding as reproduced and
    /// the file, or why it could not be written.
    async fn save(
        &mut self,
        f: Finding,
        steps_as_found: &[Json],
        index: u64,
        scenario: &str,
        mutations: &[String],
    ) -> Result<(Finding, PathBuf, Option<bool>), String> {
        // A crash is reproduced with time for the target to die after the probe answered.
        let settle = self.settle;
        if f.kind == Kind::Crash {
            self.settle = Some(self.settle_time());
        }
        let saved = self.save_minimised(f, steps_as_found, index, scenario, mutations).await;
        self.settle = settle;
        saved
    }

    /// [`save`](Self::save)'s work.
    async fn save_minimised(
        &mut self,
        f: Finding,
        steps_as_found: &[Json],
        index: u64,
        scenario: &str,
        mutations: &[String],
    ) -> Result<(Finding, PathBuf, Option<bool>), String> {
        let before = steps_as_found.len();
        let want = signature(&f);
        let first_case = self.first_case_of_start;
        let (mut steps, f, mut cut_short) = self.minimise(steps_as_found.to_vec(), f).await;
        // Minimising restarts the target only when it dies: a try may bring the finding
        // back through what earlier cases and tries left in the target. The case saved is
        // tried alone on a freshly started one; if it does not come back, the case as it
        // was found is, and if that does not either, the file says it needs earlier cases.
        let mut alone = self.comes_back_alone(&steps, &want).await;
        let mut alone_note = match alone {
            Some(true) => Some("comes back alone on a freshly started target".to_owned()),
            _ => None,
        };
        if alone == Some(false) && steps.len() != before {
            let found = self.comes_back_alone(steps_as_found, &want).await;
            if found.is_none() {
                // Not known for the case as found: saved as found, said so, no verdict.
                steps = steps_as_found.to_vec();
                alone = None;
                cut_short = Some(
                    "the minimised steps did not bring it back on a freshly started target, \
                     and the case as found could not be tried alone (the campaign stopped \
                     or ran out of time)"
                        .into(),
                );
            }
            if found == Some(true) {
                steps = steps_as_found.to_vec();
                alone = found;
                cut_short = Some(
                    "the minimised steps did not bring it back on a freshly started target \
                     (the tries leaned on what earlier ones left in it); saved as found, which \
                     does"
                        .into(),
                );
                alone_note = Some("comes back alone on a freshly started target".into());
            }
        }
        if alone == Some(false) {
            // What brought it back is not in the case alone: keep the case as it was found.
            steps = steps_as_found.to_vec();
            cut_short = Some("it does not come back alone (below)".into());
            alone_note = Some(format!(
                "does not come back alone on a freshly started target: it needs what earlier \
                 cases did to the target; cases {first_case} to {index} (of seed {}) were \
                 played against one start of it, and the regenerate line below with \
                 --first-case {first_case} --cases {} plays them again",
                self.s.seed,
                index.saturating_sub(first_case).saturating_add(1)
            ));
        }
        // After the findings in the folder, this campaign's and any other's; one made
        // between looking and creating is stepped over.
        let mut n = next_finding_number(&self.s.findings);
        let (path, mut file) = loop {
            let path = self.s.findings.join(format!("finding-{n:03}-{}.jsonl", f.kind.name()));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < u64::MAX => {
                    n += 1;
                }
                Err(e) => return Err(self.unsaved(&path, &e, &f, index)),
            }
        };
        let mut out = String::new();
        out.push_str(&format!("# amqpwire fuzz-peer finding {n}: {}\n", f.kind.name()));
        out.push_str(&format!("# {}\n", f.detail));
        out.push_str(&format!("# signature: {}\n", signature(&f)));
        if !f.evidence.is_empty() {
            out.push_str(&format!("# the target's frame: {}\n", f.evidence));
            out.push_str("# (decoded: amqpwire decode --strict --hex FRAME)\n");
        }
        for l in worth_keeping(&f.last_words) {
            out.push_str(&format!("# target: {l}\n"));
        }
        out.push_str(&format!("# seed {}, case {index}, scenario {scenario}\n", self.s.seed));
        for m in mutations {
            out.push_str(&format!("# mutation: {m}\n"));
        }
        if let Some(note) = &alone_note {
            out.push_str(&format!("# {note}\n"));
        }
        match cut_short {
            Some(why) if steps.len() == before => {
                out.push_str(&format!("# not minimised: {why}\n"));
            }
            Some(why) => out.push_str(&format!(
                "# minimised from {before} steps to {} (then stopped: {why})\n",
                steps.len()
            )),
            None => {
                out.push_str(&format!("# minimised from {before} steps to {}\n", steps.len()));
            }
        }
        // The path as the campaign was given it: the line runs from where the campaign ran.
        let file_word = shell_word(&path.display().to_string());
        out.push_str(&format!(
            "# replay: amqpwire fuzz-peer --replay {file_word} {}\n",
            self.s.target_args
        ));
        // Into the same folder, where it adds to the findings there.
        let dir_word = shell_word(&self.s.findings.display().to_string());
        out.push_str(&format!(
            "# regenerate: amqpwire fuzz-peer --seed {} --first-case {index} --cases 1 \
             --findings={dir_word} {}\n",
            self.s.seed, self.s.target_args
        ));
        out.push_str(&lines(&steps));
        if let Err(e) = file.write_all(out.as_bytes()).and_then(|()| file.sync_all()) {
            // The file is this campaign's own (made above): nothing is kept half written.
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(self.unsaved(&path, &e, &f, index));
        }
        Ok((f, path, alone))
    }

    /// Whether `steps` bring the finding (its signature `want`) back on a freshly started
    /// target: `None` where that cannot be tried (a client, or a server the campaign does
    /// not start) or the campaign stopped or ran out of time meanwhile.
    async fn comes_back_alone(&mut self, steps: &[Json], want: &str) -> Option<bool> {
        if !matches!(self.s.mode, Mode::Connect { .. }) || self.process.exec.is_none() {
            return None;
        }
        let stop = self.s.stop.clone();
        let campaign_end = self.campaign_end;
        if stop.is_stopped() || campaign_end.is_some_and(|e| Instant::now() >= e) {
            return None;
        }
        let text = lines(steps);
        let mut started = false;
        let judged = tokio::select! {
            j = async {
                self.process.note("the finding tried alone, the target started afresh")?;
                self.restarts += 1;
                self.start_server().await?;
                started = true;
                self.judge(&text).await
            } => j,
            () = stop.stopped() => return None,
            () = sleep_until_or_never(campaign_end) => {
                self.ran_out_restarting = !started;
                return None;
            }
        };
        match judged {
            Ok(Some(g)) => Some(signature(&g) == want),
            Ok(None) => Some(false),
            Err(_) => None,
        }
    }

    /// Why a finding is not saved, with what it was, so that the campaign's last words
    /// keep it.
    fn unsaved(&self, path: &Path, e: &std::io::Error, f: &Finding, index: u64) -> String {
        format!(
            "cannot write {}: {e} (the finding: {}: {}, seed {}, case {index})",
            path.display(),
            f.kind.name(),
            f.detail,
            self.s.seed
        )
    }

    /// Removes steps while the same finding (same kind and signature) still comes back,
    /// within the time budget: runs of steps first (half the case, then a quarter, …),
    /// then single steps, so that a case of two thousand repeated transfers shrinks in a
    /// few tries. Also says why it stopped short, if it did (out of time, stopped, the
    /// target down for good).
    async fn minimise(
        &mut self,
        mut steps: Vec<Json>,
        mut f: Finding,
    ) -> (Vec<Json>, Finding, Option<String>) {
        if self.s.minimise.is_zero() {
            return (steps, f, Some("--minimise 0".into()));
        }
        let want = signature(&f);
        let before = steps.len();
        self.afresh = f.kind == Kind::Grows && self.process.exec.is_some();
        let found = self.minimise_steps(&mut steps, &mut f, want, before).await;
        self.afresh = false;
        (steps, f, found)
    }

    /// [`Campaign::minimise`]'s tries.
    async fn minimise_steps(
        &mut self,
        steps: &mut Vec<Json>,
        f: &mut Finding,
        want: String,
        before: usize,
    ) -> Option<String> {
        let start = Instant::now();
        // A budget past what the clock holds is no limit.
        let until = start.checked_add(self.s.minimise);
        let mut last_progress = start;
        let _ = self.process.note("minimising the finding above");
        let stop = self.s.stop.clone();
        let campaign_end = self.campaign_end;
        let seconds = self.s.time.map_or(0, |t| t.as_secs());
        let out_of_time = || format!("--seconds {seconds} ran out");
        // The first step (the protocol header) stays.
        let mut chunk = (steps.len() / 2).max(1);
        loop {
            let mut changed = false;
            let mut end = steps.len();
            while end > 1 {
                let from = end.saturating_sub(chunk).max(1);
                if until.is_some_and(|u| Instant::now() >= u) {
                    return Some(format!("--minimise {} s ran out", self.s.minimise.as_secs()));
                }
                if campaign_end.is_some_and(|e| Instant::now() >= e) {
                    return Some(out_of_time());
                }
                if stop.is_stopped() {
                    return Some(STOPPED.into());
                }
                // Starting a dead target again (up to 30 s) is bounded like a try.
                let recovered = tokio::select! {
                    r = self.recover() => r,
                    () = stop.stopped() => return Some(STOPPED.into()),
                    () = sleep_until_or_never(campaign_end) => return Some(out_of_time()),
                };
                if let Err(why) = recovered {
                    return Some(why);
                }
                if self.s.progress.is_some_and(|e| last_progress.elapsed() >= e) {
                    last_progress = Instant::now();
                    self.s.say.line(&format!(
                        "fuzz-peer: minimising: {} of {before} steps left, {:.0} s of {} s",
                        steps.len(),
                        start.elapsed().as_secs_f64(),
                        self.s.minimise.as_secs()
                    ));
                }
                let mut shorter = steps.clone();
                shorter.drain(from..end);
                let text = lines(&shorter);
                let judged = tokio::select! {
                    j = self.judge(&text) => j,
                    () = stop.stopped() => return Some(STOPPED.into()),
                    // The campaign's time bounds its minimisations too.
                    () = sleep_until_or_never(campaign_end) => return Some(out_of_time()),
                };
                // The same failure, not merely the same kind: a shorter case that crashes
                // the target elsewhere is another finding.
                if let Ok(Some(g)) = judged {
                    if signature(&g) == want {
                        *steps = shorter;
                        *f = g;
                        changed = true;
                    }
                }
                end = from;
            }
            if !changed {
                if chunk == 1 {
                    // The campaign sees a target still down, and starts it, after this.
                    tokio::select! {
                        _ = self.recover() => {}
                        () = stop.stopped() => {}
                        () = sleep_until_or_never(campaign_end) => {}
                    }
                    return None;
                }
                chunk = (chunk / 2).max(1);
            }
        }
    }
}

/// What a campaign was doing when its time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Underway {
    /// Judging a case: the case is dropped, not judged.
    Case,
    /// Starting the target again after a finding.
    Restart,
}

/// Why minimising stopped, when the campaign was told to stop.
const STOPPED: &str = "the campaign was stopped";

/// Sleeps until `end`, or forever without one.
async fn sleep_until_or_never(end: Option<Instant>) {
    match end {
        Some(end) => tokio::time::sleep_until(end.into()).await,
        None => std::future::pending().await,
    }
}

/// The number after the highest `finding-NNN-…` in `dir` (1 in an empty folder), so that a
/// campaign run again in the same folder adds its findings to those there.
fn next_finding_number(dir: &Path) -> u64 {
    let highest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("finding-")?.split('-').next()?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0);
    highest.saturating_add(1)
}

/// Case `index` of a campaign over `scenarios` with `seed`: the scenario's name and the
/// mutated script. The same arguments give the same case.
pub fn case(
    scenarios: &[(String, Vec<Json>)],
    seed: u64,
    index: u64,
) -> (String, crate::fuzzpeer::mutate::Mutated) {
    let mut pick = Rng::for_case(seed ^ 0x5ce7_a410, index);
    let (name, base) = &scenarios[pick.below(scenarios.len())];
    (name.clone(), mutate(base, seed, index))
}

/// Waits until the process ends (forever, without one).
async fn wait_ended(p: &mut Process) {
    loop {
        if p.child.is_some() && p.ended().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Plays a case over `io`; what the peer sent.
async fn play_case(
    text: &str,
    within: Duration,
    io: transport::Transport,
) -> Result<Vec<u8>, String> {
    // A case that does not parse (a mutation the encoder refuses) is played as nothing,
    // and judged as the target is after it: one bad case does not end the campaign.
    let steps = match parse(text, within) {
        Ok(steps) => steps,
        Err(e) => {
            tracing::warn!(target: "amqpwire::fuzz_peer", "a case that does not parse: {e}");
            Vec::new()
        }
    };
    let mut p = Player::new(steps).keep_input();
    // A case ends by itself (every wait is bounded); the bound here only guards against a
    // peer that keeps the player busy forever.
    let _ = tokio::time::timeout(Duration::from_secs(120), play(&mut p, io)).await;
    Ok(p.received().to_vec())
}

/// [`leaves_amqp10`](crate::fuzzpeer::leaves_amqp10) for a case's text.
fn leaves_amqp10_text(text: &str) -> bool {
    let steps: Vec<Json> =
        crate::script::json_lines(text).filter_map(|l| l.ok().map(|(_, j)| j)).collect();
    crate::fuzzpeer::leaves_amqp10(&steps)
}

/// Steps as JSON lines.
pub fn lines(steps: &[Json]) -> String {
    let mut s = String::new();
    for l in steps {
        s.push_str(&l.to_string());
        s.push('\n');
    }
    s
}

/// The steps of a saved finding or any script file (comments and blank lines skipped),
/// checked as `amqpwire script` checks a script (`within` for its waits), and the file's
/// text: a typo in an edited finding is refused with its line, not played as nothing.
pub fn read_steps(path: &Path, within: Duration) -> Result<(Vec<Json>, String), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text, within).map_err(|e| format!("{}: {e}", path.display()))?;
    let steps = crate::script::json_lines(&text)
        .map(|l| l.map(|(_, j)| j))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((steps, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A started target's log in a folder of its own, with a limit of `limit` bytes.
    fn logged(name: &str, limit: u64) -> Process {
        let dir = std::env::temp_dir().join(format!("amqpwire-log-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("folder");
        Process {
            child: None,
            stop: Stop::default(),
            pid: None,
            exec: Some("true".into()),
            log: dir.join("target.log"),
            mark: 0,
            log_limit: limit,
        }
    }

    /// Appends as a target does (its own `O_APPEND` descriptor, kept across cases).
    fn append(f: &mut std::fs::File, text: &str) {
        f.write_all(text.as_bytes()).expect("write");
    }

    #[test]
    fn a_log_past_its_limit_moves_aside_and_the_target_writes_on_at_its_start() {
        let mut p = logged("limit", 100);
        let mut target =
            std::fs::OpenOptions::new().create(true).append(true).open(&p.log).expect("log");
        append(&mut target, &"old line\n".repeat(8)); // 72 bytes: under the limit
        p.keep_log_small().expect("checked");
        p.set_mark();
        assert_eq!(p.mark, 72);
        append(&mut target, &"case line\n".repeat(5)); // 122 bytes: over it
        assert!(p.last_words().starts_with("case line"), "{}", p.last_words());
        p.keep_log_small().expect("moved");
        p.note("case 2 (x)").expect("noted");
        p.set_mark();
        let older = std::fs::read_to_string(p.log.with_extension("log.1")).expect("target.log.1");
        assert!(older.starts_with("old line") && older.ends_with("case line\n"), "{older}");
        let now = std::fs::read_to_string(&p.log).expect("target.log");
        let lines: Vec<&str> = now.lines().collect();
        assert!(lines[0].starts_with("=== amqpwire fuzz-peer: the log before this line is in "));
        assert_eq!(lines[1..], ["=== amqpwire fuzz-peer: case 2 (x)"], "the case's line is kept");
        assert_eq!(p.mark, now.len() as u64);
        // The target's descriptor appends at the new end, not where it was.
        append(&mut target, "Error: boom\n");
        assert_eq!(p.last_words(), "Error: boom");
        assert_eq!(std::fs::metadata(&p.log).expect("log").len(), p.mark + 12);
        let _ = std::fs::remove_dir_all(p.log.parent().expect("folder"));
    }

    #[test]
    fn last_words_are_the_end_of_a_case_that_wrote_a_lot() {
        let mut p = logged("words", TARGET_LOG_LIMIT);
        let mut target =
            std::fs::OpenOptions::new().create(true).append(true).open(&p.log).expect("log");
        p.set_mark();
        append(&mut target, &"chatter chatter chatter\n".repeat(100_000)); // 2.4 MB
        append(&mut target, "thread 'main' panicked at src/x.rs:1:1\n");
        let words = p.last_words();
        assert!(words.ends_with("panicked at src/x.rs:1:1"), "{}", &words[words.len() - 80..]);
        assert_eq!(words.lines().count(), 80);
        let _ = std::fs::remove_dir_all(p.log.parent().expect("folder"));
    }

    #[test]
    fn a_shell_word_comes_back_as_the_same_single_argument() {
        let values = [
            "plain-1.2/x:y@z%+,",
            "",
            "two words",
            "it's",
            "$iothub/websocket?a=1&b=2",
            "$(touch /nonexistent/x)",
            "a{1,2}",
            "=ls",
            "-Xy7",
            "line one\nline two\tand a tab \\ and 'quotes'",
            "bell \u{7} and next line \u{85}",
        ];
        for v in values {
            let word = shell_word(v);
            assert!(!word.contains('\n'), "{word}");
            // The shells people paste a finding's lines into: printf prints the one
            // argument it gets, and `|` marks where arguments end.
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("printf '%s|' {word}"))
                .output()
                .expect("bash");
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{v}|"), "{word}");
        }
    }

    #[test]
    fn leading_assignments_of_an_exec_command_stay_before_exec() {
        assert_eq!(exec_line("node server.js --port 1"), "exec node server.js --port 1");
        assert_eq!(exec_line("  PEER_QUIET=1 python3 c.py"), "PEER_QUIET=1 exec python3 c.py");
        assert_eq!(exec_line("A=1 _B2=x  ./t {url}"), "A=1 _B2=x  exec ./t {url}");
        // Not assignments: a quoted or expanded value, a name that is not one, an `=` in
        // an argument, a command that is only assignments.
        assert_eq!(exec_line("A='x y' t"), "exec A='x y' t");
        assert_eq!(exec_line("A=$HOME t"), "exec A=$HOME t");
        assert_eq!(exec_line("1A=1 t"), "exec 1A=1 t");
        assert_eq!(exec_line("t --opt=1"), "exec t --opt=1");
        assert_eq!(exec_line("A=1"), "exec A=1");
    }

    #[test]
    fn a_malformed_answer_is_known_by_its_fault_wherever_it_is() {
        let f = |detail: &str| Finding {
            kind: Kind::Malformed,
            detail: detail.into(),
            last_words: String::new(),
            evidence: String::new(),
        };
        let a = signature(&f("frame at offset 539: at offset 592: string is not valid UTF-8"));
        let b = signature(&f("frame at offset 675: at offset 728: string is not valid UTF-8"));
        assert_eq!(a, "malformed string is not valid UTF-8");
        assert_eq!(a, b);
        assert_eq!(
            signature(&f("framing: at offset 8: frame size 4 is below the minimum of 8")),
            "malformed framing: at offset 8: frame size 4 is below the minimum of 8"
        );
        let crash =
            Finding { kind: Kind::Crash, ..f("the target's process ended: killed by signal 11") };
        assert_eq!(signature(&crash), "crash killed by signal 11");
        let node = Finding {
            last_words: "boom\nTypeError: Cannot read properties of null (reading 'x')\n    at f (a.js:1:2)\n    at g (b.js:3:4)".into(),
            ..crash
        };
        assert_eq!(signature(&node), "crash TypeError at f (a.js:1:2)");
    }

    /// A Python target's stack comes before its error: two errors of the same type raised
    /// in two places are two findings, and the finding keeps the traceback. Go's panics
    /// are known by the function that panicked.
    #[test]
    fn python_and_go_crashes_are_known_by_where_they_were_raised() {
        let crash = |last_words: &str| Finding {
            kind: Kind::Crash,
            detail: "the target's process ended: exit status 1".into(),
            last_words: last_words.into(),
            evidence: String::new(),
        };
        let python = |place: &str, what: &str| {
            format!(
                "=== amqpwire fuzz-peer: case 3 (open)\nserving\n\
                 Traceback (most recent call last):\n  \
                 File \"/t/server.py\", line 40, in <module>\n    serve()\n  \
                 File \"/t/server.py\", line {place}\n    raise ValueError(\"bad {what} 0\")\n\
                 ValueError: bad {what} 0"
            )
        };
        let size = crash(&python("12, in check_size", "size"));
        let doff = crash(&python("20, in check_doff", "doff"));
        assert_eq!(
            signature(&size),
            r#"crash ValueError File "/t/server.py", line 12, in check_size"#
        );
        assert_ne!(signature(&size), signature(&doff));
        // The same place, another value: the same finding.
        let again = crash(&python("12, in check_size", "size").replace("bad size 0", "bad size 9"));
        assert_eq!(signature(&size), signature(&again));
        let kept = worth_keeping(&size.last_words);
        assert_eq!(kept.first(), Some(&"Traceback (most recent call last):"), "{kept:?}");
        assert_eq!(kept.last(), Some(&"ValueError: bad size 0"), "{kept:?}");
        // A chained exception: the place of the last one raised.
        let chained = crash(
            "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\n    x()\n\
             KeyError: 'k'\n\nDuring handling of the above exception, another exception occurred:\n\n\
             Traceback (most recent call last):\n  File \"a.py\", line 3, in g\n    y()\n\
             TypeError: no",
        );
        assert_eq!(signature(&chained), r#"crash TypeError File "a.py", line 3, in g"#);
        // An error line with no traceback above it (a message a server logs) keeps the
        // lines after it, as before.
        // An exception whose type says neither Error nor Exception: known by its type and
        // its innermost place too.
        let other = |place: &str| {
            crash(&format!(
                "Traceback (most recent call last):\n  File \"s.py\", line 9, in <module>\n    serve()\n  \
                 File \"s.py\", line {place}\n    struct.unpack('>I', b)\n\
                 struct.error: unpack requires a buffer of 4 bytes"
            ))
        };
        assert_eq!(
            signature(&other("30, in read_size")),
            r#"crash struct.error File "s.py", line 30, in read_size"#
        );
        assert_ne!(signature(&other("30, in read_size")), signature(&other("44, in read_doff")));
        let size = other("30, in read_size");
        let kept = worth_keeping(&size.last_words);
        assert_eq!(kept.last(), Some(&"struct.error: unpack requires a buffer of 4 bytes"));
        // Rust panics by their place, line and column, whatever the thread; C++ by the
        // type thrown.
        let rust = |text: &str| signature(&crash(text));
        assert_eq!(
            rust("thread 'main' panicked at src/frame.rs:10:5:\nattempt to subtract with overflow"),
            "crash panicked at src/frame.rs:10:5"
        );
        assert_eq!(
            rust(
                "thread 'tokio-runtime-worker' panicked at src/frame.rs:10:5:\nindex out of bounds"
            ),
            "crash panicked at src/frame.rs:10:5"
        );
        assert_ne!(
            rust("thread 'main' panicked at src/frame.rs:10:5:\nx"),
            rust("thread 'main' panicked at src/frame.rs:44:9:\nx")
        );
        assert_eq!(
            rust("thread 'main' panicked at 'called `Option::unwrap()`, on None', src/a.rs:3:7"),
            "crash panicked at src/a.rs:3:7"
        );
        let cpp = |ty: &str| {
            signature(&crash(&format!(
                "terminate called after throwing an instance of '{ty}'\n  what():  bad frame"
            )))
        };
        assert_eq!(
            cpp("std::runtime_error"),
            "crash terminate called after throwing an instance of 'std::runtime_error'"
        );
        assert_ne!(cpp("std::runtime_error"), cpp("std::out_of_range"));
        // The JVM: by the root cause (the last `Caused by:`) and its innermost frame, not
        // by the wrapper every fault shares; suppressed exceptions' causes are not it.
        let jvm = |root: &str, frame: &str| {
            crash(&format!(
                "Exception in thread \"main\" java.lang.RuntimeException: handler failed\n\
                 \tat org.amqp.Conn.dispatch(Conn.java:88)\n\
                 \tat org.amqp.Conn.run(Conn.java:40)\n\
                 \tSuppressed: java.io.IOException: close failed\n\
                 \t\tat org.amqp.Conn.close(Conn.java:99)\n\
                 \t\tCaused by: java.lang.IllegalStateException: closed\n\
                 \t\t\tat org.amqp.Sock.close(Sock.java:7)\n\
                 Caused by: java.io.UncheckedIOException: frame\n\
                 \tat org.amqp.Frames.next(Frames.java:12)\n\
                 \t... 2 more\n\
                 Caused by: {root}: bad value 7\n\
                 \tat {frame}\n\
                 \tat org.amqp.Codec.read(Codec.java:30)\n\
                 \t... 4 more\n\
                 server stopped"
            ))
        };
        let size = jvm("java.lang.IllegalArgumentException", "org.amqp.Codec.size(Codec.java:51)");
        assert_eq!(
            signature(&size),
            "crash java.lang.IllegalArgumentException at org.amqp.Codec.size(Codec.java:51)"
        );
        assert_ne!(
            signature(&size),
            signature(&jvm(
                "java.lang.IllegalArgumentException",
                "org.amqp.Codec.type(Codec.java:70)"
            ))
        );
        assert_ne!(
            signature(&size),
            signature(&jvm("java.lang.ArithmeticException", "org.amqp.Codec.size(Codec.java:51)"))
        );
        let kept = worth_keeping(&size.last_words);
        assert!(kept[0].starts_with("Exception in thread"), "{kept:?}");
        assert!(
            kept.contains(&"Caused by: java.lang.IllegalArgumentException: bad value 7"),
            "{kept:?}"
        );
        // With no cause, the exception itself, as before.
        let plain = crash(
            "Exception in thread \"main\" java.lang.NullPointerException\n\
             \tat org.amqp.Conn.dispatch(Conn.java:88)",
        );
        assert_eq!(
            signature(&plain),
            "crash java.lang.NullPointerException at org.amqp.Conn.dispatch(Conn.java:88)"
        );
        // Node.js: by the target's innermost frame, past Node's own.
        let node = |frame: &str| {
            signature(&crash(&format!(
                "RangeError [ERR_OUT_OF_RANGE]: The value of \"offset\" is out of range.\n    \
                 at boundsError (node:internal/buffer:86:11)\n    \
                 at Buffer.readUInt32BE (node:internal/buffer:311:5)\n    \
                 at {frame}\n    \
                 at Connection.input (/srv/node_modules/rhea/lib/connection.js:500:20)"
            )))
        };
        assert_eq!(
            node("Reader.read_uint (/srv/node_modules/rhea/lib/types.js:608:28)"),
            "crash RangeError [ERR_OUT_OF_RANGE] at Reader.read_uint (/srv/node_modules/rhea/lib/types.js:608:28)"
        );
        assert_ne!(
            node("Reader.read_uint (/srv/node_modules/rhea/lib/types.js:608:28)"),
            node("Object.read_frame (/srv/node_modules/rhea/lib/frames.js:66:25)")
        );
        // Only Node's frames: the first of them.
        assert_eq!(
            signature(&crash("TypeError: x is not a function\n    at node:internal/main:1:1")),
            "crash TypeError at node:internal/main:1:1"
        );
        let other_thread = crash(
            "Exception in thread \"pool-1-thread-3\" java.lang.NullPointerException\n\
             \tat org.amqp.Conn.dispatch(Conn.java:88)",
        );
        assert_eq!(signature(&plain), signature(&other_thread));
        let logged = crash("ValueError: bad input\nretrying\nbye");
        assert_eq!(signature(&logged), "crash ValueError ");
        assert_eq!(worth_keeping(&logged.last_words), ["ValueError: bad input", "retrying", "bye"]);
        let go = crash(
            "panic: runtime error: index out of range [5] with length 3\n\n\
             goroutine 7 [running]:\nmain.(*conn).readFrame(0xc000010000)\n\t/t/main.go:31 +0x1d\n\
             main.serve()\n\t/t/main.go:12 +0x3a\nexit status 2",
        );
        assert_eq!(signature(&go), "crash panic main.(*conn).readFrame");
        let fatal = crash(
            "fatal error: concurrent map writes\n\ngoroutine 9 [running]:\n\
             runtime.throw({0x4b1a2e, 0x15})\n\t/go/src/runtime/panic.go:1077 +0x5c\n\
             main.store(...)\n\t/t/main.go:50",
        );
        assert_eq!(signature(&fatal), "crash fatal error main.store");
    }
}
