//! The nodes of a connection: `$cbs`, the service and device nodes, the redirect, and
//! the Event Hub-compatible endpoint's nodes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use super::state::{lock, now_ms, C2d, Settle};
use super::{device_segment, unix_seconds, Claim, IotHub, Need, PLAIN_IDENTITY_PREFIX};
use crate::azure::cbs::{serve_node, CbsStatus, ReplyLink};
use crate::azure::hub::{Ack, FeedbackStatus, StartPosition};
use crate::codec::{Symbol, Value};
use crate::connection::LinkOptions;
use crate::message::{AnnotationMap, Body, Message};
use crate::runtime::{LinkRequest, Receiver, Sender, ServerConnection};
use crate::types::{
    condition, AttachSource, AttachTarget, DeliveryState, Error as AmqpError, Fields, MessageId,
    Properties, Role, Source, Target,
};

/// What one connection has: its claims and its reply links.
#[derive(Debug)]
struct Conn {
    /// The hub, whose registry says whether a device's claims still hold.
    hub: IotHub,
    claims: Mutex<Vec<Claim>>,
    claims_changed: Notify,
    cbs_reply: ReplyLink,
    management_reply: ReplyLink,
    /// Telemetry messages taken on this connection (for `Faults::close_after`).
    telemetry: std::sync::atomic::AtomicU64,
    twins: super::twin::TwinLinks,
    /// The identities whose own claims this connection has held: it counts as their
    /// connection (`connectionState`) until it ends.
    identities: Mutex<std::collections::BTreeSet<String>>,
    /// Why `$cbs` refused the connection's last put-token, until one is taken: a link
    /// refused for want of a claim says so.
    cbs_refused: Mutex<Option<String>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for id in std::mem::take(&mut *lock(&self.identities)) {
            self.hub.count_connection(&id, false);
        }
    }
}

/// Claims one connection may hold at once (renewals replace the claim they renew).
const MAX_CLAIMS: usize = 64;

impl Conn {
    fn new(hub: IotHub) -> Self {
        Self {
            hub,
            claims: Mutex::default(),
            claims_changed: Notify::new(),
            cbs_reply: ReplyLink::default(),
            management_reply: ReplyLink::default(),
            telemetry: std::sync::atomic::AtomicU64::new(0),
            twins: super::twin::TwinLinks::default(),
            identities: Mutex::default(),
            cbs_refused: Mutex::default(),
        }
    }

    /// Whether a claim still holds: a device's, while the device is in the registry and
    /// enabled (IoT Hub drops a device's links when it is deleted or disabled).
    fn holds(&self, claim: &Claim) -> bool {
        claim.device().is_none_or(|d| self.hub.knows(d) && !self.hub.disabled(d))
    }

    /// Adds a claim: expired ones go, one for the same audience and signer is replaced
    /// (a renewal), and a connection holding [`MAX_CLAIMS`] others is refused.
    fn add_claim(&self, claim: Claim) -> Result<(), String> {
        let now = unix_seconds();
        let mut claims = lock(&self.claims);
        claims.retain(|c| {
            c.expiry() >= now
                && !(c.token.audience().eq_ignore_ascii_case(claim.token.audience())
                    && c.token.key_name() == claim.token.key_name())
        });
        if claims.len() >= MAX_CLAIMS {
            return Err(format!("this connection already holds {MAX_CLAIMS} tokens"));
        }
        if let Some(id) = claim.identity.clone() {
            if lock(&self.identities).insert(id.clone()) {
                self.hub.count_connection(&id, true);
            }
        }
        claims.push(claim);
        drop(claims);
        self.claims_changed.notify_waiters();
        Ok(())
    }

    /// Ends every claim the connection put on `$cbs`, as if each token's expiry had come
    /// (fault injection): the links they cover are detached, and a new token on `$cbs`
    /// covers them again. A certificate's or SASL PLAIN's claim stays. `true` when there
    /// was one to end.
    fn expire_claims(&self) -> bool {
        let mut any = false;
        for claim in lock(&self.claims).iter_mut().filter(|c| c.put_on_cbs) {
            claim.cut_short = Some(0);
            any = true;
        }
        self.claims_changed.notify_waiters();
        any
    }

    /// The latest expiry among claims covering `resource` for `need`; `Err` when none.
    fn covered(&self, resource: &str, need: &Need) -> Result<u64, String> {
        let now = unix_seconds();
        let claims = lock(&self.claims);
        claims
            .iter()
            .filter(|c| c.expiry() >= now && c.grants(resource, need) && self.holds(c))
            .map(Claim::expiry)
            .max()
            .ok_or_else(|| {
                if claims.is_empty() {
                    return match lock(&self.cbs_refused).as_deref() {
                        Some(why) => {
                            format!(
                                "no token on $cbs covers it: the last one put was refused ({why})"
                            )
                        }
                        None => "no token has been put on $cbs for this connection".to_owned(),
                    };
                }
                // Say what is missing: the right, the identity, or a token for the place.
                let live = claims.iter().filter(|c| c.expiry() >= now && self.holds(c));
                let mut reasons = live.filter_map(|c| c.refusal(resource, need));
                reasons.next().unwrap_or_else(|| format!("no valid token covers {resource}"))
            })
    }

