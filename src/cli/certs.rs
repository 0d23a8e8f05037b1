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
    let mut params = CertificateParams::new(covered(names)).map_err(fail)?;
    params.distinguished_name.push(DnType::CommonName, hostname);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &ca).map_err(fail)?;
    Ok(ServerPki { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// The names a certificate made for `names` covers: those, then `localhost` and
/// `127.0.0.1` unless they are among them.
pub(crate) fn covered(names: &[String]) -> Vec<String> {
    let mut all = names.to_vec();
    for extra in ["localhost", "127.0.0.1"] {
        if !all.iter().any(|n| n.eq_ignore_ascii_case(extra)) {
            all.push(extra.to_owned());
        }
    }
    all
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
/// when they do not (a set cut short is made anew). Processes that look at one folder at
/// once (an `amqps` and a `wss` proxy started together) take turns under a lock file,
/// `DIR/.lock`, so that one makes the set and the others keep it: never a mix of two.
pub(crate) fn in_dir(dir: &Path, names: &[String]) -> Result<CertFiles, String> {
    // Checked before anything is made or found: a certificate made for such a name
    // would be refused for it by every client (and a set found is checked against it).
    for name in names {
        if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(format!(
                "{name:?} is not a DNS name or an IP address: no certificate can name it"
            ));
        }
    }
    create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _lock = FolderLock::take(dir)?;
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
    let pki = generate(names)?;
    // What there is of a set cut short goes first; then the key and certificate, the CA
    // last: a process killed between leaves a set that is not whole, made anew by the next.
    for path in [&files.ca, &files.cert, &files.key] {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot replace {}: {e}", path.display()));
            }
            _ => {}
        }
    }
    for (path, pem, private) in [
        (&files.key, &pki.key_pem, true),
        (&files.cert, &pki.cert_pem, false),
        (&files.ca, &pki.ca_pem, false),
    ] {
        write(path, pem, private).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(CertFiles { made: true, ..files })
}

/// `DIR/.lock`, made with `create_new` and removed when dropped. One left by a process
/// that was killed holding it is taken over after 10 s.
struct FolderLock(PathBuf);

impl FolderLock {
    fn take(dir: &Path) -> Result<Self, String> {
        let path = dir.join(".lock");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(Self(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if std::time::Instant::now() >= until {
                        // Held for 10 s: its process is gone (making a set takes
                        // milliseconds). Taken over.
                        let _ = std::fs::remove_file(&path);
                    } else {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
                Err(e) => return Err(format!("cannot lock {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
    fn a_name_no_certificate_can_hold_is_refused_before_anything_is_made() {
        let dir = std::env::temp_dir().join(format!("amqpwire-certs-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for bad in ["bad/host", "h o s t", ""] {
            let e = in_dir(&dir, &["localhost".into(), bad.into()]).err().expect("refused");
            assert!(e.contains("is not a DNS name or an IP address"), "{bad:?}: {e}");
        }
        assert!(!dir.exists(), "nothing was made");
        assert!(in_dir(&dir, &["hub.example.net".into(), "10.0.0.1".into()]).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_set_cut_short_or_not_of_files_is_made_anew() {
        // A ca.pem without its key (a process killed while making the set), and one that
        // is a folder: a new set, not a wait or a loop.
        let dir = std::env::temp_dir().join(format!("amqpwire-certs-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("ca.pem"), "old").expect("write");
        std::fs::write(dir.join("server.pem"), "old").expect("write");
        assert!(in_dir(&dir, &["localhost".into()]).expect("made").made);
        assert!(!in_dir(&dir, &["localhost".into()]).expect("kept").made);
        std::fs::remove_dir_all(&dir).expect("clean up");
        std::fs::create_dir_all(dir.join("ca.pem")).expect("a folder named ca.pem");
        let e = in_dir(&dir, &["localhost".into()]).err().expect("refused");
        assert!(e.contains("cannot replace"), "{e}");
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
            let mut left: Vec<_> = std::fs::read_dir(&dir)
                .expect("dir")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            left.sort();
            assert_eq!(left, ["ca.pem", "server-key.pem", "server.pem"]);
            std::fs::remove_dir_all(&dir).expect("clean up");
        }
    }
}
