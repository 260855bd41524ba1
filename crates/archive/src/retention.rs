//! Which chunks to delete: by depth, by size, by disk usage; never a locked one.
//!
//! Pure: the caller passes the chunks (oldest first is not required), the
//! locks, `now` from its [`Clock`](dvr_common::Clock) and, for local roots,
//! the disk's used and total bytes; the plan says which whole chunks to
//! delete. The rules apply in order, each on what the previous left:
//!
//! 1. depth: a chunk whose end is older than `now - depth` expires;
//! 2. size: oldest chunks go until the total is at most `max_size`;
//! 3. disk: oldest chunks go until `used - freed` is at most `percent` of
//!    `total`. Pass every chunk sharing the disk (all streams on it), since
//!    the disk does not care whose bytes they are.
//!
//! A chunk overlapping a lock is never deleted; size and disk rules step
//! over it to the next oldest, so a lock can keep a stream over its limit
//! (reported in [`RetentionPlan::kept_for_locks`]).

use std::collections::BTreeSet;

use dvr_common::config::DvrConfig;
use dvr_common::UtcMs;

use crate::catalog::ChunkEntry;
use crate::key::ChunkKey;
use crate::lock::{any_overlaps, Lock};

/// The limits of one stream (or one disk).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep this much tape, in milliseconds.
    pub depth_ms: Option<i64>,
    /// Keep at most this many bytes.
    pub max_size_bytes: Option<u64>,
    /// Keep the disk at most this full (1 to 100).
    pub max_disk_usage_percent: Option<u8>,
}

impl From<&DvrConfig> for RetentionPolicy {
    fn from(d: &DvrConfig) -> RetentionPolicy {
        RetentionPolicy {
            depth_ms: d.depth_ms,
            max_size_bytes: d.max_size_bytes,
            max_disk_usage_percent: d.max_disk_usage_percent,
        }
    }
}

/// The disk the chunks are on, as the caller measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes in use.
    pub used_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
}

/// Why a chunk is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Older than the depth.
    Depth,
    /// Over the size limit.
    Size,
    /// Over the disk-usage limit.
    Disk,
}

/// What retention decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// The chunks to delete, oldest first, with the rule that chose each.
    pub delete: Vec<(ChunkKey, Reason)>,
    /// Chunks a rule would have deleted but a lock protects.
    pub kept_for_locks: Vec<ChunkKey>,
    /// Bytes the deletions free.
    pub freed_bytes: u64,
}

impl RetentionPlan {
    /// Every object key to delete: each chunk's `.idx`, its `.ts`, then its
    /// optional `.smp` (the index first, so a crash in between leaves an
    /// orphan that a rebuild reports, never an index pointing at nothing;
    /// deleting a `.smp` that was never written is harmless).
    pub fn object_keys(&self) -> Vec<String> {
        self.delete
            .iter()
            .flat_map(|(k, _)| [k.idx_key(), k.ts_key(), k.smp_key()])
            .collect()
    }
}

