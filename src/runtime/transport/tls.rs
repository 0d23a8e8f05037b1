//! TLS with tokio-rustls and the ring provider: the client configuration (system roots,
//! an extra CA, a client certificate), the server configuration (certificate and key, and
//! optional client-certificate checks), the peer's identity, and the errors that say what
//! went wrong in a handshake.

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::{
    self, client::WebPkiServerVerifier, crypto::CryptoProvider, server::WebPkiClientVerifier,
    CertificateError, ClientConfig, RootCertStore, ServerConfig,
};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::{hung_up, TransportError};
use crate::frame::ProtocolHeader;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(what: impl fmt::Display) -> TransportError {
    TransportError::Config(what.to_string())
}

/// Why rustls refuses this side's own certificate and key (`whose`: `client` or
/// `server`): rustls words a certificate it cannot read as the peer's ("invalid peer
/// certificate: Other(OtherError(UnsupportedCertVersion))"), though it is ours here.
fn own_identity_error(whose: &str, e: &rustls::Error) -> String {
    let why = match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => o.to_string(),
        rustls::Error::InvalidCertificate(c) => format!("{c:?}"),
        other => return format!("{whose} certificate and key: {other}"),
    };
    let hint = match why.as_str() {
        "UnsupportedCertVersion" => " (TLS takes X.509 version 3 certificates; this one is older)",
        "BadDer" | "BadDerTime" => " (it is not well-formed DER)",
        _ => "",
    };
    format!("the {whose} certificate cannot be used: {why}{hint}")
}

/// Reads every certificate of a PEM text; `what` names its origin for errors.
fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(format!("{what}: bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(config_error(format!("{what}: no CERTIFICATE block found")));
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        config_error(format!(
            "{what}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM block): {e}"
        ))
    })
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|e| config_error(format!("{what} {}: {e}", path.display())))
}

/// A certificate and its private key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self { chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

impl Identity {
    fn from_pem(cert_pem: &[u8], key_pem: &[u8], what: &str) -> Result<Self, TransportError> {
        let chain = certs_from_pem(cert_pem, &format!("{what} certificate"))?;
        let key = key_from_pem(key_pem, &format!("{what} key"))?;
        Ok(Self { chain, key })
    }
}

/// How a TLS client (`amqps://`, `wss://`) checks the server and proves who it is.
///
/// Verification is always on: the server's certificate must chain to a trusted root and
/// name the URL's host. The trusted roots are the operating system's (through
/// rustls-native-certs) plus any CA added here. There is no switch to skip verification;
/// for a private or test CA, add it with [`with_ca_file`](Self::with_ca_file) or
/// [`with_ca_pem`](Self::with_ca_pem).
///
/// The rustls configuration is built on first use and shared by later connections.
pub struct ClientTlsConfig {
    native_roots: bool,
    extra_roots: Vec<CertificateDer<'static>>,
    client_identity: Option<Identity>,
    built: Mutex<Option<Arc<ClientConfig>>>,
}

impl Default for ClientTlsConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for ClientTlsConfig {
    fn clone(&self) -> Self {
        Self {
            native_roots: self.native_roots,
            extra_roots: self.extra_roots.clone(),
            client_identity: self.client_identity.clone(),
            built: Mutex::new(None),
        }
    }
}

impl fmt::Debug for ClientTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsConfig")
            .field("native_roots", &self.native_roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("client_certificate", &self.client_identity.is_some())
            .finish()
    }
}

impl ClientTlsConfig {
    /// The system's trusted roots, no client certificate.
    pub fn new() -> Self {
        Self {
            native_roots: true,
            extra_roots: Vec::new(),
            client_identity: None,
            built: Mutex::new(None),
        }
    }

    /// Also trusts the CA certificates of a PEM file.
    pub fn with_ca_file(self, path: impl AsRef<Path>) -> Result<Self, TransportError> {
        let path = path.as_ref();
        let pem = read_file(path, "CA file")?;
        self.with_ca_pem_named(&pem, &format!("CA file {}", path.display()))
    }

    /// Also trusts the CA certificates of a PEM text.
    pub fn with_ca_pem(self, pem: &[u8]) -> Result<Self, TransportError> {
        self.with_ca_pem_named(pem, "CA PEM")
    }

