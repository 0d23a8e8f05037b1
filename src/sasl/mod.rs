//! SASL (part 5, 5.3) as sans-IO state machines: the client side of ANONYMOUS, PLAIN,
//! EXTERNAL, SCRAM-SHA-256 and MSSBCBS, and a pluggable server-side [`Authenticator`] with a
//! ready-made [`Credentials`] store.
//!
//! Nothing here touches a socket or a clock; the connection engine feeds the frames in and
//! sends what comes out:
//!
//! ```text
//!  client                                   server
//!    ◄──────────── sasl-mechanisms ───────── Authenticator::mechanisms
//!    SaslClient::initial_response
//!    ───────────── sasl-init ──────────────► Authenticator::start   → Challenge | Done
//!    ◄──────────── sasl-challenge ──────────
//!    SaslClient::challenge
//!    ───────────── sasl-response ──────────► Authenticator::step    → Challenge | Done
//!    ◄──────────── sasl-outcome ────────────
//!    SaslClient::outcome  (SCRAM checks the server's signature here)
//! ```
//!
//! MSSBCBS is the empty mechanism Azure services offer: it says "authentication follows
//! over claims-based security (the `$cbs` node)".

mod scram;

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;

pub use scram::{ScramClient, ScramServer, ScramStep, ScramStored};

use crate::codec::Symbol;
use crate::types::SaslCode;

/// `ANONYMOUS` (RFC 4505).
pub const ANONYMOUS: &str = "ANONYMOUS";
/// `PLAIN` (RFC 4616).
pub const PLAIN: &str = "PLAIN";
/// `EXTERNAL` (RFC 4422, appendix A): the identity comes from the transport (a TLS client
/// certificate).
pub const EXTERNAL: &str = "EXTERNAL";
/// `SCRAM-SHA-256` (RFC 7677).
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// `MSSBCBS`: authentication follows over CBS (Azure).
pub const MSSBCBS: &str = "MSSBCBS";

/// A SASL exchange failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// The server does not offer the mechanism the client is set up for.
    NotOffered {
        /// The client's mechanism.
        mechanism: &'static str,
        /// What the server offered.
        offered: Vec<String>,
    },
    /// The server's outcome was not `ok`.
    Failed {
        /// The outcome code.
        code: SaslCode,
    },
    /// We, the server, refused the client's authentication: the outcome code sent, and
    /// why (the authenticator's reason, which the client is never told).
    Refused {
        /// The outcome code sent.
        code: SaslCode,
        /// Why.
        reason: String,
    },
    /// The peer sent something the mechanism cannot parse.
    Malformed(String),
    /// The peer sent a message the mechanism did not expect at this point.
    Unexpected(String),
    /// The server reported an error inside the mechanism.
    Rejected(String),
    /// The server's SCRAM signature is wrong: it does not know the password, so it is not
    /// the server the client meant to reach.
    ServerNotAuthenticated,
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOffered { mechanism, offered } => {
                write!(
                    f,
                    "the server does not offer {mechanism} (it offers {})",
                    offered.join(", ")
                )
            }
            Self::Failed { code } => write!(
                f,
                "authentication failed: sasl-outcome {} ({})",
                code.0,
                code.name().unwrap_or("unknown code")
            ),
            Self::Refused { code, reason } => write!(
                f,
                "authentication failed: sasl-outcome {} ({}); refused because {reason}",
                code.0,
                code.name().unwrap_or("unknown code")
            ),
            Self::Malformed(m) => write!(f, "malformed SASL message: {m}"),
            Self::Unexpected(m) => write!(f, "unexpected SASL message: {m}"),
            Self::Rejected(m) => write!(f, "the server rejected the exchange: {m}"),
            Self::ServerNotAuthenticated => {
                f.write_str("the server's SCRAM signature is wrong: it does not know the password")
            }
        }
    }
}

impl std::error::Error for SaslError {}

/// The client side of one SASL exchange.
#[derive(Debug)]
pub struct SaslClient {
    mechanism: ClientMechanism,
    hostname: Option<String>,
}

