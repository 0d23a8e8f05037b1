//! The built-in scenarios: well-formed exchanges, as scripts, that the mutations start from.
//!
//! Each reaches a state a fuzzer could not reach by chance: SASL done, a connection open, a
//! session begun, links attached in both roles, deliveries in flight (one of them split over
//! several frames), credit granted and drained. The `expect` steps pace the exchange and
//! bind what the peer chose; a case plays them leniently (`{"lenient": true}`), so a mutation
//! that changes the peer's answers never stops the script.

use serde_json::{json, Value as Json};

/// How the scripted client authenticates (and how the scripted server expects to be
/// approached).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sasl {
    /// No SASL layer: the AMQP header first.
    None,
    /// SASL ANONYMOUS.
    Anonymous,
    /// SASL PLAIN with this user and password.
    Plain {
        /// The authentication identity.
        user: String,
        /// The password.
        password: String,
    },
    /// SASL SCRAM-SHA-256 with this user and password (computed by the script's `sasl`
    /// step: the client's proof and the server's signature, both checked).
    Scram {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// SASL EXTERNAL: the identity is the TLS client certificate's.
    External,
}

/// Which side of the connection the scenarios play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Connect to a server and act as its client.
    Client,
    /// Accept a client and act as its server.
    Server,
}

/// The names of the built-in scenarios for a role, in a fixed order.
pub fn names(role: Role) -> &'static [&'static str] {
    match role {
        Role::Client => &[
            "sasl",
            "open",
            "session",
            "sender",
            "multi-frame",
            "receiver",
            "drain",
            "two-sessions",
        ],
        Role::Server => &["serve-open", "serve-sender", "serve-receiver"],
    }
}

