//! Replays the config fuzzer's corpus: any text it ever kept must yield a
//! config or an error, never a panic.

use std::path::Path;

#[test]
fn config_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/config");
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the fuzz corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    assert!(
        !entries.is_empty(),
        "the corpus in {} is empty",
        dir.display()
    );
    for path in entries {
        let data = std::fs::read(&path).expect("read corpus file");
        if let Ok(text) = std::str::from_utf8(&data) {
            let _ = dvr_common::Config::from_yaml_str(text, "fuzz.yaml");
        }
    }
}
