//! Certificates for the IoT Hub emulator and the proxy when none are given: a CA and a
//! server certificate for the names asked for, `localhost` and `127.0.0.1`, made with
//! rcgen.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA and a server certificate signed by it, in PEM.
pub(crate) struct ServerPki {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

/// Makes a CA and a server certificate for `names` (and `localhost`, `127.0.0.1`); the
/// first name is its common name.
pub(crate) fn generate(names: &[String]) -> Result<ServerPki, String> {
    let fail = |e: rcgen::Error| format!("cannot make certificates: {e}");
    let hostname = names.first().map_or("localhost", String::as_str);
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "amqpwire local CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(fail)?)
        .map_err(fail)?;
    let mut names = names.to_vec();
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(extra)) {
            names.push(extra.to_owned());
        }
    }
    let mut params = CertificateParams::new(names).map_err(fail)?;
    params.distinguished_name.push(DnType::CommonName, hostname);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &ca).map_err(fail)?;
    Ok(ServerPki { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// The files of a certificate directory.
pub(crate) struct CertFiles {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// Whether they were made now (rather than found).
    pub(crate) made: bool,
}

/// `DIR/ca.pem`, `DIR/server.pem` and `DIR/server-key.pem`: kept when all three exist
/// (clients keep trusting the same CA) and the certificate still serves every one of
/// `names` (refused otherwise, never said to cover what it does not), made for `names`
/// when they do not exist.
pub(crate) fn in_dir(dir: &Path, names: &[String]) -> Result<CertFiles, String> {
    let files = CertFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        made: false,
    };
    if files.ca.is_file() && files.cert.is_file() && files.key.is_file() {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let (ca, cert) = (read(&files.ca)?, read(&files.cert)?);
        for name in names {
            if let Err(e) = amqpwire::runtime::transport::check_server_certificate(&cert, &ca, name)
            {
                return Err(format!(
                    "the certificates kept in {} do not serve {name} ({e}); give another \
                     --cert-dir, or remove that folder to have new ones made (clients must \
                     then trust its new ca.pem)",
                    dir.display()
                ));
            }
        }
        return Ok(files);
    }
    create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let pki = generate(names)?;
    for (path, pem, private) in [
        (&files.ca, &pki.ca_pem, false),
        (&files.cert, &pki.cert_pem, false),
        (&files.key, &pki.key_pem, true),
    ] {
        write(path, pem, private).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(CertFiles { made: true, ..files })
}

/// Where generated certificates are kept by default (`folder` names the user: the
/// emulator's `iothub-HOST`, the proxy's `proxy-NAMES`): under the user's cache directory,
/// so that no other user can plant a key there; without `HOME`, a directory of this
/// process under the temporary directory.
pub(crate) fn default_dir(folder: &str) -> PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/amqpwire").join(folder),
        None => std::env::temp_dir().join(format!("amqpwire-{folder}-{}", std::process::id())),
    }
}

/// Creates `dir` (and its parents) readable by its owner only (on Unix).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Writes a new file (a link or file already there is removed first, never followed); a
/// private key is readable by its owner only (on Unix).
fn write(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    o.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_certificates_serve_the_names_asked_for_or_are_refused() {
        let dir = std::env::temp_dir().join(format!("amqpwire-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = in_dir(&dir, &["myhub.example.net".into()]).expect("made");
        assert!(first.made);
        // The same name, or localhost, which every certificate made here covers: kept.
        for names in [vec!["myhub.example.net".to_owned()], vec!["localhost".to_owned()]] {
            assert!(!in_dir(&dir, &names).expect("kept").made, "{names:?}");
        }
        // Another name: refused, not claimed.
        let e = in_dir(&dir, &["other.example.org".into()]).err().expect("refused");
        assert!(e.contains("do not serve other.example.org"), "{e}");
        assert!(e.contains("remove that folder"), "{e}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
