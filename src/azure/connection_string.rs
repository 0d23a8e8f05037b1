//! IoT Hub and Event Hubs connection strings: `Key=Value` pairs separated by `;`.

use std::fmt;
use std::str::FromStr;

use super::sas::{device_resource_uri, percent_encode, SasError, SasKey, SasToken};

/// A connection string of either kind, told apart by its first key: `HostName` (IoT
/// Hub) or `Endpoint` (Event Hubs).
///
/// ```
/// use amqpwire::azure::ConnectionString;
///
/// let cs: ConnectionString =
///     "HostName=myhub.azure-devices.net;DeviceId=d1;SharedAccessKey=cGFzc3dvcmQ=".parse()?;
/// assert_eq!(cs.resource_uri(), "myhub.azure-devices.net/devices/d1");
/// let token = cs.sas_token(1_700_000_000)?;
/// assert_eq!(token.sr(), "myhub.azure-devices.net%2Fdevices%2Fd1");
/// assert_eq!(token.key_name(), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionString {
    /// `HostName=…;…`
    IotHub(IotHubConnectionString),
    /// `Endpoint=sb://…/;…`
    EventHubs(EventHubsConnectionString),
}

impl ConnectionString {
    /// The resource URI a token made from this string is for (not encoded).
    pub fn resource_uri(&self) -> String {
        match self {
            Self::IotHub(c) => c.resource_uri(),
            Self::EventHubs(c) => c.resource_uri(),
        }
    }

    /// The credential: a key or a ready-made token.
    pub fn credential(&self) -> &Credential {
        match self {
            Self::IotHub(c) => c.credential(),
            Self::EventHubs(c) => c.credential(),
        }
    }

    /// A token for [`resource_uri`](Self::resource_uri) expiring at `expiry` (seconds since
    /// the Unix epoch), or the string's own `SharedAccessSignature`, whose expiry stands.
    ///
    /// # Errors
    ///
    /// [`SasError::NoKey`] for an X.509 device's string (`x509=true`).
    pub fn sas_token(&self, expiry: u64) -> Result<SasToken, SasError> {
        match self {
            Self::IotHub(c) => c.sas_token(expiry),
            Self::EventHubs(c) => c.sas_token(expiry),
        }
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, ConnectionStringError> {
        // Told apart case-insensitively so that `hostname=…` gets the IoT Hub parser's
        // "did you mean HostName" rather than "neither kind".
        let has = |key: &str| pairs(s).map(|p| p.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)));
        if has(HOST_NAME)? {
            s.parse().map(Self::IotHub)
        } else if has(ENDPOINT)? {
            s.parse().map(Self::EventHubs)
        } else {
            Err(ConnectionStringError::UnknownKind)
        }
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IotHub(c) => c.fmt(f),
            Self::EventHubs(c) => c.fmt(f),
        }
    }
}

/// How a connection string authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `SharedAccessKey`: a key to sign tokens with.
    SharedAccessKey(SasKey),
    /// `SharedAccessSignature`: a token made elsewhere, used as it is until it expires.
    SharedAccessSignature(SasToken),
    /// `x509=true` (a device's string): the device authenticates with its TLS client
    /// certificate, and has no key to sign tokens with.
    X509,
}

impl Credential {
    /// A token for `resource_uri` (not encoded): signed with the key, `skn` = `key_name`,
    /// expiring at `expiry` (seconds since the Unix epoch); or the connection string's own
    /// token, whose resource and expiry stand.
    ///
    /// # Errors
    ///
    /// [`SasError::EmptyField`] when `resource_uri` is empty; [`SasError::NoKey`] for an
    /// X.509 device, which has no key.
    pub fn token(
        &self,
        resource_uri: &str,
        key_name: Option<&str>,
        expiry: u64,
    ) -> Result<SasToken, SasError> {
        match self {
            Self::SharedAccessKey(key) => SasToken::new(resource_uri, key, key_name, expiry),
            Self::SharedAccessSignature(token) => Ok(token.clone()),
            Self::X509 => Err(SasError::NoKey),
        }
    }
}

/// An Azure IoT Hub connection string.
///
/// - Service (a shared access policy): `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
///   Tokens are for the whole hub (resource `{HostName}`) with `skn` = the policy.
/// - Device: `HostName=…;DeviceId=…;SharedAccessKey=…`, with `ModuleId=…` for a module
///   and `GatewayHostName=…` behind an IoT Edge gateway. Tokens are for
///   `{HostName}/devices/{DeviceId}[/modules/{ModuleId}]`, without `skn`; with a
///   `SharedAccessKeyName` the key is a policy's, signing on the device's behalf, and
///   `skn` is set.
///
/// `SharedAccessSignature=SharedAccessSignature sr=…` may stand in for the key, and for a
/// device `x509=true` says it authenticates with its TLS client certificate instead (the
/// Azure SDKs' form; it has no key then, and makes no token). Keys are
/// case-sensitive, as most Azure SDKs treat them; a value is everything after the first
/// `=` of its pair (base64 keys end in `=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IotHubConnectionString {
    host_name: String,
    device_id: Option<String>,
    module_id: Option<String>,
    shared_access_key_name: Option<String>,
    credential: Credential,
    gateway_host_name: Option<String>,
}

