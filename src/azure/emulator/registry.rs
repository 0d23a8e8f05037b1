//! The identity registry as the service REST API shows and changes it: devices and
//! modules with their keys, status, generation id and etag. Changes apply at once: a
//! device created here can connect with its key on the next token it puts, a deleted one
//! cannot, a disabled one is refused.
//!
//! The keys themselves stay in [`HubConfig`](super::HubConfig) (`devices`, `modules`),
//! where every token check reads them; what only the REST API shows (the secondary key,
//! status, etag, generation id, how the identity authenticates) is kept here, made on
//! first sight for identities configured at start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Value};

use super::state::{lock, now_ms};
use super::{generate_key, IotHub};
use crate::azure::SasKey;
use crate::codec::Timestamp;

/// Why a REST request failed: its HTTP status, IoT Hub's error code, and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestError {
    /// The HTTP status.
    pub status: u16,
    /// IoT Hub's error code (`DeviceNotFound`, `DeviceAlreadyExists`, `PreconditionFailed`…),
    /// which the SDKs read from the `Message` of the error body.
    pub code: &'static str,
    /// What happened.
    pub message: String,
}

impl RestError {
    pub(super) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub(super) fn bad(message: impl Into<String>) -> Self {
        Self::new(400, "ArgumentInvalid", message)
    }

    pub(super) fn not_found(id: &str) -> Self {
        match id.split_once('/') {
            None => Self::new(404, "DeviceNotFound", format!("no device {id:?} in the registry")),
            Some((d, m)) => Self::new(
                404,
                "ModuleNotFound",
                format!("no module {m:?} of device {d:?} in the registry"),
            ),
        }
    }
}

impl std::fmt::Display for RestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for RestError {}

/// How an identity authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthKind {
    /// SAS tokens signed with its keys.
    Sas,
    /// A TLS client certificate signed by the hub's CA (`HubConfig::x509_ca`).
    CertificateAuthority,
    /// A TLS client certificate known by its thumbprint (self-signed, or from any CA).
    SelfSigned,
}

impl AuthKind {
    fn name(self) -> &'static str {
        match self {
            Self::Sas => "sas",
            Self::CertificateAuthority => "certificateAuthority",
            Self::SelfSigned => "selfSigned",
        }
    }
}

/// A thumbprint as IoT Hub takes it: the SHA-1 (40 hex digits) or SHA-256 (64) of the
/// certificate, any case, colons and spaces allowed; kept in upper case without them.
fn thumbprint(v: &str) -> Result<String, RestError> {
    let hex: String = v.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
    if !(hex.len() == 40 || hex.len() == 64) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(RestError::bad(format!(
            "thumbprint {v:?}: the SHA-1 (40 hex digits) or SHA-256 (64) of the certificate"
        )));
    }
    Ok(hex.to_ascii_uppercase())
}

/// The SHA-1 and SHA-256 thumbprints of a DER certificate, in upper-case hex.
pub(super) fn thumbprints_of(der: &[u8]) -> [String; 2] {
    let hex = |d: ring::digest::Digest| d.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    [
        hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der)),
        hex(ring::digest::digest(&ring::digest::SHA256, der)),
    ]
}

/// What the REST API shows of one identity beyond its primary key.
#[derive(Clone, Debug)]
pub(super) struct Identity {
    secondary: SasKey,
    pub(super) enabled: bool,
    generation: String,
    etag: u64,
    auth: AuthKind,
    /// Primary and secondary thumbprints of a self-signed identity.
    thumbprints: [Option<String>; 2],
    updated: String,
}

impl Identity {
    fn new() -> Self {
        Self {
            secondary: generate_key(),
            enabled: true,
            generation: format!("63{:016}", crate::runtime::random::random_u64() % 10u64.pow(16)),
            etag: 1,
            auth: AuthKind::Sas,
            thumbprints: [None, None],
            updated: Timestamp(now_ms()).to_string(),
        }
    }

    fn etag(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.etag.to_string())
    }
}

/// The registry's REST-only state, by identity (`DEVICE` or `DEVICE/MODULE`).
#[derive(Debug, Default)]
pub(super) struct Registry {
    identities: Mutex<HashMap<String, Identity>>,
    /// Woken when an identity is deleted or disabled: links its claims opened must go.
    changed: tokio::sync::Notify,
}