enum ClientMechanism {
    Anonymous {
        trace: String,
    },
    Plain {
        authzid: String,
        user: String,
        password: String,
    },
    External {
        authzid: String,
    },
    /// Behind a trait object, so that a build that never makes a SCRAM client (the
    /// browser's client module) links no SHA-256, HMAC or base64 code.
    Scram(Box<dyn ScramSide>),
    Mssbcbs,
}

/// What [`SaslClient`] asks of its SCRAM client ([`ScramClient`]'s methods).
trait ScramSide: fmt::Debug + Send + Sync {
    fn client_first(&mut self) -> Vec<u8>;
    fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError>;
    fn verify_server_final(&mut self, server_final: &[u8]) -> Result<(), SaslError>;
    fn is_done(&self) -> bool;
    fn limit_iterations(&mut self, max: u32);
}

impl ScramSide for ScramClient {
    fn client_first(&mut self) -> Vec<u8> {
        Self::client_first(self)
    }

    fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        Self::client_final(self, server_first)
    }

    fn verify_server_final(&mut self, server_final: &[u8]) -> Result<(), SaslError> {
        Self::verify_server_final(self, server_final)
    }

    fn is_done(&self) -> bool {
        Self::is_done(self)
    }

    fn limit_iterations(&mut self, max: u32) {
        self.max_iterations = max;
    }
}

/// Shown without the password (or the token MSSBCBS is given later): a `{:?}` in a log
/// must not leak it.
impl std::fmt::Debug for ClientMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous { trace } => f.debug_struct("Anonymous").field("trace", trace).finish(),
            Self::Plain { authzid, user, .. } => f
                .debug_struct("Plain")
                .field("authzid", authzid)
                .field("user", user)
                .field("password", &"***")
                .finish(),
            Self::External { authzid } => {
                f.debug_struct("External").field("authzid", authzid).finish()
            }
            Self::Scram(c) => f.debug_tuple("Scram").field(c).finish(),
            Self::Mssbcbs => f.write_str("Mssbcbs"),
        }
    }
}

impl SaslClient {
    /// ANONYMOUS, with an optional trace string (RFC 4505) as the initial response.
    pub fn anonymous(trace: &str) -> Self {
        Self::with(ClientMechanism::Anonymous { trace: trace.to_owned() })
    }

