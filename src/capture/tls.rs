//! TLS in captures, decrypted with a key log: the NSS key log format that `SSLKEYLOGFILE`
//! makes browsers, curl, OpenSSL, Go, Node (`--tls-keylog`), rustls (and `amqpwire proxy`)
//! write. TLS 1.3 (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305, key updates included) and
//! TLS 1.2 with AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305), sans-IO: both
//! directions' bytes in, in capture order; application data and notes out.
//!
//! ```text
//! c2s/s2c bytes ─► records ─► ClientHello, ServerHello (randoms, suite, version)
//!                           ─► key log ─► traffic keys ─► decrypt ─► application data
//! ```
//!
//! Only what the capture holds is decrypted: a connection whose handshake is not in the
//! capture, or whose client random is not in the key log, is reported and left alone.

use std::collections::HashMap;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::{hkdf, hmac};

/// The secrets of a key log, by client random.
#[derive(Debug, Default, Clone)]
pub struct KeyLog {
    secrets: HashMap<([u8; 32], String), Vec<u8>>,
}

impl KeyLog {
    /// Reads a key log: one `LABEL CLIENT_RANDOM SECRET` line each (hex), `#` comments and
    /// blank lines skipped. Labels this module uses: `CLIENT_RANDOM` (TLS 1.2's master
    /// secret), `CLIENT_HANDSHAKE_TRAFFIC_SECRET`, `SERVER_HANDSHAKE_TRAFFIC_SECRET`,
    /// `CLIENT_TRAFFIC_SECRET_0`, `SERVER_TRAFFIC_SECRET_0`; others are kept and ignored.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut secrets = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("key log line {}: expected LABEL CLIENT_RANDOM SECRET", n + 1);
            let mut parts = line.split_whitespace();
            let (Some(label), Some(random), Some(secret), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let random: [u8; 32] = crate::inspect::typed::unhex(random)
                .and_then(|r| r.try_into().ok())
                .ok_or_else(bad)?;
            let secret = crate::inspect::typed::unhex(secret).ok_or_else(bad)?;
            secrets.insert((random, label.to_owned()), secret);
        }
        Ok(Self { secrets })
    }

    /// How many secrets it holds.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Whether it holds a secret of the TLS session whose client's first bytes (a
    /// ClientHello record) are `hello`: a session its writer wants read, on any port.
    pub(crate) fn knows_hello(&self, hello: &[u8]) -> bool {
        // Record header (5 bytes), handshake type 1 and length (4), version (2), random.
        let Some(random) = hello.get(11..43).filter(|_| hello.get(5) == Some(&1)) else {
            return false;
        };
        let Ok(random) = <[u8; 32]>::try_from(random) else { return false };
        ["CLIENT_RANDOM", "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"]
            .iter()
            .any(|label| self.get(&random, label).is_some())
    }

    fn get(&self, random: &[u8; 32], label: &str) -> Option<&[u8]> {
        self.secrets.get(&(*random, label.to_owned())).map(Vec::as_slice)
    }
}

/// What a TLS connection gives, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsOutput {
    /// Application data of direction 0 (client to server) or 1.
    Data(usize, Vec<u8>),
    /// Something to tell: the version and suite, a key missing, a record that does not
    /// decrypt, an alert.
    Note(String),
}

/// The largest TLS record: 2^14 bytes of plaintext plus expansion (RFC 8446 5.2).
const MAX_RECORD: usize = (1 << 14) + 256;

/// The most handshake bytes kept waiting for a message to complete: a certificate chain
/// fits many times over, a 24-bit length claiming 16 MiB does not.
const MAX_HANDSHAKE: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    Chacha,
}

impl Suite {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aead::AES_128_GCM,
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::Chacha => &aead::CHACHA20_POLY1305,
        }
    }
}