impl IotHubConnectionString {
    /// `HostName`: the hub, such as `myhub.azure-devices.net`.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// `DeviceId`, for a device connection string.
    pub fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    /// `ModuleId`, for a module of the device.
    pub fn module_id(&self) -> Option<&str> {
        self.module_id.as_deref()
    }

    /// `SharedAccessKeyName`: the shared access policy the key belongs to.
    pub fn shared_access_key_name(&self) -> Option<&str> {
        self.shared_access_key_name.as_deref()
    }

    /// `SharedAccessKey` or `SharedAccessSignature`.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// `GatewayHostName`: the IoT Edge gateway a device connects through.
    pub fn gateway_host_name(&self) -> Option<&str> {
        self.gateway_host_name.as_deref()
    }

    /// Whether this is a device (or module) connection string, rather than a service one.
    pub fn is_device(&self) -> bool {
        self.device_id.is_some()
    }

    /// The resource URI its tokens are for (not encoded): `{HostName}` for a service
    /// string, `{HostName}/devices/{DeviceId}[/modules/{ModuleId}]` for a device.
    pub fn resource_uri(&self) -> String {
        match &self.device_id {
            Some(d) => device_resource_uri(&self.host_name, d, self.module_id.as_deref()),
            None => self.host_name.clone(),
        }
    }

    /// A token for [`resource_uri`](Self::resource_uri) expiring at `expiry` (seconds since
    /// the Unix epoch), signed with the key and `skn` = `SharedAccessKeyName` if any; or
    /// the string's own `SharedAccessSignature`, whose expiry stands.
    ///
    /// # Errors
    ///
    /// [`SasError::NoKey`] for an X.509 device's string (`x509=true`).
    pub fn sas_token(&self, expiry: u64) -> Result<SasToken, SasError> {
        sign(&self.credential, self.resource_uri(), self.shared_access_key_name.as_deref(), expiry)
    }
}

impl FromStr for IotHubConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, ConnectionStringError> {
        use ConnectionStringError as E;
        let kind = ConnectionStringKind::IotHub;
        let [host_name, device_id, module_id, key_name, key, signature, gateway, x509] =
            fields(s, kind, &IOT_HUB_KEYS)?;
        let host_name = host_name.ok_or(E::MissingKey { key: HOST_NAME, kind })?;
        if module_id.is_some() && device_id.is_none() {
            return Err(E::ModuleIdWithoutDeviceId);
        }
        let x509 = match x509 {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => return Err(E::InvalidBool { key: X509, value: v.to_owned() }),
        };
        let credential = match (x509, key, signature) {
            (true, None, None) if device_id.is_some() => Credential::X509,
            (true, None, None) => return Err(E::MissingKey { key: DEVICE_ID, kind }),
            (true, ..) => return Err(E::X509WithKey),
            (false, ..) => credential(key, signature, kind)?,
        };
        if device_id.is_none()
            && key_name.is_none()
            && matches!(credential, Credential::SharedAccessKey(_))
        {
            return Err(E::MissingKeyName);
        }
        Ok(Self {
            host_name: host_name.to_owned(),
            device_id: device_id.map(str::to_owned),
            module_id: module_id.map(str::to_owned),
            shared_access_key_name: key_name.map(str::to_owned),
            credential,
            gateway_host_name: gateway.map(str::to_owned),
        })
    }
}

impl fmt::Display for IotHubConnectionString {
    /// Writes the pairs in the order `HostName; DeviceId; ModuleId; SharedAccessKeyName;
    /// SharedAccessKey | SharedAccessSignature; GatewayHostName`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HOST_NAME}={}", self.host_name)?;
        write_opt(f, DEVICE_ID, self.device_id.as_deref())?;
        write_opt(f, MODULE_ID, self.module_id.as_deref())?;
        write_opt(f, SHARED_ACCESS_KEY_NAME, self.shared_access_key_name.as_deref())?;
        write_credential(f, &self.credential, false)?;
        write_opt(f, GATEWAY_HOST_NAME, self.gateway_host_name.as_deref())
    }
}

/// An Azure Event Hubs (or Service Bus) connection string:
/// `Endpoint=sb://{namespace}/;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=…]`.
///
/// Reading the device-to-cloud events of an IoT Hub goes through its built-in Event Hub
/// with such a string, made of the hub's policy name and key. `SharedAccessSignature=…`
/// may stand in for the key; `UseDevelopmentEmulator=true` marks the local emulator.
/// Tokens are for `{Endpoint}{EntityPath}`, such as `sb://ns.servicebus.windows.net/hub`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventHubsConnectionString {
    endpoint: String,
    shared_access_key_name: Option<String>,
    credential: Credential,
    entity_path: Option<String>,
    use_development_emulator: bool,
}

impl EventHubsConnectionString {
    /// `Endpoint` as written, such as `sb://ns.servicebus.windows.net/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The host (and port, if the endpoint names one) of the endpoint: where to connect.
    pub fn host(&self) -> &str {
        endpoint_host(&self.endpoint).unwrap_or_default()
    }