/// Plans retention; see the module doc.
pub fn plan_retention<'a>(
    chunks: impl IntoIterator<Item = &'a ChunkEntry>,
    locks: &[Lock],
    policy: &RetentionPolicy,
    now: UtcMs,
    disk: Option<DiskUsage>,
) -> RetentionPlan {
    let mut order: Vec<&ChunkEntry> = chunks.into_iter().collect();
    order.sort_by_key(|e| (e.utc_start, e.first_seq));
    let mut st = State {
        order: &order,
        locks,
        plan: RetentionPlan::default(),
        gone: BTreeSet::new(),
        kept: BTreeSet::new(),
    };
    if let Some(depth) = policy.depth_ms {
        let cutoff = UtcMs(now.0.saturating_sub(depth));
        for (i, e) in order.iter().enumerate() {
            if e.utc_end < cutoff {
                st.take(i, Reason::Depth);
            }
        }
    }
    if let Some(max) = policy.max_size_bytes {
        let mut total: u64 = order.iter().map(|e| e.bytes).sum::<u64>() - st.plan.freed_bytes;
        for (i, e) in order.iter().enumerate() {
            if total <= max {
                break;
            }
            if st.take(i, Reason::Size) {
                total -= e.bytes;
            }
        }
    }
    if let (Some(pct), Some(disk)) = (policy.max_disk_usage_percent, disk) {
        let limit = u128::from(disk.total_bytes) * u128::from(pct) / 100;
        let mut used = u128::from(disk.used_bytes.saturating_sub(st.plan.freed_bytes));
        for (i, e) in order.iter().enumerate() {
            if used <= limit {
                break;
            }
            if st.take(i, Reason::Disk) {
                used = used.saturating_sub(u128::from(e.bytes));
            }
        }
    }
    let mut plan = st.plan;
    plan.delete.sort_by_key(|(k, _)| (k.hour, k.first_seq));
    plan.kept_for_locks = st.kept.iter().map(|&i| order[i].key.clone()).collect();
    plan
}

struct State<'a> {
    order: &'a [&'a ChunkEntry],
    locks: &'a [Lock],
    plan: RetentionPlan,
    gone: BTreeSet<usize>,
    kept: BTreeSet<usize>,
}

impl State<'_> {
    /// Deletes chunk `i` unless it is already gone or locked; true if deleted.
    fn take(&mut self, i: usize, reason: Reason) -> bool {
        let e = self.order[i];
        if self.gone.contains(&i) {
            return false;
        }
        if any_overlaps(self.locks, e.utc_start, e.utc_end) {
            self.kept.insert(i);
            return false;
        }
        self.gone.insert(i);
        self.plan.freed_bytes += e.bytes;
        self.plan.delete.push((e.key.clone(), reason));
        true
    }
}

#[cfg(test)]
mod tests {
    use dvr_common::{Clock, SimulatedClock, StreamName};

    use super::*;

    const H0: i64 = 1_795_269_600_000;
    const HOUR: i64 = 3_600_000;

    /// Hour-long chunks of 1 GB from H0, `n` of them.
    fn chunks(n: i64) -> Vec<ChunkEntry> {
        let stream: StreamName = "ort".parse().unwrap();
        (0..n)
            .map(|h| {
                let start = UtcMs(H0 + h * HOUR);
                let seq = u64::try_from(h).unwrap() * 1800;
                ChunkEntry {
                    key: ChunkKey::new(stream.clone(), start, seq),
                    first_seq: seq,
                    last_seq: seq + 1799,
                    utc_start: start,
                    utc_end: UtcMs(start.0 + HOUR),
                    bytes: 1 << 30,
                    segments: 1800,
                    breaks: 0,
                    opens_discontinuous: false,
                    gaps: Vec::new(),
                }
            })
            .collect()
    }

    fn hours(plan: &RetentionPlan) -> Vec<i64> {
        plan.delete
            .iter()
            .map(|(k, _)| (k.hour.0 - H0) / HOUR)
            .collect()
    }

    #[test]
    fn depth_expires_whole_chunks_as_time_passes() {
        let c = chunks(48);
        let policy = RetentionPolicy {
            depth_ms: Some(24 * HOUR),
            ..Default::default()
        };
        let clock = SimulatedClock::new(UtcMs(H0 + 48 * HOUR));
        let plan = plan_retention(&c, &[], &policy, clock.now(), None);
        assert_eq!(
            hours(&plan),
            (0..23).collect::<Vec<_>>(),
            "hour 23 ends exactly at the cutoff"
        );
        clock.advance_ms(1);
        assert_eq!(
            plan_retention(&c, &[], &policy, clock.now(), None)
                .delete
                .len(),
            24
        );
        clock.advance_ms(30 * 60_000);
        assert_eq!(
            plan_retention(&c, &[], &policy, clock.now(), None)
                .delete
                .len(),
            24,
            "no partial chunk"
        );
        let plan = plan_retention(&c, &[], &policy, clock.now(), None);
        assert!(plan.delete.iter().all(|(_, r)| *r == Reason::Depth));
        // Three objects a chunk: .idx first, then .ts and the .smp tables.
        assert_eq!(plan.object_keys().len(), 72);
        assert!(plan.object_keys()[0].ends_with(".idx"));
        assert!(plan.object_keys()[1].ends_with(".ts"));
        assert!(plan.object_keys()[2].ends_with(".smp"));
    }