    /// PLAIN with a user and password (no authorization identity: RabbitMQ and others
    /// refuse one).
    pub fn plain(user: &str, password: &str) -> Self {
        Self::with(ClientMechanism::Plain {
            authzid: String::new(),
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// PLAIN acting for `authzid`.
    pub fn plain_as(authzid: &str, user: &str, password: &str) -> Self {
        Self::with(ClientMechanism::Plain {
            authzid: authzid.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// EXTERNAL: the identity is the transport's (a TLS client certificate); `authzid` may
    /// be empty, and is then sent as an empty initial response rather than none.
    pub fn external(authzid: &str) -> Self {
        Self::with(ClientMechanism::External { authzid: authzid.to_owned() })
    }

    /// SCRAM-SHA-256; `nonce` must be fresh and unpredictable.
    pub fn scram_sha256(user: &str, password: &str, nonce: &str) -> Result<Self, SaslError> {
        Ok(Self::with(ClientMechanism::Scram(Box::new(ScramClient::new(user, password, nonce)?))))
    }

    /// For SCRAM: refuses a server-first message that asks for more PBKDF2 iterations than
    /// `max` (1,000,000 unless set), so that a hostile server cannot keep the client
    /// computing. Other mechanisms ignore it.
    pub fn with_max_scram_iterations(mut self, max: u32) -> Self {
        if let ClientMechanism::Scram(s) = &mut self.mechanism {
            s.limit_iterations(max);
        }
        self
    }

    /// MSSBCBS: an empty exchange; the application authenticates over CBS afterwards.
    pub fn mssbcbs() -> Self {
        Self::with(ClientMechanism::Mssbcbs)
    }

    fn with(mechanism: ClientMechanism) -> Self {
        Self { mechanism, hostname: None }
    }

    /// The hostname to put in sasl-init.
    pub fn with_hostname(mut self, hostname: &str) -> Self {
        self.hostname = Some(hostname.to_owned());
        self
    }

    /// The hostname for sasl-init.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }

    /// The mechanism's name.
    pub fn mechanism(&self) -> &'static str {
        match self.mechanism {
            ClientMechanism::Anonymous { .. } => ANONYMOUS,
            ClientMechanism::Plain { .. } => PLAIN,
            ClientMechanism::External { .. } => EXTERNAL,
            ClientMechanism::Scram(_) => SCRAM_SHA_256,
            ClientMechanism::Mssbcbs => MSSBCBS,
        }
    }

    /// Checks the server's sasl-mechanisms list: choosing a mechanism the server did not
    /// offer is an error, not a guess.
    pub fn check_offered(&self, offered: &[Symbol]) -> Result<(), SaslError> {
        if offered.iter().any(|m| m.as_str() == self.mechanism()) {
            Ok(())
        } else {
            Err(SaslError::NotOffered {
                mechanism: self.mechanism(),
                offered: offered.iter().map(|m| m.as_str().to_owned()).collect(),
            })
        }
    }

    /// The initial response for sasl-init (`None` leaves the field out).
    pub fn initial_response(&mut self) -> Option<Bytes> {
        Some(match &mut self.mechanism {
            ClientMechanism::Anonymous { trace } => Bytes::from(trace.clone().into_bytes()),
            ClientMechanism::Plain { authzid, user, password } => {
                // RFC 4616: authzid NUL authcid NUL passwd.
                let mut v = Vec::with_capacity(authzid.len() + user.len() + password.len() + 2);
                v.extend_from_slice(authzid.as_bytes());
                v.push(0);
                v.extend_from_slice(user.as_bytes());
                v.push(0);
                v.extend_from_slice(password.as_bytes());
                Bytes::from(v)
            }
            ClientMechanism::External { authzid } => Bytes::from(authzid.clone().into_bytes()),
            ClientMechanism::Scram(s) => Bytes::from(s.client_first()),
            ClientMechanism::Mssbcbs => return None,
        })
    }

    /// Answers a sasl-challenge.
    pub fn challenge(&mut self, data: &[u8]) -> Result<Bytes, SaslError> {
        match &mut self.mechanism {
            ClientMechanism::Scram(s) if !s.is_done() => {
                // Some servers send server-final as a last challenge (answered with an empty
                // response) instead of in the outcome's additional-data.
                if data.starts_with(b"v=") || data.starts_with(b"e=") {
                    s.verify_server_final(data)?;
                    return Ok(Bytes::new());
                }
                Ok(Bytes::from(s.client_final(data)?))
            }
            _ => Err(SaslError::Unexpected(format!("{} takes no challenge", self.mechanism()))),
        }
    }

    /// Handles the sasl-outcome: `Ok` when authenticated (and, for SCRAM, when the server
    /// proved it knows the password).
    pub fn outcome(
        &mut self,
        code: SaslCode,
        additional_data: Option<&[u8]>,
    ) -> Result<(), SaslError> {
        if code != SaslCode::OK {
            return Err(SaslError::Failed { code });
        }
        if let ClientMechanism::Scram(s) = &mut self.mechanism {
            if !s.is_done() {
                let data = additional_data.ok_or(SaslError::ServerNotAuthenticated)?;
                s.verify_server_final(data)?;
            }
        }
        Ok(())
    }
}

/// The server side of SASL: which mechanisms to offer, and how to judge each exchange.
/// One value serves one connection.
pub trait Authenticator: fmt::Debug {
    /// The mechanisms to offer, in order of preference.
    fn mechanisms(&self) -> Vec<Symbol>;

    /// The client's sasl-init. `external_identity` is the transport's authenticated
    /// identity (a TLS client certificate's subject), if any.
    fn start(
        &mut self,
        mechanism: &str,
        initial_response: Option<&[u8]>,
        hostname: Option<&str>,
        external_identity: Option<&str>,
    ) -> AuthStep;

    /// A sasl-response.
    fn step(&mut self, response: &[u8]) -> AuthStep;
}

/// What the server sends next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthStep {
    /// A sasl-challenge with these bytes.
    Challenge(Bytes),
    /// A sasl-outcome.
    Done(AuthOutcome),
}

/// The end of an exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthOutcome {
    /// The outcome code.
    pub code: SaslCode,
    /// The authenticated identity (`anonymous` for ANONYMOUS, the user otherwise).
    pub identity: Option<String>,
    /// additional-data for the outcome (SCRAM's server-final).
    pub additional_data: Option<Bytes>,
    /// Why it failed, for logs (never sent to the peer).
    pub reason: Option<String>,
}

impl AuthOutcome {
    fn ok(identity: impl Into<String>, additional_data: Option<Bytes>) -> AuthStep {
        AuthStep::Done(Self {
            code: SaslCode::OK,
            identity: Some(identity.into()),
            additional_data,
            reason: None,
        })
    }

    fn auth_failed(reason: impl Into<String>) -> AuthStep {
        AuthStep::Done(Self {
            code: SaslCode::AUTH,
            identity: None,
            additional_data: None,
            reason: Some(reason.into()),
        })
    }
}

/// A user's secret as the server keeps it.
#[derive(Clone)]
pub enum Secret {
    /// The password itself: PLAIN and SCRAM (with keys derived once, on a fixed salt).
    Password(String),
    /// SCRAM keys only: PLAIN is refused for this user.
    Scram(ScramStored),
}

/// Shown without the password.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password(_) => f.write_str("Password(***)"),
            Self::Scram(s) => f.debug_tuple("Scram").field(s).finish(),
        }
    }
}