    /// Resolves when no claim covers `resource` any longer (a renewal pushes it back).
    async fn expired(&self, resource: &str, need: &Need) {
        loop {
            // Listening before looking: a change between the two is not missed.
            let claims_changed = self.claims_changed.notified();
            let registry_changed = self.hub.registry_changed();
            tokio::pin!(claims_changed, registry_changed);
            claims_changed.as_mut().enable();
            registry_changed.as_mut().enable();
            let Ok(until) = self.covered(resource, need) else { return };
            let left = until.saturating_sub(unix_seconds()) + 1;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(left)) => {}
                _ = claims_changed => {}
                _ = registry_changed => {}
            }
        }
    }
}

fn token_invalid() -> AmqpError {
    AmqpError::new(condition::UNAUTHORIZED_ACCESS, "Token Invalid.")
}

impl Conn {
    /// Why a link that needed `need` lost its claim: its device left the registry or was
    /// disabled, or its token expired (IoT Hub says "Token Invalid.").
    fn lost(&self, need: &Need) -> AmqpError {
        let gone = |id: &str| {
            if !self.hub.knows(id) {
                Some(format!("Token Invalid.: device {id:?} was deleted from the registry"))
            } else if self.hub.disabled(id) {
                Some(format!("Token Invalid.: device {id:?} is disabled"))
            } else {
                None
            }
        };
        match need {
            Need::Device(id) => match gone(id) {
                Some(why) => AmqpError::new(condition::UNAUTHORIZED_ACCESS, why),
                None => token_invalid(),
            },
            Need::Service => token_invalid(),
        }
    }
}

/// A link address without `amqps://host`, leading and trailing `/`, split into segments.
fn segments(address: &str) -> Vec<String> {
    let rest = match address.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, p)| p),
        None => address,
    };
    rest.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn is(seg: &[String], words: &[&str]) -> bool {
    seg.len() == words.len()
        && seg.iter().zip(words).all(|(s, w)| *w == "*" || s.eq_ignore_ascii_case(w))
}

/// Our attach for the peer's: the other role, both termini present (some clients
/// detach without them), settle modes and properties echoed, max-message-size 1 MiB.
fn echo(r: &crate::types::Attach, address: &str) -> LinkOptions {
    let mut o = LinkOptions::receiver(&r.name, address);
    o.role = if r.role == Role::SENDER { Role::RECEIVER } else { Role::SENDER };
    o.source = r.source.clone().or_else(|| {
        Some(AttachSource::Source(Source { address: Some(address.into()), ..Source::default() }))
    });
    o.target = r.target.clone().or_else(|| {
        Some(AttachTarget::Target(Target { address: Some(address.into()), ..Target::default() }))
    });
    o.snd_settle_mode = r.snd_settle_mode;
    o.rcv_settle_mode = r.rcv_settle_mode;
    o.max_message_size = Some(1_048_576);
    o.properties = r.properties.clone();
    o
}

pub(super) async fn serve_connection(hub: IotHub, mut conn: ServerConnection, event_hub: bool) {
    let c = Arc::new(Conn::new(hub.clone()));
    let config = hub.config();
    let host = if event_hub {
        config.event_hub_endpoint.as_ref().map_or(config.hostname.clone(), |(h, _)| h.clone())
    } else {
        config.hostname.clone()
    };
    // The identity is known once the peer's open came (SASL is over by then).
    if conn.connection.opened().await.is_err() {
        return;
    }
    // A device certificate (X.509, CA-signed or by thumbprint): its claims, with no token.
    if let (Some(peer), false) = (conn.connection.peer_certificate(), event_hub) {
        for id in hub.x509_identities(&peer) {
            if let Some(claim) = super::Claim::x509(&host, &id) {
                let _ = c.add_claim(claim);
            }
        }
    }
    // SASL PLAIN brought a token: its claim, and the connection ends when it expires.
    if let Some(token) = conn
        .connection
        .identity()
        .and_then(|i| i.strip_prefix(PLAIN_IDENTITY_PREFIX).map(str::to_owned))
    {
        match hub.validate(&token, &host, event_hub) {
            Ok(claim) => {
                let until = claim.expiry();
                let _ = c.add_claim(claim);
                let handle = conn.connection.clone();
                tokio::spawn(async move {
                    let left = until.saturating_sub(unix_seconds()) + 1;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(left)) => {
                            let _ = handle.close(Some(token_invalid())).await;
                        }
                        _ = handle.closed() => {}
                    }
                });
            }
            Err(e) => {
                let _ = conn
                    .connection
                    .close(Some(AmqpError::new(condition::UNAUTHORIZED_ACCESS, e)))
                    .await;
                return;
            }
        }
    }
    if let (Some(after), false) = (config.faults.close_at, event_hub) {
        let handle = conn.connection.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(after) => {
                    let why = format!("closed {after:?} after it opened (fault injection)");
                    let _ = handle.close(Some(AmqpError::new(condition::CONNECTION_FORCED, why))).await;
                }
                _ = handle.closed() => {}
            }
        });
    }
    while let Some(request) = conn.next_link().await {
        let (hub, c, host) = (hub.clone(), Arc::clone(&c), host.clone());
        tokio::spawn(async move { answer(hub, c, request, &host, event_hub).await });
    }
}

