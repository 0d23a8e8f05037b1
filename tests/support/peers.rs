//! Finding the third-party peers that `tests/peers/install.sh` installs, and the scratch
//! directories and logs of the tests that run them. A peer that is missing fails the test
//! with what to run; nothing is skipped.
#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Where the peers and their installer live.
pub(crate) const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers");

/// How to install the peers, for the message of a test that cannot find one.
pub(crate) const INSTALL: &str = "run tests/peers/install.sh (as root on Debian: it installs \
    node 20 with rhea and the Azure IoT Node SDKs, the Python venv with python-qpid-proton \
    and azure-eventhub, and RabbitMQ)";

/// Checks (once per test binary) that node runs and that each of `modules` is in
/// `tests/peers/node_modules`.
pub(crate) fn node_modules(modules: &'static [&'static str]) {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let node = Command::new("node").arg("--version").output();
        assert!(node.is_ok_and(|o| o.status.success()), "node does not run: {INSTALL}");
    });
    for module in modules {
        let p = Path::new(PEERS).join("node_modules").join(module).join("package.json");
        assert!(p.exists(), "{module} is not installed ({} is missing): {INSTALL}", p.display());
    }
}

/// The Python that can `import module`: the one `env_var` names, else the venv that
/// `tests/peers/install.sh` makes. Checked once per test binary and module.
pub(crate) fn venv_python(env_var: &str, module: &'static str, what: &str) -> PathBuf {
    static FOUND: OnceLock<std::sync::Mutex<Vec<(&'static str, PathBuf)>>> = OnceLock::new();
    let found = FOUND.get_or_init(Default::default);
    if let Some((_, p)) = found.lock().unwrap().iter().find(|(m, _)| *m == module) {
        return p.clone();
    }
    let python = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(PEERS).join(".venv/bin/python"));
    let ok = Command::new(&python).args(["-c", &format!("import {module}")]).output();
    assert!(
        ok.is_ok_and(|o| o.status.success()),
        "{what} is not installed ({} cannot import {module}): {INSTALL}",
        python.display()
    );
    found.lock().unwrap().push((module, python.clone()));
    python
}

/// A directory of its own for one test, removed at the end.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// `amqpwire-{kind}-{what}-{pid}-{n}` under the temporary directory.
    pub(crate) fn new(kind: &str, what: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("amqpwire-{kind}-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.0
    }

    /// A file in it.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The last 30 lines of a log, for a failure message.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A port on 127.0.0.1 that nothing listens on now, for a peer that must be told its port
/// before it starts (and may be started again on it). Taken from 20000 to 32767, below
/// the range the system draws ephemeral ports from (32768 and up on Linux): a port
/// `bind(0)` hands out and then frees can be handed to another test's listener or
/// outgoing connection before the peer binds it, which a port outside that range is not.
/// Tests pick from a point that differs by process and call, and check that it binds.
pub(crate) fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const LOW: usize = 20_000;
    const SPAN: usize = 12_768;
    let salt = std::process::id() as usize * 7_919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as usize);
    let start = salt + NEXT.fetch_add(1, Ordering::Relaxed) * 97;
    (0..SPAN)
        .map(|i| (LOW + (start + i * 131) % SPAN) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port from 20000 to 32767")
}