    /// `SharedAccessKeyName`: the policy the key belongs to.
    pub fn shared_access_key_name(&self) -> Option<&str> {
        self.shared_access_key_name.as_deref()
    }

    /// `SharedAccessKey` or `SharedAccessSignature`.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// `EntityPath`: the event hub's name.
    pub fn entity_path(&self) -> Option<&str> {
        self.entity_path.as_deref()
    }

    /// `UseDevelopmentEmulator=true`.
    pub fn use_development_emulator(&self) -> bool {
        self.use_development_emulator
    }

    /// The resource URI its tokens are for (not encoded): the endpoint, a `/`, and the
    /// entity path if any.
    pub fn resource_uri(&self) -> String {
        let mut uri = self.endpoint.clone();
        if !uri.ends_with('/') {
            uri.push('/');
        }
        uri.push_str(self.entity_path.as_deref().unwrap_or_default());
        uri
    }

    /// A token for [`resource_uri`](Self::resource_uri) expiring at `expiry` (seconds since
    /// the Unix epoch), with `skn` = `SharedAccessKeyName`; or the string's own
    /// `SharedAccessSignature`, whose expiry stands. (Event Hubs strings always have a
    /// key or a token: this never fails for them.)
    ///
    /// # Errors
    ///
    /// None in practice; the type is [`IotHubConnectionString::sas_token`]'s.
    pub fn sas_token(&self, expiry: u64) -> Result<SasToken, SasError> {
        sign(&self.credential, self.resource_uri(), self.shared_access_key_name.as_deref(), expiry)
    }
}

impl FromStr for EventHubsConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, ConnectionStringError> {
        use ConnectionStringError as E;
        let kind = ConnectionStringKind::EventHubs;
        let [endpoint, key_name, key, signature, entity_path, emulator] =
            fields(s, kind, &EVENT_HUBS_KEYS)?;
        let endpoint = endpoint.ok_or(E::MissingKey { key: ENDPOINT, kind })?;
        if endpoint_host(endpoint).is_none() {
            return Err(E::InvalidEndpoint(endpoint.to_owned()));
        }
        let credential = credential(key, signature, kind)?;
        if key_name.is_none() && matches!(credential, Credential::SharedAccessKey(_)) {
            return Err(E::MissingKey { key: SHARED_ACCESS_KEY_NAME, kind });
        }
        let use_development_emulator = match emulator {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(E::InvalidBool { key: USE_DEVELOPMENT_EMULATOR, value: v.to_owned() })
            }
        };
        Ok(Self {
            endpoint: endpoint.to_owned(),
            shared_access_key_name: key_name.map(str::to_owned),
            credential,
            entity_path: entity_path.map(str::to_owned),
            use_development_emulator,
        })
    }
}

impl fmt::Display for EventHubsConnectionString {
    /// Writes the pairs in the order `Endpoint; SharedAccessKeyName; SharedAccessKey |
    /// SharedAccessSignature; EntityPath; UseDevelopmentEmulator`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ENDPOINT}={}", self.endpoint)?;
        write_opt(f, SHARED_ACCESS_KEY_NAME, self.shared_access_key_name.as_deref())?;
        write_credential(f, &self.credential, true)?;
        write_opt(f, ENTITY_PATH, self.entity_path.as_deref())?;
        if self.use_development_emulator {
            write!(f, ";{USE_DEVELOPMENT_EMULATOR}=true")?;
        }
        Ok(())
    }
}

/// Which kind of connection string, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionStringKind {
    /// `HostName=…`
    IotHub,
    /// `Endpoint=…`
    EventHubs,
}

impl fmt::Display for ConnectionStringKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IotHub => "IoT Hub",
            Self::EventHubs => "Event Hubs",
        })
    }
}