async fn answer(hub: IotHub, c: Arc<Conn>, request: LinkRequest, host: &str, event_hub: bool) {
    let address = request.address().unwrap_or("").to_owned();
    let seg = segments(&address);
    let peer_sends = request.role() == Role::SENDER;
    let refuse = |request: LinkRequest, cond: &str, why: String| {
        let _ = request.refuse(AmqpError::new(cond, why));
    };
    if is(&seg, &["$cbs"]) {
        return cbs(hub, c, request, host, event_hub).await;
    }
    // Which node, and what it needs.
    enum Node {
        C2dIn,
        Feedback,
        FileNotifications,
        Telemetry(String, Option<String>),
        C2dOut(String),
        Twin(String, Option<String>),
        Methods(String, Option<String>),
        Redirect,
        Management,
        Partition(String),
    }
    let node = if event_hub {
        let name = hub.config().event_hub_name.clone();
        if is(&seg, &["$management"]) {
            Node::Management
        } else if seg.len() == 5
            && seg[0].eq_ignore_ascii_case(&name)
            && is(&seg[1..], &["consumergroups", "*", "partitions", "*"])
            && !peer_sends
        {
            let group = device_segment(&seg[2]);
            let config = hub.config();
            if !config.consumer_groups.iter().any(|g| g.eq_ignore_ascii_case(&group)) {
                return refuse(
                    request,
                    condition::NOT_FOUND,
                    format!(
                        "no consumer group {group:?} on this Event Hub (it has {})",
                        config.consumer_groups.join(", ")
                    ),
                );
            }
            Node::Partition(seg[4].clone())
        } else {
            return refuse(
                request,
                condition::NOT_FOUND,
                format!("no node {address:?} on this Event Hub"),
            );
        }
    } else if is(&seg, &["messages", "devicebound"]) && peer_sends {
        Node::C2dIn
    } else if is(&seg, &["messages", "servicebound", "feedback"]) && !peer_sends {
        Node::Feedback
    } else if is(&seg, &["messages", "servicebound", "filenotifications"]) && !peer_sends {
        Node::FileNotifications
    } else if (is(&seg, &["devices", "*", "messages", "events"])
        || is(&seg, &["devices", "*", "modules", "*", "messages", "events"]))
        && peer_sends
    {
        Node::Telemetry(device_segment(&seg[1]), (seg.len() == 6).then(|| device_segment(&seg[3])))
    } else if is(&seg, &["devices", "*", "methods", "devicebound"]) {
        Node::Methods(device_segment(&seg[1]), None)
    } else if is(&seg, &["devices", "*", "modules", "*", "methods", "devicebound"]) {
        Node::Methods(device_segment(&seg[1]), Some(device_segment(&seg[3])))
    } else if is(&seg, &["devices", "*", "twin"]) {
        Node::Twin(device_segment(&seg[1]), None)
    } else if is(&seg, &["devices", "*", "modules", "*", "twin"]) {
        Node::Twin(device_segment(&seg[1]), Some(device_segment(&seg[3])))
    } else if is(&seg, &["devices", "*", "messages", "devicebound"]) && !peer_sends {
        Node::C2dOut(device_segment(&seg[1]))
    } else if seg.first().is_some_and(|s| s.eq_ignore_ascii_case("messages"))
        && seg.get(1).is_some_and(|s| s.eq_ignore_ascii_case("events"))
        && !peer_sends
    {
        Node::Redirect
    } else {
        let dir = if peer_sends { "to send to" } else { "to receive from" };
        return refuse(
            request,
            condition::NOT_FOUND,
            format!("IoT Hub has no node {address:?} {dir}"),
        );
    };
    if let Node::Telemetry(d, Some(m)) | Node::Twin(d, Some(m)) | Node::Methods(d, Some(m)) = &node
    {
        // Modules are registry identities: an unknown one is refused.
        if !hub.config().modules.iter().any(|(dev, id, _)| dev == d && id == m) {
            return refuse(
                request,
                condition::NOT_FOUND,
                format!("no module {m:?} of device {d:?} in the registry"),
            );
        }
    }
    let need = match &node {
        Node::Telemetry(d, _) | Node::C2dOut(d) | Node::Twin(d, _) | Node::Methods(d, _) => {
            if !hub.config().devices.iter().any(|(id, _)| id == d) {
                return refuse(
                    request,
                    condition::NOT_FOUND,
                    format!("no device {d:?} in the registry"),
                );
            }
            Need::Device(d.clone())
        }
        _ => Need::Service,
    };
    // The resource a claim must cover: the node's path under the host (readers put a
    // token for `sb://host/{eh}` or for `sb://host/{eh}/consumergroups/{cg}`).
    let resource = match node {
        // A token for the whole Event Hub covers its management node, and so does one for
        // the node itself (`sb://host/{eh}/$management`, as @azure/event-hubs puts it).
        Node::Management => format!("{host}/{}/$management", hub.config().event_hub_name),
        _ => format!("{host}/{}", seg.join("/")),
    };
    if let Err(why) = c.covered(&resource, &need) {
        return refuse(request, condition::UNAUTHORIZED_ACCESS, why);
    }
    let options = echo(&request.remote, &address);
    match node {
        Node::C2dIn => {
            let Ok(rx) = request.accept_receiver(Some(options), 100) else { return };
            until_expired(&c, &resource, &need, rx, |rx| c2d_in(&hub, rx)).await;
        }
        // A module's twin and methods are its own: keyed `DEVICE/MODULE`.
        Node::Methods(device, module) => {
            let id = module.map_or(device.clone(), |m| format!("{device}/{m}"));
            let lost = Lost { conn: &c, resource, need };
            super::methods::methods_node(&hub, request, options, &id, lost).await;
        }
        Node::Twin(device, module) => {
            let id = module.map_or(device.clone(), |m| format!("{device}/{m}"));
            let lost = Lost { conn: &c, resource, need };
            super::twin::twin_node(&hub, &c.twins, request, options, &id, lost).await;
        }
        Node::Telemetry(device, module) => {
            let Ok(rx) = request.accept_receiver(Some(options), 100) else { return };
            let module = module.as_deref();
            let work = |rx| telemetry(&hub, &c, rx, &device, module);
            until_expired_or(&c, &resource, &need, rx, work).await;
        }
        Node::Feedback => {
            let Ok(tx) = request.accept_sender(Some(options)) else { return };
            until_expired(&c, &resource, &need, tx, |tx| feedback(&hub, tx)).await;
        }
        Node::FileNotifications => {
            let Ok(tx) = request.accept_sender(Some(options)) else { return };
            until_expired(&c, &resource, &need, tx, |tx| async move {
                tx.ended().await;
            })
            .await;
        }
        Node::C2dOut(device) => {
            let Ok(tx) = request.accept_sender(Some(options)) else { return };
            until_expired(&c, &resource, &need, tx, |tx| c2d_out(&hub, tx, &device)).await;
        }
        Node::Redirect => {
            let Ok(tx) = request.accept_sender(Some(options)) else { return };
            let _ = tx.close_with_error(redirect(&hub)).await;
        }
        Node::Management => management(&hub, c, request, options).await,
        Node::Partition(p) => {
            let Ok(index) = p.parse::<usize>() else {
                return refuse(request, condition::NOT_FOUND, format!("no partition {p:?}"));
            };
            if index >= hub.inner.log.partitions.len() {
                return refuse(request, condition::NOT_FOUND, format!("no partition {p:?}"));
            }
            let start = match start_position(&request.remote) {
                Ok(s) => s,
                Err(e) => return refuse(request, condition::INVALID_FIELD, e),
            };
            let Ok(tx) = request.accept_sender(Some(options)) else { return };
            until_expired(&c, &resource, &need, tx, |tx| partition(&hub, tx, index, start)).await;
        }
    }
}

