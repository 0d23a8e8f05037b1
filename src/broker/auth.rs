//! The broker's listener set-up: SASL over its users (or ANONYMOUS without any), TLS and
//! tracing.

use std::sync::Arc;

use crate::runtime::random::nonce;
use crate::runtime::transport::TlsServerConfig;
use crate::runtime::{ListenOptions, SharedTrace};
use crate::sasl::{Authenticator, Credentials};

/// Listener options for the broker.
///
/// Without `users`, clients may authenticate with SASL ANONYMOUS or skip SASL altogether.
/// With users (`(name, password)` pairs), SASL is required and PLAIN and SCRAM-SHA-256 are
/// offered over those users; ANONYMOUS, a wrong password and a client that skips SASL are
/// refused (the first two with a SASL outcome, the last with the SASL protocol header).
/// `tls` is needed for `amqps://` and `wss://` listeners; when it asks clients for
/// certificates, EXTERNAL is offered too, authenticating a client as its certificate's
/// subject common name. `trace` sees every frame.
pub fn listen_options(
    users: &[(String, String)],
    tls: Option<TlsServerConfig>,
    trace: Option<SharedTrace>,
) -> ListenOptions {
    let mut credentials = Credentials::new(nonce);
    for (name, password) in users {
        credentials = credentials.with_user(name, password, &salt());
    }
    let anonymous = users.is_empty();
    let external = tls.as_ref().is_some_and(TlsServerConfig::checks_client_certificates);
    let credentials = credentials.anonymous(anonymous).external(external);
    ListenOptions {
        tls,
        authenticator: Some(Arc::new(move || {
            Some(Box::new(credentials.clone()) as Box<dyn Authenticator + Send>)
        })),
        require_sasl: !anonymous,
        trace,
        // The engine coordinates transactions; the broker applies their work.
        configure: Some(Arc::new(|cfg: &mut crate::connection::Config| {
            cfg.coordinator = Some(crate::connection::CoordinatorConfig::default());
            // What a consumer's link leaves unsettled when it goes is put back on its
            // queue (and sent afresh): its re-attach must not offer to resume it too.
            cfg.retained_links = 0;
        })),
        ..ListenOptions::default()
    }
}

/// A per-user SCRAM salt.
fn salt() -> [u8; 16] {
    crate::runtime::random::bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_and_salts_differ_each_time() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(salt(), salt());
    }

    #[test]
    fn users_require_sasl_and_none_allow_anonymous() {
        let open = listen_options(&[], None, None);
        assert!(!open.require_sasl);
        let auth = open.authenticator.expect("an authenticator")().expect("SASL");
        let names: Vec<String> = auth.mechanisms().iter().map(|m| m.as_str().to_owned()).collect();
        assert_eq!(names, ["ANONYMOUS"]);

        let users = [("alice".to_owned(), "secret".to_owned())];
        let closed = listen_options(&users, None, None);
        assert!(closed.require_sasl);
        let auth = closed.authenticator.expect("an authenticator")().expect("SASL");
        let names: Vec<String> = auth.mechanisms().iter().map(|m| m.as_str().to_owned()).collect();
        assert_eq!(names, ["SCRAM-SHA-256", "PLAIN"]);
    }
}