/// What is wrong with a connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionStringError {
    /// Nothing but separators and whitespace.
    Empty,
    /// A part without `=`.
    MissingEquals(String),
    /// A part with nothing before its `=`.
    EmptyKey,
    /// A key with nothing after its `=`.
    EmptyValue(String),
    /// A key given twice.
    DuplicateKey(String),
    /// A key this kind of connection string does not have.
    UnknownKey {
        /// The key as written.
        key: String,
        /// The kind of connection string.
        kind: ConnectionStringKind,
        /// The known key it equals but for case.
        did_you_mean: Option<&'static str>,
    },
    /// Neither `HostName` (IoT Hub) nor `Endpoint` (Event Hubs).
    UnknownKind,
    /// A required key is missing.
    MissingKey {
        /// The key.
        key: &'static str,
        /// The kind of connection string.
        kind: ConnectionStringKind,
    },
    /// Neither `SharedAccessKey` nor `SharedAccessSignature`.
    MissingCredential(ConnectionStringKind),
    /// Both `SharedAccessKey` and `SharedAccessSignature`.
    ConflictingCredentials,
    /// `x509=true` beside a `SharedAccessKey` or `SharedAccessSignature`.
    X509WithKey,
    /// An IoT Hub string with a `SharedAccessKey` but neither a `DeviceId` (a device key)
    /// nor a `SharedAccessKeyName` (a policy key).
    MissingKeyName,
    /// `ModuleId` without `DeviceId`.
    ModuleIdWithoutDeviceId,
    /// `SharedAccessKey` is not a valid key.
    InvalidKey(SasError),
    /// `SharedAccessSignature` is not a valid token.
    InvalidSignature(SasError),
    /// `Endpoint` is not `scheme://host…`.
    InvalidEndpoint(String),
    /// A key that takes `true` or `false` has another value.
    InvalidBool {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

impl fmt::Display for ConnectionStringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("connection string is empty"),
            Self::MissingEquals(p) => write!(f, "connection string part `{p}` is not Key=Value"),
            Self::EmptyKey => f.write_str("connection string has a part with no key before `=`"),
            Self::EmptyValue(k) => write!(f, "connection string key {k} has an empty value"),
            Self::DuplicateKey(k) => write!(f, "connection string key {k} appears twice"),
            Self::UnknownKey { key, kind, did_you_mean: Some(known) } => write!(
                f,
                "unknown key `{key}` in {kind} connection string (keys are case-sensitive: did you mean {known}?)"
            ),
            Self::UnknownKey { key, kind, did_you_mean: None } => {
                write!(f, "unknown key `{key}` in {kind} connection string")
            }
            Self::UnknownKind => f.write_str(
                "connection string has neither HostName (IoT Hub) nor Endpoint (Event Hubs)",
            ),
            Self::MissingKey { key, kind } => write!(f, "{kind} connection string has no {key}"),
            Self::MissingCredential(kind) => write!(
                f,
                "{kind} connection string has neither SharedAccessKey nor SharedAccessSignature"
            ),
            Self::ConflictingCredentials => f.write_str(
                "connection string has both SharedAccessKey and SharedAccessSignature; give one",
            ),
            Self::X509WithKey => f.write_str(
                "IoT Hub connection string has x509=true and a SharedAccessKey or \
                 SharedAccessSignature: an X.509 device has no key; give one or the other",
            ),
            Self::MissingKeyName => f.write_str(
                "IoT Hub connection string with a SharedAccessKey needs SharedAccessKeyName \
                 (a policy key) or DeviceId (a device key)",
            ),
            Self::ModuleIdWithoutDeviceId => {
                f.write_str("IoT Hub connection string has ModuleId but no DeviceId")
            }
            Self::InvalidKey(e) => write!(f, "connection string SharedAccessKey: {e}"),
            Self::InvalidSignature(e) => write!(f, "connection string SharedAccessSignature: {e}"),
            Self::InvalidEndpoint(e) => write!(
                f,
                "connection string Endpoint {e:?} is not a URI such as sb://<namespace>.servicebus.windows.net/"
            ),
            Self::InvalidBool { key, value } => {
                write!(f, "connection string key {key} is {value:?}, not true or false")
            }
        }
    }
}

impl std::error::Error for ConnectionStringError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidKey(e) | Self::InvalidSignature(e) => Some(e),
            _ => None,
        }
    }
}

const HOST_NAME: &str = "HostName";
const DEVICE_ID: &str = "DeviceId";
const MODULE_ID: &str = "ModuleId";
const SHARED_ACCESS_KEY_NAME: &str = "SharedAccessKeyName";
const SHARED_ACCESS_KEY: &str = "SharedAccessKey";
const SHARED_ACCESS_SIGNATURE: &str = "SharedAccessSignature";
const GATEWAY_HOST_NAME: &str = "GatewayHostName";
const ENDPOINT: &str = "Endpoint";
const ENTITY_PATH: &str = "EntityPath";
const USE_DEVELOPMENT_EMULATOR: &str = "UseDevelopmentEmulator";

const IOT_HUB_KEYS: [&str; 8] = [
    HOST_NAME,
    DEVICE_ID,
    MODULE_ID,
    SHARED_ACCESS_KEY_NAME,
    SHARED_ACCESS_KEY,
    SHARED_ACCESS_SIGNATURE,
    GATEWAY_HOST_NAME,
    X509,
];

/// The key the Azure SDKs' device connection strings carry for an X.509 device.
const X509: &str = "x509";

const EVENT_HUBS_KEYS: [&str; 6] = [
    ENDPOINT,
    SHARED_ACCESS_KEY_NAME,
    SHARED_ACCESS_KEY,
    SHARED_ACCESS_SIGNATURE,
    ENTITY_PATH,
    USE_DEVELOPMENT_EMULATOR,
];

/// Splits into `(key, value)` pairs: `;` between pairs (empty parts, such as a trailing
/// `;`, skipped), the first `=` of each between key and value, whitespace around each key
/// and value dropped (`HostName=h; DeviceId=d` is two pairs, as the Azure SDKs read it).
/// Keys are unique and values non-empty. Trimming each value, not only the whole string,
/// makes the printed form parse back to the same values: a value that ended in whitespace
/// kept it inside the string but lost it at the string's end (found by fuzzing).
fn pairs(s: &str) -> Result<Vec<(&str, &str)>, ConnectionStringError> {
    use ConnectionStringError as E;
    let mut out: Vec<(&str, &str)> = Vec::new();
    for part in s.split(';').filter(|p| !p.trim().is_empty()) {
        let (key, value) = part.split_once('=').ok_or_else(|| E::MissingEquals(part.to_owned()))?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(E::EmptyKey);
        }
        if value.is_empty() {
            return Err(E::EmptyValue(key.to_owned()));
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(E::DuplicateKey(key.to_owned()));
        }
        out.push((key, value));
    }
    if out.is_empty() {
        return Err(E::Empty);
    }
    Ok(out)
}