/// The end of a link a node holds, which an expired claim detaches.
pub(super) trait LinkEnd {
    /// Closes the link with `error`.
    async fn detach(&self, error: AmqpError);
}

impl LinkEnd for Receiver {
    async fn detach(&self, error: AmqpError) {
        let _ = self.close_shared(error).await;
    }
}

impl LinkEnd for Sender {
    async fn detach(&self, error: AmqpError) {
        let _ = self.close_shared(error).await;
    }
}

/// Runs a node until its link ends or its claim expires (then detaches it with
/// `amqp:unauthorized-access`).
async fn until_expired<L, F, Fut>(c: &Conn, resource: &str, need: &Need, link: L, work: F)
where
    L: LinkEnd,
    F: FnOnce(Arc<L>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    until_expired_or(c, resource, need, link, |l| async move {
        work(l).await;
        None
    })
    .await;
}

/// [`until_expired`], for work that may end by asking to detach the link with an error.
/// (The work ends with its link: a receiver's when its deliveries run out, a sender's
/// where it waits for something to send, so that it does not outlive the link and its
/// connection, nor stop in the middle of a step.)
async fn until_expired_or<L, F, Fut>(c: &Conn, resource: &str, need: &Need, link: L, work: F)
where
    L: LinkEnd,
    F: FnOnce(Arc<L>) -> Fut,
    Fut: std::future::Future<Output = Option<AmqpError>>,
{
    let link = Arc::new(link);
    let lost = Lost { conn: c, resource: resource.to_owned(), need: need.clone() };
    guarded_or(&lost, &*link, work(Arc::clone(&link))).await;
}

/// A node with links of its own making (a twin's, a method's): runs `work` until it ends
/// or the connection's claims no longer cover the node; then `link` is closed with the
/// reason.
pub(super) async fn guarded<L: LinkEnd>(
    lost: &Lost<'_>,
    link: &L,
    work: impl std::future::Future<Output = ()>,
) {
    guarded_or(lost, link, async {
        work.await;
        None
    })
    .await;
}

