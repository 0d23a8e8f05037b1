//! Runs `amqpwire sas-token` and checks the tokens it prints, its verdicts on tokens, and
//! its error messages.

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

/// Node's test key `password`, in base64.
const PASSWORD: &str = "cGFzc3dvcmQ=";
/// The two bytes `0x91 0xEC` that Node decodes its test key `key` to, in strict base64.
const NODE_KEY: &str = "kew=";
/// The bytes 0 to 31.
const KEY_0_31: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// 2100-01-01 00:00:00 UTC: an expiry that has not passed.
const FUTURE: &str = "4102444800";

fn sas_token(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amqpwire"))
        .arg("sas-token")
        .args(args)
        .output()
        .expect("run amqpwire")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 output")
}

/// Runs successfully and returns the one line printed.
fn token(args: &[&str]) -> String {
    let o = sas_token(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
    out.trim_end().to_owned()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

fn se(token: &str) -> u64 {
    let se = token.split('&').find_map(|f| f.strip_prefix("se=")).expect("an se field");
    se.parse().expect("decimal se")
}

#[test]
fn prints_the_node_sdk_vectors() {
    assert_eq!(
        token(&["--uri", "uri", "--key", PASSWORD, "--expiry", "12345"]),
        "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345"
    );
    assert_eq!(
        token(&["--uri", "host/devices/device", "--key", NODE_KEY, "--expiry", "12345"]),
        "SharedAccessSignature sr=host%2Fdevices%2Fdevice\
         &sig=wM3XiP6gD960IxP7J5WHqnxQHEcWC6YaQCtoMT%2BkKHc%3D&se=12345"
    );
    // Node writes skn before se; we write the documented order sr, sig, se, skn.
    assert_eq!(
        token(&["--uri", "host", "--key", NODE_KEY, "--policy", "policy", "--expiry", "12345"]),
        "SharedAccessSignature sr=host\
         &sig=88JmrIsVYOGmRSjCO1x1LLbv0K001Gikh1rjfJqbQXA%3D&se=12345&skn=policy"
    );
}

#[test]
fn makes_tokens_from_connection_strings() {
    let device =
        format!("HostName=myhub.azure-devices.net;DeviceId=device1;SharedAccessKey={KEY_0_31}");
    assert_eq!(
        token(&["--connection-string", &device, "--expiry", "1700000000"]),
        "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1\
         &sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000"
    );
    let service = format!(
        "HostName=myhub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey={KEY_0_31}"
    );
    assert_eq!(
        token(&["--connection-string", &service, "--expiry", "1700000000"]),
        "SharedAccessSignature sr=myhub.azure-devices.net\
         &sig=iIzEw6hi6GK79RY5jNXO6QeQkSL%2FAx4zTmy44X2G1VY%3D&se=1700000000&skn=service"
    );
    let event_hubs = format!(
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=iothubowner;\
         SharedAccessKey={KEY_0_31};EntityPath=myhub"
    );
    let t = token(&["--connection-string", &event_hubs, "--expiry", "1700000000"]);
    assert!(
        t.starts_with("SharedAccessSignature sr=sb%3A%2F%2Fns.servicebus.windows.net%2Fmyhub&sig="),
        "{t}"
    );
    assert!(t.ends_with("&se=1700000000&skn=iothubowner"), "{t}");
    // Event Hubs keys the HMAC with the key's text: --text-key does the same by hand, and
    // without it (IoT Hub's way) the signature differs.
    let by_hand = |extra: &[&str]| {
        let mut a = vec![
            "--uri",
            "sb://ns.servicebus.windows.net/myhub",
            "--key",
            KEY_0_31,
            "--policy",
            "iothubowner",
            "--expiry",
            "1700000000",
        ];
        a.extend_from_slice(extra);
        token(&a)
    };
    assert_eq!(by_hand(&["--text-key"]), t);
    assert_ne!(by_hand(&[]), t);

    // A connection string that carries a token gives it back unchanged.
    let fixed =
        "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345";
    let with_token = format!("HostName=h;DeviceId=d;SharedAccessSignature={fixed}");
    assert_eq!(token(&["--connection-string", &with_token]), fixed);
}

#[test]
fn signs_an_unencoded_sr_on_request() {
    assert_eq!(
        token(&[
            "--uri",
            "myhub.azure-devices.net/devices/device1",
            "--literal-sr",
            "--key",
            KEY_0_31,
            "--expiry",
            "1700000000"
        ]),
        "SharedAccessSignature sr=myhub.azure-devices.net/devices/device1\
         &sig=NlrxHOPrp0Ykah29gS5LOHFu7Y%2Fi4fWSpV%2F%2FMjSnuQ8%3D&se=1700000000"
    );
}

#[test]
fn expires_an_hour_from_now_unless_told_otherwise() {
    let before = now();
    let default = se(&token(&["--uri", "h", "--key", PASSWORD]));
    let ttl = se(&token(&["--uri", "h", "--key", PASSWORD, "--ttl", "60"]));
    let after = now();
    assert!((before + 3600..=after + 3600).contains(&default), "{default}");
    assert!((before + 60..=after + 60).contains(&ttl), "{ttl}");
}

#[test]
fn verifies_a_good_token() {
    let t = token(&["--uri", "host/a/b", "--key", KEY_0_31, "--policy", "p", "--expiry", FUTURE]);
    let o = sas_token(&["--verify", &t, "--key", KEY_0_31, "--resource", "HOST/a/b/c"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("sr:        host%2Fa%2Fb\n"), "{out}");
    assert!(out.contains("audience:  host/a/b\n"), "{out}");
    assert!(out.contains("skn:       p\n"), "{out}");
    assert!(out.contains("se:        4102444800 (2100-01-01 00:00:00 UTC)\n"), "{out}");
    assert!(out.contains("signature: matches the key\n"), "{out}");
    assert!(out.contains("expiry:    valid for "), "{out}");
    assert!(out.contains("resource:  the audience covers HOST/a/b/c\n"), "{out}");
    assert!(out.ends_with("result:    valid\n"), "{out}");

    // The key can come from a connection string.
    let cs = format!("HostName=host;SharedAccessKeyName=p;SharedAccessKey={KEY_0_31}");
    let o = sas_token(&["--verify", &t, "--connection-string", &cs]);
    assert!(o.status.success(), "{}", stdout(&o));
}

#[test]
fn rejects_a_wrong_key_an_expired_token_and_an_uncovered_resource() {
    let t = token(&["--uri", "host/a/b", "--key", KEY_0_31, "--expiry", FUTURE]);

    let o = sas_token(&["--verify", &t, "--key", PASSWORD]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("signature: DOES NOT MATCH the key\n"), "{out}");
    assert!(out.ends_with("result:    INVALID (signature does not match)\n"), "{out}");

    let o = sas_token(&["--verify", &t, "--key", KEY_0_31, "--resource", "host/a/bc"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("resource:  the audience DOES NOT COVER host/a/bc\n"), "{out}");
    assert!(out.ends_with("result:    INVALID (resource not covered)\n"), "{out}");

    // Node's service vector, in Node's field order: the signature is right, the token
    // expired in 1970.
    let node = "SharedAccessSignature sr=host&sig=88JmrIsVYOGmRSjCO1x1LLbv0K001Gikh1rjfJqbQXA%3D\
                &skn=policy&se=12345";
    let o = sas_token(&["--verify", node, "--key", NODE_KEY]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("skn:       policy\n"), "{out}");
    assert!(out.contains("signature: matches the key\n"), "{out}");
    assert!(out.contains("expiry:    EXPIRED "), "{out}");
    assert!(out.ends_with("result:    INVALID (expired)\n"), "{out}");
}

#[test]
fn allows_clock_skew_past_the_expiry() {
    let just_expired = (now() - 100).to_string();
    let t = token(&["--uri", "h", "--key", PASSWORD, "--expiry", &just_expired]);
    let o = sas_token(&["--verify", &t, "--key", PASSWORD]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("within the 300s clock skew"), "{}", stdout(&o));
    let o = sas_token(&["--verify", &t, "--key", PASSWORD, "--clock-skew", "10"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
}

#[test]
fn names_the_problem_with_bad_input() {
    let error = |args: &[&str]| {
        let o = sas_token(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
        stderr(&o)
    };
    assert_eq!(
        error(&["--uri", "h", "--key", "key"]),
        "amqpwire: --key: key is not valid base64: the `=` padding is missing or wrong\n"
    );
    assert_eq!(
        error(&["--connection-string", "HostName=h;deviceId=d;SharedAccessKey=cGFzc3dvcmQ="]),
        "amqpwire: --connection-string: unknown key `deviceId` in IoT Hub connection string \
         (keys are case-sensitive: did you mean DeviceId?)\n"
    );
    assert_eq!(
        error(&["--connection-string", "HostName=h;SharedAccessKey=cGFzc3dvcmQ="]),
        "amqpwire: --connection-string: IoT Hub connection string with a SharedAccessKey needs \
         SharedAccessKeyName (a policy key) or DeviceId (a device key)\n"
    );
    // A token that does not parse does not pass: status 1, with the result saying why.
    for (token, why) in [
        ("SharedAccessSignature sr=h&sig=YWJj", "token has no `se` field"),
        (
            "SharedAccessSignature sr=h&sig=YWJj&se=1&foo=2",
            "unknown token field `foo` (expected sr, sig, se, skn)",
        ),
        ("x", "a SAS token starts with `SharedAccessSignature `"),
    ] {
        let o = sas_token(&["--verify", token, "--key", PASSWORD]);
        assert_eq!(o.status.code(), Some(1), "{token}");
        assert_eq!(stdout(&o), format!("result:    INVALID (not a SAS token: {why})\n"));
    }
    assert_eq!(
        error(&["--uri", "h", "--key", PASSWORD, "--ttl", "18446744073709551615"]),
        "amqpwire: --ttl is too large: the expiry does not fit in 64 bits\n"
    );
    let with_token =
        "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h&sig=YWJj&se=1";
    assert!(error(&["--connection-string", with_token, "--ttl", "5"])
        .contains("holds a SharedAccessSignature, whose expiry is fixed"));
    assert!(error(&["--verify", "x", "--connection-string", with_token])
        .contains("has a SharedAccessSignature, not a SharedAccessKey"));
    let fixed = "SharedAccessSignature sr=h&sig=YWJj&se=1";
    assert!(error(&["--verify", fixed, "--connection-string", with_token])
        .contains("has a SharedAccessSignature, not a SharedAccessKey"));

    // Usage errors come from clap.
    assert!(error(&["--key", PASSWORD]).contains("required arguments were not provided"));
    assert!(error(&["--verify", "x"]).contains("--key"));
    assert!(error(&["--uri", "h"]).contains("--key"));
    assert!(error(&["--uri", "h", "--key", PASSWORD, "--clock-skew", "5"])
        .contains("cannot be used with"));
    assert!(error(&["--uri", "h", "--key", PASSWORD, "--expiry", "1", "--ttl", "1"])
        .contains("cannot be used with"));
}