/// Whether `id` is a valid device or module id: at most 128 characters, ASCII letters,
/// digits and `-.%_*?!(),:=@$'` (IoT Hub's rule; no `/`, which separates the two here).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.%_*?!(),:=@$'".contains(&b))
}

/// An `If-Match` value without its quotes; `*` matches anything.
pub(super) fn if_match_value(v: &str) -> &str {
    v.trim().trim_matches('"')
}

impl IotHub {
    /// The REST-only part of identity `id`, made on first sight for one configured at start;
    /// `None` for an identity not in the registry.
    fn identity(&self, id: &str) -> Option<Identity> {
        if !self.knows(id) {
            return None;
        }
        Some(
            lock(&self.inner.registry.identities)
                .entry(id.to_owned())
                .or_insert_with(Identity::new)
                .clone(),
        )
    }

    /// Identity `id`'s generation id (a device, or `DEVICE/MODULE`), as the registry shows
    /// it and the hub stamps on its messages (`iothub-connection-auth-generation-id`) and
    /// feedback (`deviceGenerationId`); `None` for an identity not in the registry.
    pub fn generation_id(&self, id: &str) -> Option<String> {
        self.identity(id).map(|i| i.generation)
    }

    /// How identity `id` authenticates, when it does not with SAS tokens signed by its
    /// keys: `certificateAuthority` or `selfSigned`.
    pub(super) fn x509_kind(&self, id: &str) -> Option<&'static str> {
        let auth = self.identity(id)?.auth;
        (auth != AuthKind::Sas).then(|| auth.name())
    }

    /// Resolves at the next deletion or disabling of an identity.
    pub(super) fn registry_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.registry.changed.notified()
    }

    /// The secondary key of identity `id`, which signs tokens as well as its primary.
    pub(super) fn secondary_key(&self, id: &str) -> Option<SasKey> {
        self.identity(id).map(|i| i.secondary)
    }

    /// Whether identity `id` (a device, or `DEVICE/MODULE`) is disabled; a module of a
    /// disabled device is too.
    pub(super) fn disabled(&self, id: &str) -> bool {
        let all = lock(&self.inner.registry.identities);
        let off = |k: &str| all.get(k).is_some_and(|i| !i.enabled);
        off(id) || id.split_once('/').is_some_and(|(d, _)| off(d))
    }

    /// The primary key of identity `id` (a device, or `DEVICE/MODULE`).
    pub(super) fn primary_key(&self, id: &str) -> Option<SasKey> {
        let config = self.config();
        match id.split_once('/') {
            None => config.devices.iter().find(|(d, _)| d == id).map(|(_, k)| k.clone()),
            Some((d, m)) => config
                .modules
                .iter()
                .find(|(dd, mm, _)| dd == d && mm == m)
                .map(|(_, _, k)| k.clone()),
        }
    }

    /// Identity `id` as the registry API shows it (a device, or `DEVICE/MODULE` a module).
    pub fn identity_json(&self, id: &str) -> Option<Value> {
        let meta = self.identity(id)?;
        let primary = self.primary_key(id)?;
        let epoch = super::EPOCH;
        let (state, state_updated) = self.connection_state(id);
        let (primary, secondary) = match meta.auth {
            AuthKind::Sas => (json!(primary.to_base64()), json!(meta.secondary.to_base64())),
            AuthKind::CertificateAuthority | AuthKind::SelfSigned => (Value::Null, Value::Null),
        };
        let [t1, t2] = &meta.thumbprints;
        let authentication = json!({
            "symmetricKey": { "primaryKey": primary, "secondaryKey": secondary },
            "x509Thumbprint": { "primaryThumbprint": t1, "secondaryThumbprint": t2 },
            "type": meta.auth.name(),
        });
        let queued = self.queued(id);
        Some(match id.split_once('/') {
            None => json!({
                "deviceId": id,
                "generationId": meta.generation,
                "etag": meta.etag(),
                "connectionState": state,
                "status": if meta.enabled { "enabled" } else { "disabled" },
                "statusReason": null,
                "connectionStateUpdatedTime": state_updated,
                "statusUpdatedTime": meta.updated,
                "lastActivityTime": epoch,
                "cloudToDeviceMessageCount": queued,
                "authentication": authentication,
                "capabilities": { "iotEdge": false },
            }),
            Some((device, module)) => json!({
                "moduleId": module,
                "deviceId": device,
                "managedBy": null,
                "generationId": meta.generation,
                "etag": meta.etag(),
                "connectionState": state,
                "connectionStateUpdatedTime": state_updated,
                "lastActivityTime": epoch,
                "cloudToDeviceMessageCount": 0,
                "authentication": authentication,
            }),
        })
    }

    /// Every device of the registry, as [`IotHub::identity_json`] shows them.
    pub fn list_devices(&self) -> Value {
        let config = self.config();
        Value::Array(config.devices.iter().filter_map(|(id, _)| self.identity_json(id)).collect())
    }

    /// Every module of `device`; `Err` when the device is not in the registry.
    pub fn list_modules(&self, device: &str) -> Result<Value, RestError> {
        if !self.knows(device) {
            return Err(RestError::not_found(device));
        }
        let config = self.config();
        Ok(Value::Array(
            config
                .modules
                .iter()
                .filter(|(d, _, _)| d == device)
                .filter_map(|(d, m, _)| self.identity_json(&format!("{d}/{m}")))
                .collect(),
        ))
    }

    /// Creates or updates identity `id` (a device, or `DEVICE/MODULE`) from its JSON as the
    /// registry API takes it, as IoT Hub does: without `If-Match` only a new identity is
    /// created (an existing one is 409); with `If-Match` (`*` or its etag) only an existing
    /// one is updated (404 when there is none, 412 for another etag). Keys left empty are
    /// made up on creation and kept on update. The identity as it now stands.
    pub fn put_identity(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, RestError> {
        let (device, module) = match id.split_once('/') {
            None => (id, None),
            Some((d, m)) => (d, Some(m)),
        };
        for part in [Some(device), module].into_iter().flatten() {
            if !valid_id(part) {
                return Err(RestError::bad(format!(
                    "{part:?} is not a valid id: 1 to 128 ASCII letters, digits or -.%_*?!(),:=@$'"
                )));
            }
        }
        let Value::Object(body) = body else {
            return Err(RestError::bad("the identity is not a JSON object"));
        };
        let named = |k: &str, want: &str| match body.get(k) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) if s == want => Ok(()),
            Some(other) => {
                Err(RestError::bad(format!("{k} is {other}, but the path names {want:?}")))
            }
        };
        named("deviceId", device)?;
        match module {
            Some(m) => named("moduleId", m)?,
            None if body.get("moduleId").is_some_and(|v| !v.is_null()) => {
                return Err(RestError::bad("a device's identity has no moduleId"));
            }
            None => {}
        }
        let enabled = match body.get("status") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("enabled") => Some(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("disabled") => Some(false),
            Some(other) => {
                return Err(RestError::bad(format!("status is {other}: enabled or disabled")))
            }
        };
        let auth = body.get("authentication").filter(|v| !v.is_null());
        let kind = match auth.and_then(|a| a.get("type")).filter(|v| !v.is_null()) {
            None => None,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("sas") => Some(AuthKind::Sas),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("certificateAuthority") => {
                Some(AuthKind::CertificateAuthority)
            }
            Some(Value::String(s)) if s.eq_ignore_ascii_case("selfSigned") => {
                Some(AuthKind::SelfSigned)
            }
            Some(other) => {
                return Err(RestError::bad(format!(
                    "authentication.type is {other}: sas, selfSigned or certificateAuthority"
                )))
            }
        };
        let print = |name: &str| -> Result<Option<String>, RestError> {
            match auth.and_then(|a| a.get("x509Thumbprint")).and_then(|t| t.get(name)) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => thumbprint(s).map(Some),
                Some(other) => Err(RestError::bad(format!("x509Thumbprint.{name} is {other}"))),
            }
        };
        let prints = [print("primaryThumbprint")?, print("secondaryThumbprint")?];
        if matches!(kind, Some(AuthKind::SelfSigned | AuthKind::CertificateAuthority))
            && !self.asks_client_certificates()
        {
            return Err(RestError::bad(
                "this hub does not ask TLS clients for certificates, so no X.509 device could \
                 authenticate: start it with client certificates on (iothub emulate \
                 --client-certificates, HubConfig::client_certificates) or a CA (--x509-ca)",
            ));
        }
        if kind == Some(AuthKind::SelfSigned) && prints[0].is_none() {
            return Err(RestError::bad(
                "a selfSigned identity needs x509Thumbprint.primaryThumbprint",
            ));
        }
        let key = |name: &str| -> Result<Option<SasKey>, RestError> {
            match auth.and_then(|a| a.get("symmetricKey")).and_then(|k| k.get(name)) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => SasKey::from_base64(s)
                    .map(Some)
                    .map_err(|e| RestError::bad(format!("symmetricKey.{name}: {e}"))),
                Some(other) => Err(RestError::bad(format!("symmetricKey.{name} is {other}"))),
            }
        };
        let (primary, secondary) = (key("primaryKey")?, key("secondaryKey")?);
        if module.is_some() && !self.knows(device) {
            return Err(RestError::not_found(device));
        }
        let exists = self.knows(id);
        match (exists, if_match.map(if_match_value)) {
            (true, None) => {
                let what = if module.is_some() { "module" } else { "device" };
                let code = if module.is_some() {
                    "ModuleAlreadyExistsOnDevice"
                } else {
                    "DeviceAlreadyExists"
                };
                return Err(RestError::new(409, code, format!("{what} {id:?} already exists")));
            }
            (false, Some(_)) => return Err(RestError::not_found(id)),
            (true, Some(tag)) if tag != "*" => {
                let current = self.identity(id).map(|i| i.etag()).unwrap_or_default();
                if tag != current {
                    return Err(RestError::new(
                        412,
                        "PreconditionFailed",
                        format!("the etag {tag:?} is not the current one ({current:?})"),
                    ));
                }
            }
            _ => {}
        }
        // The keys: in the configuration, where every token check reads them.
        if primary.is_some() || !exists {
            self.store_key(id, primary.unwrap_or_else(generate_key));
        }
        if !exists {
            // Its twin is made with it (its sections' $lastUpdated say when).
            self.make_twin(id);
        }
        {
            let mut all = lock(&self.inner.registry.identities);
            let meta = all.entry(id.to_owned()).or_insert_with(Identity::new);
            if exists {
                meta.etag += 1;
            }
            if let Some(s) = secondary {
                meta.secondary = s;
            }
            if let Some(e) = enabled {
                if e != meta.enabled {
                    meta.updated = Timestamp(now_ms()).to_string();
                }
                meta.enabled = e;
            }
            if enabled == Some(false) {
                self.inner.registry.changed.notify_waiters();
            }
            if let Some(k) = kind {
                meta.auth = k;
                meta.thumbprints = if k == AuthKind::SelfSigned { prints } else { [None, None] };
            }
        }
        self.identity_json(id).ok_or_else(|| RestError::not_found(id))
    }

    /// Deletes identity `id` (a device with its modules, twins and queued messages, or
    /// `DEVICE/MODULE` a module); `if_match` is `*` or its etag (412 for another).
    pub fn delete_identity(&self, id: &str, if_match: Option<&str>) -> Result<(), RestError> {
        let Some(meta) = self.identity(id) else { return Err(RestError::not_found(id)) };
        if let Some(tag) = if_match.map(if_match_value) {
            if tag != "*" && tag != meta.etag() {
                return Err(RestError::new(
                    412,
                    "PreconditionFailed",
                    format!("the etag {tag:?} is not the current one ({:?})", meta.etag()),
                ));
            }
        }
        {
            let mut config = lock(&self.inner.config);
            let config = Arc::make_mut(&mut config);
            match id.split_once('/') {
                None => {
                    config.devices.retain(|(d, _)| d != id);
                    config.modules.retain(|(d, _, _)| d != id);
                }
                Some((d, m)) => config.modules.retain(|(dd, mm, _)| !(dd == d && mm == m)),
            }
        }
        let prefix = format!("{id}/");
        lock(&self.inner.registry.identities).retain(|k, _| k != id && !k.starts_with(&prefix));
        self.forget_twins(id);
        lock(&self.inner.queues.devices).remove(id);
        self.inner.registry.changed.notify_waiters();
        Ok(())
    }

    /// Whom a TLS client certificate identifies: the registered device its subject names
    /// when it chains to the hub's CA (`HubConfig::x509_ca`), and every identity (device
    /// or `DEVICE/MODULE`) registered with its SHA-1 or SHA-256 thumbprint. Disabled
    /// identities are left out.
    pub fn x509_identities(&self, peer: &crate::runtime::transport::PeerIdentity) -> Vec<String> {
        let config = self.config();
        let mut ids = Vec::new();
        if let (Some(ca), Some(cn)) = (&config.x509_ca, &peer.subject_cn) {
            // Only a device registered to authenticate so (certificateAuthority): one
            // registered with keys is not let in by a certificate, as IoT Hub does not.
            let registered = config.devices.iter().any(|(d, _)| d == cn);
            let by_ca =
                || self.identity(cn).is_some_and(|i| i.auth == AuthKind::CertificateAuthority);
            if registered && by_ca() && peer.verify_chain(ca.as_bytes()).is_ok() {
                ids.push(cn.clone());
            }
        }
        let prints = thumbprints_of(peer.certificate.as_ref());
        let all = lock(&self.inner.registry.identities);
        for (id, meta) in all.iter() {
            let known = meta.auth == AuthKind::SelfSigned
                && meta.thumbprints.iter().flatten().any(|t| prints.contains(t));
            if known && !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        drop(all);
        ids.retain(|id| self.knows(id) && !self.disabled(id));
        ids.sort();
        ids
    }

    /// Adds device `id` to the registry with `key` (one is made up without), or gives an
    /// existing one that key; the key. For tests and embedding: the REST API does the same
    /// with `PUT /devices/{id}`.
    pub fn register_device(&self, id: &str, key: Option<SasKey>) -> SasKey {
        let key = key.unwrap_or_else(generate_key);
        self.store_key(id, key.clone());
        key
    }

    /// Gives identity `id` (a device, or `DEVICE/MODULE`) primary key `key`, adding it to
    /// the registry if it is not there.
    fn store_key(&self, id: &str, key: SasKey) {
        let mut config = lock(&self.inner.config);
        let config = Arc::make_mut(&mut config);
        match id.split_once('/') {
            None => match config.devices.iter_mut().find(|(d, _)| d == id) {
                Some((_, k)) => *k = key,
                None => config.devices.push((id.to_owned(), key)),
            },
            Some((d, m)) => {
                match config.modules.iter_mut().find(|(dd, mm, _)| dd == d && mm == m) {
                    Some((_, _, k)) => *k = key,
                    None => config.modules.push((d.to_owned(), m.to_owned(), key)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::emulator::HubConfig;

    fn self_signed(print: &str) -> Value {
        json!({ "authentication": { "type": "selfSigned",
            "x509Thumbprint": { "primaryThumbprint": print } } })
    }

    #[test]
    fn thumbprints_are_checked_kept_in_one_form_and_need_a_hub_that_asks_for_certificates() {
        let sha1 = "0a:1b:2c:3d:4e:5f:60:71:82:93:a4:b5:c6:d7:e8:f9:0a:1b:2c:3d";
        // A hub that does not ask TLS clients for certificates refuses X.509 identities.
        let hub = IotHub::new(HubConfig::new("localhost"));
        let e = hub.put_identity("d", &self_signed(sha1), None).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("--client-certificates"), "{e}");
        assert!(!hub.knows("d"), "nothing refused was made");
        let mut config = HubConfig::new("localhost");
        config.client_certificates = true;
        let hub = IotHub::new(config);
        let made = hub.put_identity("d", &self_signed(sha1), None).unwrap();
        let kept = made["authentication"]["x509Thumbprint"]["primaryThumbprint"].clone();
        assert_eq!(kept, "0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D");
        assert_eq!(made["authentication"]["type"], "selfSigned");
        for bad in ["0a1b", "zz1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d"] {
            let e = hub.put_identity("e", &self_signed(bad), None).unwrap_err();
            assert!(e.message.contains("SHA-1"), "{bad}: {e}");
        }
        let none = json!({ "authentication": { "type": "selfSigned" } });
        assert!(hub.put_identity("e", &none, None).unwrap_err().message.contains("primary"));
        // The thumbprints of a certificate are its SHA-1 and SHA-256, in upper-case hex.
        let [one, two] = thumbprints_of(b"abc");
        assert_eq!(one, "A9993E364706816ABA3E25717850C26C9CD0D89D");
        assert_eq!(two, "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
    }
}
