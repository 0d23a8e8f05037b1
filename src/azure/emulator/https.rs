//! The HTTPS device endpoint: telemetry posted over REST, as small devices without an AMQP
//! stack send it, lands in the same event log as AMQP telemetry.
//!
//! ```text
//!   POST /devices/{id}/messages/events?api-version=…   Authorization: SharedAccessSignature …
//!     one message: the body as it is; iothub-app-{name} headers → application properties;
//!                  iothub-messageid, iothub-correlationid, iothub-contenttype,
//!                  iothub-contentencoding → properties
//!     a batch (Content-Type: application/vnd.microsoft.iothub.json):
//!                  [{"body": base64, "properties": {"iothub-app-k": "v", …}}, …]
//!   ─► 204 No Content │ 400 │ 401 (token) │ 404 (device, path) │ 405 │ 411 │ 413 (size) │ 431
//! ```
//!
//! HTTP/1.1 with keep-alive and `Content-Length` bodies; one request at a time per
//! connection. Nothing a client sends can make the server hold more than the hub's
//! device-to-cloud limit (256 KiB) plus 16 KiB of headers.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{device_segment, IotHub, Need};
use crate::codec::Value;
use crate::message::{AnnotationMap, Message};
use crate::runtime::transport::TlsServerConfig;
use crate::types::{MessageId, Properties};

/// The most header bytes a request may have.
const MAX_HEAD: usize = 16 * 1024;
/// How long a connection may wait for the next request.
const IDLE: Duration = Duration::from_secs(60);
/// The content type of a batch.
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.json";

/// An answer: status, reason, JSON body (empty for 204).
struct Reply {
    status: u16,
    reason: &'static str,
    body: String,
    close: bool,
}

impl Reply {
    fn no_content() -> Self {
        Self { status: 204, reason: "No Content", body: String::new(), close: false }
    }

    fn error(status: u16, reason: &'static str, why: &str) -> Self {
        let body = serde_json::json!({ "Message": why }).to_string();
        Self { status, reason, body, close: false }
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason);
        if !self.body.is_empty() {
            head.push_str("Content-Type: application/json; charset=utf-8\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        if self.close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl IotHub {
    /// Serves the HTTPS device endpoint on `listener` until the task is dropped.
    pub async fn serve_https(&self, listener: TcpListener, tls: TlsServerConfig) {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (hub, acceptor) = (self.clone(), tls.acceptor().clone());
            tokio::spawn(async move {
                let Ok(Ok(stream)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                hub.http_connection(stream).await;
            });
        }
    }

    /// Answers requests on one connection until the client closes it or asks to.
    async fn http_connection<S: AsyncRead + AsyncWrite + Unpin>(&self, mut io: S) {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let reply = match tokio::time::timeout(IDLE, self.one_request(&mut io, &mut buf)).await
            {
                Ok(Some(reply)) => reply,
                Ok(None) | Err(_) => return,
            };
            if io.write_all(&reply.to_bytes()).await.is_err() || io.flush().await.is_err() {
                return;
            }
            if reply.close {
                let _ = io.shutdown().await;
                return;
            }
        }
    }

    /// Reads one request (the head, then its body) and answers it; `None` when the
    /// connection ended.
    async fn one_request<S: AsyncRead + Unpin>(
        &self,
        io: &mut S,
        buf: &mut Vec<u8>,
    ) -> Option<Reply> {
        let (head, used) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = Head {
                        method: req.method.unwrap_or("").to_owned(),
                        path: req.path.unwrap_or("").to_owned(),
                        headers: req
                            .headers
                            .iter()
                            .map(|h| {
                                (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned())
                            })
                            .collect(),
                    };
                    break (head, n);
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    let why = "the request head is larger than 16 KiB";
                    return Some(
                        Reply::error(431, "Request Header Fields Too Large", why).closing(),
                    );
                }
                Err(e) => {
                    let why = format!("not an HTTP/1.1 request: {e}");
                    return Some(Reply::error(400, "Bad Request", &why).closing());
                }
            }
            if read_more(io, buf).await == 0 {
                return None;
            }
        };
        buf.drain(..used);
        let close = head.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if head.header("transfer-encoding").is_some() {
            let why = "send the body with Content-Length";
            return Some(Reply::error(411, "Length Required", why).closing());
        }
        let length = match head.header("content-length").map(|v| v.trim().parse::<usize>()) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                return Some(Reply::error(400, "Bad Request", "a bad Content-Length").closing())
            }
        };
        let max = self.config().d2c_max_size;
        if length > max {
            let why = format!("the message is {length} bytes; at most {max} are allowed");
            return Some(Reply::error(413, "Payload Too Large", &why).closing());
        }
        while buf.len() < length {
            if read_more(io, buf).await == 0 {
                return None;
            }
        }
        let body = Bytes::from(buf.drain(..length).collect::<Vec<u8>>());
        let reply = self.answer(&head, body);
        Some(if close { reply.closing() } else { reply })
    }

    fn answer(&self, head: &Head, body: Bytes) -> Reply {
        let (path, query) = head.path.split_once('?').unwrap_or((&head.path, ""));
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let device = match seg.as_slice() {
            [d, id, m, e]
                if d.eq_ignore_ascii_case("devices")
                    && m.eq_ignore_ascii_case("messages")
                    && e.eq_ignore_ascii_case("events") =>
            {
                device_segment(id)
            }
            _ => return Reply::error(404, "Not Found", &format!("no resource {path:?}")),
        };
        if head.method != "POST" {
            let why = format!("{} is not allowed here; POST telemetry", head.method);
            return Reply::error(405, "Method Not Allowed", &why);
        }
        if !query.split('&').any(|kv| kv.starts_with("api-version=")) {
            return Reply::error(400, "Bad Request", "the api-version query parameter is missing");
        }
        let config = self.config();
        if !config.devices.iter().any(|(id, _)| *id == device) {
            return Reply::error(
                404,
                "Not Found",
                &format!("no device {device:?} in the registry"),
            );
        }
        let Some(token) = head.header("authorization") else {
            return Reply::error(401, "Unauthorized", "no Authorization header");
        };
        let resource = format!("{}/devices/{device}/messages/events", config.hostname);
        match self.validate(token, &config.hostname, false) {
            Ok(claim) if claim.grants(&resource, &Need::Device(device.clone())) => {}
            Ok(_) => {
                return Reply::error(
                    401,
                    "Unauthorized",
                    &format!("the token does not cover {resource}"),
                )
            }
            Err(why) => return Reply::error(401, "Unauthorized", &why),
        }
        let batch = head.header("content-type").is_some_and(|t| {
            t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(BATCH_CONTENT_TYPE)
        });
        let messages = if batch {
            match batch_messages(&body) {
                Ok(m) => m,
                Err(why) => return Reply::error(400, "Bad Request", &why),
            }
        } else {
            vec![message(body, head.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))]
        };
        for m in messages {
            self.inner.log.append(&device, m);
        }
        Reply::no_content()
    }
}

