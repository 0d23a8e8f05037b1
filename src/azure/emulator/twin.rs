//! Device twins over AMQP: the link pair a device attaches on `/devices/{id}/twin`, the
//! requests on it (GET the twin, PATCH reported properties, PUT and DELETE the
//! subscription to desired-property updates), and desired updates pushed to subscribers.
//!
//! A request is a message with the message annotations `operation` (`GET`, `PATCH`, `PUT`,
//! `DELETE`) and `resource` (none, `/properties/reported`,
//! `/notifications/twin/properties/desired`), a correlation-id, and for PATCH the JSON
//! patch as its data. The answer, on the device's receiver of the same
//! `com.microsoft:channel-correlation-id`, carries the correlation-id, the annotation
//! `status` (an int: 200, 204, or 400 with a reason) and `version`, and for GET the twin
//! `{"desired": {…, "$version": n}, "reported": {…, "$version": n}}`. Desired updates
//! go to subscribed devices without a correlation-id: the patch with its `$version`. Both
//! links are pre-settled, as the SDKs attach them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::state::lock;
use super::IotHub;
use crate::azure::cbs::ReplyLink;
use crate::codec::Value;
use crate::message::{AnnotationMap, Body, Message};
use crate::runtime::{LinkRequest, Sender};
use crate::types::Properties;

/// The most a twin's desired or reported properties may hold, in IoT Hub's measure
/// ([`twin_size`]): what a peer can make the hub keep per twin is bounded.
pub(super) const TWIN_SECTION_MAX: usize = 32 * 1024;

/// The most a twin's tags may hold, in the same measure.
const TWIN_TAGS_MAX: usize = 8 * 1024;

/// The longest property name, in UTF-8 bytes.
const TWIN_KEY_MAX: usize = 1024;

/// The longest string value, in UTF-8 bytes.
const TWIN_STRING_MAX: usize = 4 * 1024;

/// How deep objects may nest in a section: the values of a section's own properties are
/// at depth 1, so `one.two.….ten.property` is the deepest allowed.
const TWIN_DEPTH_MAX: usize = 10;

/// The most JSON text a section may take: the emulator's own guard on memory, since IoT
/// Hub's measure ([`twin_size`]) counts nothing for control characters, nulls and empty
/// objects.
const TWIN_TEXT_MAX: usize = 1024 * 1024;

/// The size IoT Hub counts for a section: each property's name and value; names and
/// strings by their characters less Unicode control characters, numbers 8, booleans 4,
/// objects and arrays by what they hold.
fn twin_size(m: &serde_json::Map<String, serde_json::Value>) -> usize {
    fn chars(s: &str) -> usize {
        s.chars().filter(|c| !c.is_control()).count()
    }
    fn value(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Null => 0,
            serde_json::Value::Bool(_) => 4,
            serde_json::Value::Number(_) => 8,
            serde_json::Value::String(s) => chars(s),
            serde_json::Value::Array(a) => a.iter().map(value).sum(),
            serde_json::Value::Object(o) => twin_size(o),
        }
    }
    m.iter().map(|(k, v)| chars(k) + value(v)).sum()
}

/// `Err` with what to say when a twin section is larger than IoT Hub allows: tags 8 KB,
/// desired and reported properties 32 KB each, counted by [`twin_size`]; and when its JSON
/// text passes [`TWIN_TEXT_MAX`].
fn within_limit(what: &str, m: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    let limit = if what == "tags" { TWIN_TAGS_MAX } else { TWIN_SECTION_MAX };
    let size = twin_size(m);
    if size > limit {
        return Err(format!(
            "the twin's {what} would be {size} bytes in IoT Hub's measure; at most {limit} \
             are allowed"
        ));
    }
    let text = serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
    if text > TWIN_TEXT_MAX {
        return Err(format!(
            "the twin's {what} would be {text} bytes of JSON; the emulator keeps at most \
             {TWIN_TEXT_MAX}"
        ));
    }
    Ok(())
}

