//! The packager's query string: bounded numbers or a one-line 400, and built queries read back.
#![no_main]

#[path = "../exercise/query.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::exercise_query(data));