/// One direction's record protection.
struct Cipher {
    key: LessSafeKey,
    /// TLS 1.3 and TLS 1.2 ChaCha: 12 bytes XORed with the sequence number. TLS 1.2 GCM:
    /// the 4-byte salt, the other 8 bytes come with each record.
    iv: Vec<u8>,
    seq: u64,
    /// The TLS 1.3 traffic secret it came from (for key updates).
    secret: Vec<u8>,
}

#[derive(Default)]
struct Dir {
    buf: Vec<u8>,
    cipher: Option<Cipher>,
    /// Handshake messages split over records.
    handshake: Vec<u8>,
    /// TLS 1.3: this direction switched to application traffic keys.
    application: bool,
    stopped: bool,
}

/// One TLS connection being decrypted.
pub struct TlsSession {
    keys: std::sync::Arc<KeyLog>,
    client_random: Option<[u8; 32]>,
    server_random: Option<[u8; 32]>,
    /// The suite and its hash (true: SHA-384).
    suite: Option<(Suite, bool)>,
    tls13: bool,
    dirs: [Dir; 2],
    failed: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("suite", &self.suite)
            .field("tls13", &self.tls13)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A session that looks its secrets up in `keys`.
    pub fn new(keys: std::sync::Arc<KeyLog>) -> Self {
        Self {
            keys,
            client_random: None,
            server_random: None,
            suite: None,
            tls13: false,
            dirs: Default::default(),
            failed: false,
        }
    }

    /// Bytes of direction `dir` (0: client to server, 1: server to client), in capture
    /// order; what they decrypt to is appended to `out`.
    pub fn push(&mut self, dir: usize, data: &[u8], out: &mut Vec<TlsOutput>) {
        let Some(d) = self.dirs.get_mut(dir) else { return };
        if d.stopped || self.failed {
            return;
        }
        d.buf.extend_from_slice(data);
        loop {
            let d = &mut self.dirs[dir];
            if d.stopped || self.failed || d.buf.len() < 5 {
                return;
            }
            let len = usize::from(u16::from_be_bytes([d.buf[3], d.buf[4]]));
            if len > MAX_RECORD || d.buf[1] != 3 {
                d.stopped = true;
                out.push(TlsOutput::Note(format!(
                    "TLS: not a TLS record (type {}, version {:02x}{:02x}, length {len}): this direction is not decrypted further",
                    d.buf[0], d.buf[1], d.buf[2]
                )));
                return;
            }
            if d.buf.len() < 5 + len {
                return;
            }
            let record: Vec<u8> = d.buf.drain(..5 + len).collect();
            self.record(dir, &record, out);
        }
    }

    fn record(&mut self, dir: usize, record: &[u8], out: &mut Vec<TlsOutput>) {
        let kind = record[0];
        let body = &record[5..];
        let encrypted = self.dirs[dir].cipher.is_some();
        match (kind, encrypted) {
            // ChangeCipherSpec: TLS 1.2 turns protection on; TLS 1.3 sends it for middleboxes.
            (20, false) if !self.tls13 => self.tls12_keys(dir, out),
            (20, _) => {}
            (22, false) => self.handshake_bytes(dir, body, out),
            (21, false) => out.push(TlsOutput::Note(alert(dir, body))),
            (_, true) => self.decrypt(dir, record, out),
            (23, false) => {
                self.dirs[dir].stopped = true;
                out.push(TlsOutput::Note(
                    "TLS: encrypted data before the handshake this capture holds: not decrypted"
                        .into(),
                ));
            }
            _ => {}
        }
    }

    /// Handshake bytes of one direction: whole messages are read, the rest kept (at most
    /// [`MAX_HANDSHAKE`]) for the next record.
    fn handshake_bytes(&mut self, dir: usize, bytes: &[u8], out: &mut Vec<TlsOutput>) {
        let mut msgs = std::mem::take(&mut self.dirs[dir].handshake);
        msgs.extend_from_slice(bytes);
        let used = self.handshake(dir, &msgs, out);
        let rest = msgs.split_off(used.min(msgs.len()));
        if rest.len() > MAX_HANDSHAKE {
            self.dirs[dir].stopped = true;
            out.push(TlsOutput::Note(format!(
                "TLS: a handshake message from the {} claims more than {MAX_HANDSHAKE} bytes: this direction is not decrypted further",
                side(dir)
            )));
            return;
        }
        self.dirs[dir].handshake = rest;
    }

