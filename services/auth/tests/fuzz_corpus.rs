//! Replays the securetoken fuzzer's corpus: every input it ever kept must
//! still sign, verify and refuse its rearrangements as the target checks
//! (`fuzz/exercise/securetoken.rs`, shared with the target).

#[path = "../../../fuzz/exercise/securetoken.rs"]
mod securetoken;

#[test]
fn securetoken_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("securetoken", 5, securetoken::exercise_securetoken);
}
