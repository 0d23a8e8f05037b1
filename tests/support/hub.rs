//! The IoT Hub emulator run in-process for a test: one device (`dev1`) and the owner
//! policy, the hub over TLS and WebSocket over TLS, and the Event Hub-compatible endpoint
//! over both, with test certificates for `localhost`. Needs `mod pki` (support/pki.rs) at
//! the root of the test crate.
#![allow(dead_code)] // each test binary uses part of it

use std::sync::Arc;
use std::time::Duration;

use amqpwire::azure::emulator::{HubConfig, IotHub, Permissions};
use amqpwire::azure::SasKey;
use amqpwire::connection::TraceRecord;
use amqpwire::runtime::{Listener, SharedTrace};

use crate::pki;

/// The key of `dev1` (test only).
pub(crate) const DEVICE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The key of the `iothubowner` policy (test only).
pub(crate) const OWNER_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// The emulator and where it listens.
pub(crate) struct Hub {
    pub(crate) hub: IotHub,
    pub(crate) pki: pki::Pki,
    /// The hub over TLS (`amqps://`).
    pub(crate) amqps: u16,
    /// The hub over WebSocket over TLS (`wss://…/$iothub/websocket`).
    pub(crate) wss: u16,
    /// The Event Hub-compatible endpoint over TLS.
    pub(crate) event_hub: u16,
    /// The Event Hub-compatible endpoint over WebSocket (`/$servicebus/websocket`).
    pub(crate) event_hub_wss: u16,
}

/// The four listeners, in the order [`start_traced`] binds them; a trace is told which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Endpoint {
    /// The hub over TLS.
    Amqps,
    /// The hub over WebSocket over TLS.
    Wss,
    /// The Event Hub endpoint over TLS.
    EventHub,
    /// The Event Hub endpoint over WebSocket over TLS.
    EventHubWss,
}

impl Endpoint {
    const ALL: [Self; 4] = [Self::Amqps, Self::Wss, Self::EventHub, Self::EventHubWss];

    fn url(self) -> &'static str {
        match self {
            Self::Amqps | Self::EventHub => "amqps://127.0.0.1:0",
            Self::Wss => "wss://127.0.0.1:0/$iothub/websocket",
            Self::EventHubWss => "wss://127.0.0.1:0/$servicebus/websocket",
        }
    }
}

/// Sees every header and frame of every connection: which listener, the connection's
/// number on it (in accept order) and the record.
pub(crate) type HubTrace = Arc<dyn Fn(Endpoint, u64, &TraceRecord<'_>) + Send + Sync>;

/// The emulator as [`start_with`] makes it, with feedback gathered for
/// `feedback_interval`.
pub(crate) async fn start(feedback_interval: Duration) -> Hub {
    start_with(|c| c.feedback_interval = feedback_interval).await
}

/// The emulator with one device and the owner policy, on four listeners: the hub over TLS
/// and WebSocket, the Event Hub endpoint over TLS and WebSocket. `tweak` adjusts the
/// configuration first.
pub(crate) async fn start_with(tweak: impl FnOnce(&mut HubConfig)) -> Hub {
    start_traced(tweak, None).await
}

/// [`start_with`], with every connection traced.
pub(crate) async fn start_traced(
    tweak: impl FnOnce(&mut HubConfig),
    trace: Option<HubTrace>,
) -> Hub {
    start_at(tweak, trace, 0, 0).await.expect("bind")
}

/// The emulator as [`start`] makes it, with the hub on IoT Hub's own ports on 127.0.0.1:
/// 5671 for AMQP over TLS, 443 for AMQP over WebSocket and the REST APIs, so that the SDKs
/// need no port of their own; `Err` when either cannot be bound (taken, or no right to
/// bind a port below 1024).
pub(crate) async fn start_on_iot_hub_ports(feedback_interval: Duration) -> Result<Hub, String> {
    start_at(|c| c.feedback_interval = feedback_interval, None, 5671, 443).await
}

/// [`start_traced`] with the hub's AMQP and WebSocket listeners on the given ports (0: any).
async fn start_at(
    tweak: impl FnOnce(&mut HubConfig),
    trace: Option<HubTrace>,
    amqps: u16,
    wss: u16,
) -> Result<Hub, String> {
    let pki = pki::pki();
    let mut config = HubConfig::new("localhost");
    config.devices.push(("dev1".into(), SasKey::from_base64(DEVICE_KEY).unwrap()));
    config.policies.push((
        "iothubowner".into(),
        SasKey::from_base64(OWNER_KEY).unwrap(),
        Permissions::of_policy("iothubowner"),
    ));
    config.partitions = 2;
    // Devices may also present a certificate from the test CA (CN `device-1`).
    config.x509_ca = Some(pki.ca.clone());
    tweak(&mut config);
    let hub = IotHub::new(config);
    let mut ports = Vec::new();
    for endpoint in Endpoint::ALL {
        let shared: Option<SharedTrace> = trace.clone().map(|t| {
            let s: SharedTrace = Arc::new(move |n, r| t(endpoint, n, r));
            s
        });
        let options = hub.listen_options(Some(pki.server()), shared);
        let h = hub.clone();
        if endpoint == Endpoint::Wss {
            // Port 443 as IoT Hub has it: AMQP over WebSocket and the REST APIs on one
            // listener.
            let l = tokio::net::TcpListener::bind(("127.0.0.1", wss))
                .await
                .map_err(|e| format!("cannot listen on 127.0.0.1:{wss}: {e}"))?;
            ports.push(l.local_addr().unwrap().port());
            tokio::spawn(async move { h.serve_https_with(l, options).await });
            continue;
        }
        let url = match endpoint {
            Endpoint::Amqps => format!("amqps://127.0.0.1:{amqps}"),
            _ => endpoint.url().to_owned(),
        };
        let l = Listener::bind(&url, options).await.map_err(|e| format!("{url}: {e}"))?;
        ports.push(l.endpoint().port);
        tokio::spawn(async move {
            match endpoint {
                Endpoint::Amqps | Endpoint::Wss => h.serve(l).await,
                Endpoint::EventHub | Endpoint::EventHubWss => h.serve_event_hub(l).await,
            }
        });
    }
    hub.set_event_hub_endpoint("localhost", ports[2]);
    Ok(Hub {
        hub,
        pki,
        amqps: ports[0],
        wss: ports[1],
        event_hub: ports[2],
        event_hub_wss: ports[3],
    })
}

/// Waits until `f` holds (the hub's state, looked at every 20 ms); `Err` only when it never
/// does: a bound for a stuck peer, far above what a loaded machine needs, that turns a
/// hang into a failure and decides nothing else.
pub(crate) async fn eventually(what: &str, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let start = std::time::Instant::now();
    while !f() {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("{what}: not within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
