#![no_main]
//! libFuzzer target; the logic is `amqpwire::fuzzing::structured`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| amqpwire::fuzzing::structured(data));
