#![no_main]
//! libFuzzer target; the logic is `amqpwire::fuzzing::azure`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| amqpwire::fuzzing::azure(data));