/// [`guarded`], for work that may end by asking to close the link with an error.
async fn guarded_or<L: LinkEnd>(
    lost: &Lost<'_>,
    link: &L,
    work: impl std::future::Future<Output = Option<AmqpError>>,
) {
    let why = tokio::select! {
        why = work => why,
        () = lost.conn.expired(&lost.resource, &lost.need) => Some(lost.conn.lost(&lost.need)),
    };
    if let Some(why) = why {
        link.detach(why).await;
    }
}

/// What a node's claim is: the connection that holds it, and what it covers.
pub(super) struct Lost<'a> {
    conn: &'a Conn,
    resource: String,
    need: Need,
}

fn redirect(hub: &IotHub) -> AmqpError {
    let config = hub.config();
    let (host, port) = config.event_hub_endpoint.clone().unwrap_or((config.hostname.clone(), 5671));
    let address = format!("amqps://{host}:{port}/{}/$management", config.event_hub_name);
    redirect_error(&host, port, &address, "Redirect to the Event Hub-compatible endpoint")
}

/// `amqp:link:redirect` with the fields part 2.8.17 names: hostname, network-host, port,
/// address.
fn redirect_error(host: &str, port: u16, address: &str, why: &str) -> AmqpError {
    let mut e = AmqpError::new(condition::LINK_REDIRECT, why);
    e.info = Some(Fields(vec![
        (Symbol::from("hostname"), Value::from(host)),
        (Symbol::from("network-host"), Value::from(host)),
        (Symbol::from("port"), Value::from(i32::from(port))),
        (Symbol::from("address"), Value::from(address)),
    ]));
    e
}

/// `$cbs`: a peer sender carries put-token requests; a peer receiver gets the answers.
async fn cbs(hub: IotHub, c: Arc<Conn>, request: LinkRequest, host: &str, event_hub: bool) {
    let options = echo(&request.remote, "$cbs");
    serve_node(request, options, &c.cbs_reply, |put| {
        let audience = crate::azure::percent_decode(&put.name).unwrap_or(put.name.clone());
        let (status, why) = match hub.validate(&put.token, host, event_hub) {
            Ok(mut claim) if claim.token.authorizes(&audience) || audience.is_empty() => {
                claim.put_on_cbs = true;
                match c.add_claim(claim) {
                    Ok(()) => (if event_hub { 202 } else { 200 }, "OK".to_owned()),
                    Err(why) => (403, why),
                }
            }
            Ok(_) => (401, format!("the token does not cover {audience:?}")),
            Err(why) => (401, why),
        };
        *lock(&c.cbs_refused) = (status >= 300).then(|| format!("{status} {why}"));
        (status, why)
    })
    .await;
}

/// The service's cloud-to-device sender: each message is queued for its device.
async fn c2d_in(hub: &IotHub, rx: Arc<Receiver>) {
    while let Ok(d) = rx.recv().await {
        let config = hub.config();
        let reject = |cond: &str, why: String| {
            let _ = rx.reject(&d, Some(AmqpError::new(cond, why)));
        };
        if d.payload.len() > config.c2d_max_size {
            reject(
                condition::MESSAGE_SIZE_EXCEEDED,
                format!(
                    "the message is {} bytes; at most {} are allowed",
                    d.payload.len(),
                    config.c2d_max_size
                ),
            );
            continue;
        }
        let Ok(message) = d.message() else {
            reject(condition::DECODE_ERROR, "the message cannot be decoded".into());
            continue;
        };
        let to = message.properties.as_ref().and_then(|p| p.to.as_deref()).unwrap_or("");
        let seg = segments(to);
        if !is(&seg, &["devices", "*", "messages", "devicebound"]) {
            // A module's path (or a device id with a `/`): IoT Hub has no cloud-to-device
            // messages for modules.
            let module = seg.len() > 4
                && seg.first().is_some_and(|s| s.eq_ignore_ascii_case("devices"))
                && seg.last().is_some_and(|s| s.eq_ignore_ascii_case("devicebound"));
            let note = if module {
                " (modules do not receive cloud-to-device messages: IoT Hub sends them to \
                 devices only; a module is reached by direct methods or its twin)"
            } else {
                ""
            };
            reject(
                condition::INVALID_FIELD,
                format!("to must be /devices/ID/messages/devicebound, not {to:?}{note}"),
            );
            continue;
        }
        let device = device_segment(&seg[1]);
        if !config.devices.iter().any(|(id, _)| *id == device) {
            reject(condition::NOT_FOUND, format!("no device {device:?} in the registry"));
            continue;
        }
        let ack_text = message
            .application_properties
            .as_ref()
            .and_then(|a| a.get("iothub-ack").and_then(|v| v.as_str().map(str::to_owned)));
        let ack = match ack_text.as_deref().map(Ack::parse) {
            None => Ack::None,
            Some(Some(a)) => a,
            Some(None) => {
                reject(
                    condition::INVALID_FIELD,
                    format!(
                        "iothub-ack {:?}: none, positive, negative or full",
                        ack_text.unwrap_or_default()
                    ),
                );
                continue;
            }
        };
        let expires_ms = message
            .properties
            .as_ref()
            .and_then(|p| p.absolute_expiry_time)
            .map_or(now_ms() + config.default_ttl.as_millis() as i64, |t| t.0);
        // The device's generation, which its feedback will name (looked up before the
        // queues are locked: the registry has a lock of its own).
        let generation = hub.generation_id(&device);
        let q = &hub.inner.queues;
        let mut devices = lock(&q.devices);
        let dq = devices.entry(device.clone()).or_default();
        if dq.waiting.len() + dq.locked >= config.c2d_queue_limit {
            drop(devices);
            reject(
                condition::RESOURCE_LIMIT_EXCEEDED,
                format!(
                    "device {device:?} has {} messages queued, the most allowed",
                    config.c2d_queue_limit
                ),
            );
            continue;
        }
        let sequence = q.next_sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let message_id = message.properties.as_ref().and_then(|p| p.message_id.clone());
        dq.waiting.push_back(C2d {
            message,
            message_id,
            ack,
            expires_ms,
            delivery_count: 0,
            sequence,
            generation: generation.unwrap_or_default(),
        });
        drop(devices);
        q.changed.notify_waiters();
        let _ = rx.accept(&d);
    }
}