/// An [`Authenticator`] over a table of users, with switches for ANONYMOUS, EXTERNAL and
/// MSSBCBS. Randomness for SCRAM server nonces is supplied by the caller.
#[derive(Clone)]
pub struct Credentials {
    users: HashMap<String, (Secret, Option<ScramStored>)>,
    /// Offer and accept ANONYMOUS.
    pub allow_anonymous: bool,
    /// Offer and accept EXTERNAL when the transport has an identity.
    pub allow_external: bool,
    /// Offer and accept MSSBCBS.
    pub allow_mssbcbs: bool,
    nonce: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
    scram: Option<ScramServer>,
    current: Option<&'static str>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("allow_anonymous", &self.allow_anonymous)
            .field("allow_external", &self.allow_external)
            .field("allow_mssbcbs", &self.allow_mssbcbs)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// An empty table. `nonce` makes SCRAM server nonces: fresh, unpredictable, printable
    /// ASCII without `,`.
    pub fn new(nonce: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self {
            users: HashMap::new(),
            allow_anonymous: false,
            allow_external: false,
            allow_mssbcbs: false,
            nonce: std::sync::Arc::new(nonce),
            scram: None,
            current: None,
        }
    }

    /// Adds a user with a password (PLAIN and SCRAM-SHA-256). The SCRAM keys are derived
    /// now, with `salt` and 4096 iterations (RFC 7677's minimum).
    pub fn with_user(mut self, user: &str, password: &str, salt: &[u8]) -> Self {
        let stored = ScramStored::derive(password, salt, 4096);
        self.users.insert(user.to_owned(), (Secret::Password(password.to_owned()), Some(stored)));
        self
    }

    /// Adds a user known only by SCRAM keys (the server never saw the password).
    pub fn with_scram_user(mut self, user: &str, stored: ScramStored) -> Self {
        self.users.insert(user.to_owned(), (Secret::Scram(stored.clone()), Some(stored)));
        self
    }

    /// Accept ANONYMOUS too.
    pub fn anonymous(mut self, on: bool) -> Self {
        self.allow_anonymous = on;
        self
    }

    /// Accept EXTERNAL too.
    pub fn external(mut self, on: bool) -> Self {
        self.allow_external = on;
        self
    }

    /// Accept MSSBCBS too.
    pub fn mssbcbs(mut self, on: bool) -> Self {
        self.allow_mssbcbs = on;
        self
    }

