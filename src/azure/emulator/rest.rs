//! The service REST API that the service SDKs (azure-iothub's `Registry` and `Client`)
//! call on port 443: the identity registry, twins and direct methods. `https.rs` routes,
//! authorizes and reads the request; here is what it does.
//!
//! ```text
//!   GET    /devices                         ─► 200 [device…]
//!   PUT    /devices/{id}       {device}     ─► 200 device   (If-Match: update; none: create)
//!   GET    /devices/{id}                    ─► 200 device │ 404 DeviceNotFound
//!   DELETE /devices/{id}       If-Match     ─► 204 │ 404 │ 412 PreconditionFailed
//!   …/devices/{id}/modules[/{mid}]           the same for modules
//!   GET    /twins/{id}[/modules/{mid}]      ─► 200 twin
//!   PATCH  /twins/{id}…        {tags, properties.desired}  merge  ─► 200 twin
//!   PUT    /twins/{id}…        {tags, properties.desired}  replace ─► 200 twin
//!   DELETE /devices/{id}/commands           ─► 200 {deviceId, totalMessagesPurged}
//!   POST   /twins/{id}[/modules/{mid}]/methods
//!          {methodName, payload, responseTimeoutInSeconds, connectTimeoutInSeconds}
//!                                           ─► 200 {status, payload} │ 404 DeviceNotOnline
//!                                              │ 504 GatewayTimeout
//! ```

use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};

use super::state::Settle;
use super::twin::TwinWrite;
use super::{IotHub, RestError};

/// What a request asks for, once routed.
pub(super) enum Call {
    /// Device telemetry.
    Telemetry(String),
    /// A device takes its next cloud-to-device message.
    Receive(String),
    /// A device settles one by its lock token.
    Settle(String, String, Settle),
    /// `GET /devices`.
    ListDevices,
    /// `GET /devices/{id}/modules`.
    ListModules(String),
    /// A device or module identity (`DEVICE/MODULE`), with the method.
    Identity(String, Method),
    /// A device's or module's twin, with the method.
    Twin(String, Method),
    /// A direct method on a device or module.
    Method(String),
    /// `DELETE /devices/{id}/commands`: the device's cloud-to-device queue emptied.
    Purge(String),
}

/// The default and the range of a method's `responseTimeoutInSeconds`, IoT Hub's.
const RESPONSE_TIMEOUT: (u64, u64, u64) = (30, 5, 300);
/// The largest `connectTimeoutInSeconds`.
const MAX_CONNECT_TIMEOUT: u64 = 300;

fn parse_json(body: &[u8]) -> Result<Value, RestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RestError::bad("the request has no JSON body"));
    }
    serde_json::from_slice(body).map_err(|e| RestError::bad(format!("the body is not JSON: {e}")))
}

/// A whole number of seconds from a JSON field, or its default; `Err` outside `min..=max`.
fn seconds(v: &Value, name: &str, default: u64, min: u64, max: u64) -> Result<u64, RestError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(n) => match n.as_u64() {
            Some(s) if (min..=max).contains(&s) => Ok(s),
            _ => Err(RestError::bad(format!("{name} is {n}: a whole number from {min} to {max}"))),
        },
    }
}

impl IotHub {
    /// Answers a service API call: the status and JSON body (`None` for 204).
    pub(super) async fn service_call(
        &self,
        call: Call,
        if_match: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Option<Value>), RestError> {
        match call {
            Call::ListDevices => Ok((200, Some(self.list_devices()))),
            Call::ListModules(device) => Ok((200, Some(self.list_modules(&device)?))),
            Call::Identity(id, Method::GET) => self
                .identity_json(&id)
                .map(|v| (200, Some(v)))
                .ok_or_else(|| RestError::not_found(&id)),
            Call::Identity(id, Method::PUT) => {
                let v = self.put_identity(&id, &parse_json(body)?, if_match)?;
                Ok((200, Some(v)))
            }
            Call::Identity(id, Method::DELETE) => {
                self.delete_identity(&id, if_match)?;
                Ok((204, None))
            }
            Call::Identity(_, m) => Err(RestError::new(
                405,
                "MethodNotAllowed",
                format!("{m} is not allowed on an identity: GET, PUT or DELETE"),
            )),
            Call::Twin(id, Method::GET) => self
                .service_twin(&id)
                .map(|v| (200, Some(v)))
                .ok_or_else(|| RestError::not_found(&id)),
            Call::Twin(id, m) if m == Method::PATCH || m == Method::PUT => {
                let how = if m == Method::PATCH { TwinWrite::Patch } else { TwinWrite::Replace };
                let v = self.write_twin(&id, &parse_json(body)?, if_match, how).await?;
                Ok((200, Some(v)))
            }
            Call::Twin(_, m) => Err(RestError::new(
                405,
                "MethodNotAllowed",
                format!("{m} is not allowed on a twin: GET, PATCH or PUT"),
            )),
            Call::Method(id) => self.rest_method(&id, &parse_json(body)?).await,
            Call::Purge(device) => {
                if !self.knows(&device) {
                    return Err(RestError::not_found(&device));
                }
                let purged = self.inner.queues.purge(&device);
                Ok((200, Some(json!({ "deviceId": device, "totalMessagesPurged": purged }))))
            }
            Call::Telemetry(_) | Call::Receive(_) | Call::Settle(..) => {
                Err(RestError::new(500, "ServerError", "a device call reached the service API"))
            }
        }
    }

    /// `POST /twins/{id}/methods`: the call to the device's method link, its answer as
    /// `{"status", "payload"}`.
    async fn rest_method(
        &self,
        id: &str,
        request: &Value,
    ) -> Result<(u16, Option<Value>), RestError> {
        let name = match request.get("methodName") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(RestError::bad("methodName must be a non-empty string")),
        };
        let payload = request.get("payload").cloned().unwrap_or(Value::Null).to_string();
        let (default, min, max) = RESPONSE_TIMEOUT;
        let response = seconds(request, "responseTimeoutInSeconds", default, min, max)?;
        let connect = seconds(request, "connectTimeoutInSeconds", 0, 0, MAX_CONNECT_TIMEOUT)?;
        let answer = self
            .invoke_method_connecting(
                id,
                &name,
                &payload,
                Duration::from_secs(response),
                Duration::from_secs(connect),
            )
            .await;
        match answer {
            Ok(r) => {
                // The device's payload as JSON; text that is not JSON as a string.
                let payload = if r.payload.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&r.payload).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&r.payload).into_owned())
                    })
                };
                Ok((200, Some(json!({ "status": r.status, "payload": payload }))))
            }
            Err(e) if e.status == 504 => Err(RestError::new(504, "GatewayTimeout", e.message)),
            Err(e) if self.knows(id) => Err(RestError::new(404, "DeviceNotOnline", e.message)),
            Err(_) => Err(RestError::not_found(id)),
        }
    }
}
