//! Errors of the async API: each says which scope failed (transport, connection, session,
//! link) and carries the peer's error condition and description when the peer sent one.

use std::fmt;

use crate::connection::{ConnectionError, UsageError};
use crate::types;

use super::transport::{EndpointError, TransportError};

/// Why an operation of the async API failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be parsed.
    Endpoint(EndpointError),
    /// The transport could not be set up (TCP, TLS or WebSocket).
    Transport(TransportError),
    /// The connection ended: closed by the peer with an error, a protocol violation (ours
    /// to report, the peer's to fix), a SASL failure, a time-out, or the transport closing.
    Connection(ConnectionError),
    /// The connection was closed cleanly (by us or by the peer) before the operation ended.
    Closed,
    /// The session ended, by the peer (with its error, if any) or after a violation.
    SessionEnded(Option<types::Error>),
    /// The peer refused the link: it answered the attach without a terminus and detached
    /// with this error (2.6.3).
    LinkRefused(Option<types::Error>),
    /// The link was detached, by the peer (with its error, if any) or after a violation.
    LinkDetached(Option<types::Error>),
    /// The engine refused the command (a programming error, or a limit of the peer's).
    Usage(UsageError),
    /// A message could not be decoded.
    Decode(crate::codec::DecodeError),
    /// A handshake or the open exchange took too long, or the peer did not answer our
    /// detach or end within the connection's close time-out. (A refusal the peer sends no
    /// detach after within it is [`Error::LinkRefused`] without a reason.)
    Timeout(&'static str),
    /// The transaction coordinator refused a declare or a discharge (part 4), with its
    /// error (`amqp:transaction:rollback`, `…:unknown-id`, `…:timeout`, …).
    Transaction(types::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = |f: &mut fmt::Formatter<'_>, what: &str, e: &Option<types::Error>| match e {
            Some(e) => write!(f, "{what}: {e}"),
            None => f.write_str(what),
        };
        match self {
            Self::Endpoint(e) => write!(f, "bad URL: {e}"),
            Self::Transport(e) => write!(f, "transport: {e}"),
            Self::Connection(e) => write!(f, "connection: {e}"),
            Self::Closed => f.write_str("connection: closed"),
            Self::SessionEnded(e) => peer(f, "session: ended", e),
            Self::LinkRefused(e) => peer(f, "link: refused by the peer", e),
            Self::LinkDetached(e) => peer(f, "link: detached", e),
            Self::Usage(e) => write!(f, "usage: {e}"),
            Self::Decode(e) => write!(f, "message: {e}"),
            Self::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Self::Transaction(e) => write!(f, "transaction: refused by the coordinator: {e}"),
        }
    }
}

impl std::error::Error for Error {
    /// The error this one wraps: the URL's, the transport's (and its I/O error below it),
    /// the connection's, the engine's refusal, the message's decoding error. (The text of
    /// each is in this one's `Display` too, as the transport's is in its own.)
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Endpoint(e) => Some(e),
            Self::Transport(e) => Some(e),
            Self::Connection(e) => Some(e),
            Self::Usage(e) => Some(e),
            Self::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<UsageError> for Error {
    fn from(e: UsageError) -> Self {
        Self::Usage(e)
    }
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Self::Transport(e)
    }
}

impl From<EndpointError> for Error {
    fn from(e: EndpointError) -> Self {
        Self::Endpoint(e)
    }
}

impl Error {
    /// The AMQP error the peer sent, if this failure carries one.
    pub fn remote(&self) -> Option<&types::Error> {
        match self {
            Self::Connection(ConnectionError::Remote(e)) => Some(e),
            Self::SessionEnded(e) | Self::LinkRefused(e) | Self::LinkDetached(e) => e.as_ref(),
            Self::Transaction(e) => Some(e),
            _ => None,
        }
    }

    /// A copy for a second waiter: the same scope and peer error.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Connection(e) => Self::Connection(e.clone()),
            Self::Closed => Self::Closed,
            Self::SessionEnded(e) => Self::SessionEnded(e.clone()),
            Self::LinkRefused(e) => Self::LinkRefused(e.clone()),
            Self::LinkDetached(e) => Self::LinkDetached(e.clone()),
            Self::Usage(e) => Self::Usage(e.clone()),
            Self::Timeout(w) => Self::Timeout(w),
            Self::Endpoint(e) => Self::Endpoint(e.clone()),
            Self::Transport(e) => Self::Transport(e.duplicate()),
            Self::Decode(e) => Self::Decode(e.clone()),
            Self::Transaction(e) => Self::Transaction(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_keeps_the_scope_and_the_words() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let errors = [
            Error::Transport(TransportError::Connect { endpoint: "amqp://h:1".into(), source: io }),
            Error::Transport(TransportError::WsPath {
                requested: "/a".into(),
                served: "/b".into(),
            }),
            Error::Decode(crate::codec::Value::decode(&[0xff]).expect_err("bad")),
            Error::Endpoint(
                crate::runtime::transport::Endpoint::parse("amqp://h/q").expect_err("path"),
            ),
            Error::LinkDetached(None),
            Error::Timeout("open"),
        ];
        for e in &errors {
            let d = e.duplicate();
            assert_eq!(d.to_string(), e.to_string());
            assert_eq!(std::mem::discriminant(&d), std::mem::discriminant(e), "{e}");
        }
        let Error::Transport(TransportError::Connect { source, .. }) = errors[0].duplicate() else {
            panic!("not a connect error")
        };
        assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn the_chain_of_sources_reaches_the_io_error() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e =
            Error::Transport(TransportError::Connect { endpoint: "amqp://h:1".into(), source: io });
        let mut chain = Vec::new();
        let mut at: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = at {
            chain.push(err.to_string());
            at = err.source();
        }
        assert_eq!(chain.len(), 3, "{chain:?}");
        assert_eq!(chain[2], "refused");
        let io =
            e.source().and_then(|t| t.source()).and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(std::io::Error::kind), Some(std::io::ErrorKind::ConnectionRefused));
        // Errors of the peer's making have no source of ours.
        assert!(Error::LinkDetached(None).source().is_none());
        let usage = Error::Usage(UsageError::NoCredit);
        assert_eq!(usage.source().map(ToString::to_string), Some(UsageError::NoCredit.to_string()));
    }
}