/// A device's telemetry sender: each message goes into the event log.
/// A device's telemetry, with the configured faults; `Some` to detach the link with that
/// error.
async fn telemetry(
    hub: &IotHub,
    c: &Conn,
    rx: Arc<Receiver>,
    device: &str,
    module: Option<&str>,
) -> Option<AmqpError> {
    let faults = hub.config().faults.clone();
    let mut on_link = 0u64;
    let detach_at = faults.detach_at.map(|after| (tokio::time::Instant::now() + after, after));
    loop {
        let next = match detach_at {
            None => rx.recv().await,
            // The deadline first: a link with messages waiting still meets it.
            Some((at, after)) => tokio::select! {
                biased;
                () = tokio::time::sleep_until(at) => {
                    let why = format!("detached {after:?} after it attached (fault injection)");
                    return Some(AmqpError::new(condition::DETACH_FORCED, why));
                }
                r = rx.recv() => r,
            },
        };
        let Ok(d) = next else { break };
        if let Some(pause) = faults.slow {
            tokio::time::sleep(pause).await;
        }
        if hub.throttled(device) {
            let why = format!("device {device:?} is throttled (fault injection)");
            let _ = rx.reject(&d, Some(AmqpError::new(super::DEVICE_THROTTLED, why)));
            continue;
        }
        let max = hub.config().d2c_max_size;
        if d.payload.len() > max {
            let why =
                format!("the message is {} bytes; at most {max} are allowed", d.payload.len());
            let _ = rx.reject(&d, Some(AmqpError::new(condition::MESSAGE_SIZE_EXCEEDED, why)));
            continue;
        }
        match d.message() {
            Ok(m) => {
                let sender = module.map_or(device.to_owned(), |m| format!("{device}/{m}"));
                let generation = hub.generation_id(&sender).unwrap_or_default();
                hub.inner.log.append_from(device, module, &generation, m);
                let _ = rx.accept(&d);
                on_link += 1;
                let on_conn = c.telemetry.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if faults.close_after.is_some_and(|n| on_conn >= n) {
                    let why = format!("closed after {on_conn} messages (fault injection)");
                    let e = AmqpError::new(condition::CONNECTION_FORCED, why);
                    let _ = rx.connection().close(Some(e)).await;
                    return None;
                }
                if faults.expire_after.is_some_and(|n| n > 0 && on_conn % n == 0)
                    && c.expire_claims()
                {
                    // The connection's other links go as their claims' watch sees it;
                    // this one goes now, before it could take another message.
                    return Some(token_invalid());
                }
                if faults.detach_after.is_some_and(|n| on_link >= n) {
                    let why = format!("detached after {on_link} messages (fault injection)");
                    return Some(AmqpError::new(condition::DETACH_FORCED, why));
                }
                if faults.redirect_after.is_some_and(|n| on_link >= n) {
                    let config = hub.config();
                    let (host, port) =
                        faults.redirect_to.clone().unwrap_or((config.hostname.clone(), 5671));
                    let address = match module {
                        None => format!("/devices/{device}/messages/events"),
                        Some(m) => format!("/devices/{device}/modules/{m}/messages/events"),
                    };
                    let why = format!("redirected after {on_link} messages (fault injection)");
                    return Some(redirect_error(&host, port, &address, &why));
                }
            }
            Err(e) => {
                let _ = rx.reject(&d, Some(AmqpError::new(condition::DECODE_ERROR, e.to_string())));
            }
        }
    }
    None
}

