//! Clients of Azure IoT Hub over AMQP: the service (cloud-to-device messages and their
//! feedback), the device (telemetry; cloud-to-device messages, completed, abandoned or
//! rejected) and the reader of device-to-cloud events (the redirect to the Event
//! Hub-compatible endpoint, then partition readers with a start position).
//!
//! ```text
//!  HubOptions: transport, security, port, CA, token lifetime, renewal share, trace
//!     │
//!  HubConnection::connect ─► TLS :5671  or  WebSocket over TLS :443 /$iothub/websocket
//!     │   SASL: none │ ANONYMOUS │ MSSBCBS ─► CBS put-token ─► renewal task (80 % of life)
//!     │         PLAIN (user {device}@sas.{hub} or {policy}@sas.root.{hub}, token as password)
//!     ├─ ServiceClient ─► /messages/devicebound (send, iothub-ack)
//!     │                  /messages/serviceBound/feedback (JSON records)
//!     ├─ DeviceClient ──► /devices/{id}/messages/events (send)
//!     │                  /devices/{id}/messages/devicebound (receive; complete/abandon/reject)
//!     └─ EventHubTarget::discover ─► receiver on messages/events ─► detach amqp:link:redirect
//!          └─ EventReader::connect ─► Event Hub endpoint: CBS sb://{host}/{eh},
//!               $management READ (partition ids), {eh}/ConsumerGroups/{cg}/Partitions/{p}
//! ```
//!
//! The same code talks to a real hub (`{hub}.azure-devices.net`, the system's roots) and to
//! the emulator of [`super::emulator`] (its CA added to [`HubOptions::tls`]).
//!
//! # Example
//!
//! A device sends telemetry to the emulator over WebSocket, with CBS after no SASL layer:
//!
//! ```no_run
//! use amqpwire::azure::client::{DeviceClient, HubOptions, HubTransport, Security};
//! use amqpwire::message::Message;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cs = "HostName=localhost;DeviceId=dev1;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
//!     .parse()?;
//! let mut options = HubOptions::new(HubTransport::WebSocket, Security::None);
//! options.port = Some(8443);
//! options.tls = options.tls.with_ca_file("ca.pem")?;
//! let device = DeviceClient::connect(&cs, options).await?;
//! device.send_event(Message::with_data(&b"{\"temp\":21.5}"[..])).await?;
//! device.close().await?;
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use super::cbs::{renewal_delay, CbsClient, CbsError, CbsStatus, RENEW_AT, SAS_TOKEN_TYPE};
use super::hub::{
    c2d_address, prepare_c2d, sasl_plain_user, telemetry_address, Ack, FeedbackRecord,
    StartPosition, C2D_SEND_ADDRESS, DEFAULT_CONSUMER_GROUP, FEEDBACK_ADDRESS,
};
use super::{percent_encode, Credential, IotHubConnectionString};
use crate::codec::{Timestamp, Uuid, Value};
use crate::connection::LinkOptions;
use crate::message::{AnnotationMap, Body, Message};
use crate::runtime::transport::{ClientTlsConfig, Endpoint, SaslMechanism, Scheme};
use crate::runtime::SharedTrace;
use crate::runtime::{ConnectOptions, Connection, Delivery, Error, Receiver, Sender, Session};
use crate::types::{
    AttachSource, AttachTarget, DeliveryState, Error as AmqpError, Fields, MessageId, Properties,
    Source, Target,
};

/// IoT Hub's WebSocket path.
pub const IOTHUB_WS_PATH: &str = "/$iothub/websocket";
/// Event Hubs' WebSocket path.
pub const EVENTHUB_WS_PATH: &str = "/$servicebus/websocket";

/// How the bytes travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubTransport {
    /// AMQP over TLS, port 5671.
    Amqps,
    /// AMQP over WebSocket over TLS (`AMQPWSB10`), port 443, path
    /// [`IOTHUB_WS_PATH`] (or [`EVENTHUB_WS_PATH`] on the Event Hub endpoint).
    WebSocket,
}

impl HubTransport {
    fn endpoint(self, host: &str, port: Option<u16>, ws_path: &str) -> Endpoint {
        match self {
            Self::Amqps => Endpoint::new(Scheme::Amqps, host, port.unwrap_or(5671)),
            Self::WebSocket => {
                let mut e = Endpoint::new(Scheme::Wss, host, port.unwrap_or(443));
                e.path = ws_path.into();
                e
            }
        }
    }
}

/// How the client proves who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// No SASL layer, then CBS put-token (what the Azure Node SDKs do).
    None,
    /// SASL ANONYMOUS, then CBS put-token.
    Anonymous,
    /// SASL MSSBCBS ("authentication follows over CBS"), then CBS put-token (what the
    /// Azure C SDK does).
    Mssbcbs,
    /// SASL PLAIN with the token as password: no CBS and no renewal; the hub closes the
    /// connection when the token expires.
    Plain,
}

impl Security {
    /// The name used on the command line: `none`, `anonymous`, `mssbcbs`, `plain`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Anonymous => "anonymous",
            Self::Mssbcbs => "mssbcbs",
            Self::Plain => "plain",
        }
    }

    /// Reads [`name`](Self::name) (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::None, Self::Anonymous, Self::Mssbcbs, Self::Plain]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// How a client connects and keeps its tokens fresh.
#[derive(Clone)]
pub struct HubOptions {
    /// TLS or WebSocket.
    pub transport: HubTransport,
    /// The SASL layer and CBS.
    pub security: Security,
    /// The hub's port, when not the transport's default (5671 or 443).
    pub port: Option<u16>,
    /// The Event Hub endpoint's WebSocket port (443 unless given); over TLS the port the
    /// redirect names is used.
    pub event_hub_ws_port: Option<u16>,
    /// Roots and extra CA certificates.
    pub tls: ClientTlsConfig,
    /// How long each token is valid for.
    pub token_lifetime: Duration,
    /// When to put a fresh token, as a share of the token's lifetime ([`RENEW_AT`]);
    /// `None` never renews.
    pub renew_at: Option<f64>,
    /// How long connecting (transport, SASL, open) and each CBS answer may take.
    pub timeout: Duration,
    /// Sees every frame in and out, with a connection number per connection.
    pub trace: Option<SharedTrace>,
    /// The container-id (a unique one when `None`).
    pub container_id: Option<String>,
}

