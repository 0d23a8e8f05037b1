//! The hot paths allocate nothing: decoding a typical telemetry transfer on both receive
//! paths, and encoding it into a reused buffer.

use amqpwire::frame::FrameEncoder;
use amqpwire::message::Payload;
use amqpwire::samples;

#[test]
fn the_counter_sees_allocations() {
    let info = allocation_counter::measure(|| {
        std::hint::black_box(Vec::<u8>::with_capacity(16));
    });
    assert_eq!(info.count_total, 1);
}

#[test]
fn decoding_a_telemetry_transfer_does_not_allocate() {
    for body in [100, 64 * 1024] {
        let frame = samples::telemetry_frame(body);
        // Both paths really decode it: to (33), three properties, the body.
        assert_eq!(samples::decode_owned(&frame), 33 + 3 + body);
        assert_eq!(samples::decode_view(&frame), 33 + 16 + 1 + 3 + body);
        for path in [samples::decode_owned, samples::decode_view] {
            let info = allocation_counter::measure(|| {
                std::hint::black_box(path(std::hint::black_box(&frame)));
            });
            assert_eq!(info.count_total, 0, "{body}-byte body: {info:?}");
        }
    }
}

#[test]
fn encoding_into_a_reused_buffer_does_not_allocate() {
    let enc = FrameEncoder::new(u32::MAX);
    for body in [100, 64 * 1024] {
        let (t, m) = samples::telemetry(body);
        let mut out = Payload::default();
        enc.encode_message(0, &t, &m, &mut out).expect("warm-up");
        let len = out.len();
        let info = allocation_counter::measure(|| {
            out.clear();
            enc.encode_message(0, &t, &m, &mut out).expect("encode");
        });
        assert_eq!(out.len(), len);
        assert_eq!(info.count_total, 0, "{body}-byte body: {info:?}");
        if body > 1024 {
            // The body is referenced, not copied.
            assert!(out.head.len() < 512);
        }
    }
}
