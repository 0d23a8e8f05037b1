//! The real Azure SDKs, unchanged, against amqpwire's IoT Hub emulator: the Azure IoT SDK
//! for Node (azure-iothub's service client, azure-iot-device with azure-iot-device-amqp,
//! over `Amqp` and `AmqpWs`) and the Python Event Hubs client (azure-eventhub), driven by
//! `tests/peers/iothub_sdk.js` and `tests/peers/eventhub_consumer.py`.
//!
//! Per Node transport: the service sends a cloud-to-device message with `ack` full, the
//! device receives and completes it, the service reads the `Success` feedback; the device
//! sends telemetry with properties, which amqpwire's own `EventReader` reads after the
//! redirect, and azure-eventhub reads from the Event Hub-compatible endpoint. The hub's
//! state is checked between the steps. And the hub's refusals as the Node SDKs see them
//! (an unknown device, a wrong key), and reject and abandon with their feedback.
//!
//! Every connection the SDKs make is traced on the emulator's side (both directions, the
//! raw AMQP byte streams with their protocol headers; inside WebSocket and TLS). With
//! `AMQPWIRE_WRITE_FIXTURES=1` the traces are written to `tests/fixtures/iothub/` (see its
//! README.md); `sdk_fixtures_show_what_the_sdks_send` checks those files only, and the same
//! checks run on the fresh traces of every run.
//!
//! The peers are installed by `tests/peers/install.sh`; a missing peer fails the test with
//! what to run. Nothing is skipped.

#[path = "support/hub.rs"]
mod hub;
#[path = "support/peers.rs"]
mod peers;
#[path = "support/pki.rs"]
mod pki;
#[path = "support/tap.rs"]
mod tap;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amqpwire::azure::client::{
    EventHubTarget, EventReader, HubOptions, HubTransport, ReadOptions, Security,
};
use amqpwire::azure::emulator::{Faults, FeedbackStatus, StartPosition};
use amqpwire::azure::{IotHubConnectionString, SasKey, SasToken};
use amqpwire::codec::{DecodeOptions, Value};
use amqpwire::connection::{Direction, TraceRecord};
use amqpwire::frame::{Frame, FrameBody, ProtocolId};
use amqpwire::inspect::{Inspector, Record};
use amqpwire::message::{Body, Message};
use amqpwire::types::{
    Attach, AttachSource, AttachTarget, Close, DeliveryState, Disposition, Fields, Flow, MessageId,
    Open, Performative, Properties, Role, SaslFrameBody, Transfer,
};
use hub::{eventually, Endpoint, Hub, HubTrace, DEVICE_KEY, OWNER_KEY};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/iothub");

/// Set to 1 to write the traces of the SDKs' connections into `tests/fixtures/iothub/`.
const WRITE_FIXTURES: &str = "AMQPWIRE_WRITE_FIXTURES";

// ------------------------------------------------------------------ the peers

use peers::{tail, Scratch, INSTALL, PEERS};

/// node, with the pinned Azure IoT SDKs in `tests/peers/node_modules`.
fn node_sdks_installed() {
    peers::node_modules(&[
        "azure-iothub",
        "azure-iot-device",
        "azure-iot-device-amqp",
        "azure-iot-common",
    ]);
}

/// The Python with azure-eventhub (`AMQPWIRE_EVENTHUB_PYTHON`, else the peers' venv).
fn eventhub_python() -> PathBuf {
    peers::venv_python("AMQPWIRE_EVENTHUB_PYTHON", "azure.eventhub", "azure-eventhub")
}

/// What a peer printed: its JSON lines.
struct PeerRun {
    lines: Vec<serde_json::Value>,
}

impl PeerRun {
    /// The lines whose `event` is `what`.
    fn events(&self, what: &str) -> Vec<&serde_json::Value> {
        self.lines.iter().filter(|l| l["event"] == what).collect()
    }
}

/// Runs a peer to its end (at most `limit`) while the emulator keeps serving; `Err` with
/// the tail of its log when it failed.
async fn run_peer(
    mut cmd: Command,
    label: &str,
    scratch: &Scratch,
    limit: Duration,
) -> Result<PeerRun, String> {
    let out = scratch.path(&format!("{label}.out"));
    let log = scratch.path(&format!("{label}.log"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("out"))
        .stderr(File::create(&log).expect("log"))
        .spawn()
        .map_err(|e| format!("could not start: {e}: {INSTALL}"))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {limit:?}:\n{}", tail(&log)));
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Err(e.to_string()),
        }
    };
    if !status.success() {
        return Err(format!("exited with {status}:\n{}", tail(&log)));
    }
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let mut lines = Vec::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        lines.push(
            serde_json::from_str(l).map_err(|e| format!("stdout line {l:?} is not JSON: {e}"))?,
        );
    }
    Ok(PeerRun { lines })
}

/// The Node transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeTransport {
    /// `Amqp`: amqps to port 5671.
    Amqp,
    /// `AmqpWs`: wss to port 443, `/$iothub/websocket`.
    Ws,
}

impl NodeTransport {
    fn arg(self) -> &'static str {
        match self {
            Self::Amqp => "amqp",
            Self::Ws => "ws",
        }
    }

    fn port(self, h: &Hub) -> u16 {
        match self {
            Self::Amqp => h.amqps,
            Self::Ws => h.wss,
        }
    }

    fn endpoint(self) -> Endpoint {
        match self {
            Self::Amqp => Endpoint::Amqps,
            Self::Ws => Endpoint::Wss,
        }
    }

    fn hub_transport(self) -> HubTransport {
        match self {
            Self::Amqp => HubTransport::Amqps,
            Self::Ws => HubTransport::WebSocket,
        }
    }
}

/// The key of module `dev1/m1` in the module tests.
const MODULE_KEY: &str = "bW9kdWxlLWtleS1vZi1kZXYxLW0xLWZvci10ZXN0cyE=";

fn owner_cs() -> String {
    format!("HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}")
}

fn device_cs() -> String {
    format!("HostName=localhost;DeviceId=dev1;SharedAccessKey={DEVICE_KEY}")
}

fn event_hub_cs() -> String {
    format!(
        "Endpoint=sb://localhost/;SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY};\
         EntityPath=localhost"
    )
}

/// `node iothub_sdk.js COMMAND` against the emulator over `t`.
fn node(command: &str, t: NodeTransport, h: &Hub, ca: &Path) -> Command {
    node_at(command, t, t.port(h), ca)
}

/// [`node`], connecting to `port` (a relay's, say) instead of the hub's.
fn node_at(command: &str, t: NodeTransport, port: u16, ca: &Path) -> Command {
    node_sdks_installed();
    let mut c = Command::new("node");
    c.arg(Path::new(PEERS).join("iothub_sdk.js")).arg(command);
    let cs = if command.starts_with("service-") { owner_cs() } else { device_cs() };
    c.args(["--connection-string", &cs, "--transport", t.arg()]);
    c.args(["--port", &port.to_string(), "--timeout", "20"]);
    c.arg("--ca").arg(ca);
    c
}

// ------------------------------------------------------------------ the traces

/// One connection as the emulator saw it: each direction's bytes, in stream order.
#[derive(Clone, Debug, Default)]
struct Capture {
    /// What the client sent.
    c2s: Vec<u8>,
    /// What the emulator sent.
    s2c: Vec<u8>,
    /// Records that did not continue their stream where the previous one ended.
    gaps: Vec<String>,
}

/// Every connection of the emulator, by listener and number.
#[derive(Default)]
struct Recorder {
    conns: Mutex<BTreeMap<(Endpoint, u64), Capture>>,
}

impl Recorder {
    fn trace(self: &Arc<Self>) -> HubTrace {
        let me = Arc::clone(self);
        Arc::new(move |endpoint, n, r: &TraceRecord<'_>| {
            let mut conns = me.conns.lock().unwrap();
            let c = conns.entry((endpoint, n)).or_default();
            let stream = match r.direction {
                Direction::In => &mut c.c2s,
                Direction::Out => &mut c.s2c,
            };
            if r.offset != stream.len() as u64 {
                c.gaps.push(format!(
                    "{:?} record at offset {} but {} bytes so far",
                    r.direction,
                    r.offset,
                    stream.len()
                ));
            }
            stream.extend_from_slice(r.raw);
        })
    }

    fn keys(&self) -> BTreeSet<(Endpoint, u64)> {
        self.conns.lock().unwrap().keys().copied().collect()
    }

    /// The connections that began since `before`, on `endpoint`.
    fn new_since(
        &self,
        before: &BTreeSet<(Endpoint, u64)>,
        endpoint: Endpoint,
    ) -> Vec<(Endpoint, u64)> {
        self.keys().into_iter().filter(|k| k.0 == endpoint && !before.contains(k)).collect()
    }

    fn get(&self, key: (Endpoint, u64)) -> Capture {
        self.conns.lock().unwrap().get(&key).cloned().unwrap_or_default()
    }
}

/// The captures of one test: fixture stem (`<sdk>-<transport>-<step>`) and connection.
#[derive(Default)]
struct Captures(Vec<(String, Capture, bool)>);

impl Captures {
    /// Takes the connections a peer made on `endpoint` since `before`, one per stem, in
    /// the order they began, once both sides of each have sent their close (a peer may
    /// exit before the emulator has read its last frames); `write`: a fixture when asked
    /// for.
    async fn take(
        &mut self,
        rec: &Recorder,
        before: &BTreeSet<(Endpoint, u64)>,
        endpoint: Endpoint,
        stems: &[&str],
        write: bool,
    ) -> Result<(), String> {
        let keys = rec.new_since(before, endpoint);
        if keys.len() != stems.len() {
            return Err(format!(
                "{} connection(s) on {endpoint:?} for {stems:?}, expected {}",
                keys.len(),
                stems.len()
            ));
        }
        let closed = |c: &Capture| {
            [&c.c2s, &c.s2c].iter().all(|b| Stream::decode(b).is_ok_and(|s| s.close().is_some()))
        };
        let start = Instant::now();
        while !keys.iter().all(|k| closed(&rec.get(*k)))
            && start.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (key, stem) in keys.into_iter().zip(stems) {
            let c = rec.get(key);
            if !c.gaps.is_empty() {
                return Err(format!("{stem}: the trace has gaps: {:?}", c.gaps));
            }
            self.0.push(((*stem).to_owned(), c, write));
        }
        Ok(())
    }

    /// With `AMQPWIRE_WRITE_FIXTURES=1`, writes each capture as `STEM.c2s.bin` and
    /// `STEM.s2c.bin` and prints a README line for each.
    fn write_if_asked(&self) {
        if std::env::var(WRITE_FIXTURES).as_deref() != Ok("1") {
            return;
        }
        for (stem, c, _) in self.0.iter().filter(|c| c.2) {
            for (dir, bytes) in [("c2s", &c.c2s), ("s2c", &c.s2c)] {
                let name = format!("{stem}.{dir}.bin");
                std::fs::write(Path::new(FIXTURES).join(&name), bytes).expect("write fixture");
                eprintln!("wrote {name} ({} bytes): frames: {}", bytes.len(), frame_list(bytes));
            }
        }
    }
}

// ------------------------------------------------------------------ reading streams

/// One item of a stream, decoded strictly.
#[derive(Debug)]
enum Item {
    Header(ProtocolId),
    Sasl(SaslFrameBody),
    Amqp { channel: u16, performative: Box<Performative>, message: Option<Box<Message>> },
    Empty,
}

/// The items of one direction of a connection.
struct Stream(Vec<Item>);

impl Stream {
    /// Decodes a whole stream strictly; `Err` on anything that does not decode or is cut
    /// short.
    fn decode(stream: &[u8]) -> Result<Self, String> {
        let mut i = Inspector::new(DecodeOptions::STRICT).redact_secrets(false);
        i.push(stream);
        let mut out = Vec::new();
        while let Some(r) = i.next_record() {
            match r {
                Record::Header { header, .. } => out.push(Item::Header(header.id)),
                Record::Frame(f) => {
                    let frame = f.frame.map_err(|e| format!("frame at {}: {e}", f.offset))?;
                    let message = match f.delivery {
                        Some(d) => Some(Box::new(
                            d.message.map_err(|e| format!("message at {}: {e}", f.offset))?,
                        )),
                        None => None,
                    };
                    out.push(match frame {
                        Frame { body: FrameBody::Empty, .. } => Item::Empty,
                        Frame { body: FrameBody::Sasl(s), .. } => Item::Sasl(s),
                        Frame { channel, body: FrameBody::Amqp { performative, .. } } => {
                            Item::Amqp { channel, performative: Box::new(performative), message }
                        }
                    });
                }
                other => return Err(format!("{other:?}")),
            }
        }
        if let Some(r) = i.finish() {
            return Err(format!("{r:?}"));
        }
        Ok(Self(out))
    }

    fn performatives(&self) -> impl Iterator<Item = &Performative> {
        self.0.iter().filter_map(|i| match i {
            Item::Amqp { performative, .. } => Some(&**performative),
            _ => None,
        })
    }

