//! A local emulator of Azure IoT Hub's AMQP surface, built on the engine and
//! [`Listener`]: real IoT Hub clients (the Azure SDKs, amqpwire's own) talk to it as they
//! would to a hub, with no internet. See `docs/iothub.md`.
//!
//! ```text
//!   IotHub::serve(listener)             (amqps :5671)
//!   IotHub::serve_https(tcp, tls)       (:443: wss /$iothub/websocket and the REST APIs)
//!     SASL: none | MSSBCBS | ANONYMOUS (then CBS) | PLAIN (user …@sas[.root].hub, token)
//!     $cbs               put-token: SAS token checked against the registry → a claim
//!     /messages/devicebound                 service → per-device C2D queues (limit, size)
//!     /messages/servicebound/feedback       ◄─ feedback JSON (Success, Rejected, …)
//!     /devices/{id}/messages/events         device → event log (partition = hash(id))
//!     /devices/{id}/messages/devicebound    ◄─ C2D, tag = lock token (GUID); complete /
//!                                              abandon / reject → feedback, counts
//!     messages/events/…                     ─► detach amqp:link:redirect (Event Hub endpoint)
//!   IotHub::serve_event_hub(listener)
//!     $cbs (202) · $management READ · {hub}/ConsumerGroups/{cg}/Partitions/{p} (filters)
//! ```
//!
//! Every link is authorized by a claim: a SAS token put on `$cbs` (or given as the SASL
//! PLAIN password) whose audience covers the node, signed by a device key or a policy key
//! with the right permission, and not expired. When the last claim covering a link
//! expires, the link is detached with `amqp:unauthorized-access` ("Token Invalid.");
//! a PLAIN connection is closed.

mod https;
mod methods;
mod nodes;
mod registry;
mod rest;
mod state;
mod twin;

pub use methods::{MethodError, MethodResponse};
pub use registry::{valid_id, RestError};

pub use https::{
    HttpsRecorder, BATCH_CONTENT_TYPE, HTTPS_IDLE, HTTPS_MAX_CONNECTIONS, HTTPS_TRANSFER,
};

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time IoT Hub shows for what never happened (.NET's `DateTime.MinValue`).
pub(crate) const EPOCH: &str = "0001-01-01T00:00:00Z";

use bytes::Bytes;

use crate::azure::{percent_decode, SasKey, SasToken};
use crate::codec::Symbol;
use crate::connection::Config as EngineConfig;
use crate::runtime::transport::{TlsServerConfig, TransportError};
use crate::runtime::{Error, ListenOptions, Listener, ServerConnection, SharedTrace};
use crate::sasl::{AuthOutcome, AuthStep, Authenticator};
use crate::types::{Layout, SaslCode};

pub use crate::azure::hub::{Ack, FeedbackRecord, FeedbackStatus, StartPosition};
pub use state::Event;

/// A new random 256-bit shared access key, for devices and policies made up on the spot.
pub fn generate_key() -> SasKey {
    SasKey::from_bytes(crate::runtime::random::bytes::<32>().to_vec())
}

/// What a policy may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    /// ServiceConnect: send cloud-to-device messages, read feedback and events.
    pub service: bool,
    /// DeviceConnect: act as any device.
    pub device: bool,
    /// RegistryRead: read the identity registry (devices, modules) over the REST API.
    pub registry: bool,
    /// RegistryReadWrite: create, update and delete identities too.
    pub registry_write: bool,
}

impl Permissions {
    /// The permissions of IoT Hub's built-in policies by name (`iothubowner`: all;
    /// `service`; `device`; `registryRead`, `registryReadWrite`); any other name gets
    /// service and device.
    pub fn of_policy(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "iothubowner" => {
                Self { service: true, device: true, registry: true, registry_write: true }
            }
            "service" => Self { service: true, ..Self::default() },
            "device" => Self { device: true, ..Self::default() },
            "registryread" => Self { registry: true, ..Self::default() },
            "registryreadwrite" => Self { registry: true, registry_write: true, ..Self::default() },
            _ => Self { service: true, device: true, ..Self::default() },
        }
    }
}