    fn with_ca_pem_named(mut self, pem: &[u8], what: &str) -> Result<Self, TransportError> {
        self.extra_roots.extend(certs_from_pem(pem, what)?);
        *self.built.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(self)
    }

    /// Trusts only the CAs added with `with_ca_*`, not the system's roots (a private PKI).
    pub fn without_native_roots(mut self) -> Self {
        self.native_roots = false;
        *self.built.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
        self
    }

    /// Presents a client certificate (chain) and key from PEM files, for SASL EXTERNAL or
    /// a server that requires one.
    pub fn with_client_cert_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TransportError> {
        let cert_pem = read_file(cert.as_ref(), "client certificate file")?;
        let key_pem = read_file(key.as_ref(), "client key file")?;
        self.with_client_cert_pem(&cert_pem, &key_pem)
    }

    /// Presents a client certificate (chain) and key from PEM texts.
    pub fn with_client_cert_pem(
        mut self,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, TransportError> {
        self.client_identity = Some(Identity::from_pem(cert_pem, key_pem, "client")?);
        *self.built.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(self)
    }

    /// Whether a client certificate is set (with [`Self::with_client_cert_files`] or
    /// [`Self::with_client_cert_pem`]).
    pub fn has_client_certificate(&self) -> bool {
        self.client_identity.is_some()
    }

    /// The rustls client configuration (built once, then shared).
    pub fn rustls_config(&self) -> Result<Arc<ClientConfig>, TransportError> {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = built.as_ref() {
            return Ok(c.clone());
        }
        let config = Arc::new(self.build()?);
        *built = Some(config.clone());
        Ok(config)
    }

    fn build(&self) -> Result<ClientConfig, TransportError> {
        let mut roots = RootCertStore::empty();
        let mut native_problems = Vec::new();
        if self.native_roots {
            let found = rustls_native_certs::load_native_certs();
            native_problems.extend(found.errors.iter().map(|e| e.to_string()));
            let (_added, ignored) = roots.add_parsable_certificates(found.certs);
            if ignored > 0 {
                native_problems.push(format!("{ignored} unparsable system certificates skipped"));
            }
        }
        for ca in &self.extra_roots {
            roots.add(ca.clone()).map_err(|e| config_error(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            let why = if !self.native_roots {
                "system roots are switched off".to_string()
            } else if native_problems.is_empty() {
                "the system certificate store is empty".to_string()
            } else {
                format!(
                    "the system certificate store could not be read ({})",
                    native_problems.join("; ")
                )
            };
            return Err(config_error(format!(
                "no trusted root certificates: {why}, and no CA file was given"
            )));
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| config_error(format!("server certificate verifier: {e}")))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_webpki_verifier(verifier);
        let mut config = match &self.client_identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| config_error(own_identity_error("client", &e)))?,
        };
        config.key_log = key_log();
        Ok(config)
    }
}

/// How a TLS listener (`amqps://`, `wss://`) presents itself and checks clients.
#[derive(Clone)]
pub struct TlsServerConfig {
    identity: Identity,
    client_roots: Option<(Arc<RootCertStore>, bool)>,
    /// Any client certificate is taken (see [`TlsServerConfig::with_any_client_certificate`]).
    any_client: bool,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfig")
            .field("chain", &self.identity.chain.len())
            .field("client_auth", &self.client_roots.as_ref().map(|(_, required)| *required))
            .field("any_client_certificate", &self.any_client)
            .finish()
    }
}