/// `Err` with what to say when a patch (or a replacement) of a twin section breaks IoT
/// Hub's rules for property names and values: a name is 1 to 1,024 UTF-8 bytes with no
/// Unicode control character, `.`, `$` or space; a string value is at most 4 KB; objects
/// nest at most 10 deep ([`TWIN_DEPTH_MAX`]). Names at the top that start with `$` are the
/// hub's own (`$version`, `$metadata`, as a twin read from the hub carries them): they are
/// let through here and left out when the patch is applied ([`without_hub_names`]).
fn check_patch(
    what: &str,
    patch: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    /// The names from the section down to where the check is, joined only for an error.
    fn at(path: &[&str]) -> String {
        path.join(".")
    }
    fn key(what: &str, parent: &[&str], k: &str) -> Result<(), String> {
        let under = if parent.is_empty() { String::new() } else { format!(" (in {})", at(parent)) };
        if k.is_empty() || k.len() > TWIN_KEY_MAX {
            return Err(format!(
                "{what}: a property name{under} is {} bytes long; names are 1 to \
                 {TWIN_KEY_MAX} bytes",
                k.len()
            ));
        }
        if let Some(c) = k.chars().find(|c| c.is_control() || matches!(c, '.' | '$' | ' ')) {
            return Err(format!(
                "{what}: the property name {k:?}{under} holds {c:?}; names may not hold \
                 control characters, '.', '$' or spaces"
            ));
        }
        Ok(())
    }
    fn value<'a>(
        what: &str,
        path: &mut Vec<&'a str>,
        v: &'a serde_json::Value,
        depth: usize,
    ) -> Result<(), String> {
        match v {
            serde_json::Value::String(s) if s.len() > TWIN_STRING_MAX => Err(format!(
                "{what}: the value of {} is a string of {} bytes; at most \
                 {TWIN_STRING_MAX} are allowed",
                at(path),
                s.len()
            )),
            serde_json::Value::Array(a) => {
                a.iter().try_for_each(|item| value(what, path, item, depth))
            }
            serde_json::Value::Object(o) => {
                if depth > TWIN_DEPTH_MAX {
                    return Err(format!(
                        "{what}: {} nests objects deeper than {TWIN_DEPTH_MAX} levels",
                        at(path)
                    ));
                }
                for (k, v) in o {
                    key(what, path, k)?;
                    path.push(k);
                    value(what, path, v, depth + 1)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        key(what, &[], k)?;
        value(what, &mut vec![k.as_str()], v, 1)?;
    }
    Ok(())
}

/// `m` without the hub's own names at its top (`$version`, `$metadata`, …), which a
/// patch or a replacement may carry but never sets.
fn without_hub_names(
    mut m: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    m.retain(|k, _| !k.starts_with('$'));
    m
}

/// The property that pairs a twin's two links.
const CHANNEL: &str = "com.microsoft:channel-correlation-id";

type JsonMap = serde_json::Map<String, serde_json::Value>;

/// One device's twin.
#[derive(Debug)]
pub(super) struct Twin {
    /// The service's tags (never seen by the device).
    tags: JsonMap,
    /// Counts every change of tags, desired or reported: the twin's `version` and etag.
    version: u64,
    desired: Section,
    reported: Section,
    /// The links of devices subscribed to desired updates.
    subscribers: Vec<Arc<Sender>>,
}

/// Desired or reported properties, their `$version`, and the `$metadata` the service sees:
/// when the section last changed, and, mirroring its properties, when each changed (and
/// for desired ones, in which version).
#[derive(Debug)]
struct Section {
    properties: JsonMap,
    version: u64,
    updated: String,
    metadata: JsonMap,
}

impl Section {
    fn new(now: &str) -> Self {
        Self {
            properties: JsonMap::new(),
            version: 1,
            updated: now.to_owned(),
            metadata: JsonMap::new(),
        }
    }

    /// The properties become `new`: the version goes up and what changed is stamped
    /// (`versioned`: with `$lastUpdatedVersion`, as desired properties are). The merge
    /// patch of what changed, if anything did.
    fn set(&mut self, new: JsonMap, versioned: bool) -> Option<JsonMap> {
        let change = diff(&self.properties, &new);
        self.properties = new;
        self.version += 1;
        self.updated = crate::codec::Timestamp(super::state::now_ms()).to_string();
        if let Some(change) = &change {
            let version = versioned.then_some(self.version);
            stamp(&mut self.metadata, change, &self.updated, version);
        }
        change
    }

    /// The section as JSON: the properties and `$version`, with `$metadata` for the
    /// service (a device's GET carries none): when it last changed, and for desired
    /// properties (`versioned`) in which version.
    fn json(&self, metadata: bool, versioned: bool) -> serde_json::Value {
        let mut m = self.properties.clone();
        if metadata {
            let mut meta = self.metadata.clone();
            meta.insert("$lastUpdated".into(), self.updated.clone().into());
            if versioned {
                meta.insert("$lastUpdatedVersion".into(), self.version.into());
            }
            m.insert("$metadata".into(), serde_json::Value::Object(meta));
        }
        m.insert("$version".into(), self.version.into());
        serde_json::Value::Object(m)
    }
}

/// Marks in `metadata` what merge patch `change` changed, at time `at` (and in
/// `version`): a removed property loses its entry; an object's entry is stamped and its
/// changed members within it.
fn stamp(metadata: &mut JsonMap, change: &JsonMap, at: &str, version: Option<u64>) {
    for (k, v) in change {
        if v.is_null() {
            metadata.remove(k);
            continue;
        }
        let entry = metadata.entry(k.clone()).or_insert_with(|| serde_json::json!({}));
        if !entry.is_object() {
            *entry = serde_json::json!({});
        }
        let Some(m) = entry.as_object_mut() else { continue };
        if let serde_json::Value::Object(inner) = v {
            stamp(m, inner, at, version);
        } else {
            // A value that was an object before keeps no entries of its members.
            m.retain(|k, _| k.starts_with('$'));
        }
        m.insert("$lastUpdated".into(), at.into());
        if let Some(version) = version {
            m.insert("$lastUpdatedVersion".into(), version.into());
        }
    }
}

impl Default for Twin {
    /// A new identity's twin, as IoT Hub makes it: `version` 2, etag `AAAAAAAAAAE=`,
    /// desired and reported at `$version` 1, each with its `$metadata`.
    fn default() -> Self {
        let now = crate::codec::Timestamp(super::state::now_ms()).to_string();
        Self {
            tags: JsonMap::new(),
            version: 2,
            desired: Section::new(&now),
            reported: Section::new(&now),
            subscribers: Vec::new(),
        }
    }
}

impl Twin {
    /// Desired and reported properties, with their versions (and with their `$metadata`
    /// for the service).
    fn document(&self, metadata: bool) -> serde_json::Value {
        serde_json::json!({
            "desired": self.desired.json(metadata, true),
            "reported": self.reported.json(metadata, false),
        })
    }

    /// The twin's etag: one less than its version, as 8 big-endian bytes in base64, as
    /// IoT Hub writes it (`AAAAAAAAAAE=` for a new twin, whose version is 2).
    fn etag(&self) -> String {
        use base64::Engine as _;
        let n = self.version.saturating_sub(1);
        base64::engine::general_purpose::STANDARD.encode(n.to_be_bytes())
    }
}

/// How a service changes a twin's desired properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TwinWrite {
    /// `PATCH /twins/{id}`: tags and desired merged (JSON merge patch).
    Patch,
    /// `PUT /twins/{id}`: tags and desired replaced; reported stays the device's.
    Replace,
}

/// The merge patch that turns `old` into `new`: changed and added keys with their new
/// values, removed keys as `null`; `None` when nothing changed.
fn diff(
    old: &serde_json::Map<String, serde_json::Value>,
    new: &serde_json::Map<String, serde_json::Value>,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut patch = serde_json::Map::new();
    for (k, v) in new {
        match (old.get(k), v) {
            (Some(o), n) if o == n => {}
            (Some(serde_json::Value::Object(o)), serde_json::Value::Object(n)) => {
                if let Some(d) = diff(o, n) {
                    patch.insert(k.clone(), serde_json::Value::Object(d));
                }
            }
            _ => {
                patch.insert(k.clone(), v.clone());
            }
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        patch.insert(k.clone(), serde_json::Value::Null);
    }
    (!patch.is_empty()).then_some(patch)
}

/// The twins of a hub.
#[derive(Debug, Default)]
pub(super) struct Twins {
    twins: Mutex<HashMap<String, Twin>>,
}

/// One connection's twin reply links, by channel-correlation-id.
#[derive(Debug, Default)]
pub(super) struct TwinLinks {
    replies: Mutex<HashMap<String, Arc<ReplyLink>>>,
}

impl TwinLinks {
    fn reply(&self, channel: &str) -> Arc<ReplyLink> {
        Arc::clone(lock(&self.replies).entry(channel.to_owned()).or_default())
    }
}

/// The body of a refused twin request: IoT Hub's JSON error with `errorCode` 400004
/// (ArgumentInvalid) and the reason as `message`, which the Node device SDK appends to
/// its own error text.
fn twin_error(why: &str) -> String {
    serde_json::json!({ "errorCode": 400_004, "message": why }).to_string()
}

/// Message annotation keys are symbols.
fn sym(s: &str) -> Value {
    Value::Symbol(s.into(), Default::default())
}

fn long(v: u64) -> Value {
    Value::Long(i64::try_from(v).unwrap_or(i64::MAX), Default::default())
}

/// Applies a JSON merge patch (RFC 7396: `null` removes a property) to `target`, except
/// keys starting with `$`, which are the hub's.
fn merge(
    target: &mut serde_json::Map<String, serde_json::Value>,
    patch: &serde_json::Map<String, serde_json::Value>,
) {
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        match v {
            serde_json::Value::Null => {
                target.remove(k);
            }
            serde_json::Value::Object(p) => {
                let slot = target.entry(k.clone()).or_insert_with(|| serde_json::json!({}));
                if !slot.is_object() {
                    *slot = serde_json::json!({});
                }
                if let serde_json::Value::Object(t) = slot {
                    merge(t, p);
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

impl IotHub {
    /// Updates the desired properties of device `device` (or of module `DEVICE/MODULE`)
    /// with a JSON merge patch (as the service API's twin PATCH does) and pushes the patch
    /// to its subscribed twin links;
    /// the new desired `$version`. `Err` for an unknown device or a patch that is not a
    /// JSON object.
    pub async fn patch_desired(&self, device: &str, patch: &str) -> Result<u64, String> {
        if !self.knows(device) {
            return Err(format!("no device or module {device:?} in the registry"));
        }
        let patch: serde_json::Value =
            serde_json::from_str(patch).map_err(|e| format!("the patch is not JSON: {e}"))?;
        let serde_json::Value::Object(p) = patch else {
            return Err("the patch is not a JSON object".into());
        };
        check_patch("desired properties", &p)?;
        // Devices get what changed, never the hub's own names.
        let p = without_hub_names(p);
        let (version, push) = {
            let mut twins = lock(&self.inner.twins.twins);
            let twin = twins.entry(device.to_owned()).or_default();
            let mut desired = twin.desired.properties.clone();
            merge(&mut desired, &p);
            within_limit("desired properties", &desired)?;
            twin.desired.set(desired, true);
            twin.version += 1;
            (twin.desired.version, (twin.subscribers.clone(), p))
        };
        self.push_desired(device, version, push).await;
        Ok(version)
    }

    /// Sends a desired-properties patch, stamped with its `$version`, to the twin links
    /// subscribed to them; forgets links that went.
    async fn push_desired(
        &self,
        device: &str,
        version: u64,
        (subscribers, patch): (Vec<Arc<Sender>>, serde_json::Map<String, serde_json::Value>),
    ) {
        let mut body = patch;
        body.insert("$version".into(), version.into());
        let push = Message {
            message_annotations: Some(AnnotationMap::from_pairs([(sym("version"), long(version))])),
            body: Body::Data([Bytes::from(serde_json::Value::Object(body).to_string())].into()),
            ..Message::default()
        };
        let mut gone = Vec::new();
        for tx in subscribers {
            if tx.send_settled(&push).await.is_err() {
                gone.push(tx);
            }
        }
        // Links that went (their device disconnected) are subscribed no more.
        if !gone.is_empty() {
            if let Some(twin) = lock(&self.inner.twins.twins).get_mut(device) {
                twin.subscribers.retain(|s| !gone.iter().any(|g| Arc::ptr_eq(s, g)));
            }
        }
    }

    /// Twin `id` (a device, or `DEVICE/MODULE`) as the service API shows it: ids, etag,
    /// version, status, tags, and desired and reported properties with their versions.
    pub fn service_twin(&self, id: &str) -> Option<serde_json::Value> {
        if !self.knows(id) {
            return None;
        }
        let (doc, etag, version, tags) = {
            let mut twins = lock(&self.inner.twins.twins);
            let twin = twins.entry(id.to_owned()).or_default();
            (twin.document(true), twin.etag(), twin.version, twin.tags.clone())
        };
        let identity = self.identity_json(id).unwrap_or_default();
        let field = |k: &str| identity.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let mut twin = serde_json::json!({
            "deviceId": field("deviceId"),
            "etag": etag,
            "deviceEtag": field("etag"),
            "status": identity.get("status").cloned().unwrap_or_else(|| "enabled".into()),
            "statusUpdateTime": super::EPOCH,
            "connectionState": field("connectionState"),
            "lastActivityTime": field("lastActivityTime"),
            "cloudToDeviceMessageCount": field("cloudToDeviceMessageCount"),
            "authenticationType": identity.pointer("/authentication/type").cloned().unwrap_or_default(),
            "x509Thumbprint": { "primaryThumbprint": null, "secondaryThumbprint": null },
            "modelId": "",
            "version": version,
            "tags": tags,
            "properties": doc,
        });
        if let Some((_, module)) = id.split_once('/') {
            twin["moduleId"] = module.into();
        }
        Some(twin)
    }

    /// Changes twin `id` as the service API does (`PATCH` merges tags and desired, `PUT`
    /// replaces them), if `if_match` (`*` or the twin's etag) allows; pushes the change of
    /// desired properties to subscribed devices as a merge patch. The twin as it now stands.
    pub(super) async fn write_twin(
        &self,
        id: &str,
        body: &serde_json::Value,
        if_match: Option<&str>,
        how: TwinWrite,
    ) -> Result<serde_json::Value, super::RestError> {
        use super::RestError;
        if !self.knows(id) {
            return Err(RestError::not_found(id));
        }
        let serde_json::Value::Object(body) = body else {
            return Err(RestError::bad("the twin is not a JSON object"));
        };
        let object = |v: Option<&serde_json::Value>, what: &str| match v {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Object(m)) => Ok(Some(m.clone())),
            Some(other) => Err(RestError::bad(format!("{what} is {other}, not an object"))),
        };
        let tags = object(body.get("tags"), "tags")?;
        let props = object(body.get("properties"), "properties")?;
        let desired = object(props.as_ref().and_then(|p| p.get("desired")), "properties.desired")?;
        if props.as_ref().is_some_and(|p| p.get("reported").is_some_and(|r| !r.is_null())) {
            return Err(RestError::bad("reported properties are the device's to write"));
        }
        if let Some(t) = &tags {
            check_patch("tags", t).map_err(RestError::bad)?;
        }
        if let Some(d) = &desired {
            check_patch("desired properties", d).map_err(RestError::bad)?;
        }
        let pushed = {
            let mut twins = lock(&self.inner.twins.twins);
            let twin = twins.entry(id.to_owned()).or_default();
            if let Some(tag) = if_match.map(super::registry::if_match_value) {
                if tag != "*" && tag != twin.etag() {
                    return Err(RestError::new(
                        412,
                        "PreconditionFailed",
                        format!("the etag {tag:?} is not the twin's ({:?})", twin.etag()),
                    ));
                }
            }
            let (mut new_tags, mut new_desired) =
                (twin.tags.clone(), twin.desired.properties.clone());
            match how {
                TwinWrite::Patch => {
                    if let Some(t) = &tags {
                        merge(&mut new_tags, t);
                    }
                    if let Some(d) = &desired {
                        merge(&mut new_desired, d);
                    }
                }
                TwinWrite::Replace => {
                    // What replaces a section holds no null (nothing to remove) and none
                    // of the hub's own names.
                    let replacement = |m: &Option<serde_json::Map<String, serde_json::Value>>| {
                        let mut m = without_hub_names(m.clone().unwrap_or_default());
                        m.retain(|_, v| !v.is_null());
                        m
                    };
                    new_tags = replacement(&tags);
                    new_desired = replacement(&desired);
                }
            }
            within_limit("tags", &new_tags).map_err(RestError::bad)?;
            within_limit("desired properties", &new_desired).map_err(RestError::bad)?;
            twin.tags = new_tags;
            twin.version += 1;
            // Desired properties that did not change keep their version.
            if new_desired == twin.desired.properties {
                None
            } else {
                let change = twin.desired.set(new_desired, true);
                change.map(|c| (twin.desired.version, (twin.subscribers.clone(), c)))
            }
        };
        if let Some((version, push)) = pushed {
            self.push_desired(id, version, push).await;
        }
        self.service_twin(id).ok_or_else(|| RestError::not_found(id))
    }

    /// Makes identity `id`'s twin, new (a twin left from an identity of that id deleted
    /// before is gone with it already).
    pub(super) fn make_twin(&self, id: &str) {
        lock(&self.inner.twins.twins).entry(id.to_owned()).or_default();
    }

    /// Forgets the twins of identity `id` (and of its modules, for a device).
    pub(super) fn forget_twins(&self, id: &str) {
        let prefix = format!("{id}/");
        lock(&self.inner.twins.twins).retain(|k, _| k != id && !k.starts_with(&prefix));
    }

    /// How many twin links of device `device` are subscribed to desired updates.
    pub fn twin_subscribers(&self, device: &str) -> usize {
        lock(&self.inner.twins.twins).get(device).map_or(0, |t| t.subscribers.len())
    }

    /// Device `device`'s twin as the service sees it: desired and reported, with versions.
    pub fn twin(&self, device: &str) -> serde_json::Value {
        lock(&self.inner.twins.twins).entry(device.to_owned()).or_default().document(true)
    }
}

/// Serves a link a device attached on its twin.
pub(super) async fn twin_node(
    hub: &IotHub,
    links: &TwinLinks,
    request: LinkRequest,
    options: crate::connection::LinkOptions,
    device: &str,
    lost: super::nodes::Lost<'_>,
) {
    let channel = request
        .remote
        .properties
        .as_ref()
        .and_then(|p| p.get(CHANNEL))
        .and_then(|v| match v {
            Value::String(s, _) => Some(s.to_string()),
            Value::Symbol(s, _) => Some(s.as_str().to_owned()),
            _ => None,
        })
        .unwrap_or_default();
    let reply = links.reply(&channel);
    let Some(rx) = crate::azure::cbs::accept_pair(request, options, &reply) else {
        // The device's receiver: our reply link, closed when the device's claim is lost
        // (disabled, deleted, its token expired), as its requests' link is.
        if let Some(tx) = reply.get().await {
            super::nodes::guarded(&lost, &*tx, async {
                tx.ended().await;
            })
            .await;
        }
        return;
    };
    // The reply link this device subscribed with, to let go of when its requests end.
    let mut subscribed: Option<Arc<Sender>> = None;
    super::nodes::guarded(&lost, &rx, requests(hub, &rx, &reply, device, &mut subscribed)).await;
    // The device's twin links went (a detach, its connection closed, its claim lost): it
    // is subscribed no more, at once rather than when a push to it fails.
    if let Some(tx) = subscribed {
        if let Some(twin) = lock(&hub.inner.twins.twins).get_mut(device) {
            twin.subscribers.retain(|s| !Arc::ptr_eq(s, &tx));
        }
    }
}

/// The device's twin requests on `rx`, each answered on its reply link.
async fn requests(
    hub: &IotHub,
    rx: &crate::runtime::Receiver,
    reply: &crate::azure::cbs::ReplyLink,
    device: &str,
    subscribed: &mut Option<Arc<Sender>>,
) {
    while let Ok(d) = rx.recv().await {
        let _ = rx.accept(&d);
        let Ok(m) = d.message() else { continue };
        let annotation = |k: &str| {
            m.message_annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .and_then(|v| v.as_str().map(str::to_owned))
        };
        let operation = annotation("operation").unwrap_or_default();
        let resource = annotation("resource").unwrap_or_default();
        let Some(tx) = reply.get().await else { continue };
        // A reported patch is read and checked before the twins are locked.
        let reported_patch =
            (operation == "PATCH" && resource == "/properties/reported").then(|| {
                let data = m.body.bytes().unwrap_or_default();
                match serde_json::from_slice::<serde_json::Value>(&data) {
                    Ok(serde_json::Value::Object(p)) => {
                        check_patch("reported properties", &p).map(|()| p)
                    }
                    _ => Err("the patch is not a JSON object".to_owned()),
                }
            });
        let (status, version, body) = {
            let mut twins = lock(&hub.inner.twins.twins);
            let twin = twins.entry(device.to_owned()).or_default();
            match (operation.as_str(), resource.as_str()) {
                ("GET", "") => (200, None, Some(twin.document(false).to_string())),
                ("PATCH", "/properties/reported") => {
                    let checked = reported_patch
                        .unwrap_or_else(|| Err("the patch is not a JSON object".to_owned()));
                    match checked.and_then(|p| {
                        let mut reported = twin.reported.properties.clone();
                        merge(&mut reported, &p);
                        within_limit("reported properties", &reported).map(|()| reported)
                    }) {
                        Ok(reported) => {
                            twin.reported.set(reported, false);
                            twin.version += 1;
                            (204, Some(twin.reported.version), None)
                        }
                        Err(why) => (400, None, Some(twin_error(&why))),
                    }
                }
                ("PUT", "/notifications/twin/properties/desired") => {
                    twin.subscribers.retain(|s| !Arc::ptr_eq(s, &tx));
                    twin.subscribers.push(Arc::clone(&tx));
                    *subscribed = Some(Arc::clone(&tx));
                    (200, None, None)
                }
                ("DELETE", "/notifications/twin/properties/desired") => {
                    twin.subscribers.retain(|s| !Arc::ptr_eq(s, &tx));
                    *subscribed = None;
                    (200, None, None)
                }
                (op, res) => {
                    (400, None, Some(twin_error(&format!("no twin operation {op:?} on {res:?}"))))
                }
            }
        };
        let mut pairs = vec![(sym("status"), Value::Int(status, Default::default()))];
        if let Some(v) = version {
            pairs.push((sym("version"), long(v)));
        }
        let correlation_id = m.properties.as_ref().and_then(|p| p.correlation_id.clone());
        let answer = Message {
            properties: Some(Properties { correlation_id, ..Properties::default() }),
            message_annotations: Some(AnnotationMap::from_pairs(pairs)),
            body: body.map_or(Body::Empty, |b| Body::Data([Bytes::from(b)].into())),
            ..Message::default()
        };
        let _ = tx.send_settled(&answer).await;
    }
}
