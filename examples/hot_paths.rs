//! Runs one hot path N times, for instruction counting under
//! `valgrind --tool=callgrind` (repeatable on a busy machine, unlike wall time):
//!
//! ```text
//! cargo build --release --example hot_paths
//! valgrind --tool=callgrind target/release/examples/hot_paths decode-view 100 1000
//! valgrind --tool=callgrind target/release/examples/hot_paths decode-view 100 11000
//! ```
//!
//! The difference of the two totals divided by 10,000 is the cost of one iteration.
//! Arguments: the path (`decode`, `decode-view`, `decode-transfer`, `decode-message`,
//! `encode`), the body size in bytes, and the number of iterations.

use std::hint::black_box;

use amqpwire::codec::{DecodeOptions, Reader};
use amqpwire::frame::FrameEncoder;
use amqpwire::message::{Message, Payload};
use amqpwire::samples;
use amqpwire::types::Performative;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map_or("decode", String::as_str);
    let body: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let (t, m) = samples::telemetry(body);
    let frame = samples::telemetry_frame(body);
    let payload = frame.slice(frame.len() - m.encoded_len()..);
    let perf = frame.slice(8..frame.len() - m.encoded_len());
    let enc = FrameEncoder::new(u32::MAX);
    let mut out = Payload::default();
    let mut sink = 0usize;
    for _ in 0..n {
        sink += match path {
            "decode" => samples::decode_owned(black_box(&frame)),
            "decode-view" => samples::decode_view(black_box(&frame)),
            "decode-transfer" => {
                let mut r = Reader::from_bytes(black_box(&perf), DecodeOptions::STRICT);
                usize::from(matches!(Performative::read(&mut r), Ok(Performative::Transfer(_))))
            }
            "decode-message" => Message::decode(black_box(&payload)).map_or(0, |m| m.encoded_len()),
            "encode" => {
                out.clear();
                enc.encode_message(0, black_box(&t), black_box(&m), &mut out).expect("encode");
                out.len()
            }
            other => {
                eprintln!("unknown path {other}");
                std::process::exit(2);
            }
        };
    }
    println!("{sink}");
}
