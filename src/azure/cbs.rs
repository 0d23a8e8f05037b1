//! Claims-based security: the `$cbs` node's put-token exchange, both sides.
//!
//! ```text
//!   client                                   server ($cbs node)
//!   sender   ── target $cbs ──────────────►  request: message-id, application-properties
//!                                            operation=put-token, type, name=audience,
//!                                            body amqp-value string = the token
//!   receiver ◄── source $cbs ─────────────  response: correlation-id = that message-id,
//!                                            status-code (int), status-description
//! ```
//!
//! A client puts a token for an audience; the server checks it and, from then on, lets
//! the connection reach what the token covers until it expires. Clients put a fresh one
//! before that ([`renewal_delay`]: at 80 % of the lifetime by default).

use std::time::Duration;

use bytestring::ByteString;

use crate::codec::{Timestamp, Value};
use crate::message::{AnnotationMap, Body, Message};
use crate::types::{MessageId, Properties};

/// The address of the CBS node.
pub const CBS_NODE: &str = "$cbs";
/// The token type IoT Hub and Event Hubs clients name for SAS tokens.
pub const SAS_TOKEN_TYPE: &str = "servicebus.windows.net:sastoken";
/// The token type some IoT Hub clients (the Java SDK, amqpnetlite samples) name instead.
pub const IOTHUB_SAS_TOKEN_TYPE: &str = "azure-devices.net:sastoken";
/// The share of a token's lifetime after which clients renew it.
pub const RENEW_AT: f64 = 0.8;

/// When to put the next token: `renew_at` (0 to 1) of `lifetime`, at least a second.
pub fn renewal_delay(lifetime: Duration, renew_at: f64) -> Duration {
    lifetime.mul_f64(renew_at.clamp(0.0, 1.0)).max(Duration::from_secs(1))
}

/// A put-token request.
#[derive(Clone, Debug, PartialEq)]
pub struct PutToken {
    /// The request's message-id, which the response's correlation-id repeats.
    pub message_id: Option<MessageId>,
    /// The token type (`type`), e.g. [`SAS_TOKEN_TYPE`].
    pub token_type: String,
    /// The audience (`name`) as sent: clients differ in whether they URL-encode it.
    pub name: String,
    /// The token itself (the body).
    pub token: String,
    /// The optional `expiration` application property.
    pub expiration: Option<Timestamp>,
}

impl PutToken {
    /// The request message.
    pub fn to_message(&self) -> Message {
        let mut pairs: Vec<(Value, Value)> = vec![
            ("operation".into(), "put-token".into()),
            ("type".into(), self.token_type.as_str().into()),
            ("name".into(), self.name.as_str().into()),
        ];
        if let Some(t) = self.expiration {
            pairs.push(("expiration".into(), t.into()));
        }
        Message {
            properties: Some(Properties {
                message_id: self.message_id.clone(),
                to: Some(CBS_NODE.into()),
                reply_to: Some("cbs".into()),
                ..Properties::default()
            }),
            application_properties: Some(AnnotationMap::from_pairs(pairs)),
            body: Body::Value(Value::String(
                ByteString::from(self.token.as_str()),
                Default::default(),
            )),
            ..Message::default()
        }
    }

    /// Reads a request; `Err` says what is missing or wrong.
    pub fn from_message(m: &Message) -> Result<Self, String> {
        let props = m.application_properties.as_ref().ok_or("no application-properties")?;
        let text = |key: &str| props.get(key).and_then(|v| v.as_str().map(str::to_owned));
        match text("operation").as_deref() {
            Some("put-token") => {}
            Some(other) => {
                return Err(format!("operation {other:?} is not supported (put-token is)"))
            }
            None => return Err("no operation application property".into()),
        }
        let token_type = text("type").ok_or("no type application property")?;
        let name = text("name").ok_or("no name application property (the audience)")?;
        let token = match &m.body {
            Body::Value(Value::String(s, _)) => s.to_string(),
            _ => return Err("the body is not an amqp-value string (the token)".into()),
        };
        let expiration = match props.get("expiration") {
            Some(crate::codec::ValueRef::Timestamp(t)) => Some(t),
            _ => None,
        };
        let message_id = m.properties.as_ref().and_then(|p| p.message_id.clone());
        Ok(Self { message_id, token_type, name, token, expiration })
    }
}

