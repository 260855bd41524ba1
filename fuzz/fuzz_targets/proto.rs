//! Every wire message type decoded from any bytes: versioned, and re-encoding keeps it.
#![no_main]

#[path = "../exercise/proto.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::exercise_proto(data));
