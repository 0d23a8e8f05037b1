//! `amqpwire iothub …`: the IoT Hub emulator, the service, device and monitor clients,
//! and the demo that runs the seed scenario end to end with every frame shown.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amqpwire::azure::client::{
    DeviceClient, Event, EventHubTarget, EventReader, HubError, HubOptions, HubTransport,
    ReadOptions, Security, ServiceClient,
};
use amqpwire::azure::emulator::{generate_key, HubConfig, IotHub, Permissions};
use amqpwire::azure::hub::{message_id_text, Ack, StartPosition, DEFAULT_CONSUMER_GROUP};
use amqpwire::azure::{IotHubConnectionString, SasKey, SasToken};
use amqpwire::codec::{Timestamp, Value};
use amqpwire::message::{AnnotationMap, Message};
use amqpwire::runtime::transport::{ClientTlsConfig, TlsServerConfig};
use amqpwire::runtime::Listener;
use amqpwire::types::{MessageId, Properties};
use bytes::Bytes;

use super::client::{body_text, parse_secs, properties, read_body_file, runtime};
use super::trace::{say, DemoTraceArgs, TraceArgs, Tracer};

/// Arguments of `amqpwire iothub`.
#[derive(clap::Args, Debug)]
pub(crate) struct IothubArgs {
    #[command(subcommand)]
    command: IothubCommand,
}

#[derive(clap::Subcommand, Debug)]
enum IothubCommand {
    /// Run the IoT Hub emulator: the hub over TLS and WebSocket, its Event Hub-compatible
    /// endpoint, a registry of devices and policies. Prints `listening on URL` per
    /// listener and the connection strings it accepts.
    Emulate(Box<EmulateArgs>),
    /// Send a cloud-to-device message to a device (service connection string); prints
    /// its message-id.
    #[command(mut_arg("connection_string", |a| a.help(SERVICE_CS)))]
    SendC2d(SendC2dArgs),
    /// Read cloud-to-device feedback records (service connection string).
    #[command(
        mut_arg("connection_string", |a| a.help(SERVICE_CS)),
        mut_arg("count", |a| a.help("Stop after this many feedback records; default: until the time-out")),
        mut_arg("json", |a| a.help("One JSON object per line instead of text: each record with the hub's own fields")),
    )]
    Feedback(FeedbackArgs),
    /// Send telemetry as a device (device connection string).
    #[command(mut_arg("connection_string", |a| a.help(DEVICE_CS)))]
    DeviceSend(DeviceSendArgs),
    /// Receive cloud-to-device messages as a device and complete, abandon or reject them.
    #[command(
        mut_arg("connection_string", |a| a.help(DEVICE_CS)),
        mut_arg("count", |a| a.help("Stop after this many messages; default: until the time-out")),
        mut_arg("json", |a| a.help("One JSON object per line instead of text: each message's lock token and the decoded message")),
    )]
    DeviceReceive(DeviceReceiveArgs),
    /// Read device-to-cloud events: follow the hub's redirect to its Event Hub-compatible
    /// endpoint and read its partitions (service connection string).
    #[command(
        mut_arg("connection_string", |a| a.help(SERVICE_CS)),
        mut_arg("count", |a| a.help("Stop after this many events; default: until the time-out")),
        mut_arg("json", |a| a.help("One JSON object per line instead of text: each event's device (and module), enqueued time, offsets and message")),
    )]
    Monitor(MonitorArgs),
    /// Start the emulator in-process and run the whole scenario against it over
    /// WebSocket: tokens, CBS, a cloud-to-device message completed with feedback,
    /// telemetry read by the monitor; every frame shown.
    Demo(DemoArgs),
}

pub(crate) fn run(args: &IothubArgs) -> Result<ExitCode, String> {
    let rt = runtime()?;
    match &args.command {
        IothubCommand::Emulate(a) => rt.block_on(emulate(a)),
        IothubCommand::SendC2d(a) => rt.block_on(send_c2d(a)),
        IothubCommand::Feedback(a) => rt.block_on(feedback(a)),
        IothubCommand::DeviceSend(a) => rt.block_on(device_send(a)),
        IothubCommand::DeviceReceive(a) => rt.block_on(device_receive(a)),
        IothubCommand::Monitor(a) => rt.block_on(monitor(a)),
        IothubCommand::Demo(a) => rt.block_on(demo(a)),
    }
}

// ------------------------------------------------------------------ the emulator

