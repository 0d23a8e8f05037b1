#![no_main]
//! libFuzzer target; the logic is `amqpwire::fuzzing::inspect`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| amqpwire::fuzzing::inspect(data));