impl TlsServerConfig {
    /// The server's certificate chain and private key from PEM files.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TransportError> {
        let cert_pem = read_file(cert.as_ref(), "server certificate file")?;
        let key_pem = read_file(key.as_ref(), "server key file")?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// The server's certificate chain and private key from PEM texts.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TransportError> {
        let identity = Identity::from_pem(cert_pem, key_pem, "server")?;
        let acceptor = build_acceptor(&identity, None, false)?;
        Ok(Self { identity, client_roots: None, any_client: false, acceptor })
    }

    /// Asks clients for a certificate signed by one of the CAs of `ca_pem`. With `required`
    /// a client without one is refused; without it, such a client is let in with no
    /// identity. A client certificate that does not verify is always refused.
    pub fn with_client_ca_pem(
        mut self,
        ca_pem: &[u8],
        required: bool,
    ) -> Result<Self, TransportError> {
        let mut roots = RootCertStore::empty();
        for ca in certs_from_pem(ca_pem, "client CA")? {
            roots.add(ca).map_err(|e| config_error(format!("client CA certificate: {e}")))?;
        }
        let client_roots = Some((Arc::new(roots), required));
        self.acceptor = build_acceptor(&self.identity, client_roots.as_ref(), false)?;
        self.client_roots = client_roots;
        self.any_client = false;
        Ok(self)
    }

    /// Asks clients for a certificate and takes any, self-signed ones included, once the
    /// client proves it holds its key; clients without one are taken too. The application
    /// decides whom a certificate identifies: see [`Transport::peer_identity`]
    /// (its whole chain) and [`PeerIdentity::verify_chain`]. Replaces
    /// [`with_client_ca_pem`](Self::with_client_ca_pem): nothing is checked against a CA
    /// during the handshake, so a listener gives the engine no SASL EXTERNAL identity.
    ///
    /// [`Transport::peer_identity`]: super::Transport::peer_identity
    pub fn with_any_client_certificate(mut self) -> Result<Self, TransportError> {
        self.acceptor = build_acceptor(&self.identity, None, true)?;
        self.client_roots = None;
        self.any_client = true;
        Ok(self)
    }

    /// [`with_client_ca_pem`](Self::with_client_ca_pem) from a PEM file.
    pub fn with_client_ca_file(
        self,
        path: impl AsRef<Path>,
        required: bool,
    ) -> Result<Self, TransportError> {
        let pem = read_file(path.as_ref(), "client CA file")?;
        self.with_client_ca_pem(&pem, required)
    }

    /// True when client certificates are checked against CAs during the handshake
    /// ([`with_client_ca_pem`](Self::with_client_ca_pem)), so that the subject of one names
    /// its client (the SASL EXTERNAL identity).
    pub fn checks_client_certificates(&self) -> bool {
        self.client_roots.is_some()
    }

    /// True when clients are asked for a certificate, checked against CAs
    /// ([`with_client_ca_pem`](Self::with_client_ca_pem)) or not
    /// ([`with_any_client_certificate`](Self::with_any_client_certificate)).
    pub fn asks_client_certificates(&self) -> bool {
        self.client_roots.is_some() || self.any_client
    }

    /// The tokio-rustls acceptor.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

