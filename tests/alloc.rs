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

#[test]
fn the_engine_does_not_allocate_per_presettled_message() {
    use amqpwire::connection::{Config, Connection, Event, LinkOptions};
    use std::time::Instant;
    let now = Instant::now();
    let mut client = Connection::client(Config::new("c"));
    let mut server_cfg = Config::new("s");
    server_cfg.session.incoming_window = 100_000;
    let mut server = Connection::server(server_cfg);
    let mut buf = Vec::with_capacity(1 << 20);
    let pump = |client: &mut Connection, server: &mut Connection, buf: &mut Vec<u8>| {
        let mut delivered = 0;
        loop {
            buf.clear();
            client.poll_transmit(buf);
            let a = !buf.is_empty();
            server.handle_input(buf, now);
            buf.clear();
            server.poll_transmit(buf);
            let b = !buf.is_empty();
            client.handle_input(buf, now);
            while let Some(e) = server.poll_event() {
                delivered += usize::from(matches!(e, Event::Delivery { .. }));
            }
            while client.poll_event().is_some() {}
            if !a && !b {
                return delivered;
            }
        }
    };
    let session = client.begin().expect("begin");
    let snd = client.attach(session, LinkOptions::sender("s", "q")).expect("attach");
    // The server's end of the link, from its attach event.
    let mut rcv = None;
    for _ in 0..4 {
        buf.clear();
        client.poll_transmit(&mut buf);
        server.handle_input(&buf, now);
        buf.clear();
        server.poll_transmit(&mut buf);
        client.handle_input(&buf, now);
        while let Some(e) = server.poll_event() {
            if let Event::LinkAttached { link, .. } = e {
                rcv = Some(link);
            }
        }
    }
    let rcv = rcv.expect("the server saw the attach");
    server.flow(rcv, 100_000, false).expect("credit");
    pump(&mut client, &mut server, &mut buf);
    let body = [7u8; 100];
    let batch = |client: &mut Connection, server: &mut Connection, buf: &mut Vec<u8>| {
        for _ in 0..1000 {
            client.send(snd, bytes::Bytes::new(), &body, true).expect("send");
        }
        assert_eq!(pump(client, server, buf), 1000);
    };
    // Warm up the buffers, then count: the only allocations left are the receive
    // buffer's occasional refills (a handful per thousand messages), none per message.
    batch(&mut client, &mut server, &mut buf);
    let info = allocation_counter::measure(|| batch(&mut client, &mut server, &mut buf));
    assert!(info.count_total <= 20, "{} allocations for 1000 messages", info.count_total);
}