/// Arguments of `amqpwire iothub emulate`.
#[derive(clap::Args, Debug)]
pub(crate) struct EmulateArgs {
    /// The hub's host name: in tokens, connection strings and the certificate.
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// A device (repeatable), with its base64 key; without a key one is made up. Default:
    /// one device, `device1`.
    #[arg(long = "device", value_name = "ID[:KEY]")]
    devices: Vec<String>,
    /// A module identity of a device (repeatable), with its own base64 key; without a key
    /// one is made up. The device must be in the registry.
    #[arg(long = "module", value_name = "DEVICE/MODULE[:KEY]")]
    modules: Vec<String>,
    /// A shared access policy (repeatable), with its base64 key; `iothubowner`, `service`,
    /// `device`, `registryRead`, `registryReadWrite` get IoT Hub's permissions, other
    /// names service and device. Default: `iothubowner` and `service`.
    #[arg(long = "policy", value_name = "NAME[:KEY]")]
    policies: Vec<String>,
    /// Devices and policies from a JSON file:
    /// `{"devices": {"ID": "KEY", …}, "policies": {"NAME": "KEY", …}}` (a null key is made up).
    #[arg(long, value_name = "FILE")]
    registry: Option<PathBuf>,
    /// Where the hub listens for AMQP over TLS (`off`: nowhere).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5671")]
    amqps: String,
    /// Where the hub serves what IoT Hub serves on port 443 (`off`: nowhere): AMQP over
    /// WebSocket over TLS at /$iothub/websocket, and on the same port the REST APIs over
    /// HTTPS (device telemetry and cloud-to-device messages; the service's registry, twins
    /// and direct methods). 443 itself needs root here. (`--https` is another name for it.)
    #[arg(long, alias = "https", value_name = "ADDR", default_value = "127.0.0.1:8443")]
    wss: String,
    /// Where the Event Hub-compatible endpoint listens (TLS); the redirect names it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15671")]
    eventhub: String,
    /// Where the Event Hub-compatible endpoint listens for WebSocket over TLS, at
    /// /$servicebus/websocket (`off`: nowhere).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:18443")]
    eventhub_wss: String,
    /// A consumer group of the Event Hub-compatible endpoint besides `$Default`
    /// (repeatable): readers of a group the hub does not have are refused with
    /// `amqp:not-found`, as Event Hubs refuses them.
    #[arg(long = "consumer-group", value_name = "NAME")]
    consumer_groups: Vec<String>,
    /// Keep the CA and server certificate here: `ca.pem`, `server.pem`,
    /// `server-key.pem`, made for --hostname unless all three exist. Default:
    /// `$HOME/.cache/amqpwire/iothub-HOSTNAME` (without HOME, a fresh directory under the
    /// system's temporary directory).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["cert", "key"])]
    cert_dir: Option<PathBuf>,
    /// Use this server certificate chain (PEM) instead of making one.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Partitions of the event log.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    /// Fault injection: after N telemetry messages from a device, throttle it (rejected
    /// with com.microsoft:device-container-throttled; HTTP 429) for --fault-throttle-for.
    #[arg(long, value_name = "N")]
    fault_throttle_after: Option<u64>,
    /// Fault injection: how long a throttled device stays throttled.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = super::client::parse_secs)]
    fault_throttle_for: std::time::Duration,
    /// Fault injection: detach a telemetry link (amqp:link:detach-forced) after N messages
    /// on it.
    #[arg(long, value_name = "N")]
    fault_detach_after: Option<u64>,
    /// Fault injection: close a connection (amqp:connection:forced) after N telemetry
    /// messages on it.
    #[arg(long, value_name = "N")]
    fault_close_after: Option<u64>,
    /// Fault injection: tokens expire this long after they are put, whatever their expiry
    /// says (their links are then detached with amqp:unauthorized-access).
    #[arg(long, value_name = "SECS", value_parser = super::client::parse_secs)]
    fault_token_lifetime: Option<std::time::Duration>,
    /// Fault injection: after every N telemetry messages on a connection, the tokens it
    /// put on $cbs expire at once (its links are then detached with
    /// amqp:unauthorized-access).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    fault_expire_after: Option<u64>,
    /// Fault injection: answer each telemetry message this many milliseconds later.
    #[arg(long, value_name = "MS")]
    fault_slow: Option<u64>,
    /// Fault injection: detach a telemetry link with amqp:link:redirect after N messages
    /// on it, naming --fault-redirect-to (default: this hub's amqps listener).
    #[arg(long, value_name = "N")]
    fault_redirect_after: Option<u64>,
    /// Fault injection: detach each telemetry link (amqp:link:detach-forced) this long
    /// after it attached.
    #[arg(long, value_name = "SECS", value_parser = super::client::parse_secs)]
    fault_detach_at: Option<std::time::Duration>,
    /// Fault injection: close each connection (amqp:connection:forced) this long after it
    /// opened.
    #[arg(long, value_name = "SECS", value_parser = super::client::parse_secs)]
    fault_close_at: Option<std::time::Duration>,
    /// Fault injection: where a redirect points.
    #[arg(long, value_name = "HOST:PORT", requires = "fault_redirect_after")]
    fault_redirect_to: Option<String>,
    /// X.509 devices: ask TLS clients for a certificate, so that devices registered by
    /// thumbprint (self-signed; `authentication.type` `selfSigned` in the registry API) can
    /// authenticate with theirs. Browsers cannot connect over WebSocket then. Implied by
    /// --x509-ca.
    #[arg(long)]
    client_certificates: bool,
    /// X.509 devices: the CA (PEM) that signs device certificates. A device registered
    /// with --x509-device (authentication type `certificateAuthority`) that presents a
    /// certificate it signed, with the device id as subject common name, is authenticated
    /// by TLS alone (no SASL, no token); its connection string says `x509=true`.
    #[arg(long, value_name = "PEM")]
    x509_ca: Option<PathBuf>,
    /// A device (repeatable) registered as IoT Hub registers a CA-authenticated one
    /// (`certificateAuthority`): it has no keys, takes no SAS token, and connects with a
    /// certificate the --x509-ca signed. A device registered with keys (--device) is not
    /// let in by a certificate, as on IoT Hub.
    #[arg(long = "x509-device", value_name = "ID", requires = "x509_ca")]
    x509_devices: Vec<String>,
    #[command(flatten)]
    trace: TraceArgs,
}

/// One registry entry from `ID[:KEY]`.
fn entry(arg: &str, what: &str) -> Result<(String, SasKey), String> {
    let (name, key) = match arg.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (arg, None),
    };
    if name.is_empty() {
        return Err(format!("--{what} {arg:?}: the name is empty"));
    }
    let key = match key {
        Some(k) => SasKey::from_base64(k).map_err(|e| format!("--{what} {name}: {e}"))?,
        None => generate_key(),
    };
    Ok((name.to_owned(), key))
}

/// Devices and policies from a `--registry` file.
type Registry = (Vec<(String, SasKey)>, Vec<(String, SasKey)>);

fn read_registry(path: &std::path::Path) -> Result<Registry, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let section = |name: &str| -> Result<Vec<(String, SasKey)>, String> {
        let Some(s) = v.get(name) else { return Ok(Vec::new()) };
        let obj = s
            .as_object()
            .ok_or_else(|| format!("{}: {name:?} is not an object", path.display()))?;
        obj.iter()
            .map(|(id, key)| match key {
                serde_json::Value::Null => Ok((id.clone(), generate_key())),
                serde_json::Value::String(k) => SasKey::from_base64(k)
                    .map(|k| (id.clone(), k))
                    .map_err(|e| format!("{}: {name}.{id}: {e}", path.display())),
                other => Err(format!("{}: {name}.{id} is {other}, not a string", path.display())),
            })
            .collect()
    };
    let Some(top) = v.as_object() else {
        return Err(format!("{}: not a JSON object", path.display()));
    };
    // A misspelt section ("devicez") would leave the registry at its defaults unsaid.
    if let Some(k) = top.keys().find(|k| !matches!(k.as_str(), "devices" | "policies")) {
        return Err(format!(
            "{}: no section {k:?} (a registry has \"devices\" and \"policies\")",
            path.display()
        ));
    }
    Ok((section("devices")?, section("policies")?))
}