fn build_acceptor(
    identity: &Identity,
    client_roots: Option<&(Arc<RootCertStore>, bool)>,
    any_client: bool,
) -> Result<TlsAcceptor, TransportError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match client_roots {
        None if any_client => builder.with_client_cert_verifier(Arc::new(AnyClientCertificate {
            algorithms: provider().signature_verification_algorithms,
        })),
        None => builder.with_no_client_auth(),
        Some((roots, required)) => {
            let mut v = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
            if !required {
                v = v.allow_unauthenticated();
            }
            let v = v.build().map_err(|e| config_error(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let mut config = builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| config_error(own_identity_error("server", &e)))?;
    config.key_log = key_log();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The session secrets of every TLS connection, in the NSS key log format, appended to the
/// file `SSLKEYLOGFILE` names when it is set (as browsers, curl and Node do), so that
/// Wireshark, or `amqpwire decode --keylog`, can decrypt a capture of a real connection.
/// Nothing is written when it is not set.
fn key_log() -> Arc<dyn tokio_rustls::rustls::KeyLog> {
    Arc::new(tokio_rustls::rustls::KeyLogFile::new())
}

/// Who the peer of a TLS connection proved to be: its end-entity certificate. For SASL
/// EXTERNAL the subject's common name is the usual identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The peer's certificate, DER-encoded.
    pub certificate: CertificateDer<'static>,
    /// The subject's common name (CN), when the certificate has one.
    pub subject_cn: Option<String>,
    /// The certificates the peer sent after its own (intermediates), DER-encoded.
    pub intermediates: Vec<CertificateDer<'static>>,
}

impl PeerIdentity {
    /// The identity of a DER certificate.
    pub fn from_der(certificate: CertificateDer<'static>) -> Self {
        let subject_cn = subject_common_name(&certificate);
        Self { certificate, subject_cn, intermediates: Vec::new() }
    }

    /// The identity of the chain a TLS peer presented: its certificate first, then the
    /// intermediates. `None` for an empty chain.
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Option<Self> {
        let (first, rest) = chain.split_first()?;
        let mut me = Self::from_der(first.clone().into_owned());
        me.intermediates = rest.iter().map(|c| c.clone().into_owned()).collect();
        Some(me)
    }

    /// Whether the certificate chains to one of the CA certificates in `ca_pem` and is
    /// valid now for client authentication; `Err` says why not (or that the PEM holds no
    /// usable certificate). For servers that take any client certificate
    /// ([`TlsServerConfig::with_any_client_certificate`]) and decide afterwards.
    pub fn verify_chain(&self, ca_pem: &[u8]) -> Result<(), TransportError> {
        let mut roots = RootCertStore::empty();
        for ca in certs_from_pem(ca_pem, "client CA")? {
            roots.add(ca).map_err(|e| config_error(format!("client CA certificate: {e}")))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| config_error(format!("client verifier: {e}")))?;
        verifier
            .verify_client_cert(
                &self.certificate,
                &self.intermediates,
                rustls_pki_types::UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| TransportError::Tls(format!("the client certificate: {e}")))
    }
}

/// Whether a server certificate (the first in `cert_pem`, the rest its intermediates)
/// is one a client that trusts `ca_pem` takes for `name` now: it chains to the CA, is
/// valid at this time and names `name` (a DNS name or an IP address). `Err` says why not.
pub fn check_server_certificate(
    cert_pem: &[u8],
    ca_pem: &[u8],
    name: &str,
) -> Result<(), TransportError> {
    let mut roots = RootCertStore::empty();
    for ca in certs_from_pem(ca_pem, "CA")? {
        roots.add(ca).map_err(|e| config_error(format!("CA certificate: {e}")))?;
    }
    let chain = certs_from_pem(cert_pem, "server certificate")?;
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|_| config_error(format!("{name:?} is not a DNS name or an IP address")))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| config_error(format!("server verifier: {e}")))?;
    use rustls::client::danger::ServerCertVerifier;
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &server_name,
            &[],
            rustls_pki_types::UnixTime::now(),
        )
        .map(drop)
        .map_err(|e| TransportError::Tls(format!("for {name}: {e}")))
}

pub(super) fn peer_identity<S>(tls: &TlsStream<S>) -> Option<PeerIdentity> {
    let (_, state) = tls.get_ref();
    PeerIdentity::from_chain(state.peer_certificates()?)
}

/// A client verifier that takes any certificate, self-signed ones included, as long as the
/// client proves it holds the certificate's key (the handshake signature is checked). Who
/// the certificate names, and whether to trust it, is the application's to decide (by
/// thumbprint, say, as IoT Hub does for self-signed devices).
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::server::danger::ClientCertVerifier for AnyClientCertificate {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A stream that keeps the first eight bytes read from it, so a failed TLS handshake can
/// say what the peer sent instead (an AMQP header, an HTTP request).
#[derive(Debug)]
pub(super) struct Sniffed<S> {
    inner: S,
    head: [u8; 8],
    len: usize,
}

impl<S> Sniffed<S> {
    pub(super) fn new(inner: S) -> Self {
        Self { inner, head: [0; 8], len: 0 }
    }

    fn head(&self) -> &[u8] {
        &self.head[..self.len]
    }

    pub(super) fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.len < this.head.len() {
            let new = &buf.filled()[before..];
            let n = new.len().min(this.head.len() - this.len);
            this.head[this.len..this.len + n].copy_from_slice(&new[..n]);
            this.len += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniffed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Runs a client handshake over `stream`. `host` is the server name to send (SNI) and to
/// check the certificate against; `plain` is the scheme to suggest when the server turns
/// out not to speak TLS (`amqp` or `ws`).
pub(super) async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    config: &ClientTlsConfig,
    plain: &'static str,
) -> Result<TlsStream<Sniffed<S>>, TransportError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| config_error(format!("{host:?} is not a valid TLS server name: {e}")))?;
    let connector = TlsConnector::from(config.rustls_config()?);
    match connector.connect(name, Sniffed::new(stream)).into_fallible().await {
        Ok(tls) => Ok(TlsStream::Client(tls)),
        Err((e, sniffed)) => Err(client_error(e, sniffed.head(), host, plain)),
    }
}