impl std::fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOptions")
            .field("transport", &self.transport)
            .field("security", &self.security)
            .field("port", &self.port)
            .field("token_lifetime", &self.token_lifetime)
            .field("renew_at", &self.renew_at)
            .finish_non_exhaustive()
    }
}

impl HubOptions {
    /// `transport` and `security`, the default port, the system's roots, one-hour tokens
    /// renewed at 80 % of their lifetime, a 30-second time-out.
    pub fn new(transport: HubTransport, security: Security) -> Self {
        Self {
            transport,
            security,
            port: None,
            event_hub_ws_port: None,
            tls: ClientTlsConfig::new(),
            token_lifetime: Duration::from_secs(3600),
            renew_at: Some(RENEW_AT),
            timeout: Duration::from_secs(30),
            trace: None,
            container_id: None,
        }
    }
}

/// What went wrong.
#[derive(Debug)]
pub enum HubError {
    /// The connection string cannot be used for this client (it says why).
    Credential(String),
    /// The connection, the session or a link failed (the peer's condition, if any).
    Amqp(Error),
    /// A put-token was refused, or its answer could not be read.
    Cbs(CbsError),
    /// The hub did not accept a message: its outcome.
    Refused(DeliveryState),
    /// The redirect to the Event Hub-compatible endpoint did not come, or cannot be used.
    Redirect(String),
    /// A message from the hub that cannot be read.
    BadMessage(String),
    /// Nothing within the time-out.
    Timeout(&'static str),
    /// A call that does not fit the client's state (it says why).
    Usage(String),
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Credential(why) => write!(f, "{why}"),
            Self::Amqp(e) => write!(f, "{e}"),
            Self::Cbs(e) => write!(f, "{e}"),
            Self::Refused(DeliveryState::Rejected(r)) => match &r.error {
                Some(e) => write!(
                    f,
                    "the hub rejected the message: {} ({})",
                    e.condition,
                    e.description.as_deref().unwrap_or("no description")
                ),
                None => write!(f, "the hub rejected the message"),
            },
            Self::Refused(state) => write!(f, "the hub did not accept the message: {state:?}"),
            Self::Redirect(why) => write!(f, "the redirect to the Event Hub endpoint: {why}"),
            Self::BadMessage(why) => write!(f, "{why}"),
            Self::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Self::Usage(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for HubError {}

impl From<Error> for HubError {
    fn from(e: Error) -> Self {
        Self::Amqp(e)
    }
}

impl From<CbsError> for HubError {
    fn from(e: CbsError) -> Self {
        Self::Cbs(e)
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A version 4 (random) uuid, for message-ids.
pub fn random_uuid() -> Uuid {
    let mut b: [u8; 16] = crate::runtime::random::bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid(b)
}

/// Who signs the tokens, and for what.
#[derive(Clone, Debug)]
struct Signer {
    credential: Credential,
    key_name: Option<String>,
}

impl Signer {
    /// A token for `resource` (not encoded) valid for `lifetime`, and its expiry.
    fn token(&self, resource: &str, lifetime: Duration) -> Result<(String, u64), HubError> {
        let expiry = unix_now() as u64 + lifetime.as_secs().max(1);
        let t = self
            .credential
            .token(resource, self.key_name.as_deref(), expiry)
            .map_err(|e| HubError::Credential(format!("cannot sign a token: {e}")))?;
        Ok((t.to_string(), t.expiry()))
    }
}

/// One audience the connection holds a token for.
struct Claim {
    /// The put-token `name`.
    audience: String,
    /// The resource URI to sign (the audience decoded).
    resource: String,
    /// When to put it again (`None`: never; a token from the connection string).
    due: Option<Instant>,
}

/// The CBS state of a connection: the links, the claims, and what renewal has done.
struct Claims {
    cbs: CbsClient,
    signer: Signer,
    lifetime: Duration,
    renew_at: Option<f64>,
    timeout: Duration,
    list: Mutex<Vec<Claim>>,
    changed: Notify,
    renewals: AtomicU64,
    last_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Claims {
    /// Signs and puts a token for `resource`; returns the status and when to renew.
    async fn put(
        &self,
        audience: &str,
        resource: &str,
    ) -> Result<(CbsStatus, Option<Instant>), HubError> {
        let (token, expiry) = self.signer.token(resource, self.lifetime)?;
        let status = tokio::time::timeout(
            self.timeout,
            self.cbs.put_token(audience, &token, SAS_TOKEN_TYPE),
        )
        .await
        .map_err(|_| HubError::Timeout("the answer to put-token"))??;
        let renewable = matches!(self.signer.credential, Credential::SharedAccessKey(_));
        let due = match (renewable, self.renew_at) {
            (true, Some(share)) => {
                let left = Duration::from_secs_f64((expiry as f64 - unix_now()).max(0.0));
                Some(Instant::now() + renewal_delay(left, share))
            }
            _ => None,
        };
        Ok((status, due))
    }

    /// Puts the token of every claim that is due, and schedules the next.
    async fn renew_due(&self) {
        let now = Instant::now();
        let due: Vec<(String, String)> = lock(&self.list)
            .iter()
            .filter(|c| c.due.is_some_and(|d| d <= now))
            .map(|c| (c.audience.clone(), c.resource.clone()))
            .collect();
        for (audience, resource) in due {
            let next = match self.put(&audience, &resource).await {
                Ok((_, next)) => {
                    self.renewals.fetch_add(1, Ordering::Relaxed);
                    next
                }
                Err(e) => {
                    *lock(&self.last_error) =
                        Some(format!("renewing the token for {audience}: {e}"));
                    // Try again soon; the hub detaches the links when the old one expires.
                    Some(Instant::now() + Duration::from_secs(5))
                }
            };
            if let Some(c) = lock(&self.list).iter_mut().find(|c| c.audience == audience) {
                c.due = next;
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        lock(&self.list).iter().filter_map(|c| c.due).min()
    }
}

/// Renews tokens when they are due, until the connection ends.
async fn renewal(claims: Arc<Claims>, connection: Connection) {
    let work = async {
        loop {
            let changed = claims.changed.notified();
            match claims.next_due() {
                None => changed.await,
                Some(due) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(due.into()) => claims.renew_due().await,
                        () = changed => {}
                    }
                }
            }
        }
    };
    tokio::select! {
        () = work => {}
        _ = connection.closed() => {}
    }
}

/// Stops the renewal task when the connection handle goes.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Numbers the connections a trace sees.
static NEXT_TRACE_ID: AtomicU64 = AtomicU64::new(1);

/// One authenticated AMQP connection to a hub (or to its Event Hub endpoint), with one
/// session, and the CBS links and renewal task when the security mode uses CBS.
pub struct HubConnection {
    connection: Connection,
    session: Session,
    claims: Option<Arc<Claims>>,
    _renewal: Option<AbortOnDrop>,
    /// How long an attach or an outcome may take.
    timeout: Duration,
}

impl std::fmt::Debug for HubConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConnection")
            .field("connection", &self.connection)
            .field("cbs", &self.claims.is_some())
            .finish_non_exhaustive()
    }
}

impl HubConnection {
    /// Connects to `endpoint` as `security` says, begins a session, and (CBS modes)
    /// attaches the CBS links. With PLAIN, `plain` is the user and the token resource.
    async fn open(
        mut endpoint: Endpoint,
        amqp_hostname: &str,
        security: Security,
        signer: Signer,
        plain: Option<(&str, &str)>,
        options: &HubOptions,
    ) -> Result<Self, HubError> {
        // An X.509 device: TLS with its certificate is all; no SASL, no CBS.
        let x509 = matches!(signer.credential, Credential::X509);
        if x509 && !options.tls.has_client_certificate() {
            return Err(HubError::Credential(
                "an X.509 device (x509=true) connects with its certificate and key: give them \
                 (--cert and --key; ClientTlsConfig::with_client_cert_files)"
                    .into(),
            ));
        }
        let security = if x509 { Security::None } else { security };
        if amqp_hostname != endpoint.host {
            endpoint.hostname = Some(amqp_hostname.to_owned());
        }
        let mut configure: Option<crate::runtime::Configure> = None;
        match security {
            Security::None => {
                configure = Some(Box::new(|c: &mut crate::connection::Config| {
                    c.sasl_client = None;
                }));
            }
            Security::Anonymous => endpoint.sasl_mechanism = Some(SaslMechanism::Anonymous),
            Security::Mssbcbs => endpoint.sasl_mechanism = Some(SaslMechanism::Mssbcbs),
            Security::Plain => {
                let (user, resource) = plain.ok_or_else(|| {
                    HubError::Credential("SASL PLAIN needs a user and a resource".into())
                })?;
                let (token, _) = signer.token(resource, options.token_lifetime)?;
                endpoint.sasl_mechanism = Some(SaslMechanism::Plain);
                endpoint.user = Some(user.to_owned());
                endpoint.password = Some(token);
            }
        }
        let trace = options.trace.clone().map(|shared| {
            let id = NEXT_TRACE_ID.fetch_add(1, Ordering::Relaxed);
            Box::new(move |r: &crate::connection::TraceRecord<'_>| shared(id, r))
                as crate::connection::TraceFn
        });
        let connect = ConnectOptions {
            tls: options.tls.clone(),
            container_id: options.container_id.clone(),
            timeout: options.timeout,
            trace,
            configure,
        };
        let connection = Connection::connect_with(&endpoint, connect).await?;
        let session = match tokio::time::timeout(options.timeout, connection.begin_session()).await
        {
            Ok(s) => s?,
            Err(_) => return Err(HubError::Timeout("the hub's begin")),
        };
        let (claims, renewal) = if security == Security::Plain || x509 {
            (None, None)
        } else {
            let cbs = tokio::time::timeout(options.timeout, CbsClient::attach(&session))
                .await
                .map_err(|_| HubError::Timeout("the CBS links to attach"))??;
            let claims = Arc::new(Claims {
                cbs,
                signer,
                lifetime: options.token_lifetime,
                renew_at: options.renew_at,
                timeout: options.timeout,
                list: Mutex::new(Vec::new()),
                changed: Notify::new(),
                renewals: AtomicU64::new(0),
                last_error: Mutex::new(None),
            });
            let task = tokio::spawn(renewal(Arc::clone(&claims), connection.clone()));
            (Some(claims), Some(AbortOnDrop(task)))
        };
        Ok(Self { connection, session, claims, _renewal: renewal, timeout: options.timeout })
    }

    /// Puts a token for `resource` (not encoded; the put-token `name` is it
    /// percent-encoded, as the Node SDK sends it) and keeps it renewed. Nothing to do
    /// with PLAIN, whose token came with the connection.
    pub async fn authorize(&self, resource: &str) -> Result<Option<CbsStatus>, HubError> {
        let Some(claims) = &self.claims else { return Ok(None) };
        let audience = percent_encode(resource);
        let (status, due) = claims.put(&audience, resource).await?;
        {
            let mut list = lock(&claims.list);
            match list.iter_mut().find(|c| c.audience == audience) {
                Some(c) => c.due = due,
                None => list.push(Claim { audience, resource: resource.to_owned(), due }),
            }
        }
        claims.changed.notify_one();
        Ok(Some(status))
    }

    /// Runs `f` (an attach, a send) for at most the time-out of the options.
    async fn within<T>(
        &self,
        what: &'static str,
        f: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, HubError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(HubError::Timeout(what)),
        }
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The session links are attached on.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// How many tokens the renewal task has put so far.
    pub fn renewals(&self) -> u64 {
        self.claims.as_ref().map_or(0, |c| c.renewals.load(Ordering::Relaxed))
    }

    /// The last renewal failure, if any.
    pub fn renewal_error(&self) -> Option<String> {
        self.claims.as_ref().and_then(|c| lock(&c.last_error).clone())
    }

    /// Closes the connection and waits for the hub's close.
    pub async fn close(self) -> Result<(), HubError> {
        Ok(self.connection.close(None).await?)
    }
}

/// Where a client of `cs` connects with `options`: the hub's host (or a device's IoT
/// Edge gateway) at 5671 over TLS, or at 443 over WebSocket at [`IOTHUB_WS_PATH`], unless
/// `options.port` says otherwise.
pub fn hub_endpoint(cs: &IotHubConnectionString, options: &HubOptions) -> Endpoint {
    // A device behind an IoT Edge gateway connects to the gateway.
    let connect_to = cs.gateway_host_name().unwrap_or(cs.host_name());
    options.transport.endpoint(connect_to, options.port, IOTHUB_WS_PATH)
}

/// Connects with the credential of an IoT Hub connection string.
async fn connect_hub(
    cs: &IotHubConnectionString,
    options: &HubOptions,
) -> Result<HubConnection, HubError> {
    let host = cs.host_name();
    let signer = Signer {
        credential: cs.credential().clone(),
        key_name: cs.shared_access_key_name().map(str::to_owned),
    };
    let user =
        sasl_plain_user(host, cs.device_id(), cs.shared_access_key_name()).ok_or_else(|| {
            HubError::Credential("the connection string names neither a device nor a policy".into())
        })?;
    let resource = cs.resource_uri();
    let endpoint = hub_endpoint(cs, options);
    let hub = HubConnection::open(
        endpoint,
        host,
        options.security,
        signer,
        Some((&user, &resource)),
        options,
    )
    .await?;
    hub.authorize(&resource).await?;
    Ok(hub)
}

/// A link attached on first use, and again after it failed (the hub may detach a link,
/// for one when a token ran out).
#[derive(Debug)]
struct Slot<L>(tokio::sync::Mutex<Option<Arc<L>>>);

impl<L> Slot<L> {
    fn new() -> Self {
        Self(tokio::sync::Mutex::new(None))
    }

    /// The link, attached by `attach` if there is none.
    async fn get<F, Fut>(&self, attach: F) -> Result<Arc<L>, HubError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<L, HubError>>,
    {
        let mut slot = self.0.lock().await;
        if let Some(link) = &*slot {
            return Ok(Arc::clone(link));
        }
        let link = Arc::new(attach().await?);
        *slot = Some(Arc::clone(&link));
        Ok(link)
    }

    /// Forgets `link` after it failed, so that the next use attaches a new one.
    async fn forget(&self, link: &Arc<L>) {
        let mut slot = self.0.lock().await;
        if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            *slot = None;
        }
    }
}

/// Sends `message` on the link in `slot` (attached with `attach` when needed) and waits
/// for the outcome; a link that failed is forgotten.
async fn send_on<F, Fut>(
    hub: &HubConnection,
    slot: &Slot<Sender>,
    attach: F,
    message: &Message,
) -> Result<(), HubError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Sender, Error>>,
{
    let sender = slot.get(|| hub.within("the hub to answer the attach", attach())).await?;
    match hub.within("the hub's outcome", sender.send(message)).await {
        Ok(state) => outcome(state),
        Err(e) => {
            slot.forget(&sender).await;
            Err(e)
        }
    }
}

fn outcome(state: DeliveryState) -> Result<(), HubError> {
    match state {
        DeliveryState::Accepted(_) => Ok(()),
        other => Err(HubError::Refused(other)),
    }
}

/// The service side: sends cloud-to-device messages and reads their feedback.
///
/// Connect with a policy that has the *service connect* permission (`service`,
/// `iothubowner`): `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
#[derive(Debug)]
pub struct ServiceClient {
    hub: HubConnection,
    sender: Slot<Sender>,
}

impl ServiceClient {
    /// Connects and authorizes for the whole hub.
    pub async fn connect(
        cs: &IotHubConnectionString,
        options: HubOptions,
    ) -> Result<Self, HubError> {
        if cs.is_device() {
            return Err(HubError::Credential(
                "this is a device connection string; the service needs a policy's \
                 (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…)"
                    .into(),
            ));
        }
        let hub = connect_hub(cs, &options).await?;
        Ok(Self { hub, sender: Slot::new() })
    }

    /// The connection, for its session and renewal state.
    pub fn hub(&self) -> &HubConnection {
        &self.hub
    }

    /// Sends `message` to `device_id`, asking for `ack` feedback: sets `to`, a random uuid
    /// message-id when it has none (feedback records name it), and `iothub-ack` (unless
    /// [`Ack::None`]). Returns the message-id once the hub accepted the message.
    pub async fn send_c2d(
        &self,
        device_id: &str,
        mut message: Message,
        ack: Ack,
    ) -> Result<MessageId, HubError> {
        let id = prepare_c2d(&mut message, device_id, ack, || MessageId::Uuid(random_uuid()));
        let attach = || self.hub.session.sender("c2d-sender", C2D_SEND_ADDRESS);
        send_on(&self.hub, &self.sender, attach, &message).await?;
        Ok(id)
    }

    /// Attaches a receiver of feedback messages.
    pub async fn feedback(&self) -> Result<FeedbackReceiver, HubError> {
        let attach = self.hub.session.receiver("feedback-receiver", FEEDBACK_ADDRESS, 10);
        let rx = self.hub.within("the hub to answer the attach", attach).await?;
        Ok(FeedbackReceiver { rx })
    }

    /// Closes the connection.
    pub async fn close(self) -> Result<(), HubError> {
        self.hub.close().await
    }
}

/// Feedback messages, each a batch of records.
#[derive(Debug)]
pub struct FeedbackReceiver {
    rx: Receiver,
}

impl FeedbackReceiver {
    /// The next batch of records; the message is completed (accepted) once read, or
    /// rejected when it cannot be read (and the error returned).
    pub async fn next(&self) -> Result<Vec<FeedbackRecord>, HubError> {
        let d = self.rx.recv().await?;
        let parsed = d.message().map_err(|e| e.to_string()).and_then(|m| match m.body.bytes() {
            Some(body) => FeedbackRecord::parse_batch(&body),
            None => Err(format!("feedback message: a body of {:?}", m.body)),
        });
        match parsed {
            Ok(records) => {
                self.rx.accept(&d)?;
                Ok(records)
            }
            Err(why) => {
                let e = AmqpError::new(crate::types::condition::DECODE_ERROR, why.clone());
                self.rx.reject(&d, Some(e))?;
                Err(HubError::BadMessage(why))
            }
        }
    }
}

/// A device (or a module of one): sends telemetry and receives cloud-to-device messages.
///
/// Connect with `HostName=…;DeviceId=…;SharedAccessKey=…` (or a `SharedAccessSignature`).
#[derive(Debug)]
pub struct DeviceClient {
    hub: HubConnection,
    device_id: String,
    module_id: Option<String>,
    telemetry: Slot<Sender>,
    c2d: Slot<Receiver>,
}

/// A cloud-to-device message as the device receives it, to complete, abandon or reject.
#[derive(Debug)]
pub struct C2dMessage {
    /// The delivery: its tag is the lock token.
    pub delivery: Delivery,
    /// The message.
    pub message: Message,
    /// The link it came on, which settles it.
    receiver: Arc<Receiver>,
}

impl C2dMessage {
    /// The lock token: the delivery-tag, shown as a GUID when it is 16 bytes long. IoT Hub
    /// writes the GUID's bytes as .NET does, the first three groups little-endian, so they
    /// are read back that way.
    pub fn lock_token(&self) -> String {
        match <[u8; 16]>::try_from(&self.delivery.tag[..]) {
            Ok(mut b) => {
                b[..4].reverse();
                b[4..6].reverse();
                b[6..8].reverse();
                Uuid(b).to_string()
            }
            Err(_) => self.delivery.tag.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

impl DeviceClient {
    /// Connects and authorizes for the device.
    pub async fn connect(
        cs: &IotHubConnectionString,
        options: HubOptions,
    ) -> Result<Self, HubError> {
        let Some(device_id) = cs.device_id() else {
            return Err(HubError::Credential(
                "this is a service connection string; a device needs its own \
                 (HostName=…;DeviceId=…;SharedAccessKey=…)"
                    .into(),
            ));
        };
        let hub = connect_hub(cs, &options).await?;
        Ok(Self {
            hub,
            device_id: device_id.to_owned(),
            module_id: cs.module_id().map(str::to_owned),
            telemetry: Slot::new(),
            c2d: Slot::new(),
        })
    }

    /// The connection, for its session and renewal state.
    pub fn hub(&self) -> &HubConnection {
        &self.hub
    }

    /// Sends one telemetry message and waits for the hub to accept it.
    pub async fn send_event(&self, message: Message) -> Result<(), HubError> {
        let address = telemetry_address(&self.device_id, self.module_id.as_deref());
        let attach = || self.hub.session.sender("telemetry-sender", &address);
        send_on(&self.hub, &self.telemetry, attach, &message).await
    }

    /// The next cloud-to-device message (attaching the receiver on first use, with a credit
    /// of one: the hub locks no message the device has not asked for). A message that
    /// cannot be decoded is rejected, and the error says why.
    pub async fn receive(&self) -> Result<C2dMessage, HubError> {
        if self.module_id.is_some() {
            return Err(HubError::Usage(
                "modules do not receive cloud-to-device messages; use the device's connection string"
                    .into(),
            ));
        }
        let address = c2d_address(&self.device_id);
        let attach = || {
            let attach = self.hub.session.receiver("c2d-receiver", &address, 1);
            self.hub.within("the hub to answer the attach", attach)
        };
        let rx = self.c2d.get(attach).await?;
        let delivery = match rx.recv().await {
            Ok(d) => d,
            Err(e) => {
                self.c2d.forget(&rx).await;
                return Err(e.into());
            }
        };
        match delivery.message() {
            Ok(message) => Ok(C2dMessage { delivery, message, receiver: rx }),
            Err(e) => {
                let why = format!("a cloud-to-device message that cannot be decoded: {e}");
                let error = AmqpError::new(crate::types::condition::DECODE_ERROR, why.clone());
                let _ = rx.reject(&delivery, Some(error));
                Err(HubError::BadMessage(why))
            }
        }
    }

    fn settle(&self, m: &C2dMessage, state: DeliveryState) -> Result<(), HubError> {
        Ok(m.receiver.settle(&m.delivery, state)?)
    }

    /// Completes the message (accepted): the hub deletes it and sends positive feedback.
    pub fn complete(&self, m: &C2dMessage) -> Result<(), HubError> {
        self.settle(m, DeliveryState::Accepted(Default::default()))
    }

    /// Abandons the message (released): the hub delivers it again.
    pub fn abandon(&self, m: &C2dMessage) -> Result<(), HubError> {
        self.settle(m, DeliveryState::Released(Default::default()))
    }

    /// Rejects the message: the hub dead-letters it and sends negative feedback.
    pub fn reject(&self, m: &C2dMessage) -> Result<(), HubError> {
        self.settle(m, DeliveryState::Rejected(Default::default()))
    }

    /// Closes the connection.
    pub async fn close(self) -> Result<(), HubError> {
        self.hub.close().await
    }
}

/// The Event Hub-compatible endpoint a hub redirects event readers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventHubTarget {
    /// The Event Hubs namespace host (`hostname` of the redirect).
    pub hostname: String,
    /// Its AMQP port (`port`; else the address's port; else 5671).
    pub port: u16,
    /// The Event Hub's name (from `address`).
    pub event_hub: String,
    /// The redirect's `address`, as it came.
    pub address: String,
}

impl EventHubTarget {
    /// Reads the info of an `amqp:link:redirect` error: `hostname`, `port`, and the Event
    /// Hub name from `address` (`amqps://{host}:{port}/{eh}/$management` or a
    /// `…/{eh}/ConsumerGroups/…` path).
    pub fn from_redirect(error: &AmqpError) -> Result<Self, String> {
        if error.condition.as_str() != crate::types::condition::LINK_REDIRECT {
            return Err(format!(
                "the link ended with {} ({}), not amqp:link:redirect",
                error.condition,
                error.description.as_deref().unwrap_or("no description")
            ));
        }
        let info = error.info.as_ref().ok_or("the redirect carries no info")?;
        let get = |k: &str| info.0.iter().find(|(key, _)| key.as_str() == k).map(|(_, v)| v);
        let address =
            get("address").and_then(Value::as_str).ok_or("the redirect has no address")?.to_owned();
        let after_scheme = address.split_once("://").map_or(address.as_str(), |(_, r)| r);
        let (authority, path) = after_scheme.split_once('/').unwrap_or((after_scheme, ""));
        let (address_host, address_port) = split_authority(authority);
        let hostname = match get("hostname").and_then(Value::as_str) {
            Some(h) => h.to_owned(),
            None => address_host.to_owned(),
        };
        let port = match get("port") {
            Some(v) => {
                port_of(v).ok_or_else(|| format!("the redirect's port {v:?} is not a port"))?
            }
            None => address_port.unwrap_or(5671),
        };
        let event_hub = path
            .split('/')
            .next()
            .filter(|s| !s.is_empty() && !s.starts_with('$'))
            .ok_or_else(|| format!("no Event Hub name in the redirect's address {address:?}"))?
            .to_owned();
        Ok(Self { hostname, port, event_hub, address })
    }

    /// Asks the hub where its events are: attaches a receiver to
    /// `amqps://{host}/messages/events/$management` with the service credential (as `az
    /// iot hub monitor-events` does) and reads the redirect it is detached with.
    pub async fn discover(
        cs: &IotHubConnectionString,
        options: &HubOptions,
    ) -> Result<Self, HubError> {
        if cs.is_device() {
            return Err(HubError::Credential(
                "reading events needs a service policy's connection string, not a device's".into(),
            ));
        }
        let hub = connect_hub(cs, options).await?;
        let address = format!("amqps://{}/messages/events/$management", cs.host_name());
        let probe = tokio::time::timeout(
            options.timeout,
            hub.session.receiver("redirect-probe", &address, 1),
        )
        .await
        .map_err(|_| HubError::Timeout("the answer to the redirect probe"))?;
        let ended = match probe {
            Ok(rx) => tokio::time::timeout(options.timeout, rx.recv())
                .await
                .map_err(|_| HubError::Timeout("the redirect"))?
                .err(),
            Err(e) => Some(e),
        };
        let _ = hub.close().await;
        match ended {
            Some(Error::LinkDetached(Some(e)) | Error::LinkRefused(Some(e))) => {
                Self::from_redirect(&e).map_err(HubError::Redirect)
            }
            Some(other) => Err(HubError::Redirect(other.to_string())),
            None => Err(HubError::Redirect("the hub sent a message instead".into())),
        }
    }
}

/// Host and port of `host[:port]` or `[v6 address][:port]`.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

/// A port number in any AMQP integer type.
fn port_of(v: &Value) -> Option<u16> {
    match v {
        Value::Ushort(p) => Some(*p),
        Value::Ubyte(p) => Some(u16::from(*p)),
        Value::Uint(p, _) => u16::try_from(*p).ok(),
        Value::Ulong(p, _) => u16::try_from(*p).ok(),
        Value::Short(p) => u16::try_from(*p).ok(),
        Value::Int(p, _) => u16::try_from(*p).ok(),
        Value::Long(p, _) => u16::try_from(*p).ok(),
        _ => None,
    }
}

/// What an event reader reads.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// The consumer group ([`DEFAULT_CONSUMER_GROUP`] unless given).
    pub consumer_group: String,
    /// Where each partition starts.
    pub start: StartPosition,
    /// The partitions to read; all of them (asked of `$management`) when `None`.
    pub partitions: Option<Vec<String>>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            consumer_group: DEFAULT_CONSUMER_GROUP.into(),
            start: StartPosition::Latest,
            partitions: None,
        }
    }
}

/// One device-to-cloud event.
#[derive(Clone, Debug)]
pub struct Event {
    /// The partition it was read from.
    pub partition: String,
    /// `iothub-connection-device-id`.
    pub device_id: Option<String>,
    /// `iothub-connection-module-id`.
    pub module_id: Option<String>,
    /// `x-opt-enqueued-time`.
    pub enqueued_time: Option<Timestamp>,
    /// `x-opt-sequence-number`.
    pub sequence_number: Option<i64>,
    /// `x-opt-offset`.
    pub offset: Option<String>,
    /// The encoded message, as it came.
    pub payload: Bytes,
    /// The message.
    pub message: Message,
}

impl Event {
    /// Reads the hub's annotations of `payload`.
    pub fn decode(partition: &str, payload: Bytes) -> Result<Self, String> {
        let message = Message::decode(&payload).map_err(|e| format!("an event: {e}"))?;
        let a = message.message_annotations.as_ref();
        let get = |k: &str| a.and_then(|a| a.get(k)).and_then(|v| v.to_owned_value().ok());
        let text = |k: &str| get(k).and_then(|v| v.as_str().map(str::to_owned));
        let enqueued_time = match get("x-opt-enqueued-time") {
            Some(Value::Timestamp(t)) => Some(t),
            _ => None,
        };
        Ok(Self {
            partition: partition.to_owned(),
            device_id: text("iothub-connection-device-id"),
            module_id: text("iothub-connection-module-id"),
            enqueued_time,
            sequence_number: get("x-opt-sequence-number").and_then(|v| v.as_i64()),
            offset: text("x-opt-offset"),
            payload,
            message,
        })
    }

    /// The body as text, when it is UTF-8 data or a string value.
    pub fn body_text(&self) -> Option<String> {
        self.message.body.text()
    }

    /// One JSON object: partition, device, module, enqueued time (UTC text), sequence
    /// number, offset, and the message as the trace renders it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "partition": self.partition,
            "device_id": self.device_id,
            "module_id": self.module_id,
            "enqueued_time": self.enqueued_time.map(|t| t.to_string()),
            "sequence_number": self.sequence_number,
            "offset": self.offset,
            "body": self.body_text(),
            "message": crate::inspect::json::payload_json(&self.payload, None),
        })
    }
}

