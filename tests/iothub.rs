//! The IoT Hub emulator against amqpwire's own client: CBS put-token, cloud-to-device
//! messages with feedback, telemetry into the event log, the redirect to the Event
//! Hub-compatible endpoint and reading a partition there, and the refusals (no token, a
//! bad token, an unknown device) — over TLS and WebSocket over TLS.

#[path = "support/pki.rs"]
mod pki;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amqpwire::azure::cbs::{CbsClient, CbsError, SAS_TOKEN_TYPE};
use amqpwire::azure::emulator::{HubConfig, IotHub, Permissions};
use amqpwire::azure::{SasKey, SasToken};
use amqpwire::codec::{Symbol, Value};
use amqpwire::connection::LinkOptions;
use amqpwire::message::{AnnotationMap, Body, Message};
use amqpwire::runtime::transport::Endpoint;
use amqpwire::runtime::{ConnectOptions, Connection, Error, Listener, Session};
use amqpwire::types::{
    condition, AttachSource, DeliveryState, Fields, MessageId, Properties, Source,
};
use bytes::Bytes;

const DEVICE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OWNER_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

struct Hub {
    hub: IotHub,
    pki: pki::Pki,
    amqps: u16,
    wss: u16,
    event_hub: u16,
}

async fn start(feedback_interval: Duration) -> Hub {
    let pki = pki::pki();
    let mut config = HubConfig::new("localhost");
    config.devices.push(("dev1".into(), SasKey::from_base64(DEVICE_KEY).unwrap()));
    config.policies.push((
        "iothubowner".into(),
        SasKey::from_base64(OWNER_KEY).unwrap(),
        Permissions::of_policy("iothubowner"),
    ));
    config.feedback_interval = feedback_interval;
    config.partitions = 2;
    let hub = IotHub::new(config);
    let mut ports = Vec::new();
    for url in ["amqps://127.0.0.1:0", "wss://127.0.0.1:0/$iothub/websocket", "amqps://127.0.0.1:0"]
    {
        let l = Listener::bind(url, hub.listen_options(Some(pki.server()), None)).await.unwrap();
        ports.push(l.endpoint().port);
        let h = hub.clone();
        let event_hub = ports.len() == 3;
        tokio::spawn(async move {
            if event_hub {
                h.serve_event_hub(l).await
            } else {
                h.serve(l).await
            }
        });
    }
    hub.set_event_hub_endpoint("localhost", ports[2]);
    Hub { hub, pki, amqps: ports[0], wss: ports[1], event_hub: ports[2] }
}

fn in_an_hour() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600
}

fn device_token() -> String {
    let key = SasKey::from_base64(DEVICE_KEY).unwrap();
    SasToken::new("localhost/devices/dev1", &key, None, in_an_hour()).unwrap().to_string()
}

fn service_token(audience: &str) -> String {
    let key = SasKey::from_base64(OWNER_KEY).unwrap();
    SasToken::new(audience, &key, Some("iothubowner"), in_an_hour()).unwrap().to_string()
}

/// Connects with no SASL layer, as the Azure Node SDKs do.
async fn connect(h: &Hub, url: &str) -> (Connection, Session) {
    let options = ConnectOptions {
        tls: h.pki.client(),
        configure: Some(Box::new(|c: &mut amqpwire::connection::Config| c.sasl_client = None)),
        ..ConnectOptions::default()
    };
    let endpoint = Endpoint::parse(url).unwrap();
    let conn = within("connect", Connection::connect_with(&endpoint, options)).await.unwrap();
    let session = within("begin", conn.begin_session()).await.unwrap();
    (conn, session)
}

fn c2d(id: MessageId, device: &str, ack: &str, body: &str) -> Message {
    Message {
        properties: Some(Properties {
            message_id: Some(id),
            to: Some(format!("/devices/{device}/messages/devicebound").into()),
            ..Properties::default()
        }),
        application_properties: Some(AnnotationMap::from_pairs([("iothub-ack", ack)])),
        body: Body::Data([Bytes::from(body.to_owned())].into()),
        ..Message::default()
    }
}

