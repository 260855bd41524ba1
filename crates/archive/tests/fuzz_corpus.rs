//! Replays the fuzzers' corpora: every chunk index, object key and locks
//! file they ever kept must still go through the archive code without a
//! panic. The locks file checks live in `fuzz/exercise/locks_file.rs`,
//! shared with its target.

#[path = "../../../fuzz/exercise/locks_file.rs"]
mod locks_file;

fn replay(target: &str, run: fn(&[u8])) {
    dvr_common::fuzz_corpus::replay(target, 1, run);
}

#[test]
fn chunk_index_corpus_replays_cleanly() {
    replay("chunk_index", dvr_archive::fuzzing::exercise_index);
}

#[test]
fn archive_key_corpus_replays_cleanly() {
    replay("archive_key", dvr_archive::fuzzing::exercise_key);
}

#[test]
fn locks_file_corpus_replays_cleanly() {
    replay("locks_file", locks_file::exercise_locks_file);
}

#[test]
fn the_seed_indexes_decode() {
    let dir = dvr_common::fuzz_corpus::corpus_dir("chunk_index");
    let decoded = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| std::fs::read(e.expect("entry").path()).ok())
        .filter(|data| dvr_archive::ChunkIndex::decode(data).is_ok())
        .count();
    assert!(decoded >= 3, "only {decoded} seed indexes decode");
}