/// Reads events from partitions of the Event Hub-compatible endpoint.
#[derive(Debug)]
pub struct EventReader {
    hub: HubConnection,
    partitions: Vec<String>,
    events: mpsc::Receiver<Result<Event, HubError>>,
    _readers: Vec<AbortOnDrop>,
}

impl EventReader {
    /// Connects to `target` with the service policy of `cs` (the same key signs for
    /// `sb://{hostname}/{event hub}`, keyed by its text as Event Hubs wants), asks `$management` for the partitions unless
    /// `read` names them, and attaches a reader to each.
    ///
    /// With [`Security::Plain`] the Event Hub connection uses SASL ANONYMOUS and CBS.
    pub async fn connect(
        cs: &IotHubConnectionString,
        target: &EventHubTarget,
        read: ReadOptions,
        options: &HubOptions,
    ) -> Result<Self, HubError> {
        // The same policy key, keyed as Event Hubs keys are: by its text.
        let credential =
            match cs.credential() {
                Credential::SharedAccessKey(k) => Credential::SharedAccessKey(k.event_hubs_key()),
                Credential::SharedAccessSignature(_) => return Err(HubError::Credential(
                    "reading events needs the policy's key: a SharedAccessSignature is for the \
                     hub, and the Event Hub endpoint needs a token of its own"
                        .into(),
                )),
                Credential::X509 => {
                    return Err(HubError::Credential(
                        "reading events needs a service policy's key, not an X.509 device's string"
                            .into(),
                    ))
                }
            };
        let signer =
            Signer { credential, key_name: cs.shared_access_key_name().map(str::to_owned) };
        let port = match options.transport {
            HubTransport::Amqps => Some(target.port),
            HubTransport::WebSocket => options.event_hub_ws_port,
        };
        let endpoint = options.transport.endpoint(&target.hostname, port, EVENTHUB_WS_PATH);
        let security = if options.security == Security::Plain {
            Security::Anonymous
        } else {
            options.security
        };
        let hub = HubConnection::open(endpoint, &target.hostname, security, signer, None, options)
            .await?;
        let resource = format!("sb://{}/{}", target.hostname, target.event_hub);
        hub.authorize(&resource).await?;
        let partitions = match read.partitions {
            Some(p) => p,
            None => partition_ids(&hub.session, &target.event_hub, options.timeout).await?,
        };
        let (tx, events) = mpsc::channel(256);
        let mut readers = Vec::new();
        for p in &partitions {
            let address = format!(
                "{}/ConsumerGroups/{}/Partitions/{p}",
                target.event_hub, read.consumer_group
            );
            let mut o = LinkOptions::receiver(&format!("reader-{p}"), &address);
            if let Some(AttachSource::Source(s)) = &mut o.source {
                let (k, v) = read.start.filter();
                s.filter = Some(Fields(vec![(k, v)]));
            }
            let rx = tokio::time::timeout(options.timeout, hub.session.attach_receiver(o, 100))
                .await
                .map_err(|_| HubError::Timeout("a partition reader to attach"))??;
            let (tx, partition) = (tx.clone(), p.clone());
            readers.push(AbortOnDrop(tokio::spawn(async move {
                loop {
                    let item = match rx.recv().await {
                        Ok(d) => {
                            let _ = rx.accept(&d);
                            Event::decode(&partition, d.payload).map_err(HubError::BadMessage)
                        }
                        Err(e) => Err(HubError::Amqp(e)),
                    };
                    // An event that cannot be read is reported; the partition goes on.
                    let stop = matches!(item, Err(HubError::Amqp(_)));
                    if tx.send(item).await.is_err() || stop {
                        return;
                    }
                }
            })));
        }
        Ok(Self { hub, partitions, events, _readers: readers })
    }

