#![no_main]
//! libFuzzer target; the logic is `amqpwire::fuzzing::capture`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| amqpwire::fuzzing::capture(data));