/// The emulated hub: its name, registry and limits.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The host name clients use and tokens name (`myhub.azure-devices.net`, `localhost`).
    pub hostname: String,
    /// Devices and their keys.
    pub devices: Vec<(String, SasKey)>,
    /// Shared access policies, their keys and permissions.
    pub policies: Vec<(String, SasKey, Permissions)>,
    /// Module identities: the device, the module id and the module's own key. A module
    /// authenticates with its key (a token for `{host}/devices/{device}/modules/{module}`)
    /// and sends telemetry on `devices/{device}/modules/{module}/messages/events`.
    pub modules: Vec<(String, String, SasKey)>,
    /// Partitions of the event log.
    pub partitions: u32,
    /// Events kept per partition; older ones are dropped (IoT Hub keeps them for a
    /// retention period instead).
    pub retained_events: usize,
    /// The Event Hub-compatible name (default: the hub's name).
    pub event_hub_name: String,
    /// Where the redirect sends event readers: host and port of the Event Hub listener.
    pub event_hub_endpoint: Option<(String, u16)>,
    /// The Event Hub-compatible endpoint's consumer groups (`$Default`, and those a hub's
    /// owner made): a reader of any other is refused with `amqp:not-found`, as Event Hubs
    /// refuses one, so that a misspelt group does not pass here and fail on Azure.
    /// Compared without regard to case, as Event Hubs names them.
    pub consumer_groups: Vec<String>,
    /// Cloud-to-device messages queued per device at most (IoT Hub: 50).
    pub c2d_queue_limit: usize,
    /// Largest cloud-to-device message (IoT Hub: 64 KiB).
    pub c2d_max_size: usize,
    /// Largest device-to-cloud message (IoT Hub: 256 KiB).
    pub d2c_max_size: usize,
    /// Deliveries of a cloud-to-device message before it is dead (IoT Hub default: 10).
    pub max_delivery_count: u32,
    /// How long a device holds a message before it goes back unsettled (IoT Hub: 1 min).
    pub lock_timeout: Duration,
    /// Time to live of a cloud-to-device message without absolute-expiry-time (1 h).
    pub default_ttl: Duration,
    /// How long feedback records are gathered into one message (IoT Hub: up to 15 s;
    /// short for tests).
    pub feedback_interval: Duration,
    /// Allowed clock skew when checking token expiry (5 min).
    pub clock_skew: Duration,
    /// Faults to inject, for testing clients' retry logic (none by default).
    pub faults: Faults,
    /// X.509 device authentication: the CA (PEM) that signs device certificates. A device
    /// of the registry that presents a certificate it signed, with the device id as the
    /// subject common name, is authenticated by TLS alone: no SASL, no `$cbs` token. The
    /// listeners then ask TLS clients for a certificate (optional: SAS clients need none).
    pub x509_ca: Option<String>,
    /// Ask TLS clients for a certificate (optional for them), so that X.509 devices can
    /// authenticate with one: signed by [`HubConfig::x509_ca`], or self-signed and
    /// registered by its thumbprint. On whenever `x509_ca` is set. Off by default because
    /// browsers' WebSockets fail when a server asks for a certificate.
    pub client_certificates: bool,
}

/// The condition of a throttled device's refused message (`com.microsoft:…`).
pub const DEVICE_THROTTLED: &str = "com.microsoft:device-container-throttled";

