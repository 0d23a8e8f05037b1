//! The ladder view, loaded in a real browser (headless Chromium, installed by
//! tests/peers/install.sh): the page runs without an error and draws one arrow per frame,
//! for a decoded stream and for a JSON trace of two connections.

use std::process::Command;

#[path = "support/cli.rs"]
mod cli;

use cli::{run, text};

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser"] {
        if Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return c;
        }
    }
    panic!(
        "headless Chromium is not installed: run tests/peers/install.sh (apt-get install chromium)"
    );
}

/// The page's DOM after its script ran, and what the browser logged.
fn load(page: &std::path::Path) -> (String, String) {
    let o = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    (text(&o.stdout), text(&o.stderr))
}

/// Frame lines of `decode --json` of `input`.
fn frames_of(args: &[&str]) -> usize {
    let mut a = vec!["decode", "--json"];
    a.extend_from_slice(args);
    text(&run(&a).stdout).lines().filter(|l| l.contains("\"kind\":\"frame\"")).count()
}

fn check(page: &std::path::Path, frames: usize) {
    let (dom, log) = load(page);
    assert!(dom.contains("data-errors=\"0\""), "the page's script failed: {log}");
    assert!(dom.contains(&format!("data-arrows=\"{frames}\"")), "arrows: {dom}");
    assert_eq!(dom.matches("class=\"arrow ").count(), frames, "one arrow per frame");
    let console: Vec<&str> =
        log.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
}

#[test]
fn a_decoded_stream_and_a_json_trace_draw_one_arrow_per_frame_in_a_browser() {
    let dir = std::env::temp_dir().join(format!("amqpwire-ladder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // A decoded stream: a real peer's messages.
    let fixture = "tests/fixtures/wire/rhea-to-proton-messages.c2s.bin";
    let page = dir.join("stream.html");
    let o = run(&["decode", fixture, "--html", page.to_str().expect("path")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    check(&page, frames_of(&[fixture]));
    // A JSON trace: both directions of both captures of a proxied exchange, as a live
    // trace writes them (direction, connection, time).
    let trace = dir.join("trace.jsonl");
    let mut lines = String::new();
    let mut frames = 0;
    for (n, (file, dir_name)) in [
        ("tests/fixtures/wire/rhea-to-proton-messages.c2s.bin", "c2s"),
        ("tests/fixtures/wire/rhea-to-proton-messages.s2c.bin", "s2c"),
    ]
    .into_iter()
    .enumerate()
    {
        for l in text(&run(&["decode", "--json", file]).stdout).lines() {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("JSON");
            v["direction"] = dir_name.into();
            v["connection"] = (n as u64 + 1).into();
            v["time"] = 0.5.into();
            frames += usize::from(v["kind"] == "frame");
            lines.push_str(&v.to_string());
            lines.push('\n');
        }
    }
    // Bytes a side sent after its stream broke off (masked: counted, not shown).
    lines.push_str(
        r#"{"offset":9000,"kind":"undecoded","bytes":3,"redacted":true,"direction":"c2s","connection":1,"time":0.5}"#,
    );
    lines.push('\n');
    std::fs::write(&trace, lines).expect("write");
    let page = dir.join("trace.html");
    let o = run(&["decode", trace.to_str().expect("path"), "--html", page.to_str().expect("path")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let html = std::fs::read_to_string(&page).expect("page");
    assert!(!html.contains("http://") && !html.contains("https://"), "self-contained");
    check(&page, frames);
    let (dom, _) = load(&page);
    assert!(dom.contains("… 3 more bytes c2s after the framing error (offset 9000)"), "{dom}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_live_command_draws_its_ladder_as_frames_come() {
    let dir = std::env::temp_dir().join(format!("amqpwire-ladder-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let page = dir.join("serve.html");
    let trace = dir.join("serve.jsonl");
    let mut cmd = cli::bin();
    cmd.args(["serve", "--listen", "amqp://127.0.0.1:0", "--html"])
        .arg(&page)
        .arg("--trace-json")
        .arg(&trace);
    let server = cli::Running::start(cmd, |lines| !lines.is_empty());
    let url = server.lines[0].strip_prefix("listening on ").expect("URL").to_owned();
    let o = run(&["send", &url, "--to", "q", "--body", "drawn", "--count", "2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // A message of a megabyte: the page keeps the start of its data, not 2 MB of hex.
    let o = run(&["send", &url, "--to", "q", "--size", "1000000"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let frames = std::fs::read_to_string(&trace)
        .expect("trace")
        .lines()
        .filter(|l| l.contains("\"kind\":\"frame\""))
        .count();
    assert!(frames >= 20, "{frames} frames");
    // The page is written again off the relay path as frames come: it catches up with
    // the trace while the server runs. (The wait only bounds a page that never does.)
    let drawn = || {
        let page = std::fs::read_to_string(&page).unwrap_or_default();
        page.matches("\"kind\":\"frame\"").count()
    };
    let start = std::time::Instant::now();
    while drawn() < frames {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "{} of {frames}", drawn());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Killed: the page last written stands whole (each is renamed into place).
    drop(server);
    let written = std::fs::read_to_string(&page).expect("page");
    assert!(written.contains("characters in all: the whole is in --trace-json"));
    assert!(written.len() < 1_000_000, "the page holds {} bytes", written.len());
    check(&page, frames);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_command_that_fails_leaves_its_page_with_the_frames_that_explain_it() {
    let dir = std::env::temp_dir().join(format!("amqpwire-ladder-failed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let page = dir.join("refused.html");
    let mut cmd = cli::bin();
    cmd.args(["serve", "--listen", "amqp://127.0.0.1:0", "--user", "alice:secret"]);
    let server = cli::Running::start(cmd, |lines| !lines.is_empty());
    let url = server.lines[0].strip_prefix("listening on ").expect("URL").to_owned();
    let wrong = url.replace("amqp://", "amqp://alice:guess@");
    let o = run(&["send", &wrong, "--to", "q", "--html", page.to_str().expect("path")]);
    assert!(!o.status.success(), "a wrong password is refused");
    // The command ended with an error, and its page holds the refusal.
    let written = std::fs::read_to_string(&page).expect("the page");
    assert!(written.contains(r#""performative":"sasl-outcome""#), "{written:.2000}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
