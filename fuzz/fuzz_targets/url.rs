//! The packager's playback URL grammar: any path, and every form built from known parts.
#![no_main]

#[path = "../exercise/url.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::exercise_url(data));
