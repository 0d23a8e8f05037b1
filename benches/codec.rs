#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! Decode and encode of a typical telemetry transfer (`amqpwire::samples::telemetry`): a
//! frame holding a transfer and a message with a header, properties (message-id, to,
//! content-type), three application properties and a data body of 100 bytes or 64 KiB.
//! Figures go in docs/performance.md.

use amqpwire::codec::{DecodeOptions, Reader, Value};
use amqpwire::frame::FrameEncoder;
use amqpwire::message::{Message, Payload};
use amqpwire::samples;
use amqpwire::types::Performative;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    for (name, body) in [("100B", 100usize), ("64KiB", 64 * 1024)] {
        let (t, m) = samples::telemetry(body);
        let frame = samples::telemetry_frame(body);
        let mut g = c.benchmark_group(format!("telemetry_{name}"));
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function("decode", |b| b.iter(|| samples::decode_owned(black_box(&frame))));
        g.bench_function("decode_view", |b| b.iter(|| samples::decode_view(black_box(&frame))));
        let enc = FrameEncoder::new(u32::MAX);
        let mut out = Payload::default();
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                enc.encode_message(0, black_box(&t), black_box(&m), &mut out).expect("encode");
                black_box(out.len())
            })
        });
        let payload = frame.slice(frame.len() - m.encoded_len()..);
        let perf = frame.slice(8..frame.len() - m.encoded_len());
        g.bench_function("decode_transfer_only", |b| {
            b.iter(|| {
                let mut r = Reader::from_bytes(black_box(&perf), DecodeOptions::STRICT);
                matches!(Performative::read(&mut r), Ok(Performative::Transfer(_)))
            })
        });
        g.bench_function("decode_message_only", |b| {
            b.iter(|| Message::decode(black_box(&payload)).expect("m"))
        });
        g.bench_function("decode_lossless_value", |b| {
            b.iter(|| {
                let body = &black_box(&frame)[8..];
                let mut r = Reader::new(body, DecodeOptions::STRICT);
                let mut n = 0;
                while !r.is_empty() {
                    n += Value::read(&mut r).expect("value").encoded_len();
                }
                n
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
