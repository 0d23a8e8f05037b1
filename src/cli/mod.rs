//! The subcommands.

pub(crate) mod certs;
pub(crate) mod client;
pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod fuzz_peer;
pub(crate) mod iothub;
pub(crate) mod proxy;
pub(crate) mod sas;
pub(crate) mod script;
pub(crate) mod serve;
pub(crate) mod trace;

/// Whether standard output carries a JSON trace (`--trace-json -`): what else a command
/// says (`listening on URL`, a demo's steps, a script's failure) then goes to standard
/// error, so that standard output is JSON lines alone (`serve --trace-json - | jq`).
static STDOUT_IS_TRACE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// See [`STDOUT_IS_TRACE`].
pub(crate) fn stdout_is_trace() -> bool {
    STDOUT_IS_TRACE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Standard output from now on carries the JSON trace.
pub(crate) fn trace_to_stdout() {
    STDOUT_IS_TRACE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Where a command's words (not its data) go: standard output, or standard error when
/// standard output carries the JSON trace.
pub(crate) fn words() -> Box<dyn std::io::Write> {
    if stdout_is_trace() {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    }
}