#[tokio::test]
async fn cloud_to_device_with_feedback_telemetry_and_the_event_hub_endpoint() {
    let h = start(Duration::from_millis(100)).await;
    let hub_open = format!("amqps://localhost:{}", h.amqps);

    // The service: CBS first, then the cloud-to-device sender.
    let (service, s) = connect(&h, &hub_open).await;
    let remote = service.remote_open().unwrap();
    assert!(remote.container_id.starts_with("DeviceGateway_"));
    assert_eq!((remote.max_frame_size, remote.channel_max), (65_536, 8191));
    assert_eq!(remote.idle_time_out, Some(240_000));
    let cbs = within("cbs", CbsClient::attach(&s)).await.unwrap();
    let status =
        within("put", cbs.put_token("localhost", &service_token("localhost"), SAS_TOKEN_TYPE))
            .await
            .unwrap();
    assert_eq!((status.code, status.description.as_deref()), (200, Some("OK")));
    let tx = within("attach", s.sender("c2d", "/messages/devicebound")).await.unwrap();
    let uuid = amqpwire::codec::Uuid([0x5a; 16]);
    let sent = within("send", tx.send(&c2d(MessageId::Uuid(uuid), "dev1", "full", "first"))).await;
    assert!(matches!(sent, Ok(DeliveryState::Accepted(_))), "{sent:?}");
    let sent =
        within("send", tx.send(&c2d(MessageId::String("m2".into()), "dev1", "full", "second")))
            .await;
    assert!(matches!(sent, Ok(DeliveryState::Accepted(_))), "{sent:?}");
    // An unknown device is rejected with amqp:not-found.
    let r =
        within("send", tx.send(&c2d(MessageId::String("x".into()), "nobody", "none", "x"))).await;
    match r {
        Ok(DeliveryState::Rejected(rej)) => {
            assert_eq!(rej.error.unwrap().condition.as_str(), condition::NOT_FOUND)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.hub.queued("dev1"), 2);

    // The device, over WebSocket: completes the first, rejects the second.
    let (device, d) = connect(&h, &format!("wss://localhost:{}/$iothub/websocket", h.wss)).await;
    let dcbs = within("cbs", CbsClient::attach(&d)).await.unwrap();
    within("put", dcbs.put_token("localhost%2Fdevices%2Fdev1", &device_token(), SAS_TOKEN_TYPE))
        .await
        .unwrap();
    let rx = within("attach", d.receiver("c2d-rx", "/devices/dev1/messages/devicebound", 10))
        .await
        .unwrap();
    let first = within("recv", rx.recv()).await.unwrap();
    assert_eq!(first.tag.len(), 16, "the lock token is a GUID");
    let m = first.message().unwrap();
    assert_eq!(m.body, Body::Data([Bytes::from_static(b"first")].into()));
    let seq = m.message_annotations.as_ref().and_then(|a| a.get("x-opt-sequence-number"));
    assert!(seq.is_some(), "{m:?}");
    rx.accept(&first).unwrap();
    let second = within("recv", rx.recv()).await.unwrap();
    rx.reject(&second, None).unwrap();

    // The service reads the feedback: Success for the uuid, Rejected for m2.
    let fb =
        within("attach", s.receiver("fb", "/messages/serviceBound/feedback", 10)).await.unwrap();
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        let d = within("feedback", fb.recv()).await.unwrap();
        let m = d.message().unwrap();
        let ct = m.properties.as_ref().and_then(|p| p.content_type.clone());
        assert_eq!(ct.as_deref(), Some("application/vnd.microsoft.iothub.feedback.json"));
        let Body::Data(parts) = &m.body else { panic!("{:?}", m.body) };
        let records: serde_json::Value = serde_json::from_slice(&parts[0]).unwrap();
        for r in records.as_array().unwrap() {
            statuses.push((
                r["originalMessageId"].as_str().unwrap().to_owned(),
                r["statusCode"].as_str().unwrap().to_owned(),
            ));
            assert_eq!(r["deviceId"], "dev1");
        }
        fb.accept(&d).unwrap();
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a".to_owned(), "Success".to_owned()),
            ("m2".to_owned(), "Rejected".to_owned())
        ]
    );

    // Telemetry into the event log.
    let events = within("attach", d.sender("tel", "/devices/dev1/messages/events")).await.unwrap();
    let mut t = Message::with_data(&b"{\"temp\":21.5}"[..]);
    t.application_properties = Some(AnnotationMap::from_pairs([("alert", "no")]));
    let r = within("send", events.send(&t)).await;
    assert!(matches!(r, Ok(DeliveryState::Accepted(_))), "{r:?}");
    let p = h.hub.partition_of("dev1");
    assert_eq!(h.hub.events(p).len(), 1);

    // Reading events from the hub is redirected to the Event Hub-compatible endpoint.
    let redirect = within(
        "attach",
        s.receiver("ev", "messages/events/ConsumerGroups/$Default/Partitions/0", 1),
    )
    .await;
    let e = match redirect {
        Ok(rx) => match within("recv", rx.recv()).await {
            Err(Error::LinkDetached(Some(e))) => e,
            other => panic!("{other:?}"),
        },
        Err(Error::LinkDetached(Some(e)) | Error::LinkRefused(Some(e))) => e,
        Err(other) => panic!("{other:?}"),
    };
    assert_eq!(e.condition.as_str(), condition::LINK_REDIRECT);
    let info = e.info.unwrap();
    let address = info.0.iter().find(|(k, _)| k.as_str() == "address").map(|(_, v)| v.clone());
    let want = format!("amqps://localhost:{}/localhost/$management", h.event_hub);
    assert_eq!(address, Some(Value::from(want.as_str())));

    // The Event Hub endpoint: CBS answers 202; a partition read from the start.
    let (eh, e) = connect(&h, &format!("amqps://localhost:{}", h.event_hub)).await;
    let ecbs = within("cbs", CbsClient::attach(&e)).await.unwrap();
    // As azure-eventhub's reader does: the consumer group's audience, in lower case.
    let audience = "sb://localhost/localhost/consumergroups/$default";
    let status = within("put", ecbs.put_token(audience, &service_token(audience), SAS_TOKEN_TYPE))
        .await
        .unwrap();
    assert_eq!(status.code, 202);
    let mut o = LinkOptions::receiver(
        "reader",
        &format!("localhost/ConsumerGroups/$Default/Partitions/{p}"),
    );
    if let Some(AttachSource::Source(src)) = &mut o.source {
        let selector = amqpwire::codec::Described {
            descriptor: Value::Ulong(0x0000_468C_0000_0004, Default::default()),
            value: Value::from("amqp.annotation.x-opt-offset > '-1'"),
        };
        src.filter = Some(Fields(vec![(
            Symbol::from("apache.org:selector-filter:string"),
            Value::Described(Box::new(selector)),
        )]));
    }
    let reader = within("attach", e.attach_receiver(o, 10)).await.unwrap();
    let ev = within("event", reader.recv()).await.unwrap();
    let m = ev.message().unwrap();
    assert_eq!(m.body, t.body);
    assert_eq!(m.application_properties, t.application_properties);
    let a = m.message_annotations.unwrap();
    assert_eq!(a.get("iothub-connection-device-id").and_then(|v| v.as_str()), Some("dev1"));
    assert_eq!(a.get("x-opt-offset").and_then(|v| v.as_str()), Some("0"));
    let _ = Source::default();

    for c in [service, device, eh] {
        within("close", c.close(None)).await.unwrap();
    }
}

