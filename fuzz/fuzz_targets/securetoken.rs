//! Securetoken, both variants: signed tokens verify while valid, rearranged ones never stretch.
#![no_main]

#[path = "../exercise/securetoken.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::exercise_securetoken(data));