    /// Reads whole handshake messages from `msgs`; how many bytes were used.
    fn handshake(&mut self, dir: usize, msgs: &[u8], out: &mut Vec<TlsOutput>) -> usize {
        let mut at = 0;
        while let Some(head) = msgs.get(at..at + 4) {
            let len =
                (usize::from(head[1]) << 16) | (usize::from(head[2]) << 8) | usize::from(head[3]);
            let Some(body) = msgs.get(at + 4..at + 4 + len) else { break };
            match head[0] {
                1 if dir == 0 => {
                    self.client_random = body.get(2..34).and_then(|r| r.try_into().ok())
                }
                2 if dir == 1 => self.server_hello(body, out),
                // TLS 1.3 Finished: from here on, this direction uses application keys.
                20 if self.tls13 => self.next_keys(dir, out),
                // KeyUpdate (RFC 8446 4.6.3): the sender's next traffic secret.
                24 if self.tls13 => self.key_update(dir, out),
                _ => {}
            }
            at += 4 + len;
        }
        at
    }

    fn server_hello(&mut self, body: &[u8], out: &mut Vec<TlsOutput>) {
        let parse = || -> Option<([u8; 32], u16, bool)> {
            let random: [u8; 32] = body.get(2..34)?.try_into().ok()?;
            let sid = usize::from(*body.get(34)?);
            let at = 35 + sid;
            let suite = u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?);
            let mut tls13 = false;
            if let Some(ext) = body.get(at + 3..) {
                let total = usize::from(u16::from_be_bytes(ext.get(..2)?.try_into().ok()?));
                let mut e = ext.get(2..2 + total)?;
                while e.len() >= 4 {
                    let t = u16::from_be_bytes([e[0], e[1]]);
                    let l = usize::from(u16::from_be_bytes([e[2], e[3]]));
                    let v = e.get(4..4 + l)?;
                    // supported_versions: the server chose TLS 1.3.
                    if t == 0x002b && v == [3, 4] {
                        tls13 = true;
                    }
                    e = &e[4 + l..];
                }
            }
            Some((random, suite, tls13))
        };
        let Some((random, suite, tls13)) = parse() else {
            out.push(TlsOutput::Note("TLS: a ServerHello that does not parse".into()));
            self.failed = true;
            return;
        };
        self.server_random = Some(random);
        self.tls13 = tls13;
        self.suite = match suite {
            0x1301 | 0xc02b | 0xc02f => Some((Suite::Aes128Gcm, false)),
            0x1302 | 0xc02c | 0xc030 => Some((Suite::Aes256Gcm, true)),
            0x1303 | 0xcca8 | 0xcca9 => Some((Suite::Chacha, false)),
            _ => None,
        };
        let version = if tls13 { "1.3" } else { "1.2" };
        if self.suite.is_none() {
            out.push(TlsOutput::Note(format!(
                "TLS {version} with cipher suite 0x{suite:04x}, which is not decrypted (AES-GCM and ChaCha20-Poly1305 are)"
            )));
            self.failed = true;
            return;
        }
        out.push(TlsOutput::Note(format!("TLS {version}, cipher suite 0x{suite:04x}")));
        if tls13 {
            for (dir, label) in
                [(0, "CLIENT_HANDSHAKE_TRAFFIC_SECRET"), (1, "SERVER_HANDSHAKE_TRAFFIC_SECRET")]
            {
                self.tls13_keys(dir, label, out);
            }
        }
    }

    /// TLS 1.3: this direction's keys from the key log's secret `label`.
    fn tls13_keys(&mut self, dir: usize, label: &str, out: &mut Vec<TlsOutput>) {
        let (Some(random), Some((suite, sha384))) = (self.client_random, self.suite) else {
            return;
        };
        let Some(secret) = self.keys.get(&random, label).map(<[u8]>::to_vec) else {
            self.missing(label, out);
            return;
        };
        self.dirs[dir].cipher = cipher13(suite, sha384, secret);
    }

    /// TLS 1.3: after a Finished, the application traffic keys.
    fn next_keys(&mut self, dir: usize, out: &mut Vec<TlsOutput>) {
        if self.dirs[dir].application {
            return;
        }
        self.dirs[dir].application = true;
        let label = if dir == 0 { "CLIENT_TRAFFIC_SECRET_0" } else { "SERVER_TRAFFIC_SECRET_0" };
        self.tls13_keys(dir, label, out);
    }

    fn key_update(&mut self, dir: usize, out: &mut Vec<TlsOutput>) {
        let Some((suite, sha384)) = self.suite else { return };
        let Some(c) = &self.dirs[dir].cipher else { return };
        let next = expand_label(sha384, &c.secret, b"traffic upd", if sha384 { 48 } else { 32 });
        self.dirs[dir].cipher = cipher13(suite, sha384, next);
        out.push(TlsOutput::Note(format!("TLS key update ({})", side(dir))));
    }

    /// TLS 1.2: this direction's keys from the master secret, at its ChangeCipherSpec.
    fn tls12_keys(&mut self, dir: usize, out: &mut Vec<TlsOutput>) {
        let (Some(cr), Some(sr), Some((suite, sha384))) =
            (self.client_random, self.server_random, self.suite)
        else {
            return;
        };
        let Some(master) = self.keys.get(&cr, "CLIENT_RANDOM").map(<[u8]>::to_vec) else {
            self.missing("CLIENT_RANDOM", out);
            return;
        };
        let key_len = suite.algorithm().key_len();
        let iv_len = if suite == Suite::Chacha { 12 } else { 4 };
        let mut seed = sr.to_vec();
        seed.extend_from_slice(&cr);
        let block = prf(sha384, &master, b"key expansion", &seed, 2 * (key_len + iv_len));
        let (keys, ivs) = block.split_at(2 * key_len);
        let key = &keys[dir * key_len..(dir + 1) * key_len];
        let iv = &ivs[dir * iv_len..(dir + 1) * iv_len];
        self.dirs[dir].cipher = UnboundKey::new(suite.algorithm(), key).ok().map(|k| Cipher {
            key: LessSafeKey::new(k),
            iv: iv.to_vec(),
            seq: 0,
            secret: Vec::new(),
        });
    }

    fn missing(&mut self, label: &str, out: &mut Vec<TlsOutput>) {
        if !self.failed {
            out.push(TlsOutput::Note(format!(
                "TLS: the key log has no {label} for this connection's client random: not decrypted"
            )));
        }
        self.failed = true;
    }

    fn decrypt(&mut self, dir: usize, record: &[u8], out: &mut Vec<TlsOutput>) {
        let tls13 = self.tls13;
        let Some(c) = self.dirs[dir].cipher.as_mut() else { return };
        let seq = c.seq;
        c.seq += 1;
        let (header, body) = record.split_at(5);
        let gcm12 = !tls13 && c.iv.len() == 4;
        let (nonce, mut data, aad) = if gcm12 {
            // TLS 1.2 GCM: salt || explicit nonce (RFC 5288); AAD = seq || type || version || length.
            let Some((explicit, rest)) = body.split_first_chunk::<8>() else {
                return self.bad(dir, out);
            };
            let mut n = [0u8; 12];
            n[..4].copy_from_slice(&c.iv);
            n[4..].copy_from_slice(explicit);
            let plain_len = rest.len().saturating_sub(16) as u16;
            (n, rest.to_vec(), aad12(seq, header, plain_len))
        } else {
            let mut n = [0u8; 12];
            n.copy_from_slice(&c.iv[..12]);
            for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
                *b ^= s;
            }
            let aad = if tls13 {
                header.to_vec()
            } else {
                aad12(seq, header, body.len().saturating_sub(16) as u16)
            };
            (n, body.to_vec(), aad)
        };
        let opened =
            c.key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut data);
        let Ok(plain) = opened else { return self.bad(dir, out) };
        let mut plain = plain.to_vec();
        let kind = if tls13 {
            // TLSInnerPlaintext: content, the real type, zero padding (RFC 8446 5.2).
            while plain.last() == Some(&0) {
                plain.pop();
            }
            plain.pop().unwrap_or(0)
        } else {
            header[0]
        };
        match kind {
            23 => out.push(TlsOutput::Data(dir, plain)),
            22 => self.handshake_bytes(dir, &plain, out),
            21 => out.push(TlsOutput::Note(alert(dir, &plain))),
            _ => {}
        }
    }

    fn bad(&mut self, dir: usize, out: &mut Vec<TlsOutput>) {
        self.dirs[dir].stopped = true;
        out.push(TlsOutput::Note(format!(
            "TLS: a record from the {} does not decrypt with the logged keys: this direction is not decrypted further",
            side(dir)
        )));
    }
}