    /// The partitions being read.
    pub fn partitions(&self) -> &[String] {
        &self.partitions
    }

    /// The next event from any partition, in the order they arrive. An event that cannot
    /// be decoded comes as [`HubError::BadMessage`], and reading goes on; a link or
    /// connection error ends that partition's reader.
    pub async fn next(&mut self) -> Result<Event, HubError> {
        match self.events.recv().await {
            Some(r) => r,
            None => Err(HubError::Amqp(Error::Closed)),
        }
    }

    /// Closes the connection.
    pub async fn close(self) -> Result<(), HubError> {
        self.hub.close().await
    }
}

/// Asks `$management` for the Event Hub's partition ids (a READ of
/// `com.microsoft:eventhub`).
async fn partition_ids(
    session: &Session,
    event_hub: &str,
    timeout: Duration,
) -> Result<Vec<String>, HubError> {
    const NODE: &str = "$management";
    let reply_to = "amqpwire-management-reply";
    let mut so = LinkOptions::sender("management-sender", NODE);
    so.source =
        Some(AttachSource::Source(Source { address: Some(reply_to.into()), ..Source::default() }));
    let mut ro = LinkOptions::receiver("management-receiver", NODE);
    ro.target =
        Some(AttachTarget::Target(Target { address: Some(reply_to.into()), ..Target::default() }));
    let work = async {
        let tx = session.attach_sender(so).await?;
        let rx = session.attach_receiver(ro, 1).await?;
        let id = MessageId::Uuid(random_uuid());
        let request = Message {
            properties: Some(Properties {
                message_id: Some(id.clone()),
                reply_to: Some(reply_to.into()),
                ..Properties::default()
            }),
            application_properties: Some(AnnotationMap::from_pairs([
                ("operation", "READ"),
                ("type", "com.microsoft:eventhub"),
                ("name", event_hub),
            ])),
            body: Body::Value(Value::Null),
            ..Message::default()
        };
        let (m, status) =
            super::cbs::request_reply(&tx, &rx, &request, &id).await.map_err(|e| match e {
                CbsError::Link(e) => HubError::Amqp(e),
                other => HubError::BadMessage(format!("$management: {other}")),
            })?;
        if !(200..300).contains(&status.code) {
            return Err(HubError::BadMessage(format!(
                "$management READ: status {} ({})",
                status.code,
                status.description.as_deref().unwrap_or("no description")
            )));
        }
        let Body::Value(Value::Map(pairs, _)) = &m.body else {
            return Err(HubError::BadMessage("$management READ: the answer is not a map".into()));
        };
        let ids = pairs.iter().find(|(k, _)| k.as_str() == Some("partition_ids"));
        let ids: Vec<String> = match ids.map(|(_, v)| v) {
            Some(Value::Array(a)) => {
                a.items().iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
            }
            Some(Value::List(items, _)) => {
                items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
            }
            _ => Vec::new(),
        };
        if ids.is_empty() {
            return Err(HubError::BadMessage(
                "$management READ: no partition_ids in the answer".into(),
            ));
        }
        let _ = tx.close().await;
        let _ = rx.close().await;
        Ok(ids)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| HubError::Timeout("the $management answer"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Symbol;

    #[test]
    fn the_redirect_names_the_event_hub() {
        let mut e = AmqpError::new(crate::types::condition::LINK_REDIRECT, "go there");
        e.info = Some(Fields(vec![
            (Symbol::from("hostname"), Value::from("ns.servicebus.windows.net")),
            (Symbol::from("network-host"), Value::from("ns.servicebus.windows.net")),
            (Symbol::from("port"), Value::from(5671i32)),
            (
                Symbol::from("address"),
                Value::from("amqps://ns.servicebus.windows.net:5671/myhub-eh/$management"),
            ),
        ]));
        let t = EventHubTarget::from_redirect(&e).unwrap();
        assert_eq!(
            (t.hostname.as_str(), t.port, t.event_hub.as_str()),
            ("ns.servicebus.windows.net", 5671, "myhub-eh")
        );
        // Without hostname and port, the address says them.
        e.info = Some(Fields(vec![(
            Symbol::from("address"),
            Value::from("amqps://other.example:5999/eh2/ConsumerGroups/$Default/Partitions/1"),
        )]));
        let t = EventHubTarget::from_redirect(&e).unwrap();
        assert_eq!(
            (t.hostname.as_str(), t.port, t.event_hub.as_str()),
            ("other.example", 5999, "eh2")
        );
        // Not a redirect, no address, a bad port: each says so.
        let other = AmqpError::new(crate::types::condition::UNAUTHORIZED_ACCESS, "no");
        assert!(EventHubTarget::from_redirect(&other)
            .unwrap_err()
            .contains("not amqp:link:redirect"));
        e.info = Some(Fields(vec![(Symbol::from("port"), Value::from(5671i32))]));
        assert!(EventHubTarget::from_redirect(&e).unwrap_err().contains("no address"));
        e.info = Some(Fields(vec![
            (Symbol::from("address"), Value::from("amqps://h:1/eh/$management")),
            (Symbol::from("port"), Value::from(70_000i32)),
        ]));
        assert!(EventHubTarget::from_redirect(&e).unwrap_err().contains("not a port"));
        e.info =
            Some(Fields(vec![(Symbol::from("address"), Value::from("amqps://h:1/$management"))]));
        assert!(EventHubTarget::from_redirect(&e).unwrap_err().contains("no Event Hub name"));
        // A port of another integer type, and an IPv6 address.
        e.info = Some(Fields(vec![
            (Symbol::from("address"), Value::from("amqps://[::1]:5999/eh3/$management")),
            (Symbol::from("port"), Value::Ushort(5672)),
        ]));
        let t = EventHubTarget::from_redirect(&e).unwrap();
        assert_eq!((t.hostname.as_str(), t.port, t.event_hub.as_str()), ("::1", 5672, "eh3"));
        e.info = Some(Fields(vec![(
            Symbol::from("address"),
            Value::from("amqps://[::1]:5999/eh3/$management"),
        )]));
        assert_eq!(EventHubTarget::from_redirect(&e).unwrap().port, 5999);
    }

    #[test]
    fn random_uuids_are_version_4() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_ne!(a, b);
        assert_eq!(a.0[6] >> 4, 4);
        assert_eq!(a.0[8] >> 6, 0b10);
    }

    #[test]
    fn events_carry_the_hubs_annotations() {
        let mut m = Message::with_data(&b"hi"[..]);
        m.message_annotations = Some(AnnotationMap::from_pairs([
            (Value::from(Symbol::from("iothub-connection-device-id")), Value::from("d1")),
            (Value::from(Symbol::from("x-opt-sequence-number")), Value::from(7i64)),
            (Value::from(Symbol::from("x-opt-offset")), Value::from("120")),
            (
                Value::from(Symbol::from("x-opt-enqueued-time")),
                Value::Timestamp(Timestamp(1_700_000_000_000)),
            ),
        ]));
        let e = Event::decode("3", Bytes::from(m.to_vec())).unwrap();
        assert_eq!(e.device_id.as_deref(), Some("d1"));
        assert_eq!(e.sequence_number, Some(7));
        assert_eq!(e.offset.as_deref(), Some("120"));
        assert_eq!(e.enqueued_time, Some(Timestamp(1_700_000_000_000)));
        assert_eq!(e.body_text().as_deref(), Some("hi"));
        let j = e.to_json();
        assert_eq!(j["partition"], "3");
        assert_eq!(j["enqueued_time"], "2023-11-14T22:13:20.000Z");
        assert!(Event::decode("0", Bytes::from_static(b"\x00\x53")).is_err());
    }
}