/// Faults the emulator injects into device telemetry and tokens, as IoT Hub can show
/// them, so that a client's retry logic can be tested (no other emulator offers this).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Faults {
    /// After this many telemetry messages from one device, the next ones are throttled
    /// for [`Faults::throttle_for`]: rejected with `com.microsoft:device-container-throttled`
    /// over AMQP, HTTP 429 over HTTPS; then counting starts again.
    pub throttle_after: Option<u64>,
    /// How long a device stays throttled.
    pub throttle_for: Duration,
    /// After this many telemetry messages on one link, the hub detaches the link with
    /// `amqp:link:detach-forced`.
    pub detach_after: Option<u64>,
    /// After this many telemetry messages on one connection, the hub closes the connection
    /// with `amqp:connection:forced`.
    pub close_after: Option<u64>,
    /// Tokens expire this long after they are put on `$cbs`, whatever their `se` says
    /// (links they opened are then detached with `amqp:unauthorized-access`).
    pub token_lifetime: Option<Duration>,
    /// After this many telemetry messages on one connection, every token the connection
    /// put on `$cbs` expires at once, as a token past its `se` does (its links are
    /// detached with `amqp:unauthorized-access`); counting starts again with the next
    /// message. The count-based twin of [`Faults::token_lifetime`], for tests that must
    /// not wait. 0 is taken as no fault.
    pub expire_after: Option<u64>,
    /// Each telemetry message (AMQP) is answered this much later.
    pub slow: Option<Duration>,
    /// After this many telemetry messages on one link, the hub detaches the link with
    /// `amqp:link:redirect`, naming [`Faults::redirect_to`] (as a gateway hands a device to
    /// another), so that a client's handling of redirects can be tested.
    pub redirect_after: Option<u64>,
    /// Where a redirect points: host and port (default: the hub's host name, port 5671).
    /// The address is the link's own.
    pub redirect_to: Option<(String, u16)>,
    /// A telemetry link is detached with `amqp:link:detach-forced` this long after it
    /// attached, whatever it sent.
    pub detach_at: Option<Duration>,
    /// A connection to the hub is closed with `amqp:connection:forced` this long after it
    /// opened.
    pub close_at: Option<Duration>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }
}

impl HubConfig {
    /// A hub named by `hostname` with IoT Hub's limits and no devices or policies.
    pub fn new(hostname: &str) -> Self {
        let name = hostname.split('.').next().unwrap_or(hostname).to_owned();
        Self {
            hostname: hostname.to_owned(),
            devices: Vec::new(),
            policies: Vec::new(),
            modules: Vec::new(),
            partitions: 4,
            retained_events: 100_000,
            event_hub_name: name,
            event_hub_endpoint: None,
            consumer_groups: vec![crate::azure::hub::DEFAULT_CONSUMER_GROUP.to_owned()],
            c2d_queue_limit: 50,
            c2d_max_size: 64 * 1024,
            d2c_max_size: 256 * 1024,
            max_delivery_count: 10,
            lock_timeout: Duration::from_secs(60),
            default_ttl: Duration::from_secs(3600),
            feedback_interval: Duration::from_millis(500),
            clock_skew: crate::azure::DEFAULT_CLOCK_SKEW,
            faults: Faults::default(),
            x509_ca: None,
            client_certificates: false,
        }
    }

    /// The hub's short name: the first label of the host name.
    pub fn hub_name(&self) -> &str {
        self.hostname.split('.').next().unwrap_or(&self.hostname)
    }
}

/// A claim a token established: what it covers, until when.
#[derive(Clone, Debug)]
pub(crate) struct Claim {
    token: SasToken,
    /// The identity (a device, or `DEVICE/MODULE`) whose own key or certificate it
    /// stands for; `None` for a policy's.
    identity: Option<String>,
    rights: Permissions,
    /// An expiry earlier than the token's own (fault injection).
    cut_short: Option<u64>,
    /// Seconds the claim outlives its token's expiry: the clock skew the token was
    /// checked with, so that a token accepted on `$cbs` opens links too.
    grace: u64,
    /// Put on `$cbs` (not brought by SASL PLAIN or a certificate).
    put_on_cbs: bool,
    /// Made by a TLS client certificate, not a token.
    certificate: bool,
}

