//! Fuzzes object-key parsing (listings come from storage).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dvr_archive::fuzzing::exercise_key(data);
});
