#![no_main]
//! libFuzzer target; the logic is `amqpwire::fuzzing::message`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| amqpwire::fuzzing::message(data));
