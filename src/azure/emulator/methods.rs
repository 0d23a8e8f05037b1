//! Direct methods, the device side over AMQP: the link pair a device attaches on
//! `/devices/{id}/methods/devicebound` (requests come on its receiver, its answers go on
//! its sender), and [`IotHub::invoke_method`], the service's call.
//!
//! A request carries the application property `IoThub-methodname`, a uuid correlation-id
//! and the JSON payload as data; the device answers with the same correlation-id (the Node
//! SDK writes the uuid as text), the application property `IoThub-status` (an int) and a
//! JSON payload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::nodes::{guarded, Lost};
use super::state::lock;
use super::IotHub;
use crate::codec::{Uuid, ValueRef};
use crate::message::{AnnotationMap, Body, Message};
use crate::runtime::{LinkRequest, Sender};
use crate::types::{MessageId, Properties, Role};

/// The answer to a direct method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodResponse {
    /// `IoThub-status`, as the device set it.
    pub status: i64,
    /// The device's payload (JSON text).
    pub payload: Bytes,
}

/// Why a direct method got no answer, with the HTTP status IoT Hub gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodError {
    /// 404 (device unknown or not listening for methods), 504 (no answer in time).
    pub status: u16,
    /// What happened.
    pub message: String,
}

/// The methods side of a hub: each device's request links, and the calls awaiting answers.
#[derive(Debug, Default)]
pub(super) struct Methods {
    links: Mutex<HashMap<String, Vec<Arc<Sender>>>>,
    pending: Mutex<HashMap<String, oneshot::Sender<MethodResponse>>>,
    /// Woken when a device attaches a method link (for calls that wait for it to connect).
    attached: tokio::sync::Notify,
}

/// A correlation-id as text: a uuid in its 8-4-4-4-12 form, other ids as they are.
fn id_text(id: &MessageId) -> String {
    match id {
        MessageId::Uuid(u) => uuid_text(u),
        MessageId::String(s) => s.to_string(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Binary(b) => crate::inspect::hex(b),
    }
}

pub(super) fn uuid_text(u: &Uuid) -> String {
    let h = crate::inspect::hex(&u.0);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

impl IotHub {
    /// Invokes direct method `name` on device `device` (or module `DEVICE/MODULE`) with a
    /// JSON `payload`, and waits up
    /// to `timeout` for its answer: `Err` with 404 when the device is unknown or has no
    /// method link attached (offline), 504 when it does not answer in time.
    pub async fn invoke_method(
        &self,
        device: &str,
        name: &str,
        payload: &str,
        timeout: Duration,
    ) -> Result<MethodResponse, MethodError> {
        self.invoke_method_connecting(device, name, payload, timeout, Duration::ZERO).await
    }

    /// [`IotHub::invoke_method`] that first waits up to `connect_timeout` for an offline
    /// device to attach its method link (the REST API's `connectTimeoutInSeconds`).
    pub async fn invoke_method_connecting(
        &self,
        device: &str,
        name: &str,
        payload: &str,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<MethodResponse, MethodError> {
        let not_found = |why: String| MethodError { status: 404, message: why };
        if !self.knows(device) {
            return Err(not_found(format!("no device or module {device:?} in the registry")));
        }
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let link = loop {
            let attached = self.inner.methods.attached.notified();
            let link = lock(&self.inner.methods.links).get(device).and_then(|l| l.last().cloned());
            if let Some(link) = link {
                break link;
            }
            if tokio::time::timeout_at(deadline, attached).await.is_err() {
                return Err(not_found(format!(
                    "device {device:?} is not online: it is not listening for direct methods"
                )));
            }
        };
        // A version 4 GUID, as IoT Hub's are: the SDKs write an id of that form back as a
        // uuid, and anything else as text.
        let id = crate::azure::client::random_uuid();
        let (tx, rx) = oneshot::channel();
        let key = uuid_text(&id);
        lock(&self.inner.methods.pending).insert(key.clone(), tx);
        let request = Message {
            properties: Some(Properties {
                correlation_id: Some(MessageId::Uuid(id)),
                ..Properties::default()
            }),
            application_properties: Some(AnnotationMap::from_pairs([("IoThub-methodname", name)])),
            body: Body::Data([Bytes::copy_from_slice(payload.as_bytes())].into()),
            ..Message::default()
        };
        let sent = link.send_settled(&request).await;
        let answer = match sent {
            Err(e) => Err(not_found(format!("the device's method link failed: {e}"))),
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => Ok(r),
                _ => Err(MethodError {
                    status: 504,
                    message: format!(
                        "device {device:?} did not answer {name:?} within {timeout:?}"
                    ),
                }),
            },
        };
        lock(&self.inner.methods.pending).remove(&key);
        answer
    }

    /// How many method links device `device` has attached (requests go to the newest).
    pub fn method_listeners(&self, device: &str) -> usize {
        lock(&self.inner.methods.links).get(device).map_or(0, Vec::len)
    }
}

/// Serves a link a device attached on its methods node.
pub(super) async fn methods_node(
    hub: &IotHub,
    request: LinkRequest,
    options: crate::connection::LinkOptions,
    device: &str,
    lost: Lost<'_>,
) {
    let methods = &hub.inner.methods;
    if request.role() == Role::RECEIVER {
        // The device receives requests: our sender, kept while the link lives (and its
        // claim holds: a device disabled or deleted, or whose token expired, is detached).
        let Ok(tx) = request.accept_sender(Some(options)) else { return };
        let tx = Arc::new(tx);
        lock(&methods.links).entry(device.to_owned()).or_default().push(Arc::clone(&tx));
        methods.attached.notify_waiters();
        guarded(&lost, &*tx, async {
            tx.ended().await;
        })
        .await;
        if let Some(list) = lock(&methods.links).get_mut(device) {
            list.retain(|l| !Arc::ptr_eq(l, &tx));
        }
        return;
    }
    // The device answers: our receiver.
    let Ok(rx) = request.accept_receiver(Some(options), 10) else { return };
    guarded(&lost, &rx, answers(methods, &rx)).await;
}

/// The device's answers on `rx`, each handed to the call that waits for it.
async fn answers(methods: &Methods, rx: &crate::runtime::Receiver) {
    while let Ok(d) = rx.recv().await {
        let _ = rx.accept(&d);
        let Ok(m) = d.message() else { continue };
        let Some(id) = m.properties.as_ref().and_then(|p| p.correlation_id.as_ref()) else {
            continue;
        };
        let status =
            m.application_properties.as_ref().and_then(|a| a.get("IoThub-status")).and_then(|v| {
                match v {
                    ValueRef::Int(n) => Some(i64::from(n)),
                    ValueRef::Long(n) => Some(n),
                    ValueRef::Uint(n) => Some(i64::from(n)),
                    ValueRef::Ulong(n) => i64::try_from(n).ok(),
                    ValueRef::Short(n) => Some(i64::from(n)),
                    ValueRef::Ushort(n) => Some(i64::from(n)),
                    ValueRef::Byte(n) => Some(i64::from(n)),
                    ValueRef::Ubyte(n) => Some(i64::from(n)),
                    ValueRef::Double(f) if f.fract() == 0.0 => Some(f as i64),
                    _ => None,
                }
            });
        let Some(status) = status else { continue };
        let payload = m.body.bytes().unwrap_or_default();
        if let Some(waiter) = lock(&methods.pending).remove(&id_text(id).to_ascii_lowercase()) {
            let _ = waiter.send(MethodResponse { status, payload });
        }
    }
}
