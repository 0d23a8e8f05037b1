//! The borrowed message view reads what the owned decoder reads, refuses what it refuses,
//! and allocates nothing.

use amqpwire::codec::{DecodeOptions, ErrorKind, ValueRef};
use amqpwire::inspect::{Inspector, Record};
use amqpwire::message::{BodyView, Message, MessageIdRef, MessageView};
use bytes::Bytes;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn reads_the_telemetry_message_field_by_field() {
    let (_, m) = amqpwire::samples::telemetry(100);
    let bytes = m.to_vec();
    let v = MessageView::decode(&bytes).expect("view");
    assert_eq!(v.header, m.header);
    let p = v.properties.expect("properties");
    assert_eq!(p.message_id(), Some(MessageIdRef::String("msg-000042")));
    assert_eq!(p.to(), Some("/devices/sensor-7/messages/events"));
    assert_eq!(p.content_type(), Some("application/json"));
    assert_eq!(p.subject(), None);
    assert_eq!(p.group_sequence(), None);
    let ap = v.application_properties.expect("application-properties");
    assert_eq!(ap.get("sequence").expect("lookup"), Some(ValueRef::Long(42)));
    assert_eq!(ap.get("site").expect("lookup"), Some(ValueRef::String("north-3")));
    assert_eq!(ap.get("missing").expect("lookup"), None);
    let BodyView::Data { first, count } = v.body else { panic!("{:?}", v.body) };
    assert_eq!((first.len(), count), (100, 1));
    let info = allocation_counter::measure(|| {
        let v = MessageView::decode(std::hint::black_box(&bytes)).expect("view");
        std::hint::black_box(v.properties.and_then(|p| p.to()));
    });
    assert_eq!(info.count_total, 0);
}

#[test]
fn agrees_with_the_owned_decoder_on_every_captured_message() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let data = std::fs::read(&path).expect("read");
        let records = Inspector::new(DecodeOptions::STRICT).redact_secrets(false);
        let mut i = records;
        i.push(&data);
        while let Some(r) = i.next_record() {
            let Record::Frame(f) = r else { continue };
            let Some(d) = &f.delivery else { continue };
            let owned = Message::decode(&d.payload).expect("owned decode");
            let view = MessageView::decode(&d.payload).expect("view decode");
            assert_eq!(view.header, owned.header);
            let (op, vp) = (owned.properties.as_ref(), view.properties.as_ref());
            assert_eq!(op.is_some(), vp.is_some());
            if let (Some(op), Some(vp)) = (op, vp) {
                assert_eq!(op.to.as_deref(), vp.to());
                assert_eq!(op.subject.as_deref(), vp.subject());
                assert_eq!(op.reply_to.as_deref(), vp.reply_to());
                assert_eq!(op.group_id.as_deref(), vp.group_id());
                assert_eq!(op.creation_time, vp.creation_time());
                assert_eq!(op.absolute_expiry_time, vp.absolute_expiry_time());
                assert_eq!(op.content_encoding.as_ref().map(|s| s.as_str()), vp.content_encoding());
                assert_eq!(op.group_sequence, vp.group_sequence());
                assert_eq!(op.user_id.as_deref(), vp.user_id());
                assert_eq!(
                    op.message_id.as_ref().map(|m| m.to_string()),
                    vp.message_id().map(id_text)
                );
                assert_eq!(
                    op.correlation_id.as_ref().map(|m| m.to_string()),
                    vp.correlation_id().map(id_text)
                );
            }
            let owned_props = owned.application_properties.as_ref().map(|a| a.to_pairs());
            let view_props = view.application_properties.map(|a| {
                a.iter()
                    .map(|kv| {
                        let (k, v) = kv.expect("entry");
                        (k.to_owned_value().expect("key"), v.to_owned_value().expect("value"))
                    })
                    .collect::<Vec<_>>()
            });
            assert_eq!(owned_props, view_props, "{}", path.display());
            // Indexed lookups find every property the walk finds.
            if let Some(ap) = view.application_properties {
                for kv in ap.iter() {
                    let (k, v) = kv.expect("entry");
                    let ValueRef::String(k) = k else { continue };
                    assert_eq!(view.application_property(k), Some(v), "{k}");
                }
                assert_eq!(view.application_property("no-such-key"), None);
            }
            if let (amqpwire::message::Body::Data(d), BodyView::Data { first, count }) =
                (&owned.body, view.body)
            {
                assert_eq!(&d[0][..], first);
                assert_eq!(d.len(), count as usize);
                let payload = d_payload(&f);
                let all: Vec<&[u8]> = view.data_sections(&payload).collect();
                assert_eq!(all.len(), d.len());
                assert!(all.iter().zip(d.iter()).all(|(a, b)| *a == &b[..]));
            }
            seen += 1;
        }
    }
    assert!(seen >= 40, "only {seen} messages");
}

fn d_payload(f: &amqpwire::inspect::FrameRecord) -> Bytes {
    f.delivery.as_ref().expect("delivery").payload.clone()
}

fn id_text(id: MessageIdRef<'_>) -> String {
    match id {
        MessageIdRef::Ulong(v) => v.to_string(),
        MessageIdRef::Uuid(u) => u.to_string(),
        MessageIdRef::Binary(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        MessageIdRef::String(s) => s.to_owned(),
    }
}

#[test]
fn refuses_what_the_owned_decoder_refuses() {
    for (h, what) in [
        // properties.to as a symbol.
        ("005373c00502 40 a30161", "symbol where to must be a string"),
        // application-properties with a symbol key.
        ("005374c10502a3016141", "symbol key"),
        // application-properties with a list value.
        ("005374c10502a1016145", "list value"),
        // properties after application-properties.
        ("005374c10100 005373 45", "section order"),
        // two amqp-value sections.
        ("00537741 00537741", "a second amqp-value"),
        // a data section that is not binary.
        ("005375a10161", "data holding a string"),
        // properties with 14 fields.
        ("005373c00f0e4040404040404040404040404040", "too many fields"),
        // a string with invalid UTF-8 in the message annotations.
        ("005372c10702a30161a102c328", "bad UTF-8"),
    ] {
        let b = hex(h);
        let owned = Message::decode(&Bytes::from(b.clone()));
        let view = MessageView::decode(&b);
        assert!(owned.is_err(), "owned accepted {what}");
        assert!(view.is_err(), "view accepted {what}");
    }
    let e = MessageView::decode(&hex("005374c10100 005373 45")).expect_err("order");
    assert!(matches!(
        e.kind,
        ErrorKind::SectionOrder { found: "properties", after: "application-properties" }
    ));
}

#[test]
fn both_decoders_refuse_duplicate_and_ill_typed_section_keys() {
    for (h, what) in [
        // application-properties {"a": true, "a": false}.
        ("005374c10902a1016141a1016142", "a repeated application-properties key"),
        // message-annotations {:x: 1, :x: 2}.
        ("005372c10b04a3017852 01a301785202", "a repeated annotation key"),
        // message-annotations keyed by a string.
        ("005372c10502a1017841", "a string annotation key"),
    ] {
        let b = hex(h);
        assert!(Message::decode(&Bytes::from(b.clone())).is_err(), "owned accepted {what}");
        assert!(MessageView::decode(&b).is_err(), "view accepted {what}");
    }
    // Annotation keys may be ulongs.
    assert!(MessageView::decode(&hex("005372c10402530741")).is_ok());
}
