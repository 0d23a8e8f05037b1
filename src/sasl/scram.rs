//! SCRAM-SHA-256 (RFC 5802 with the hash of RFC 7677), both sides, without channel binding.
//!
//! ```text
//!  client-first  n,,n=<user>,r=<client nonce>
//!  server-first  r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//!  client-final  c=biws,r=<nonce>,p=<base64 ClientProof>
//!  server-final  v=<base64 ServerSignature>          (or e=<error>)
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::SaslError;

type HmacSha256 = Hmac<Sha256>;

/// The gs2 header without channel binding and without authzid, base64: `n,,` → `biws`.
const GS2_HEADER: &str = "n,,";
const CHANNEL_BINDING: &str = "biws";

/// What a server keeps for a user instead of the password (RFC 5802, 3). Its `Debug`
/// leaves the keys out (the server key lets anyone act as the server to the user).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramStored {
    /// The salt.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl ScramStored {
    /// Derives the stored keys from a password.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = salted_password(password.as_bytes(), salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

/// Hi() of RFC 5802, 2.2: PBKDF2 with HMAC-SHA-256 and one block of output.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut mac = mac(password);
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this never fails; the fallback keeps it panic-free.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| HmacSha256::new(&Default::default()))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = mac(key);
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Compares without an early exit, so the time taken says nothing about where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// saslname of RFC 5802, 5.1: `=` and `,` escaped.
fn escape_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

fn unescape_name(name: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=3D") => out.push('='),
            Some("=2C") => out.push(','),
            _ => return Err(SaslError::Malformed("username has a bad '=' escape".into())),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `k=value` attributes of a SCRAM message, in order.
fn attributes(msg: &str) -> Result<Vec<(char, &str)>, SaslError> {
    msg.split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => Ok((k, &part[2..])),
                _ => Err(SaslError::Malformed(format!("SCRAM attribute {part:?} is not k=value"))),
            }
        })
        .collect()
}

fn attribute<'a>(attrs: &[(char, &'a str)], key: char) -> Result<&'a str, SaslError> {
    attrs
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| SaslError::Malformed(format!("SCRAM message lacks the {key}= attribute")))
}

/// A nonce may hold any printable ASCII but `,` (RFC 5802, 5.1).
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

impl std::fmt::Debug for ScramStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramStored")
            .field("salt", &self.salt)
            .field("iterations", &self.iterations)
            .field("stored_key", &"***")
            .field("server_key", &"***")
            .finish()
    }
}

/// The client side of one SCRAM-SHA-256 exchange (its `Debug` leaves the password out).
pub struct ScramClient {
    user: String,
    password: String,
    nonce: String,
    pub(super) max_iterations: u32,
    state: ClientState,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("user", &self.user)
            .field("password", &"***")
            .field("nonce", &self.nonce)
            .field("max_iterations", &self.max_iterations)
            .field("state", &self.state)
            .finish()
    }
}

#[derive(Debug)]
enum ClientState {
    Initial,
    SentFirst { client_first_bare: String },
    SentFinal { server_signature: [u8; 32] },
    Done,
}

impl ScramClient {
    /// A client for `user` with `password`. The nonce must be fresh and unpredictable; the
    /// caller supplies it (the engine takes randomness as input).
    pub fn new(user: &str, password: &str, nonce: &str) -> Result<Self, SaslError> {
        if !valid_nonce(nonce) {
            return Err(SaslError::Malformed(
                "client nonce must be printable ASCII without ','".into(),
            ));
        }
        Ok(Self {
            user: user.to_owned(),
            password: password.to_owned(),
            nonce: nonce.to_owned(),
            max_iterations: 1_000_000,
            state: ClientState::Initial,
        })
    }

    /// Refuses server-first messages that ask for more PBKDF2 iterations than this, so a
    /// hostile server cannot make the client compute for minutes.
    pub fn with_max_iterations(mut self, max: u32) -> Self {
        self.max_iterations = max;
        self
    }

