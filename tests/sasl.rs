//! SASL exchanges between `SaslClient` and the `Credentials` authenticator, carried in real
//! SASL frames (encoded, then decoded) as a connection would carry them.

use amqpwire::codec::DecodeOptions;
use amqpwire::frame::{FrameBody, FrameDecoder, FrameEncoder, StreamItem};
use amqpwire::sasl::{
    AuthStep, Authenticator, Credentials, SaslClient, SaslError, ScramStored, ANONYMOUS, EXTERNAL,
    MSSBCBS, PLAIN, SCRAM_SHA_256,
};
use amqpwire::types::{
    SaslChallenge, SaslCode, SaslFrameBody, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse,
};

/// Sends a SASL body through the encoder and decoder, as the wire would.
fn wire(body: SaslFrameBody) -> SaslFrameBody {
    let mut out = Vec::new();
    FrameEncoder::new(64 * 1024).encode_sasl(&body, &mut out).expect("fits");
    let mut d = FrameDecoder::new(64 * 1024).frames_first();
    d.push(&out);
    let Some(StreamItem::Frame(f)) = d.next_item().expect("frame") else { panic!("no frame") };
    let FrameBody::Sasl(b) = f.decode(DecodeOptions::STRICT).expect("sasl").body else { panic!() };
    assert_eq!(b, body);
    b
}

/// Runs a whole exchange; returns the server's outcome and the client's verdict.
fn exchange(
    client: &mut SaslClient,
    server: &mut dyn Authenticator,
    external: Option<&str>,
) -> (SaslOutcome, Option<String>, Result<(), SaslError>) {
    let SaslFrameBody::Mechanisms(m) =
        wire(SaslMechanisms { sasl_server_mechanisms: server.mechanisms() }.into())
    else {
        panic!()
    };
    if let Err(e) = client.check_offered(&m.sasl_server_mechanisms) {
        return (SaslOutcome { code: SaslCode::AUTH, additional_data: None }, None, Err(e));
    }
    let SaslFrameBody::Init(init) = wire(
        SaslInit {
            mechanism: client.mechanism().into(),
            initial_response: client.initial_response(),
            hostname: client.hostname().map(Into::into),
        }
        .into(),
    ) else {
        panic!()
    };
    let mut step = server.start(
        init.mechanism.as_str(),
        init.initial_response.as_deref(),
        init.hostname.as_deref(),
        external,
    );
    for _ in 0..4 {
        match step {
            AuthStep::Challenge(c) => {
                let SaslFrameBody::Challenge(c) = wire(SaslChallenge { challenge: c }.into())
                else {
                    panic!()
                };
                let response = match client.challenge(&c.challenge) {
                    Ok(r) => r,
                    Err(e) => {
                        return (
                            SaslOutcome { code: SaslCode::AUTH, additional_data: None },
                            None,
                            Err(e),
                        )
                    }
                };
                let SaslFrameBody::Response(r) = wire(SaslResponse { response }.into()) else {
                    panic!()
                };
                step = server.step(&r.response);
            }
            AuthStep::Done(o) => {
                let SaslFrameBody::Outcome(out) = wire(
                    SaslOutcome { code: o.code, additional_data: o.additional_data.clone() }.into(),
                ) else {
                    panic!()
                };
                let verdict = client.outcome(out.code, out.additional_data.as_deref());
                return (out, o.identity, verdict);
            }
        }
    }
    panic!("the exchange did not end");
}

fn server() -> Credentials {
    let counter = std::sync::Mutex::new(0u32);
    Credentials::new(move || {
        let mut c = counter.lock().expect("nonce counter");
        *c += 1;
        format!("srv{c}nonce")
    })
    .with_user("alice", "secret", b"0123456789abcdef")
    .anonymous(true)
    .external(true)
    .mssbcbs(true)
}

#[test]
fn offers_the_mechanisms_it_accepts() {
    let names: Vec<String> = server().mechanisms().iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(names, [SCRAM_SHA_256, PLAIN, EXTERNAL, MSSBCBS, ANONYMOUS]);
    let bare = Credentials::new(|| "n".into());
    assert!(bare.mechanisms().is_empty());
}

#[test]
fn every_mechanism_authenticates() {
    let cases: Vec<(SaslClient, Option<&str>, &str)> = vec![
        (SaslClient::anonymous("trace"), None, "anonymous"),
        (SaslClient::plain("alice", "secret").with_hostname("broker.example"), None, "alice"),
        (SaslClient::plain_as("alice", "alice", "secret"), None, "alice"),
        (SaslClient::external(""), Some("CN=device-7"), "CN=device-7"),
        (SaslClient::mssbcbs(), None, "$cbs"),
        (
            SaslClient::scram_sha256("alice", "secret", "clientnonce42").expect("scram"),
            None,
            "alice",
        ),
    ];
    for (mut client, external, identity) in cases {
        let mech = client.mechanism();
        let (outcome, who, verdict) = exchange(&mut client, &mut server(), external);
        assert_eq!(outcome.code, SaslCode::OK, "{mech}");
        assert_eq!(who.as_deref(), Some(identity), "{mech}");
        assert_eq!(verdict, Ok(()), "{mech}");
    }
}

