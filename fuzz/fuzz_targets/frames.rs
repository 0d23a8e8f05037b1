#![no_main]
//! libFuzzer target; the logic is `amqpwire::fuzzing::frames`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| amqpwire::fuzzing::frames(data));