    /// The client-first message (the sasl-init initial response).
    pub fn client_first(&mut self) -> Vec<u8> {
        let bare = format!("n={},r={}", escape_name(&self.user), self.nonce);
        let msg = format!("{GS2_HEADER}{bare}");
        self.state = ClientState::SentFirst { client_first_bare: bare };
        msg.into_bytes()
    }

    /// Answers the server-first message with the client-final message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let ClientState::SentFirst { client_first_bare } = &self.state else {
            return Err(SaslError::Unexpected("a SCRAM challenge out of turn".into()));
        };
        let sf = std::str::from_utf8(server_first)
            .map_err(|_| SaslError::Malformed("server-first is not UTF-8".into()))?;
        let attrs = attributes(sf)?;
        if let Ok(e) = attribute(&attrs, 'e') {
            return Err(SaslError::Rejected(format!("server-first error: {e}")));
        }
        let nonce = attribute(&attrs, 'r')?;
        // RFC 5802, 5.1: the server's nonce starts with the client's.
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() || !valid_nonce(nonce)
        {
            return Err(SaslError::Malformed(
                "server nonce does not extend the client nonce".into(),
            ));
        }
        let salt = B64
            .decode(attribute(&attrs, 's')?)
            .map_err(|_| SaslError::Malformed("salt is not base64".into()))?;
        let iterations: u32 = attribute(&attrs, 'i')?
            .parse()
            .map_err(|_| SaslError::Malformed("iteration count is not a number".into()))?;
        if iterations == 0 || iterations > self.max_iterations {
            return Err(SaslError::Malformed(format!(
                "iteration count {iterations} outside 1..={}",
                self.max_iterations
            )));
        }
        let without_proof = format!("c={CHANNEL_BINDING},r={nonce}");
        let auth_message = format!("{client_first_bare},{sf},{without_proof}");
        let salted = salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature.iter()).map(|(a, b)| a ^ b).collect();
        let server_key = hmac(&salted, b"Server Key");
        self.state =
            ClientState::SentFinal { server_signature: hmac(&server_key, auth_message.as_bytes()) };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server proves it knows the password too.
    pub fn verify_server_final(&mut self, server_final: &[u8]) -> Result<(), SaslError> {
        let ClientState::SentFinal { server_signature } = &self.state else {
            return Err(SaslError::Unexpected("a SCRAM server-final out of turn".into()));
        };
        let s = std::str::from_utf8(server_final)
            .map_err(|_| SaslError::Malformed("server-final is not UTF-8".into()))?;
        let attrs = attributes(s)?;
        if let Ok(e) = attribute(&attrs, 'e') {
            return Err(SaslError::Rejected(format!("server-final error: {e}")));
        }
        let v = B64
            .decode(attribute(&attrs, 'v')?)
            .map_err(|_| SaslError::Malformed("server signature is not base64".into()))?;
        if !constant_time_eq(&v, server_signature) {
            return Err(SaslError::ServerNotAuthenticated);
        }
        self.state = ClientState::Done;
        Ok(())
    }

    /// Whether the server's signature has been checked.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }
}

/// The server side of one SCRAM-SHA-256 exchange.
#[derive(Clone, Debug)]
pub struct ScramServer {
    state: ServerState,
}

#[derive(Clone, Debug)]
enum ServerState {
    Initial,
    SentFirst {
        user: String,
        stored: ScramStored,
        nonce: String,
        client_first_bare: String,
        server_first: String,
    },
    Done,
}

/// What the server does next.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramStep {
    /// Send this server-first message as a challenge.
    Challenge(Vec<u8>),
    /// Authenticated as `user`; send the server-final message with the outcome.
    Success {
        /// The authenticated user.
        user: String,
        /// The server-final message (`v=…`).
        server_final: Vec<u8>,
    },
    /// Not authenticated; the reason is for logs, not for the peer.
    Failure(String),
}