    #[test]
    fn size_deletes_oldest_first_and_steps_over_locks() {
        let c = chunks(10);
        let policy = RetentionPolicy {
            max_size_bytes: Some(7 << 30),
            ..Default::default()
        };
        let now = SimulatedClock::new(UtcMs(H0 + 10 * HOUR)).now();
        assert_eq!(
            hours(&plan_retention(&c, &[], &policy, now, None)),
            [0, 1, 2]
        );
        // A lock on the last minute of hour 1 keeps it; hour 3 goes instead.
        let lock = Lock::new(UtcMs(H0 + 2 * HOUR - 60_000), 60_000).unwrap();
        let plan = plan_retention(&c, &[lock], &policy, now, None);
        assert_eq!(hours(&plan), [0, 2, 3]);
        assert_eq!(plan.kept_for_locks, vec![c[1].key.clone()]);
        assert_eq!(plan.freed_bytes, 3 << 30);
    }

    #[test]
    fn disk_usage_deletes_until_under_the_percentage() {
        let c = chunks(10);
        let policy = RetentionPolicy {
            max_disk_usage_percent: Some(90),
            ..Default::default()
        };
        let now = SimulatedClock::new(UtcMs(H0 + 10 * HOUR)).now();
        // 100 GiB disk, 92.5 GiB used: 3 GiB over 90 % needs 3 chunks.
        let disk = DiskUsage {
            used_bytes: (185 << 30) / 2,
            total_bytes: 100 << 30,
        };
        let plan = plan_retention(&c, &[], &policy, now, Some(disk));
        assert_eq!(hours(&plan), [0, 1, 2]);
        assert!(plan.delete.iter().all(|(_, r)| *r == Reason::Disk));
        // Under the limit, nothing; without numbers, nothing.
        let fine = DiskUsage {
            used_bytes: 50 << 30,
            total_bytes: 100 << 30,
        };
        assert!(plan_retention(&c, &[], &policy, now, Some(fine))
            .delete
            .is_empty());
        assert!(plan_retention(&c, &[], &policy, now, None)
            .delete
            .is_empty());
    }

    #[test]
    fn rules_compose_and_locks_always_win() {
        let c = chunks(10);
        let policy = RetentionPolicy {
            depth_ms: Some(8 * HOUR),
            max_size_bytes: Some(5 << 30),
            max_disk_usage_percent: Some(50),
        };
        let now = UtcMs(H0 + 10 * HOUR);
        let disk = DiskUsage {
            used_bytes: 10 << 30,
            total_bytes: 16 << 30,
        };
        let everything = Lock::new(UtcMs(H0), 10 * HOUR).unwrap();
        let plan = plan_retention(&c, &[everything], &policy, now, Some(disk));
        assert!(plan.delete.is_empty());
        assert_eq!(plan.kept_for_locks.len(), 10);
        let plan = plan_retention(&c, &[], &policy, now, Some(disk));
        // depth: hour 0 (hour 1 ends exactly at the cutoff); size: down to
        // 5 GiB → 1, 2, 3, 4; disk: 10 - 5 = 5 GiB used ≤ 8 GiB, nothing more.
        assert_eq!(hours(&plan), [0, 1, 2, 3, 4]);
        let reasons: Vec<Reason> = plan.delete.iter().map(|(_, r)| *r).collect();
        assert_eq!(
            reasons,
            [
                Reason::Depth,
                Reason::Size,
                Reason::Size,
                Reason::Size,
                Reason::Size
            ]
        );
    }
}
