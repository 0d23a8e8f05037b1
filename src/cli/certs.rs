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
/// (clients keep trusting the same CA), made for `names` otherwise.
pub(crate) fn in_dir(dir: &Path, names: &[String]) -> Result<CertFiles, String> {
    let files = CertFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        made: false,
    };
    if files.ca.is_file() && files.cert.is_file() && files.key.is_file() {
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
