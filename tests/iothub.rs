//! The IoT Hub emulator against amqpwire's own client: CBS put-token, cloud-to-device
//! messages with feedback, telemetry into the event log, the redirect to the Event
//! Hub-compatible endpoint and reading a partition there, and the refusals (no token, a
//! bad token, an unknown device) — over TLS and WebSocket over TLS.

#[path = "support/hub.rs"]
mod hub;
#[path = "support/pki.rs"]
mod pki;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amqpwire::azure::cbs::{CbsClient, CbsError, SAS_TOKEN_TYPE};
use amqpwire::azure::{SasKey, SasToken};
use amqpwire::codec::{Symbol, Value};
use amqpwire::connection::LinkOptions;
use amqpwire::message::{AnnotationMap, Body, Message};
use amqpwire::runtime::transport::Endpoint;
use amqpwire::runtime::{ConnectOptions, Connection, Error, Session};
use amqpwire::types::{condition, AttachSource, DeliveryState, Fields, MessageId, Properties};
use bytes::Bytes;
use hub::{eventually, start, start_with, Hub, DEVICE_KEY, OWNER_KEY};

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
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

/// [`connect`]s as device `dev1`: its token put on `$cbs`.
async fn connect_device(h: &Hub, url: &str) -> (Connection, Session) {
    let (connection, session) = connect(h, url).await;
    let cbs = within("cbs", CbsClient::attach(&session)).await.unwrap();
    within("put", cbs.put_token("localhost%2Fdevices%2Fdev1", &device_token(), SAS_TOKEN_TYPE))
        .await
        .unwrap();
    (connection, session)
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
    let (device, d) =
        connect_device(&h, &format!("wss://localhost:{}/$iothub/websocket", h.wss)).await;
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
    // As azure-eventhub's reader does: the consumer group's audience (`consumergroups` in
    // lower case), and the HMAC keyed with the key's text (Event Hubs' way), not with the
    // decoded key.
    let audience = "sb://localhost/localhost/consumergroups/$default";
    let iothub_way = service_token(audience);
    match within("put", ecbs.put_token(audience, &iothub_way, SAS_TOKEN_TYPE)).await {
        Err(CbsError::Refused(s)) => {
            assert_eq!(s.code, 401);
            assert!(s.description.unwrap().contains("keyed with the decoded key"));
        }
        other => panic!("{other:?}"),
    }
    let text_key = SasKey::from_bytes(OWNER_KEY.as_bytes());
    let event_hubs_way =
        SasToken::new(audience, &text_key, Some("iothubowner"), in_an_hour()).unwrap();
    let status =
        within("put", ecbs.put_token(audience, &event_hubs_way.to_string(), SAS_TOKEN_TYPE))
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
    // A consumer group the hub does not have is refused, as Event Hubs refuses it.
    let nosuch =
        LinkOptions::receiver("r2", &format!("localhost/ConsumerGroups/nosuch/Partitions/{p}"));
    let refused = within("attach", e.attach_receiver(nosuch, 10)).await.expect_err("no such group");
    let Error::LinkRefused(Some(why)) = &refused else { panic!("{refused:?}") };
    assert_eq!(why.condition.as_str(), condition::NOT_FOUND, "{refused}");
    assert!(why.description.as_deref().unwrap_or_default().contains("\"nosuch\""), "{refused}");

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
    // A link refused then says the token put was refused, and why (not that none was).
    match within("attach", s.sender("c2d", "/messages/devicebound")).await {
        Err(Error::LinkRefused(Some(e)) | Error::LinkDetached(Some(e))) => {
            let why = e.description.as_deref().unwrap_or("");
            assert!(
                why.contains("the last one put was refused (401") && why.contains("expired"),
                "{why}"
            );
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

// ---- amqpwire's own IoT Hub clients against the emulator ----

use amqpwire::azure::client::{
    DeviceClient, EventHubTarget, EventReader, HubError, HubOptions, HubTransport, ReadOptions,
    Security, ServiceClient,
};
use amqpwire::azure::emulator::{Ack, FeedbackStatus, StartPosition};
use amqpwire::azure::IotHubConnectionString;

fn owner_cs() -> IotHubConnectionString {
    format!("HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}")
        .parse()
        .unwrap()
}

fn device_cs() -> IotHubConnectionString {
    format!("HostName=localhost;DeviceId=dev1;SharedAccessKey={DEVICE_KEY}").parse().unwrap()
}

fn options(h: &Hub, transport: HubTransport, security: Security) -> HubOptions {
    let mut o = HubOptions::new(transport, security);
    o.tls = h.pki.client();
    o.port = Some(match transport {
        HubTransport::Amqps => h.amqps,
        HubTransport::WebSocket => h.wss,
    });
    o.event_hub_ws_port = Some(h.event_hub_wss);
    o.timeout = Duration::from_secs(10);
    o
}

/// The seed scenario with the clients: C2D with full feedback, completed by the device;
/// telemetry; the monitor follows the redirect and reads it.
async fn round_trip(transport: HubTransport, security: Security) {
    let h = start(Duration::from_millis(50)).await;
    let o = options(&h, transport, security);
    let service = within("service", ServiceClient::connect(&owner_cs(), o.clone())).await.unwrap();
    let device = within("device", DeviceClient::connect(&device_cs(), o.clone())).await.unwrap();
    let mut m = Message::with_data(&b"switch on"[..]);
    m.application_properties = Some(AnnotationMap::from_pairs([("room", "kitchen")]));
    let id = within("send-c2d", service.send_c2d("dev1", m, Ack::Full)).await.unwrap();
    let c2d = within("receive", device.receive()).await.unwrap();
    assert_eq!(c2d.message.properties.as_ref().unwrap().message_id, Some(id.clone()));
    assert_eq!(c2d.lock_token().len(), 36, "{}", c2d.lock_token());
    // Read in .NET's byte order, the hub's version 4 GUID shows its version where it should.
    assert_eq!(&c2d.lock_token()[14..15], "4", "{}", c2d.lock_token());
    let room = c2d.message.application_properties.as_ref().unwrap().get("room");
    assert_eq!(room.and_then(|v| v.as_str()), Some("kitchen"));
    device.complete(&c2d).unwrap();
    let feedback = within("attach feedback", service.feedback()).await.unwrap();
    let records = within("feedback", feedback.next()).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let MessageId::Uuid(u) = id else { panic!("{id:?}") };
    assert_eq!(records[0].original_message_id, u.to_string());
    assert_eq!(
        (records[0].device_id.as_str(), records[0].status),
        ("dev1", FeedbackStatus::Success)
    );
    // The device's generation, as the registry shows it, on its feedback and its events.
    let generation = h.hub.generation_id("dev1").expect("dev1 is registered");
    assert_eq!(h.hub.identity_json("dev1").unwrap()["generationId"], generation.as_str());
    assert_eq!(records[0].device_generation_id, generation);

    let mut t = Message::with_data(&b"{\"temp\":21.5}"[..]);
    t.application_properties = Some(AnnotationMap::from_pairs([("alert", "no")]));
    within("send_event", device.send_event(t)).await.unwrap();

    let target = within("redirect", EventHubTarget::discover(&owner_cs(), &o)).await.unwrap();
    assert_eq!((target.hostname.as_str(), target.port), ("localhost", h.event_hub));
    assert_eq!(target.event_hub, "localhost");
    let read = ReadOptions { start: StartPosition::START, ..ReadOptions::default() };
    let mut reader =
        within("reader", EventReader::connect(&owner_cs(), &target, read, &o)).await.unwrap();
    assert_eq!(reader.partitions(), ["0", "1"]);
    let event = within("event", reader.next()).await.unwrap();
    assert_eq!(event.device_id.as_deref(), Some("dev1"));
    assert_eq!(event.partition, h.hub.partition_of("dev1").to_string());
    assert!(event.enqueued_time.is_some());
    assert_eq!(event.body_text().as_deref(), Some("{\"temp\":21.5}"));
    assert_eq!(event.sequence_number, Some(0));
    let stamped = event.message.message_annotations.as_ref().and_then(|a| {
        a.get("iothub-connection-auth-generation-id").and_then(|v| v.as_str().map(str::to_owned))
    });
    assert_eq!(stamped, Some(generation));

    within("close", reader.close()).await.unwrap();
    within("close", device.close()).await.unwrap();
    within("close", service.close()).await.unwrap();
}

#[tokio::test]
async fn clients_over_tls_with_no_sasl_and_cbs() {
    round_trip(HubTransport::Amqps, Security::None).await;
}

#[tokio::test]
async fn clients_over_tls_with_anonymous_and_cbs() {
    round_trip(HubTransport::Amqps, Security::Anonymous).await;
}

#[tokio::test]
async fn clients_over_tls_with_mssbcbs_and_cbs() {
    round_trip(HubTransport::Amqps, Security::Mssbcbs).await;
}

#[tokio::test]
async fn clients_over_tls_with_plain() {
    round_trip(HubTransport::Amqps, Security::Plain).await;
}

#[tokio::test]
async fn clients_over_websocket_with_no_sasl_and_cbs() {
    round_trip(HubTransport::WebSocket, Security::None).await;
}

#[tokio::test]
async fn clients_over_websocket_with_anonymous_and_cbs() {
    round_trip(HubTransport::WebSocket, Security::Anonymous).await;
}

#[tokio::test]
async fn clients_over_websocket_with_mssbcbs_and_cbs() {
    round_trip(HubTransport::WebSocket, Security::Mssbcbs).await;
}

#[tokio::test]
async fn clients_over_websocket_with_plain() {
    round_trip(HubTransport::WebSocket, Security::Plain).await;
}

/// The description of an `amqp:unauthorized-access` that ended a link.
fn unauthorized(e: &HubError) -> Option<String> {
    match e {
        HubError::Amqp(Error::LinkDetached(Some(a)) | Error::LinkRefused(Some(a)))
            if a.condition.as_str() == condition::UNAUTHORIZED_ACCESS =>
        {
            Some(a.description.as_deref().unwrap_or_default().to_owned())
        }
        _ => None,
    }
}

#[tokio::test]
async fn cbs_renewal_keeps_links_alive_past_the_first_tokens_expiry() {
    let h = start_with(|c| c.clock_skew = Duration::ZERO).await;
    let mut renewing = options(&h, HubTransport::WebSocket, Security::None);
    // A first token of 9 to 10 s (expiries are whole seconds), renewed after a quarter of
    // it: the renewal has seconds to cross before the first token runs out, and the
    // connects and first sends as long.
    renewing.token_lifetime = Duration::from_secs(10);
    renewing.renew_at = Some(0.25);
    let mut lapsing = renewing.clone();
    lapsing.renew_at = None;
    let a = within("device", DeviceClient::connect(&device_cs(), renewing)).await.unwrap();
    let b = within("device", DeviceClient::connect(&device_cs(), lapsing)).await.unwrap();
    within("send", a.send_event(Message::with_data(&b"a1"[..]))).await.unwrap();
    within("send", b.send_event(Message::with_data(&b"b1"[..]))).await.unwrap();
    // Past the first tokens' expiry (at most 10 s away).
    tokio::time::sleep(Duration::from_millis(11_200)).await;
    within("send", a.send_event(Message::with_data(&b"a2"[..]))).await.unwrap();
    assert!(a.hub().renewals() >= 1, "renewals: {}", a.hub().renewals());
    assert_eq!(a.hub().renewal_error(), None);
    // Without renewal the hub detached the telemetry link: "Token Invalid.".
    let e = within("send", b.send_event(Message::with_data(&b"b2"[..]))).await.unwrap_err();
    assert_eq!(unauthorized(&e).as_deref(), Some("Token Invalid."), "{e}");
    assert_eq!(b.hub().renewals(), 0);
}

#[tokio::test]
async fn a_plain_connection_ends_when_its_token_expires() {
    let h = start_with(|c| c.clock_skew = Duration::ZERO).await;
    let mut o = options(&h, HubTransport::Amqps, Security::Plain);
    // 7 to 8 s: time enough for one send before the hub ends the connection, on a
    // loaded machine too.
    o.token_lifetime = Duration::from_secs(8);
    let device = within("device", DeviceClient::connect(&device_cs(), o)).await.unwrap();
    within("send", device.send_event(Message::with_data(&b"x"[..]))).await.unwrap();
    let closed = within("expiry", device.hub().connection().closed()).await;
    let e = closed.unwrap_err();
    assert!(e.to_string().contains("Token Invalid."), "{e}");

    // A PLAIN user that does not match the token is refused at SASL.
    let cs: IotHubConnectionString =
        format!("HostName=localhost;DeviceId=ghost;SharedAccessKey={DEVICE_KEY}").parse().unwrap();
    let o = options(&h, HubTransport::Amqps, Security::Plain);
    let e = within("device", DeviceClient::connect(&cs, o)).await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("auth"), "{e}");
}

#[tokio::test]
async fn c2d_locks_time_out_and_ttls_expire() {
    // Only time passing matters here (a TTL running out, a lock expiring), never how fast
    // the test runs: with a lock of 400 ms the redelivery comes sooner or later.
    let h = start_with(|c| {
        c.feedback_interval = Duration::from_millis(50);
        c.lock_timeout = Duration::from_millis(400);
    })
    .await;
    let o = options(&h, HubTransport::Amqps, Security::None);
    let service = within("service", ServiceClient::connect(&owner_cs(), o.clone())).await.unwrap();

    // A message whose time to live has run out by the time the device asks.
    let mut short = Message::with_data(&b"too late"[..]);
    let soon = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 + 200;
    short.properties = Some(Properties {
        absolute_expiry_time: Some(amqpwire::codec::Timestamp(soon)),
        ..Properties::default()
    });
    let expired_id = within("send", service.send_c2d("dev1", short, Ack::Negative)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let locked_id =
        within("send", service.send_c2d("dev1", Message::with_data(&b"b"[..]), Ack::Negative))
            .await
            .unwrap();

    let device = within("device", DeviceClient::connect(&device_cs(), o.clone())).await.unwrap();
    // The expired one is skipped: the first the device sees is the second.
    let first = within("receive", device.receive()).await.unwrap();
    assert_eq!(first.message.properties.as_ref().unwrap().message_id, Some(locked_id.clone()));
    // Not settled within the lock time-out: delivered again, with a new lock token.
    let again = within("redelivery", device.receive()).await.unwrap();
    assert_eq!(again.message.properties.as_ref().unwrap().message_id, Some(locked_id.clone()));
    assert_ne!(again.lock_token(), first.lock_token());

    let feedback = within("feedback", service.feedback()).await.unwrap();
    let records = within("records", feedback.next()).await.unwrap();
    let seen: Vec<_> = records.into_iter().map(|r| (r.original_message_id, r.status)).collect();
    let MessageId::Uuid(expired) = &expired_id else { panic!("{expired_id:?}") };
    assert_eq!(seen, vec![(expired.to_string(), FeedbackStatus::Expired)]);
}

#[tokio::test]
async fn abandons_are_counted_up_to_the_max_delivery_count() {
    // The default lock (a minute) cannot run out while the device abandons: every
    // delivery counted here is one the device abandoned.
    let h = start_with(|c| {
        c.feedback_interval = Duration::from_millis(50);
        c.max_delivery_count = 2;
    })
    .await;
    let o = options(&h, HubTransport::Amqps, Security::None);
    let service = within("service", ServiceClient::connect(&owner_cs(), o.clone())).await.unwrap();
    let id = within("send", service.send_c2d("dev1", Message::with_data(&b"b"[..]), Ack::Full))
        .await
        .unwrap();
    let device = within("device", DeviceClient::connect(&device_cs(), o.clone())).await.unwrap();
    let first = within("receive", device.receive()).await.unwrap();
    assert_eq!(first.message.header, None, "a first delivery has no prior attempts");
    device.abandon(&first).unwrap();
    let second = within("after abandon", device.receive()).await.unwrap();
    assert_eq!(second.message.properties.as_ref().unwrap().message_id, Some(id.clone()));
    // The header counts the abandoned delivery (3.2.1: prior unsuccessful attempts).
    assert_eq!(second.message.header.as_ref().map(|h| h.delivery_count), Some(1));
    // Abandoned twice: past max_delivery_count, so it is dropped with feedback.
    device.abandon(&second).unwrap();
    let feedback = within("feedback", service.feedback()).await.unwrap();
    let records = within("records", feedback.next()).await.unwrap();
    let seen: Vec<_> = records.into_iter().map(|r| (r.original_message_id, r.status)).collect();
    let MessageId::Uuid(uuid) = &id else { panic!("{id:?}") };
    assert_eq!(seen, vec![(uuid.to_string(), FeedbackStatus::DeliveryCountExceeded)]);
    assert_eq!(h.hub.queued("dev1"), 0);
}

#[tokio::test]
async fn clients_refuse_the_wrong_kind_of_connection_string() {
    let h = start(Duration::from_millis(50)).await;
    let o = options(&h, HubTransport::Amqps, Security::None);
    let e = ServiceClient::connect(&device_cs(), o.clone()).await.unwrap_err();
    assert!(e.to_string().contains("device connection string"), "{e}");
    let e = DeviceClient::connect(&owner_cs(), o.clone()).await.unwrap_err();
    assert!(e.to_string().contains("service connection string"), "{e}");
    let e = EventHubTarget::discover(&device_cs(), &o).await.unwrap_err();
    assert!(e.to_string().contains("service policy"), "{e}");
    // A wrong key: the put-token is refused, and the client says so.
    let cs: IotHubConnectionString =
        format!("HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey={DEVICE_KEY}")
            .parse()
            .unwrap();
    let e = ServiceClient::connect(&cs, o).await.unwrap_err();
    assert!(matches!(e, HubError::Cbs(CbsError::Refused(_))), "{e}");
    assert!(e.to_string().contains("401"), "{e}");
}

// ---- the HTTPS device endpoint ----

/// The emulator's HTTPS endpoint on a free port.
async fn start_https(h: &Hub) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hub = h.hub.clone();
    let tls = h.pki.server();
    tokio::spawn(async move { hub.serve_https(l, tls).await });
    port
}

/// Sends raw requests on one TLS connection; returns each response's status and body.
async fn https(h: &Hub, port: u16, requests: &[Vec<u8>]) -> Vec<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = h.pki.client().rustls_config().unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut io = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for r in requests {
        io.write_all(r).await.unwrap();
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    let status = head[9..12].parse().unwrap();
                    let body =
                        String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                    buf.drain(..end + 4 + length);
                    out.push((status, body));
                    break;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = within("response", io.read(&mut chunk)).await.unwrap();
            assert!(n > 0, "the server closed after {out:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    out
}

fn post(device: &str, token: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /devices/{device}/messages/events?api-version=2021-04-12 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {token}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn a_rest_device_posts_telemetry_that_the_amqp_monitor_reads() {
    let h = start(Duration::from_millis(50)).await;
    let port = start_https(&h).await;
    let token = device_token();
    // One message with properties, then a batch of two, on one kept-alive connection.
    let batch = br#"[{"body":"YQ==","properties":{"iothub-app-n":"1"}},{"body":"Yg=="}]"#;
    let answers = https(
        &h,
        port,
        &[
            post(
                "dev1",
                &token,
                &[("iothub-app-alert", "no"), ("IoTHub-MessageId", "rest-1")],
                b"{\"temp\":20}",
            ),
            post(
                "dev1",
                &token,
                &[("Content-Type", "application/vnd.microsoft.iothub.json")],
                batch,
            ),
        ],
    )
    .await;
    assert_eq!(answers, [(204, String::new()), (204, String::new())]);
    assert_eq!(h.hub.events(h.hub.partition_of("dev1")).len(), 3);

    // The monitor meets the REST device through the redirect.
    let o = options(&h, HubTransport::Amqps, Security::Mssbcbs);
    let target = within("redirect", EventHubTarget::discover(&owner_cs(), &o)).await.unwrap();
    let read = ReadOptions { start: StartPosition::START, ..ReadOptions::default() };
    let mut reader =
        within("reader", EventReader::connect(&owner_cs(), &target, read, &o)).await.unwrap();
    let first = within("event", reader.next()).await.unwrap();
    assert_eq!(first.device_id.as_deref(), Some("dev1"));
    assert_eq!(first.body_text().as_deref(), Some("{\"temp\":20}"));
    let p = first.message.properties.as_ref().unwrap();
    assert_eq!(p.message_id, Some(MessageId::String("rest-1".into())));
    let alert = first.message.application_properties.as_ref().and_then(|a| a.get("alert"));
    assert_eq!(alert.and_then(|v| v.as_str()), Some("no"));
    let second = within("event", reader.next()).await.unwrap();
    assert_eq!(second.body_text().as_deref(), Some("a"));
    let third = within("event", reader.next()).await.unwrap();
    assert_eq!(third.body_text().as_deref(), Some("b"));
}

#[tokio::test]
async fn the_rest_endpoint_refuses_what_iot_hub_refuses() {
    let h = start(Duration::from_millis(50)).await;
    let port = start_https(&h).await;
    let token = device_token();
    let status = |r: Vec<u8>| {
        let h = &h;
        async move { https(h, port, &[r]).await.remove(0) }
    };
    // A bad signature, another device's token, no token.
    let bad = token.replace("sig=", "sig=A");
    let (code, body) = status(post("dev1", &bad, &[], b"x")).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("signature") || body.contains("token"), "{body}");
    // Another device's token says nothing about who is registered: 401. A policy that
    // may act for any device learns that dev2 does not exist: 404.
    let (code, _) = status(post("dev2", &token, &[], b"x")).await;
    assert_eq!(code, 401, "another device's token");
    let (code, body) = status(post("dev2", &service_token("localhost"), &[], b"x")).await;
    assert_eq!(code, 404, "an unknown device: {body}");
    let no_auth = b"POST /devices/dev1/messages/events?api-version=2021-04-12 HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec();
    assert_eq!(status(no_auth).await.0, 401);
    // Too large: 413 before the body is read.
    let big = format!(
        "POST /devices/dev1/messages/events?api-version=2021-04-12 HTTP/1.1\r\nAuthorization: {token}\r\nContent-Length: 300000\r\n\r\n"
    );
    assert_eq!(status(big.into_bytes()).await.0, 413);
    // No api-version, another method, another path, a bad batch.
    let no_version =
        format!("POST /devices/dev1/messages/events HTTP/1.1\r\nAuthorization: {token}\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status(no_version.into_bytes()).await.0, 400);
    let get = format!("GET /devices/dev1/messages/events?api-version=1 HTTP/1.1\r\nAuthorization: {token}\r\n\r\n");
    assert_eq!(status(get.into_bytes()).await.0, 405);
    assert_eq!(status(b"GET /nowhere HTTP/1.1\r\n\r\n".to_vec()).await.0, 404);
    let (code, body) = status(post(
        "dev1",
        &token,
        &[("Content-Type", "application/vnd.microsoft.iothub.json")],
        b"[{\"body\":\"%%\"}]",
    ))
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("base64"), "{body}");
    // A chunked body has no Content-Length to refuse it by: it is cut off at the limit.
    let chunked = |chunk: &[u8]| {
        let mut r = format!("POST /devices/dev1/messages/events?api-version=1 HTTP/1.1\r\nAuthorization: {token}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n", chunk.len()).into_bytes();
        r.extend_from_slice(chunk);
        r.extend_from_slice(b"\r\n0\r\n\r\n");
        r
    };
    assert_eq!(status(chunked(&vec![b'x'; 300 * 1024])).await.0, 413);
    // Nothing refused reached the log.
    assert!(h.hub.events(h.hub.partition_of("dev1")).is_empty());
    // Within the limit it is taken.
    assert_eq!(status(chunked(b"chunked")).await, (204, String::new()));
    let log = h.hub.events(h.hub.partition_of("dev1"));
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].message().unwrap().body.text().as_deref(), Some("chunked"));
}

/// The condition of a rejected outcome.
fn rejected(e: &HubError) -> String {
    match e {
        HubError::Refused(DeliveryState::Rejected(r)) => {
            r.error.as_ref().map(|e| e.condition.as_str().to_owned()).unwrap_or_default()
        }
        other => panic!("not a rejection: {other}"),
    }
}

#[tokio::test]
async fn oversized_messages_full_queues_and_bad_acks_are_rejected() {
    let h = start_with(|c| c.c2d_queue_limit = 2).await;
    let o = options(&h, HubTransport::Amqps, Security::Anonymous);
    let service = within("service", ServiceClient::connect(&owner_cs(), o.clone())).await.unwrap();
    let device = within("device", DeviceClient::connect(&device_cs(), o)).await.unwrap();
    // Telemetry above 256 KiB and a cloud-to-device message above 64 KiB.
    let big = Message::with_data(vec![b'x'; 300 * 1024]);
    let e = within("send", device.send_event(big)).await.unwrap_err();
    assert_eq!(rejected(&e), condition::MESSAGE_SIZE_EXCEEDED, "{e}");
    let big = Message::with_data(vec![b'x'; 70 * 1024]);
    let e = within("send", service.send_c2d("dev1", big, Ack::None)).await.unwrap_err();
    assert_eq!(rejected(&e), condition::MESSAGE_SIZE_EXCEEDED, "{e}");
    // An iothub-ack the hub does not know.
    let mut m = Message::with_data(&b"x"[..]);
    m.application_properties = Some(AnnotationMap::from_pairs([("iothub-ack", "sometimes")]));
    let e = within("send", service.send_c2d("dev1", m, Ack::None)).await.unwrap_err();
    assert_eq!(rejected(&e), condition::INVALID_FIELD, "{e}");
    // A module: IoT Hub has no cloud-to-device messages for modules, and says so.
    let m = Message::with_data(&b"x"[..]);
    let e = within("send", service.send_c2d("dev1/m1", m, Ack::None)).await.unwrap_err();
    assert_eq!(rejected(&e), condition::INVALID_FIELD, "{e}");
    assert!(e.to_string().contains("modules do not receive cloud-to-device messages"), "{e}");
    // The queue holds two; the third is refused, and nothing refused was queued.
    for _ in 0..2 {
        within("send", service.send_c2d("dev1", Message::with_data(&b"q"[..]), Ack::None))
            .await
            .unwrap();
    }
    let e = within("send", service.send_c2d("dev1", Message::with_data(&b"q"[..]), Ack::None))
        .await
        .unwrap_err();
    assert_eq!(rejected(&e), condition::RESOURCE_LIMIT_EXCEEDED, "{e}");
    assert_eq!(h.hub.queued("dev1"), 2);
    assert!(h.hub.events(h.hub.partition_of("dev1")).is_empty());
    // The links survive the rejections: a small message still goes through.
    within("send", device.send_event(Message::with_data(&b"ok"[..]))).await.unwrap();
}

// ---- the service REST API and the WebSocket upgrade on port 443 ----

/// A request with a token, an optional `If-Match` and a JSON body.
fn rest(method: &str, path: &str, token: &str, if_match: Option<&str>, body: &str) -> Vec<u8> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut r = format!(
        "{method} {path}{sep}api-version=2021-04-12 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {token}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(m) = if_match {
        r.push_str(&format!("If-Match: {m}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

fn policy_token(name: &str, key: &SasKey) -> String {
    SasToken::new("localhost", key, Some(name), in_an_hour()).unwrap().to_string()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// IoT Hub's error code in an error body (`ErrorCode:{code};…`).
/// A twin section without its `$metadata`.
fn without_metadata(section: &serde_json::Value) -> serde_json::Value {
    let mut s = section.clone();
    if let Some(o) = s.as_object_mut() {
        o.remove("$metadata");
    }
    s
}

fn code(body: &str) -> String {
    let m = json(body)["Message"].as_str().unwrap_or_default().to_owned();
    m.strip_prefix("ErrorCode:").and_then(|r| r.split(';').next()).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_service_rest_api_checks_rights_and_etags_and_replaces_twins() {
    use amqpwire::azure::emulator::Permissions;
    let read_key = SasKey::from_bytes(vec![3; 32]);
    let service_key = SasKey::from_bytes(vec![4; 32]);
    let (rk, sk) = (read_key.clone(), service_key.clone());
    let h = start_with(move |c| {
        c.policies.push(("registryRead".into(), rk, Permissions::of_policy("registryRead")));
        c.policies.push(("service".into(), sk, Permissions::of_policy("service")));
    })
    .await;
    let owner = service_token("localhost");
    let reader = policy_token("registryRead", &read_key);
    let service = policy_token("service", &service_key);
    let ask = |r: Vec<u8>| {
        let h = &h;
        async move { https(h, h.wss, &[r]).await.remove(0) }
    };
    // Rights: RegistryRead reads the registry and writes nothing; ServiceConnect reads
    // twins, not the registry; a device's own token opens no service API.
    let (status, body) = ask(rest("GET", "/devices", &reader, None, "")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)[0]["deviceId"], "dev1");
    let (status, body) = ask(rest("PUT", "/devices/x1", &reader, None, "{}")).await;
    assert_eq!((status, code(&body).as_str()), (401, "IotHubUnauthorizedAccess"), "{body}");
    assert_eq!(ask(rest("GET", "/devices", &service, None, "")).await.0, 401);
    assert_eq!(ask(rest("GET", "/twins/dev1", &service, None, "")).await.0, 200);
    assert_eq!(ask(rest("GET", "/devices", &device_token(), None, "")).await.0, 401);
    assert!(h.hub.identity_json("x1").is_none(), "nothing refused was made");
    // A module, its twin, a twin replaced, and etags.
    let (status, body) = ask(rest("PUT", "/devices/dev1/modules/m1", &owner, None, "{}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["moduleId"], "m1");
    let (status, body) = ask(rest("GET", "/twins/dev1/modules/m1", &owner, None, "")).await;
    assert_eq!((status, json(&body)["moduleId"].as_str()), (200, Some("m1")), "{body}");
    // A new twin as IoT Hub shows one: version 2, etag 1, each section at $version 1
    // with the time it was made.
    let (_, body) = ask(rest("GET", "/twins/dev1", &owner, None, "")).await;
    let fresh = json(&body);
    assert_eq!((&fresh["version"], &fresh["etag"]), (&2.into(), &"AAAAAAAAAAE=".into()));
    for section in ["desired", "reported"] {
        let s = &fresh["properties"][section];
        assert_eq!(s["$version"], 1, "{fresh}");
        let made = s["$metadata"]["$lastUpdated"].as_str().unwrap_or_default();
        assert!(made.ends_with('Z') && made.len() >= 20, "{fresh}");
    }
    // Desired properties' metadata says in which version they last changed.
    assert_eq!(fresh["properties"]["desired"]["$metadata"]["$lastUpdatedVersion"], 1);
    assert!(fresh["properties"]["reported"]["$metadata"].get("$lastUpdatedVersion").is_none());
    let first = r#"{"tags":{"site":"a"},"properties":{"desired":{"x":1,"y":2}}}"#;
    let (status, body) = ask(rest("PUT", "/twins/dev1", &owner, Some("*"), first)).await;
    assert_eq!(status, 200, "{body}");
    let etag = json(&body)["etag"].as_str().unwrap().to_owned();
    // Replaced: y and the tags are gone, the desired version moved on; the hub's own
    // names that a twin read back carries ($version, $metadata, $etag) are not kept.
    let second = r#"{"tags":{"$etag":"x"},"properties":{"desired":{"x":1,"$version":9,"$metadata":{"a.b":{}}}}}"#;
    let (status, body) =
        ask(rest("PUT", "/twins/dev1", &owner, Some(&format!("\"{etag}\"")), second)).await;
    assert_eq!(status, 200, "{body}");
    let twin = json(&body);
    assert_eq!(
        without_metadata(&twin["properties"]["desired"]),
        serde_json::json!({"x": 1, "$version": 3})
    );
    assert_eq!(twin["tags"], serde_json::json!({}));
    // Its $metadata: x as of the first write (version 2), y gone with it.
    let meta = &twin["properties"]["desired"]["$metadata"];
    assert_eq!(meta["x"]["$lastUpdatedVersion"], 2, "{meta}");
    assert!(meta["x"]["$lastUpdated"].is_string() && meta.get("y").is_none(), "{meta}");
    // The old etag is stale now.
    let (status, body) = ask(rest("PATCH", "/twins/dev1", &owner, Some(&etag), second)).await;
    assert_eq!((status, code(&body).as_str()), (412, "PreconditionFailed"), "{body}");
    // Sections past IoT Hub's limits (desired 32 KB, tags 8 KB, counted as IoT Hub
    // counts: names and strings by their characters, numbers 8), names and values that
    // break its rules: each refused, and the twin is left as it was.
    let blobs = |n: usize| {
        let blob = "x".repeat(4000);
        let pairs: Vec<String> = (0..n).map(|i| format!(r#""b{i}":"{blob}""#)).collect();
        format!("{{{}}}", pairs.join(","))
    };
    let refusals = [
        (format!(r#"{{"properties":{{"desired":{}}}}}"#, blobs(9)), "32768"),
        (format!(r#"{{"tags":{}}}"#, blobs(3)), "8192"),
        (format!(r#"{{"tags":{{"s":"{}"}}}}"#, "y".repeat(4097)), "4097 bytes"),
        (r#"{"tags":{"a.b":1}}"#.to_owned(), "'.'"),
        (r#"{"properties":{"desired":{"o":{"in side":1}}}}"#.to_owned(), "(in o)"),
        (r#"{"properties":{"desired":{"o":{"$x":1}}}}"#.to_owned(), "'$'"),
        (r#"{"tags":{"":1}}"#.to_owned(), "0 bytes"),
        (format!(r#"{{"tags":{{"{}":1}}}}"#, "k".repeat(1025)), "1025 bytes"),
        (
            format!(r#"{{"tags":{{"d":{}1{}}}}}"#, r#"{"n":"#.repeat(11), "}".repeat(11)),
            "deeper than 10",
        ),
    ];
    for (patch, says) in &refusals {
        let (status, body) = ask(rest("PATCH", "/twins/dev1", &owner, Some("*"), patch)).await;
        assert_eq!(status, 400, "{patch:.80}: {body}");
        assert!(body.contains(says), "{patch:.80}: {body}");
    }
    // Ten objects deep is the most (IoT Hub's own example: one.two.….ten.property).
    let deepest = format!(r#"{{"tags":{{"d":{}1{}}}}}"#, r#"{"n":"#.repeat(10), "}".repeat(10));
    let (status, body) = ask(rest("PATCH", "/twins/dev1", &owner, Some("*"), &deepest)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        ask(rest("PATCH", "/twins/dev1", &owner, Some("*"), r#"{"tags":{"d":null}}"#)).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = ask(rest("GET", "/twins/dev1", &owner, None, "")).await;
    assert_eq!(json(&body)["tags"], serde_json::json!({}), "nothing of the refused patches");
    let desired = without_metadata(&json(&body)["properties"]["desired"]);
    assert_eq!(desired, serde_json::json!({"x": 1, "$version": 3}));
    let reported = r#"{"properties":{"reported":{"x":1}}}"#;
    assert_eq!(ask(rest("PATCH", "/twins/dev1", &owner, Some("*"), reported)).await.0, 400);
    // Deleting with a wrong etag is refused; with * it goes, and stays gone.
    let (status, _) =
        ask(rest("DELETE", "/devices/dev1/modules/m1", &owner, Some("\"bogus\""), "")).await;
    assert_eq!(status, 412);
    assert_eq!(ask(rest("DELETE", "/devices/dev1/modules/m1", &owner, Some("*"), "")).await.0, 204);
    let (status, body) = ask(rest("GET", "/devices/dev1/modules/m1", &owner, None, "")).await;
    assert_eq!((status, code(&body).as_str()), (404, "ModuleNotFound"), "{body}");
    // Bad requests: an id with a slash, a method call without a name or with a time-out
    // out of range, a twin that is not an object, a verb a resource does not take.
    assert_eq!(ask(rest("PUT", "/devices/a%2Fb", &owner, None, "{}")).await.0, 400);
    let (status, body) = ask(rest("POST", "/twins/dev1/methods", &owner, None, "{}")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("methodName"), "{body}");
    let short = r#"{"methodName":"m","responseTimeoutInSeconds":1}"#;
    assert_eq!(ask(rest("POST", "/twins/dev1/methods", &owner, None, short)).await.0, 400);
    assert_eq!(ask(rest("PATCH", "/twins/dev1", &owner, None, "[1]")).await.0, 400);
    assert_eq!(ask(rest("DELETE", "/twins/dev1", &owner, None, "")).await.0, 405);
    let (status, _) = ask(rest("PUT", "/twins/dev1/methods", &owner, None, "")).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn a_method_the_device_does_not_answer_in_time_is_504() {
    let h = start(Duration::from_millis(50)).await;
    // The device attaches its method link over WebSocket and never answers.
    let (_device, d) =
        connect_device(&h, &format!("wss://localhost:{}/$iothub/websocket", h.wss)).await;
    let rx = within("attach", d.receiver("m-rx", "/devices/dev1/methods/devicebound", 10))
        .await
        .unwrap();
    let call = r#"{"methodName":"slow","payload":{"n":1},"responseTimeoutInSeconds":5}"#;
    let request = rest("POST", "/twins/dev1/methods", &service_token("localhost"), None, call);
    let requests = [request];
    let (answer, asked) = tokio::join!(https(&h, h.wss, &requests), within("request", rx.recv()));
    let (status, body) = &answer[0];
    assert_eq!((*status, code(body).as_str()), (504, "GatewayTimeout"), "{body}");
    let asked = asked.unwrap().message().unwrap();
    let name = asked.application_properties.as_ref().and_then(|a| a.get("IoThub-methodname"));
    assert_eq!(name.and_then(|v| v.as_str().map(str::to_owned)).as_deref(), Some("slow"));
    assert_eq!(asked.body.text().as_deref(), Some(r#"{"n":1}"#));
}

#[tokio::test]
async fn a_throttled_rest_device_gets_429() {
    let h = start_with(|c| {
        c.faults.throttle_after = Some(1);
        c.faults.throttle_for = Duration::from_secs(3600);
    })
    .await;
    let token = device_token();
    let answers =
        https(&h, h.wss, &[post("dev1", &token, &[], b"1"), post("dev1", &token, &[], b"2")]).await;
    assert_eq!(answers[0], (204, String::new()));
    assert_eq!((answers[1].0, code(&answers[1].1).as_str()), (429, "ThrottlingException"));
    assert_eq!(h.hub.events(h.hub.partition_of("dev1")).len(), 1, "the throttled one was dropped");
}

#[tokio::test]
async fn port_443_refuses_what_is_not_a_websocket_upgrade_to_the_hub() {
    let h = start(Duration::from_millis(50)).await;
    let upgrade = |path: &str, protocol: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n").into_bytes()
    };
    let ask = |r: Vec<u8>| {
        let h = &h;
        async move { https(h, h.wss, &[r]).await.remove(0) }
    };
    let (status, body) = ask(upgrade("/$iothub/websocket", "mqtt")).await;
    assert_eq!(status, 400);
    assert!(body.contains("AMQPWSB10"), "{body}");
    assert_eq!(ask(upgrade("/elsewhere", "AMQPWSB10")).await.0, 404);
    let plain = b"GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    assert_eq!(ask(plain).await.0, 400);
}

#[tokio::test]
async fn a_redirect_fault_names_where_to_go_as_part_2_asks() {
    let h = start_with(|c| {
        c.faults.redirect_after = Some(1);
        c.faults.redirect_to = Some(("gateway-2.localhost".into(), 15999));
    })
    .await;
    let (_device, d) = connect_device(&h, &format!("amqps://localhost:{}", h.amqps)).await;
    let tx = within("attach", d.sender("tel", "/devices/dev1/messages/events")).await.unwrap();
    let first = within("send", tx.send(&Message::with_data(&b"one"[..]))).await.unwrap();
    assert!(matches!(first, DeliveryState::Accepted(_)), "{first:?}");
    // The link is detached with the redirect after its first message.
    let e = match within("send", tx.send(&Message::with_data(&b"two"[..]))).await {
        Err(Error::LinkDetached(Some(e))) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.condition.as_str(), condition::LINK_REDIRECT);
    let info = e.info.expect("the redirect's fields");
    let field = |k: &str| info.0.iter().find(|(key, _)| key.as_str() == k).map(|(_, v)| v.clone());
    assert_eq!(field("hostname"), Some(Value::from("gateway-2.localhost")));
    assert_eq!(field("network-host"), Some(Value::from("gateway-2.localhost")));
    assert_eq!(field("port").and_then(|v| v.as_i64()), Some(15999));
    assert_eq!(field("address"), Some(Value::from("/devices/dev1/messages/events")));
    assert_eq!(h.hub.events(h.hub.partition_of("dev1")).len(), 1, "the second was not taken");
}

#[tokio::test]
async fn a_disabled_or_deleted_device_loses_its_links_at_once() {
    let h = start(Duration::from_millis(50)).await;
    let gone = |e: &Error| match e {
        Error::LinkDetached(Some(e)) => e.condition.as_str() == condition::UNAUTHORIZED_ACCESS,
        _ => false,
    };
    // Disabled: the device's cloud-to-device receiver is detached, and a new token is
    // refused.
    let (_device, d) = connect_device(&h, &format!("amqps://localhost:{}", h.amqps)).await;
    let rx = within("attach", d.receiver("c2d", "/devices/dev1/messages/devicebound", 10))
        .await
        .unwrap();
    let off = serde_json::json!({ "deviceId": "dev1", "status": "disabled" });
    h.hub.put_identity("dev1", &off, Some("*")).unwrap();
    let e = within("the detach", rx.recv()).await.unwrap_err();
    assert!(gone(&e), "{e}");
    let cbs = within("cbs", CbsClient::attach(&d)).await.unwrap();
    let token = device_token();
    let again = cbs.put_token("localhost%2Fdevices%2Fdev1", &token, SAS_TOKEN_TYPE);
    assert!(within("put", again).await.is_err(), "a disabled device's token");
    // Enabled again it gets in; deleted, it is out again.
    let on = serde_json::json!({ "deviceId": "dev1", "status": "enabled" });
    h.hub.put_identity("dev1", &on, Some("*")).unwrap();
    let (_device, d) = connect_device(&h, &format!("amqps://localhost:{}", h.amqps)).await;
    let tx = within("attach", d.sender("tel", "/devices/dev1/messages/events")).await.unwrap();
    within("send", tx.send(&Message::with_data(&b"before"[..]))).await.unwrap();
    h.hub.delete_identity("dev1", None).unwrap();
    let e = within("the detach", tx.send(&Message::with_data(&b"after"[..]))).await.unwrap_err();
    assert!(gone(&e), "{e}");
}

/// A device's twin links (requests and replies, paired by the channel correlation id)
/// and its method links (requests in, answers out).
async fn twin_and_method_links(
    d: &Session,
) -> (amqpwire::runtime::Sender, amqpwire::runtime::Receiver, amqpwire::runtime::Receiver) {
    let paired = |name: &str, sender: bool| {
        let address = "/devices/dev1/twin";
        let mut o = if sender {
            LinkOptions::sender(name, address)
        } else {
            LinkOptions::receiver(name, address)
        };
        o.properties = Some(Fields(vec![(
            Symbol::from("com.microsoft:channel-correlation-id"),
            Value::from("twin:1"),
        )]));
        o
    };
    let twin_tx = within("twin", d.attach_sender(paired("twin-tx", true))).await.unwrap();
    let twin_rx = within("twin", d.attach_receiver(paired("twin-rx", false), 10)).await.unwrap();
    let methods = d.receiver("m-rx", "/devices/dev1/methods/devicebound", 10);
    let methods = within("methods", methods).await.unwrap();
    (twin_tx, twin_rx, methods)
}

#[tokio::test]
async fn a_disabled_or_deleted_device_loses_its_twin_and_method_links_too() {
    let h = start(Duration::from_millis(50)).await;
    let lost = |e: Error, why: &str| match e {
        Error::LinkDetached(Some(e)) => {
            assert_eq!(e.condition.as_str(), condition::UNAUTHORIZED_ACCESS);
            let description = e.description.unwrap_or_default();
            assert!(description.contains(why), "{description}");
        }
        other => panic!("not detached by the hub: {other}"),
    };
    let url = format!("amqps://localhost:{}", h.amqps);
    // Disabled: every link of the device is detached, saying why.
    let (_device, d) = connect_device(&h, &url).await;
    let (twin_tx, twin_rx, methods) = twin_and_method_links(&d).await;
    eventually("the method link", || h.hub.method_listeners("dev1") == 1).await.unwrap();
    let off = serde_json::json!({ "deviceId": "dev1", "status": "disabled" });
    h.hub.put_identity("dev1", &off, Some("*")).unwrap();
    lost(within("the twin replies", twin_rx.recv()).await.unwrap_err(), "is disabled");
    lost(within("the method requests", methods.recv()).await.unwrap_err(), "is disabled");
    lost(within("the twin requests", twin_tx.ended()).await, "is disabled");
    // No call reaches a device the hub has let go of.
    eventually("the method link to go", || h.hub.method_listeners("dev1") == 0).await.unwrap();
    let call = h.hub.invoke_method("dev1", "ping", "{}", Duration::from_secs(1)).await;
    assert_eq!(call.map_err(|e| e.status), Err(404));
    // Deleted: the same.
    let on = serde_json::json!({ "deviceId": "dev1", "status": "enabled" });
    h.hub.put_identity("dev1", &on, Some("*")).unwrap();
    let (_device, d) = connect_device(&h, &url).await;
    let (twin_tx, twin_rx, methods) = twin_and_method_links(&d).await;
    h.hub.delete_identity("dev1", None).unwrap();
    lost(within("the twin replies", twin_rx.recv()).await.unwrap_err(), "was deleted");
    lost(within("the method requests", methods.recv()).await.unwrap_err(), "was deleted");
    lost(within("the twin requests", twin_tx.ended()).await, "was deleted");
}

#[tokio::test]
async fn a_device_that_received_counts_as_disconnected_once_its_connection_is_gone() {
    let h = start(Duration::from_millis(50)).await;
    let (device, d) = connect_device(&h, &format!("amqps://localhost:{}", h.amqps)).await;
    // A receiver waits on an empty queue, and the twin and method links are attached.
    let rx = d.receiver("c2d", "/devices/dev1/messages/devicebound", 10);
    let _rx = within("attach", rx).await.unwrap();
    let _links = twin_and_method_links(&d).await;
    assert_eq!(h.hub.connection_state("dev1").0, "Connected");
    within("close", device.close(None)).await.unwrap();
    // The nodes waiting for messages end with their links, and with them the
    // connection's hold on the device.
    eventually("Disconnected", || h.hub.connection_state("dev1").0 == "Disconnected")
        .await
        .unwrap();
}

#[tokio::test]
async fn expired_feedback_comes_while_the_device_stays_away() {
    let h = start_with(|c| c.feedback_interval = Duration::from_millis(50)).await;
    let o = options(&h, HubTransport::Amqps, Security::None);
    let service = within("service", ServiceClient::connect(&owner_cs(), o)).await.unwrap();
    // The feedback reader first, waiting with nothing to expect when the message comes.
    let feedback = within("feedback", service.feedback()).await.unwrap();
    let mut short = Message::with_data(&b"never fetched"[..]);
    let soon = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 + 200;
    short.properties = Some(Properties {
        absolute_expiry_time: Some(amqpwire::codec::Timestamp(soon)),
        ..Properties::default()
    });
    let id = within("send", service.send_c2d("dev1", short, Ack::Full)).await.unwrap();
    // No device ever connects: the feedback reader hears of the expiry all the same.
    let records = within("records", feedback.next()).await.unwrap();
    let seen: Vec<_> = records.into_iter().map(|r| (r.original_message_id, r.status)).collect();
    let MessageId::Uuid(id) = &id else { panic!("{id:?}") };
    assert_eq!(seen, vec![(id.to_string(), FeedbackStatus::Expired)]);
    assert_eq!(h.hub.queued("dev1"), 0, "the expired message left its queue");
}

#[tokio::test]
async fn a_token_within_the_clock_skew_opens_links_as_it_opens_cbs() {
    let h = start(Duration::from_millis(50)).await;
    let (_connection, session) = connect(&h, &format!("amqps://localhost:{}", h.amqps)).await;
    // Expired 200 s ago: within IoT Hub's 5 minutes of clock skew.
    let key = SasKey::from_base64(DEVICE_KEY).unwrap();
    let past = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 200;
    let token = SasToken::new("localhost/devices/dev1", &key, None, past).unwrap().to_string();
    let cbs = within("cbs", CbsClient::attach(&session)).await.unwrap();
    let put = cbs.put_token("localhost%2Fdevices%2Fdev1", &token, SAS_TOKEN_TYPE);
    within("put", put).await.unwrap();
    let tx = session.sender("tel", "/devices/dev1/messages/events");
    let tx = within("attach", tx).await.expect("the token CBS took opens the link");
    within("send", tx.send(&Message::with_data(&b"x"[..]))).await.unwrap();
}

#[tokio::test]
async fn a_device_with_a_policy_s_key_gets_in_over_sasl_plain() {
    let h = start(Duration::from_millis(50)).await;
    // A device's connection string that names a policy with DeviceConnect: its token is
    // the policy's, so the PLAIN user is the policy's (`iothubowner@sas.root.localhost`).
    let cs: IotHubConnectionString = format!(
        "HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY};DeviceId=dev1"
    )
    .parse()
    .unwrap();
    let o = options(&h, HubTransport::Amqps, Security::Plain);
    let device =
        within("device", DeviceClient::connect(&cs, o)).await.expect("PLAIN with a policy");
    within("send", device.send_event(Message::with_data(&b"x"[..]))).await.unwrap();
    let events = h.hub.events(h.hub.partition_of("dev1"));
    assert_eq!(events.iter().filter(|e| e.device_id == "dev1").count(), 1);
}

#[tokio::test]
async fn a_device_registered_for_x509_takes_no_sas_token() {
    let h = start(Duration::from_millis(50)).await;
    let ca_signed = serde_json::json!({ "authentication": { "type": "certificateAuthority" } });
    h.hub.put_identity("xdev", &ca_signed, None).unwrap();
    let (_connection, session) = connect(&h, &format!("amqps://localhost:{}", h.amqps)).await;
    let cbs = within("cbs", CbsClient::attach(&session)).await.unwrap();
    let key = SasKey::from_bytes(vec![7; 32]);
    let token = SasToken::new("localhost/devices/xdev", &key, None, in_an_hour()).unwrap();
    let token = token.to_string();
    let put = cbs.put_token("localhost%2Fdevices%2Fxdev", &token, SAS_TOKEN_TYPE);
    let e = within("put", put).await.expect_err("a token for an X.509 device");
    assert!(e.to_string().contains("X.509 certificate (certificateAuthority)"), "{e}");
}

#[tokio::test]
async fn a_refused_link_says_which_right_or_identity_its_token_lacks() {
    let reader_key = SasKey::from_bytes(vec![9; 32]);
    let k = reader_key.clone();
    let h = start_with(move |c| {
        c.devices.push(("dev2".into(), SasKey::from_bytes(vec![3; 32])));
        let rights = amqpwire::azure::emulator::Permissions::of_policy("registryRead");
        c.policies.push(("registryRead".into(), k, rights));
    })
    .await;
    let refused = |e: Error| match e {
        Error::LinkRefused(Some(e)) => {
            assert_eq!(e.condition.as_str(), condition::UNAUTHORIZED_ACCESS);
            e.description.unwrap_or_default()
        }
        other => panic!("not refused by the hub: {other}"),
    };
    let url = format!("amqps://localhost:{}", h.amqps);
    // A policy without ServiceConnect: its token is good, its right is not.
    let (_c1, s1) = connect(&h, &url).await;
    let cbs = within("cbs", CbsClient::attach(&s1)).await.unwrap();
    let token = SasToken::new("localhost", &reader_key, Some("registryRead"), in_an_hour());
    let token = token.unwrap().to_string();
    within("put", cbs.put_token("localhost", &token, SAS_TOKEN_TYPE)).await.unwrap();
    let e = within("attach", s1.sender("c2d", "/messages/devicebound")).await.unwrap_err();
    let why = refused(e);
    assert!(why.contains("policy \"registryRead\" does not grant ServiceConnect"), "{why}");
    // A device's own token, on another device's path.
    let (_c2, s2) = connect_device(&h, &url).await;
    let e = within("attach", s2.sender("t", "/devices/dev2/messages/events")).await.unwrap_err();
    let why = refused(e);
    assert!(why.contains("the token of \"dev1\" acts for device \"dev1\", not \"dev2\""), "{why}");
}

#[tokio::test]
async fn a_device_s_queue_is_purged_with_feedback_and_queries_say_they_are_not_emulated() {
    let h = start_with(|c| c.feedback_interval = Duration::from_millis(50)).await;
    let o = options(&h, HubTransport::Amqps, Security::None);
    let service = within("service", ServiceClient::connect(&owner_cs(), o)).await.unwrap();
    let mut ids = Vec::new();
    for body in [&b"one"[..], b"two"] {
        let send = service.send_c2d("dev1", Message::with_data(body), Ack::Full);
        ids.push(within("send", send).await.unwrap());
    }
    assert_eq!(h.hub.queued("dev1"), 2);
    let owner = service_token("localhost");
    let purge = rest("DELETE", "/devices/dev1/commands", &owner, None, "");
    let query =
        rest("POST", "/devices/query", &owner, None, r#"{"query":"SELECT * FROM devices"}"#);
    let answers = https(&h, h.wss, &[purge, query]).await;
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    let purged = json(&answers[0].1);
    assert_eq!((&purged["deviceId"], &purged["totalMessagesPurged"]), (&"dev1".into(), &2.into()));
    assert_eq!(h.hub.queued("dev1"), 0);
    assert_eq!((answers[1].0, code(&answers[1].1).as_str()), (501, "NotImplemented"));
    // Each purged message that asked for feedback gives Purged.
    let feedback = within("feedback", service.feedback()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let records = within("records", feedback.next()).await.unwrap();
        seen.extend(records.into_iter().map(|r| (r.original_message_id, r.status)));
    }
    let want: Vec<_> = ids
        .iter()
        .map(|id| match id {
            MessageId::Uuid(u) => (u.to_string(), FeedbackStatus::Purged),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, want);
}