impl Default for ScramServer {
    fn default() -> Self {
        Self::new()
    }
}

impl ScramServer {
    /// A server waiting for the client-first message.
    pub fn new() -> Self {
        Self { state: ServerState::Initial }
    }

    /// Handles the client-first message. `lookup` finds a user's stored keys; `server_nonce`
    /// must be fresh and unpredictable (printable ASCII without `,`).
    pub fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramStored>,
        server_nonce: &str,
    ) -> Result<ScramStep, SaslError> {
        if !matches!(self.state, ServerState::Initial) {
            return Err(SaslError::Unexpected("a second client-first".into()));
        }
        let text = std::str::from_utf8(msg)
            .map_err(|_| SaslError::Malformed("client-first is not UTF-8".into()))?;
        // gs2 header: "n,," only (no channel binding; an authzid is not supported).
        let Some(bare) = text.strip_prefix(GS2_HEADER) else {
            let reason = if text.starts_with('p') || text.starts_with('y') {
                "channel binding is not supported"
            } else {
                "client-first must start with the gs2 header 'n,,'"
            };
            return Ok(ScramStep::Failure(reason.into()));
        };
        let attrs = attributes(bare)?;
        let user = unescape_name(attribute(&attrs, 'n')?)?;
        let client_nonce = attribute(&attrs, 'r')?;
        if !valid_nonce(client_nonce) || !valid_nonce(server_nonce) {
            return Err(SaslError::Malformed("nonce must be printable ASCII without ','".into()));
        }
        let Some(stored) = lookup(&user) else {
            return Ok(ScramStep::Failure(format!("unknown user {user:?}")));
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first =
            format!("r={nonce},s={},i={}", B64.encode(&stored.salt), stored.iterations);
        let reply = server_first.clone().into_bytes();
        self.state = ServerState::SentFirst {
            user,
            stored,
            nonce,
            client_first_bare: bare.to_owned(),
            server_first,
        };
        Ok(ScramStep::Challenge(reply))
    }

    /// Handles the client-final message: checks the proof against the stored key.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<ScramStep, SaslError> {
        let ServerState::SentFirst { user, stored, nonce, client_first_bare, server_first } =
            std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(SaslError::Unexpected("a client-final out of turn".into()));
        };
        let text = std::str::from_utf8(msg)
            .map_err(|_| SaslError::Malformed("client-final is not UTF-8".into()))?;
        let Some((without_proof, proof_b64)) = text.rsplit_once(",p=") else {
            return Err(SaslError::Malformed("client-final lacks the proof".into()));
        };
        let attrs = attributes(without_proof)?;
        if attribute(&attrs, 'c')? != CHANNEL_BINDING {
            return Ok(ScramStep::Failure("channel binding data does not match 'n,,'".into()));
        }
        if attribute(&attrs, 'r')? != nonce {
            return Ok(ScramStep::Failure("nonce does not match".into()));
        }
        let proof = B64
            .decode(proof_b64)
            .map_err(|_| SaslError::Malformed("proof is not base64".into()))?;
        if proof.len() != 32 {
            return Ok(ScramStep::Failure("proof has the wrong length".into()));
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(&stored.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(signature.iter()).map(|(a, b)| a ^ b).collect();
        // RFC 5802, 3: the server checks H(ClientKey) against StoredKey.
        if !constant_time_eq(&Sha256::digest(&client_key), &stored.stored_key) {
            return Ok(ScramStep::Failure(format!("wrong password for {user:?}")));
        }
        let server_signature = hmac(&stored.server_key, auth_message.as_bytes());
        Ok(ScramStep::Success {
            user,
            server_final: format!("v={}", B64.encode(server_signature)).into_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example exchange of RFC 7677, section 3 (user "user", password "pencil").
    const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn stored() -> ScramStored {
        ScramStored::derive("pencil", &B64.decode(SALT).expect("salt"), 4096)
    }

    #[test]
    fn client_reproduces_the_rfc_7677_exchange() {
        let mut c = ScramClient::new("user", "pencil", CLIENT_NONCE).expect("client");
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert_eq!(
            c.client_final(SERVER_FIRST.as_bytes()).expect("final"),
            CLIENT_FINAL.as_bytes()
        );
        c.verify_server_final(SERVER_FINAL.as_bytes()).expect("server signature");
        assert!(c.is_done());
    }

    #[test]
    fn server_reproduces_the_rfc_7677_exchange() {
        let mut s = ScramServer::new();
        let step = s
            .client_first(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |u| (u == "user").then(stored),
                SERVER_NONCE,
            )
            .expect("first");
        assert_eq!(step, ScramStep::Challenge(SERVER_FIRST.as_bytes().to_vec()));
        let step = s.client_final(CLIENT_FINAL.as_bytes()).expect("final");
        assert_eq!(
            step,
            ScramStep::Success {
                user: "user".into(),
                server_final: SERVER_FINAL.as_bytes().to_vec()
            }
        );
    }

    #[test]
    fn server_refuses_a_wrong_password_and_an_unknown_user() {
        let mut c = ScramClient::new("user", "pencil!", CLIENT_NONCE).expect("client");
        let first = c.client_first();
        let mut s = ScramServer::new();
        let ScramStep::Challenge(sf) =
            s.client_first(&first, |_| Some(stored()), SERVER_NONCE).expect("first")
        else {
            panic!()
        };
        let cf = c.client_final(&sf).expect("client final");
        assert!(
            matches!(s.client_final(&cf).expect("final"), ScramStep::Failure(r) if r.contains("wrong password"))
        );
        let mut s = ScramServer::new();
        assert!(matches!(
            s.client_first(&first, |_| None, SERVER_NONCE).expect("first"),
            ScramStep::Failure(_)
        ));
    }

    #[test]
    fn client_detects_a_server_that_does_not_know_the_password() {
        let mut c = ScramClient::new("user", "pencil", CLIENT_NONCE).expect("client");
        c.client_first();
        c.client_final(SERVER_FIRST.as_bytes()).expect("final");
        let forged = format!("v={}", B64.encode([0u8; 32]));
        assert_eq!(
            c.verify_server_final(forged.as_bytes()),
            Err(SaslError::ServerNotAuthenticated)
        );
    }

    #[test]
    fn client_refuses_malformed_or_hostile_server_first() {
        for bad in [
            "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=***,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000",
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            "garbage",
        ] {
            let mut c = ScramClient::new("user", "pencil", CLIENT_NONCE).expect("client");
            c.client_first();
            assert!(c.client_final(bad.as_bytes()).is_err(), "{bad}");
        }
        let mut c = ScramClient::new("user", "pencil", CLIENT_NONCE).expect("client");
        c.client_first();
        assert!(matches!(c.client_final(b"e=other-error"), Err(SaslError::Rejected(_))));
    }

    #[test]
    fn usernames_are_escaped_both_ways() {
        assert_eq!(escape_name("a=b,c"), "a=3Db=2Cc");
        assert_eq!(unescape_name("a=3Db=2Cc").expect("valid"), "a=b,c");
        assert!(unescape_name("a=4").is_err());
        let mut c = ScramClient::new("a=b,c", "pw", "nonce").expect("client");
        let mut s = ScramServer::new();
        let salt = [7u8; 16];
        let step = s
            .client_first(
                &c.client_first(),
                |u| (u == "a=b,c").then(|| ScramStored::derive("pw", &salt, 4096)),
                "srv",
            )
            .expect("first");
        let ScramStep::Challenge(sf) = step else { panic!("{step:?}") };
        let ScramStep::Success { server_final, .. } =
            s.client_final(&c.client_final(&sf).expect("cf")).expect("sf")
        else {
            panic!()
        };
        c.verify_server_final(&server_final).expect("mutual");
    }
}
