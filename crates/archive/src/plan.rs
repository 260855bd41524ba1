//! The tape reader's planning step: which bytes serve a time range.
//!
//! Given the index records of the chunks around a range, the planner lists
//! the segments to serve, in tape order, each with its chunk's key and byte
//! range (one ranged GET), and marks gaps where the tape has nothing. The
//! packager turns a gap into `#EXT-X-DISCONTINUITY` (or stops at it); the
//! MPEG-TS download skips it.
//!
//! A gap is reported where the timeline breaks
//! ([`dvr_media::breaks_timeline`]): the next segment starts more than
//! [`dvr_media::TIMELINE_GAP_TOLERANCE_MS`] after the previous one ends
//! (the gap rule the recorded ranges follow too), or it is flagged
//! `discontinuity` (the timeline restarts even if no time is missing; such
//! a gap may have zero length). A range that starts or ends in nothing
//! gets a leading or trailing gap, so callers can tell "not recorded" from
//! "not yet".

use std::ops::Range;
use std::sync::Arc;

use dvr_common::UtcMs;
use dvr_media::{breaks_timeline, leaves_gap, CodecSummary};

use crate::index::{ChunkIndex, IndexRecord};
use crate::key::ChunkKey;

/// The records of one chunk, as read from its index.
#[derive(Clone, Copy, Debug)]
pub struct ChunkRecords<'a> {
    /// The chunk.
    pub key: &'a ChunkKey,
    /// Its index records.
    pub records: &'a [IndexRecord],
}

/// A segment to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedSegment {
    /// The `.ts` object key of its chunk.
    pub ts_key: String,
    /// Its index record (seq, times, flags, offset, length).
    pub record: IndexRecord,
}