impl Claim {
    /// The claim of a device that TLS authenticated with its certificate: its own paths,
    /// for as long as the connection lasts.
    pub(crate) fn x509(host: &str, id: &str) -> Option<Self> {
        // Never verified again: the audience is what a claim grants.
        let throwaway = SasKey::from_bytes(crate::runtime::random::bytes::<32>().to_vec());
        let audience = match id.split_once('/') {
            None => format!("{host}/devices/{id}"),
            Some((d, m)) => format!("{host}/devices/{d}/modules/{m}"),
        };
        let token = SasToken::new(&audience, &throwaway, None, u64::MAX / 2).ok()?;
        Some(Self {
            token,
            identity: Some(id.to_owned()),
            rights: Permissions::default(),
            cut_short: None,
            grace: 0,
            put_on_cbs: false,
            certificate: true,
        })
    }

    /// The device whose own key (or certificate) it stands for: the identity's device,
    /// for a module too; `None` for a policy's.
    fn device(&self) -> Option<&str> {
        self.identity.as_deref().map(|i| i.split_once('/').map_or(i, |(d, _)| d))
    }

    fn expiry(&self) -> u64 {
        let expiry = self.token.expiry().saturating_add(self.grace);
        self.cut_short.map_or(expiry, |c| c.min(expiry))
    }

    /// Why the claim does not open `resource` for `need`, when it says more than that the
    /// claim is for another place: it is another device's (its token or certificate), or
    /// a policy's without the right the node needs (ServiceConnect, DeviceConnect).
    fn refusal(&self, resource: &str, need: &Need) -> Option<String> {
        let holder = match (&self.identity, self.token.key_name()) {
            (Some(id), _) if self.certificate => format!("the certificate of {id:?}"),
            (Some(id), _) => format!("the token of {id:?}"),
            (None, Some(policy)) => format!("the token of policy {policy:?}"),
            (None, None) => "the token".to_owned(),
        };
        if let (Some(id), Need::Device(want)) = (self.device(), need) {
            if id != want {
                return Some(format!("{holder} acts for device {id:?}, not {want:?}"));
            }
        }
        if !self.token.authorizes_any_port(resource) {
            return None;
        }
        match need {
            Need::Service if !self.rights.service => {
                Some(format!("{holder} does not grant ServiceConnect, which {resource} needs"))
            }
            Need::Device(want) if self.identity.is_none() && !self.rights.device => Some(format!(
                "{holder} does not grant DeviceConnect, which acting for device {want:?} needs"
            )),
            _ => None,
        }
    }

    /// Whether the claim opens `resource` for `need` (expiry aside).
    fn grants(&self, resource: &str, need: &Need) -> bool {
        self.token.authorizes_any_port(resource)
            && match need {
                Need::Service => self.rights.service,
                Need::Device(id) => self.rights.device || self.device() == Some(id),
            }
    }
}

/// What a node asks of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    Service,
    Device(String),
}

/// The emulator. Cloning gives another handle to the same hub.
#[derive(Clone, Debug)]
pub struct IotHub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Shared, so the per-message paths read it without copying the registry.
    config: Mutex<Arc<HubConfig>>,
    queues: state::Queues,
    log: state::EventLog,
    twins: twin::Twins,
    methods: methods::Methods,
    registry: registry::Registry,
    /// Sees the plaintext bytes of every HTTPS connection (see [`IotHub::record_https`]).
    https_recorder: https::RecorderSlot,
    /// Per device: telemetry messages counted towards throttling, and until when it is
    /// throttled.
    throttles: Mutex<std::collections::HashMap<String, (u64, Option<std::time::Instant>)>>,
    /// Per identity (a device, or `DEVICE/MODULE`): the AMQP connections that hold a claim
    /// of its own, and when that last went from none to some or back.
    connected: Mutex<std::collections::HashMap<String, (usize, String)>>,
}

