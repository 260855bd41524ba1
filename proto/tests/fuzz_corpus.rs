//! Replays the proto fuzzer's corpus: every body it ever kept must still
//! decode (or be refused) as each message type, and re-encode to itself
//! (`fuzz/exercise/proto.rs`, shared with the target).

#[path = "../../fuzz/exercise/proto.rs"]
mod proto;

#[test]
fn proto_corpus_replays_cleanly() {
    dvr_common::fuzz_corpus::replay("proto", 5, proto::exercise_proto);
}
