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
    // Another process making the same folder's set (an amqps and a wss proxy started
    // together): its ca.pem comes first, and the rest follow at once.
    if files.ca.is_file() && !(files.cert.is_file() && files.key.is_file()) {
        wait_for_set(&files, dir)?;
    }
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
    // Written in a folder of this process's own, then published by hard links: ca.pem
    // first, which only one process can create, so that processes making the same set
    // at once publish one set between them, not a mix (a certificate the CA on disk did
    // not sign, a key that is not the certificate's).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".new-{}-{nanos}", std::process::id()));
    create_private_dir(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let published = publish(&tmp, &files, &pki);
    let _ = std::fs::remove_dir_all(&tmp);
    match published {
        Ok(true) => Ok(CertFiles { made: true, ..files }),
        // Another process published its set first: that one is used (if it serves
        // `names`).
        Ok(false) => {
            wait_for_set(&files, dir)?;
            in_dir(dir, names)
        }
        Err(e) => Err(e),
    }
}

/// Writes `pki` into `tmp` and links it into place as `files`: `false` if another
/// process's ca.pem was there first.
fn publish(tmp: &Path, files: &CertFiles, pki: &ServerPki) -> Result<bool, String> {
    let parts = [
        (&files.ca, &pki.ca_pem, false),
        (&files.cert, &pki.cert_pem, false),
        (&files.key, &pki.key_pem, true),
    ];
    for (path, pem, private) in parts {
        let staged = tmp.join(path.file_name().unwrap_or_default());
        write(&staged, pem, private)
            .map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
    }
    for (i, (path, _, _)) in parts.into_iter().enumerate() {
        let staged = tmp.join(path.file_name().unwrap_or_default());
        if i > 0 {
            // Left from a set whose making was cut short: replaced with ours.
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("cannot replace {}: {e}", path.display()))
                }
                _ => {}
            }
        }
        match std::fs::hard_link(&staged, path) {
            Ok(()) => {}
            Err(e) if i == 0 && e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(format!("cannot write {}: {e}", path.display())),
        }
    }
    Ok(true)
}

/// Waits (up to 10 s) until the process whose ca.pem is in `dir` has put its certificate
/// and key beside it.
fn wait_for_set(files: &CertFiles, dir: &Path) -> Result<(), String> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(files.cert.is_file() && files.key.is_file()) {
        if std::time::Instant::now() >= until {
            return Err(format!(
                "{} holds a ca.pem without its server.pem and server-key.pem: remove that \
                 folder to have new ones made (clients must then trust its new ca.pem)",
                dir.display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
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

    #[test]
    fn processes_making_one_folder_s_set_at_once_share_one_set() {
        // (Threads here, as two proxies started together are processes.) Each made its
        // own CA, certificate and key and wrote them in turn: the files on disk were a
        // mix, a certificate the CA did not sign or a key that was not the certificate's.
        for round in 0..4 {
            let dir = std::env::temp_dir()
                .join(format!("amqpwire-certs-race-{}-{round}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let names = vec!["localhost".to_owned()];
            let made: Vec<bool> = std::thread::scope(|s| {
                let all: Vec<_> =
                    (0..6).map(|_| s.spawn(|| in_dir(&dir, &names).expect("a set"))).collect();
                all.into_iter().map(|t| t.join().expect("thread").made).collect()
            });
            assert_eq!(made.iter().filter(|m| **m).count(), 1, "one made it: {made:?}");
            let read = |f: &str| std::fs::read(dir.join(f)).expect("file");
            let (ca, cert, key) = (read("ca.pem"), read("server.pem"), read("server-key.pem"));
            amqpwire::runtime::transport::check_server_certificate(&cert, &ca, "localhost")
                .expect("the CA on disk signed the certificate on disk");
            amqpwire::runtime::transport::TlsServerConfig::from_pem(&cert, &key)
                .expect("the key is the certificate's");
            // Nothing of the making is left beside them.
            let left: Vec<_> = std::fs::read_dir(&dir)
                .expect("dir")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(".new-"))
                .collect();
            assert!(left.is_empty(), "{left:?}");
            std::fs::remove_dir_all(&dir).expect("clean up");
        }
    }
}