/// `off`, or an address for a URL.
fn listen_url(scheme: &str, addr: &str, path: &str) -> Option<String> {
    (!addr.eq_ignore_ascii_case("off")).then(|| format!("{scheme}://{addr}{path}"))
}

async fn emulate(args: &EmulateArgs) -> Result<ExitCode, String> {
    let tracer = Tracer::for_server(&args.trace)?;
    let mut config = HubConfig::new(&args.hostname);
    config.partitions = args.partitions.max(1);
    config.faults.throttle_after = args.fault_throttle_after;
    config.faults.throttle_for = args.fault_throttle_for;
    config.faults.detach_after = args.fault_detach_after;
    config.faults.close_after = args.fault_close_after;
    config.faults.token_lifetime = args.fault_token_lifetime;
    config.faults.expire_after = args.fault_expire_after;
    config.faults.slow = args.fault_slow.map(std::time::Duration::from_millis);
    config.faults.redirect_after = args.fault_redirect_after;
    config.faults.detach_at = args.fault_detach_at;
    config.faults.close_at = args.fault_close_at;
    if let Some(to) = &args.fault_redirect_to {
        let (host, port) = to
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("--fault-redirect-to {to:?}: HOST:PORT"))?;
        config.faults.redirect_to = Some((host, port));
    }
    config.client_certificates = args.client_certificates;
    config.consumer_groups.extend(args.consumer_groups.iter().cloned());
    if let Some(path) = &args.x509_ca {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("--x509-ca {}: {e}", path.display()))?;
        config.x509_ca = Some(pem);
    }
    if let Some(path) = &args.registry {
        let (devices, policies) = read_registry(path)?;
        config.devices.extend(devices);
        for (name, key) in policies {
            let p = Permissions::of_policy(&name);
            config.policies.push((name, key, p));
        }
    }
    for d in &args.devices {
        config.devices.push(entry(d, "device")?);
    }
    for p in &args.policies {
        let (name, key) = entry(p, "policy")?;
        let perms = Permissions::of_policy(&name);
        config.policies.push((name, key, perms));
    }
    // One key per name: a name given twice would print a connection string the hub,
    // keeping the first key, refuses.
    let twice = |names: Vec<&str>| {
        let mut sorted = names;
        sorted.sort_unstable();
        sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0].to_owned())
    };
    if let Some(id) = twice(config.devices.iter().map(|(d, _)| d.as_str()).collect()) {
        return Err(format!("device {id:?} is given twice: a device has one key"));
    }
    if let Some(name) = twice(config.policies.iter().map(|(p, _, _)| p.as_str()).collect()) {
        return Err(format!("policy {name:?} is given twice: a policy has one key"));
    }
    if config.devices.is_empty() {
        config.devices.push(("device1".into(), generate_key()));
    }
    for m in &args.modules {
        let (path, key) = entry(m, "module")?;
        let Some((device, module)) =
            path.split_once('/').filter(|(d, m)| !d.is_empty() && !m.is_empty())
        else {
            return Err(format!("--module {m:?}: write DEVICE/MODULE[:KEY]"));
        };
        if !config.devices.iter().any(|(d, _)| d == device) {
            return Err(format!("--module {m:?}: no device {device:?} (add it with --device)"));
        }
        if config.modules.iter().any(|(d, m, _)| d == device && m == module) {
            return Err(format!("module {path:?} is given twice: a module has one key"));
        }
        config.modules.push((device.to_owned(), module.to_owned(), key));
    }
    if config.policies.is_empty() {
        for name in ["iothubowner", "service"] {
            config.policies.push((name.into(), generate_key(), Permissions::of_policy(name)));
        }
    }
    let (tls, ca) = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            (TlsServerConfig::from_pem_files(c, k).map_err(|e| e.to_string())?, None)
        }
        _ => {
            let dir = match &args.cert_dir {
                Some(d) => d.clone(),
                None => super::certs::default_dir(&format!("iothub-{}", args.hostname)),
            };
            let files = super::certs::in_dir(&dir, std::slice::from_ref(&args.hostname))?;
            let tls = TlsServerConfig::from_pem_files(&files.cert, &files.key)
                .map_err(|e| format!("{}: {e}", files.cert.display()))?;
            (tls, Some(files))
        }
    };
    let hub = IotHub::new(config);
    for id in &args.x509_devices {
        let ca_signed = serde_json::json!({ "authentication": { "type": "certificateAuthority" } });
        hub.put_identity(id, &ca_signed, None).map_err(|e| format!("--x509-device {id:?}: {e}"))?;
    }
    let options = hub.listen_options(Some(tls), None);
    // Each listener's connections are traced with its URL (the capture's comments).
    let traced = |place: &super::trace::Place| {
        let mut o = options.clone();
        o.trace = tracer.as_ref().map(|t| t.shared(Arc::clone(place)));
        o.started = tracer.as_ref().map(|t| t.started(Arc::clone(place)));
        o.ended = tracer.as_ref().map(super::trace::Tracer::ended);
        o
    };
    let mut listeners = Vec::new();
    let urls = [
        (listen_url("amqps", &args.amqps, ""), false),
        (listen_url("amqps", &args.eventhub, ""), true),
        (listen_url("wss", &args.eventhub_wss, "/$servicebus/websocket"), true),
    ];
    for (url, event_hub) in urls {
        let Some(url) = url else { continue };
        let place = super::trace::Place::default();
        let l = Listener::bind(&url, traced(&place)).await.map_err(|e| e.to_string())?;
        let _ = place.set(l.endpoint().to_string());
        if event_hub && l.endpoint().scheme.as_str() == "amqps" {
            hub.set_event_hub_endpoint(&args.hostname, l.endpoint().port);
        }
        // A redirect fault points at this hub's own amqps listener unless told otherwise.
        if !event_hub && hub.config().faults.redirect_to.is_none() {
            let port = l.endpoint().port;
            hub.reconfigure(|c| c.faults.redirect_to = Some((args.hostname.clone(), port)));
        }
        listeners.push((l, event_hub));
    }
    // Port 443: AMQP over WebSocket and the REST APIs, on one listener.
    let https = match listen_url("wss", &args.wss, "") {
        None => None,
        Some(url) => {
            let addr = &args.wss;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {url}: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
            Some((l, format!("{host}:{port}")))
        }
    };
    if listeners.is_empty() && https.is_none() {
        return Err("every listener is off".into());
    }
    // Signals are handled from before the emulator says where it listens.
    let stop = super::client::stop_signal();
    let mut out = super::words();
    // In the order of the options: amqps, wss, the Event Hub's two, then https (the wss
    // port again).
    let ws_url = https.as_ref().map(|(_, a)| format!("wss://{a}/$iothub/websocket"));
    let (iothub, event_hub): (Vec<_>, Vec<_>) = listeners.iter().partition(|(_, eh)| !*eh);
    for (l, _) in &iothub {
        let _ = writeln!(out, "listening on {}", l.endpoint());
    }
    if let Some(url) = &ws_url {
        let _ = writeln!(out, "listening on {url}");
    }
    for (l, _) in &event_hub {
        let _ = writeln!(out, "listening on {}", l.endpoint());
    }
    if let Some((_, a)) = &https {
        let _ = writeln!(out, "listening on https://{a}");
    }
    for (l, _) in &iothub {
        let _ = writeln!(out, "iothub endpoint: {}", l.endpoint());
    }
    if let Some(url) = &ws_url {
        let _ = writeln!(out, "iothub endpoint: {url}");
    }
    for (l, _) in &event_hub {
        let _ = writeln!(out, "event hub endpoint: {}", l.endpoint());
    }
    if let Some((_, a)) = &https {
        let _ = writeln!(out, "https device endpoint: https://{a}/devices/{{id}}/messages/events");
        let _ = writeln!(
            out,
            "https service endpoint: https://{a}/devices, /twins/{{id}}, /twins/{{id}}/methods"
        );
    }
    let config = hub.config();
    for (id, key) in &config.devices {
        let _ = if args.x509_devices.contains(id) {
            writeln!(out, "device {id}: HostName={};DeviceId={id};x509=true", config.hostname)
        } else {
            writeln!(
                out,
                "device {id}: HostName={};DeviceId={id};SharedAccessKey={}",
                config.hostname,
                key.to_base64()
            )
        };
    }
    for (device, module, key) in &config.modules {
        let _ = writeln!(
            out,
            "module {device}/{module}: HostName={};DeviceId={device};ModuleId={module};SharedAccessKey={}",
            config.hostname,
            key.to_base64()
        );
    }
    for (name, key, _) in &config.policies {
        let _ = writeln!(
            out,
            "policy {name}: HostName={};SharedAccessKeyName={name};SharedAccessKey={}",
            config.hostname,
            key.to_base64()
        );
    }
    // The Event Hub-compatible endpoint as @azure/event-hubs and azure-eventhub take it:
    // everything in one string (the port in Endpoint, EntityPath the Event Hub's name).
    let eh_port = listeners
        .iter()
        .find(|(l, eh)| *eh && l.endpoint().scheme.as_str() == "amqps")
        .map(|(l, _)| l.endpoint().port);
    if let Some(port) = eh_port {
        for (name, key, _) in config.policies.iter().filter(|(_, _, rights)| rights.service) {
            let _ = writeln!(
                out,
                "event hub-compatible {name}: Endpoint=sb://{}:{port}/;SharedAccessKeyName={name};SharedAccessKey={};EntityPath={}",
                config.hostname,
                key.to_base64(),
                config.event_hub_name
            );
        }
    }
    if let Some(files) = &ca {
        let how = if files.made { "made now" } else { "kept from an earlier run" };
        let _ = writeln!(out, "ca certificate: {} ({how})", files.ca.display());
    }
    let _ = out.flush();
    drop(out);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some((l, at)) = https {
        let place = super::trace::Place::default();
        let _ = place.set(format!("wss://{at}/$iothub/websocket"));
        let hub = hub.clone();
        let options = traced(&place);
        tasks.spawn(async move {
            hub.serve_https_with(l, options).await;
            Ok(())
        });
    }
    for (l, event_hub) in listeners {
        let hub = hub.clone();
        tasks.spawn(async move {
            if event_hub {
                hub.serve_event_hub(l).await
            } else {
                hub.serve(l).await
            }
        });
    }
    // The listeners serve until one of them fails (that ends the emulator), or until it
    // is stopped: then the connections still open end in the capture, and every trace and
    // recording is written out.
    let served = async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("a listener stopped: {e}")),
                Err(e) => return Err(format!("a listener stopped: {e}")),
            }
        }
        Ok(ExitCode::SUCCESS)
    };
    Tracer::serve_until_stopped(served, stop, tracer.as_ref()).await
}

