#![no_main]
//! libFuzzer target; the logic is `amqpwire::fuzzing::value`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| amqpwire::fuzzing::value(data));