/// A put-token response: `status-code` and `status-description`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CbsStatus {
    /// The request it answers (its correlation-id).
    pub correlation_id: Option<MessageId>,
    /// `status-code`: 200 (IoT Hub) or 202 (Event Hubs) on success, 401 for a bad token.
    pub code: i32,
    /// `status-description`.
    pub description: Option<String>,
}

impl CbsStatus {
    /// Whether the code is a success (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The response message: `status-code` an AMQP int, as clients require.
    pub fn to_message(&self) -> Message {
        let mut pairs: Vec<(Value, Value)> = vec![("status-code".into(), self.code.into())];
        if let Some(d) = &self.description {
            pairs.push(("status-description".into(), d.as_str().into()));
        }
        Message {
            properties: Some(Properties {
                correlation_id: self.correlation_id.clone(),
                ..Properties::default()
            }),
            application_properties: Some(AnnotationMap::from_pairs(pairs)),
            body: Body::Empty,
            ..Message::default()
        }
    }

    /// Reads a response; `Err` says what is wrong with it.
    pub fn from_message(m: &Message) -> Result<Self, String> {
        let props = m.application_properties.as_ref().ok_or("no application-properties")?;
        let code = match props.get("status-code") {
            Some(crate::codec::ValueRef::Int(c)) => c,
            Some(other) => return Err(format!("status-code is {other:?}, not an int")),
            None => return Err("no status-code".into()),
        };
        let description =
            props.get("status-description").and_then(|v| v.as_str().map(str::to_owned));
        let correlation_id = m.properties.as_ref().and_then(|p| p.correlation_id.clone());
        Ok(Self { correlation_id, code, description })
    }
}

#[cfg(feature = "tokio")]
pub(crate) use client::request_reply;
#[cfg(feature = "tokio")]
pub(crate) use server::{accept_pair, serve_node, ReplyLink};

/// The server side of `$cbs`: a node that answers each connection's put-tokens on that
/// connection's own reply link (never anyone else's), judged by the server.
#[cfg(feature = "tokio")]
mod server {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::{CbsStatus, PutToken};
    use crate::connection::LinkOptions;
    use crate::runtime::{LinkRequest, Sender};
    use crate::types::{condition, Error as AmqpError, Role};

    /// The link a request-response node answers on (the peer's receiver from it), which
    /// may attach after the first request arrives. One per connection.
    #[derive(Debug, Default)]
    pub(crate) struct ReplyLink {
        tx: Mutex<Option<Arc<Sender>>>,
        ready: Notify,
    }

    impl ReplyLink {
        pub(crate) fn set(&self, tx: Sender) {
            *self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(tx));
            self.ready.notify_waiters();
        }