// ------------------------------------------------------------------ the clients

/// How the clients connect.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TransportArg {
    /// AMQP over TLS (port 5671).
    Amqps,
    /// AMQP over WebSocket over TLS (port 443, /$iothub/websocket).
    #[value(alias = "wss", alias = "websocket")]
    Ws,
}

/// `--connection-string` of the commands that act as the service.
const SERVICE_CS: &str = "The hub's connection string for a shared access policy with ServiceConnect (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…)";

/// `--connection-string` of the commands that act as a device.
const DEVICE_CS: &str = "The device's connection string (HostName=…;DeviceId=…;SharedAccessKey=…, or a policy with DeviceConnect and DeviceId=…, or x509=true with --cert and --key; ModuleId=… sends as that module)";

/// The options every client command takes.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct HubArgs {
    /// The IoT Hub connection string (a device's or a policy's, as the command needs).
    #[arg(long, value_name = "CS")]
    connection_string: String,
    /// AMQP over TLS or over WebSocket.
    #[arg(long, value_enum, default_value = "amqps")]
    transport: TransportArg,
    /// How to authenticate: `mssbcbs`, `anonymous` or `none` (SASL layer, then a CBS
    /// put-token, renewed), or `plain` (the token as the SASL PLAIN password).
    #[arg(long, default_value = "mssbcbs", value_parser = parse_security)]
    security: Security,
    /// The hub's port when not 5671 (TLS) or 443 (WebSocket).
    #[arg(long)]
    port: Option<u16>,
    /// Also trust the CA certificates of this PEM file (repeatable), such as the
    /// emulator's ca.pem.
    #[arg(long, value_name = "PEM")]
    ca: Vec<PathBuf>,
    /// An X.509 device's certificate (PEM; with --key), for a connection string that says
    /// `x509=true`: TLS with it authenticates the device, with no SASL and no token.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// How long each token is valid, in seconds; CBS tokens are renewed at 80 % of it.
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    token_ttl: u64,
    #[command(flatten)]
    trace: TraceArgs,
}