/// Runs a server handshake over `stream`. `tls_scheme` is the scheme of this listener
/// (`amqps` or `wss`), suggested to a client that sent plain bytes.
pub(super) async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: &TlsServerConfig,
    tls_scheme: &'static str,
) -> Result<TlsStream<Sniffed<S>>, TransportError> {
    match config.acceptor.accept(Sniffed::new(stream)).into_fallible().await {
        Ok(tls) => Ok(TlsStream::Server(tls)),
        Err((e, sniffed)) => Err(server_error(e, sniffed.head(), tls_scheme)),
    }
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn client_error(e: io::Error, head: &[u8], host: &str, plain: &'static str) -> TransportError {
    if head.starts_with(b"AMQP") {
        return TransportError::ServerNotTls { answered: "plain AMQP", use_scheme: plain };
    }
    if head.starts_with(b"HTTP/") {
        return TransportError::ServerNotTls { answered: "HTTP", use_scheme: "ws" };
    }
    match rustls_error(&e) {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => {
            let presented = match rustls_error(&e) {
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext { presented, .. },
                )) => presented.clone(),
                _ => Vec::new(),
            };
            TransportError::CertificateNameMismatch { host: host.to_string(), presented }
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            TransportError::Tls(format!(
                "the certificate of {host} is signed by an unknown issuer: trust its CA with \
                 a CA file"
            ))
        }
        Some(rustls::Error::AlertReceived(alert)) => TransportError::Tls(format!(
            "{host} refused the TLS handshake with alert {alert:?} (a server that requires \
             a client certificate sends this when none or a wrong one is presented)"
        )),
        Some(other) => TransportError::Tls(format!("TLS handshake with {host} failed: {other}")),
        None if hung_up(&e) => TransportError::Tls(format!(
            "{host} closed the connection during the TLS handshake (is it a TLS port? for a \
             plain connection use {plain}://)"
        )),
        None => TransportError::Io(e),
    }
}

fn server_error(e: io::Error, head: &[u8], tls_scheme: &'static str) -> TransportError {
    if head.starts_with(b"AMQP") {
        let mut header = [0u8; 8];
        header[..head.len()].copy_from_slice(head);
        let sent = match ProtocolHeader::parse(&header) {
            Ok(h) if h == ProtocolHeader::TLS => {
                "the AMQP TLS header (AMQP 2 1 0 0, which starts TLS after the header)"
            }
            _ => "a plain AMQP header",
        };
        return TransportError::ClientNotTls { sent, use_scheme: tls_scheme };
    }
    if [&b"GET "[..], b"POST ", b"HEAD ", b"PUT "].iter().any(|m| head.starts_with(m)) {
        return TransportError::ClientNotTls { sent: "an HTTP request", use_scheme: "wss" };
    }
    match rustls_error(&e) {
        Some(rustls::Error::AlertReceived(alert)) => TransportError::Tls(format!(
            "the client refused the TLS handshake with alert {alert:?} (a client sends this \
             when it does not trust the server's certificate or its name)"
        )),
        Some(rustls::Error::NoCertificatesPresented) => TransportError::Tls(
            "the client presented no certificate, and this listener requires one".into(),
        ),
        Some(rustls::Error::InvalidCertificate(c)) => {
            TransportError::Tls(format!("the client's certificate was refused: {c}"))
        }
        Some(other) => TransportError::Tls(format!("TLS handshake with a client failed: {other}")),
        None if hung_up(&e) => {
            TransportError::Tls("the client closed the connection during the TLS handshake".into())
        }
        None => TransportError::Io(e),
    }
}

// --- the subject common name of a DER certificate, read with a small bounds-checked DER walker.

