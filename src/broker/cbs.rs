//! The broker's `$cbs` node (claims-based security, as Azure Service Bus, Event Hubs and IoT
//! Hub have it): put-token requests are answered on the asking connection's own reply
//! link, and nothing of a token is stored, queued or forwarded.
//!
//! Without keys ([`Broker::with_cbs_keys`](super::Broker::with_cbs_keys)) every
//! well-formed SAS token is accepted (status 200; anything else is 401), so clients that put a token before their
//! first link work against the broker. With keys, a token must name one of them (`skn`),
//! carry its HMAC-SHA256 signature, be unexpired, and cover the audience it is put for;
//! otherwise the answer is 401 with the reason. The broker does not make links wait for a
//! token: `$cbs` is there for clients that need it answered.

use std::time::SystemTime;

use crate::azure::cbs::PutToken;
use crate::azure::{percent_decode, SasKey, SasToken, DEFAULT_CLOCK_SKEW};

/// The status code and description for a put-token, judged against `keys` (empty: any
/// well-formed SAS token).
pub(super) fn judge(keys: &[(String, SasKey)], put: &PutToken, now: SystemTime) -> (i32, String) {
    let token: SasToken = match put.token.trim().parse() {
        Ok(t) => t,
        // A credential that cannot be used, as the IoT Hub emulator (and the docs) say.
        Err(e) => return (401, format!("not a SAS token: {e}")),
    };
    if keys.is_empty() {
        return (200, "OK (not checked: the broker has no CBS keys)".to_owned());
    }
    let Some(name) = token.key_name() else {
        return (401, "the token names no key (skn)".to_owned());
    };
    let Some((_, key)) = keys.iter().find(|(n, _)| n == name) else {
        return (401, format!("no key named {name:?}"));
    };
    if let Err(e) = token.verify(key, now, DEFAULT_CLOCK_SKEW) {
        return (401, e.to_string());
    }
    let audience = percent_decode(&put.name).unwrap_or_else(|_| put.name.clone());
    if !audience.is_empty() && !token.authorizes(&audience) {
        return (401, format!("the token for {:?} does not cover {audience:?}", token.audience()));
    }
    (200, "OK".to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::azure::cbs::SAS_TOKEN_TYPE;

    fn put(token: &str, name: &str) -> PutToken {
        PutToken {
            message_id: None,
            token_type: SAS_TOKEN_TYPE.into(),
            name: name.into(),
            token: token.into(),
            expiration: None,
        }
    }

    #[test]
    fn tokens_are_checked_against_the_keys_when_there_are_some() {
        let key = SasKey::from_bytes(b"secret".to_vec());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let good = SasToken::new("sb://broker/orders", &key, Some("owner"), 2_000)
            .expect("token")
            .to_string();
        let keys = vec![("owner".to_owned(), key.clone())];
        assert_eq!(judge(&keys, &put(&good, "sb://broker/orders"), now).0, 200);
        assert_eq!(judge(&keys, &put(&good, "sb://broker/orders/sub"), now).0, 200);
        let (code, why) = judge(&keys, &put(&good, "sb://broker/other"), now);
        assert_eq!(code, 401);
        assert!(why.contains("does not cover"), "{why}");
        let other = vec![("owner".to_owned(), SasKey::from_bytes(b"wrong".to_vec()))];
        assert_eq!(judge(&other, &put(&good, "sb://broker/orders"), now).0, 401);
        let late = now + Duration::from_secs(10_000);
        assert_eq!(judge(&keys, &put(&good, "sb://broker/orders"), late).0, 401);
        let unnamed =
            SasToken::new("sb://broker/orders", &key, None, 2_000).expect("token").to_string();
        assert_eq!(judge(&keys, &put(&unnamed, "sb://broker/orders"), now).0, 401);
        // Without keys, any well-formed token; never something that is not one.
        assert_eq!(judge(&[], &put(&unnamed, "x"), now).0, 200);
        assert_eq!(judge(&[], &put("hello", "x"), now).0, 401);
    }
}
