//! Locks: ranges of tape that retention must not delete.
//!
//! A lock is the seeds' DVR lock (`{"stream":"ort","from":1483971680,
//! "duration":1000}`, seconds): a catch-up recording a viewer saved, a
//! programme kept for legal reasons. In memory it is milliseconds; on the
//! wire and in `{stream}/locks.json` it is the seeds' seconds, so the JSON
//! that `recording_status.json?request=locks` returns is the same shape.
//! Converting to seconds widens a lock outward (start rounded down, end up)
//! so it never protects less than asked.

use dvr_common::{StreamName, UtcMs};
use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;

/// A protected range, `[from, from + duration_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "LockJson", into = "LockJson")]
pub struct Lock {
    /// Start of the protected range.
    pub from: UtcMs,
    /// Length in milliseconds, positive.
    pub duration_ms: i64,
}

/// The seeds' lock JSON: UTC seconds and a duration in seconds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct LockJson {
    from: i64,
    duration: i64,
}

impl TryFrom<LockJson> for Lock {
    type Error = String;
    fn try_from(j: LockJson) -> Result<Lock, String> {
        if j.duration <= 0 {
            return Err(format!(
                "lock duration must be positive, got {}",
                j.duration
            ));
        }
        let from = j.from.checked_mul(1000).ok_or("lock start out of range")?;
        let duration_ms = j
            .duration
            .checked_mul(1000)
            .ok_or("lock duration out of range")?;
        Ok(Lock {
            from: UtcMs(from),
            duration_ms,
        })
    }
}

impl From<Lock> for LockJson {
    fn from(l: Lock) -> LockJson {
        let from = l.from.as_secs();
        let end_secs = l.end().0.saturating_add(999).div_euclid(1000);
        LockJson {
            from,
            duration: (end_secs - from).max(1),
        }
    }
}

impl Lock {
    /// A lock from `from` for `duration_ms`; `None` unless the duration is positive.
    pub fn new(from: UtcMs, duration_ms: i64) -> Option<Lock> {
        (duration_ms > 0).then_some(Lock { from, duration_ms })
    }

    /// End of the protected range (exclusive).
    pub fn end(&self) -> UtcMs {
        self.from.saturating_add_ms(self.duration_ms)
    }

    /// Whether the lock protects any time of `[from, to)`.
    pub fn overlaps(&self, from: UtcMs, to: UtcMs) -> bool {
        self.from < to && self.end() > from
    }
}

/// Whether any of `locks` protects any time of `[from, to)`.
pub fn any_overlaps(locks: &[Lock], from: UtcMs, to: UtcMs) -> bool {
    locks.iter().any(|l| l.overlaps(from, to))
}

/// The content of `{stream}/locks.json`: `{"locks":[{"from":…,"duration":…}]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocksFile {
    /// The locks, sorted by start, without duplicates.
    pub locks: Vec<Lock>,
}

impl LocksFile {
    /// Parses `locks.json`; errors name the stream.
    pub fn from_json(stream: &StreamName, bytes: &[u8]) -> Result<LocksFile, ArchiveError> {
        let mut file: LocksFile =
            serde_json::from_slice(bytes).map_err(|e| ArchiveError::Locks {
                stream: stream.to_string(),
                reason: e.to_string(),
            })?;
        file.normalize();
        Ok(file)
    }

    /// The JSON to store.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain integers: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Adds a lock (the seeds' `dvr/lock`); adding the same lock twice is a no-op.
    pub fn lock(&mut self, lock: Lock) {
        self.locks.push(lock);
        self.normalize();
    }

    /// Removes a lock equal to `lock` (the seeds' `dvr/unlock` names the
    /// lock by its from and duration); returns whether one was removed.
    pub fn unlock(&mut self, lock: Lock) -> bool {
        let before = self.locks.len();
        self.locks.retain(|l| *l != lock);
        self.locks.len() != before
    }

    /// The locks that protect any time of `[from, to)`.
    pub fn overlapping(&self, from: UtcMs, to: UtcMs) -> impl Iterator<Item = &Lock> {
        self.locks.iter().filter(move |l| l.overlaps(from, to))
    }

    fn normalize(&mut self) {
        self.locks.sort();
        self.locks.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_the_seeds_shape_in_seconds() {
        let lock = Lock::new(UtcMs::from_secs(1_483_971_680), 1_000_000).unwrap();
        let json = serde_json::to_string(&lock).unwrap();
        assert_eq!(json, r#"{"from":1483971680,"duration":1000}"#);
        assert_eq!(serde_json::from_str::<Lock>(&json).unwrap(), lock);
        // Sub-second locks widen outward.
        let odd = Lock::new(UtcMs(1_500), 1_000).unwrap();
        assert_eq!(
            serde_json::to_string(&odd).unwrap(),
            r#"{"from":1,"duration":2}"#
        );
        assert!(serde_json::from_str::<Lock>(r#"{"from":1,"duration":0}"#).is_err());
    }

    #[test]
    fn locks_file_round_trip_and_edits() {
        let s: StreamName = "ort".parse().unwrap();
        let mut f = LocksFile::default();
        let a = Lock::new(UtcMs(10_000), 5_000).unwrap();
        let b = Lock::new(UtcMs(1_000), 2_000).unwrap();
        f.lock(a);
        f.lock(b);
        f.lock(a);
        assert_eq!(f.locks, vec![b, a]);
        let back = LocksFile::from_json(&s, &f.to_json()).unwrap();
        assert_eq!(back, f);
        assert_eq!(
            String::from_utf8(f.to_json()).unwrap(),
            r#"{"locks":[{"from":1,"duration":2},{"from":10,"duration":5}]}"#
        );
        assert_eq!(f.overlapping(UtcMs(2_999), UtcMs(10_001)).count(), 2);
        assert_eq!(f.overlapping(UtcMs(3_000), UtcMs(10_000)).count(), 0);
        assert!(f.unlock(b));
        assert!(!f.unlock(b));
        let e = LocksFile::from_json(&s, b"{").unwrap_err();
        assert!(
            e.to_string().starts_with(r#"locks.json of stream "ort": "#),
            "{e}"
        );
    }

    #[test]
    fn overlap_is_half_open() {
        let l = Lock::new(UtcMs(100), 50).unwrap();
        assert!(l.overlaps(UtcMs(149), UtcMs(200)));
        assert!(!l.overlaps(UtcMs(150), UtcMs(200)));
        assert!(!l.overlaps(UtcMs(0), UtcMs(100)));
        assert!(any_overlaps(&[l], UtcMs(0), UtcMs(101)));
        assert!(Lock::new(UtcMs(0), 0).is_none());
    }
}