fn parse_security(s: &str) -> Result<Security, String> {
    Security::from_name(s).ok_or_else(|| format!("{s:?}: one of mssbcbs, anonymous, none, plain"))
}

impl HubArgs {
    /// What every client command starts from: the connection string, the tracer (when
    /// asked for) and the client options.
    /// `data`: what the command prints on standard output, if anything (then the trace
    /// cannot go there).
    fn setup(
        &self,
        data: Option<&str>,
    ) -> Result<(IotHubConnectionString, Option<Arc<Tracer>>, HubOptions), String> {
        if let Some(data) = data {
            self.trace.stdout_free_for(data)?;
        }
        let cs = self.connection_string.parse().map_err(|e| format!("--connection-string: {e}"))?;
        let tracer = Tracer::new(&self.trace, false)?;
        let mut options = self.options(tracer.as_ref())?;
        // The capture's comments name where the connection goes.
        let place = super::trace::Place::default();
        let _ = place.set(amqpwire::azure::client::hub_endpoint(&cs, &options).to_string());
        options.trace = tracer.as_ref().map(|t| t.shared(place));
        Ok((cs, tracer, options))
    }

    fn options(&self, tracer: Option<&Arc<Tracer>>) -> Result<HubOptions, String> {
        let transport = match self.transport {
            TransportArg::Amqps => HubTransport::Amqps,
            TransportArg::Ws => HubTransport::WebSocket,
        };
        let mut o = HubOptions::new(transport, self.security);
        o.port = self.port;
        let mut tls = ClientTlsConfig::new();
        for ca in &self.ca {
            tls = tls.with_ca_file(ca).map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls
                .with_client_cert_files(cert, key)
                .map_err(|e| format!("--cert {} --key {}: {e}", cert.display(), key.display()))?;
        }
        o.tls = tls;
        o.token_lifetime = Duration::from_secs(self.token_ttl);
        o.trace = tracer.map(|t| t.shared(super::trace::Place::default()));
        Ok(o)
    }
}

/// The message body options.
#[derive(clap::Args, Debug, Clone)]
struct BodyArgs {
    /// The message body, as text.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the body from a file (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// An application property (repeatable); the value is a string.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// The message-id (a string); a random uuid when not given.
    #[arg(long)]
    message_id: Option<String>,
    /// The content-type, such as application/json.
    #[arg(long)]
    content_type: Option<String>,
}

impl BodyArgs {
    /// The message, the same each time (a file or standard input is read once).
    fn message(&self, default_body: &str) -> Result<Message, String> {
        let body = match (&self.body, &self.body_file) {
            (Some(b), _) => Bytes::copy_from_slice(b.as_bytes()),
            (None, Some(f)) => read_body_file(f)?,
            (None, None) => Bytes::copy_from_slice(default_body.as_bytes()),
        };
        let mut m = Message::with_data(body);
        let props = properties(&self.properties)?;
        if !props.is_empty() {
            m.application_properties = Some(AnnotationMap::from_pairs(
                props.iter().map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str()))),
            ));
        }
        // Without --message-id each send gives the message a uuid of its own.
        m.properties = Some(Properties {
            message_id: self.message_id.as_deref().map(|id| MessageId::String(id.into())),
            content_type: self.content_type.as_deref().map(Into::into),
            ..Properties::default()
        });
        Ok(m)
    }
}