impl PlannedSegment {
    /// Byte range in the chunk object, end exclusive.
    pub fn byte_range(&self) -> Range<u64> {
        self.record.byte_range()
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanItem {
    /// Serve this segment.
    Segment(PlannedSegment),
    /// The tape has nothing in `[from, to)`, or its timeline restarts at
    /// `to` (then `from` may equal `to`).
    Gap {
        /// Start of the hole.
        from: UtcMs,
        /// End of the hole: the next segment's start, or the range end.
        to: UtcMs,
    },
}

/// All segments of `chunks` in tape order (by start, then seq); duplicates
/// of one seq (a chunk listed twice) are kept once.
fn flatten(chunks: &[ChunkRecords<'_>]) -> Vec<PlannedSegment> {
    flatten_where(chunks, |_| true)
}

/// [`flatten`] of the records `keep` accepts: a plan of an hour out of a
/// day of chunks builds (and sorts) an hour of segments, not a day.
fn flatten_where(
    chunks: &[ChunkRecords<'_>],
    keep: impl Fn(&IndexRecord) -> bool + Copy,
) -> Vec<PlannedSegment> {
    let mut all: Vec<PlannedSegment> = chunks
        .iter()
        .flat_map(|c| {
            let ts_key = c.key.ts_key();
            c.records
                .iter()
                .filter(move |r| keep(r))
                .map(move |r| PlannedSegment {
                    ts_key: ts_key.clone(),
                    record: *r,
                })
        })
        .collect();
    all.sort_by_key(|s| (s.record.utc_start, s.record.seq));
    all.dedup_by_key(|s| s.record.seq);
    all
}

/// The index records overlapping `[from, to)`, in tape order, each seq once:
/// what a playlist lists. The same records [`plan_range`] serves, without
/// object keys or gaps (a playlist finds its gaps between the records), so
/// a day's playlist costs no allocation per segment.
pub fn records_in_range(chunks: &[ChunkRecords<'_>], from: UtcMs, to: UtcMs) -> Vec<IndexRecord> {
    if to <= from {
        return Vec::new();
    }
    let mut all: Vec<IndexRecord> = chunks
        .iter()
        .flat_map(|c| c.records.iter())
        .filter(|r| r.utc_end() > from && r.utc_start < to)
        .copied()
        .collect();
    all.sort_by_key(|r| (r.utc_start, r.seq));
    all.dedup_by_key(|r| r.seq);
    all
}

/// Consecutive index records of one chunk, shared with the index cache
/// rather than copied: a day's playlist reads 43,200 records, and copying
/// them (twice) was a good part of its generation time.
#[derive(Clone, Debug)]
pub struct RecordRun {
    index: Arc<ChunkIndex>,
    range: Range<usize>,
}

impl RecordRun {
    /// A run over all of `records` (for records that are in no index).
    pub fn owned(records: Vec<IndexRecord>) -> RecordRun {
        let range = 0..records.len();
        let index = ChunkIndex {
            codecs: CodecSummary::default(),
            records,
        };
        RecordRun {
            index: Arc::new(index),
            range,
        }
    }

    /// The records.
    pub fn records(&self) -> &[IndexRecord] {
        &self.index.records[self.range.clone()]
    }
}

/// [`records_in_range`] as runs of each chunk's own records, without a copy;
/// `chunks` are indexes with how many of their records are readable. `None`
/// when that is not possible: chunks that overlap in time or seq (a repair
/// uploaded a stretch twice) or records out of time order need the sort
/// and deduplication of [`records_in_range`].
pub fn record_runs(
    chunks: &[(Arc<ChunkIndex>, usize)],
    from: UtcMs,
    to: UtcMs,
) -> Option<Vec<RecordRun>> {
    let mut runs: Vec<RecordRun> = Vec::with_capacity(chunks.len());
    if to <= from {
        return Some(runs);
    }
    for (index, readable) in chunks {
        let records = index.records.get(..*readable)?;
        let ordered = records.windows(2).all(|w| {
            w[0].seq < w[1].seq
                && w[0].utc_start <= w[1].utc_start
                && w[0].utc_end() <= w[1].utc_end()
        });
        if !ordered {
            return None;
        }
        // Starts and ends ascend, so the records overlapping the range are
        // one stretch.
        let lo = records.partition_point(|r| r.utc_end() <= from);
        let hi = records.partition_point(|r| r.utc_start < to);
        if lo >= hi {
            continue;
        }
        let run = RecordRun {
            index: Arc::clone(index),
            range: lo..hi,
        };
        if let (Some(last), Some(next)) = (
            runs.last().and_then(|r| r.records().last()),
            run.records().first(),
        ) {
            if (last.utc_start, last.seq) >= (next.utc_start, next.seq) || last.seq >= next.seq {
                return None;
            }
        }
        runs.push(run);
    }
    Some(runs)
}

/// The plan for `[from, to)`: segments overlapping it, the first being the
/// one that contains `from` (or the first after it), with gaps marked.
pub fn plan_range(chunks: &[ChunkRecords<'_>], from: UtcMs, to: UtcMs) -> Vec<PlanItem> {
    let mut out = Vec::new();
    if to <= from {
        return out;
    }
    let mut cursor: Option<UtcMs> = None;
    for seg in flatten_where(chunks, |r| r.utc_end() > from && r.utc_start < to) {
        let r = seg.record;
        if r.utc_end() <= from || r.utc_start >= to {
            continue;
        }
        match cursor {
            None if leaves_gap(from, r.utc_start) => {
                out.push(PlanItem::Gap {
                    from,
                    to: r.utc_start,
                });
            }
            Some(end) if breaks_timeline(end, r.utc_start, r.flags.discontinuity) => {
                out.push(PlanItem::Gap {
                    from: end.min(r.utc_start),
                    to: r.utc_start,
                });
            }
            _ => {}
        }
        cursor = Some(cursor.map_or(r.utc_end(), |c| c.max(r.utc_end())));
        out.push(PlanItem::Segment(seg));
    }
    match cursor {
        None => out.push(PlanItem::Gap { from, to }),
        Some(end) if leaves_gap(end, to) => {
            out.push(PlanItem::Gap { from: end, to });
        }
        Some(_) => {}
    }
    out
}

/// The segment containing `t`, or else the first one starting after it:
/// where `timeshift_abs-T` starts playing.
pub fn segment_at_or_after(chunks: &[ChunkRecords<'_>], t: UtcMs) -> Option<PlannedSegment> {
    flatten(chunks).into_iter().find(|s| s.record.utc_end() > t)
}

/// The last `n` segments, oldest first: the live window, or the tail of a
/// delayed channel when `chunks` stop at its delay.
pub fn last_segments(chunks: &[ChunkRecords<'_>], n: usize) -> Vec<PlannedSegment> {
    let mut all = flatten(chunks);
    let skip = all.len().saturating_sub(n);
    all.drain(..skip);
    all
}

/// The segments that start before `t`, last `n` of them: a delayed
/// channel's window at `now - delay`.
pub fn last_segments_before(
    chunks: &[ChunkRecords<'_>],
    t: UtcMs,
    n: usize,
) -> Vec<PlannedSegment> {
    let mut all = flatten(chunks);
    all.retain(|s| s.record.utc_start < t);
    let skip = all.len().saturating_sub(n);
    all.drain(..skip);
    all
}

#[cfg(test)]
mod tests {
    use dvr_common::{StreamName, Ticks};
    use dvr_media::SegmentFlags;
    use proptest::prelude::*;

    use super::*;

    const H0: i64 = 1_795_269_600_000;

    fn key(first_seq: u64, start: i64) -> ChunkKey {
        ChunkKey::new(
            "ort".parse::<StreamName>().unwrap(),
            UtcMs(start),
            first_seq,
        )
    }

    /// 2 s segments of 1000 bytes; `starts` are ms after H0.
    fn records(first_seq: u64, starts: &[i64], disc: &[u64]) -> Vec<IndexRecord> {
        starts
            .iter()
            .enumerate()
            .map(|(i, &s)| IndexRecord {
                seq: first_seq + i as u64,
                utc_start: UtcMs(H0 + s),
                duration: Ticks::from_ms(2000),
                pts_start: Ticks(0),
                offset: 1000 * i as u64,
                length: 1000,
                flags: SegmentFlags {
                    discontinuity: disc.contains(&(first_seq + i as u64)),
                    independent: true,
                },
            })
            .collect()
    }

    fn seqs(plan: &[PlanItem]) -> Vec<String> {
        plan.iter()
            .map(|i| match i {
                PlanItem::Segment(s) => s.record.seq.to_string(),
                PlanItem::Gap { from, to } => format!("gap{}-{}", from.0 - H0, to.0 - H0),
            })
            .collect()
    }

    #[test]
    fn plans_across_chunks_with_gaps() {
        let k1 = key(0, H0);
        let k2 = key(10, H0 + 30_000);
        let r1 = records(0, &[0, 2000, 4000, 6000], &[]);
        // 10 starts after a 22 s hole; 12 restarts the timeline with no hole.
        let r2 = records(10, &[30_000, 32_000, 34_000], &[10, 12]);
        let chunks = [
            ChunkRecords {
                key: &k1,
                records: &r1,
            },
            ChunkRecords {
                key: &k2,
                records: &r2,
            },
        ];
        let plan = plan_range(&chunks, UtcMs(H0 + 3000), UtcMs(H0 + 40_000));
        assert_eq!(
            seqs(&plan),
            [
                "1",
                "2",
                "3",
                "gap8000-30000",
                "10",
                "11",
                "gap34000-34000",
                "12",
                "gap36000-40000"
            ]
        );
        let PlanItem::Segment(first) = &plan[0] else {
            panic!()
        };
        assert_eq!(first.ts_key, k1.ts_key());
        assert_eq!(first.byte_range(), 1000..2000);
        assert_eq!(
            seqs(&plan_range(&chunks, UtcMs(H0 - 5000), UtcMs(H0 + 2000))),
            ["gap-5000-0", "0"]
        );
        assert_eq!(
            seqs(&plan_range(&chunks, UtcMs(H0 + 9000), UtcMs(H0 + 20_000))),
            ["gap9000-20000"]
        );
        assert!(plan_range(&chunks, UtcMs(H0), UtcMs(H0)).is_empty());
        // Within tolerance: no gap.
        let r3 = records(20, &[0, 2500], &[]);
        let k3 = key(20, H0);
        let c3 = [ChunkRecords {
            key: &k3,
            records: &r3,
        }];
        assert_eq!(
            seqs(&plan_range(&c3, UtcMs(H0), UtcMs(H0 + 4500))),
            ["20", "21"]
        );
    }

    #[test]
    fn live_and_timeshift_helpers() {
        let k1 = key(0, H0);
        let r1 = records(0, &[0, 2000, 4000, 6000], &[]);
        let chunks = [ChunkRecords {
            key: &k1,
            records: &r1,
        }];
        assert_eq!(
            segment_at_or_after(&chunks, UtcMs(H0 + 2500)).map(|s| s.record.seq),
            Some(1)
        );
        assert_eq!(
            segment_at_or_after(&chunks, UtcMs(H0 - 9000)).map(|s| s.record.seq),
            Some(0)
        );
        assert_eq!(segment_at_or_after(&chunks, UtcMs(H0 + 8000)), None);
        let last: Vec<u64> = last_segments(&chunks, 2)
            .iter()
            .map(|s| s.record.seq)
            .collect();
        assert_eq!(last, [2, 3]);
        assert_eq!(last_segments(&chunks, 10).len(), 4);
        let before: Vec<u64> = last_segments_before(&chunks, UtcMs(H0 + 4000), 6)
            .iter()
            .map(|s| s.record.seq)
            .collect();
        assert_eq!(before, [0, 1]);
    }

    proptest! {
        #[test]
        fn record_runs_are_records_in_range_without_a_copy(
            gaps in proptest::collection::vec(0i64..5_000, 2..60),
            split in 1usize..59,
            overlap in 0usize..3,
            from in 0i64..150_000,
            len in 1i64..150_000,
        ) {
            // Two chunks of one tape, the second repeating the first's last
            // `overlap` segments (a repaired stretch uploaded twice).
            let mut t = 0;
            let starts: Vec<i64> = gaps.iter().map(|g| { t += 2000 + g; t }).collect();
            let split = split.min(starts.len() - 1);
            let back = overlap.min(split);
            let (r1, r2) = (
                records(0, &starts[..split], &[]),
                records((split - back) as u64, &starts[split - back..], &[]),
            );
            let (k1, k2) = (key(0, H0), key((split - back) as u64, H0 + starts[split - back]));
            let chunks = [
                ChunkRecords { key: &k1, records: &r1 },
                ChunkRecords { key: &k2, records: &r2 },
            ];
            let indexes = [&r1, &r2].map(|r| {
                let index = ChunkIndex { codecs: CodecSummary::default(), records: r.clone() };
                (Arc::new(index), r.len())
            });
            let (from, to) = (UtcMs(H0 + from), UtcMs(H0 + from + len));
            let expected = records_in_range(&chunks, from, to);
            match record_runs(&indexes, from, to) {
                Some(runs) => {
                    let flat: Vec<IndexRecord> =
                        runs.iter().flat_map(|r| r.records().iter().copied()).collect();
                    prop_assert_eq!(&flat, &expected);
                }
                // Only chunks that share segments in the range need the copy.
                None => prop_assert!(
                    back > 0 && expected.len() < r1.iter().chain(&r2)
                        .filter(|x| x.utc_end() > from && x.utc_start < to).count()
                ),
            }
            let owned = RecordRun::owned(expected.clone());
            prop_assert_eq!(owned.records(), &expected[..]);
        }

        #[test]
        fn plans_are_ordered_and_cover_only_the_range(
            gaps in proptest::collection::vec(0i64..5_000, 1..40),
            from in 0i64..100_000,
            len in 1i64..100_000,
        ) {
            let mut t = 0;
            let starts: Vec<i64> = gaps.iter().map(|g| { t += 2000 + g; t }).collect();
            let r = records(0, &starts, &[]);
            let k = key(0, H0);
            let chunks = [ChunkRecords { key: &k, records: &r }];
            let (from, to) = (UtcMs(H0 + from), UtcMs(H0 + from + len));
            let plan = plan_range(&chunks, from, to);
            prop_assert!(!plan.is_empty());
            // A playlist's records are exactly the plan's segments.
            let planned: Vec<IndexRecord> = plan
                .iter()
                .filter_map(|i| match i {
                    PlanItem::Segment(s) => Some(s.record),
                    PlanItem::Gap { .. } => None,
                })
                .collect();
            prop_assert_eq!(records_in_range(&chunks, from, to), planned);
            let mut last_end = from;
            let mut last_seq = None;
            for item in &plan {
                match item {
                    PlanItem::Segment(s) => {
                        prop_assert!(s.record.utc_end() > from && s.record.utc_start < to);
                        prop_assert!(last_seq.is_none_or(|q| s.record.seq > q));
                        last_seq = Some(s.record.seq);
                        last_end = s.record.utc_end();
                    }
                    PlanItem::Gap { from: gf, to: gt } => {
                        prop_assert!(gf <= gt);
                        prop_assert!(*gf >= from.min(last_end) && *gt <= to);
                    }
                }
            }
            // Every overlapping segment is in the plan.
            let expected = r.iter().filter(|x| x.utc_end() > from && x.utc_start < to).count();
            let got = plan.iter().filter(|i| matches!(i, PlanItem::Segment(_))).count();
            prop_assert_eq!(expected, got);
        }
    }
}
