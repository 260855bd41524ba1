//! locks.json from any bytes: normalised, and written back to the same locks.
#![no_main]

#[path = "../exercise/locks_file.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::exercise_locks_file(data));