#[test]
fn wrong_credentials_are_refused_with_an_auth_outcome() {
    for mut client in [
        SaslClient::plain("alice", "wrong"),
        SaslClient::plain("mallory", "secret"),
        SaslClient::plain_as("bob", "alice", "secret"),
        SaslClient::scram_sha256("alice", "wrong", "n1").expect("scram"),
        SaslClient::scram_sha256("mallory", "secret", "n2").expect("scram"),
    ] {
        let (outcome, who, verdict) = exchange(&mut client, &mut server(), None);
        assert_eq!(outcome.code, SaslCode::AUTH);
        assert_eq!(who, None);
        assert_eq!(verdict, Err(SaslError::Failed { code: SaslCode::AUTH }));
    }
    // EXTERNAL with no transport identity.
    let (outcome, _, _) = exchange(&mut SaslClient::external(""), &mut server(), None);
    assert_eq!(outcome.code, SaslCode::AUTH);
}

#[test]
fn a_mechanism_the_server_did_not_offer_is_not_tried() {
    let plain_only = Credentials::new(|| "n".into()).with_user("alice", "secret", b"salt");
    let (_, _, verdict) = exchange(&mut SaslClient::anonymous(""), &mut plain_only.clone(), None);
    assert!(matches!(verdict, Err(SaslError::NotOffered { mechanism: ANONYMOUS, .. })));
    // A client that sends it anyway is refused by the server too.
    let mut s = plain_only;
    let AuthStep::Done(o) = s.start(ANONYMOUS, Some(b""), None, None) else { panic!() };
    assert_eq!(o.code, SaslCode::AUTH);
}

#[test]
fn scram_users_known_only_by_their_keys_cannot_use_plain() {
    let stored = ScramStored::derive("secret", b"salt-salt-salt!!", 4096);
    let s = Credentials::new(|| "xyz".into()).with_scram_user("carol", stored);
    let (o, who, v) = exchange(
        &mut SaslClient::scram_sha256("carol", "secret", "abc").expect("c"),
        &mut s.clone(),
        None,
    );
    assert_eq!((o.code, who.as_deref(), v), (SaslCode::OK, Some("carol"), Ok(())));
    let (o, _, _) = exchange(&mut SaslClient::plain("carol", "secret"), &mut s.clone(), None);
    assert_eq!(o.code, SaslCode::AUTH);
}

#[test]
fn plain_without_an_initial_response_gets_an_empty_challenge() {
    let mut s = server();
    assert_eq!(s.start(PLAIN, None, None, None), AuthStep::Challenge(bytes::Bytes::new()));
    let AuthStep::Done(o) = s.step(b"\0alice\0secret") else { panic!() };
    assert_eq!(o.code, SaslCode::OK);
}

#[test]
fn a_long_token_as_password_travels_in_one_sasl_frame() {
    // Azure's PLAIN-with-SAS-token shape: the password is a 2 KiB token.
    let token = format!("SharedAccessSignature sr=hub&sig={}&se=1", "a".repeat(2000));
    let s = Credentials::new(|| "n".into()).with_user("device@sas.hub", &token, b"s");
    let (o, who, v) =
        exchange(&mut SaslClient::plain("device@sas.hub", &token), &mut s.clone(), None);
    assert_eq!((o.code, who.as_deref(), v), (SaslCode::OK, Some("device@sas.hub"), Ok(())));
}

#[test]
fn debug_output_never_shows_a_password_or_a_scram_key() {
    use amqpwire::sasl::Secret;
    let password = "hunter2-secret";
    let stored = ScramStored::derive(password, b"salt", 4096);
    let key_hex: String = stored.server_key.iter().map(|b| format!("{b:02x}")).collect();
    let shown = [
        format!("{:?}", SaslClient::plain("alice", password)),
        format!("{:?}", SaslClient::plain_as("admin", "alice", password)),
        format!("{:?}", SaslClient::scram_sha256("alice", password, "nonce").expect("scram")),
        format!("{:?}", Secret::Password(password.into())),
        format!("{:?}", Secret::Scram(stored.clone())),
        format!("{stored:?}"),
    ];
    for s in shown {
        assert!(!s.contains(password), "{s}");
        assert!(!s.contains(&format!("{:?}", stored.server_key)), "{s}");
        assert!(!s.contains(&key_hex), "{s}");
        assert!(s.contains("***") || !s.contains("key"), "{s}");
    }
    // What is not secret is still there to read.
    assert!(format!("{:?}", SaslClient::plain("alice", password)).contains("alice"));
}
