//! Fuzzes the chunk index decoder, the catalog entry and the range planner.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dvr_archive::fuzzing::exercise_index(data);
});