fn side(dir: usize) -> &'static str {
    if dir == 0 {
        "client"
    } else {
        "server"
    }
}

fn alert(dir: usize, body: &[u8]) -> String {
    match body {
        [level, desc, ..] => format!(
            "TLS alert from the {}: {} {desc}",
            side(dir),
            if *level == 2 { "fatal" } else { "warning" }
        ),
        _ => format!("TLS alert from the {}", side(dir)),
    }
}

fn aad12(seq: u64, header: &[u8], len: u16) -> Vec<u8> {
    let mut a = seq.to_be_bytes().to_vec();
    a.extend_from_slice(&header[..3]);
    a.extend_from_slice(&len.to_be_bytes());
    a
}

/// TLS 1.3 record protection from a traffic secret (RFC 8446 7.3).
fn cipher13(suite: Suite, sha384: bool, secret: Vec<u8>) -> Option<Cipher> {
    let alg = suite.algorithm();
    let key = expand_label(sha384, &secret, b"key", alg.key_len());
    let iv = expand_label(sha384, &secret, b"iv", 12);
    let key = UnboundKey::new(alg, &key).ok()?;
    Some(Cipher { key: LessSafeKey::new(key), iv, seq: 0, secret })
}

/// HKDF-Expand-Label(secret, label, "", len) (RFC 8446 7.1).
fn expand_label(sha384: bool, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let alg = if sha384 { hkdf::HKDF_SHA384 } else { hkdf::HKDF_SHA256 };
    let prk = hkdf::Prk::new_less_safe(alg, secret);
    let length = (len as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    let mut out = vec![0u8; len];
    if let Ok(okm) = prk.expand(&info, Len(len)) {
        let _ = okm.fill(&mut out);
    }
    out
}

/// The TLS 1.2 PRF: P_SHA256 or P_SHA384 (RFC 5246 5).
fn prf(sha384: bool, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let alg = if sha384 { hmac::HMAC_SHA384 } else { hmac::HMAC_SHA256 };
    let key = hmac::Key::new(alg, secret);
    let mut label_seed = label.to_vec();
    label_seed.extend_from_slice(seed);
    let mut a = hmac::sign(&key, &label_seed).as_ref().to_vec();
    let mut out = Vec::with_capacity(len + 48);
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&a);
        ctx.update(&label_seed);
        out.extend_from_slice(ctx.sign().as_ref());
        a = hmac::sign(&key, &a).as_ref().to_vec();
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls12_prf_gives_the_known_answer() {
        // The widely used P_SHA256 test vector (secret, label "test label", seed).
        let secret = crate::inspect::typed::unhex("9bbe436ba940f017b17652849a71db35").unwrap();
        let seed = crate::inspect::typed::unhex("a0ba9f936cda311827a6f796ffd5198c").unwrap();
        let out = prf(false, &secret, b"test label", &seed, 100);
        assert_eq!(
            crate::inspect::hex(&out[..32]),
            "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"
        );
    }

    /// A real TLS exchange between rustls peers in memory, restricted to `version`: the
    /// bytes each side wrote, in order, and the key log both wrote.
    #[cfg(feature = "tokio")]
    fn exchange(
        version: &'static tokio_rustls::rustls::SupportedProtocolVersion,
        suite: Option<tokio_rustls::rustls::SupportedCipherSuite>,
    ) -> (Vec<(usize, Vec<u8>)>, String) {
        use std::io::{Read, Write};
        use std::sync::{Arc, Mutex};
        use tokio_rustls::rustls::{self, pki_types};

        #[derive(Debug, Default)]
        struct Keys(Mutex<String>);
        impl rustls::KeyLog for Keys {
            fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
                let line = format!(
                    "{label} {} {}\n",
                    crate::inspect::hex(client_random),
                    crate::inspect::hex(secret)
                );
                self.0.lock().expect("key log").push_str(&line);
            }
            fn will_log(&self, _: &str) -> bool {
                true
            }
        }
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let der = pki_types::CertificateDer::from(cert.cert.der().to_vec());
        let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
            cert.signing_key.serialize_der(),
        ));
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(s) = suite {
            provider.cipher_suites = vec![s];
        }
        let provider = Arc::new(provider);
        let keys = Arc::new(Keys::default());
        let mut sc = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .expect("server config");
        sc.key_log = keys.clone();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).expect("root");
        let mut cc = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cc.key_log = keys.clone();
        let name = pki_types::ServerName::try_from("localhost").expect("name");
        let mut client = rustls::ClientConnection::new(Arc::new(cc), name).expect("client");
        let mut server = rustls::ServerConnection::new(Arc::new(sc)).expect("server");
        client.writer().write_all(b"AMQP\x00\x01\x00\x00from the client").expect("write");
        let mut wire = Vec::new();
        let mut server_wrote = false;
        for _ in 0..20 {
            let mut b = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut b).expect("client writes");
            }
            if !b.is_empty() {
                server.read_tls(&mut &b[..]).expect("server reads");
                server.process_new_packets().expect("server processes");
                wire.push((0, b));
            }
            if !server.is_handshaking() && !server_wrote {
                server_wrote = true;
                let mut got = Vec::new();
                let _ = server.reader().read_to_end(&mut got);
                server.writer().write_all(b"from the server").expect("write");
                // A key update in TLS 1.3: the decryption must follow it.
                if version == &rustls::version::TLS13 {
                    server.refresh_traffic_keys().expect("key update");
                    server.writer().write_all(b" after the update").expect("write");
                }
            }
            let mut b = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut b).expect("server writes");
            }
            if !b.is_empty() {
                client.read_tls(&mut &b[..]).expect("client reads");
                client.process_new_packets().expect("client processes");
                wire.push((1, b));
            }
        }
        let log = keys.0.lock().expect("key log").clone();
        (wire, log)
    }

    /// The application data a session decrypts from `wire`, per direction, and its notes.
    #[cfg(feature = "tokio")]
    fn decrypt(wire: &[(usize, Vec<u8>)], log: &str) -> ([Vec<u8>; 2], Vec<String>) {
        let mut s = TlsSession::new(std::sync::Arc::new(KeyLog::parse(log).expect("key log")));
        let mut out = Vec::new();
        for (dir, bytes) in wire {
            // Split every write in two, to cross record boundaries.
            let (a, b) = bytes.split_at(bytes.len() / 2);
            s.push(*dir, a, &mut out);
            s.push(*dir, b, &mut out);
        }
        let mut data = [Vec::new(), Vec::new()];
        let mut notes = Vec::new();
        for o in out {
            match o {
                TlsOutput::Data(d, b) => data[d].extend(b),
                TlsOutput::Note(n) => notes.push(n),
            }
        }
        (data, notes)
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn tls13_and_tls12_exchanges_decrypt_with_their_key_logs() {
        use tokio_rustls::rustls::{crypto::ring::cipher_suite as cs, version};
        let cases = [
            (&version::TLS13, None, "TLS 1.3"),
            (&version::TLS13, Some(cs::TLS13_AES_256_GCM_SHA384), "TLS 1.3, cipher suite 0x1302"),
            (
                &version::TLS13,
                Some(cs::TLS13_CHACHA20_POLY1305_SHA256),
                "TLS 1.3, cipher suite 0x1303",
            ),
            (
                &version::TLS12,
                Some(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
                "TLS 1.2, cipher suite 0xc02b",
            ),
            (
                &version::TLS12,
                Some(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
                "TLS 1.2, cipher suite 0xc02c",
            ),
            (
                &version::TLS12,
                Some(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
                "TLS 1.2, cipher suite 0xcca9",
            ),
        ];
        for (v, suite, said) in cases {
            let (wire, log) = exchange(v, suite);
            let (data, notes) = decrypt(&wire, &log);
            assert_eq!(data[0], b"AMQP\x00\x01\x00\x00from the client", "{said}: {notes:?}");
            let server = if v == &version::TLS13 {
                b"from the server after the update".to_vec()
            } else {
                b"from the server".to_vec()
            };
            assert_eq!(data[1], server, "{said}: {notes:?}");
            assert!(notes.iter().any(|n| n.starts_with(said)), "{said}: {notes:?}");
            // Without the secrets: said, and nothing decrypted.
            let (data, notes) = decrypt(&wire, "");
            assert!(data[0].is_empty() && data[1].is_empty());
            assert!(notes.iter().any(|n| n.contains("the key log has no")), "{notes:?}");
            // With a wrong secret: said, and nothing decrypted.
            let wrong: String = log
                .lines()
                .map(|l| {
                    let mut p: Vec<&str> = l.split(' ').collect();
                    let zeros = "00".repeat(p[2].len() / 2);
                    p[2] = &zeros;
                    format!("{}\n", p.join(" "))
                })
                .collect();
            let (data, notes) = decrypt(&wire, &wrong);
            assert!(data[0].is_empty(), "{said}");
            assert!(notes.iter().any(|n| n.contains("does not decrypt")), "{said}: {notes:?}");
        }
    }

    #[test]
    fn a_handshake_message_claiming_megabytes_is_not_waited_for_forever() {
        let mut s = TlsSession::new(std::sync::Arc::new(KeyLog::default()));
        let mut out = Vec::new();
        // A ClientHello header claiming 16 MiB, then records of filler.
        let first = [22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff];
        s.push(0, &first, &mut out);
        let filler = [&[22u8, 3, 3, 0x40, 0][..], &[0u8; 0x4000][..]].concat();
        for _ in 0..70 {
            s.push(0, &filler, &mut out);
        }
        assert!(s.dirs[0].handshake.len() <= MAX_HANDSHAKE);
        assert!(
            out.iter().any(|o| matches!(o, TlsOutput::Note(n) if n.contains("more than"))),
            "{out:?}"
        );
    }

    #[test]
    fn key_log_lines_are_read_and_bad_ones_named() {
        let r = "ab".repeat(32);
        let k = KeyLog::parse(&format!("# comment\n\nCLIENT_RANDOM {r} {}\n", "cd".repeat(48)))
            .expect("parses");
        assert_eq!(k.len(), 1);
        assert!(k.get(&[0xab; 32], "CLIENT_RANDOM").is_some());
        let e = KeyLog::parse("CLIENT_RANDOM 12 34").expect_err("short random");
        assert!(e.contains("line 1"), "{e}");
    }
}
