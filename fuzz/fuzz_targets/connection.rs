#![no_main]
//! libFuzzer target; the logic is `amqpwire::fuzzing::connection`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| amqpwire::fuzzing::connection(data));