impl IotHub {
    /// A hub with this configuration.
    pub fn new(config: HubConfig) -> Self {
        let log = state::EventLog::new(config.partitions, config.retained_events);
        // The twins of the identities it starts with are made with them, now.
        let ids: Vec<String> = config
            .devices
            .iter()
            .map(|(d, _)| d.clone())
            .chain(config.modules.iter().map(|(d, m, _)| format!("{d}/{m}")))
            .collect();
        let hub = Self {
            inner: Arc::new(Inner {
                config: Mutex::new(Arc::new(config)),
                queues: Default::default(),
                log,
                twins: Default::default(),
                methods: Default::default(),
                registry: Default::default(),
                https_recorder: Default::default(),
                throttles: Default::default(),
                connected: Default::default(),
            }),
        };
        for id in &ids {
            hub.make_twin(id);
        }
        hub
    }

    /// One more (`true`) or one fewer connection holds a claim of identity `id`'s own.
    pub(crate) fn count_connection(&self, id: &str, more: bool) {
        let mut all = state::lock(&self.inner.connected);
        let entry = all.entry(id.to_owned()).or_insert((0, EPOCH.to_owned()));
        let was = entry.0;
        entry.0 = if more { was + 1 } else { was.saturating_sub(1) };
        if (was == 0) != (entry.0 == 0) {
            entry.1 = crate::codec::Timestamp(state::now_ms()).to_string();
        }
    }

    /// Identity `id`'s connection state as the registry and twin APIs show it:
    /// `Connected` while an AMQP connection holds a claim of its own (its token, or its
    /// certificate), and when that last changed.
    pub fn connection_state(&self, id: &str) -> (&'static str, String) {
        let all = state::lock(&self.inner.connected);
        match all.get(id) {
            Some((n, at)) => (if *n > 0 { "Connected" } else { "Disconnected" }, at.clone()),
            None => ("Disconnected", EPOCH.to_owned()),
        }
    }

    /// Whether a telemetry message from `device` is throttled now ([`Faults::throttle_after`]);
    /// a message that is not counts towards the next throttling.
    pub(crate) fn throttled(&self, device: &str) -> bool {
        let config = self.config();
        let Some(after) = config.faults.throttle_after else { return false };
        let now = std::time::Instant::now();
        let mut all = state::lock(&self.inner.throttles);
        let (count, until) = all.entry(device.to_owned()).or_default();
        if let Some(t) = *until {
            if now < t {
                return true;
            }
            *until = None;
            *count = 0;
        }
        if *count >= after {
            *until = Some(now + config.faults.throttle_for);
            return true;
        }
        *count += 1;
        false
    }

    /// Whether `id` names a registered identity: a device, or `DEVICE/MODULE` a module.
    pub(crate) fn knows(&self, id: &str) -> bool {
        let config = self.config();
        match id.split_once('/') {
            None => config.devices.iter().any(|(d, _)| d == id),
            Some((d, m)) => config.modules.iter().any(|(dd, mm, _)| dd == d && mm == m),
        }
    }

    /// The configuration.
    pub fn config(&self) -> Arc<HubConfig> {
        Arc::clone(&state::lock(&self.inner.config))
    }

    /// Changes the configuration of the running hub: faults to inject from now on, limits,
    /// the registry. Connections already open keep the claims they have.
    pub fn reconfigure(&self, change: impl FnOnce(&mut HubConfig)) {
        let mut config = state::lock(&self.inner.config);
        change(Arc::make_mut(&mut config));
    }

    /// Whether the hub's TLS listeners ask clients for a certificate
    /// ([`HubConfig::client_certificates`], or a CA for X.509 devices).
    pub fn asks_client_certificates(&self) -> bool {
        let config = self.config();
        config.client_certificates || config.x509_ca.is_some()
    }

    /// Tells the hub where its Event Hub-compatible endpoint listens, for the redirect.
    pub fn set_event_hub_endpoint(&self, host: &str, port: u16) {
        let mut config = state::lock(&self.inner.config);
        Arc::make_mut(&mut config).event_hub_endpoint = Some((host.to_owned(), port));
    }

