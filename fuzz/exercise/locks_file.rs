//! `{stream}/locks.json` (`dvr_archive::LocksFile::from_json`) from any
//! bytes: storage and operators write it, retention trusts it.
//!
//! Shared by the `locks_file` fuzz target and the archive crate's corpus
//! replay test. What parses is normalised (sorted, no duplicates, every
//! lock a positive length) and is written back so that reading it again
//! gives the same locks: a lock edit rewrites the whole file, and must not
//! change the locks it did not touch. The one exception is a lock whose
//! end lies past `i64::MAX` milliseconds (some 292 million years from now):
//! its end is clamped there once, and stays put from then on.

use dvr_archive::LocksFile;
use dvr_common::StreamName;

/// Parses `data` as a stream's locks file.
pub fn exercise_locks_file(data: &[u8]) {
    let Ok(stream) = StreamName::new("ort") else {
        return;
    };
    let Ok(file) = LocksFile::from_json(&stream, data) else {
        return;
    };
    assert!(
        file.locks.windows(2).all(|w| w[0] < w[1]),
        "not sorted or duplicated: {file:?}"
    );
    assert!(file.locks.iter().all(|l| l.duration_ms > 0), "{file:?}");
    let written = file.to_json();
    let again = LocksFile::from_json(&stream, &written).unwrap_or_else(|e| {
        panic!(
            "{file:?} written as {} does not read back: {e}",
            String::from_utf8_lossy(&written)
        )
    });
    let clamped = file
        .locks
        .iter()
        .any(|l| l.from.0.checked_add(l.duration_ms).is_none());
    if !clamped {
        assert_eq!(again, file, "{}", String::from_utf8_lossy(&written));
        return;
    }
    // Clamped: every start kept, and stable from the first rewrite on.
    for lock in &file.locks {
        assert!(
            again.locks.iter().any(|l| l.from == lock.from),
            "{lock:?} lost in {again:?}"
        );
    }
    let third = LocksFile::from_json(&stream, &again.to_json()).ok();
    assert_eq!(third.as_ref(), Some(&again));
}
