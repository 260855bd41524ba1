//! FLV tag bodies as an RTMP publisher sends them.
#![no_main]

#[path = "../exercise/flv.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::exercise_flv(data));
