//! Fuzzes the demuxer, the segmenter and the fMP4 writer with arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dvr_media::fuzzing::exercise(data);
});
