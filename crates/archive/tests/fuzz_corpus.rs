//! Replays the fuzzers' corpora: every chunk index and object key they
//! ever kept must still go through the archive code without a panic.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the fuzz corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    entries.sort();
    assert!(
        !entries.is_empty(),
        "the corpus in {} is empty",
        dir.display()
    );
    for path in entries {
        let data = std::fs::read(&path).expect("read corpus file");
        run(&data);
    }
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
fn the_seed_indexes_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/chunk_index");
    let decoded = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| std::fs::read(e.expect("entry").path()).ok())
        .filter(|data| dvr_archive::ChunkIndex::decode(data).is_ok())
        .count();
    assert!(decoded >= 3, "only {decoded} seed indexes decode");
}
