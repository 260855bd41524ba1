//! HLS playlists as an HLS input reads them from an origin.
#![no_main]

#[path = "../exercise/m3u8.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::exercise_m3u8(data));
