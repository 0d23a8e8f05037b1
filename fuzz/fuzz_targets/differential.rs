#![no_main]
//! libFuzzer target; the logic is `amqpwire::fuzzing::differential`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| amqpwire::fuzzing::differential(data));
