//! Fuzzes the demuxer and the segmenter with arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dvr_media::fuzzing::exercise(data);
});