        /// The link, waiting up to 10 s for it to attach.
        pub(crate) async fn get(&self) -> Option<Arc<Sender>> {
            loop {
                let ready = self.ready.notified();
                let tx = self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                if let Some(tx) = tx {
                    return Some(tx);
                }
                if tokio::time::timeout(Duration::from_secs(10), ready).await.is_err() {
                    return None;
                }
            }
        }
    }

    /// Accepts one link of a request-response pair (`$cbs`, `$management`, a twin): the
    /// peer's receiver becomes `reply`, the link answers go on (`None`); the peer's sender
    /// is accepted as our receiver of requests (`Some`).
    pub(crate) fn accept_pair(
        request: LinkRequest,
        options: LinkOptions,
        reply: &ReplyLink,
    ) -> Option<crate::runtime::Receiver> {
        if request.role() == Role::RECEIVER {
            if let Ok(tx) = request.accept_sender(Some(options)) {
                reply.set(tx);
            }
            return None;
        }
        request.accept_receiver(Some(options), 10).ok()
    }

    /// Serves a link the peer attached to `$cbs` with `options`: its receiver becomes the
    /// connection's reply link; on its sender each put-token is accepted (a message that is
    /// not one is rejected with `amqp:decode-error`) and answered on the reply link with
    /// the status `judge` gives (code and description), correlated by message-id. Nothing
    /// of a token is kept here: `judge` decides what to remember.
    pub(crate) async fn serve_node(
        request: LinkRequest,
        options: LinkOptions,
        reply: &ReplyLink,
        mut judge: impl FnMut(&PutToken) -> (i32, String),
    ) {
        let Some(rx) = accept_pair(request, options, reply) else { return };
        while let Ok(d) = rx.recv().await {
            let put = match d
                .message()
                .map_err(|e| e.to_string())
                .and_then(|m| PutToken::from_message(&m))
            {
                Err(why) => {
                    let _ = rx.reject(&d, Some(AmqpError::new(condition::DECODE_ERROR, why)));
                    continue;
                }
                Ok(put) => put,
            };
            let _ = rx.accept(&d);
            let (code, description) = judge(&put);
            let answer = CbsStatus {
                correlation_id: put.message_id.clone(),
                code,
                description: Some(description),
            };
            // The answer goes on the peer's $cbs receiver, which may still be attaching.
            let Some(tx) = reply.get().await else { continue };
            let _ = tx.send_pipelined(&answer.to_message()).await;
        }
    }
}
#[cfg(feature = "tokio")]
pub use client::{CbsClient, CbsError};

#[cfg(feature = "tokio")]
mod client {
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::sync::Mutex;

    use super::{CbsStatus, PutToken, CBS_NODE};
    use crate::connection::LinkOptions;
    use crate::message::Message;
    use crate::runtime::{Error, Receiver, Sender, Session};
    use crate::types::{AttachSource, AttachTarget, MessageId, Source, Target};

    /// Why a put-token failed.
    #[derive(Debug)]
    pub enum CbsError {
        /// The links or the connection failed.
        Link(Error),
        /// The server answered with a failure status.
        Refused(CbsStatus),
        /// The answer could not be read.
        BadResponse(String),
    }