    /// Listener options that make a listener look like IoT Hub: SASL optional (none,
    /// MSSBCBS, ANONYMOUS or PLAIN with a token as the password), and IoT Hub's open and
    /// begin: container-id `DeviceGateway_…`, max-frame-size 65536, channel-max 8191,
    /// idle-time-out 240 s, incoming-window 5000, handle-max 262143, every field of every
    /// performative written (some clients read fields by position).
    pub fn listen_options(
        &self,
        tls: Option<TlsServerConfig>,
        trace: Option<SharedTrace>,
    ) -> ListenOptions {
        let hub = self.clone();
        // X.509 devices: TLS clients are asked for a certificate (optional), and any is
        // taken; whom it identifies (by the hub's CA, or by a registered thumbprint) is
        // decided when the connection opens, so devices registered later get in too.
        let tls = match tls {
            Some(t) if self.asks_client_certificates() => {
                Some(match t.clone().with_any_client_certificate() {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!("TLS clients cannot be asked for certificates: {e}");
                        t
                    }
                })
            }
            t => t,
        };
        ListenOptions {
            tls,
            authenticator: Some(Arc::new(move || {
                Some(Box::new(HubAuth { hub: hub.clone(), awaiting_plain: false })
                    as Box<dyn Authenticator + Send>)
            })),
            require_sasl: false,
            container_id: format!(
                "DeviceGateway_{:016x}{:016x}",
                crate::runtime::random::random_u64(),
                crate::runtime::random::random_u64()
            ),
            idle_time_out: Some(Duration::from_secs(240)),
            trace,
            configure: Some(Arc::new(|c: &mut EngineConfig| {
                c.max_frame_size = 65_536;
                c.channel_max = 8191;
                c.session.incoming_window = 5000;
                c.session.outgoing_window = u32::MAX;
                c.session.handle_max = 262_143;
                c.layout = Layout::AllFields;
            })),
            ..ListenOptions::default()
        }
    }

    /// Serves IoT Hub's nodes on `listener` until the task is dropped.
    pub async fn serve(&self, listener: Listener) -> Result<(), Error> {
        self.accept_loop(listener, false).await
    }

    /// Serves the Event Hub-compatible endpoint (`$cbs`, `$management`, partition
    /// readers) on `listener` until the task is dropped.
    pub async fn serve_event_hub(&self, listener: Listener) -> Result<(), Error> {
        self.accept_loop(listener, true).await
    }

    async fn accept_loop(&self, listener: Listener, event_hub: bool) -> Result<(), Error> {
        loop {
            match listener.accept().await {
                Ok(incoming) => {
                    let hub = self.clone();
                    tokio::spawn(async move {
                        if let Ok(conn) = incoming.establish().await {
                            nodes::serve_connection(hub, conn, event_hub).await;
                        }
                    });
                }
                Err(Error::Transport(TransportError::Io(_))) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Answers the links of one connection set up elsewhere.
    pub async fn serve_connection(&self, conn: ServerConnection, event_hub: bool) {
        nodes::serve_connection(self.clone(), conn, event_hub).await;
    }

    /// The events kept in `partition`, oldest first (empty for no such partition).
    pub fn events(&self, partition: usize) -> Vec<Event> {
        let Some(p) = self.inner.log.partitions.get(partition) else { return Vec::new() };
        state::lock(p).events.iter().cloned().collect()
    }

    /// The partition a device's events go to.
    pub fn partition_of(&self, device: &str) -> usize {
        self.inner.log.partition_of(device)
    }

    /// Cloud-to-device messages waiting for `device` (not counting those a device holds).
    pub fn queued(&self, device: &str) -> usize {
        self.inner.queues.expire(state::now_ms());
        state::lock(&self.inner.queues.devices).get(device).map_or(0, |q| q.waiting.len())
    }

    /// Feedback records not yet delivered to a service.
    pub fn pending_feedback(&self) -> Vec<FeedbackRecord> {
        self.inner.queues.expire(state::now_ms());
        state::lock(&self.inner.queues.feedback).iter().cloned().collect()
    }

    /// Checks a token for `host` (the hub's, or with `event_hub` the Event Hub-compatible
    /// endpoint's): signature by a known device or policy key, expiry, host. The claim it
    /// makes.
    ///
    /// IoT Hub keys the HMAC with the base64-decoded key; Event Hubs (and Service Bus) key
    /// it with the key's text, its UTF-8 bytes as they stand in the connection string, and
    /// so do the Event Hubs SDKs (azure-eventhub's `generate_sas_token`: `key.encode()`).
    /// The Event Hub endpoint checks policy tokens that way, and says so when a token was
    /// keyed the IoT Hub way.
    pub(crate) fn validate(
        &self,
        token: &str,
        host: &str,
        event_hub: bool,
    ) -> Result<Claim, String> {
        let token: SasToken = token.trim().parse().map_err(|e| format!("bad token: {e}"))?;
        let config = self.config();
        let audience = strip_scheme(token.audience());
        let (aud_host, path) = audience.split_once('/').unwrap_or((audience, ""));
        let aud_host = aud_host.split(':').next().unwrap_or(aud_host);
        if !aud_host.eq_ignore_ascii_case(host) {
            return Err(format!("the token is for {aud_host:?}, not {host:?}"));
        }
        let (key, identity, rights) = match token.key_name() {
            Some(policy) => {
                let (_, key, rights) = config
                    .policies
                    .iter()
                    .find(|(n, _, _)| n == policy)
                    .ok_or_else(|| format!("no shared access policy named {policy:?}"))?;
                (key.clone(), None, *rights)
            }
            None => {
                let mut segs = path.split('/');
                let id = match (segs.next(), segs.next()) {
                    (Some(d), Some(id)) if d.eq_ignore_ascii_case("devices") && !id.is_empty() => id,
                    _ => {
                        return Err(format!(
                            "a token without skn must be for a device ({host}/devices/ID), not {audience:?}"
                        ))
                    }
                };
                // A module's token is for its own path and keyed with its own key: the
                // device's key does not sign for modules.
                let identity = match (segs.next(), segs.next()) {
                    (Some(m), Some(module)) if m.eq_ignore_ascii_case("modules") => {
                        format!("{id}/{module}")
                    }
                    _ => id.to_owned(),
                };
                let key = self
                    .primary_key(&identity)
                    .ok_or_else(|| registry::RestError::not_found(&identity).message)?;
                if self.disabled(&identity) {
                    return Err(format!("{identity:?} is disabled in the registry"));
                }
                if let Some(kind) = self.x509_kind(&identity) {
                    return Err(format!(
                        "{identity:?} authenticates with an X.509 certificate ({kind}), \
                         not with SAS tokens"
                    ));
                }
                // Either of the identity's two keys signs its tokens.
                let key = match self.secondary_key(&identity) {
                    Some(second)
                        if !token.signature_matches(&key) && token.signature_matches(&second) =>
                    {
                        second
                    }
                    _ => key,
                };
                (key, Some(identity), Permissions::default())
            }
        };
        // On the Event Hub endpoint a policy token is keyed with the key's text.
        let key = if event_hub && identity.is_none() {
            let text_key = key.event_hubs_key();
            if !token.signature_matches(&text_key) && token.signature_matches(&key) {
                return Err("signature does not match: it is keyed with the decoded key, \
                            as IoT Hub tokens are; Event Hubs tokens are keyed with the \
                            key's text (its UTF-8 bytes)"
                    .to_owned());
            }
            text_key
        } else {
            key
        };
        token.verify(&key, SystemTime::now(), config.clock_skew).map_err(|e| e.to_string())?;
        let cut_short =
            config.faults.token_lifetime.map(|l| unix_seconds().saturating_add(l.as_secs()));
        let grace = config.clock_skew.as_secs();
        Ok(Claim {
            token,
            identity,
            rights,
            cut_short,
            grace,
            put_on_cbs: false,
            certificate: false,
        })
    }
}

fn strip_scheme(s: &str) -> &str {
    s.split_once("://").map_or(s, |(_, rest)| rest)
}

/// Seconds since the epoch now.
fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// SASL for the hub: MSSBCBS and ANONYMOUS (CBS follows), PLAIN with a SAS token as the
/// password and `{policy}@sas.root.{hub}` or `{device}@sas.{hub}` as the user.
#[derive(Debug)]
struct HubAuth {
    hub: IotHub,
    /// PLAIN began without an initial response: the next response carries it.
    awaiting_plain: bool,
}

/// The identity a PLAIN connection gets: this prefix and the token, which the connection
/// handler checks again for its claim (and its expiry).
pub(crate) const PLAIN_IDENTITY_PREFIX: &str = "sas-token:";

impl Authenticator for HubAuth {
    fn mechanisms(&self) -> Vec<Symbol> {
        ["MSSBCBS", "ANONYMOUS", "PLAIN"].into_iter().map(Symbol::from).collect()
    }

    fn start(
        &mut self,
        mechanism: &str,
        initial_response: Option<&[u8]>,
        _hostname: Option<&str>,
        _external_identity: Option<&str>,
    ) -> AuthStep {
        let done = |code, identity: Option<String>, reason: Option<String>| {
            AuthStep::Done(AuthOutcome { code, identity, additional_data: None, reason })
        };
        match mechanism {
            "MSSBCBS" => done(SaslCode::OK, Some("$cbs".into()), None),
            "ANONYMOUS" => done(SaslCode::OK, Some("anonymous".into()), None),
            "PLAIN" => {
                let Some(r) = initial_response else {
                    self.awaiting_plain = true;
                    return AuthStep::Challenge(Bytes::new());
                };
                self.plain(r)
            }
            other => {
                done(SaslCode::AUTH, None, Some(format!("mechanism {other:?} was not offered")))
            }
        }
    }

    fn step(&mut self, response: &[u8]) -> AuthStep {
        if std::mem::take(&mut self.awaiting_plain) {
            return self.plain(response);
        }
        AuthStep::Done(AuthOutcome {
            code: SaslCode::AUTH,
            identity: None,
            additional_data: None,
            reason: Some("no exchange in progress".into()),
        })
    }
}

impl HubAuth {
    fn plain(&self, response: &[u8]) -> AuthStep {
        let fail = |why: String| {
            AuthStep::Done(AuthOutcome {
                code: SaslCode::AUTH,
                identity: None,
                additional_data: None,
                reason: Some(why),
            })
        };
        let mut parts = response.split(|b| *b == 0);
        let (Some(_authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return fail("PLAIN: not authzid NUL user NUL password".into());
        };
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return fail("PLAIN: not UTF-8".into());
        };
        let host = self.hub.config().hostname.clone();
        let claim = match self.hub.validate(password, &host, false) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        // The user names who the token is for: {policy}@sas.root.{hub} or {device}@sas.{hub}.
        let who = user.split('@').next().unwrap_or("");
        let matches = match (claim.device(), claim.token.key_name()) {
            (Some(d), _) => user.contains("@sas.") && !user.contains("@sas.root.") && who == d,
            (None, Some(policy)) => user.contains("@sas.root.") && who == policy,
            (None, None) => false,
        };
        if !matches {
            return fail(format!("user {user:?} does not match the token"));
        }
        AuthStep::Done(AuthOutcome {
            code: SaslCode::OK,
            identity: Some(format!("{PLAIN_IDENTITY_PREFIX}{password}")),
            additional_data: None,
            reason: None,
        })
    }
}

/// Decodes a device id from a path segment (clients URL-encode it).
fn device_segment(s: &str) -> String {
    percent_decode(s).unwrap_or_else(|_| s.to_owned())
}