/// The script of a built-in scenario (one JSON object per step), or `None` for an unknown
/// name. `address` is the node the links attach to.
pub fn scenario(name: &str, sasl: &Sasl, address: &str) -> Option<Vec<Json>> {
    let mut s = match name {
        "serve-open" | "serve-sender" | "serve-receiver" => server_prelude(sasl),
        _ => client_prelude(sasl),
    };
    let open = json!({"send": {"performative": "open", "fields": {
        "container-id": "amqpwire-fuzz-peer", "hostname": "localhost",
        "max-frame-size": 65536, "channel-max": 15, "idle-time-out": 0}}});
    let expect = |p: Json| json!({"expect": p});
    let send = |p: &str, f: Json| json!({"send": {"performative": p, "fields": f}});
    let close = |s: &mut Vec<Json>| {
        s.push(send("close", json!({})));
        s.push(expect(json!({"performative": "close"})));
        s.push(json!({"expect-close": true}));
    };
    let begin = |s: &mut Vec<Json>, ch: u16| {
        s.push(json!({"send": {"performative": "begin", "channel": ch, "fields": {
            "next-outgoing-id": 0, "incoming-window": 2048, "outgoing-window": 2048}}}));
        s.push(expect(json!({"performative": "begin", "fields": {"remote-channel": ch}})));
    };
    let end = |s: &mut Vec<Json>, ch: u16| {
        s.push(json!({"send": {"performative": "end", "channel": ch}}));
        s.push(expect(json!({"performative": "end"})));
    };
    let target = json!({"described": [{"ulong": 0x29}, [address]]});
    let source = json!({"described": [{"ulong": 0x28}, [address]]});
    let attach_sender = |s: &mut Vec<Json>, handle: u32| {
        s.push(send(
            "attach",
            json!({"name": format!("fuzz-sender-{handle}"), "handle": handle, "role": "sender",
                   "initial-delivery-count": 0,
                   "source": {"described": [{"ulong": 0x28}, ["fuzz-peer"]]},
                   "target": target}),
        ));
        s.push(expect(json!({"performative": "attach", "fields": {"role": "receiver"}})));
    };
    let attach_receiver = |s: &mut Vec<Json>, handle: u32| {
        s.push(send(
            "attach",
            json!({"name": format!("fuzz-receiver-{handle}"), "handle": handle,
                   "role": "receiver", "source": source,
                   "target": {"described": [{"ulong": 0x29}, ["fuzz-peer"]]}}),
        ));
        s.push(expect(json!({"performative": "attach", "fields": {"role": "sender"}})));
    };
    let transfer = |s: &mut Vec<Json>, handle: u32, id: u32, settled: bool, text: &str| {
        s.push(json!({"send": {"performative": "transfer", "fields": {
            "handle": handle, "delivery-id": id, "delivery-tag": format!("{id:02x}"),
            "message-format": 0, "settled": settled}, "data": text}}));
    };
    match name {
        "sasl" => {
            // The prelude is the scenario: close right after the AMQP header.
            s.push(open);
            s.push(expect(json!({"performative": "open"})));
            close(&mut s);
        }
        "open" => {
            s.push(open);
            s.push(expect(json!({"performative": "open"})));
            s.push(json!({"send": {"performative": "empty"}}));
            close(&mut s);
        }
        "session" => {
            s.push(open);
            s.push(expect(json!({"performative": "open"})));
            begin(&mut s, 0);
            end(&mut s, 0);
            close(&mut s);
        }
        "sender" => {
            s.push(open);
            s.push(expect(json!({"performative": "open"})));
            begin(&mut s, 0);
            attach_sender(&mut s, 0);
            s.push(expect(json!({"performative": "flow"})));
            transfer(&mut s, 0, 0, false, "fuzz one");
            transfer(&mut s, 0, 1, true, "fuzz two");
            s.push(expect(json!({"performative": "disposition"})));
            s.push(send("detach", json!({"handle": 0, "closed": true})));
            s.push(expect(json!({"performative": "detach"})));
            end(&mut s, 0);
            close(&mut s);
        }
        "multi-frame" => {
            s.push(open);
            s.push(expect(json!({"performative": "open"})));
            begin(&mut s, 0);
            attach_sender(&mut s, 0);
            s.push(expect(json!({"performative": "flow"})));
            // One message in three transfers: the first carries the delivery's identity.
            let message = "a message in three frames".repeat(4);
            let hex = message_hex(&message);
            let third = hex.len() / 6 * 2;
            let parts = [&hex[..third], &hex[third..2 * third], &hex[2 * third..]];
            s.push(json!({"send": {"performative": "transfer", "fields": {
                "handle": 0, "delivery-id": 0, "delivery-tag": "aa", "message-format": 0,
                "more": true}, "payload": parts[0]}}));
            s.push(json!({"send": {"performative": "transfer", "fields": {
                "handle": 0, "more": true}, "payload": parts[1]}}));
            s.push(json!({"send": {"performative": "transfer", "fields": {
                "handle": 0}, "payload": parts[2]}}));
            s.push(expect(json!({"performative": "disposition"})));
            s.push(send("detach", json!({"handle": 0, "closed": true})));
            s.push(expect(json!({"performative": "detach"})));
            end(&mut s, 0);
            close(&mut s);
        }
        "receiver" => {
            s.push(open);
            s.push(expect(json!({"performative": "open"})));
            begin(&mut s, 0);
            // Something to receive first, then a receiving link on the same node.
            attach_sender(&mut s, 0);
            s.push(expect(json!({"performative": "flow"})));
            transfer(&mut s, 0, 0, true, "for the receiver");
            attach_receiver(&mut s, 1);
            s.push(send(
                "flow",
                json!({"next-incoming-id": 0, "incoming-window": 2048, "next-outgoing-id": 1,
                       "outgoing-window": 2048, "handle": 1, "delivery-count": 0,
                       "link-credit": 10}),
            ));
            s.push(expect(json!({"performative": "transfer", "fields": {"handle": "$h",
                "delivery-id": "$id"}})));
            s.push(send(
                "disposition",
                json!({"role": "receiver", "first": "$id", "settled": true,
                       "state": {"described": [{"ulong": 0x24}, []]}}),
            ));
            s.push(send("detach", json!({"handle": 1, "closed": true})));
            s.push(expect(json!({"performative": "detach"})));
            end(&mut s, 0);
            close(&mut s);
        }
        "drain" => {
            s.push(open);
            s.push(expect(json!({"performative": "open"})));
            begin(&mut s, 0);
            attach_receiver(&mut s, 0);
            s.push(send(
                "flow",
                json!({"next-incoming-id": 0, "incoming-window": 2048, "next-outgoing-id": 0,
                       "outgoing-window": 2048, "handle": 0, "delivery-count": 0,
                       "link-credit": 100, "drain": true}),
            ));
            // 2.7.4: with nothing to send, the sender uses up the credit and says so.
            s.push(expect(json!({"performative": "flow", "fields": {
                "link-credit": 0, "drain": true}})));
            s.push(send("detach", json!({"handle": 0, "closed": true})));
            s.push(expect(json!({"performative": "detach"})));
            end(&mut s, 0);
            close(&mut s);
        }
        "two-sessions" => {
            s.push(open);
            s.push(expect(json!({"performative": "open"})));
            begin(&mut s, 0);
            begin(&mut s, 1);
            attach_sender(&mut s, 0);
            s.push(expect(json!({"performative": "flow"})));
            s.push(json!({"send": {"performative": "attach", "channel": 1, "fields": {
                "name": "fuzz-sender-other", "handle": 0, "role": "sender",
                "initial-delivery-count": 0, "target": target}}}));
            s.push(expect(json!({"performative": "attach", "channel": 1})));
            s.push(expect(json!({"performative": "flow", "channel": 1})));
            transfer(&mut s, 0, 0, true, "session zero");
            end(&mut s, 1);
            end(&mut s, 0);
            close(&mut s);
        }
        "serve-open" => {
            // The client's open answered, then closed by the server: a client that goes
            // on to begin a session is not waited for.
            s.push(expect(json!({"performative": "open"})));
            s.push(open);
            close(&mut s);
        }
        "serve-sender" | "serve-receiver" => {
            // The client attaches a link; the scripted server takes the other role.
            let (theirs, ours) = if name == "serve-sender" {
                ("sender", "receiver")
            } else {
                ("receiver", "sender")
            };
            s.push(expect(json!({"performative": "open"})));
            s.push(open);
            s.push(expect(json!({"performative": "begin", "channel": "$ch"})));
            s.push(json!({"send": {"performative": "begin", "fields": {
                "remote-channel": "$ch", "next-outgoing-id": 0,
                "incoming-window": 2048, "outgoing-window": 2048}}}));
            s.push(expect(json!({"performative": "attach", "fields": {
                "name": "$name", "handle": "$handle", "role": theirs}})));
            let mut attach = json!({"name": "$name", "handle": 0, "role": ours,
                "source": source, "target": target});
            if ours == "sender" {
                attach["initial-delivery-count"] = json!(0);
            }
            s.push(send("attach", attach));
            if ours == "receiver" {
                s.push(send(
                    "flow",
                    json!({"next-incoming-id": 0, "incoming-window": 2048,
                           "next-outgoing-id": 0, "outgoing-window": 2048, "handle": 0,
                           "delivery-count": 0, "link-credit": 100}),
                ));
                s.push(expect(json!({"performative": "transfer", "fields": {
                    "delivery-id": "$id"}})));
                s.push(send(
                    "disposition",
                    json!({"role": "receiver", "first": "$id", "settled": true,
                           "state": {"described": [{"ulong": 0x24}, []]}}),
                ));
            } else {
                s.push(expect(json!({"performative": "flow"})));
                // A receiving client may top its credit up at any time from here on.
                s.push(json!({"ignore": ["flow"]}));
                transfer(&mut s, 0, 0, false, "from the fuzz peer");
                s.push(expect(json!({"performative": "disposition"})));
            }
            s.push(expect(json!({"performative": "detach"})));
            s.push(send("detach", json!({"handle": 0, "closed": true})));
            s.push(expect(json!({"performative": "end"})));
            s.push(json!({"send": {"performative": "end"}}));
            s.push(expect(json!({"performative": "close"})));
            s.push(send("close", json!({})));
        }
        _ => return None,
    }
    Some(s)
}