/// Reads what is there into `buf`; 0 at the end of the stream or on an error.
async fn read_more<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 8192];
    match io.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        Err(_) => 0,
    }
}

/// A telemetry message from a body and its `iothub-…` headers (or batch properties).
fn message<'a>(body: Bytes, headers: impl Iterator<Item = (&'a str, &'a str)>) -> Message {
    let mut m = Message::with_data(body);
    let mut properties = Properties::default();
    let mut app = Vec::new();
    for (k, v) in headers {
        let lower = k.to_ascii_lowercase();
        if let Some(name) = lower.strip_prefix("iothub-app-") {
            // The name as the client wrote it, after the prefix.
            app.push((Value::from(&k[k.len() - name.len()..]), Value::from(v)));
            continue;
        }
        match lower.as_str() {
            "dt-subject" => app.push((Value::from("dt-subject"), Value::from(v))),
            "iothub-messageid" => properties.message_id = Some(MessageId::String(v.into())),
            "iothub-correlationid" => {
                properties.correlation_id = Some(MessageId::String(v.into()));
            }
            "iothub-contenttype" => properties.content_type = Some(v.into()),
            "iothub-contentencoding" => properties.content_encoding = Some(v.into()),
            _ => {}
        }
    }
    if properties != Properties::default() {
        m.properties = Some(properties);
    }
    if !app.is_empty() {
        m.application_properties = Some(AnnotationMap::from_pairs(app));
    }
    m
}

/// The messages of a batch: `[{"body": base64, "properties": {name: text, …}}, …]`.
fn batch_messages(body: &[u8]) -> Result<Vec<Message>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the batch is not JSON: {e}"))?;
    let items = v.as_array().ok_or("the batch is not a JSON array")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let b64 = item
                .get("body")
                .and_then(|b| b.as_str())
                .ok_or_else(|| format!("batch item {i}: no \"body\" string"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("batch item {i}: the body is not base64: {e}"))?;
            let props: Vec<(&str, &str)> = match item.get("properties") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::Object(o)) => o
                    .iter()
                    .map(|(k, v)| {
                        v.as_str()
                            .map(|v| (k.as_str(), v))
                            .ok_or_else(|| format!("batch item {i}: property {k} is not a string"))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(format!("batch item {i}: \"properties\" is not an object")),
            };
            Ok(message(Bytes::from(bytes), props.into_iter()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_properties() {
        let m = message(
            Bytes::from_static(b"{}"),
            [
                ("IoTHub-MessageId", "m1"),
                ("iothub-app-Alert", "yes"),
                ("iothub-contenttype", "application/json"),
                ("User-Agent", "esp32"),
            ]
            .into_iter(),
        );
        let p = m.properties.unwrap();
        assert_eq!(p.message_id, Some(MessageId::String("m1".into())));
        assert_eq!(p.content_type.as_ref().map(|s| s.as_str()), Some("application/json"));
        let app = m.application_properties.unwrap();
        assert_eq!(app.get("Alert").and_then(|v| v.as_str()), Some("yes"));
        assert_eq!(app.len(), 1);
    }

    #[test]
    fn batches_are_checked_item_by_item() {
        let ok = br#"[{"body":"aGk=","properties":{"iothub-app-k":"v"}},{"body":""}]"#;
        let ms = batch_messages(ok).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].body.as_data().map(|b| &b[..]), Some(&b"hi"[..]));
        assert!(batch_messages(b"{}").unwrap_err().contains("not a JSON array"));
        assert!(batch_messages(br#"[{"body":"***"}]"#).unwrap_err().contains("not base64"));
        assert!(batch_messages(br#"[{"nobody":1}]"#).unwrap_err().contains("item 0"));
        let bad = br#"[{"body":"","properties":{"k":1}}]"#;
        assert!(batch_messages(bad).unwrap_err().contains("not a string"));
    }
}
