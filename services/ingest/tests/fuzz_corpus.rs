//! Replays the `m3u8` fuzzer's corpus: every playlist it ever kept must
//! still parse (or be refused) with the properties the target checks. The
//! checks live in `fuzz/exercise/m3u8.rs`, shared with the target, so
//! `make test` runs exactly what `make fuzz` runs.

#[path = "../../../fuzz/exercise/m3u8.rs"]
mod m3u8;

#[test]
fn m3u8_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("m3u8", 8, m3u8::exercise_m3u8);
}
