//! Test certificates made at test time with rcgen: a CA, a server certificate for
//! `localhost` and a client certificate for `device-1`. Nothing is committed.
#![allow(dead_code)] // each test binary uses part of it

use amqpwire::runtime::transport::{ClientTlsConfig, TlsServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA, a server certificate for `localhost` and a client certificate for `device-1`.
pub(crate) struct Pki {
    pub(crate) ca: String,
    pub(crate) server_cert: String,
    pub(crate) server_key: String,
    pub(crate) client_cert: String,
    pub(crate) client_key: String,
}

pub(crate) fn pki() -> Pki {
    pki_named("amqpwire test CA")
}

pub(crate) fn pki_named(ca_name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) =
        leaf(vec!["localhost".into()], "localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf(vec![], "device-1", ExtendedKeyUsagePurpose::ClientAuth);
    Pki { ca: ca.pem(), server_cert, server_key, client_cert, client_key }
}

impl Pki {
    pub(crate) fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().without_native_roots().with_ca_pem(self.ca.as_bytes()).unwrap()
    }

    pub(crate) fn server(&self) -> TlsServerConfig {
        TlsServerConfig::from_pem(self.server_cert.as_bytes(), self.server_key.as_bytes()).unwrap()
    }
}