    fn check_plain(&self, response: &[u8]) -> AuthStep {
        // RFC 4616: [authzid] NUL authcid NUL passwd.
        let mut parts = response.splitn(3, |b| *b == 0);
        let (Some(authzid), Some(user), Some(password)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return AuthOutcome::auth_failed("PLAIN response is not authzid NUL user NUL password");
        };
        let (Ok(authzid), Ok(user), Ok(password)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(user),
            std::str::from_utf8(password),
        ) else {
            return AuthOutcome::auth_failed("PLAIN response is not UTF-8");
        };
        if !authzid.is_empty() && authzid != user {
            return AuthOutcome::auth_failed(format!("{user:?} may not act as {authzid:?}"));
        }
        match self.users.get(user) {
            Some((Secret::Password(p), _)) if constant_eq(p.as_bytes(), password.as_bytes()) => {
                AuthOutcome::ok(user, None)
            }
            Some((Secret::Password(_), _)) => {
                AuthOutcome::auth_failed(format!("wrong password for {user:?}"))
            }
            Some((Secret::Scram(_), _)) => {
                AuthOutcome::auth_failed(format!("{user:?} may only use SCRAM"))
            }
            None => AuthOutcome::auth_failed(format!("unknown user {user:?}")),
        }
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator for Credentials {
    fn mechanisms(&self) -> Vec<Symbol> {
        let mut m = Vec::new();
        if !self.users.is_empty() {
            m.push(Symbol::from(SCRAM_SHA_256));
            m.push(Symbol::from(PLAIN));
        }
        if self.allow_external {
            m.push(Symbol::from(EXTERNAL));
        }
        if self.allow_mssbcbs {
            m.push(Symbol::from(MSSBCBS));
        }
        if self.allow_anonymous {
            m.push(Symbol::from(ANONYMOUS));
        }
        m
    }

    fn start(
        &mut self,
        mechanism: &str,
        initial_response: Option<&[u8]>,
        _hostname: Option<&str>,
        external_identity: Option<&str>,
    ) -> AuthStep {
        let offered = self.mechanisms().iter().any(|m| m.as_str() == mechanism);
        if !offered {
            return AuthOutcome::auth_failed(format!("mechanism {mechanism:?} was not offered"));
        }
        match mechanism {
            ANONYMOUS => AuthOutcome::ok("anonymous", None),
            MSSBCBS => AuthOutcome::ok("$cbs", None),
            PLAIN => match initial_response {
                Some(r) => self.check_plain(r),
                None => {
                    self.current = Some(PLAIN);
                    AuthStep::Challenge(Bytes::new())
                }
            },
            EXTERNAL => match external_identity {
                Some(id) => {
                    let authzid =
                        initial_response.and_then(|r| std::str::from_utf8(r).ok()).unwrap_or("");
                    if authzid.is_empty() || authzid == id {
                        AuthOutcome::ok(id, None)
                    } else {
                        AuthOutcome::auth_failed(format!("{id:?} may not act as {authzid:?}"))
                    }
                }
                None => AuthOutcome::auth_failed(
                    "EXTERNAL needs a transport identity (a TLS client certificate)",
                ),
            },
            SCRAM_SHA_256 => {
                let Some(first) = initial_response else {
                    return AuthOutcome::auth_failed(
                        "SCRAM-SHA-256 needs the client-first message in sasl-init",
                    );
                };
                let mut server = ScramServer::new();
                let nonce = (self.nonce)();
                let users = &self.users;
                let step = server.client_first(
                    first,
                    |u| users.get(u).and_then(|(_, s)| s.clone()),
                    &nonce,
                );
                self.scram = Some(server);
                scram_step(step)
            }
            other => AuthOutcome::auth_failed(format!("mechanism {other:?} is not supported")),
        }
    }

    fn step(&mut self, response: &[u8]) -> AuthStep {
        if self.current.take() == Some(PLAIN) {
            return self.check_plain(response);
        }
        match self.scram.as_mut() {
            Some(s) => scram_step(s.client_final(response)),
            None => AuthOutcome::auth_failed("a sasl-response with no challenge outstanding"),
        }
    }
}

fn scram_step(step: Result<ScramStep, SaslError>) -> AuthStep {
    match step {
        Ok(ScramStep::Challenge(c)) => AuthStep::Challenge(Bytes::from(c)),
        Ok(ScramStep::Success { user, server_final }) => {
            AuthOutcome::ok(user, Some(Bytes::from(server_final)))
        }
        Ok(ScramStep::Failure(reason)) => AuthOutcome::auth_failed(reason),
        Err(e) => AuthOutcome::auth_failed(e.to_string()),
    }
}