/// The client's preamble: protocol headers and SASL.
fn client_prelude(sasl: &Sasl) -> Vec<Json> {
    let amqp = vec![
        json!({"send": {"kind": "header", "protocol_id": 0}}),
        json!({"expect": {"kind": "header"}}),
    ];
    let (mechanism, response) = match sasl {
        Sasl::None => return amqp,
        Sasl::Anonymous => ("ANONYMOUS", "".to_owned()),
        Sasl::Plain { user, password } => {
            ("PLAIN", crate::inspect::hex(format!("\0{user}\0{password}").as_bytes()))
        }
        // Computed exchanges: the script's sasl step plays them.
        Sasl::Scram { user, password } => {
            let mut s = vec![json!({"sasl": {"mechanism": "SCRAM-SHA-256", "user": user,
                "password": password, "hostname": "localhost"}})];
            s.extend(amqp);
            return s;
        }
        Sasl::External => {
            let mut s = vec![json!({"sasl": {"mechanism": "EXTERNAL", "hostname": "localhost"}})];
            s.extend(amqp);
            return s;
        }
    };
    let mut s = vec![
        json!({"send": {"kind": "header", "protocol_id": 3}}),
        json!({"expect": {"kind": "header"}}),
        json!({"expect": {"performative": "sasl-mechanisms"}}),
        json!({"send": {"type": "sasl", "performative": "sasl-init", "fields": {
            "mechanism": mechanism, "initial-response": response, "hostname": "localhost"}}}),
        json!({"expect": {"performative": "sasl-outcome"}}),
    ];
    s.extend(amqp);
    s
}

