//! Azure credentials: shared access signature (SAS) tokens and the connection strings
//! they are made from, for Azure IoT Hub and Event Hubs.
//!
//! ```text
//!   connection string ──► key + resource URI + policy name ──► SasToken::new ──► token
//!   HostName=…;DeviceId=…;SharedAccessKey=…                     (HMAC-SHA256)    (CBS put-token,
//!   Endpoint=sb://…/;SharedAccessKeyName=…;…                                      SASL PLAIN)
//!
//!   token text ──► SasToken::from_str ──► signature_matches(key), is_expired(now, skew),
//!                  (any field order)       authorizes(resource)
//! ```
//!
//! A token is `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]` (see [`SasToken`]). The
//! signature is base64(HMAC-SHA256(key, `sr` + `"\n"` + `se`)), computed over `sr` exactly
//! as it stands in the token, still URL-encoded. IoT Hub keys the HMAC with the
//! **base64-decoded** key; Event Hubs with the key's **text** ([`SasKey::from_text`],
//! [`SasKey::event_hubs_key`]). Which tokens are for what:
//!
//! | credential | resource URI (`sr`, decoded) | `skn` |
//! |---|---|---|
//! | device key | `{hub host}/devices/{device id}` (`/modules/{module id}` for a module) | none |
//! | policy key on behalf of a device | the same | the policy, e.g. `device` |
//! | service policy key | `{hub host}` | the policy, e.g. `service`, `iothubowner` |
//! | Event Hubs policy key (keyed by its text) | `sb://{namespace host}/{event hub}` | the policy |
//!
//! Nothing here reads the clock or does I/O: the current time is a parameter.
//!
//! # Example
//!
//! A device makes a token from its connection string; the hub checks it.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use amqpwire::azure::{ConnectionString, Credential, SasToken, DEFAULT_CLOCK_SKEW};
//!
//! let cs: ConnectionString = "HostName=myhub.azure-devices.net;DeviceId=device1;\
//!     SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
//!     .parse()?;
//! let token = cs.sas_token(1_700_000_000)?.to_string();
//! assert_eq!(
//!     token,
//!     "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1\
//!      &sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000"
//! );
//!
//! // The hub's side: parse, check signature and expiry, then the resource.
//! let received: SasToken = token.parse()?;
//! let Credential::SharedAccessKey(device_key) = cs.credential() else { unreachable!() };
//! let now = UNIX_EPOCH + Duration::from_secs(1_699_999_000);
//! received.verify(device_key, now, DEFAULT_CLOCK_SKEW)?;
//! assert!(received.authorizes("myhub.azure-devices.net/devices/device1/messages/events"));
//! assert!(!received.authorizes("myhub.azure-devices.net/devices/device10"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cbs;
#[cfg(all(feature = "tokio", feature = "json"))]
pub mod client;
mod connection_string;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod hub;
mod sas;

pub use connection_string::{
    ConnectionString, ConnectionStringError, ConnectionStringKind, Credential,
    EventHubsConnectionString, IotHubConnectionString,
};
pub use sas::{
    device_resource_uri, percent_decode, percent_encode, PercentDecodeError, SasError, SasKey,
    SasToken, DEFAULT_CLOCK_SKEW, SAS_PREFIX,
};