/// One DER element: tag, contents, and what follows it.
fn der_element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers do not occur where we look
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// id-at-commonName, 2.5.4.3.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The first common name of a certificate's subject.
fn subject_common_name(der: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = der_element(der)? else { return None };
    let (SEQUENCE, tbs, _) = der_element(cert)? else { return None };
    let mut rest = tbs;
    let (tag, _, after) = der_element(rest)?;
    if tag == 0xa0 {
        rest = after; // [0] version
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = der_element(rest)?.2;
    }
    let (SEQUENCE, mut rdns, _) = der_element(rest)? else { return None };
    while !rdns.is_empty() {
        let (tag, mut set, next) = der_element(rdns)?;
        rdns = next;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (tag, attr, next) = der_element(set)?;
            set = next;
            if tag != SEQUENCE {
                return None;
            }
            let (OID, oid, value) = der_element(attr)? else { return None };
            if oid == OID_COMMON_NAME {
                let (vtag, v, _) = der_element(value)?;
                return match vtag {
                    // UTF8String, PrintableString, IA5String, TeletexString (ASCII in practice)
                    0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(v.to_vec()).ok(),
                    // BMPString: UTF-16 big-endian
                    0x1e if v.len() % 2 == 0 => char::decode_utf16(
                        v.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])),
                    )
                    .collect::<Result<String, _>>()
                    .ok(),
                    _ => None,
                };
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn name(attrs: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let mut rdns = Vec::new();
        for (oid, tag, value) in attrs {
            let attr = [tlv(OID, oid), tlv(*tag, value)].concat();
            rdns.extend(tlv(SET, &tlv(SEQUENCE, &attr)));
        }
        tlv(SEQUENCE, &rdns)
    }

    fn cert(subject: &[u8], with_version: bool) -> Vec<u8> {
        let mut tbs = Vec::new();
        if with_version {
            tbs.extend(tlv(0xa0, &tlv(0x02, &[2])));
        }
        tbs.extend(tlv(0x02, &[1, 2, 3])); // serial
        tbs.extend(tlv(SEQUENCE, &tlv(OID, &[0x2a, 0x03]))); // signature algorithm
        tbs.extend(name(&[(OID_COMMON_NAME, 0x0c, b"issuer")])); // issuer
        tbs.extend(tlv(SEQUENCE, &[])); // validity
        tbs.extend_from_slice(subject);
        tbs.extend(tlv(SEQUENCE, &[0u8; 200])); // a long-form length after the subject
        tlv(SEQUENCE, &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[]), tlv(0x03, &[0])].concat())
    }

    /// An X.509 version 1 certificate (made with `openssl x509 -req -signkey`, which adds
    /// no extensions) is refused as ours, not as "the peer's", and says why.
    #[test]
    fn an_old_certificate_of_our_own_is_refused_as_ours() {
        let cert = include_bytes!("../../../tests/fixtures/tls/x509-v1-cert.pem");
        let key = include_bytes!("../../../tests/fixtures/tls/x509-v1-key.pem");
        let Err(TransportError::Config(e)) = TlsServerConfig::from_pem(cert, key) else {
            panic!("a version 1 certificate was taken")
        };
        assert_eq!(
            e,
            "the server certificate cannot be used: UnsupportedCertVersion (TLS takes X.509 \
             version 3 certificates; this one is older)"
        );
    }

    #[test]
    fn common_name_of_a_subject() {
        let subject =
            name(&[(&[0x55, 0x04, 0x06], 0x13, b"DE"), (OID_COMMON_NAME, 0x0c, b"device-1")]);
        assert_eq!(subject_common_name(&cert(&subject, true)).as_deref(), Some("device-1"));
        assert_eq!(subject_common_name(&cert(&subject, false)).as_deref(), Some("device-1"));
        let bmp = name(&[(OID_COMMON_NAME, 0x1e, &[0, b'h', 0, b'i'])]);
        assert_eq!(subject_common_name(&cert(&bmp, true)).as_deref(), Some("hi"));
        let no_cn = name(&[(&[0x55, 0x04, 0x0a], 0x0c, b"org")]);
        assert_eq!(subject_common_name(&cert(&no_cn, true)), None);
    }

    #[test]
    fn truncated_or_garbage_certificates_give_none() {
        let subject = name(&[(OID_COMMON_NAME, 0x0c, b"device-1")]);
        let good = cert(&subject, true);
        for cut in 0..good.len() {
            // Never panics; a cut certificate either still has its CN bytes or gives None.
            let got = subject_common_name(&good[..cut]);
            assert!(got.is_none(), "cut at {cut} gave {got:?}");
        }
        assert_eq!(subject_common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject_common_name(&[0x30, 0x80]), None);
        assert_eq!(subject_common_name(&[]), None);
    }
}
