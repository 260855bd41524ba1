//! Replays the fuzzer's corpus: every input it ever kept must still run
//! through the demuxer and segmenter without a panic.

use std::path::Path;

#[test]
fn fuzz_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/segmenter");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the fuzz corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 10,
        "the corpus in {} has only {} inputs",
        dir.display(),
        entries.len()
    );
    for path in entries {
        let data = std::fs::read(&path).expect("read corpus file");
        dvr_media::fuzzing::exercise(&data);
    }
}