/// A fresh lock token: a version 4 GUID in .NET's byte order (the first three groups
/// little-endian, so the version is in byte 7), as IoT Hub writes it.
fn lock_token() -> Bytes {
    let mut b: [u8; 16] = crate::runtime::random::bytes();
    b[7] = (b[7] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Bytes::copy_from_slice(&b)
}

/// A device's cloud-to-device receiver: queued messages, one per credit, each locked
/// until the device settles it or the lock times out.
async fn c2d_out(hub: &IotHub, tx: Arc<Sender>, device: &str) {
    let q = &hub.inner.queues;
    loop {
        if tx.wait_credit().await.is_err() {
            return;
        }
        let changed = q.changed.notified();
        let Some(m) = q.take(device) else {
            tokio::select! {
                () = changed => {}
                _ = tx.ended() => return,
            }
            continue;
        };
        if m.expires_ms <= now_ms() {
            q.feedback(device, &m, FeedbackStatus::Expired);
            q.unlock(device);
            continue;
        }
        let mut out = m.message.clone();
        // Deliveries the device abandoned before: the header's delivery-count (3.2.1,
        // "the number of prior unsuccessful delivery attempts"), which clients read.
        if m.delivery_count > 0 {
            let header = out.header.get_or_insert_with(Default::default);
            header.delivery_count = m.delivery_count;
        }
        let mut annotations =
            out.message_annotations.as_ref().map(|a| a.to_pairs()).unwrap_or_default();
        annotations.push((
            Value::Symbol("x-opt-sequence-number".into(), Default::default()),
            Value::from(m.sequence),
        ));
        out.message_annotations = Some(AnnotationMap::from_pairs(annotations));
        let pending = match tx.send_tagged(&out, lock_token(), false).await {
            Ok(Some(p)) => p,
            _ => {
                q.requeue(device, m);
                return;
            }
        };
        let (hub, device, lock_timeout) =
            (hub.clone(), device.to_owned(), hub.config().lock_timeout);
        tokio::spawn(async move {
            let q = &hub.inner.queues;
            let max = hub.config().max_delivery_count;
            match tokio::time::timeout(lock_timeout, pending).await {
                Ok(Ok(DeliveryState::Accepted(_))) => q.settle(&device, m, Settle::Complete, max),
                Ok(Ok(DeliveryState::Rejected(_))) => q.settle(&device, m, Settle::Reject, max),
                Ok(Ok(DeliveryState::Released(_) | DeliveryState::Modified(_))) => {
                    q.settle(&device, m, Settle::Abandon, max)
                }
                // No answer within the lock, the link or connection gone, or a state
                // that settles nothing: back in the queue, not counted as a delivery.
                _ => q.requeue(&device, m),
            }
        });
    }
}

/// The service's feedback receiver: records gathered for `feedback_interval`, up to 64 a
/// message, as a JSON array in one data section.
async fn feedback(hub: &IotHub, tx: Arc<Sender>) {
    let q = &hub.inner.queues;
    loop {
        let changed = q.feedback_changed.notified();
        // A message queued (or queued again) may expire sooner than those known.
        let queued = q.changed.notified();
        // Messages whose time to live ran out while their device was away give their
        // feedback now, and the next one to expire wakes this loop.
        let next_expiry = q.expire(now_ms());
        if lock(&q.feedback).is_empty() {
            let until_expiry = next_expiry.map_or(Duration::MAX, |at| {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0) + 1)
            });
            tokio::select! {
                () = changed => {}
                () = queued => {}
                () = tokio::time::sleep(until_expiry) => {}
                _ = tx.ended() => return,
            }
            continue;
        }
        tokio::time::sleep(hub.config().feedback_interval).await;
        if tx.wait_credit().await.is_err() {
            return;
        }
        let batch: Vec<_> = {
            let mut f = lock(&q.feedback);
            let n = f.len().min(64);
            f.drain(..n).collect()
        };

        let body: Vec<serde_json::Value> = batch.iter().map(|r| r.to_json()).collect();
        let config = hub.config();
        let m = Message {
            properties: Some(Properties {
                message_id: Some(MessageId::String(format!("feedback-{}", now_ms()).into())),
                user_id: Some(Bytes::from(config.hub_name().to_owned())),
                content_type: Some(Symbol::from("application/vnd.microsoft.iothub.feedback.json")),
                creation_time: Some(crate::codec::Timestamp(now_ms())),
                ..Properties::default()
            }),
            message_annotations: Some(AnnotationMap::from_pairs([(
                Value::Symbol("iothub-enqueuedtime".into(), Default::default()),
                Value::from(crate::codec::Timestamp(now_ms())),
            )])),
            body: Body::Data([Bytes::from(serde_json::Value::Array(body).to_string())].into()),
            ..Message::default()
        };
        let outcome = match tx.send_pipelined(&m).await {
            Ok(p) => p.await,
            Err(_) => Err(crate::runtime::Error::Closed),
        };
        match outcome {
            Ok(DeliveryState::Accepted(_) | DeliveryState::Rejected(_)) => {}
            _ => {
                let mut f = lock(&q.feedback);
                for r in batch.into_iter().rev() {
                    f.push_front(r);
                }
                drop(f);
                if tx.credit().is_err() {
                    return;
                }
            }
        }
    }
}