#[tokio::test]
async fn no_token_a_bad_token_and_an_unknown_device_are_refused() {
    let h = start(Duration::from_millis(100)).await;
    let (_c, s) = connect(&h, &format!("amqps://localhost:{}", h.amqps)).await;
    // No token: the attach is refused with amqp:unauthorized-access.
    match within("attach", s.sender("c2d", "/messages/devicebound")).await {
        Err(Error::LinkRefused(Some(e)) | Error::LinkDetached(Some(e))) => {
            assert_eq!(e.condition.as_str(), condition::UNAUTHORIZED_ACCESS)
        }
        other => panic!("{other:?}"),
    }
    let cbs = within("cbs", CbsClient::attach(&s)).await.unwrap();
    // Signed with the wrong key.
    let wrong = SasKey::from_base64(DEVICE_KEY).unwrap();
    let bad = SasToken::new("localhost", &wrong, Some("iothubowner"), in_an_hour()).unwrap();
    match within("put", cbs.put_token("localhost", &bad.to_string(), SAS_TOKEN_TYPE)).await {
        Err(CbsError::Refused(s)) => {
            assert_eq!(s.code, 401);
            assert!(s.description.unwrap().contains("signature"));
        }
        other => panic!("{other:?}"),
    }
    // Expired long ago.
    let key = SasKey::from_base64(OWNER_KEY).unwrap();
    let old = SasToken::new("localhost", &key, Some("iothubowner"), 1_000).unwrap();
    match within("put", cbs.put_token("localhost", &old.to_string(), SAS_TOKEN_TYPE)).await {
        Err(CbsError::Refused(s)) => {
            assert!(s.description.as_deref().unwrap_or("").contains("expired"), "{s:?}")
        }
        other => panic!("{other:?}"),
    }
    // A device token does not open the service's nodes.
    within("put", cbs.put_token("localhost%2Fdevices%2Fdev1", &device_token(), SAS_TOKEN_TYPE))
        .await
        .unwrap();
    match within("attach", s.sender("c2d", "/messages/devicebound")).await {
        Err(Error::LinkRefused(Some(e)) | Error::LinkDetached(Some(e))) => {
            assert_eq!(e.condition.as_str(), condition::UNAUTHORIZED_ACCESS)
        }
        other => panic!("{other:?}"),
    }
    // Renewals replace the claim they renew, so putting one token again and again is fine;
    // but a connection holds at most 64 claims for different audiences.
    for _ in 0..80 {
        within(
            "renew",
            cbs.put_token("localhost%2Fdevices%2Fdev1", &device_token(), SAS_TOKEN_TYPE),
        )
        .await
        .unwrap();
    }
    let key = SasKey::from_base64(DEVICE_KEY).unwrap();
    let mut refused = None;
    for i in 0..70 {
        let audience = format!("localhost/devices/dev1/x{i}");
        let token = SasToken::new(&audience, &key, None, in_an_hour()).unwrap().to_string();
        if let Err(e) = within("put", cbs.put_token(&audience, &token, SAS_TOKEN_TYPE)).await {
            refused = Some((i, e.to_string()));
            break;
        }
    }
    let (i, why) = refused.expect("the 65th claim is refused");
    // The device token above holds one place: 63 more fit.
    assert_eq!(i, 63, "{why}");
    assert!(why.contains("403") && why.contains("64 tokens"), "{why}");
    // An unknown device's node is not found.
    match within("attach", s.receiver("x", "/devices/ghost/messages/devicebound", 1)).await {
        Err(Error::LinkRefused(Some(e)) | Error::LinkDetached(Some(e))) => {
            assert_eq!(e.condition.as_str(), condition::NOT_FOUND)
        }
        other => panic!("{other:?}"),
    }
}
