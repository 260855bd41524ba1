//! Datagrams sent to an SRT listener port.
#![no_main]

#[path = "../exercise/srt.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::exercise_srt(data));
