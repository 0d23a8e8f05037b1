//! What the library tells a `tracing` subscriber: the spans of connections (role,
//! container-id, peer address) and the events of a failed SASL exchange, on both sides.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqpwire::broker::{listen_options, Broker};
use amqpwire::runtime::{Connection, Listener};

/// A writer the subscriber formats into, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            .into_owned()
    }
}

#[test]
fn a_failed_sasl_exchange_is_reported_by_both_ends_in_their_connection_spans() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // One thread: the tasks of both ends run where the subscriber is the default.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let users = [("alice".to_owned(), "secret".to_owned())];
        let listener = Listener::bind("amqp://127.0.0.1:0", listen_options(&users, None, None))
            .await
            .expect("bind");
        let port = listener.endpoint().port;
        let broker = Broker::new();
        tokio::spawn(async move { broker.serve(listener).await });
        let url = format!("amqp://alice:guessed-9f2@127.0.0.1:{port}");
        let r = tokio::time::timeout(Duration::from_secs(20), Connection::connect(&url)).await;
        assert!(r.expect("no hang").is_err(), "a wrong password is refused");
        // The server's end reports too: wait until it has (the bound, 60 s, only turns a
        // hang into a failure; load does not decide the verdict).
        for _ in 0..12_000 {
            if captured.text().matches("authentication failed").count() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let text = captured.text();
    let failures: Vec<&str> =
        text.lines().filter(|l| l.contains("SASL: authentication failed")).collect();
    assert_eq!(failures.len(), 2, "one line from each end:\n{text}");
    for role in ["client", "server"] {
        let line = failures
            .iter()
            .find(|l| l.contains(&format!("role=\"{role}\"")))
            .unwrap_or_else(|| panic!("the {role}'s report in:\n{text}"));
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("sasl-outcome 1 (auth)"), "the outcome code: {line}");
        assert!(line.contains("peer=127.0.0.1:"), "the peer address: {line}");
        assert!(line.contains("container_id="), "{line}");
        assert!(!line.contains("guessed-9f2"), "no password in the log: {line}");
    }
    // The server's says why it refused (which the client is never told).
    let server = failures.iter().find(|l| l.contains("role=\"server\"")).expect("server");
    assert!(server.contains("refused because wrong password for \"alice\""), "{server}");
}
