//! Range headers against bodies of any length: served parts lie inside the body.
#![no_main]

#[path = "../exercise/range.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::exercise_range(data));