/// The values of the `known` keys, in their order; any other key is an error.
fn fields<'a, const N: usize>(
    s: &'a str,
    kind: ConnectionStringKind,
    known: &[&'static str; N],
) -> Result<[Option<&'a str>; N], ConnectionStringError> {
    let mut values = [None; N];
    for (key, value) in pairs(s)? {
        let Some(slot) = known.iter().position(|k| *k == key).and_then(|i| values.get_mut(i))
        else {
            let did_you_mean = known.iter().copied().find(|k| k.eq_ignore_ascii_case(key));
            return Err(ConnectionStringError::UnknownKey {
                key: key.to_owned(),
                kind,
                did_you_mean,
            });
        };
        *slot = Some(value);
    }
    Ok(values)
}

fn credential(
    key: Option<&str>,
    signature: Option<&str>,
    kind: ConnectionStringKind,
) -> Result<Credential, ConnectionStringError> {
    use ConnectionStringError as E;
    match (key, signature) {
        (Some(_), Some(_)) => Err(E::ConflictingCredentials),
        // Event Hubs keys the HMAC with the key's text; IoT Hub with its base64 decoding.
        (Some(k), None) if kind == ConnectionStringKind::EventHubs => {
            SasKey::from_text(k).map(Credential::SharedAccessKey).map_err(E::InvalidKey)
        }
        (Some(k), None) => {
            SasKey::from_base64(k).map(Credential::SharedAccessKey).map_err(E::InvalidKey)
        }
        (None, Some(t)) => {
            t.parse().map(Credential::SharedAccessSignature).map_err(E::InvalidSignature)
        }
        (None, None) => Err(E::MissingCredential(kind)),
    }
}

/// The host (and port) of `scheme://host[:port][/path]`, `None` if it has no scheme or
/// host.
fn endpoint_host(endpoint: &str) -> Option<&str> {
    let (scheme, rest) = endpoint.split_once("://")?;
    let host = rest.split('/').next().unwrap_or_default();
    (!scheme.is_empty() && !host.is_empty()).then_some(host)
}

fn sign(
    credential: &Credential,
    resource_uri: String,
    key_name: Option<&str>,
    expiry: u64,
) -> Result<SasToken, SasError> {
    match credential {
        // The resource URI is never empty: it holds the non-empty host or endpoint.
        Credential::SharedAccessKey(key) => {
            Ok(SasToken::sign(percent_encode(&resource_uri), resource_uri, key, key_name, expiry))
        }
        Credential::SharedAccessSignature(token) => Ok(token.clone()),
        Credential::X509 => Err(SasError::NoKey),
    }
}

fn write_opt(f: &mut fmt::Formatter<'_>, key: &str, value: Option<&str>) -> fmt::Result {
    match value {
        Some(v) => write!(f, ";{key}={v}"),
        None => Ok(()),
    }
}

