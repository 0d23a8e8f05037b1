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
//! connection. What a client can make the server hold is bounded: at most
//! [`HTTPS_MAX_CONNECTIONS`] connections at once, each with one request (16 KiB of head, the
//! hub's device-to-cloud limit of body) and what it pipelined behind it. A connection
//! waits [`HTTPS_IDLE`] for a request to start, then [`HTTPS_TRANSFER`] for the head, again for the
//! body (408 after that), and again for the client to take the reply.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{device_segment, IotHub, Need};
use crate::codec::Value;
use crate::message::{AnnotationMap, Message};
use crate::runtime::transport::TlsServerConfig;
use crate::types::{MessageId, Properties};

/// The most header bytes a request may have.
const MAX_HEAD: usize = 16 * 1024;
/// How long a connection may wait for the next request to start.
pub const HTTPS_IDLE: Duration = Duration::from_secs(60);
/// How long a request's head, its body, and the taking of the reply may each take.
pub const HTTPS_TRANSFER: Duration = Duration::from_secs(30);
/// Connections served at once; more wait to be accepted.
pub const HTTPS_MAX_CONNECTIONS: usize = 256;
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
    /// Serves the HTTPS device endpoint on `listener`, forever; each connection runs on a
    /// task of its own until it ends or times out.
    pub async fn serve_https(&self, listener: TcpListener, tls: TlsServerConfig) {
        let slots = Arc::new(Semaphore::new(HTTPS_MAX_CONNECTIONS));
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (hub, acceptor) = (self.clone(), tls.acceptor().clone());
            tokio::spawn(async move {
                let _permit = permit;
                let Ok(Ok(stream)) =
                    tokio::time::timeout(HTTPS_TRANSFER, acceptor.accept(tcp)).await
                else {
                    return;
                };
                hub.http_connection(stream).await;
            });
        }
    }

    /// Answers requests on one connection until the client closes it, asks to, or is too
    /// slow.
    async fn http_connection<S: AsyncRead + AsyncWrite + Unpin>(&self, mut io: S) {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let Some(reply) = self.one_request(&mut io, &mut buf).await else { return };
            let sent = tokio::time::timeout(HTTPS_TRANSFER, async {
                io.write_all(&reply.to_bytes()).await?;
                io.flush().await
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
            if reply.close {
                let _ = io.shutdown().await;
                return;
            }
            // Give back what a large request left behind.
            buf.shrink_to(buf.len().max(8 * 1024));
        }
    }

    /// Reads one request (the head, then its body) and answers it; `None` when the
    /// connection ended, or idled, between requests.
    async fn one_request<S: AsyncRead + Unpin>(
        &self,
        io: &mut S,
        buf: &mut Vec<u8>,
    ) -> Option<Reply> {
        let too_slow =
            || Some(Reply::error(408, "Request Timeout", "the request came too slowly").closing());
        let mut deadline =
            Instant::now() + if buf.is_empty() { HTTPS_IDLE } else { HTTPS_TRANSFER };
        // Where the search for the end of the head resumes: each byte is looked at once.
        let mut scanned: usize = 0;
        let (head, used) = loop {
            let from = scanned.saturating_sub(3);
            let ended = buf[from..].windows(2).any(|w| w == b"\n\n")
                || buf[from..].windows(4).any(|w| w == b"\r\n\r\n");
            scanned = buf.len();
            if ended {
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
                                    let value = String::from_utf8_lossy(h.value).into_owned();
                                    (h.name.to_owned(), value)
                                })
                                .collect(),
                        };
                        break (head, n);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => {
                        let why = format!("not an HTTP/1.1 request: {e}");
                        return Some(Reply::error(400, "Bad Request", &why).closing());
                    }
                }
            }
            if buf.len() >= MAX_HEAD {
                let why = "the request head is larger than 16 KiB";
                return Some(Reply::error(431, "Request Header Fields Too Large", why).closing());
            }
            let started = !buf.is_empty();
            match read_more(io, buf, deadline).await {
                Read::Data if !started => deadline = Instant::now() + HTTPS_TRANSFER,
                Read::Data => {}
                Read::End => return None,
                Read::Late if started => return too_slow(),
                Read::Late => return None,
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
        let deadline = Instant::now() + HTTPS_TRANSFER;
        while buf.len() < length {
            match read_more(io, buf, deadline).await {
                Read::Data => {}
                Read::End => return None,
                Read::Late => return too_slow(),
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
        // The token first, as IoT Hub does: who is registered is no one else's business.
        let config = self.config();
        let Some(token) = head.header("authorization") else {
            return Reply::error(401, "Unauthorized", "no Authorization header");
        };
        let resource = format!("{}/devices/{device}/messages/events", config.hostname);
        match self.validate(token, &config.hostname, false) {
            Ok(claim) if claim.grants(&resource, &Need::Device(device.clone())) => {}
            Ok(_) => {
                let why = format!("the token does not cover {resource}");
                return Reply::error(401, "Unauthorized", &why);
            }
            Err(why) => return Reply::error(401, "Unauthorized", &why),
        }
        // A policy token may name a device that does not exist.
        if !config.devices.iter().any(|(id, _)| *id == device) {
            let why = format!("no device {device:?} in the registry");
            return Reply::error(404, "Not Found", &why);
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
        if self.throttled(&device) {
            let why = format!("device {device:?} is throttled (fault injection)");
            return Reply::error(429, "Too Many Requests", &why);
        }
        for m in messages {
            self.inner.log.append(&device, m);
        }
        Reply::no_content()
    }
}

/// What a read brought.
enum Read {
    /// Some bytes, now in the buffer.
    Data,
    /// The end of the stream, or an error.
    End,
    /// Nothing before the deadline.
    Late,
}

/// Reads what is there into `buf`, waiting until `deadline` at most.
async fn read_more<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>, deadline: Instant) -> Read {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
        Err(_) => Read::Late,
        Ok(Ok(0) | Err(_)) => Read::End,
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Read::Data
        }
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
            let text = item
                .get("body")
                .and_then(|b| b.as_str())
                .ok_or_else(|| format!("batch item {i}: no \"body\" string"))?;
            // The SDKs send `"base64Encoded": true`; with false the body is the text itself.
            let encoded = match item.get("base64Encoded") {
                None | Some(serde_json::Value::Null) => true,
                Some(serde_json::Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(format!("batch item {i}: base64Encoded is {other}, not a boolean"))
                }
            };
            let bytes = if encoded {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("batch item {i}: the body is not base64: {e}"))?
            } else {
                text.as_bytes().to_vec()
            };
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A hub with device `d1`, and a token for it.
    fn hub() -> (IotHub, String) {
        let key = crate::azure::SasKey::from_bytes(vec![7; 32]);
        let mut config = super::super::HubConfig::new("localhost");
        config.devices.push(("d1".into(), key.clone()));
        let expiry = super::super::unix_seconds() + 3600;
        let token = crate::azure::SasToken::new("localhost/devices/d1", &key, None, expiry);
        (IotHub::new(config), token.unwrap().to_string())
    }

    #[tokio::test]
    async fn heads_in_single_bytes_and_pipelined_requests_are_answered_in_order() {
        let (hub, token) = hub();
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let h = hub.clone();
        tokio::spawn(async move { h.http_connection(server).await });
        let one = format!(
            "POST /devices/d1/messages/events?api-version=1 HTTP/1.1\r\nAuthorization: {token}\r\nContent-Length: 2\r\n\r\nhi"
        );
        // The first request a byte at a time, then two more in one write.
        for b in one.as_bytes() {
            client.write_all(&[*b]).await.unwrap();
        }
        let two = format!("{one}GET /x HTTP/1.1\r\nConnection: close\r\n\r\n");
        client.write_all(two.as_bytes()).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        let statuses: Vec<&str> = answer.lines().filter(|l| l.starts_with("HTTP/1.1 ")).collect();
        assert_eq!(
            statuses,
            ["HTTP/1.1 204 No Content", "HTTP/1.1 204 No Content", "HTTP/1.1 404 Not Found"],
            "{answer}"
        );
        assert_eq!(hub.events(hub.partition_of("d1")).len(), 2);
    }

    #[tokio::test]
    async fn a_head_that_never_ends_is_refused_at_16_kib() {
        let (hub, _) = hub();
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move { hub.http_connection(server).await });
        let endless = format!("GET /{} HTTP/1.1\r\n", "a".repeat(20_000));
        client.write_all(endless.as_bytes()).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }

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
        let ok = br#"[{"body":"aGk=","properties":{"iothub-app-k":"v"}},{"body":""},
            {"body":"abcd","base64Encoded":false},{"body":"YQ==","base64Encoded":true}]"#;
        let ms = batch_messages(ok).unwrap();
        assert_eq!(ms.len(), 4);
        assert_eq!(ms[0].body.as_data().map(|b| &b[..]), Some(&b"hi"[..]));
        assert_eq!(ms[2].body.as_data().map(|b| &b[..]), Some(&b"abcd"[..]));
        assert_eq!(ms[3].body.as_data().map(|b| &b[..]), Some(&b"a"[..]));
        let flag = br#"[{"body":"","base64Encoded":"yes"}]"#;
        assert!(batch_messages(flag).unwrap_err().contains("not a boolean"));
        assert!(batch_messages(b"{}").unwrap_err().contains("not a JSON array"));
        assert!(batch_messages(br#"[{"body":"***"}]"#).unwrap_err().contains("not base64"));
        assert!(batch_messages(br#"[{"nobody":1}]"#).unwrap_err().contains("item 0"));
        let bad = br#"[{"body":"","properties":{"k":1}}]"#;
        assert!(batch_messages(bad).unwrap_err().contains("not a string"));
    }
}
