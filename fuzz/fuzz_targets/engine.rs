#![no_main]
//! libFuzzer target; the logic is `amqpwire::fuzzing::engine`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| amqpwire::fuzzing::engine(data));