/// Arguments of `amqpwire iothub send-c2d`.
#[derive(clap::Args, Debug)]
pub(crate) struct SendC2dArgs {
    /// The device to send to.
    #[arg(long, value_name = "ID")]
    device: String,
    #[command(flatten)]
    body: BodyArgs,
    /// The feedback to ask for (`iothub-ack`).
    #[arg(long, value_enum, default_value = "none")]
    ack: AckArg,
    /// The message's time to live, in seconds (absolute-expiry-time); the hub's default
    /// otherwise.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    ttl: Option<u64>,
    /// How many messages to send (each with its own message-id unless --message-id).
    #[arg(long, default_value_t = 1)]
    count: u64,
    #[command(flatten)]
    hub: HubArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum AckArg {
    None,
    Positive,
    Negative,
    Full,
}

impl From<AckArg> for Ack {
    fn from(a: AckArg) -> Self {
        match a {
            AckArg::None => Self::None,
            AckArg::Positive => Self::Positive,
            AckArg::Negative => Self::Negative,
            AckArg::Full => Self::Full,
        }
    }
}

/// The longest time to live or token lifetime the commands take: ten years.
const MAX_SECS: u64 = 10 * 365 * 24 * 3600;

/// Writes a line of data to standard output; `Ok(false)` once the reader has gone away (a
/// closed pipe), `Err` for another failure.
fn emit(line: &str) -> Result<bool, String> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(format!("cannot write to standard output: {e}")),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Runs a client command, then writes out the trace; errors become one line.
async fn traced<T>(
    tracer: Option<&Arc<Tracer>>,
    work: impl std::future::Future<Output = Result<T, HubError>>,
) -> Result<T, String> {
    let r = work.await;
    if let Some(t) = tracer {
        t.finish();
    }
    r.map_err(|e| e.to_string())
}

async fn send_c2d(args: &SendC2dArgs) -> Result<ExitCode, String> {
    let (cs, tracer, options) = args.hub.setup(Some("the message ids"))?;
    // A write to standard output that failed, but for a reader gone away.
    let mut failed: Option<String> = None;
    let template = args.body.message("")?;
    traced(tracer.as_ref(), async {
        let service = ServiceClient::connect(&cs, options).await?;
        for _ in 0..args.count {
            let mut m = template.clone();
            if let Some(p) = m.properties.as_mut() {
                if args.body.message_id.is_none() {
                    p.message_id = Some(MessageId::Uuid(amqpwire::azure::client::random_uuid()));
                }
                if let Some(ttl) = args.ttl {
                    // --ttl is at most ten years: no overflow.
                    p.absolute_expiry_time = Some(Timestamp(now_ms() + ttl as i64 * 1000));
                }
            }
            let id = service.send_c2d(&args.device, m, args.ack.into()).await?;
            match emit(&message_id_text(&id)) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        service.close().await
    })
    .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `amqpwire iothub feedback`.
#[derive(clap::Args, Debug)]
pub(crate) struct FeedbackArgs {
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    hub: HubArgs,
}

async fn feedback(args: &FeedbackArgs) -> Result<ExitCode, String> {
    let (cs, tracer, options) = args.hub.setup(Some("the feedback records"))?;
    // A write to standard output that failed, but for a reader gone away.
    let mut failed: Option<String> = None;
    let n = traced(tracer.as_ref(), async {
        let service = ServiceClient::connect(&cs, options).await?;
        let rx = service.feedback().await?;
        let (mut n, mut gone) = (0, false);
        'reading: while args.read.more(n) {
            let Ok(batch) = tokio::time::timeout(args.read.timeout, rx.next()).await else { break };
            for r in batch? {
                if !args.read.more(n) {
                    break 'reading;
                }
                let line = if args.read.json {
                    r.to_json().to_string()
                } else {
                    format!(
                        "{} {} {} {}",
                        r.original_message_id,
                        r.device_id,
                        r.status.name(),
                        r.enqueued_time_utc
                    )
                };
                match emit(&line) {
                    Ok(true) => {}
                    Ok(false) => {
                        gone = true;
                        break 'reading;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break 'reading;
                    }
                }
                n += 1;
            }
        }
        service.close().await?;
        Ok((n, gone))
    })
    .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    args.read.short_of(n, "feedback records")
}

/// How the reading commands (feedback, device-receive, monitor) stop and print.
#[derive(clap::Args, Debug)]
struct ReadArgs {
    /// Stop after this many (records, messages, events); default: until the time-out.
    #[arg(long)]
    count: Option<usize>,
    /// Stop when nothing has come for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    timeout: Duration,
    /// One JSON object per line instead of text (feedback: the hub's own fields;
    /// device-receive: the lock token and the decoded message; monitor: device, enqueued
    /// time, offsets and the message).
    #[arg(long)]
    json: bool,
}

impl ReadArgs {
    /// Whether to read more after `n`.
    fn more(&self, n: usize) -> bool {
        self.count.is_none_or(|c| n < c)
    }

    /// Exit status 1 with a line when fewer than `--count` things came, unless the reader
    /// of standard output went away (`gone`: it wanted no more).
    fn short_of(&self, (n, gone): (usize, bool), what: &str) -> Result<ExitCode, String> {
        match self.count {
            Some(c) if n < c && !gone => {
                eprintln!("amqpwire: timed out after {n} of {c} {what}");
                Ok(ExitCode::from(1))
            }
            _ => Ok(ExitCode::SUCCESS),
        }
    }
}

/// Arguments of `amqpwire iothub device-send`.
#[derive(clap::Args, Debug)]
pub(crate) struct DeviceSendArgs {
    #[command(flatten)]
    body: BodyArgs,
    /// How many messages to send.
    #[arg(long, default_value_t = 1)]
    count: u64,
    #[command(flatten)]
    hub: HubArgs,
}

async fn device_send(args: &DeviceSendArgs) -> Result<ExitCode, String> {
    let (cs, tracer, options) = args.hub.setup(None)?;
    let template = args.body.message("{\"hello\":\"from amqpwire\"}")?;
    traced(tracer.as_ref(), async {
        let device = DeviceClient::connect(&cs, options).await?;
        for _ in 0..args.count {
            let mut m = template.clone();
            if let (Some(p), None) = (m.properties.as_mut(), &args.body.message_id) {
                p.message_id = Some(MessageId::Uuid(amqpwire::azure::client::random_uuid()));
            }
            device.send_event(m).await?;
        }
        device.close().await
    })
    .await?;
    eprintln!("sent {} message(s); the hub accepted each", args.count);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SettleArg {
    /// Accept: the hub deletes it (positive feedback).
    Complete,
    /// Release: the hub delivers it again.
    Abandon,
    /// Reject: the hub dead-letters it (negative feedback).
    Reject,
}

/// Arguments of `amqpwire iothub device-receive`.
#[derive(clap::Args, Debug)]
pub(crate) struct DeviceReceiveArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// What to do with each message once its line is written (one whose line cannot be
    /// written, the reader having gone away, is abandoned: the hub delivers it again).
    #[arg(long, value_enum, default_value = "complete")]
    settle: SettleArg,
    #[command(flatten)]
    hub: HubArgs,
}

async fn device_receive(args: &DeviceReceiveArgs) -> Result<ExitCode, String> {
    let (cs, tracer, options) = args.hub.setup(Some("the messages received"))?;
    // A write to standard output that failed, but for a reader gone away.
    let mut failed: Option<String> = None;
    let n = traced(tracer.as_ref(), async {
        let device = DeviceClient::connect(&cs, options).await?;
        let (mut n, mut gone) = (0, false);
        while args.read.more(n) {
            let Ok(m) = tokio::time::timeout(args.read.timeout, device.receive()).await else {
                break;
            };
            let m = m?;
            let line = if args.read.json {
                let j = serde_json::json!({
                    "lock_token": m.lock_token(),
                    "message": amqpwire::inspect::json::payload_json(&m.delivery.payload, None),
                });
                j.to_string()
            } else {
                body_text(&m.message)
            };
            // Settled as asked once shown; a message whose line the reader did not take
            // (it went away) is abandoned, so that the hub delivers it again.
            let shown = emit(&line);
            if shown != Ok(true) {
                device.abandon(&m)?;
                match shown {
                    Err(e) => failed = Some(e),
                    _ => gone = true,
                }
                break;
            }
            match args.settle {
                SettleArg::Complete => device.complete(&m)?,
                SettleArg::Abandon => device.abandon(&m)?,
                SettleArg::Reject => device.reject(&m)?,
            }
            n += 1;
        }
        device.close().await?;
        Ok((n, gone))
    })
    .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    args.read.short_of(n, "messages")
}

/// Arguments of `amqpwire iothub monitor`.
#[derive(clap::Args, Debug)]
pub(crate) struct MonitorArgs {
    /// Read from the start of each partition (as --start start).
    #[arg(long, conflicts_with = "start")]
    from_start: bool,
    /// Where to start: `latest` (only new events, the default), `start`, `offset:N`,
    /// `sequence:N` or `enqueued:MS` (ms since the Unix epoch); each exclusive.
    #[arg(long, value_name = "POS", value_parser = parse_start)]
    start: Option<StartPosition>,
    /// The consumer group.
    #[arg(long, default_value = DEFAULT_CONSUMER_GROUP)]
    consumer_group: String,
    /// Read only this partition (repeatable); all by default.
    #[arg(long = "partition", value_name = "ID")]
    partitions: Vec<String>,
    #[command(flatten)]
    read: ReadArgs,
    /// The Event Hub endpoint's WebSocket port, with --transport ws (443 otherwise).
    #[arg(long)]
    eventhub_ws_port: Option<u16>,
    #[command(flatten)]
    hub: HubArgs,
}

fn parse_start(s: &str) -> Result<StartPosition, String> {
    let number = |v: &str| v.parse::<i64>().map_err(|_| format!("{v:?} is not a number"));
    match s.split_once(':') {
        None if s == "start" => Ok(StartPosition::START),
        None if s == "latest" => Ok(StartPosition::Latest),
        Some(("offset", v)) => Ok(StartPosition::Offset { offset: number(v)?, inclusive: false }),
        Some(("sequence", v)) => {
            Ok(StartPosition::Sequence { sequence: number(v)?, inclusive: false })
        }
        Some(("enqueued", v)) => {
            Ok(StartPosition::EnqueuedTime { ms: number(v)?, inclusive: false })
        }
        _ => Err(format!("{s:?}: latest, start, offset:N, sequence:N or enqueued:MS")),
    }
}

/// An event as `monitor` prints it: when, who (`DEVICE`, or `DEVICE/MODULE` for a
/// module's), where in the log, and its body.
fn event_line(e: &Event) -> String {
    let device = e.device_id.as_deref().unwrap_or("-");
    let sender = match &e.module_id {
        Some(m) => format!("{device}/{m}"),
        None => device.to_owned(),
    };
    format!(
        "{} {} partition {} seq {}: {}",
        e.enqueued_time.map_or_else(|| "-".to_owned(), |t| t.to_string()),
        sender,
        e.partition,
        e.sequence_number.map_or_else(|| "-".to_owned(), |s| s.to_string()),
        e.body_text().unwrap_or_else(|| format!("{:?}", e.message.body)),
    )
}

async fn monitor(args: &MonitorArgs) -> Result<ExitCode, String> {
    let (cs, tracer, mut options) = args.hub.setup(Some("the events read"))?;
    // Its connections go to the hub and then where the hub redirects it: no one place
    // names them all, so their captures are commented without one.
    options.trace = tracer.as_ref().map(|t| t.shared(super::trace::Place::default()));
    // A write to standard output that failed, but for a reader gone away.
    let mut failed: Option<String> = None;
    options.event_hub_ws_port = args.eventhub_ws_port;
    let start = if args.from_start {
        StartPosition::START
    } else {
        args.start.unwrap_or(StartPosition::Latest)
    };
    let read = ReadOptions {
        consumer_group: args.consumer_group.clone(),
        start,
        partitions: (!args.partitions.is_empty()).then(|| args.partitions.clone()),
    };
    let n = traced(tracer.as_ref(), async {
        let target = EventHubTarget::discover(&cs, &options).await?;
        eprintln!(
            "redirected to {}:{} (Event Hub {:?})",
            target.hostname, target.port, target.event_hub
        );
        let mut reader = EventReader::connect(&cs, &target, read, &options).await?;
        eprintln!("reading partitions {}", reader.partitions().join(", "));
        let (mut n, mut gone) = (0, false);
        while args.read.more(n) {
            let Ok(e) = tokio::time::timeout(args.read.timeout, reader.next()).await else { break };
            let e = match e {
                Ok(e) => e,
                // One event that cannot be read does not stop the monitor.
                Err(HubError::BadMessage(why)) => {
                    eprintln!("amqpwire: skipped an event: {why}");
                    continue;
                }
                Err(other) => return Err(other),
            };
            let line = if args.read.json { e.to_json().to_string() } else { event_line(&e) };
            match emit(&line) {
                Ok(true) => {}
                Ok(false) => {
                    gone = true;
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            n += 1;
        }
        reader.close().await?;
        Ok((n, gone))
    })
    .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    args.read.short_of(n, "events")
}

// ------------------------------------------------------------------ the demo

/// Arguments of `amqpwire iothub demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    trace: DemoTraceArgs,
    /// AMQP over WebSocket (as IoT Hub on 443) or over TLS (5671).
    #[arg(long, value_enum, default_value = "ws")]
    transport: TransportArg,
    /// How the clients authenticate: `mssbcbs`, `anonymous` or `none` (SASL layer, then a
    /// CBS put-token), or `plain` (the token as the SASL PLAIN password).
    #[arg(long, default_value = "mssbcbs", value_parser = parse_security)]
    security: Security,
}

async fn demo(args: &DemoArgs) -> Result<ExitCode, String> {
    let tracer = args.trace.tracer()?;
    let r = run_demo(args, &tracer).await;
    tracer.finish();
    r.map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

async fn run_demo(args: &DemoArgs, tracer: &Arc<Tracer>) -> Result<(), Box<dyn std::error::Error>> {
    const HOST: &str = "localhost";
    const DEVICE: &str = "demo-device";
    let pki = super::certs::generate(&[HOST.to_owned()])?;
    let device_key = generate_key();
    let owner_key = generate_key();
    let mut config = HubConfig::new(HOST);
    config.devices.push((DEVICE.into(), device_key.clone()));
    config.policies.push((
        "iothubowner".into(),
        owner_key.clone(),
        Permissions::of_policy("iothubowner"),
    ));
    config.partitions = 2;
    config.feedback_interval = Duration::from_millis(200);
    let hub = IotHub::new(config);
    // Only the clients' side is traced: the hub's mirrors it.
    let tls = TlsServerConfig::from_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())?;
    let options = hub.listen_options(Some(tls), None);
    let hub_url = match args.transport {
        TransportArg::Ws => "wss://127.0.0.1:0/$iothub/websocket",
        TransportArg::Amqps => "amqps://127.0.0.1:0",
    };
    let eh_url = match args.transport {
        TransportArg::Ws => "wss://127.0.0.1:0/$servicebus/websocket",
        TransportArg::Amqps => "amqps://127.0.0.1:0",
    };
    let hub_listener = Listener::bind(hub_url, options.clone()).await?;
    let eh_listener = Listener::bind(eh_url, options).await?;
    let (hub_port, eh_port) = (hub_listener.endpoint().port, eh_listener.endpoint().port);
    hub.set_event_hub_endpoint(HOST, eh_port);
    say(&format!(
        "amqpwire iothub demo: an IoT Hub emulator for {HOST:?} at {} and its Event Hub-compatible endpoint at {}; device {DEVICE:?}, policy \"iothubowner\"; every frame each client sends and receives is shown below",
        hub_listener.endpoint(),
        eh_listener.endpoint()
    ));
    for (l, event_hub) in [(hub_listener, false), (eh_listener, true)] {
        let h = hub.clone();
        tokio::spawn(async move {
            if event_hub {
                h.serve_event_hub(l).await
            } else {
                h.serve(l).await
            }
        });
    }
    let device_cs: IotHubConnectionString =
        format!("HostName={HOST};DeviceId={DEVICE};SharedAccessKey={}", device_key.to_base64())
            .parse()?;
    let service_cs: IotHubConnectionString = format!(
        "HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
        owner_key.to_base64()
    )
    .parse()?;
    let expiry = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    let token = SasToken::new(&device_cs.resource_uri(), &device_key, None, expiry)?;
    let shown = if args.trace.show_secrets { token.to_string() } else { mask_sig(&token) };
    say(&format!(
        "1. tokens: the device signs HMAC-SHA256(key, \"{}\") with its base64-decoded key:\n    {shown}",
        token.string_to_sign().replace('\n', "\\n")
    ));

    let transport = match args.transport {
        TransportArg::Ws => HubTransport::WebSocket,
        TransportArg::Amqps => HubTransport::Amqps,
    };
    let mut options = HubOptions::new(transport, args.security);
    options.port = Some(hub_port);
    options.event_hub_ws_port = Some(eh_port);
    options.tls = ClientTlsConfig::new().with_ca_pem(pki.ca_pem.as_bytes())?;
    options.trace = Some(tracer.shared(super::trace::Place::default()));

    say(&format!(
        "2. the service connects ({}, security {}), puts its token on $cbs, and sends a cloud-to-device message with iothub-ack=full",
        transport_name(transport),
        args.security.name()
    ));
    let service = ServiceClient::connect(&service_cs, options.clone()).await?;
    let mut m = Message::with_data(&b"{\"command\":\"switch-on\"}"[..]);
    m.application_properties = Some(AnnotationMap::from_pairs([("room", "kitchen")]));
    let id = service.send_c2d(DEVICE, m, Ack::Full).await?;
    say(&format!("the hub accepted message {}", message_id_text(&id)));

    say("3. the device connects, puts its own token, receives the message and completes it");
    let device = DeviceClient::connect(&device_cs, options.clone()).await?;
    let c2d = tokio::time::timeout(Duration::from_secs(10), device.receive())
        .await
        .map_err(|_| "the cloud-to-device message did not arrive")??;
    say(&format!(
        "received {:?} (lock token {}); completing it",
        body_text(&c2d.message),
        c2d.lock_token()
    ));
    device.complete(&c2d)?;

    say("4. the service reads the feedback");
    let fb = service.feedback().await?;
    let records = tokio::time::timeout(Duration::from_secs(10), fb.next())
        .await
        .map_err(|_| "the feedback did not arrive")??;
    for r in &records {
        say(&format!(
            "feedback: message {} to {}: {} ({})",
            r.original_message_id,
            r.device_id,
            r.status.name(),
            r.description
        ));
    }

    say("5. the device sends telemetry with an application property");
    let mut t = Message::with_data(&b"{\"temperature\":21.5}"[..]);
    t.application_properties = Some(AnnotationMap::from_pairs([("alert", "none")]));
    device.send_event(t).await?;

    say("6. the monitor asks the hub for events and is redirected (amqp:link:redirect) to the Event Hub-compatible endpoint");
    let target = EventHubTarget::discover(&service_cs, &options).await?;
    say(&format!(
        "redirected to {}:{}, Event Hub {:?}; reading every partition from the start",
        target.hostname, target.port, target.event_hub
    ));
    let read = ReadOptions { start: StartPosition::START, ..ReadOptions::default() };
    let mut reader = EventReader::connect(&service_cs, &target, read, &options).await?;
    let event = tokio::time::timeout(Duration::from_secs(10), reader.next())
        .await
        .map_err(|_| "the telemetry did not reach the monitor")??;
    say(&format!("event: {}", event_line(&event)));

    say("7. everyone closes");
    reader.close().await?;
    device.close().await?;
    service.close().await?;
    say("done: a cloud-to-device message completed with its feedback, and telemetry read back through the redirect");
    Ok(())
}

fn transport_name(t: HubTransport) -> &'static str {
    match t {
        HubTransport::Amqps => "AMQP over TLS",
        HubTransport::WebSocket => "AMQP over WebSocket, subprotocol AMQPWSB10",
    }
}

/// The token with its signature masked, as the trace shows it.
fn mask_sig(t: &SasToken) -> String {
    let mut s = format!("SharedAccessSignature sr={}&sig=***&se={}", t.sr(), t.expiry());
    if let Some(k) = t.key_name() {
        s.push_str("&skn=");
        s.push_str(k);
    }
    s
}
