//! Replays the fuzzer's corpus: every input it ever kept must still run
//! through the demuxer and segmenter without a panic.

#[test]
fn fuzz_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("segmenter", 10, |data| {
        dvr_media::fuzzing::exercise(data);
        // The same bytes as packets of a looped file.
        dvr_media::fuzzing::exercise_retime(data);
    });
}

/// The `flv` target's checks live in `fuzz/exercise/flv.rs`, shared with
/// the target, so `make test` runs exactly what `make fuzz` runs.
#[path = "../../../fuzz/exercise/flv.rs"]
mod flv;

#[test]
fn flv_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("flv", 4, flv::exercise_flv);
}