    /// The performatives' names in order (`open`, `begin`, …).
    fn names(&self) -> Vec<&'static str> {
        self.performatives().map(Performative::name).collect()
    }

    fn open(&self) -> Option<&Open> {
        self.performatives().find_map(|p| match p {
            Performative::Open(o) => Some(o),
            _ => None,
        })
    }

    fn attaches(&self) -> Vec<&Attach> {
        self.performatives()
            .filter_map(|p| match p {
                Performative::Attach(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    /// The attach of the link named `name`.
    fn attach(&self, name: &str) -> Option<&Attach> {
        self.attaches().into_iter().find(|a| a.name.as_ref() as &str == name)
    }

    /// The transfers on `handle` and their messages, in order.
    fn transfers(&self, handle: u32) -> Vec<(&Transfer, &Message)> {
        self.0
            .iter()
            .filter_map(|i| match i {
                Item::Amqp { performative, message: Some(m), .. } => match &**performative {
                    Performative::Transfer(t) if t.handle.0 == handle => Some((t, &**m)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// The dispositions that settle `delivery` (as first, or within first..=last).
    fn dispositions(&self, delivery: u32) -> Vec<&Disposition> {
        self.performatives()
            .filter_map(|p| match p {
                Performative::Disposition(d)
                    if d.first.0 <= delivery && delivery <= d.last.unwrap_or(d.first).0 =>
                {
                    Some(d)
                }
                _ => None,
            })
            .collect()
    }

    /// The attach of the link named `name`, and the channel it came on.
    fn attach_with_channel(&self, name: &str) -> Option<(u16, &Attach)> {
        self.0.iter().find_map(|i| match i {
            Item::Amqp { channel, performative, .. } => match &**performative {
                Performative::Attach(a) if a.name.as_ref() as &str == name => Some((*channel, a)),
                _ => None,
            },
            _ => None,
        })
    }

    /// [`Stream::transfers`] of a connection with several sessions: those on `channel`.
    fn transfers_on(&self, channel: u16, handle: u32) -> Vec<(&Transfer, &Message)> {
        self.0
            .iter()
            .filter_map(|i| match i {
                Item::Amqp { channel: c, performative, message: Some(m) } if *c == channel => {
                    match &**performative {
                        Performative::Transfer(t) if t.handle.0 == handle => Some((t, &**m)),
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect()
    }

    fn flows(&self, handle: u32) -> Vec<&Flow> {
        self.performatives()
            .filter_map(|p| match p {
                Performative::Flow(f) if f.handle.map(|h| h.0) == Some(handle) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn close(&self) -> Option<&Close> {
        self.performatives().find_map(|p| match p {
            Performative::Close(c) => Some(c),
            _ => None,
        })
    }

    fn has_sasl(&self) -> bool {
        self.0.iter().any(|i| {
            matches!(i, Item::Sasl(_)) || matches!(i, Item::Header(id) if *id != ProtocolId::AMQP)
        })
    }
}

/// The frames of a stream in order, as the fixture README lists them.
fn frame_list(stream: &[u8]) -> String {
    let mut names: Vec<(String, usize)> = Vec::new();
    for r in Inspector::inspect_all(stream, DecodeOptions::STRICT) {
        let name = match r {
            Record::Header { header: h, .. } => {
                let layer = h.id.name().unwrap_or("(unknown)");
                format!("protocol-header {layer} {}.{}.{}", h.major, h.minor, h.revision)
            }
            Record::Frame(f) => f.performative().unwrap_or("undecodable").to_owned(),
            other => format!("{other:?}"),
        };
        match names.last_mut() {
            Some((last, n)) if *last == name => *n += 1,
            _ => names.push((name, 1)),
        }
    }
    let each =
        names.iter().map(|(name, n)| if *n > 1 { format!("{name} x{n}") } else { name.clone() });
    each.collect::<Vec<_>>().join(", ")
}

/// An address of a terminus.
fn source_address(a: &Attach) -> Option<&str> {
    match &a.source {
        Some(AttachSource::Source(s)) => s.address.as_deref(),
        _ => None,
    }
}

fn target_address(a: &Attach) -> Option<&str> {
    match &a.target {
        Some(AttachTarget::Target(t)) => t.address.as_deref(),
        _ => None,
    }
}

fn fields_get<'f>(f: Option<&'f Fields>, key: &str) -> Option<&'f Value> {
    f?.0.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
}

/// An application property as an owned value.
fn app(m: &Message, key: &str) -> Option<Value> {
    m.application_properties.as_ref()?.get(key)?.to_owned_value().ok()
}

/// A message annotation as an owned value.
fn annotation(m: &Message, key: &str) -> Option<Value> {
    m.message_annotations.as_ref()?.get(key)?.to_owned_value().ok()
}

fn text(m: &Message, key: &str) -> Option<String> {
    app(m, key)?.as_str().map(str::to_owned)
}

fn props(m: &Message) -> Properties {
    m.properties.clone().unwrap_or_default()
}

fn body_text(m: &Message) -> Option<String> {
    match &m.body {
        Body::Data(parts) => String::from_utf8(parts.concat()).ok(),
        Body::Value(Value::String(s, _)) => Some(s.to_string()),
        _ => None,
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

// ------------------------------------------------------------------ what the SDKs send

/// The checks failed on one capture.
struct Facts {
    failed: Vec<String>,
}

macro_rules! fact {
    ($f:expr, $ok:expr, $($why:tt)+) => {
        if !$ok {
            $f.failed.push(format!($($why)+));
        }
    };
}

/// Which SDK made a capture, from its stem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sdk {
    /// azure-iothub (the Node service client).
    NodeService,
    /// azure-iot-device with azure-iot-device-amqp.
    NodeDevice,
    /// azure-iot-device's ModuleClient, as module `dev1/m1`.
    NodeModule,
    /// azure-iot-device with an X.509 certificate (`x509=true`): no SASL, no CBS.
    NodeX509,
    /// azure-eventhub (Python).
    EventHubPy,
    /// @azure/event-hubs (JavaScript).
    EventHubJs,
}

/// The checks of one capture, named by its stem (see [`stem`]); the same run on the fresh
/// traces of every run and on the fixture files. `Err` lists what did not hold.
fn check_capture(stem: &str, c2s: &[u8], s2c: &[u8]) -> Result<(), String> {
    let client = Stream::decode(c2s).map_err(|e| format!("{stem}.c2s: {e}"))?;
    let server = Stream::decode(s2c).map_err(|e| format!("{stem}.s2c: {e}"))?;
    let mut f = Facts { failed: Vec::new() };
    let sdk = if stem.starts_with("node-service-") {
        Sdk::NodeService
    } else if stem.starts_with("node-device-x509-") {
        Sdk::NodeX509
    } else if stem.starts_with("node-module-") {
        Sdk::NodeModule
    } else if stem.starts_with("node-device-") {
        Sdk::NodeDevice
    } else if stem.starts_with("eventhub-py-") {
        Sdk::EventHubPy
    } else if stem == "eventhub-js-quickstart" {
        Sdk::EventHubJs
    } else {
        return Err(format!("{stem}: no checks for this capture"));
    };
    match sdk {
        Sdk::NodeService | Sdk::NodeDevice | Sdk::NodeModule | Sdk::NodeX509 => {
            let cbs = if sdk == Sdk::NodeX509 {
                node_x509_common(&mut f, &client, &server)
            } else {
                node_common(&mut f, sdk, &client, &server)
            };
            // rhea writes its open as a list32 of 2 fields, as in client-open.bin: header (8),
            // frame header (8), descriptor 0x00 0x53 0x10, then 0xd0, size, count.
            let list = c2s.get(19..28);
            let shape = list.map(|l| (l[0], u32::from_be_bytes([l[5], l[6], l[7], l[8]])));
            fact!(f, shape == Some((0xd0, 2)), "open is not a list32 of 2 fields: {list:?}");
            let ws = stem.contains("-amqpws-");
            let identity =
                if sdk == Sdk::NodeModule { "/devices/dev1/modules/m1" } else { "/devices/dev1" };
            if stem.ends_with("-c2d-send") {
                node_c2d_send(&mut f, &client, &server, cbs, ws);
            } else if stem.ends_with("-feedback") {
                node_feedback(&mut f, &client, &server, cbs, ws);
            } else if stem.ends_with("-c2d-receive") {
                node_c2d_receive(&mut f, &client, &server, cbs, ws);
            } else if stem.ends_with("-telemetry") {
                let (address, id) = match sdk {
                    Sdk::NodeModule => ("/devices/dev1/modules/m1/messages/events", "tel-module"),
                    Sdk::NodeX509 if stem.contains("-thumbprint-") => {
                        ("/devices/thumb-dev/messages/events", "tel-thumbprint")
                    }
                    Sdk::NodeX509 => ("/devices/device-1/messages/events", "tel-x509"),
                    _ => ("/devices/dev1/messages/events", if ws { "tel-ws" } else { "tel-amqp" }),
                };
                node_telemetry(&mut f, &client, &server, cbs, address, id);
            } else if stem.ends_with("-twin") {
                node_twin(&mut f, &client, &server, cbs, identity);
            } else if stem.ends_with("-method") {
                node_method(&mut f, &client, &server, cbs, identity);
            } else {
                return Err(format!("{stem}: no checks for this capture"));
            }
        }
        Sdk::EventHubJs => eventhub_js_quickstart(&mut f, &client, &server),
        Sdk::EventHubPy => {
            let management = stem.ends_with("-management");
            let cbs = eventhub_common(&mut f, &client, &server, management);
            if management {
                eventhub_management(&mut f, &client, &server, cbs);
            } else {
                eventhub_receive(&mut f, &client, &server, cbs);
            }
        }
    }
    if f.failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{stem}:\n  {}", f.failed.join("\n  ")))
    }
}

/// Where the put-token request went: the index of the first performative after it.
#[derive(Clone, Copy)]
struct AfterCbs(usize);

/// The index of the performative after the first transfer on `handle`.
fn after_first_transfer(s: &Stream, handle: u32) -> usize {
    s.performatives()
        .position(|p| matches!(p, Performative::Transfer(t) if t.handle.0 == handle))
        .map_or(usize::MAX, |i| i + 1)
}

/// The attach of the link to or from `address` whose role is `role`, and where it stands
/// among the performatives.
fn attach_at<'s>(s: &'s Stream, address: &str, role: Role) -> Option<(usize, &'s Attach)> {
    s.performatives().enumerate().find_map(|(i, p)| match p {
        Performative::Attach(a)
            if a.role == role
                && if role == Role::SENDER {
                    target_address(a) == Some(address)
                } else {
                    source_address(a) == Some(address)
                } =>
        {
            Some((i, a))
        }
        _ => None,
    })
}

/// What the Node device SDK does on a connection authenticated by an X.509 certificate
/// (TLS alone): no SASL, rhea's open and begin, no CBS link and no token, a clean close.
/// Nothing comes before the first link, so the returned index is 0.
fn node_x509_common(f: &mut Facts, c: &Stream, s: &Stream) -> AfterCbs {
    for (side, who) in [(c, "the device"), (s, "the hub")] {
        fact!(
            f,
            matches!(side.0.first(), Some(Item::Header(ProtocolId::AMQP))) && !side.has_sasl(),
            "{who} starts with {:?} or sends SASL",
            side.0.first()
        );
    }
    match c.open() {
        Some(o) => {
            fact!(f, is_guid(&o.container_id), "container-id {:?} is not a GUID", o.container_id);
            fact!(f, o.hostname.as_deref() == Some("localhost"), "open hostname {:?}", o.hostname);
        }
        None => f.failed.push("no open".into()),
    }
    let attaches = c.attaches();
    let cbs = attaches
        .iter()
        .any(|a| target_address(a) == Some("$cbs") || source_address(a) == Some("$cbs"));
    fact!(f, !cbs, "a CBS link on an X.509 connection: {attaches:?}");
    fact!(f, attaches.len() == 1, "{} attaches, not the telemetry sender's alone", attaches.len());
    let names = c.names();
    fact!(f, names.ends_with(&["detach", "end", "close"]), "the client ends with {names:?}");
    for side in [c, s] {
        for p in side.performatives() {
            let error = match p {
                Performative::Detach(d) => d.error.as_ref(),
                Performative::End(e) => e.error.as_ref(),
                Performative::Close(c) => c.error.as_ref(),
                _ => None,
            };
            fact!(f, error.is_none(), "{} with error {error:?}", p.name());
        }
    }
    fact!(f, s.close().is_some(), "the hub did not close");
    AfterCbs(0)
}

/// What both Node SDKs do on every connection: no SASL, rhea's open and begin, the CBS
/// links and the put-token (checked against the test key), a clean close.
fn node_common(f: &mut Facts, sdk: Sdk, c: &Stream, s: &Stream) -> AfterCbs {
    fact!(
        f,
        matches!(c.0.first(), Some(Item::Header(ProtocolId::AMQP))),
        "the client starts with {:?}, not the AMQP header",
        c.0.first()
    );
    fact!(f, !c.has_sasl(), "the Node SDK sent SASL");
    fact!(
        f,
        matches!(s.0.first(), Some(Item::Header(ProtocolId::AMQP))) && !s.has_sasl(),
        "the hub answered with SASL"
    );
    match c.open() {
        Some(o) => {
            fact!(f, is_guid(&o.container_id), "container-id {:?} is not a GUID", o.container_id);
            fact!(f, o.hostname.as_deref() == Some("localhost"), "open hostname {:?}", o.hostname);
            // rhea writes only container-id and hostname.
            fact!(
                f,
                o.max_frame_size == u32::MAX
                    && o.channel_max == u16::MAX
                    && o.idle_time_out.is_none()
                    && o.properties.is_none(),
                "open {o:?}"
            );
        }
        None => f.failed.push("no open".into()),
    }
    let begin = c.performatives().find_map(|p| match p {
        Performative::Begin(b) => Some(b),
        _ => None,
    });
    fact!(
        f,
        begin.is_some_and(|b| b.incoming_window == 2048 && b.outgoing_window == u32::MAX),
        "begin {begin:?}"
    );
    // Every attach names the SDK.
    let version = match sdk {
        Sdk::NodeService => "azure-iothub/1.16.6",
        _ => "azure-iot-device/1.18.4 (node ",
    };
    for a in c.attaches() {
        let v = fields_get(a.properties.as_ref(), "com.microsoft:client-version");
        fact!(
            f,
            v.and_then(Value::as_str).is_some_and(|v| v.starts_with(version)),
            "attach {} has client-version {v:?}, not {version}…",
            a.name
        );
    }
    // The CBS links come first: a sender to $cbs (no source address) on handle 0 and a
    // receiver from $cbs on handle 1.
    let attaches = c.attaches();
    let cbs_ok = attaches.len() >= 2
        && attaches[0].role == Role::SENDER
        && attaches[0].name.starts_with("rheaSender_")
        && attaches[0].handle.0 == 0
        && target_address(attaches[0]) == Some("$cbs")
        && source_address(attaches[0]).is_none()
        && attaches[1].role == Role::RECEIVER
        && attaches[1].name.starts_with("rheaReceiver_")
        && source_address(attaches[1]) == Some("$cbs");
    fact!(f, cbs_ok, "the first attaches are not the CBS links: {attaches:?}");
    let puts = c.transfers(0);
    let Some((_, put)) = puts.first() else {
        f.failed.push("no put-token".into());
        return AfterCbs(usize::MAX);
    };
    let p = props(put);
    let id = match &p.message_id {
        Some(MessageId::String(s)) if is_guid(s) => Some(s.to_string()),
        other => {
            f.failed.push(format!("put-token message-id {other:?}, not a GUID string"));
            None
        }
    };
    fact!(
        f,
        p.to.as_deref() == Some("$cbs") && p.reply_to.as_deref() == Some("cbs"),
        "put-token to {:?}, reply-to {:?}",
        p.to,
        p.reply_to
    );
    fact!(
        f,
        text(put, "operation").as_deref() == Some("put-token"),
        "operation {:?}",
        app(put, "operation")
    );
    fact!(
        f,
        text(put, "type").as_deref() == Some("servicebus.windows.net:sastoken"),
        "token type {:?}",
        app(put, "type")
    );
    let (name, key_name, key) = match sdk {
        Sdk::NodeService => ("localhost", Some("iothubowner"), OWNER_KEY),
        Sdk::NodeModule => ("localhost%2Fdevices%2Fdev1%2Fmodules%2Fm1", None, MODULE_KEY),
        _ => ("localhost%2Fdevices%2Fdev1", None, DEVICE_KEY),
    };
    fact!(
        f,
        text(put, "name").as_deref() == Some(name),
        "put-token name {:?}, not {name}",
        app(put, "name")
    );
    match body_text(put).map(|t| t.parse::<SasToken>()) {
        Some(Ok(t)) => {
            fact!(
                f,
                t.sr() == name && t.key_name() == key_name,
                "token sr {:?} skn {:?}",
                t.sr(),
                t.key_name()
            );
            // IoT Hub's way: the HMAC keyed with the decoded key.
            fact!(
                f,
                t.signature_matches(&SasKey::from_base64(key).unwrap()),
                "the token is not signed with the decoded key"
            );
        }
        other => f.failed.push(format!("put-token body {other:?}")),
    }
    // The hub's answer: status-code 200 as an int, correlation-id = the message-id.
    let reply_link = attaches.get(1).and_then(|a| s.attach(&a.name)).map(|a| a.handle.0);
    let answer = reply_link.and_then(|h| s.transfers(h).first().map(|(_, m)| *m));
    match answer {
        Some(m) => {
            fact!(
                f,
                matches!(app(m, "status-code"), Some(Value::Int(200, _))),
                "status-code {:?}",
                app(m, "status-code")
            );
            let corr = props(m).correlation_id;
            fact!(
                f,
                id.is_some() && corr == id.map(|i| MessageId::String(i.into())),
                "correlation-id {corr:?}"
            );
        }
        None => f.failed.push("no put-token answer".into()),
    }
    // azure-iothub settles the answer twice; azure-iot-device once.
    let settles = c.dispositions(0).len();
    let want = if sdk == Sdk::NodeService { 2 } else { 1 };
    fact!(f, settles == want, "the put-token answer is settled {settles} times, not {want}");
    // The end: the three links detached, end, close, all without error; the hub alike.
    let names = c.names();
    fact!(
        f,
        names.ends_with(&["detach", "detach", "detach", "end", "close"]),
        "the client ends with {names:?}"
    );
    for side in [c, s] {
        for p in side.performatives() {
            let error = match p {
                Performative::Detach(d) => d.error.as_ref().map(|e| e.condition.to_string()),
                Performative::End(e) => e.error.as_ref().map(|e| e.condition.to_string()),
                Performative::Close(c) => c.error.as_ref().map(|e| e.condition.to_string()),
                _ => None,
            };
            fact!(f, error.is_none(), "{} with error {error:?}", p.name());
        }
    }
    fact!(f, s.close().is_some(), "the hub did not close");
    AfterCbs(after_first_transfer(c, 0))
}

fn c2d_id_of(ws: bool) -> MessageId {
    if ws {
        MessageId::Uuid(amqpwire::codec::Uuid::parse(UUID_ID).unwrap())
    } else {
        MessageId::String("c2d-amqp-1".into())
    }
}

/// azure-iothub's cloud-to-device send.
fn node_c2d_send(f: &mut Facts, c: &Stream, s: &Stream, cbs: AfterCbs, ws: bool) {
    let Some((at, a)) = attach_at(c, "/messages/devicebound", Role::SENDER) else {
        return f.failed.push("no sender to /messages/devicebound".into());
    };
    fact!(f, at > cbs.0, "the C2D sender attached before the put-token");
    fact!(f, a.name.starts_with("rheaSender_") && source_address(a).is_none(), "C2D sender {a:?}");
    let sent = c.transfers(a.handle.0);
    let [(t, m)] = sent.as_slice() else {
        return f.failed.push(format!("{} C2D transfers", sent.len()));
    };
    let p = props(m);
    // A message id that looks like a UUID goes out as an AMQP uuid.
    fact!(f, p.message_id == Some(c2d_id_of(ws)), "C2D message-id {:?}", p.message_id);
    fact!(f, p.to.as_deref() == Some("/devices/dev1/messages/devicebound"), "C2D to {:?}", p.to);
    fact!(
        f,
        text(m, "iothub-ack").as_deref() == Some("full")
            && text(m, "room").as_deref() == Some("kitchen"),
        "C2D properties {:?}",
        m.application_properties
    );
    fact!(
        f,
        matches!(m.body, Body::Data(_)) && body_text(m).is_some_and(|b| b.starts_with("switch on")),
        "C2D body {:?}",
        m.body
    );
    fact!(f, t.settled != Some(true), "the C2D message was sent settled");
    let d = t.delivery_id.map(|d| d.0).unwrap_or(u32::MAX);
    let outcome = s.dispositions(d);
    fact!(
        f,
        outcome.iter().any(|o| matches!(o.state, Some(DeliveryState::Accepted(_)))),
        "the hub's outcome {outcome:?}"
    );
}

/// azure-iothub's feedback receiver.
fn node_feedback(f: &mut Facts, c: &Stream, s: &Stream, cbs: AfterCbs, ws: bool) {
    // serviceBound, as the Node SDK spells it.
    let Some((at, a)) = attach_at(c, "/messages/serviceBound/feedback", Role::RECEIVER) else {
        return f.failed.push("no receiver from /messages/serviceBound/feedback".into());
    };
    fact!(f, at > cbs.0, "the feedback receiver attached before the put-token");
    let credit = c.flows(a.handle.0).first().and_then(|fl| fl.link_credit);
    fact!(f, credit == Some(1000), "feedback credit {credit:?}");
    let Some(ours) = s.attach(&a.name) else {
        return f.failed.push("the hub did not attach".into());
    };
    let got = s.transfers(ours.handle.0);
    let [(t, m)] = got.as_slice() else {
        return f.failed.push(format!("{} feedback messages", got.len()));
    };
    let ct = props(m).content_type;
    fact!(
        f,
        ct.as_ref().map(|c| c.as_str()) == Some("application/vnd.microsoft.iothub.feedback.json"),
        "feedback content-type {ct:?}"
    );
    let records: serde_json::Value =
        body_text(m).and_then(|b| serde_json::from_str(&b).ok()).unwrap_or_default();
    let id = match c2d_id_of(ws) {
        MessageId::Uuid(u) => u.to_string(),
        MessageId::String(s) => s.to_string(),
        other => format!("{other:?}"),
    };
    let ok = records.as_array().is_some_and(|r| {
        r.len() == 1
            && r[0]["originalMessageId"] == id.as_str()
            && r[0]["statusCode"] == "Success"
            && r[0]["deviceId"] == "dev1"
    });
    fact!(f, ok, "feedback records {records}");
    // The SDK accepts the feedback message.
    let d = t.delivery_id.map(|d| d.0).unwrap_or(u32::MAX);
    let settled = c.dispositions(d);
    fact!(
        f,
        settled.iter().any(|o| o.settled && matches!(o.state, Some(DeliveryState::Accepted(_)))),
        "feedback settled with {settled:?}"
    );
}

/// azure-iot-device receiving a cloud-to-device message and completing it.
fn node_c2d_receive(f: &mut Facts, c: &Stream, s: &Stream, cbs: AfterCbs, ws: bool) {
    let Some((at, a)) = attach_at(c, "/devices/dev1/messages/devicebound", Role::RECEIVER) else {
        return f.failed.push("no receiver from /devices/dev1/messages/devicebound".into());
    };
    // The device attaches its C2D receiver only after the put-token.
    fact!(f, at > cbs.0, "the C2D receiver attached before the put-token");
    fact!(
        f,
        a.name.starts_with("rheaReceiver_") && target_address(a).is_none(),
        "C2D receiver {a:?}"
    );
    let credit = c.flows(a.handle.0).first().and_then(|fl| fl.link_credit);
    fact!(f, credit == Some(1000), "C2D credit {credit:?}");
    let Some(ours) = s.attach(&a.name) else {
        return f.failed.push("the hub did not attach".into());
    };
    let got = s.transfers(ours.handle.0);
    let [(t, m)] = got.as_slice() else {
        return f.failed.push(format!("{} C2D deliveries", got.len()));
    };
    // The delivery tag is the lock token, a GUID's 16 bytes.
    fact!(
        f,
        t.delivery_tag.as_ref().map(|t| t.len()) == Some(16),
        "delivery-tag {:?}",
        t.delivery_tag
    );
    fact!(f, props(m).message_id == Some(c2d_id_of(ws)), "message-id {:?}", props(m).message_id);
    // Complete: accepted, settled.
    let d = t.delivery_id.map(|d| d.0).unwrap_or(u32::MAX);
    let settled = c.dispositions(d);
    let ok = settled.len() == 1
        && settled[0].settled
        && settled[0].role == Role::RECEIVER
        && matches!(settled[0].state, Some(DeliveryState::Accepted(_)));
    fact!(f, ok, "the C2D message was settled with {settled:?}");
}

/// The pair a device SDK attaches on `address` (its sender, then its receiver), both with
/// `com.microsoft:channel-correlation-id` `{prefix}:<uuid>` and an api-version; the
/// device's sender and the hub's sender.
fn node_pair<'s>(
    f: &mut Facts,
    c: &'s Stream,
    s: &'s Stream,
    cbs: AfterCbs,
    address: &str,
    prefix: &str,
) -> Option<(&'s Attach, &'s Attach)> {
    let tx = attach_at(c, address, Role::SENDER);
    let rx = attach_at(c, address, Role::RECEIVER);
    let (Some((at_tx, tx)), Some((at_rx, rx))) = (tx, rx) else {
        f.failed.push(format!("no sender and receiver pair on {address}"));
        return None;
    };
    fact!(f, at_tx > cbs.0 && at_rx > cbs.0, "the {prefix} links attached before the put-token");
    let channel = |a: &Attach| {
        fields_get(a.properties.as_ref(), "com.microsoft:channel-correlation-id")
            .and_then(|v| v.as_str().map(str::to_owned))
    };
    let (a, b) = (channel(tx), channel(rx));
    let paired = a.is_some() && a == b;
    let uuid =
        a.as_deref().and_then(|c| c.strip_prefix(&format!("{prefix}:"))).is_some_and(is_guid);
    fact!(f, paired && uuid, "channel-correlation-ids {a:?} and {b:?}");
    for l in [tx, rx] {
        let v = fields_get(l.properties.as_ref(), "com.microsoft:api-version");
        fact!(f, v.and_then(|v| v.as_str()) == Some("2021-04-12"), "{prefix} api-version {v:?}");
    }
    let (Some(hub_rx), Some(hub_tx)) = (s.attach(&tx.name), s.attach(&rx.name)) else {
        f.failed.push(format!("the hub did not attach the {prefix} links"));
        return None;
    };
    // The hub's receiver answers the device's sender; the hub's sender its receiver.
    fact!(f, hub_rx.role == Role::RECEIVER, "the hub's {prefix} receiver {hub_rx:?}");
    Some((tx, hub_tx))
}

/// azure-iot-device with its twin: GET, PATCH reported, GET, PUT (subscribe), then a
/// desired update pushed by the hub.
/// `identity`: the device's path (`/devices/dev1`) or a module's.
fn node_twin(f: &mut Facts, c: &Stream, s: &Stream, cbs: AfterCbs, identity: &str) {
    let address = format!("{identity}/twin");
    let Some((tx, hub_tx)) = node_pair(f, c, s, cbs, &address, "twin") else {
        return;
    };
    let requests = c.transfers(tx.handle.0);
    let ops: Vec<(Option<String>, Option<String>)> = requests
        .iter()
        .map(|(_, m)| {
            let a = |k| annotation(m, k).and_then(|v| v.as_str().map(str::to_owned));
            (a("operation"), a("resource"))
        })
        .collect();
    let want = [
        (Some("GET"), None),
        (Some("PATCH"), Some("/properties/reported")),
        (Some("GET"), None),
        (Some("PUT"), Some("/notifications/twin/properties/desired")),
    ];
    let got: Vec<(Option<&str>, Option<&str>)> =
        ops.iter().map(|(o, r)| (o.as_deref(), r.as_deref())).collect();
    fact!(f, got == want, "twin requests {got:?}");
    fact!(
        f,
        requests.iter().all(|(t, _)| t.settled == Some(true)),
        "twin requests not pre-settled"
    );
    let patch = requests.get(1).and_then(|(_, m)| body_text(m));
    fact!(f, patch.as_deref().is_some_and(|p| p.contains("firmware")), "the PATCH body {patch:?}");
    // Each answer carries its request's correlation-id and a status; then the push.
    let answers = s.transfers(hub_tx.handle.0);
    fact!(f, answers.len() == 5, "{} transfers from the hub's twin link", answers.len());
    for (i, ((_, q), (_, a))) in requests.iter().zip(&answers).enumerate() {
        let status = annotation(a, "status").and_then(|v| v.as_i64());
        let want = if i == 1 { 204 } else { 200 };
        fact!(f, status == Some(want), "answer {i}: status {status:?}");
        let (qc, ac) = (props(q).correlation_id, props(a).correlation_id);
        fact!(f, qc.is_some() && qc == ac, "answer {i}: correlation-id {ac:?} for {qc:?}");
    }
    if let Some((_, push)) = answers.get(4) {
        fact!(f, props(push).correlation_id.is_none(), "the desired push has a correlation-id");
        let body = body_text(push).unwrap_or_default();
        fact!(f, body.contains("\"rate\":5") && body.contains("$version"), "the push {body:?}");
    }
}

/// azure-iot-device answering a direct method.
fn node_method(f: &mut Facts, c: &Stream, s: &Stream, cbs: AfterCbs, identity: &str) {
    let address = format!("{identity}/methods/devicebound");
    let Some((tx, hub_tx)) = node_pair(f, c, s, cbs, &address, "methods") else {
        return;
    };
    let asked = s.transfers(hub_tx.handle.0);
    let [(t, request)] = asked.as_slice() else {
        return f.failed.push(format!("{} method requests", asked.len()));
    };
    fact!(f, t.settled == Some(true), "the request is not pre-settled");
    fact!(f, text(request, "IoThub-methodname").as_deref() == Some("reboot"), "method name");
    let Some(MessageId::Uuid(id)) = props(request).correlation_id else {
        return f
            .failed
            .push(format!("request correlation-id {:?}", props(request).correlation_id));
    };
    let answered = c.transfers(tx.handle.0);
    let [(_, answer)] = answered.as_slice() else {
        return f.failed.push(format!("{} method answers", answered.len()));
    };
    // The hub's id is a version 4 GUID, as IoT Hub's are; the SDK writes an id in RFC 4122's
    // form (version 1 to 5, variant 10xx) back as a uuid, anything else as text.
    let (version, variant) = (id.0[6] >> 4, id.0[8] >> 6);
    fact!(f, (version, variant) == (4, 0b10), "the request's id {id:?} is no version 4 GUID");
    let text_id = crate::uuid_text(&id.0);
    let written = if (1..=5).contains(&version) && variant == 0b10 {
        MessageId::Uuid(id)
    } else {
        MessageId::String(text_id.as_str().into())
    };
    fact!(
        f,
        props(answer).correlation_id == Some(written),
        "answer correlation-id {:?} for {text_id}",
        props(answer).correlation_id
    );
    let status = app(answer, "IoThub-status").and_then(|v| v.as_i64());
    fact!(f, status == Some(201), "IoThub-status {status:?}");
    fact!(f, body_text(answer).as_deref() == Some(r#"{"rebooting":true}"#), "answer body");
}

/// `device-method`'s arguments for the method the method checks expect: `reboot`,
/// answered with status 201 and `{"rebooting": true}`.
fn answers_reboot(cmd: &mut Command) {
    cmd.args(["--method", "reboot", "--status", "201", "--answer", r#"{"rebooting": true}"#]);
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// azure-iot-device sending telemetry.
/// azure-iot-device's sendEvent to `address` (a device's or a module's), as `telemetry`
/// sends it: message-id `id`, the transport (the id's end) in the properties and body.
fn node_telemetry(f: &mut Facts, c: &Stream, s: &Stream, cbs: AfterCbs, address: &str, id: &str) {
    let Some((at, a)) = attach_at(c, address, Role::SENDER) else {
        return f.failed.push(format!("no sender to {address}"));
    };
    fact!(f, at > cbs.0, "the telemetry sender attached before the put-token");
    let sent = c.transfers(a.handle.0);
    let [(t, m)] = sent.as_slice() else {
        return f.failed.push(format!("{} telemetry transfers", sent.len()));
    };
    let p = props(m);
    let via = id.strip_prefix("tel-").unwrap_or(id);
    fact!(f, p.message_id == Some(MessageId::String(id.into())), "message-id {:?}", p.message_id);
    // The SDK sets `to` to the link's address.
    fact!(f, p.to.as_deref() == Some(address), "to {:?}", p.to);
    let ct = (
        p.content_type.as_ref().map(|c| c.as_str()),
        p.content_encoding.as_ref().map(|c| c.as_str()),
    );
    fact!(f, ct == (Some("application/json"), Some("utf-8")), "content-type/encoding {ct:?}");
    fact!(
        f,
        text(m, "alert").as_deref() == Some("no") && text(m, "transport").as_deref() == Some(via),
        "properties {:?}",
        m.application_properties
    );
    fact!(f, m.header.is_some(), "no header section");
    fact!(
        f,
        body_text(m).is_some_and(|b| b.contains(&format!("\"via\":\"{via}\""))),
        "body {:?}",
        m.body
    );
    let d = t.delivery_id.map(|d| d.0).unwrap_or(u32::MAX);
    let outcome = s.dispositions(d);
    fact!(
        f,
        outcome.iter().any(|o| matches!(o.state, Some(DeliveryState::Accepted(_)))),
        "the hub's outcome {outcome:?}"
    );
}

/// What the put-token of azure-eventhub holds, for the management request.
struct EventHubCbs {
    /// The audience of the put-token's token.
    audience: Option<String>,
}

/// What azure-eventhub does on both connections: SASL ANONYMOUS, its open, a session on
/// channel 1, the CBS links with both termini, a put-token keyed Event Hubs' way.
fn eventhub_common(f: &mut Facts, c: &Stream, s: &Stream, management: bool) -> EventHubCbs {
    // SASL ANONYMOUS (empty initial response, hostname), then AMQP.
    let start: Vec<&Item> = c.0.iter().take(3).collect();
    let sasl_ok = matches!(start.as_slice(), [Item::Header(ProtocolId::SASL), Item::Sasl(SaslFrameBody::Init(i)), Item::Header(ProtocolId::AMQP)]
        if i.mechanism.as_str() == "ANONYMOUS"
            && i.initial_response.as_deref() == Some(&b""[..])
            && i.hostname.as_deref() == Some("localhost"));
    fact!(f, sasl_ok, "azure-eventhub starts with {start:?}");
    let mechanisms = s.0.iter().find_map(|i| match i {
        Item::Sasl(SaslFrameBody::Mechanisms(m)) => Some(m.sasl_server_mechanisms.clone()),
        _ => None,
    });
    fact!(
        f,
        mechanisms.is_some_and(|m| m.iter().any(|m| m.as_str() == "ANONYMOUS")),
        "the hub's mechanisms"
    );
    match c.open() {
        Some(o) => {
            fact!(
                f,
                o.hostname.as_deref() == Some("localhost")
                    && o.max_frame_size == 1_048_576
                    && o.channel_max == 65_535,
                "open {o:?}"
            );
            if management {
                fact!(
                    f,
                    is_guid(&o.container_id) && o.properties.is_none(),
                    "management open {o:?}"
                );
            } else {
                let product = fields_get(o.properties.as_ref(), "product").and_then(Value::as_str);
                let version = fields_get(o.properties.as_ref(), "version").and_then(Value::as_str);
                fact!(
                    f,
                    product == Some("azsdk-python-eventhubs") && version == Some("5.15.1"),
                    "open properties {:?}",
                    o.properties
                );
                let cid = &o.container_id;
                fact!(
                    f,
                    cid.starts_with("EHConsumer-") && cid.contains("-partition"),
                    "receiver container-id {cid:?}"
                );
            }
        }
        None => f.failed.push("no open".into()),
    }
    let channels: BTreeSet<u16> = c
        .0
        .iter()
        .filter_map(|i| match i {
            Item::Amqp { channel, performative, .. }
                if !matches!(&**performative, Performative::Open(_) | Performative::Close(_)) =>
            {
                Some(*channel)
            }
            _ => None,
        })
        .collect();
    fact!(
        f,
        channels == BTreeSet::from([1]),
        "azure-eventhub's session is on channels {channels:?}, not 1"
    );
    // The CBS links: both termini $cbs, each way.
    for role in [Role::SENDER, Role::RECEIVER] {
        let a = c.attaches().into_iter().find(|a| {
            a.role == role && target_address(a) == Some("$cbs") && source_address(a) == Some("$cbs")
        });
        fact!(f, a.is_some(), "no CBS {role:?} with source and target $cbs");
    }
    let sender = c
        .attaches()
        .into_iter()
        .find(|a| a.role == Role::SENDER && target_address(a) == Some("$cbs"));
    let Some((_, put)) = sender.and_then(|a| c.transfers(a.handle.0).into_iter().next()) else {
        f.failed.push("no put-token".into());
        return EventHubCbs { audience: None };
    };
    let p = props(put);
    fact!(
        f,
        matches!(p.message_id, Some(MessageId::Uuid(_))) && p.reply_to.is_none() && p.to.is_none(),
        "put-token properties {p:?}"
    );
    fact!(
        f,
        text(put, "operation").as_deref() == Some("put-token")
            && text(put, "type").as_deref() == Some("servicebus.windows.net:sastoken"),
        "put-token {:?}",
        put.application_properties
    );
    fact!(
        f,
        matches!(app(put, "expiration"), Some(Value::Timestamp(_))),
        "expiration {:?}",
        app(put, "expiration")
    );
    let audience = if management {
        "sb://localhost/localhost"
    } else {
        "sb://localhost/localhost/consumergroups/$Default"
    };
    fact!(
        f,
        text(put, "name").as_deref() == Some(audience),
        "put-token name {:?}, not {audience}",
        app(put, "name")
    );
    let token = body_text(put).unwrap_or_default();
    let parsed = token.parse::<SasToken>();
    match &parsed {
        Ok(t) => {
            fact!(
                f,
                t.audience() == audience && t.key_name() == Some("iothubowner"),
                "token for {:?} skn {:?}",
                t.audience(),
                t.key_name()
            );
            // sr fully URL-encoded (quote_plus).
            fact!(
                f,
                !t.sr().contains(':') && !t.sr().contains('/'),
                "sr {:?} is not fully encoded",
                t.sr()
            );
            // Event Hubs' way: the HMAC keyed with the key's text, not the decoded key.
            let text_key = SasKey::from_bytes(OWNER_KEY.as_bytes());
            fact!(f, t.signature_matches(&text_key), "the token is not keyed with the key's text");
            fact!(
                f,
                !t.signature_matches(&SasKey::from_base64(OWNER_KEY).unwrap()),
                "the token is keyed with the decoded key"
            );
        }
        Err(e) => f.failed.push(format!("put-token body {token:?}: {e}")),
    }
    // Event Hubs answers 202.
    let receiver = c
        .attaches()
        .into_iter()
        .find(|a| a.role == Role::RECEIVER && source_address(a) == Some("$cbs"));
    let answer = receiver
        .and_then(|a| s.attach(&a.name))
        .and_then(|a| s.transfers(a.handle.0).into_iter().next());
    match answer {
        Some((_, m)) => {
            fact!(
                f,
                matches!(app(m, "status-code"), Some(Value::Int(202, _))),
                "status-code {:?}",
                app(m, "status-code")
            );
            fact!(
                f,
                props(m).correlation_id == p.message_id,
                "correlation-id {:?}",
                props(m).correlation_id
            );
        }
        None => f.failed.push("no put-token answer".into()),
    }
    EventHubCbs { audience: parsed.ok().map(|t| t.audience().to_owned()) }
}

/// azure-eventhub's first connection: a READ of the Event Hub on `$management`.
fn eventhub_management(f: &mut Facts, c: &Stream, s: &Stream, cbs: EventHubCbs) {
    let sender = attach_at(c, "$management", Role::SENDER).map(|(_, a)| a);
    let receiver = attach_at(c, "$management", Role::RECEIVER).map(|(_, a)| a);
    let (Some(tx), Some(rx)) = (sender, receiver) else {
        return f.failed.push("no $management links".into());
    };
    fact!(
        f,
        source_address(tx) == Some("$management") && target_address(rx) == Some("$management"),
        "the $management links have both termini"
    );
    let requests = c.transfers(tx.handle.0);
    let [(_, m)] = requests.as_slice() else {
        return f.failed.push(format!("{} management requests", requests.len()));
    };
    let p = props(m);
    fact!(
        f,
        matches!(p.message_id, Some(MessageId::Uuid(_))) && p.reply_to.is_none(),
        "request properties {p:?}"
    );
    fact!(
        f,
        text(m, "operation").as_deref() == Some("READ")
            && text(m, "type").as_deref() == Some("com.microsoft:eventhub")
            && text(m, "name").as_deref() == Some("localhost"),
        "request {:?}",
        m.application_properties
    );
    // A token goes along as `security_token`: one for the put-token's audience, signed
    // afresh (its expiry may differ by a second).
    let token = text(m, "security_token").and_then(|t| t.parse::<SasToken>().ok());
    let ok = token.is_some_and(|t| {
        Some(t.audience()) == cbs.audience.as_deref()
            && t.signature_matches(&SasKey::from_bytes(OWNER_KEY.as_bytes()))
    });
    fact!(f, ok, "security_token {:?}", app(m, "security_token"));
    fact!(f, matches!(m.body, Body::Empty), "request body {:?}", m.body);
    let answer = s.attach(&rx.name).and_then(|a| s.transfers(a.handle.0).into_iter().next());
    match answer {
        Some((_, r)) => {
            fact!(
                f,
                matches!(app(r, "status-code"), Some(Value::Int(200, _)))
                    && props(r).correlation_id == p.message_id,
                "the answer {:?}",
                r.application_properties
            );
            let ok = match &r.body {
                Body::Value(Value::Map(entries, _)) => {
                    let get = |k: &str| {
                        entries.iter().find(|(key, _)| key.as_str() == Some(k)).map(|(_, v)| v)
                    };
                    get("name").and_then(Value::as_str) == Some("localhost")
                        && matches!(get("created_at"), Some(Value::Timestamp(_)))
                        && matches!(get("partition_ids"), Some(Value::Array(_)))
                }
                _ => false,
            };
            fact!(f, ok, "the answer's body {:?}", r.body);
        }
        None => f.failed.push("no management answer".into()),
    }
    // azure-eventhub ends its session before it detaches the $management links, on the
    // channel it just ended; the emulator closes the connection with amqp:not-found.
    let names = c.names();
    let tail: Vec<&str> = names.iter().rev().take(6).rev().copied().collect();
    fact!(
        f,
        tail == ["detach", "detach", "end", "detach", "detach", "close"],
        "the client ends with {tail:?}"
    );
    let close = s.close().and_then(|c| c.error.as_ref()).map(|e| e.condition.to_string());
    fact!(f, close.as_deref() == Some("amqp:not-found"), "the hub's close has error {close:?}");
}

/// azure-eventhub's second connection: the partition receiver.
fn eventhub_receive(f: &mut Facts, c: &Stream, s: &Stream, _cbs: EventHubCbs) {
    let receiver = c.attaches().into_iter().find(|a| {
        a.role == Role::RECEIVER && source_address(a).is_some_and(|s| s.contains("/Partitions/"))
    });
    let Some(a) = receiver else { return f.failed.push("no partition receiver".into()) };
    // The full URL, with the `amqps` scheme.
    let address = source_address(a).unwrap_or_default();
    let p = address.strip_prefix("amqps://localhost/localhost/ConsumerGroups/$Default/Partitions/");
    fact!(
        f,
        p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "source address {address:?}"
    );
    fact!(
        f,
        target_address(a) == Some(format!("receiver-link-{}", a.name).as_str()),
        "target {:?}",
        target_address(a)
    );
    // The selector filter, keyed and described by the symbol (not the numeric code).
    let filter = match &a.source {
        Some(AttachSource::Source(s)) => {
            fields_get(s.filter.as_ref(), "apache.org:selector-filter:string")
        }
        _ => None,
    };
    let filter_ok = matches!(filter, Some(Value::Described(d))
        if matches!(&d.descriptor, Value::Symbol(s, _) if s.as_str() == "apache.org:selector-filter:string")
            && d.value.as_str() == Some("amqp.annotation.x-opt-offset > '-1'"));
    fact!(f, filter_ok, "filter {filter:?}");
    fact!(f, a.max_message_size == Some(1_048_576), "max-message-size {:?}", a.max_message_size);
    fact!(
        f,
        a.desired_capabilities.iter().any(|c| c.as_str() == "com.microsoft:georeplication"),
        "desired-capabilities {:?}",
        a.desired_capabilities
    );
    // Credit 0 first, then 300.
    let credits: Vec<Option<u32>> = c.flows(a.handle.0).iter().map(|f| f.link_credit).collect();
    fact!(f, credits.last() == Some(&Some(300)), "credits {credits:?}");
    // The event, as the emulator stamped it.
    let Some(ours) = s.attach(&a.name) else {
        return f.failed.push("the hub did not attach".into());
    };
    let events = s.transfers(ours.handle.0);
    let Some((_, m)) = events.first() else { return f.failed.push("no event".into()) };
    fact!(
        f,
        annotation(m, "iothub-connection-device-id").as_ref().and_then(Value::as_str)
            == Some("dev1"),
        "device id {:?}",
        annotation(m, "iothub-connection-device-id")
    );
    fact!(
        f,
        annotation(m, "x-opt-offset").as_ref().and_then(Value::as_str) == Some("0"),
        "x-opt-offset {:?}",
        annotation(m, "x-opt-offset")
    );
    fact!(
        f,
        matches!(annotation(m, "x-opt-sequence-number"), Some(Value::Long(0, _))),
        "x-opt-sequence-number {:?}",
        annotation(m, "x-opt-sequence-number")
    );
    fact!(
        f,
        matches!(annotation(m, "x-opt-enqueued-time"), Some(Value::Timestamp(_))),
        "x-opt-enqueued-time {:?}",
        annotation(m, "x-opt-enqueued-time")
    );
    fact!(
        f,
        text(m, "alert").as_deref() == Some("no"),
        "properties {:?}",
        m.application_properties
    );
    // A clean end.
    let names = c.names();
    fact!(
        f,
        names.ends_with(&["detach", "detach", "detach", "end", "close"]),
        "the client ends with {names:?}"
    );
    fact!(f, s.close().is_some_and(|c| c.error.is_none()), "the hub's close {:?}", s.close());
}

/// @azure/event-hubs's quickstart on one connection: SASL ANONYMOUS, then on session 0 the
/// CBS links and a put-token per resource it touches (`$management`, then each partition),
/// each keyed with the key's text and answered 202; on session 1 a READ of the Event Hub on
/// `$management`; then a receiver per partition the READ named, each on a session of its
/// own, with the offset filter under its numeric descriptor; the event on one of them.
fn eventhub_js_quickstart(f: &mut Facts, c: &Stream, s: &Stream) {
    let start: Vec<&Item> = c.0.iter().take(3).collect();
    let sasl_ok = matches!(start.as_slice(), [Item::Header(ProtocolId::SASL), Item::Sasl(SaslFrameBody::Init(i)), Item::Header(ProtocolId::AMQP)]
        if i.mechanism.as_str() == "ANONYMOUS" && i.hostname.as_deref() == Some("localhost"));
    fact!(f, sasl_ok, "@azure/event-hubs starts with {start:?}");
    fact!(
        f,
        c.open().is_some_and(|o| o.hostname.as_deref() == Some("localhost")),
        "open {:?}",
        c.open()
    );
    // The put-tokens, in order, to sb://localhost:<port>/localhost/...
    let Some(cbs) = c
        .attaches()
        .into_iter()
        .find(|a| a.role == Role::SENDER && target_address(a) == Some("$cbs"))
    else {
        return f.failed.push("no CBS sender".into());
    };
    let Some((cbs_channel, _)) = c.attach_with_channel(&cbs.name) else { return };
    let puts = c.transfers_on(cbs_channel, cbs.handle.0);
    let names: Vec<String> = puts
        .iter()
        .filter_map(|(_, m)| {
            let name = text(m, "name")?;
            let rest = name.strip_prefix("sb://localhost:")?;
            let (port, path) = rest.split_once('/')?;
            port.parse::<u16>().ok().map(|_| path.to_owned())
        })
        .collect();
    fact!(
        f,
        names
            == [
                "localhost/$management",
                "localhost/ConsumerGroups/$Default/Partitions/0",
                "localhost/ConsumerGroups/$Default/Partitions/1"
            ],
        "put-token names {names:?}"
    );
    for (_, m) in &puts {
        fact!(
            f,
            text(m, "operation").as_deref() == Some("put-token")
                && text(m, "type").as_deref() == Some("servicebus.windows.net:sastoken"),
            "put-token {:?}",
            m.application_properties
        );
        // The token in an amqp-value, keyed Event Hubs' way (with the key's text).
        let token = match &m.body {
            Body::Value(v) => v.as_str().and_then(|t| t.parse::<SasToken>().ok()),
            _ => None,
        };
        let ok = token.is_some_and(|t| {
            Some(t.audience()) == text(m, "name").as_deref()
                && t.key_name() == Some("iothubowner")
                && t.signature_matches(&SasKey::from_bytes(OWNER_KEY.as_bytes()))
        });
        fact!(f, ok, "the token of {:?}", text(m, "name"));
    }
    let answers: Vec<Option<Value>> = c
        .attaches()
        .into_iter()
        .find(|a| a.role == Role::RECEIVER && source_address(a) == Some("$cbs"))
        .and_then(|a| s.attach_with_channel(&a.name))
        .map(|(ch, a)| s.transfers_on(ch, a.handle.0))
        .unwrap_or_default()
        .iter()
        .map(|(_, m)| app(m, "status-code"))
        .collect();
    fact!(
        f,
        answers.len() == puts.len()
            && answers.iter().all(|v| matches!(v, Some(Value::Int(202, _)))),
        "put-token answers {answers:?}"
    );
    // The READ on $management, and its partition ids.
    let mut partitions = Vec::new();
    match attach_at(c, "$management", Role::SENDER).map(|(_, a)| a) {
        Some(tx) => {
            let ch = c.attach_with_channel(&tx.name).map_or(0, |(ch, _)| ch);
            fact!(f, ch != cbs_channel, "$management shares the CBS session");
            let requests = c.transfers_on(ch, tx.handle.0);
            let read = requests.first().map(|(_, m)| *m);
            fact!(
                f,
                read.is_some_and(|m| text(m, "operation").as_deref() == Some("READ")
                    && text(m, "type").as_deref() == Some("com.microsoft:eventhub")
                    && text(m, "name").as_deref() == Some("localhost")),
                "the management request {:?}",
                read.map(|m| &m.application_properties)
            );
            let rx = attach_at(c, "$management", Role::RECEIVER).map(|(_, a)| a);
            let answer = rx
                .and_then(|a| s.attach_with_channel(&a.name))
                .and_then(|(ch, a)| s.transfers_on(ch, a.handle.0).into_iter().next());
            if let Some((_, Body::Value(Value::Map(entries, _)))) =
                answer.map(|(t, m)| (t, &m.body))
            {
                if let Some((_, Value::Array(ids))) =
                    entries.iter().find(|(k, _)| k.as_str() == Some("partition_ids"))
                {
                    partitions =
                        ids.items().iter().filter_map(Value::as_str).map(str::to_owned).collect();
                }
            }
            fact!(f, partitions == ["0", "1"], "partition ids {partitions:?}");
        }
        None => f.failed.push("no $management sender".into()),
    }
    // A receiver per partition, each on a session of its own.
    let mut channels = BTreeSet::from([cbs_channel]);
    let mut events = 0;
    for p in &partitions {
        let address = format!("localhost/ConsumerGroups/$Default/Partitions/{p}");
        let Some(a) = c
            .attaches()
            .into_iter()
            .find(|a| a.role == Role::RECEIVER && source_address(a) == Some(address.as_str()))
        else {
            f.failed.push(format!("no receiver on {address}"));
            continue;
        };
        let ch = c.attach_with_channel(&a.name).map_or(0, |(ch, _)| ch);
        fact!(f, channels.insert(ch), "the receiver of partition {p} shares channel {ch}");
        let filter = match &a.source {
            Some(AttachSource::Source(s)) => {
                fields_get(s.filter.as_ref(), "apache.org:selector-filter:string")
            }
            _ => None,
        };
        // apache.org:selector-filter:string under its code, 0x0000468C:0x00000004.
        let filter_ok = matches!(filter, Some(Value::Described(d))
            if matches!(d.descriptor, Value::Ulong(0x0000_468c_0000_0004, _))
                && d.value.as_str() == Some("amqp.annotation.x-opt-offset > '-1'"));
        fact!(f, filter_ok, "partition {p}'s filter {filter:?}");
        let credit = c.flows(a.handle.0).iter().filter_map(|f| f.link_credit).max();
        fact!(f, credit.is_some_and(|c| c > 0), "partition {p}'s credit {credit:?}");
        if let Some((sch, ours)) = s.attach_with_channel(&a.name) {
            for (_, m) in s.transfers_on(sch, ours.handle.0) {
                events += 1;
                fact!(
                    f,
                    annotation(m, "iothub-connection-device-id").as_ref().and_then(Value::as_str)
                        == Some("dev1")
                        && annotation(m, "x-opt-offset").as_ref().and_then(Value::as_str)
                            == Some("0"),
                    "the event's annotations {:?}",
                    m.message_annotations
                );
            }
        }
    }
    fact!(f, events == 1, "{events} events, not 1");
    fact!(f, c.close().is_some_and(|c| c.error.is_none()), "the client's close {:?}", c.close());
    fact!(f, s.close().is_some_and(|c| c.error.is_none()), "the hub's close {:?}", s.close());
}

// ------------------------------------------------------------------ the scenario

const UUID_ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

/// One Node transport's run: the captures of every SDK connection, and the steps that
/// failed.
struct Run {
    captures: Captures,
    failed: Vec<String>,
}

fn c2d_id(t: NodeTransport) -> &'static str {
    // Over AmqpWs a message id that looks like a UUID: the SDK sends it as an AMQP uuid.
    match t {
        NodeTransport::Amqp => "c2d-amqp-1",
        NodeTransport::Ws => UUID_ID,
    }
}

fn stem(role: &str, t: NodeTransport, step: &str) -> String {
    let transport = match t {
        NodeTransport::Amqp => "amqp",
        NodeTransport::Ws => "amqpws",
    };
    format!("node-{role}-{transport}-{step}")
}

/// The Node service sends a C2D message with ack full; the Node device receives and
/// completes it; the Node service reads the Success feedback.
async fn c2d_with_feedback(
    t: NodeTransport,
    h: &Hub,
    rec: &Recorder,
    caps: &mut Captures,
    scratch: &Scratch,
    ca: &Path,
) -> Result<(), String> {
    let id = c2d_id(t);
    let body = format!("switch on ({})", t.arg());
    let limit = Duration::from_secs(40);

    let before = rec.keys();
    let mut cmd = node("service-send", t, h, ca);
    cmd.args(["--device", "dev1", "--message-id", id, "--body", &body, "--ack", "full"]);
    cmd.args(["--property", "room=kitchen"]);
    let run = run_peer(cmd, &format!("service-send-{}", t.arg()), scratch, limit)
        .await
        .map_err(|e| format!("service-send: {e}"))?;
    let sent = run.events("sent");
    if sent.len() != 1 || sent[0]["result"] != "MessageEnqueued" {
        return Err(format!("service-send printed {:?}", run.lines));
    }
    caps.take(rec, &before, t.endpoint(), &[&stem("service", t, "c2d-send")], true).await?;
    if h.hub.queued("dev1") != 1 {
        return Err(format!(
            "after service-send {} message(s) queued for dev1, not 1",
            h.hub.queued("dev1")
        ));
    }

    let before = rec.keys();
    let mut cmd = node("device-receive", t, h, ca);
    cmd.args(["--expect-body", &body, "--expect-message-id", id, "--action", "complete"]);
    let run = run_peer(cmd, &format!("device-receive-{}", t.arg()), scratch, limit)
        .await
        .map_err(|e| format!("device-receive: {e}"))?;
    let got = run.events("message");
    let [m] = got.as_slice() else { return Err(format!("device-receive printed {:?}", run.lines)) };
    if m["properties"]["room"] != "kitchen" {
        return Err(format!("the device saw properties {}, not room=kitchen", m["properties"]));
    }
    // The lock token: a GUID's 16 bytes.
    if m["deliveryTag"].as_str().map(str::len) != Some(32) {
        return Err(format!("the delivery tag is {}, not 16 bytes", m["deliveryTag"]));
    }
    let settled = run.events("settled");
    if settled.len() != 1 || settled[0]["result"] != "MessageCompleted" {
        return Err(format!("complete: {:?}", run.lines));
    }
    caps.take(rec, &before, t.endpoint(), &[&stem("device", t, "c2d-receive")], true).await?;
    eventually("the Success feedback for the completed message", || {
        let f = h.hub.pending_feedback();
        h.hub.queued("dev1") == 0
            && f.len() == 1
            && f[0].original_message_id == id
            && f[0].status == FeedbackStatus::Success
    })
    .await
    .map_err(|e| {
        format!("{e}: queued {}, feedback {:?}", h.hub.queued("dev1"), h.hub.pending_feedback())
    })?;

    let before = rec.keys();
    let mut cmd = node("service-feedback", t, h, ca);
    cmd.args(["--expect-message-id", id, "--expect-status", "Success"]);
    let run = run_peer(cmd, &format!("service-feedback-{}", t.arg()), scratch, limit)
        .await
        .map_err(|e| format!("service-feedback: {e}"))?;
    let records = run.events("feedback-record");
    let ok = records.len() == 1
        && records[0]["originalMessageId"] == id
        && records[0]["deviceId"] == "dev1"
        && records[0]["statusCode"] == "Success";
    if !ok {
        return Err(format!("service-feedback printed {:?}", run.lines));
    }
    caps.take(rec, &before, t.endpoint(), &[&stem("service", t, "feedback")], true).await?;
    if !h.hub.pending_feedback().is_empty() {
        return Err(format!("feedback left after it was read: {:?}", h.hub.pending_feedback()));
    }
    Ok(())
}

/// The Node device sends telemetry with properties; amqpwire's EventReader (after the
/// redirect) and azure-eventhub read it.
/// The telemetry message `device-send` sends, as [`node_telemetry`] checks it: message-id
/// `tel-VIA`, `via` in the JSON body and in the `transport` property.
fn telemetry_args(cmd: &mut Command, via: &str) {
    // The same body and id as [`telemetry`] reads back.
    let body = format!("{{\"temp\":21.5,\"via\":\"{via}\"}}");
    cmd.args(["--body", &body, "--message-id", &format!("tel-{via}"), "--property", "alert=no"]);
    cmd.args(["--property", &format!("transport={via}")]);
    cmd.args(["--content-type", "application/json", "--content-encoding", "utf-8"]);
}

async fn telemetry(
    t: NodeTransport,
    h: &Hub,
    rec: &Recorder,
    caps: &mut Captures,
    scratch: &Scratch,
    ca: &Path,
) -> Result<(), String> {
    let body = format!("{{\"temp\":21.5,\"via\":\"{}\"}}", t.arg());
    let id = format!("tel-{}", t.arg());
    let limit = Duration::from_secs(40);
    let before = rec.keys();
    let mut cmd = node("device-send", t, h, ca);
    telemetry_args(&mut cmd, t.arg());
    let run = run_peer(cmd, &format!("device-send-{}", t.arg()), scratch, limit)
        .await
        .map_err(|e| format!("device-send: {e}"))?;
    let sent = run.events("sent");
    if sent.len() != 1 || sent[0]["result"] != "MessageEnqueued" {
        return Err(format!("device-send printed {:?}", run.lines));
    }
    caps.take(rec, &before, t.endpoint(), &[&stem("device", t, "telemetry")], true).await?;
    let p = h.hub.partition_of("dev1");
    let events = h.hub.events(p);
    let [e] = events.as_slice() else {
        return Err(format!("{} events in partition {p}, not 1", events.len()));
    };
    if e.device_id != "dev1" {
        return Err(format!("the event is from {:?}", e.device_id));
    }

    // amqpwire's own reader, as `az iot hub monitor-events` would: the redirect, then the
    // partitions from the start.
    let cs: IotHubConnectionString = owner_cs().parse().unwrap();
    let mut o = HubOptions::new(t.hub_transport(), Security::None);
    o.tls = h.pki.client();
    o.port = Some(t.port(h));
    o.event_hub_ws_port = Some(h.event_hub_wss);
    o.timeout = Duration::from_secs(10);
    let read = async {
        let target =
            EventHubTarget::discover(&cs, &o).await.map_err(|e| format!("discover: {e}"))?;
        if (target.hostname.as_str(), target.port) != ("localhost", h.event_hub) {
            return Err(format!("the redirect names {}:{}", target.hostname, target.port));
        }
        let opts = ReadOptions { start: StartPosition::START, ..ReadOptions::default() };
        let mut reader = EventReader::connect(&cs, &target, opts, &o)
            .await
            .map_err(|e| format!("EventReader::connect: {e}"))?;
        let event = reader.next().await.map_err(|e| format!("EventReader::next: {e}"))?;
        let _ = reader.close().await;
        Ok::<_, String>(event)
    };
    let event = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .map_err(|_| "amqpwire's EventReader: timed out".to_owned())??;
    let m = &event.message;
    let props = m.properties.as_ref();
    let ok = event.device_id.as_deref() == Some("dev1")
        && event.partition == p.to_string()
        && event.body_text().as_deref() == Some(body.as_str())
        && text(m, "alert").as_deref() == Some("no")
        && text(m, "transport").as_deref() == Some(t.arg())
        && props.and_then(|p| p.message_id.clone()) == Some(MessageId::String(id.as_str().into()))
        && props.and_then(|p| p.content_type.as_ref()).map(|s| s.as_str())
            == Some("application/json");
    if !ok {
        return Err(format!("amqpwire's EventReader read {event:?}"));
    }

    // azure-eventhub, over TLS to the Event Hub endpoint.
    let before = rec.keys();
    let mut cmd = Command::new(eventhub_python());
    cmd.arg(Path::new(PEERS).join("eventhub_consumer.py"));
    cmd.args(["--connection-string", &event_hub_cs(), "--partition", &p.to_string()]);
    cmd.arg("--ca").arg(ca);
    cmd.args(["--custom-endpoint-address", &format!("sb://localhost:{}", h.event_hub)]);
    cmd.args(["--count", "1", "--expect-body", &body, "--expect-device-id", "dev1"]);
    cmd.args(["--timeout", "20"]);
    let run = run_peer(cmd, &format!("eventhub-{}", t.arg()), scratch, limit)
        .await
        .map_err(|e| format!("eventhub_consumer.py: {e}"))?;
    let got = run.events("event");
    let [e] = got.as_slice() else {
        return Err(format!("eventhub_consumer.py printed {:?}", run.lines));
    };
    let ok = e["properties"]["alert"] == "no"
        && e["properties"]["transport"] == t.arg()
        && e["system_properties"]["iothub-connection-device-id"] == "dev1"
        && e["sequence_number"] == 0
        && e["offset"] == "0"
        && e["message_id"] == id.as_str();
    if !ok {
        return Err(format!("azure-eventhub read {e}"));
    }
    // Its two connections: $management, then the partition receiver. One pair is kept.
    let keep = t == NodeTransport::Amqp;
    caps.take(
        rec,
        &before,
        Endpoint::EventHub,
        &["eventhub-py-management", "eventhub-py-receive"],
        keep,
    )
    .await?;
    if t == NodeTransport::Amqp {
        eventhubs_quickstart(h, rec, caps, scratch, ca, &body).await?;
    }
    Ok(())
}

/// @azure/event-hubs's quickstart (`tests/peers/eventhubs_quickstart.js`), unchanged in
/// shape: a consumer client made from the Event Hub-compatible connection string alone,
/// `subscribe()` to every partition from the earliest event; it must read `body`.
async fn eventhubs_quickstart(
    h: &Hub,
    rec: &Recorder,
    caps: &mut Captures,
    scratch: &Scratch,
    ca: &Path,
    body: &str,
) -> Result<(), String> {
    let cs = format!(
        "Endpoint=sb://localhost:{}/;SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY};\
         EntityPath=localhost",
        h.event_hub
    );
    let before = rec.keys();
    let mut cmd = Command::new("node");
    cmd.arg(Path::new(PEERS).join("eventhubs_quickstart.js")).args([cs.as_str(), "1"]);
    cmd.env("NODE_EXTRA_CA_CERTS", ca);
    let run = run_peer(cmd, "eventhubs-quickstart", scratch, Duration::from_secs(70))
        .await
        .map_err(|e| format!("eventhubs_quickstart.js: {e}"))?;
    let [e] = run.lines.as_slice() else {
        return Err(format!("eventhubs_quickstart.js printed {:?}", run.lines));
    };
    // The body is JSON (content-type application/json): the SDK hands it over parsed.
    let json: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    if e["body"] != json || e["device"] != "dev1" || e["properties"]["alert"] != "no" {
        return Err(format!("@azure/event-hubs read {e}"));
    }
    caps.take(rec, &before, Endpoint::EventHub, &["eventhub-js-quickstart"], true).await
}

async fn node_sdks_against_the_emulator(t: NodeTransport) -> Run {
    // Every peer this test needs, before anything starts.
    node_sdks_installed();
    eventhub_python();
    let rec = Arc::new(Recorder::default());
    let tweak = |c: &mut amqpwire::azure::emulator::HubConfig| {
        c.feedback_interval = Duration::from_millis(50);
    };
    let h = hub::start_traced(tweak, Some(rec.trace())).await;
    let scratch = Scratch::new("iothub-sdk", t.arg());
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    let mut captures = Captures::default();
    let mut failed = Vec::new();
    let started = Instant::now();
    if let Err(e) = c2d_with_feedback(t, &h, &rec, &mut captures, &scratch, &ca).await {
        failed.push(format!("C2D with feedback over {}: {e}", t.arg()));
    }
    if let Err(e) = telemetry(t, &h, &rec, &mut captures, &scratch, &ca).await {
        failed.push(format!("telemetry over {}: {e}", t.arg()));
    }
    eprintln!("{}: {:?}", t.arg(), started.elapsed());
    Run { captures, failed }
}

/// Checks what the SDKs sent on every connection, writes the fixtures when asked and the
/// run passed, and fails with every step and check that did not hold.
fn finish(mut run: Run) {
    for (stem, c, _) in &run.captures.0 {
        if let Err(e) = check_capture(stem, &c.c2s, &c.s2c) {
            run.failed.push(e);
        }
    }
    assert!(
        run.failed.is_empty(),
        "{} step(s) or capture(s) failed:\n\n{}",
        run.failed.len(),
        run.failed.join("\n\n")
    );
    run.captures.write_if_asked();
}

/// The hub's refusals reach the Node SDKs as their own errors, and reject and abandon
/// settle as IoT Hub settles them.
async fn refusals_and_settlements(
    t: NodeTransport,
    h: &Hub,
    scratch: &Scratch,
    ca: &Path,
) -> Result<(), String> {
    let limit = Duration::from_secs(40);
    let label = |what: &str| format!("{what}-{}", t.arg());

    // A device the registry does not know: amqp:not-found, DeviceNotFoundError.
    let mut cmd = node("service-send", t, h, ca);
    cmd.args([
        "--device",
        "ghost",
        "--message-id",
        "to-ghost",
        "--expect-error",
        "DeviceNotFoundError",
    ]);
    let run = run_peer(cmd, &label("ghost"), scratch, limit)
        .await
        .map_err(|e| format!("send to ghost: {e}"))?;
    let e = run.events("send-error");
    if e.len() != 1 || e[0]["condition"] != "amqp:not-found" {
        return Err(format!("send to ghost printed {:?}", run.lines));
    }
    // A device connection string with the wrong key: the put-token's 401 is
    // UnauthorizedError, with the emulator's description.
    let mut cmd = Command::new("node");
    cmd.arg(Path::new(PEERS).join("iothub_sdk.js")).arg("device-send");
    let wrong = format!("HostName=localhost;DeviceId=dev1;SharedAccessKey={OWNER_KEY}");
    cmd.args(["--connection-string", &wrong, "--transport", t.arg(), "--body", "x"]);
    cmd.args(["--port", &t.port(h).to_string(), "--timeout", "20"]);
    cmd.arg("--ca").arg(ca);
    cmd.args(["--expect-error", "UnauthorizedError"]);
    let run = run_peer(cmd, &label("wrong-key"), scratch, limit)
        .await
        .map_err(|e| format!("wrong key: {e}"))?;
    let e = run.events("open-error");
    if e.len() != 1 || e[0]["message"] != "signature does not match" {
        return Err(format!("the wrong key printed {:?}", run.lines));
    }

    // The device rejects one message; then abandons another and completes it when it
    // comes again, with a new lock token. One message at a time: azure-iot-device's rhea
    // (1.0.24) folds a settlement into the previous one-delivery disposition without
    // comparing outcomes, so a reject and an abandon in a row go out as one `rejected`
    // for both deliveries.
    let ids = [format!("rej-{}", t.arg()), format!("ab-{}", t.arg())];
    let (mut seen, mut results) = (Vec::new(), Vec::new());
    for (id, actions, count) in [(&ids[0], "reject", "1"), (&ids[1], "abandon,complete", "2")] {
        let mut cmd = node("service-send", t, h, ca);
        cmd.args(["--device", "dev1", "--message-id", id, "--ack", "full"]);
        run_peer(cmd, &label(id), scratch, limit).await.map_err(|e| format!("send {id}: {e}"))?;
        let mut cmd = node("device-receive", t, h, ca);
        cmd.args(["--expect-message-id", id, "--action", actions, "--count", count]);
        let run = run_peer(cmd, &label(&format!("settle-{id}")), scratch, limit)
            .await
            .map_err(|e| format!("device-receive {id}: {e}"))?;
        for m in run.events("message") {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            seen.push((s("messageId"), s("action"), s("deliveryTag")));
        }
        results.extend(run.events("settled").iter().map(|r| r["result"].clone()));
    }
    let steps: Vec<(&str, &str)> =
        seen.iter().map(|(id, a, _)| (id.as_str(), a.as_str())).collect();
    let want =
        [(ids[0].as_str(), "reject"), (ids[1].as_str(), "abandon"), (ids[1].as_str(), "complete")];
    let ok = steps == want
        && results == ["MessageRejected", "MessageAbandoned", "MessageCompleted"]
        && seen[1].2 != seen[2].2;
    if !ok {
        return Err(format!("the device saw {seen:?}, settled {results:?}"));
    }
    eventually("Rejected and Success feedback", || {
        let mut f: Vec<(String, FeedbackStatus)> = h
            .hub
            .pending_feedback()
            .into_iter()
            .map(|r| (r.original_message_id, r.status))
            .collect();
        f.sort_by(|a, b| a.0.cmp(&b.0));
        h.hub.queued("dev1") == 0
            && f == [
                (ids[1].clone(), FeedbackStatus::Success),
                (ids[0].clone(), FeedbackStatus::Rejected),
            ]
    })
    .await
    .map_err(|e| format!("{e}: {:?}", h.hub.pending_feedback()))?;
    let mut cmd = node("service-feedback", t, h, ca);
    cmd.args(["--expect-message-id", &ids[0], "--expect-status", "Rejected"]);
    run_peer(cmd, &label("feedback"), scratch, limit)
        .await
        .map_err(|e| format!("service-feedback: {e}"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdks_see_refusals_rejects_and_abandons() {
    let h = hub::start(Duration::from_millis(50)).await;
    let scratch = Scratch::new("iothub-sdk", "refusals");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    let mut failed = Vec::new();
    for t in [NodeTransport::Amqp, NodeTransport::Ws] {
        if let Err(e) = refusals_and_settlements(t, &h, &scratch, &ca).await {
            failed.push(format!("over {}: {e}", t.arg()));
        }
    }
    assert!(failed.is_empty(), "{} transport(s) failed:\n\n{}", failed.len(), failed.join("\n\n"));
}

// ------------------------------------------------------------------ the fixtures

/// Every capture in `tests/fixtures/iothub/`: `STEM.c2s.bin` and `STEM.s2c.bin`.
const STEMS: [&str; 21] = [
    "node-service-amqp-c2d-send",
    "node-service-amqp-feedback",
    "node-device-amqp-c2d-receive",
    "node-device-amqp-telemetry",
    "node-service-amqpws-c2d-send",
    "node-service-amqpws-feedback",
    "node-device-amqpws-c2d-receive",
    "node-device-amqpws-telemetry",
    "eventhub-py-management",
    "eventhub-py-receive",
    "node-device-amqp-twin",
    "node-device-amqp-method",
    "node-device-amqpws-twin",
    "node-device-amqpws-method",
    "node-module-amqp-telemetry",
    "node-module-amqp-twin",
    "node-module-amqp-method",
    "node-device-x509-amqp-telemetry",
    "node-device-x509-amqpws-telemetry",
    "node-device-x509-thumbprint-amqp-telemetry",
    "eventhub-js-quickstart",
];

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(FIXTURES).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The captured fixtures show what the SDKs send: the same checks as on a live run, and
/// that `Amqp` and `AmqpWs` send the same frames. Reads only the files.
#[test]
fn sdk_fixtures_show_what_the_sdks_send() {
    let mut failed = Vec::new();
    for stem in STEMS {
        let (c2s, s2c) = (fixture(&format!("{stem}.c2s.bin")), fixture(&format!("{stem}.s2c.bin")));
        if let Err(e) = check_capture(stem, &c2s, &s2c) {
            failed.push(e);
        }
    }
    // Over WebSocket the Node SDKs send the frames they send over TLS, in the same order.
    for stem in STEMS.iter().filter(|s| s.contains("-amqp-")) {
        let ws = stem.replace("-amqp-", "-amqpws-");
        if !STEMS.contains(&ws.as_str()) {
            continue;
        }
        for dir in ["c2s", "s2c"] {
            let names = |stem: &str| {
                Stream::decode(&fixture(&format!("{stem}.{dir}.bin")))
                    .map(|s| s.names().join(" "))
                    .unwrap_or_else(|e| e)
            };
            let (a, b) = (names(stem), names(&ws));
            if a != b {
                failed.push(format!("{stem}.{dir} and {ws}.{dir} differ:\n  {a}\n  {b}"));
            }
        }
    }
    // The checks tell the captures apart: a service capture fails the device's and
    // azure-eventhub's checks, and the two directions swapped fail their own.
    let (c, s) = (
        fixture("node-service-amqp-c2d-send.c2s.bin"),
        fixture("node-service-amqp-c2d-send.s2c.bin"),
    );
    for (stem, c, s) in [
        ("node-device-amqp-c2d-receive", &c, &s),
        ("eventhub-py-receive", &c, &s),
        ("eventhub-js-quickstart", &c, &s),
        ("node-service-amqp-c2d-send", &s, &c),
    ] {
        if check_capture(stem, c, s).is_ok() {
            failed.push(format!("the checks of {stem} pass on another capture"));
        }
    }
    let (c, s) =
        (fixture("node-device-amqp-method.c2s.bin"), fixture("node-device-amqp-method.s2c.bin"));
    for (stem, c, s) in [("node-device-amqp-twin", &c, &s), ("node-device-amqp-method", &s, &c)] {
        if check_capture(stem, c, s).is_ok() {
            failed.push(format!("the checks of {stem} pass on another capture"));
        }
    }
    // A module's telemetry is not a device's, and a connection with a token is not an
    // X.509 one (nor the other way round).
    let pair =
        |stem: &str| (fixture(&format!("{stem}.c2s.bin")), fixture(&format!("{stem}.s2c.bin")));
    for (stem, other) in [
        ("node-device-amqp-telemetry", "node-module-amqp-telemetry"),
        ("node-module-amqp-telemetry", "node-device-amqp-telemetry"),
        ("node-device-x509-amqp-telemetry", "node-device-amqp-telemetry"),
        ("node-device-amqp-telemetry", "node-device-x509-amqp-telemetry"),
        ("node-device-x509-thumbprint-amqp-telemetry", "node-device-x509-amqp-telemetry"),
        ("node-device-x509-amqp-telemetry", "node-device-x509-thumbprint-amqp-telemetry"),
        ("node-module-amqp-twin", "node-device-amqp-twin"),
        ("node-device-amqp-twin", "node-module-amqp-twin"),
        ("node-module-amqp-method", "node-device-amqp-method"),
        ("node-device-amqp-method", "node-module-amqp-method"),
        ("eventhub-js-quickstart", "eventhub-py-receive"),
        ("eventhub-py-receive", "eventhub-js-quickstart"),
    ] {
        let (c, s) = pair(other);
        if check_capture(stem, &c, &s).is_ok() {
            failed.push(format!("the checks of {stem} pass on {other}"));
        }
    }
    // Each capture file is listed in the README with its size and frames, and there is no
    // other.
    let readme = String::from_utf8(fixture("README.md")).unwrap();
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".c2s.bin").or_else(|| name.strip_suffix(".s2c.bin"))
        else {
            continue;
        };
        if !STEMS.contains(&stem) {
            failed.push(format!("{name}: not a capture this test knows"));
        }
        let bytes = fixture(&name);
        let line = readme.lines().find(|l| l.starts_with(&format!("- `{name}` (")));
        match line {
            None => failed.push(format!("{name}: not described in README.md")),
            Some(line) => {
                let size = format!("({} bytes)", bytes.len());
                let frames = format!("frames: {}.", frame_list(&bytes));
                if !line.contains(&size) || !line.ends_with(&frames) {
                    failed.push(format!("{name}: README says {line:?}, the file {size} {frames}"));
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} fixture check(s) failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdks_over_amqp() {
    finish(node_sdks_against_the_emulator(NodeTransport::Amqp).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdks_over_amqp_ws() {
    finish(node_sdks_against_the_emulator(NodeTransport::Ws).await);
}

/// The Node SDK's device sends telemetry through amqpwire's relay (`Amqp` through an
/// amqps relay, `AmqpWs` through a wss relay on `/$iothub/websocket`), and the bytes on
/// both sides of the relay are the same: what the relay read from the SDK is what the
/// emulator read, and what the emulator wrote is what the relay passed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_sdk_talks_to_the_emulator_through_the_relay() {
    use amqpwire::proxy::{Proxy, ProxyOptions};
    node_sdks_installed();
    let rec = Arc::new(Recorder::default());
    let h = hub::start_traced(|_| {}, Some(rec.trace())).await;
    let scratch = Scratch::new("iothub-sdk", "relay");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    let mut failed = Vec::new();
    for t in [NodeTransport::Amqp, NodeTransport::Ws] {
        let (listen, upstream) = match t {
            NodeTransport::Amqp => {
                ("amqps://127.0.0.1:0".to_owned(), format!("amqps://localhost:{}", h.amqps))
            }
            NodeTransport::Ws => (
                "wss://127.0.0.1:0/$iothub/websocket".to_owned(),
                format!("wss://localhost:{}/$iothub/websocket", h.wss),
            ),
        };
        let endpoint = amqpwire::runtime::transport::Endpoint::parse_listen(&listen).unwrap();
        let mut options =
            ProxyOptions::new(&endpoint, upstream.parse().unwrap(), Some(h.pki.server()));
        options.tls = h.pki.client();
        let tap = Arc::new(tap::Recorder::default());
        let proxy = Proxy::bind(&listen, options, tap.clone()).await.expect("the relay");
        let port = proxy.endpoint().port;
        tokio::spawn(async move { proxy.run().await });

        let before = rec.keys();
        let mut cmd = node_at("device-send", t, port, &ca);
        cmd.args(["--body", "through the relay"]);
        let r = async {
            let run =
                run_peer(cmd, &format!("relay-{}", t.arg()), &scratch, Duration::from_secs(40))
                    .await?;
            let sent = run.events("sent");
            if sent.len() != 1 || sent[0]["result"] != "MessageEnqueued" {
                return Err(format!("device-send printed {:?}", run.lines));
            }
            tokio::time::timeout(Duration::from_secs(20), tap.finished.notified())
                .await
                .map_err(|_| "the relay did not finish".to_owned())?;
            let keys = rec.new_since(&before, t.endpoint());
            let [key] = keys.as_slice() else {
                return Err(format!("{} connections at the emulator", keys.len()));
            };
            let seen = rec.get(*key);
            let (c2s, s2c) = (tap.c2s.lock().unwrap().clone(), tap.s2c.lock().unwrap().clone());
            if c2s != seen.c2s || s2c != seen.s2c || c2s.is_empty() {
                return Err(format!(
                    "the relay saw {}/{} bytes, the emulator {}/{}",
                    c2s.len(),
                    s2c.len(),
                    seen.c2s.len(),
                    seen.s2c.len()
                ));
            }
            Ok(())
        };
        if let Err(e) = r.await {
            failed.push(format!("{}: {e}", t.arg()));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// A tap that records each relayed connection as a script of the client's side.
#[derive(Default)]
struct ScriptTap {
    recorders: Mutex<BTreeMap<u64, amqpwire::script::record::Recorder>>,
    finished: tokio::sync::Notify,
}

impl amqpwire::proxy::Tap for ScriptTap {
    fn bytes(&self, n: u64, flow: amqpwire::proxy::Flow, data: &[u8]) -> Result<(), String> {
        let mut all = self.recorders.lock().unwrap();
        let r = all.entry(n).or_default();
        match flow {
            amqpwire::proxy::Flow::ClientToServer => r.ours(data),
            amqpwire::proxy::Flow::ServerToClient => r.theirs(data),
        }
        Ok(())
    }

    fn event(&self, _: u64, event: &amqpwire::proxy::ProxyEvent) {
        if matches!(event, amqpwire::proxy::ProxyEvent::Finished) {
            self.finished.notify_one();
        }
    }
}

/// Record and replay: the Node SDK's device session (telemetry, with its CBS put-token) is
/// recorded through the relay as a script, then replayed. Against a fresh emulator every
/// step holds; against the embedded broker, which has no claims-based security, the
/// divergence is reported at the `$cbs` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_sdk_session_replays_against_the_emulator_and_diverges_on_the_broker() {
    use amqpwire::proxy::{Proxy, ProxyOptions};
    use amqpwire::runtime::transport::{self as tr, Endpoint as Url};
    use amqpwire::script::player::{parse, Player};
    node_sdks_installed();
    let h = hub::start_traced(|_| {}, None).await;
    let scratch = Scratch::new("iothub-sdk", "record");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    let listen = "amqps://127.0.0.1:0";
    let endpoint = Url::parse_listen(listen).unwrap();
    let upstream = format!("amqps://localhost:{}", h.amqps);
    let mut options = ProxyOptions::new(&endpoint, upstream.parse().unwrap(), Some(h.pki.server()));
    options.tls = h.pki.client();
    let tap = Arc::new(ScriptTap::default());
    let proxy = Proxy::bind(listen, options, tap.clone()).await.expect("the relay");
    let port = proxy.endpoint().port;
    tokio::spawn(async move { proxy.run().await });
    let mut cmd = node_at("device-send", NodeTransport::Amqp, port, &ca);
    cmd.args(["--body", "recorded"]);
    run_peer(cmd, "record", &scratch, Duration::from_secs(40)).await.expect("device-send");
    tokio::time::timeout(Duration::from_secs(20), tap.finished.notified()).await.expect("finished");
    let script = tap.recorders.lock().unwrap().values().next().expect("a connection").script();
    std::fs::write(scratch.path("device-send.jsonl"), &script).expect("write");
    // (A recording writes a text that starts with `$` as `$$…`, which scripts read as the
    // text, not a variable.)
    assert!(script.contains("\"$$cbs\""), "the CBS links are in the script");

    let replay = |url: String, tls: tr::ClientTlsConfig| {
        let script = script.clone();
        async move {
            let mut player = Player::new(parse(&script, Duration::from_secs(10)).expect("parses"));
            let io = tr::connect(&url.parse::<Url>().unwrap(), &tls).await.expect("connect");
            tokio::time::timeout(
                Duration::from_secs(60),
                amqpwire::runtime::script::play(&mut player, io),
            )
            .await
            .expect("ends");
            player.verdict().cloned().expect("a verdict")
        }
    };
    // A fresh emulator: the same answers.
    let fresh = hub::start_traced(|_| {}, None).await;
    let r = replay(format!("amqps://localhost:{}", fresh.amqps), fresh.pki.client()).await;
    assert_eq!(r, Ok(()), "against a fresh emulator");
    // The embedded broker: its $cbs node answers the put-token 200 too, but says that it
    // checked nothing (it has no CBS keys), where the script expects IoT Hub's "OK".
    let listener = amqpwire::runtime::Listener::bind(
        "amqp://127.0.0.1:0",
        amqpwire::broker::listen_options(&[], None, None),
    )
    .await
    .expect("bind");
    let url = listener.endpoint().to_string();
    tokio::spawn(async move { amqpwire::broker::Broker::new().serve(listener).await });
    let f = replay(url, tr::ClientTlsConfig::new()).await.expect_err("diverges");
    assert!(f.expected.contains(r#""status-description":"OK""#), "the CBS answer: {f}");
    assert!(f.got.contains("not checked"), "the broker's description: {f}");
}

/// The embedded broker's `$cbs` node, as the Node device SDK uses it: without keys the
/// SDK's put-token is answered 200 and its telemetry lands in the broker's queue for the
/// address, and `$cbs` never becomes a queue; with keys, a device token (no `skn`, a key the
/// broker does not know) is answered 401, which the SDK reports as UnauthorizedError.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_device_sdk_puts_its_token_on_the_brokers_cbs_node() {
    node_sdks_installed();
    let pki = pki::pki();
    let scratch = Scratch::new("iothub-sdk", "broker-cbs");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &pki.ca).expect("write");
    let serve = |broker: amqpwire::broker::Broker| {
        let pki = &pki;
        async move {
            let options = amqpwire::broker::listen_options(&[], Some(pki.server()), None);
            let listener = amqpwire::runtime::Listener::bind("amqps://127.0.0.1:0", options)
                .await
                .expect("bind");
            let port = listener.endpoint().port;
            let b = broker.clone();
            tokio::spawn(async move { b.serve(listener).await });
            (broker, port)
        }
    };
    let (broker, port) = serve(amqpwire::broker::Broker::new()).await;
    let mut cmd = node_at("device-send", NodeTransport::Amqp, port, &ca);
    cmd.args(["--body", "to-the-broker", "--count", "2"]);
    let run = run_peer(cmd, "no-keys", &scratch, Duration::from_secs(40)).await.expect("no keys");
    assert_eq!(run.events("sent").len(), 2, "{:?}", run.lines);
    assert_eq!(broker.queue_depth("/devices/dev1/messages/events"), 2);
    assert!(!broker.queues().iter().any(|q| q.starts_with('$')), "{:?}", broker.queues());
    // With keys: the device's token names no key the broker has.
    let keys = vec![("iothubowner".to_owned(), SasKey::from_base64(OWNER_KEY).unwrap())];
    let (broker, port) = serve(amqpwire::broker::Broker::with_cbs_keys(keys)).await;
    let mut cmd = node_at("device-send", NodeTransport::Amqp, port, &ca);
    cmd.args(["--body", "x", "--expect-error", "UnauthorizedError"]);
    run_peer(cmd, "keys", &scratch, Duration::from_secs(40)).await.expect("refused");
    assert_eq!(broker.queue_depth("/devices/dev1/messages/events"), 0);
}

// ------------------------------------------------------------------ device twin

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_device_sdk_reads_its_twin_reports_and_hears_desired_updates() {
    let h = hub::start(Duration::from_millis(50)).await;
    let scratch = Scratch::new("iothub-sdk", "twin");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    h.hub.patch_desired("dev1", r#"{"interval": 30}"#).await.expect("desired");
    let mut failed = Vec::new();
    for (n, t) in [NodeTransport::Amqp, NodeTransport::Ws].into_iter().enumerate() {
        // The last run's subscription ends with its links.
        let none = || h.hub.twin_subscribers("dev1") == 0;
        eventually("no twin subscription", none).await.expect("the last one gone");
        let mut cmd = node("device-twin", t, &h, &ca);
        cmd.args([
            "--reported",
            &format!(r#"{{"firmware": "1.{n}", "battery": {{"level": 80}}}}"#),
        ]);
        cmd.args(["--await-desired", &format!("fan={n}")]);
        let label = format!("twin-{}", t.arg());
        let peer = run_peer(cmd, &label, &scratch, Duration::from_secs(40));
        // Once the device has subscribed (the SDK's PUT), the service changes desired.
        let service = async {
            eventually("the twin subscription", || h.hub.twin_subscribers("dev1") > 0).await?;
            h.hub.patch_desired("dev1", &format!(r#"{{"fan": {n}}}"#)).await
        };
        let (run, version) = match tokio::join!(peer, service) {
            (Ok(run), Ok(v)) => (run, v),
            (run, v) => {
                failed.push(format!("over {}: {:?} {:?}", t.arg(), run.err(), v.err()));
                continue;
            }
        };
        let twins = run.events("twin");
        let desired = run.events("desired");
        let first_ok = twins.first().is_some_and(|t| t["desired"]["interval"] == 30);
        let second = twins.get(1).cloned().unwrap_or_default();
        let reported_ok = second["reported"]["firmware"] == format!("1.{n}").as_str()
            && second["reported"]["battery"]["level"] == 80
            && second["reported"]["$version"] == (n as u64 + 2);
        let desired_ok = desired
            .iter()
            .any(|d| d["delta"]["fan"] == n as u64 && d["delta"]["$version"] == version);
        if !(first_ok && reported_ok && desired_ok) {
            failed.push(format!("over {}: {:?}", t.arg(), run.lines));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    let twin = h.hub.twin("dev1");
    // A new twin's sections start at $version 1, as IoT Hub's do.
    assert_eq!(twin["reported"]["$version"], 3, "{twin}");
    assert_eq!(twin["desired"]["$version"], 4, "{twin}");
    // Patches IoT Hub refuses with 400: a name with a '.', and reported properties past
    // 32 KB. The SDK's twin client names the answer FormatError, and its AMQP transport
    // wraps that in a plain Error with the hub's message appended. The twin is left as
    // it was.
    let blobs: serde_json::Map<String, serde_json::Value> =
        (0..9).map(|i| (format!("b{i}"), "x".repeat(4000).into())).collect();
    let big = serde_json::Value::Object(blobs).to_string();
    for (t, patch, says) in [
        (NodeTransport::Amqp, r#"{"fw.version": "2.0"}"#, "'.'"),
        (NodeTransport::Ws, big.as_str(), "32768"),
    ] {
        let mut cmd = node("device-twin", t, &h, &ca);
        cmd.args(["--reported", patch, "--expect-twin-error", "Error"]);
        let label = format!("twin-refused-{}", t.arg());
        let run = run_peer(cmd, &label, &scratch, Duration::from_secs(40)).await.expect(&label);
        let error = one(&run, "twin-error");
        assert_eq!(error["status"], 400, "{error}");
        assert!(error["body"].as_str().is_some_and(|m| m.contains(says)), "{error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("could not update twin reported properties. "), "{error}");
        assert!(message.contains(says), "{error}");
        // Read again after the refusal: the reported properties as they were.
        let again = run.events("twin").last().map(|t| t["reported"].clone()).unwrap_or_default();
        assert_eq!(again["$version"], 3, "{again}");
        assert_eq!(again["firmware"], "1.1", "{again}");
        let kept = h.hub.twin("dev1");
        assert_eq!(
            (&kept["reported"]["$version"], &kept["reported"]["firmware"]),
            (&3.into(), &"1.1".into())
        );
    }
}

// ------------------------------------------------------------------ direct methods

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_invokes_a_direct_method_the_node_device_sdk_answers() {
    let h = hub::start(Duration::from_millis(50)).await;
    let scratch = Scratch::new("iothub-sdk", "methods");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    // Nobody listens yet: 404, as for an offline device.
    let e = h
        .hub
        .invoke_method("dev1", "reboot", "{}", Duration::from_secs(5))
        .await
        .expect_err("offline");
    assert_eq!(e.status, 404, "{e:?}");
    let mut failed = Vec::new();
    for t in [NodeTransport::Amqp, NodeTransport::Ws] {
        let mut cmd = node("device-method", t, &h, &ca);
        answers_reboot(&mut cmd);
        let label = format!("method-{}", t.arg());
        let peer = run_peer(cmd, &label, &scratch, Duration::from_secs(40));
        let service = async {
            eventually("the method links", || h.hub.method_listeners("dev1") > 0).await?;
            h.hub
                .invoke_method("dev1", "reboot", r#"{"delay": 5}"#, Duration::from_secs(20))
                .await
                .map_err(|e| format!("{e:?}"))
        };
        match tokio::join!(peer, service) {
            (Ok(run), Ok(answer)) => {
                let requests = run.events("request");
                let asked = requests
                    .first()
                    .is_some_and(|r| r["method"] == "reboot" && r["payload"]["delay"] == 5);
                let body: serde_json::Value =
                    serde_json::from_slice(&answer.payload).unwrap_or_default();
                if !(asked && answer.status == 201 && body["rebooting"] == true) {
                    failed.push(format!("over {}: {answer:?} {:?}", t.arg(), run.lines));
                }
            }
            (run, answer) => {
                failed.push(format!("over {}: {:?} {:?}", t.arg(), run.err(), answer.err()))
            }
        }
        // The device has gone: its links with it.
        if eventually("the links to go", || h.hub.method_listeners("dev1") == 0).await.is_err() {
            failed.push(format!("over {}: the method links outlived the device", t.arg()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

// ------------------------------------------------------------------ X.509 devices

/// Registers device `id` as IoT Hub registers one a CA's certificate authenticates
/// (`certificateAuthority`): no keys, no tokens.
fn register_ca_signed(h: &hub::Hub, id: &str) {
    let ca_signed = serde_json::json!({ "authentication": { "type": "certificateAuthority" } });
    h.hub.put_identity(id, &ca_signed, None).expect("registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x509_device_sends_with_its_certificate_and_no_token() {
    let h = hub::start(Duration::from_millis(50)).await;
    register_ca_signed(&h, "device-1");
    let scratch = Scratch::new("iothub-sdk", "x509");
    let (ca, cert, key) =
        (scratch.path("ca.pem"), scratch.path("cert.pem"), scratch.path("key.pem"));
    std::fs::write(&ca, &h.pki.ca).expect("write");
    std::fs::write(&cert, &h.pki.client_cert).expect("write");
    std::fs::write(&key, &h.pki.client_key).expect("write");
    let mut failed = Vec::new();
    for t in [NodeTransport::Amqp, NodeTransport::Ws] {
        node_sdks_installed();
        let mut cmd = Command::new("node");
        cmd.arg(Path::new(PEERS).join("iothub_sdk.js")).arg("device-send");
        cmd.args(["--connection-string", "HostName=localhost;DeviceId=device-1;x509=true"]);
        cmd.args(["--transport", t.arg(), "--port", &t.port(&h).to_string(), "--timeout", "20"]);
        cmd.arg("--ca").arg(&ca).arg("--cert").arg(&cert).arg("--key").arg(&key);
        cmd.args(["--body", "signed-by-certificate"]);
        if let Err(e) =
            run_peer(cmd, &format!("x509-{}", t.arg()), &scratch, Duration::from_secs(40)).await
        {
            failed.push(format!("over {}: {e}", t.arg()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    // Without the certificate the same device has nothing to authenticate with.
    let mut cmd = Command::new("node");
    cmd.arg(Path::new(PEERS).join("iothub_sdk.js")).arg("device-send");
    cmd.args(["--connection-string", "HostName=localhost;DeviceId=device-1;x509=true"]);
    cmd.args(["--port", &h.amqps.to_string(), "--timeout", "20", "--body", "x"]);
    cmd.arg("--ca").arg(&ca);
    assert!(run_peer(cmd, "x509-none", &scratch, Duration::from_secs(40)).await.is_err());
}

// ------------------------------------------------------------------ modules

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_has_its_own_twin_and_methods() {
    let key = amqpwire::azure::SasKey::from_base64(MODULE_KEY).expect("key");
    let h = hub::start_with(|c| c.modules.push(("dev1".into(), "m1".into(), key))).await;
    let scratch = Scratch::new("iothub-sdk", "module");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    let cs = format!("HostName=localhost;DeviceId=dev1;ModuleId=m1;SharedAccessKey={MODULE_KEY}");
    let module = |command: &str| {
        let mut c = Command::new("node");
        c.arg(Path::new(PEERS).join("iothub_sdk.js")).arg(command);
        c.args(["--connection-string", &cs, "--port", &h.amqps.to_string(), "--timeout", "20"]);
        c.arg("--ca").arg(&ca);
        c
    };
    node_sdks_installed();
    // The module's twin: reported properties, then a desired update for the module alone.
    let mut twin = module("device-twin");
    twin.args(["--reported", r#"{"role": "filter"}"#, "--await-desired", "threshold=7"]);
    let peer = run_peer(twin, "module-twin", &scratch, Duration::from_secs(40));
    let service = async {
        eventually("the module's twin subscription", || h.hub.twin_subscribers("dev1/m1") > 0)
            .await?;
        h.hub.patch_desired("dev1/m1", r#"{"threshold": 7}"#).await
    };
    let (run, v) = tokio::join!(peer, service);
    let run = run.expect("the module's twin");
    v.expect("patched");
    assert_eq!(h.hub.twin("dev1/m1")["reported"]["role"], "filter");
    assert!(h.hub.twin("dev1")["reported"].get("role").is_none(), "the device's twin is its own");
    assert!(run.events("desired").iter().any(|d| d["delta"]["threshold"] == 7), "{:?}", run.lines);
    // The module's methods.
    let mut method = module("device-method");
    method.args(["--method", "flush", "--status", "200", "--answer", r#"{"flushed": 3}"#]);
    let peer = run_peer(method, "module-method", &scratch, Duration::from_secs(40));
    // The service SDK calls the module (`POST /twins/dev1/modules/m1/methods`).
    let record = HttpsRecord::attach(&h);
    let service = async {
        eventually("the module's method links", || h.hub.method_listeners("dev1/m1") > 0).await?;
        let mut call = node_with("service-method", &owner_cs(), h.wss, &ca);
        call.args(["--device", "dev1", "--module", "m1", "--method", "flush"]);
        call.args(["--payload", r#"{"all": true}"#, "--expect-status", "200"]);
        run_peer(call, "module-method-service", &scratch, Duration::from_secs(40)).await
    };
    let (run, service) = tokio::join!(peer, service);
    let run = run.expect("the module's method");
    let service = service.expect("the service's call");
    assert_eq!(one(&run, "request")["payload"]["all"], true);
    let result = one(&service, "result");
    assert_eq!((result["status"].as_u64(), &result["payload"]["flushed"]), (Some(200), &3.into()));
    let (c2s, s2c) = record.streams();
    let exchanges = http_exchanges(&c2s, &s2c).expect("the call's REST");
    assert_eq!(exchanges, ["POST /twins/dev1/modules/m1/methods → 200"]);
    assert_eq!(h.hub.method_listeners("dev1"), 0, "the device itself listens for nothing");
    // The device itself has no such method listener: its call fails, the module's stays.
    let mut call = node_with("service-method", &owner_cs(), h.wss, &ca);
    call.args(["--device", "dev1", "--method", "flush", "--expect-error", "Error"]);
    let refused = run_peer(call, "device-method-service", &scratch, Duration::from_secs(40))
        .await
        .expect("the device's call");
    assert_eq!(one(&refused, "error")["status"], 404);
}

// ------------------------------------------------------------------ the REST APIs

/// `node iothub_sdk.js COMMAND` with connection string `cs`, to `port`.
fn node_with(command: &str, cs: &str, port: u16, ca: &Path) -> Command {
    node_sdks_installed();
    let mut c = Command::new("node");
    c.arg(Path::new(PEERS).join("iothub_sdk.js")).arg(command);
    c.args(["--connection-string", cs, "--port", &port.to_string(), "--timeout", "30"]);
    c.arg("--ca").arg(ca);
    c
}

/// The one event named `what` of a run.
fn one<'r>(run: &'r PeerRun, what: &str) -> &'r serde_json::Value {
    let all = run.events(what);
    assert_eq!(all.len(), 1, "one {what:?} event in {:?}", run.lines);
    all[0]
}

/// The plaintext of the hub's HTTPS connections, by connection: (from the client, to it).
#[derive(Default)]
struct HttpsRecord(Mutex<BTreeMap<u64, Capture>>);

impl HttpsRecord {
    fn attach(h: &Hub) -> Arc<Self> {
        let me = Arc::new(Self::default());
        let r = Arc::clone(&me);
        h.hub.record_https(Arc::new(move |n, dir, bytes| {
            let mut all = r.0.lock().unwrap();
            let c = all.entry(n).or_default();
            match dir {
                Direction::In => c.c2s.extend_from_slice(bytes),
                Direction::Out => c.s2c.extend_from_slice(bytes),
            }
        }));
        me
    }

    /// Every REST connection's bytes one after the other, each direction; connections
    /// upgraded to AMQP over WebSocket (answered `101`) are left out.
    fn streams(&self) -> (Vec<u8>, Vec<u8>) {
        let all = self.0.lock().unwrap();
        let rest = || all.values().filter(|c| !c.s2c.starts_with(b"HTTP/1.1 101"));
        let c2s = rest().flat_map(|c| c.c2s.clone()).collect();
        let s2c = rest().flat_map(|c| c.s2c.clone()).collect();
        (c2s, s2c)
    }
}

/// The value of header `name`.
fn http_header(headers: &[httparse::Header<'_>], name: &str) -> Option<String> {
    let h = headers.iter().find(|h| h.name.eq_ignore_ascii_case(name))?;
    Some(String::from_utf8_lossy(h.value).into_owned())
}

/// The HTTP exchanges of a recorded stream, one line each: `METHOD /path → status`
/// (the path without its query, which must carry an api-version), checking on the way
/// that each request carries a SharedAccessSignature for `localhost`.
fn http_exchanges(c2s: &[u8], s2c: &[u8]) -> Result<Vec<String>, String> {
    let length = |headers: &[httparse::Header<'_>]| -> Result<usize, String> {
        http_header(headers, "content-length")
            .map_or(Ok(0), |v| v.parse().map_err(|e| format!("{e}")))
    };
    let mut requests = Vec::new();
    let mut at = 0;
    while at < c2s.len() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = req.parse(&c2s[at..]) else {
            return Err(format!("no whole request at byte {at}"));
        };
        let path = req.path.unwrap_or_default();
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        if !query.split('&').any(|kv| kv.starts_with("api-version=")) {
            return Err(format!("{path}: no api-version"));
        }
        let auth = http_header(req.headers, "authorization").unwrap_or_default();
        if !(auth.starts_with("SharedAccessSignature ") && auth.contains("sr=localhost")) {
            return Err(format!("{path}: Authorization {auth:?}"));
        }
        requests.push(format!("{} {path}", req.method.unwrap_or_default()));
        at += n + length(req.headers)?;
    }
    let mut statuses = Vec::new();
    let mut at = 0;
    while at < s2c.len() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = res.parse(&s2c[at..]) else {
            return Err(format!("no whole answer at byte {at}"));
        };
        statuses.push(res.code.unwrap_or_default());
        at += n + length(res.headers)?;
    }
    if requests.len() != statuses.len() {
        return Err(format!("{} requests, {} answers", requests.len(), statuses.len()));
    }
    Ok(requests.iter().zip(statuses).map(|(r, s)| format!("{r} → {s}")).collect())
}

/// What the registry steps of `service-registry` send (azure-iothub 1.16.6's Registry).
const REGISTRY_EXCHANGES: [&str; 9] = [
    "PUT /devices/made-1 → 200",
    "PUT /devices/made-1 → 409",
    "GET /devices/made-1 → 200",
    "GET /devices/ → 200",
    "PUT /devices/made-1 → 200",
    "PUT /devices/made-1 → 200",
    "PUT /devices/made-1/modules/edge → 200",
    "GET /devices/made-1/modules/edge → 200",
    "GET /devices/made-1/modules → 200",
];

/// What `service-twin` sends (azure-iothub 1.16.6's Registry): it reads the twin, patches
/// it with the etag it read, then patches again with that stale etag.
const SERVICE_TWIN_EXCHANGES: [&str; 3] =
    ["GET /twins/dev1 → 200", "PATCH /twins/dev1 → 200", "PATCH /twins/dev1 → 412"];

/// What the `service-method` calls of `the_service_sdk_invokes_direct_methods_over_rest`
/// send (azure-iothub 1.16.6's Client): to an offline device, to one not in the registry,
/// then to dev1 online over AMQP and over AMQP over WebSocket (the device's answer, 201,
/// is in the body of a 200), then a method the device does not answer (504 after the
/// response timeout) and one it does.
const SERVICE_METHOD_EXCHANGES: [&str; 6] = [
    "POST /twins/dev1/methods → 404",
    "POST /twins/ghost/methods → 404",
    "POST /twins/dev1/methods → 200",
    "POST /twins/dev1/methods → 200",
    "POST /twins/dev1/methods → 504",
    "POST /twins/dev1/methods → 200",
];

/// What `device-http-receive --action abandon,complete,reject,complete` sends
/// (azure-iot-device-http 1.14.4), polls that found nothing left out, sorted: the SDK
/// polls and settles on connections of their own, so the exchanges of one connection
/// follow those of another in the recording.
const HTTP_C2D_EXCHANGES: [&str; 8] = [
    "DELETE /devices/dev1/messages/devicebound/* → 204",
    "DELETE /devices/dev1/messages/devicebound/* → 204",
    "DELETE /devices/dev1/messages/devicebound/* → 204",
    "GET /devices/dev1/messages/devicebound → 200",
    "GET /devices/dev1/messages/devicebound → 200",
    "GET /devices/dev1/messages/devicebound → 200",
    "GET /devices/dev1/messages/devicebound → 200",
    "POST /devices/dev1/messages/devicebound/*/abandon → 204",
];

/// The exchanges with lock tokens as `*`, polls answered 204 (nothing waiting) left out,
/// sorted.
fn c2d_shape(exchanges: &[String]) -> Vec<String> {
    let mut shape: Vec<String> = exchanges
        .iter()
        .filter(|e| !(e.starts_with("GET ") && e.ends_with("→ 204")))
        .map(|e| {
            let mut parts: Vec<String> = e.split('/').map(str::to_owned).collect();
            // "", devices, dev1, messages, devicebound, {lock}[, abandon → …| → …]
            if let Some(lock) = parts.get_mut(5) {
                let rest = lock.find(' ').map_or(String::new(), |i| lock[i..].to_owned());
                *lock = format!("*{rest}");
            }
            parts.join("/")
        })
        .collect();
    shape.sort();
    shape
}

/// Checks a recorded REST exchange against what it must be.
fn check_rest_fixture(stem: &str, c2s: &[u8], s2c: &[u8]) -> Result<(), String> {
    let exchanges = http_exchanges(c2s, s2c).map_err(|e| format!("{stem}: {e}"))?;
    let (got, want): (Vec<String>, Vec<&str>) = match stem {
        "node-service-rest-registry" => (exchanges, REGISTRY_EXCHANGES.to_vec()),
        "node-device-http-c2d" => (c2d_shape(&exchanges), HTTP_C2D_EXCHANGES.to_vec()),
        "node-service-rest-twin" => (exchanges, SERVICE_TWIN_EXCHANGES.to_vec()),
        "node-service-rest-method" => (exchanges, SERVICE_METHOD_EXCHANGES.to_vec()),
        _ => return Err(format!("{stem}: no checks for this capture")),
    };
    if got != want {
        return Err(format!("{stem}: exchanges {got:#?}, expected {want:#?}"));
    }
    Ok(())
}

/// Writes a recorded REST exchange as a fixture (`STEM.c2s.http`, `STEM.s2c.http`) with
/// `AMQPWIRE_WRITE_FIXTURES=1`.
fn write_rest_fixture(stem: &str, c2s: &[u8], s2c: &[u8]) {
    if std::env::var(WRITE_FIXTURES).as_deref() == Ok("1") {
        for (dir, bytes) in [("c2s", c2s), ("s2c", s2c)] {
            let name = format!("{stem}.{dir}.http");
            std::fs::write(Path::new(FIXTURES).join(&name), bytes).expect("write fixture");
            eprintln!("wrote {name} ({} bytes)", bytes.len());
        }
    }
}

/// `amqpwire decode` of a fixture, as text.
fn decoded(name: &str) -> String {
    let mut inspector = Inspector::new(DecodeOptions::LENIENT).redact_secrets(true);
    inspector.push(&fixture(name));
    let mut text = String::new();
    while let Some(r) = inspector.next_record() {
        amqpwire::inspect::render_text(&r, &mut text);
    }
    if let Some(r) = inspector.finish() {
        amqpwire::inspect::render_text(&r, &mut text);
    }
    text
}

/// docs/iothub.md's sections 12 (the twin) and 13 (a direct method) show frames of the
/// fixtures: every line of their excerpts is a line of `amqpwire decode` of the fixture,
/// so the docs cannot drift from what the SDK sends.
#[test]
fn the_twin_and_method_sections_show_the_fixtures() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/iothub.md"))
        .expect("docs/iothub.md");
    let section = |from: &str, to: Option<&str>| -> String {
        let start = doc.find(from).unwrap_or_else(|| panic!("no {from:?}"));
        let end = to.and_then(|t| doc[start..].find(t)).map_or(doc.len(), |e| start + e);
        doc[start..end].to_owned()
    };
    let twin = section("## 12. The twin, frame by frame", Some("## 13."));
    let method = section("## 13. A direct method, frame by frame", Some("\n## 14."));
    for (text, stem, least) in
        [(twin, "node-device-amqp-twin", 9), (method, "node-device-amqp-method", 5)]
    {
        let lines: BTreeSet<String> =
            [decoded(&format!("{stem}.c2s.bin")), decoded(&format!("{stem}.s2c.bin"))]
                .iter()
                .flat_map(|d| d.lines().map(|l| l.trim_end().to_owned()).collect::<Vec<_>>())
                .collect();
        let mut frames = 0;
        for block in text.split("```text\n").skip(1) {
            let block = block.split("```").next().unwrap_or_default();
            for line in block.lines() {
                assert!(lines.contains(line.trim_end()), "{stem}: not in the fixture: {line}");
                frames += usize::from(line.contains(" frame amqp "));
            }
        }
        assert!(frames >= least, "{stem}: only {frames} frames shown");
    }
}

/// The REST fixtures still show what the SDKs send, and are described in the README.
#[test]
fn rest_fixtures_show_what_the_sdks_send() {
    let readme = String::from_utf8(fixture("README.md")).unwrap();
    let stems = [
        "node-service-rest-registry",
        "node-device-http-c2d",
        "node-service-rest-twin",
        "node-service-rest-method",
    ];
    for stem in stems {
        let read = |dir: &str| fixture(&format!("{stem}.{dir}.http"));
        check_rest_fixture(stem, &read("c2s"), &read("s2c")).unwrap();
        for dir in ["c2s", "s2c"] {
            let name = format!("`{stem}.{dir}.http` ({} bytes)", read(dir).len());
            assert!(readme.contains(&name), "README.md does not describe {name}");
        }
    }
    // The checks tell them apart.
    for stem in stems {
        let c = fixture(&format!("{stem}.c2s.http"));
        let s = fixture(&format!("{stem}.s2c.http"));
        for other in stems.iter().filter(|o| **o != stem) {
            assert!(check_rest_fixture(other, &c, &s).is_err(), "{stem} passes as {other}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_sdk_manages_the_registry_and_what_it_creates_connects_at_once() {
    let h = hub::start(Duration::from_millis(50)).await;
    let record = HttpsRecord::attach(&h);
    let scratch = Scratch::new("iothub-sdk", "registry");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    // azure-iothub's Registry, over HTTPS on the port that also serves AMQP over WebSocket.
    let mut cmd = node_with("service-registry", &owner_cs(), h.wss, &ca);
    cmd.args(["--device", "made-1", "--module", "edge"]);
    let run = run_peer(cmd, "registry", &scratch, Duration::from_secs(40)).await.expect("registry");
    let created = one(&run, "created");
    assert_eq!(created["status"], "enabled");
    assert_eq!(created["type"], "sas");
    let again = one(&run, "create-again");
    assert_eq!(
        (again["name"].as_str(), again["status"].as_u64()),
        (Some("DeviceAlreadyExistsError"), Some(409))
    );
    let listed = one(&run, "listed")["deviceIds"].clone();
    assert_eq!(listed, serde_json::json!(["dev1", "made-1"]));
    // Each update gets a new etag.
    let updates = run.events("updated");
    let etags: Vec<&str> = updates.iter().filter_map(|u| u["etag"].as_str()).collect();
    assert_eq!(etags.len(), 2);
    assert!(etags[0] != etags[1] && created["etag"].as_str() != Some(etags[0]), "{etags:?}");
    assert_eq!(one(&run, "modules-listed")["moduleIds"], serde_json::json!(["edge"]));
    // The SDK's HTTP exchanges, as a fixture.
    let (c2s, s2c) = record.streams();
    check_rest_fixture("node-service-rest-registry", &c2s, &s2c).unwrap();
    write_rest_fixture("node-service-rest-registry", &c2s, &s2c);
    let device_cs = created["connectionString"].as_str().expect("cs").to_owned();
    let module_cs =
        one(&run, "module-created")["connectionString"].as_str().expect("cs").to_owned();
    // What the registry made connects at once, device and module, with the keys it gave.
    for (label, cs) in [("made-device", &device_cs), ("made-module", &module_cs)] {
        let mut send = node_with("device-send", cs, h.amqps, &ca);
        send.args(["--body", label]);
        run_peer(send, label, &scratch, Duration::from_secs(40)).await.expect(label);
    }
    let events = h.hub.events(h.hub.partition_of("made-1"));
    let texts: Vec<String> =
        events.iter().filter_map(|e| e.message().ok()).filter_map(|m| m.body.text()).collect();
    assert_eq!(texts, ["made-device", "made-module"]);
    let module_event = events[1].message().expect("decodes");
    let annotation = module_event
        .message_annotations
        .as_ref()
        .and_then(|a| a.get("iothub-connection-module-id"));
    assert_eq!(annotation.and_then(|v| v.as_str().map(str::to_owned)).as_deref(), Some("edge"));
    // A disabled device is refused; enabled again, it gets in.
    let off = serde_json::json!({ "deviceId": "made-1", "status": "disabled" });
    h.hub.put_identity("made-1", &off, Some("*")).expect("disabled");
    let mut send = node_with("device-send", &device_cs, h.amqps, &ca);
    send.args(["--body", "x", "--expect-error", "UnauthorizedError"]);
    run_peer(send, "disabled", &scratch, Duration::from_secs(40)).await.expect("refused");
    // The module deleted (removeModule), then the device: each gone from the registry,
    // and their keys open nothing.
    let mut cmd = node_with("service-registry-delete", &owner_cs(), h.wss, &ca);
    cmd.args(["--device", "made-1", "--module", "edge"]);
    let run = run_peer(cmd, "delete", &scratch, Duration::from_secs(40)).await.expect("delete");
    assert_eq!(one(&run, "get-deleted-module")["status"], 404);
    assert_eq!(one(&run, "modules-left")["moduleIds"], serde_json::json!([]));
    assert_eq!(one(&run, "get-deleted")["status"], 404);
    assert!(
        h.hub.identity_json("made-1").is_none() && h.hub.identity_json("made-1/edge").is_none()
    );
    for (label, cs) in [("deleted-device", &device_cs), ("deleted-module", &module_cs)] {
        let mut send = node_with("device-send", cs, h.amqps, &ca);
        send.args(["--body", "x", "--expect-error", "UnauthorizedError"]);
        run_peer(send, label, &scratch, Duration::from_secs(40)).await.expect("refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_sdk_updates_a_twin_and_the_device_sdk_hears_it() {
    let h = hub::start(Duration::from_millis(50)).await;
    let record = HttpsRecord::attach(&h);
    let scratch = Scratch::new("iothub-sdk", "service-twin");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    assert_eq!(h.hub.connection_state("dev1").0, "Disconnected", "before the device connects");
    let mut twin = node("device-twin", NodeTransport::Ws, &h, &ca);
    twin.args(["--reported", r#"{"firmware": "1.2"}"#, "--await-desired", "rate=5"]);
    let device = run_peer(twin, "device-twin", &scratch, Duration::from_secs(40));
    let service = async {
        eventually("the twin subscription", || h.hub.twin_subscribers("dev1") > 0).await?;
        let mut cmd = node_with("service-twin", &owner_cs(), h.wss, &ca);
        cmd.args(["--device", "dev1", "--tags", r#"{"floor": 3}"#, "--desired", r#"{"rate": 5}"#]);
        run_peer(cmd, "service-twin", &scratch, Duration::from_secs(40)).await
    };
    let (device, service) = tokio::join!(device, service);
    let device = device.expect("the device's twin");
    let service = service.expect("the service's twin");
    let read = one(&service, "twin");
    assert_eq!(read["reported"]["firmware"], "1.2", "the service sees what the device reported");
    // The service read the twin while the device was connected (it waited for its
    // subscription); once the device has gone, the hub says so.
    assert_eq!(read["connectionState"], "Connected", "{read}");
    let gone = || h.hub.connection_state("dev1").0 == "Disconnected";
    eventually("the device to count as disconnected", gone).await.expect("disconnected");
    let identity = h.hub.identity_json("dev1").expect("dev1");
    assert_eq!(identity["connectionState"], "Disconnected");
    assert_ne!(identity["connectionStateUpdatedTime"], "0001-01-01T00:00:00Z", "it changed");
    let updated = one(&service, "updated");
    assert_eq!(updated["tags"]["floor"], 3);
    assert_eq!(updated["desired"]["rate"], 5);
    assert_ne!(updated["etag"], read["etag"]);
    let stale = one(&service, "stale-update");
    assert_eq!(
        (stale["name"].as_str(), stale["status"].as_u64()),
        (Some("InvalidEtagError"), Some(412))
    );
    assert!(device.events("desired").iter().any(|d| d["delta"]["rate"] == 5), "{:?}", device.lines);
    // The tags are the service's: the device's twin document has none.
    assert!(h.hub.twin("dev1").get("tags").is_none());
    assert_eq!(h.hub.service_twin("dev1").expect("twin")["tags"]["floor"], 3);
    // The device's WebSocket is left out: what remains is the service's REST.
    let (c2s, s2c) = record.streams();
    check_rest_fixture("node-service-rest-twin", &c2s, &s2c).unwrap();
    write_rest_fixture("node-service-rest-twin", &c2s, &s2c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_sdk_invokes_direct_methods_over_rest() {
    let h = hub::start(Duration::from_millis(50)).await;
    let record = HttpsRecord::attach(&h);
    let scratch = Scratch::new("iothub-sdk", "rest-methods");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    let invoke = |device: &str, extra: &[&str]| {
        let mut c = node_with("service-method", &owner_cs(), h.wss, &ca);
        c.args(["--device", device, "--method", "reboot"]).args(extra);
        c
    };
    // Offline: 404; not in the registry: 404 that the SDK names DeviceNotFoundError.
    let run = run_peer(
        invoke("dev1", &["--expect-error", "Error"]),
        "offline",
        &scratch,
        Duration::from_secs(40),
    )
    .await
    .expect("offline");
    assert_eq!(one(&run, "error")["status"], 404);
    let run = run_peer(
        invoke("ghost", &["--expect-error", "DeviceNotFoundError"]),
        "ghost",
        &scratch,
        Duration::from_secs(40),
    )
    .await
    .expect("ghost");
    assert_eq!(one(&run, "error")["status"], 404);
    // Online, over each device transport: the request reaches the device SDK, its answer
    // the service SDK.
    for t in [NodeTransport::Amqp, NodeTransport::Ws] {
        let mut device = node("device-method", t, &h, &ca);
        answers_reboot(&mut device);
        let label = format!("rest-method-{}", t.arg());
        let device = run_peer(device, &label, &scratch, Duration::from_secs(40));
        let service = async {
            eventually("the method links", || h.hub.method_listeners("dev1") > 0).await?;
            let call = invoke("dev1", &["--payload", r#"{"delay": 5}"#, "--expect-status", "201"]);
            run_peer(call, &format!("{label}-service"), &scratch, Duration::from_secs(40)).await
        };
        let (device, service) = tokio::join!(device, service);
        let device = device.expect("the device");
        let service = service.expect("the service");
        assert_eq!(one(&device, "request")["payload"]["delay"], 5);
        let result = one(&service, "result");
        assert_eq!(result["status"], 201);
        assert_eq!(result["payload"]["rebooting"], true);
        eventually("the links to go", || h.hub.method_listeners("dev1") == 0).await.expect("gone");
    }
    // A method the device does not answer (its SDK has no handler for it): after the
    // response timeout, 504, which the SDK names GatewayTimeoutError.
    let mut device = node("device-method", NodeTransport::Amqp, &h, &ca);
    device.args(["--method", "reboot", "--status", "200", "--answer", "{}"]);
    let device = run_peer(device, "unanswered-device", &scratch, Duration::from_secs(40));
    let service = async {
        eventually("the method links", || h.hub.method_listeners("dev1") > 0).await?;
        let mut call = node_with("service-method", &owner_cs(), h.wss, &ca);
        call.args(["--device", "dev1", "--method", "other", "--response-timeout", "5"]);
        call.args(["--expect-error", "GatewayTimeoutError"]);
        let run = run_peer(call, "unanswered", &scratch, Duration::from_secs(40)).await;
        // Then the method the device does answer, so that it ends.
        let answered = invoke("dev1", &["--expect-status", "200"]);
        run_peer(answered, "answered", &scratch, Duration::from_secs(40)).await?;
        run
    };
    let (device, unanswered) = tokio::join!(device, service);
    device.expect("the device");
    assert_eq!(one(&unanswered.expect("504"), "error")["status"], 504);
    let (c2s, s2c) = record.streams();
    check_rest_fixture("node-service-rest-method", &c2s, &s2c).unwrap();
    write_rest_fixture("node-service-rest-method", &c2s, &s2c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_http_device_receives_cloud_to_device_messages_and_settles_them() {
    let h = hub::start(Duration::from_millis(50)).await;
    let scratch = Scratch::new("iothub-sdk", "http-c2d");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    // The service SDK sends three over AMQP, each asking for full feedback.
    for id in ["h1", "h2", "h3"] {
        let mut send = node("service-send", NodeTransport::Amqp, &h, &ca);
        send.args(["--device", "dev1", "--message-id", id, "--ack", "full", "--property", "k=v"]);
        run_peer(send, &format!("send-{id}"), &scratch, Duration::from_secs(40)).await.expect(id);
    }
    assert_eq!(h.hub.queued("dev1"), 3);
    let record = HttpsRecord::attach(&h);
    // The device over HTTPS: abandon h1 (it comes back first), then complete, reject,
    // complete.
    let mut receive = node_with("device-http-receive", &device_cs(), h.wss, &ca);
    receive.args(["--action", "abandon,complete,reject,complete", "--count", "4"]);
    let run = run_peer(receive, "http-receive", &scratch, Duration::from_secs(60))
        .await
        .expect("receive");
    let messages = run.events("message");
    let ids: Vec<&str> = messages.iter().filter_map(|m| m["messageId"].as_str()).collect();
    assert_eq!(ids, ["h1", "h1", "h2", "h3"]);
    let first = messages[0];
    assert_eq!(first["to"], "/devices/dev1/messages/devicebound");
    assert_eq!(first["body"], "c2d h1");
    assert_eq!(first["properties"]["iothub-app-k"], "v");
    assert!(first["lockToken"].as_str().is_some_and(is_guid), "{first}");
    assert_ne!(messages[0]["lockToken"], messages[1]["lockToken"], "a new lock each time");
    let results: Vec<&str> =
        run.events("settled").iter().filter_map(|s| s["result"].as_str()).collect();
    assert_eq!(
        results,
        ["MessageAbandoned", "MessageCompleted", "MessageRejected", "MessageCompleted"]
    );
    let (c2s, s2c) = record.streams();
    check_rest_fixture("node-device-http-c2d", &c2s, &s2c).unwrap();
    write_rest_fixture("node-device-http-c2d", &c2s, &s2c);
    assert_eq!(h.hub.queued("dev1"), 0);
    let feedback: Vec<(String, &str)> = h
        .hub
        .pending_feedback()
        .iter()
        .map(|r| (r.original_message_id.clone(), r.status.name()))
        .collect();
    assert_eq!(
        feedback,
        [("h1".to_owned(), "Success"), ("h2".to_owned(), "Rejected"), ("h3".to_owned(), "Success")]
    );
}

/// The twin and a direct method as the Node device SDK speaks them over AMQP and AMQP
/// over WebSocket, and telemetry from a module and from an X.509 device, captured and checked like the other SDK traffic (and
/// written as fixtures with `AMQPWIRE_WRITE_FIXTURES=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_device_sdks_twin_method_module_and_x509_traffic() {
    node_sdks_installed();
    let rec = Arc::new(Recorder::default());
    let module_key = SasKey::from_base64(MODULE_KEY).expect("key");
    let h = hub::start_traced(
        |c| {
            c.feedback_interval = Duration::from_millis(50);
            c.modules.push(("dev1".into(), "m1".into(), module_key));
        },
        Some(rec.trace()),
    )
    .await;
    // The test CA's client certificate names device-1.
    register_ca_signed(&h, "device-1");
    let scratch = Scratch::new("iothub-sdk", "twin-method-traffic");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    let mut captures = Captures::default();
    // Module dev1/m1 signs with its own key.
    let module_cs =
        format!("HostName=localhost;DeviceId=dev1;ModuleId=m1;SharedAccessKey={MODULE_KEY}");
    let identities = [
        ("device", "dev1", device_cs(), NodeTransport::Amqp),
        ("device", "dev1", device_cs(), NodeTransport::Ws),
        ("module", "dev1/m1", module_cs, NodeTransport::Amqp),
    ];
    for (role, id, cs, t) in &identities {
        let (t, port) = (*t, t.port(&h));
        let node = |command: &str| {
            let mut c = node_with(command, cs, port, &ca);
            c.args(["--transport", t.arg()]);
            c
        };
        let label = |step: &str| format!("{role}-{step}-{}", t.arg());
        // The twin: the device reads, reports, reads, subscribes; the service's patch arrives.
        // Each run starts without the desired rate, so that only the patch brings it, and
        // once the hub has let go of the last run's links (else the patch or the call
        // below could go to those).
        let quiet = || h.hub.twin_subscribers(id) == 0 && h.hub.method_listeners(id) == 0;
        eventually("the last run's links to go", quiet).await.expect("gone");
        h.hub.patch_desired(id, r#"{"rate": null}"#).await.expect("rate removed");
        let before = rec.keys();
        let mut twin = node("device-twin");
        twin.args(["--reported", r#"{"firmware": "1.2"}"#, "--await-desired", "rate=5"]);
        let twin_label = label("twin");
        let device = run_peer(twin, &twin_label, &scratch, Duration::from_secs(40));
        let service = async {
            eventually("the twin subscription", || h.hub.twin_subscribers(id) > 0).await?;
            h.hub.patch_desired(id, r#"{"rate": 5}"#).await
        };
        let (device, patched) = tokio::join!(device, service);
        device.expect("the twin");
        patched.expect("patched");
        captures
            .take(&rec, &before, t.endpoint(), &[&stem(role, t, "twin")], true)
            .await
            .expect("the twin's connection");
        // A method, once the twin's links are gone.
        eventually("the twin's links to go", quiet).await.expect("gone");
        let before = rec.keys();
        let mut method = node("device-method");
        answers_reboot(&mut method);
        let method_label = label("method");
        let device = run_peer(method, &method_label, &scratch, Duration::from_secs(40));
        let service = async {
            eventually("the method links", || h.hub.method_listeners(id) > 0).await?;
            h.hub
                .invoke_method(id, "reboot", r#"{"delay":5}"#, Duration::from_secs(20))
                .await
                .map_err(|e| format!("{e:?}"))
        };
        let (device, answer) = tokio::join!(device, service);
        device.expect("the method");
        assert_eq!(answer.expect("answered").status, 201);
        captures
            .take(&rec, &before, t.endpoint(), &[&stem(role, t, "method")], true)
            .await
            .expect("the method's connection");
    }
    let t = NodeTransport::Amqp;
    // Telemetry from module dev1/m1, with the module's own key.
    let before = rec.keys();
    let mut module = node_with("device-send", &identities[2].2, h.amqps, &ca);
    telemetry_args(&mut module, "module");
    run_peer(module, "module-send", &scratch, Duration::from_secs(40)).await.expect("module");
    captures
        .take(&rec, &before, t.endpoint(), &["node-module-amqp-telemetry"], true)
        .await
        .expect("the module's connection");
    // Telemetry from device-1, authenticated by the test CA's certificate alone.
    let (cert, key) = (scratch.path("cert.pem"), scratch.path("key.pem"));
    std::fs::write(&cert, &h.pki.client_cert).expect("write");
    std::fs::write(&key, &h.pki.client_key).expect("write");
    let before = rec.keys();
    let mut x509 =
        node_with("device-send", "HostName=localhost;DeviceId=device-1;x509=true", h.amqps, &ca);
    x509.arg("--cert").arg(&cert).arg("--key").arg(&key);
    telemetry_args(&mut x509, "x509");
    run_peer(x509, "x509-send", &scratch, Duration::from_secs(40)).await.expect("x509");
    captures
        .take(&rec, &before, t.endpoint(), &["node-device-x509-amqp-telemetry"], true)
        .await
        .expect("the X.509 device's connection");
    // The same over AMQP over WebSocket: the certificate goes in the TLS under the socket.
    let before = rec.keys();
    let mut x509 =
        node_with("device-send", "HostName=localhost;DeviceId=device-1;x509=true", h.wss, &ca);
    x509.args(["--transport", "ws"]).arg("--cert").arg(&cert).arg("--key").arg(&key);
    telemetry_args(&mut x509, "x509");
    run_peer(x509, "x509-send-ws", &scratch, Duration::from_secs(40)).await.expect("x509 ws");
    captures
        .take(&rec, &before, Endpoint::Wss, &["node-device-x509-amqpws-telemetry"], true)
        .await
        .expect("the X.509 device's WebSocket connection");
    // A self-signed device, registered by its certificate's thumbprint: the same AMQP,
    // under a TLS handshake that the CA did not sign.
    let (thumb_cert, thumb_key, print) = self_signed("thumb-dev");
    let identity = serde_json::json!({
        "deviceId": "thumb-dev",
        "authentication": { "type": "selfSigned", "x509Thumbprint": { "primaryThumbprint": print } },
    });
    h.hub.put_identity("thumb-dev", &identity, None).expect("registered");
    let (cert, key) = (scratch.path("thumb.pem"), scratch.path("thumb-key.pem"));
    std::fs::write(&cert, thumb_cert).expect("write");
    std::fs::write(&key, thumb_key).expect("write");
    let before = rec.keys();
    let mut thumb =
        node_with("device-send", "HostName=localhost;DeviceId=thumb-dev;x509=true", h.amqps, &ca);
    thumb.arg("--cert").arg(&cert).arg("--key").arg(&key);
    telemetry_args(&mut thumb, "thumbprint");
    run_peer(thumb, "thumb-send", &scratch, Duration::from_secs(40)).await.expect("thumbprint");
    captures
        .take(&rec, &before, t.endpoint(), &["node-device-x509-thumbprint-amqp-telemetry"], true)
        .await
        .expect("the self-signed device's connection");
    let events = h.hub.events(h.hub.partition_of("dev1"));
    let from_module = events.iter().find(|e| e.device_id == "dev1").expect("the module's event");
    let module_id = from_module
        .message()
        .ok()
        .and_then(|m| annotation(&m, "iothub-connection-module-id"))
        .and_then(|v| v.as_str().map(str::to_owned));
    assert_eq!(module_id.as_deref(), Some("m1"), "the module's event");
    finish(Run { captures, failed: Vec::new() });
}

/// A self-signed certificate with subject CN `cn`: its PEM and its key's PEM, and the
/// SHA-256 thumbprint (upper-case hex) of its DER.
fn self_signed(cn: &str) -> (String, String, String) {
    use sha2::Digest as _;
    let mut params = rcgen::CertificateParams::new(vec![cn.to_owned()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    let print = sha2::Sha256::digest(cert.der()).iter().map(|b| format!("{b:02X}")).collect();
    (cert.pem(), key.serialize_pem(), print)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_device_registered_by_thumbprint_sends_with_no_token() {
    let h = hub::start(Duration::from_millis(50)).await;
    let scratch = Scratch::new("iothub-sdk", "thumbprint");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    let write = |name: &str, pem: &str| {
        let p = scratch.path(name);
        std::fs::write(&p, pem).expect("write");
        p
    };
    let (cert, key, print) = self_signed("thumb-dev");
    let (cert, key) = (write("cert.pem", &cert), write("key.pem", &key));
    // Registered as IoT Hub's registry API takes it, the thumbprint written with colons
    // and in lower case.
    let colons: Vec<String> =
        print.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_lowercase()).collect();
    let identity = serde_json::json!({
        "deviceId": "thumb-dev",
        "authentication": { "type": "selfSigned", "x509Thumbprint": { "primaryThumbprint": colons.join(":") } },
    });
    let made = h.hub.put_identity("thumb-dev", &identity, None).expect("registered");
    assert_eq!(made["authentication"]["type"], "selfSigned");
    assert_eq!(made["authentication"]["x509Thumbprint"]["primaryThumbprint"], print.as_str());
    assert!(made["authentication"]["symmetricKey"]["primaryKey"].is_null(), "no key to show");
    let send = |device: &str, t: NodeTransport, cert: &Path, key: &Path, body: &str| {
        node_sdks_installed();
        let mut cmd = Command::new("node");
        cmd.arg(Path::new(PEERS).join("iothub_sdk.js")).arg("device-send");
        cmd.args([
            "--connection-string",
            &format!("HostName=localhost;DeviceId={device};x509=true"),
        ]);
        cmd.args(["--transport", t.arg(), "--port", &t.port(&h).to_string(), "--timeout", "20"]);
        cmd.arg("--ca").arg(&ca).arg("--cert").arg(cert).arg("--key").arg(key);
        cmd.args(["--body", body]);
        cmd
    };
    for t in [NodeTransport::Amqp, NodeTransport::Ws] {
        let cmd = send("thumb-dev", t, &cert, &key, t.arg());
        run_peer(cmd, &format!("thumb-{}", t.arg()), &scratch, Duration::from_secs(40))
            .await
            .unwrap_or_else(|e| panic!("over {}: {e}", t.arg()));
    }
    let bodies: Vec<String> = h
        .hub
        .events(h.hub.partition_of("thumb-dev"))
        .iter()
        .filter(|e| e.device_id == "thumb-dev")
        .filter_map(|e| e.message().ok()?.body.text())
        .collect();
    assert_eq!(bodies, ["amqp", "ws"]);
    // Another self-signed certificate gets nowhere, even one whose subject names a
    // registered device: without the hub's CA a subject proves nothing.
    for (cn, device) in [("thumb-dev", "thumb-dev"), ("dev1", "dev1")] {
        let (c, k, _) = self_signed(cn);
        let (c, k) = (write("other.pem", &c), write("other-key.pem", &k));
        let cmd = send(device, NodeTransport::Amqp, &c, &k, "x");
        let label = format!("stranger-{cn}");
        let refused = run_peer(cmd, &label, &scratch, Duration::from_secs(40)).await;
        assert!(refused.is_err(), "a stranger's certificate for {device} got in");
    }
    // Disabled, the registered certificate gets nowhere either.
    let off = serde_json::json!({ "deviceId": "thumb-dev", "status": "disabled" });
    h.hub.put_identity("thumb-dev", &off, Some("*")).expect("disabled");
    let cmd = send("thumb-dev", NodeTransport::Amqp, &cert, &key, "x");
    assert!(run_peer(cmd, "disabled", &scratch, Duration::from_secs(40)).await.is_err());
}

/// The emulator's fault injection as the Node device SDK meets it, changed on the running
/// hub between runs (`IotHub::reconfigure`): each fault reaches the SDK as the error IoT
/// Hub's condition maps to in the SDK, and with the SDK's own retry policy a forced detach
/// is recovered from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_device_sdk_meets_injected_faults_as_iot_hub_sends_them() {
    let h = hub::start(Duration::from_millis(50)).await;
    let scratch = Scratch::new("iothub-sdk", "faults");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    let send = |t: NodeTransport, body: &str, count: &str, extra: &[&str]| {
        let mut cmd = node("device-send", t, &h, &ca);
        cmd.args(["--body", body, "--count", count]).args(extra);
        cmd
    };
    let bodies = |body: &str| {
        let events = h.hub.events(h.hub.partition_of("dev1"));
        let of = |e: &&amqpwire::azure::emulator::Event| {
            e.message().ok().and_then(|m| m.body.text()).is_some_and(|b| b == body)
        };
        events.iter().filter(of).count()
    };
    // Throttled after two messages: the third is rejected with
    // com.microsoft:device-container-throttled, which the SDK names ThrottlingError.
    h.hub.reconfigure(|c| {
        c.faults.throttle_after = Some(2);
        c.faults.throttle_for = Duration::from_secs(600);
    });
    let cmd = send(NodeTransport::Amqp, "throttled", "3", &["--expect-error", "ThrottlingError"]);
    let run = run_peer(cmd, "throttle", &scratch, Duration::from_secs(40)).await.expect("throttle");
    assert_eq!(run.events("sent").len(), 2, "{:?}", run.lines);
    let error = one(&run, "send-error");
    assert_eq!(error["n"], 3);
    assert_eq!(error["condition"], "com.microsoft:device-container-throttled");
    assert_eq!(bodies("throttled"), 2);
    // Detached after one message on a link: amqp:link:detach-forced, ServiceUnavailableError.
    h.hub.reconfigure(|c| {
        c.faults = Faults::none();
        c.faults.detach_after = Some(1);
    });
    let cmd =
        send(NodeTransport::Ws, "detached", "2", &["--expect-error", "ServiceUnavailableError"]);
    let run = run_peer(cmd, "detach", &scratch, Duration::from_secs(40)).await.expect("detach");
    assert_eq!(run.events("sent").len(), 1, "{:?}", run.lines);
    assert_eq!(one(&run, "send-error")["condition"], "amqp:link:detach-forced");
    assert_eq!(bodies("detached"), 1);
    // The same fault with the SDK's own retry policy: it attaches again after each detach,
    // and every message arrives, one per link.
    let cmd = send(NodeTransport::Amqp, "recovered", "3", &["--retry", "sdk"]);
    let run = run_peer(cmd, "recover", &scratch, Duration::from_secs(60)).await.expect("recover");
    assert_eq!(run.events("sent").len(), 3, "{:?}", run.lines);
    assert_eq!(bodies("recovered"), 3);
    // Redirected after one message: amqp:link:redirect, which this SDK does not follow: it
    // reports the condition.
    h.hub.reconfigure(|c| {
        c.faults = Faults::none();
        c.faults.redirect_after = Some(1);
    });
    let cmd = send(NodeTransport::Ws, "redirected", "2", &["--expect-error", "Error"]);
    let run = run_peer(cmd, "redirect", &scratch, Duration::from_secs(40)).await.expect("redirect");
    assert_eq!(one(&run, "send-error")["condition"], "amqp:link:redirect");
    assert_eq!(bodies("redirected"), 1);
    // The tokens expire after every second message on a connection: the hub detaches the
    // telemetry link with amqp:unauthorized-access, as it does when a token's time runs
    // out, so the third message fails. The SDK names it UnauthorizedError, and its own
    // retry policy does not retry it. A new client (a fresh connection and token) goes
    // on: the third message, sent again, arrives (the first on its connection, so no
    // expiry follows it).
    h.hub.reconfigure(|c| {
        c.faults = Faults::none();
        c.faults.expire_after = Some(2);
    });
    for (t, body, retry) in
        [(NodeTransport::Amqp, "expired", "none"), (NodeTransport::Ws, "expired-ws", "sdk")]
    {
        let expect = ["--retry", retry, "--expect-error", "UnauthorizedError", "--reopen"];
        let cmd = send(t, body, "3", &expect);
        let run = run_peer(cmd, body, &scratch, Duration::from_secs(40)).await.expect(body);
        assert_eq!(run.events("sent").len(), 2, "{:?}", run.lines);
        let error = one(&run, "send-error");
        assert_eq!(
            (&error["n"], &error["condition"]),
            (&3.into(), &"amqp:unauthorized-access".into())
        );
        assert_eq!(one(&run, "sent-again")["result"], "MessageEnqueued");
        assert_eq!(bodies(body), 3);
    }
    // An X.509 device put no token: nothing of its connection expires, and all three
    // messages arrive on one link.
    register_ca_signed(&h, "device-1");
    let (cert, key) = (scratch.path("cert.pem"), scratch.path("key.pem"));
    std::fs::write(&cert, &h.pki.client_cert).expect("write");
    std::fs::write(&key, &h.pki.client_key).expect("write");
    let mut cmd =
        node_with("device-send", "HostName=localhost;DeviceId=device-1;x509=true", h.amqps, &ca);
    cmd.args(["--body", "x509-kept", "--count", "3"])
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key);
    let run = run_peer(cmd, "x509-expire", &scratch, Duration::from_secs(40)).await.expect("x509");
    assert_eq!(run.events("sent").len(), 3, "{:?}", run.lines);
    // Slow answers: each message is settled 300 ms after it arrives. The SDK waits that
    // long for each outcome (a lower bound, which load can only lengthen; its own clock's
    // millisecond may round one down), and every message arrives.
    h.hub.reconfigure(|c| {
        c.faults = Faults::none();
        c.faults.slow = Some(Duration::from_millis(300));
    });
    let cmd = send(NodeTransport::Ws, "slow", "3", &[]);
    let run = run_peer(cmd, "slow", &scratch, Duration::from_secs(40)).await.expect("slow");
    let waited: Vec<u64> =
        run.events("sent").iter().filter_map(|e| e["waitedMs"].as_u64()).collect();
    assert!(waited.len() == 3 && waited.iter().all(|&ms| ms >= 299), "{:?}", run.lines);
    assert_eq!(bodies("slow"), 3);
    // No faults: the device is no longer throttled, nothing is detached.
    h.hub.reconfigure(|c| c.faults = Faults::none());
    let cmd = send(NodeTransport::Amqp, "clear", "3", &[]);
    run_peer(cmd, "clear", &scratch, Duration::from_secs(40)).await.expect("no faults");
    assert_eq!(bodies("clear"), 3);
}

/// `close_after`: the hub closes the connection with `amqp:connection:forced` after the
/// first message. The Node device SDK then runs its links down cleanly over the closed
/// connection, waits for answers that cannot come, and after its own 45 s timer forces
/// them; only then does the next `sendEvent` fail, with the hub's condition (its retry
/// policy does not retry it). The wait is the SDK's own: it does not take the hub's close
/// as the end of its links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_device_sdk_reports_a_forced_close_once_its_rundown_ends() {
    let h = hub::start(Duration::from_millis(50)).await;
    let scratch = Scratch::new("iothub-sdk", "forced-close");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    h.hub.reconfigure(|c| c.faults.close_after = Some(1));
    node_sdks_installed();
    let mut cmd = Command::new("node");
    cmd.arg(Path::new(PEERS).join("iothub_sdk.js")).arg("device-send");
    cmd.args(["--connection-string", &device_cs(), "--port", &h.amqps.to_string()]);
    cmd.arg("--ca").arg(&ca).args(["--timeout", "120", "--retry", "sdk"]);
    cmd.args(["--body", "forced", "--count", "2", "--expect-error", "Error"]);
    let run = run_peer(cmd, "close", &scratch, Duration::from_secs(130)).await.expect("close");
    assert_eq!(run.events("sent").len(), 1, "{:?}", run.lines);
    let error = one(&run, "send-error");
    assert_eq!((&error["n"], &error["condition"]), (&2.into(), &"amqp:connection:forced".into()));
}

// ------------------------------------------------------------------ IoT Hub's own ports

/// The SDKs as an application runs them, with no port of their own: the emulator on IoT
/// Hub's ports (5671 for AMQP over TLS, 443 for AMQP over WebSocket and the REST APIs, on
/// 127.0.0.1), and nothing of the SDKs overridden but the CA they trust (`--ca`: the
/// device SDK's `ca` option, the service SDK's `NODE_EXTRA_CA_CERTS`). Binding port 443
/// needs root (or `CAP_NET_BIND_SERVICE`): where it cannot be bound, the test says so and
/// passes, except in CI, where it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_sdks_need_no_port_of_their_own_on_iot_hubs_ports() {
    let h = match hub::start_on_iot_hub_ports(Duration::from_millis(50)).await {
        Ok(h) => h,
        Err(why) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "IoT Hub's ports: {why}");
            eprintln!("skipped: IoT Hub's ports cannot be bound here: {why}");
            return;
        }
    };
    assert_eq!((h.amqps, h.wss), (5671, 443));
    let scratch = Scratch::new("iothub-sdk", "own-ports");
    let ca = scratch.path("ca.pem");
    std::fs::write(&ca, &h.pki.ca).expect("write");
    let bare = |command: &str, cs: &str, args: &[&str]| {
        node_sdks_installed();
        let mut c = Command::new("node");
        c.arg(Path::new(PEERS).join("iothub_sdk.js")).arg(command);
        c.args(["--connection-string", cs, "--timeout", "30"]).arg("--ca").arg(&ca).args(args);
        c
    };
    // Telemetry over both device transports: amqps://localhost:5671 and
    // wss://localhost:443/$iothub/websocket, as the SDK builds them.
    for t in [NodeTransport::Amqp, NodeTransport::Ws] {
        let body = format!("own-port-{}", t.arg());
        let cmd = bare("device-send", &device_cs(), &["--transport", t.arg(), "--body", &body]);
        run_peer(cmd, &body, &scratch, Duration::from_secs(40)).await.expect(&body);
    }
    let texts: Vec<String> = h
        .hub
        .events(h.hub.partition_of("dev1"))
        .iter()
        .filter_map(|e| e.message().ok()?.body.text())
        .collect();
    assert_eq!(texts, ["own-port-amqp", "own-port-ws"]);
    // A cloud-to-device message from the service SDK (AMQP on 5671), received by the
    // device over AMQP over WebSocket (443).
    let send = bare("service-send", &owner_cs(), &["--device", "dev1", "--message-id", "own-1"]);
    let receive = bare(
        "device-receive",
        &device_cs(),
        &["--transport", "ws", "--expect-message-id", "own-1"],
    );
    run_peer(send, "own-send", &scratch, Duration::from_secs(40)).await.expect("service send");
    run_peer(receive, "own-receive", &scratch, Duration::from_secs(40)).await.expect("receive");
    // The REST API on 443: the service SDK reads and patches the twin.
    let twin = bare(
        "service-twin",
        &owner_cs(),
        &["--device", "dev1", "--tags", r#"{"site":"own"}"#, "--desired", r#"{"rate":2}"#],
    );
    let run = run_peer(twin, "own-twin", &scratch, Duration::from_secs(40)).await.expect("twin");
    assert_eq!(one(&run, "updated")["desired"]["rate"], 2);
    assert_eq!(h.hub.twin("dev1")["desired"]["rate"], 2);
}
