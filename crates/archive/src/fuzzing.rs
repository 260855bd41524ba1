//! What the fuzz targets run, shared with the corpus replay test so an
//! input that once crashed stays fixed under `cargo test`.
//!
//! Chunk indexes and object keys come from storage, which other processes
//! (and operators) write; neither may panic the packager, and whatever
//! decodes must re-encode to the same value.

use dvr_common::UtcMs;

use crate::catalog::ChunkEntry;
use crate::index::ChunkIndex;
use crate::key::ChunkKey;
use crate::plan::{plan_range, ChunkRecords};

/// Decodes `data` as a chunk index; on success checks the round trip and
/// runs the catalog and the planner over it.
pub fn exercise_index(data: &[u8]) {
    let Ok(index) = ChunkIndex::decode(data) else {
        return;
    };
    assert_eq!(ChunkIndex::decode(&index.encode()).as_ref(), Ok(&index));
    let Some(first) = index.records.first() else {
        return;
    };
    let Ok(stream) = "fuzz".parse() else {
        return;
    };
    let key = ChunkKey::new(stream, first.utc_start, first.seq);
    let _ = ChunkEntry::from_index(key.clone(), &index, Some(index.chunk_length()));
    let chunks = [ChunkRecords {
        key: &key,
        records: &index.records,
    }];
    let _ = plan_range(
        &chunks,
        first.utc_start,
        UtcMs(first.utc_start.0 + 3_600_000),
    );
}

/// Parses `data` as an object key; on success checks that the key it
/// names is written back the same way.
pub fn exercise_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((key, kind)) = ChunkKey::parse(text) {
        assert_eq!(key.object_key(kind), text);
    }
}
