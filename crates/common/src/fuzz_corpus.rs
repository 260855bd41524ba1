//! The fuzzers' corpora, replayed by ordinary tests, and the repository
//! paths tests read.
//!
//! Every input a fuzz target ever kept (`fuzz/corpus/{target}/`) is run
//! again by `make test` through the same function the target calls, so a
//! crash once found stays fixed. This is the one loop all crates' replay
//! tests share.
//!
//! Paths are found at run time, from the `CARGO_MANIFEST_DIR` cargo sets for
//! the test process, not baked in with `env!`: several clones share one
//! build cache (`CARGO_TARGET_DIR`), and cargo may reuse a test binary
//! another clone compiled, whose baked-in path is gone.

use std::path::PathBuf;

/// A path inside the repository, e.g. `testdata/aac_only.ts`.
pub fn repo_path(relative: &str) -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(&start)
        .to_path_buf();
    root.join(relative)
}

/// The corpus directory of a fuzz target.
pub fn corpus_dir(target: &str) -> PathBuf {
    repo_path("fuzz/corpus").join(target)
}
/// Runs `run` over every input of `target`'s corpus, in name order, and
/// returns how many there were. Panics (failing the test) if the corpus
/// cannot be read or holds fewer than `at_least` inputs.
pub fn replay(target: &str, at_least: usize, mut run: impl FnMut(&[u8])) -> usize {
    let dir = corpus_dir(target);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the fuzz corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    entries.sort();
    assert!(
        entries.len() >= at_least,
        "the corpus in {} has {} inputs, fewer than {at_least}",
        dir.display(),
        entries.len()
    );
    for path in &entries {
        let data = std::fs::read(path)
            .unwrap_or_else(|e| panic!("cannot read corpus input {}: {e}", path.display()));
        run(&data);
    }
    entries.len()
}