/// Writes the credential pair; an Event Hubs key (`text_key`) is written as its text.
fn write_credential(
    f: &mut fmt::Formatter<'_>,
    credential: &Credential,
    text_key: bool,
) -> fmt::Result {
    match credential {
        Credential::SharedAccessKey(k) if text_key => {
            write!(f, ";{SHARED_ACCESS_KEY}={}", String::from_utf8_lossy(k.as_bytes()))
        }
        Credential::SharedAccessKey(k) => write!(f, ";{SHARED_ACCESS_KEY}={}", k.to_base64()),
        Credential::SharedAccessSignature(t) => write!(f, ";{SHARED_ACCESS_SIGNATURE}={t}"),
        Credential::X509 => write!(f, ";{X509}=true"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    const KEY_0_31: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn iot(s: &str) -> Result<IotHubConnectionString, ConnectionStringError> {
        s.parse()
    }

    fn eh(s: &str) -> Result<EventHubsConnectionString, ConnectionStringError> {
        s.parse()
    }

    #[test]
    fn an_x509_device_s_string_has_no_key_and_makes_no_token() {
        let cs = iot("HostName=h;DeviceId=d;x509=true").expect("an X.509 device's string");
        assert_eq!(cs.credential(), &Credential::X509);
        assert_eq!(cs.to_string(), "HostName=h;DeviceId=d;x509=true");
        assert_eq!(cs.sas_token(1), Err(SasError::NoKey));
        // x509=false is as if it were absent: a key is needed then.
        assert!(iot("HostName=h;DeviceId=d;x509=false").is_err());
        assert!(
            iot(&format!("HostName=h;DeviceId=d;x509=false;SharedAccessKey={KEY_0_31}")).is_ok()
        );
        assert_eq!(
            iot(&format!("HostName=h;DeviceId=d;x509=true;SharedAccessKey={KEY_0_31}")),
            Err(ConnectionStringError::X509WithKey)
        );
        assert!(matches!(
            iot("HostName=h;x509=true"),
            Err(ConnectionStringError::MissingKey { key: "DeviceId", .. })
        ));
        assert!(matches!(
            iot("HostName=h;DeviceId=d;x509=yes"),
            Err(ConnectionStringError::InvalidBool { key: "x509", .. })
        ));
    }

    #[test]
    fn event_hubs_keys_sign_with_their_text() {
        // Event Hubs keys the HMAC with the key's text (what azure-eventhub does with
        // key.encode()), not with its base64 decoding as IoT Hub does.
        let cs = eh(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;\
             SharedAccessKey={KEY_0_31};EntityPath=hub"
        ))
        .unwrap();
        assert_eq!(
            cs.sas_token(1_700_000_000).expect("a key").to_string(),
            "SharedAccessSignature sr=sb%3A%2F%2Fns.servicebus.windows.net%2Fhub\
             &sig=lS43vbWorWga1iv7dhAynY8Pjdbo%2Bhb3RtsVMMsKVLY%3D&se=1700000000&skn=k"
        );
        // The same key given to IoT Hub, moved to its Event Hub endpoint, signs the same.
        let Credential::SharedAccessKey(text) = cs.credential() else { unreachable!() };
        let hub_key = SasKey::from_base64(KEY_0_31).unwrap();
        assert_eq!(hub_key.event_hubs_key(), *text);
        // A key that is not base64 is still a key to Event Hubs, and prints as given.
        let odd = eh("Endpoint=sb://h/;SharedAccessKeyName=k;SharedAccessKey=not base64!").unwrap();
        assert!(odd.to_string().ends_with(";SharedAccessKey=not base64!"), "{odd}");
    }

    fn any_kind(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        s.parse()
    }

    #[test]
    fn reads_a_service_connection_string() {
        let cs = iot(&format!(
            "HostName=myhub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey={KEY_0_31}"
        ))
        .expect("parses");
        assert_eq!(cs.host_name(), "myhub.azure-devices.net");
        assert_eq!(cs.shared_access_key_name(), Some("service"));
        assert_eq!(cs.device_id(), None);
        assert!(!cs.is_device());
        assert_eq!(cs.resource_uri(), "myhub.azure-devices.net");
        assert_eq!(
            cs.sas_token(1_700_000_000).expect("a key").to_string(),
            "SharedAccessSignature sr=myhub.azure-devices.net\
             &sig=iIzEw6hi6GK79RY5jNXO6QeQkSL%2FAx4zTmy44X2G1VY%3D&se=1700000000&skn=service"
        );
    }

    #[test]
    fn whitespace_around_keys_and_values_is_dropped_and_the_printed_form_parses_back() {
        let cs = iot(&format!(
            " HostName = myhub.azure-devices.net ;\tDeviceId=device1 ; SharedAccessKey={KEY_0_31}\t; "
        ))
        .expect("parses");
        assert_eq!(
            cs.to_string(),
            format!("HostName=myhub.azure-devices.net;DeviceId=device1;SharedAccessKey={KEY_0_31}")
        );
        // An Event Hubs key is its text: a key that ended in a tab inside the string once
        // printed last (with its tab) and parsed back without it.
        let text =
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=abc\t;";
        let cs: ConnectionString = text.parse().expect("parses");
        let again: ConnectionString = cs.to_string().parse().expect("parses again");
        assert_eq!(again, cs);
        assert!(matches!(
            "HostName=h;DeviceId= ;SharedAccessKey=a2V5".parse::<ConnectionString>(),
            Err(ConnectionStringError::EmptyValue(k)) if k == "DeviceId"
        ));
    }

    #[test]
    fn reads_a_device_connection_string() {
        let cs = iot(&format!(
            "HostName=myhub.azure-devices.net;DeviceId=device1;SharedAccessKey={KEY_0_31}"
        ))
        .expect("parses");
        assert!(cs.is_device());
        assert_eq!(cs.device_id(), Some("device1"));
        assert_eq!(cs.resource_uri(), "myhub.azure-devices.net/devices/device1");
        assert_eq!(
            cs.sas_token(1_700_000_000).expect("a key").to_string(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1\
             &sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000"
        );
        let Credential::SharedAccessKey(key) = cs.credential() else { panic!("a key") };
        assert_eq!(key.to_base64(), KEY_0_31);
    }

    #[test]
    fn reads_a_module_behind_a_gateway_and_a_policy_on_behalf_of_a_device() {
        let module = iot(&format!(
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey={KEY_0_31};GatewayHostName=edge.local"
        ))
        .expect("parses");
        assert_eq!(module.module_id(), Some("m"));
        assert_eq!(module.gateway_host_name(), Some("edge.local"));
        assert_eq!(module.resource_uri(), "h/devices/d/modules/m");
        assert_eq!(module.sas_token(1).expect("a key").sr(), "h%2Fdevices%2Fd%2Fmodules%2Fm");

        let on_behalf = iot(&format!(
            "HostName=h;DeviceId=d;SharedAccessKeyName=device;SharedAccessKey={KEY_0_31}"
        ))
        .expect("parses");
        let token = on_behalf.sas_token(1).expect("a key");
        assert_eq!(token.audience(), "h/devices/d");
        assert_eq!(token.key_name(), Some("device"));
    }

    #[test]
    fn reads_a_connection_string_with_a_token() {
        let token = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1\
                     &sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000";
        let cs = iot(&format!(
            "HostName=myhub.azure-devices.net;DeviceId=device1;SharedAccessSignature={token}"
        ))
        .expect("parses");
        let Credential::SharedAccessSignature(t) = cs.credential() else { panic!("a token") };
        assert_eq!(t.to_string(), token);
        // The token is used as it is, whatever expiry is asked for.
        assert_eq!(cs.sas_token(5).expect("a key").to_string(), token);
    }

    #[test]
    fn reads_an_event_hubs_connection_string() {
        let cs = eh(&format!(
            "Endpoint=sb://iothub-ns-myhub-1-abc.servicebus.windows.net/;\
             SharedAccessKeyName=iothubowner;SharedAccessKey={KEY_0_31};EntityPath=myhub"
        ))
        .expect("parses");
        assert_eq!(cs.endpoint(), "sb://iothub-ns-myhub-1-abc.servicebus.windows.net/");
        assert_eq!(cs.host(), "iothub-ns-myhub-1-abc.servicebus.windows.net");
        assert_eq!(cs.entity_path(), Some("myhub"));
        assert!(!cs.use_development_emulator());
        assert_eq!(cs.resource_uri(), "sb://iothub-ns-myhub-1-abc.servicebus.windows.net/myhub");
        let token = cs.sas_token(1_700_000_000).expect("a key");
        assert_eq!(token.sr(), "sb%3A%2F%2Fiothub-ns-myhub-1-abc.servicebus.windows.net%2Fmyhub");
        assert_eq!(token.key_name(), Some("iothubowner"));
        let Credential::SharedAccessKey(key) = cs.credential() else { panic!("a key") };
        assert!(token.signature_matches(key));

        let emulator =
            eh("Endpoint=sb://localhost:5672;SharedAccessKeyName=RootManageSharedAccessKey;\
             SharedAccessKey=cGFzc3dvcmQ=;UseDevelopmentEmulator=true;")
            .expect("parses");
        assert!(emulator.use_development_emulator());
        assert_eq!(emulator.host(), "localhost:5672");
        assert_eq!(emulator.resource_uri(), "sb://localhost:5672/");
    }

    #[test]
    fn tells_the_kinds_apart() {
        let iot =
            any_kind(&format!("HostName=h;DeviceId=d;SharedAccessKey={KEY_0_31}")).expect("parses");
        assert!(matches!(iot, ConnectionString::IotHub(_)));
        assert_eq!(iot.resource_uri(), "h/devices/d");
        let eh = any_kind(&format!(
            "Endpoint=sb://ns/;SharedAccessKeyName=p;SharedAccessKey={KEY_0_31};EntityPath=e"
        ))
        .expect("parses");
        assert!(matches!(eh, ConnectionString::EventHubs(_)));
        assert_eq!(eh.resource_uri(), "sb://ns/e");
        assert_eq!(eh.sas_token(1).expect("a key").key_name(), Some("p"));
        assert!(matches!(eh.credential(), Credential::SharedAccessKey(_)));
    }

    #[test]
    fn splits_each_pair_on_its_first_equals_only() {
        let cs = iot("HostName=h;DeviceId=a=b;SharedAccessKey=cGFzcw==").expect("parses");
        assert_eq!(cs.device_id(), Some("a=b"));
        let Credential::SharedAccessKey(key) = cs.credential() else { panic!("a key") };
        assert_eq!(key.as_bytes(), b"pass");
    }

    #[test]
    fn prints_what_it_parsed() {
        for s in [
            format!("HostName=h;SharedAccessKeyName=service;SharedAccessKey={KEY_0_31}"),
            format!("HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey={KEY_0_31};GatewayHostName=g"),
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h%2Fdevices%2Fd&sig=YWJj&se=1"
                .to_owned(),
            format!("Endpoint=sb://ns/;SharedAccessKeyName=p;SharedAccessKey={KEY_0_31};EntityPath=e"),
            format!("Endpoint=sb://ns/;SharedAccessKeyName=p;SharedAccessKey={KEY_0_31};UseDevelopmentEmulator=true"),
        ] {
            assert_eq!(any_kind(&s).map(|c| c.to_string()), Ok(s.clone()));
        }
    }

    #[test]
    fn names_each_problem_in_a_bad_connection_string() {
        use ConnectionStringError as E;
        use ConnectionStringKind::{EventHubs, IotHub};
        let k = KEY_0_31;
        let cases: Vec<(String, E)> = vec![
            ("".into(), E::Empty),
            (" ;; ".into(), E::Empty),
            ("HostName=h;DeviceId".into(), E::MissingEquals("DeviceId".into())),
            ("HostName=h;=x".into(), E::EmptyKey),
            ("HostName=h;DeviceId=".into(), E::EmptyValue("DeviceId".into())),
            ("HostName=h;HostName=i".into(), E::DuplicateKey("HostName".into())),
            (
                format!("HostName=h;DeviceID=d;SharedAccessKey={k}"),
                E::UnknownKey { key: "DeviceID".into(), kind: IotHub, did_you_mean: Some("DeviceId") },
            ),
            (
                format!("hostname=h;DeviceId=d;SharedAccessKey={k}"),
                E::UnknownKey { key: "hostname".into(), kind: IotHub, did_you_mean: Some("HostName") },
            ),
            (
                format!("HostName=h;DeviceId=d;SharedAccessKey={k};EntityPath=e"),
                E::UnknownKey { key: "EntityPath".into(), kind: IotHub, did_you_mean: None },
            ),
            (
                format!("Endpoint=sb://ns/;SharedAccessKeyName=p;SharedAccessKey={k};DeviceId=d"),
                E::UnknownKey { key: "DeviceId".into(), kind: EventHubs, did_you_mean: None },
            ),
            (format!("DeviceId=d;SharedAccessKey={k}"), E::UnknownKind),
            ("HostName=h;DeviceId=d".into(), E::MissingCredential(IotHub)),
            (
                format!("HostName=h;DeviceId=d;SharedAccessKey={k};SharedAccessSignature=x"),
                E::ConflictingCredentials,
            ),
            (format!("HostName=h;SharedAccessKey={k}"), E::MissingKeyName),
            (format!("HostName=h;ModuleId=m;SharedAccessKey={k}"), E::ModuleIdWithoutDeviceId),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=key".into(),
                E::InvalidKey(SasError::KeyNotBase64(
                    "the `=` padding is missing or wrong".into(),
                )),
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessSignature=sr=a&sig=YWJj&se=1".into(),
                E::InvalidSignature(SasError::MissingPrefix),
            ),
            (
                format!("Endpoint=ns.servicebus.windows.net;SharedAccessKeyName=p;SharedAccessKey={k}"),
                E::InvalidEndpoint("ns.servicebus.windows.net".into()),
            ),
            (format!("Endpoint=sb://;SharedAccessKeyName=p;SharedAccessKey={k}"), E::InvalidEndpoint("sb://".into())),
            (
                format!("Endpoint=sb://ns/;SharedAccessKey={k}"),
                E::MissingKey { key: "SharedAccessKeyName", kind: EventHubs },
            ),
            ("Endpoint=sb://ns/;SharedAccessKeyName=p".into(), E::MissingCredential(EventHubs)),
            (
                format!("Endpoint=sb://ns/;SharedAccessKeyName=p;SharedAccessKey={k};UseDevelopmentEmulator=yes"),
                E::InvalidBool { key: "UseDevelopmentEmulator", value: "yes".into() },
            ),
        ];
        for (input, expected) in &cases {
            assert_eq!(any_kind(input).as_ref(), Err(expected), "{input:?}");
        }
        // The typed parsers ask for their own first key.
        assert_eq!(
            iot(&format!("DeviceId=d;SharedAccessKey={k}")),
            Err(E::MissingKey { key: "HostName", kind: IotHub })
        );
        assert_eq!(
            eh(&format!("SharedAccessKeyName=p;SharedAccessKey={k}")),
            Err(E::MissingKey { key: "Endpoint", kind: EventHubs })
        );
    }

    #[test]
    fn error_messages_name_the_key() {
        let msg = |s: &str| any_kind(s).expect_err("bad").to_string();
        assert_eq!(
            msg("HostName=h;deviceId=d;SharedAccessKey=cGFzc3dvcmQ="),
            "unknown key `deviceId` in IoT Hub connection string \
             (keys are case-sensitive: did you mean DeviceId?)"
        );
        assert_eq!(
            msg("HostName=h;Foo=d;SharedAccessKey=cGFzc3dvcmQ="),
            "unknown key `Foo` in IoT Hub connection string"
        );
        assert_eq!(
            msg("HostName=h;DeviceId=d"),
            "IoT Hub connection string has neither SharedAccessKey nor SharedAccessSignature"
        );
        assert_eq!(
            msg("HostName=h;DeviceId=d;SharedAccessKey=a$b="),
            "connection string SharedAccessKey: key is not valid base64: `$` at offset 1 is not a base64 character"
        );
        assert_eq!(
            msg("Endpoint=sb://ns/;SharedAccessKey=cGFzc3dvcmQ="),
            "Event Hubs connection string has no SharedAccessKeyName"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let cs =
            any_kind(&format!("HostName=h;DeviceId=d;SharedAccessKey={KEY_0_31}")).expect("parses");
        let dbg = format!("{cs:?}");
        assert!(!dbg.contains(KEY_0_31), "{dbg}");
        assert!(dbg.contains("<32 bytes>"), "{dbg}");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = s.parse::<ConnectionString>();
        }

        #[test]
        fn parse_never_panics_on_connection_string_like_input(
            s in "((HostName|DeviceId|ModuleId|SharedAccessKeyName|SharedAccessKey|Endpoint|EntityPath|x)=[a-zA-Z0-9=/:]{0,10};?){0,6}"
        ) {
            if let Ok(cs) = s.parse::<ConnectionString>() {
                prop_assert_eq!(cs.to_string().parse::<ConnectionString>(), Ok(cs));
            }
        }
    }
}