/// The start position a partition reader's source asks for (from the start without one).
fn start_position(remote: &crate::types::Attach) -> Result<StartPosition, String> {
    let Some(AttachSource::Source(s)) = &remote.source else {
        return Ok(StartPosition::Offset { offset: -1, inclusive: false });
    };
    let Some(filter) = &s.filter else {
        return Ok(StartPosition::Offset { offset: -1, inclusive: false });
    };
    for (key, value) in &filter.0 {
        if key.as_str() != crate::azure::hub::SELECTOR_FILTER {
            continue;
        }
        let text = match value {
            Value::Described(d) => match &d.value {
                Value::String(s, _) => s.to_string(),
                other => return Err(format!("the selector filter holds {other:?}, not a string")),
            },
            Value::String(s, _) => s.to_string(),
            other => return Err(format!("the selector filter is {other:?}")),
        };
        return StartPosition::parse(&text);
    }
    Ok(StartPosition::Offset { offset: -1, inclusive: false })
}

/// A partition reader: the log from the start position, then new events as they come,
/// each sent as the bytes the log keeps.
async fn partition(hub: &IotHub, tx: Arc<Sender>, index: usize, start: StartPosition) {
    let log = &hub.inner.log;
    let mut next = start.first_sequence(&lock(&log.partitions[index]));
    let settled = tx.remote().snd_settle_mode == crate::types::SenderSettleMode::SETTLED;
    loop {
        let appended = log.appended.notified();
        let event = lock(&log.partitions[index]).at_or_after(next).cloned();
        let Some(event) = event else {
            tokio::select! {
                () = appended => {}
                _ = tx.ended() => return,
            }
            continue;
        };
        let payload = crate::message::Payload {
            head: Vec::new(),
            inserts: [(0, event.payload)].into_iter().collect(),
        };
        // Readers settle as they like (or not at all): the log keeps every event anyway.
        if tx.send_encoded(&payload, settled).await.is_err() {
            return;
        }
        next = event.sequence_number + 1;
    }
}

/// `$management`: READ requests for the Event Hub and its partitions.
async fn management(hub: &IotHub, c: Arc<Conn>, request: LinkRequest, options: LinkOptions) {
    let Some(rx) = crate::azure::cbs::accept_pair(request, options, &c.management_reply) else {
        return;
    };
    while let Ok(d) = rx.recv().await {
        let _ = rx.accept(&d);
        let Ok(m) = d.message() else { continue };
        let reply = management_answer(hub, &m);
        if let Some(tx) = c.management_reply.get().await {
            let _ = tx.send_pipelined(&reply).await;
        }
    }
}

fn management_answer(hub: &IotHub, m: &Message) -> Message {
    let props = m.application_properties.as_ref();
    let text = |k: &str| props.and_then(|p| p.get(k).and_then(|v| v.as_str().map(str::to_owned)));
    let config = hub.config();
    let n = hub.inner.log.partitions.len();
    let ids: Vec<Value> = (0..n).map(|i| Value::from(i.to_string())).collect();
    let (code, description, body) = match (text("operation").as_deref(), text("type").as_deref()) {
        (Some("READ"), Some("com.microsoft:eventhub")) => (
            200,
            "OK".to_owned(),
            Value::Map(
                vec![
                    ("name".into(), config.event_hub_name.as_str().into()),
                    ("created_at".into(), crate::codec::Timestamp(0).into()),
                    ("partition_count".into(), (n as i32).into()),
                    (
                        "partition_ids".into(),
                        crate::codec::Array::new(ids).map_or(Value::Null, Value::Array),
                    ),
                ],
                Default::default(),
            ),
        ),
        (Some("READ"), Some("com.microsoft:partition")) => {
            let p = text("partition").and_then(|p| p.parse::<usize>().ok()).filter(|p| *p < n);
            match p {
                None => (404, "no such partition".to_owned(), Value::Null),
                Some(p) => {
                    let log = lock(&hub.inner.log.partitions[p]);
                    let first = log.events.front().map_or(0, |e| e.sequence_number);
                    let last = log.events.back();
                    (
                        200,
                        "OK".to_owned(),
                        Value::Map(
                            vec![
                                ("name".into(), config.event_hub_name.as_str().into()),
                                ("partition".into(), p.to_string().into()),
                                ("begin_sequence_number".into(), first.into()),
                                (
                                    "last_enqueued_sequence_number".into(),
                                    last.map_or(-1, |e| e.sequence_number).into(),
                                ),
                                (
                                    "last_enqueued_offset".into(),
                                    last.map_or("-1".to_owned(), |e| e.offset.to_string()).into(),
                                ),
                                (
                                    "last_enqueued_time_utc".into(),
                                    last.map_or(crate::codec::Timestamp(0), |e| e.enqueued).into(),
                                ),
                                ("is_partition_empty".into(), log.events.is_empty().into()),
                            ],
                            Default::default(),
                        ),
                    )
                }
            }
        }
        (op, ty) => (400, format!("unsupported operation {op:?} on {ty:?}"), Value::Null),
    };
    let mut reply = CbsStatus {
        correlation_id: m.properties.as_ref().and_then(|p| p.message_id.clone()),
        code,
        description: Some(description),
    }
    .to_message();
    reply.body = Body::Value(body);
    reply
}