/// The server's preamble: answer the client's headers, and SASL when it is asked for
/// (ANONYMOUS, PLAIN and EXTERNAL offered, any sasl-init accepted; a scripted server cannot
/// prove a SCRAM password, so SCRAM is not offered).
fn server_prelude(sasl: &Sasl) -> Vec<Json> {
    let amqp = vec![
        json!({"expect": {"kind": "header", "protocol_id": 0}}),
        json!({"send": {"kind": "header", "protocol_id": 0}}),
    ];
    if *sasl == Sasl::None {
        return amqp;
    }
    let mut s = vec![
        json!({"expect": {"kind": "header", "protocol_id": 3}}),
        json!({"send": {"kind": "header", "protocol_id": 3}}),
        json!({"send": {"type": "sasl", "performative": "sasl-mechanisms", "fields": {
            "sasl-server-mechanisms": ["ANONYMOUS", "PLAIN", "EXTERNAL"]}}}),
        json!({"expect": {"performative": "sasl-init"}}),
        json!({"send": {"type": "sasl", "performative": "sasl-outcome", "fields": {"code": 0}}}),
    ];
    s.extend(amqp);
    s
}

/// A message of one data section holding `text`, in hex.
fn message_hex(text: &str) -> String {
    let mut m = vec![0x00, 0x53, 0x75];
    crate::codec::Value::Binary(
        bytes::Bytes::copy_from_slice(text.as_bytes()),
        crate::codec::Fmt::Auto,
    )
    .encode(&mut m);
    crate::inspect::hex(&m)
}

/// The probe that tells a live target from a dead or hung one: the preamble, an open, and a
/// close, every answer awaited.
pub fn probe(sasl: &Sasl) -> Vec<Json> {
    let mut s = client_prelude(sasl);
    // The probe's SASL must succeed (a case's may not): a refused password is said as
    // the outcome it is, not as a header that never came.
    for step in &mut s {
        if step["expect"]["performative"] == "sasl-outcome" {
            step["expect"]["fields"] = json!({"code": "ok"});
        }
    }
    s.push(json!({"send": {"performative": "open", "fields": {
        "container-id": "amqpwire-fuzz-probe", "hostname": "localhost"}}}));
    s.push(json!({"expect": {"performative": "open"}}));
    s.push(json!({"send": {"performative": "close"}}));
    s
}
