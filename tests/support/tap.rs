//! A relay tap for tests: it keeps the bytes of each direction and the events of the
//! proxy's connections, and says when a connection is finished.
#![allow(dead_code)] // each test binary uses part of it

use std::sync::Mutex;

use amqpwire::proxy::{Flow, ProxyEvent, Side, Tap};

/// What a tap saw: the bytes of each direction per connection, and the events.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) c2s: Mutex<Vec<u8>>,
    pub(crate) s2c: Mutex<Vec<u8>>,
    pub(crate) events: Mutex<Vec<String>>,
    pub(crate) finished: tokio::sync::Notify,
    /// Stop a connection once this many client bytes have passed.
    pub(crate) stop_after: Option<usize>,
}

impl Tap for Recorder {
    fn bytes(&self, _connection: u64, flow: Flow, data: &[u8]) -> Result<(), String> {
        let mut buf = match flow {
            Flow::ClientToServer => self.c2s.lock().unwrap(),
            Flow::ServerToClient => self.s2c.lock().unwrap(),
        };
        buf.extend_from_slice(data);
        match self.stop_after {
            Some(n) if flow == Flow::ClientToServer && buf.len() >= n => Err("enough".into()),
            _ => Ok(()),
        }
    }

    fn event(&self, connection: u64, event: &ProxyEvent) {
        let line = match event {
            ProxyEvent::Closed { by: Side::Client } => "closed by client".to_owned(),
            ProxyEvent::Closed { by: Side::Server } => "closed by server".to_owned(),
            ProxyEvent::Finished => "finished".to_owned(),
            other => format!("{other:?}"),
        };
        self.events.lock().unwrap().push(format!("c{connection} {line}"));
        if matches!(event, ProxyEvent::Finished) {
            self.finished.notify_one();
        }
    }
}