    impl std::fmt::Display for CbsError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Self::Link(e) => write!(f, "CBS: {e}"),
                Self::Refused(s) => write!(
                    f,
                    "CBS put-token refused: status {} ({})",
                    s.code,
                    s.description.as_deref().unwrap_or("no description")
                ),
                Self::BadResponse(why) => write!(f, "CBS: a response that cannot be read: {why}"),
            }
        }
    }

    impl std::error::Error for CbsError {}

    impl From<Error> for CbsError {
        fn from(e: Error) -> Self {
            Self::Link(e)
        }
    }

    /// The client side of `$cbs`: a sender to it and a receiver from it on one session.
    /// Requests go one at a time.
    #[derive(Debug)]
    pub struct CbsClient {
        links: Mutex<(Sender, Receiver)>,
        next_id: AtomicU64,
    }

    impl CbsClient {
        /// Attaches the request and response links (`$cbs-sender`, `$cbs-receiver`, both
        /// with source and target `$cbs`, as the Azure C SDK does).
        pub async fn attach(session: &Session) -> Result<Self, Error> {
            let both = |name: &str, role| {
                let mut o = LinkOptions::receiver(name, CBS_NODE);
                o.role = role;
                o.source = Some(AttachSource::Source(Source {
                    address: Some(CBS_NODE.into()),
                    ..Source::default()
                }));
                o.target = Some(AttachTarget::Target(Target {
                    address: Some(CBS_NODE.into()),
                    ..Target::default()
                }));
                o
            };
            let sender =
                session.attach_sender(both("$cbs-sender", crate::types::Role::SENDER)).await?;
            let receiver = session
                .attach_receiver(both("$cbs-receiver", crate::types::Role::RECEIVER), 10)
                .await?;
            Ok(Self { links: Mutex::new((sender, receiver)), next_id: AtomicU64::new(0) })
        }

        /// Puts `token` for `audience`; `Ok` with the status when it is a success.
        pub async fn put_token(
            &self,
            audience: &str,
            token: &str,
            token_type: &str,
        ) -> Result<CbsStatus, CbsError> {
            let links = self.links.lock().await;
            let (sender, receiver) = &*links;
            let id = MessageId::Ulong(self.next_id.fetch_add(1, Ordering::Relaxed));
            let request = PutToken {
                message_id: Some(id.clone()),
                token_type: token_type.to_owned(),
                name: audience.to_owned(),
                token: token.to_owned(),
                expiration: None,
            };
            let (_, status) = request_reply(sender, receiver, &request.to_message(), &id).await?;
            if status.is_success() {
                Ok(status)
            } else {
                Err(CbsError::Refused(status))
            }
        }
    }

    /// Sends `request`, whose message-id is `id`, and waits on `receiver` for the answer
    /// that correlates with it, which it accepts; answers to earlier requests (that timed
    /// out on this side) are skipped. The answer and its status. The request-response
    /// pattern of `$cbs` and `$management` alike.
    pub(crate) async fn request_reply(
        sender: &Sender,
        receiver: &Receiver,
        request: &Message,
        id: &MessageId,
    ) -> Result<(Message, CbsStatus), CbsError> {
        sender.send(request).await?;
        loop {
            let d = receiver.recv().await?;
            let _ = receiver.accept(&d);
            let m = d.message()?;
            let status = CbsStatus::from_message(&m).map_err(CbsError::BadResponse)?;
            if status.correlation_id.as_ref().is_some_and(|c| c != id) {
                continue;
            }
            return Ok((m, status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip_through_messages() {
        let r = PutToken {
            message_id: Some(MessageId::String("a-1".into())),
            token_type: SAS_TOKEN_TYPE.into(),
            name: "host%2Fdevices%2Fd1".into(),
            token: "SharedAccessSignature sr=host%2Fdevices%2Fd1&sig=x&se=1".into(),
            expiration: Some(Timestamp(1_000)),
        };
        let bytes = bytes::Bytes::from(r.to_message().to_vec());
        let back = PutToken::from_message(&Message::decode(&bytes).unwrap()).unwrap();
        assert_eq!(back, r);

        let s = CbsStatus { correlation_id: r.message_id.clone(), code: 401, description: None };
        let bytes = bytes::Bytes::from(s.to_message().to_vec());
        let back = CbsStatus::from_message(&Message::decode(&bytes).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(!back.is_success());
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let mut m = PutToken {
            message_id: None,
            token_type: SAS_TOKEN_TYPE.into(),
            name: "n".into(),
            token: "t".into(),
            expiration: None,
        }
        .to_message();
        m.body = Body::Empty;
        assert!(PutToken::from_message(&m).unwrap_err().contains("amqp-value string"));
        m.application_properties = Some(AnnotationMap::from_pairs([("operation", "delete-token")]));
        assert!(PutToken::from_message(&m).unwrap_err().contains("delete-token"));
        // A status-code that is not an int is refused, as the C SDK refuses it.
        let m = Message {
            application_properties: Some(AnnotationMap::from_pairs([("status-code", 200u32)])),
            ..Message::default()
        };
        assert!(CbsStatus::from_message(&m).unwrap_err().contains("not an int"));
    }

    #[test]
    fn renewal_comes_at_the_share_of_the_lifetime() {
        assert_eq!(renewal_delay(Duration::from_secs(3600), RENEW_AT), Duration::from_secs(2880));
        assert_eq!(renewal_delay(Duration::from_millis(10), 0.8), Duration::from_secs(1));
    }
}
