//! Replays the `m3u8` and `srt` fuzzers' corpora: every playlist and every
//! run of datagrams they ever kept must still be handled with the
//! properties the targets check. The checks live in `fuzz/exercise/`,
//! shared with the targets, so `make test` runs exactly what `make fuzz` runs.

#[path = "../../../fuzz/exercise/m3u8.rs"]
mod m3u8;

#[test]
fn m3u8_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("m3u8", 8, m3u8::exercise_m3u8);
}

#[path = "../../../fuzz/exercise/srt.rs"]
mod srt;

#[test]
fn srt_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("srt", 4, srt::exercise_srt);
}
