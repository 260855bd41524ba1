//! Which chunks exist, and the recorded time ranges they make.
//!
//! The catalog is derived data (ARCHITECTURE section 5): one
//! [`ChunkEntry`] per chunk, built from the chunk's index when the recorder
//! writes it, or rebuilt from a listing plus the indexes. It answers
//! `recording_status.json` without touching storage.
//!
//! Contiguity: two chunks form one recorded range when the next starts at
//! most [`CONTIGUITY_TOLERANCE_MS`] after the previous ends. Segment ends
//! are rounded to the millisecond and a restart or signal loss leaves at
//! least a couple of seconds (twice the segment target) of nothing, so one
//! second separates rounding noise from real gaps.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dvr_common::{StreamName, UtcMs};
use dvr_media::breaks_timeline;
use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;
use crate::index::{ChunkIndex, IndexRecord};
use crate::key::{ChunkKey, ObjectKind};

/// Largest hole, in milliseconds, that still counts as contiguous tape.
pub const CONTIGUITY_TOLERANCE_MS: i64 = 1_000;

/// What the catalog knows of one chunk; serializable so the distributed
/// catalog can keep it in a KV bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// Its identity and object keys.
    pub key: ChunkKey,
    /// Seq of the first segment (equals `key.first_seq`).
    pub first_seq: u64,
    /// Seq of the last segment.
    pub last_seq: u64,
    /// Start of the first segment.
    pub utc_start: UtcMs,
    /// End (exclusive) of the last segment.
    pub utc_end: UtcMs,
    /// Size of the `.ts` object.
    pub bytes: u64,
    /// Number of segments.
    pub segments: u32,
    /// Timeline breaks between its segments ([`dvr_media::breaks_timeline`]):
    /// with the boundaries between chunks, what `EXT-X-DISCONTINUITY-SEQUENCE`
    /// counts. Derived from the index; 0 in entries written before it
    /// existed, which every replica reads alike.
    #[serde(default)]
    pub breaks: u32,
    /// Whether its first segment carries the discontinuity flag.
    #[serde(default)]
    pub opens_discontinuous: bool,
}

impl ChunkEntry {
    /// The entry for a chunk, from its index; `object_bytes` is the `.ts`
    /// size when known from a listing, checked against the index so a torn
    /// upload is not served.
    pub fn from_index(
        key: ChunkKey,
        index: &ChunkIndex,
        object_bytes: Option<u64>,
    ) -> Result<ChunkEntry, ArchiveError> {
        let (Some(first), Some(last)) = (index.records.first(), index.records.last()) else {
            return Err(ArchiveError::IndexEmpty);
        };
        let mismatch = |reason: String| ArchiveError::ChunkKeyMismatch {
            key: key.ts_key(),
            reason,
        };
        if first.seq != key.first_seq {
            return Err(mismatch(format!("index starts at seq {}", first.seq)));
        }
        if first.utc_start.floor_hour() != key.hour {
            return Err(mismatch(format!(
                "first segment starts at {}",
                first.utc_start
            )));
        }
        let bytes = index.chunk_length();
        if let Some(object_bytes) = object_bytes.filter(|&b| b != bytes) {
            return Err(ArchiveError::ChunkSizeMismatch {
                key: key.ts_key(),
                index_bytes: bytes,
                object_bytes,
            });
        }
        let utc_end = index
            .records
            .iter()
            .map(IndexRecord::utc_end)
            .max()
            .unwrap_or(first.utc_start);
        let breaks = index
            .records
            .windows(2)
            .filter(|w| breaks_timeline(w[0].utc_end(), w[1].utc_start, w[1].flags.discontinuity))
            .count();
        Ok(ChunkEntry {
            first_seq: first.seq,
            last_seq: last.seq,
            utc_start: first.utc_start,
            utc_end,
            bytes,
            segments: u32::try_from(index.records.len()).unwrap_or(u32::MAX),
            breaks: u32::try_from(breaks).unwrap_or(u32::MAX),
            opens_discontinuous: first.flags.discontinuity,
            key,
        })
    }

    /// Whether the chunk holds any time of `[from, to)`.
    pub fn overlaps(&self, from: UtcMs, to: UtcMs) -> bool {
        self.utc_start < to && self.utc_end > from
    }
}

/// A span of recorded time, `[from, to)`. Serializes as the brief form of
/// `recording_status.json` uses: `{"from": …, "to": …}` in milliseconds
/// (the HTTP layer converts to the seeds' seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// Start, inclusive.
    pub from: UtcMs,
    /// End, exclusive.
    pub to: UtcMs,
}

impl TimeRange {
    /// Length in milliseconds.
    pub fn duration_ms(&self) -> i64 {
        self.to.0 - self.from.0
    }
}

/// One flag per UTC hour: was anything recorded in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourBitmap {
    /// Start of the first hour.
    pub from: UtcMs,
    /// `'1'` for an hour with recorded tape, `'0'` for none, one character
    /// per hour from `from`: the seeds' "large string with bit map of
    /// recorded hours".
    pub bits: String,
}

/// Longest `[from, to)` an hour bitmap covers (about 11 years), so a
/// request for "everything" cannot allocate without bound.
pub const MAX_BITMAP_HOURS: i64 = 100_000;

/// The in-memory catalog of every stream's chunks.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    streams: BTreeMap<StreamName, StreamChunks>,
}

/// One stream's chunks, by time, with an index by identity so inserting a
/// replayed chunk or removing one is logarithmic, not a scan.
#[derive(Clone, Debug, Default)]
struct StreamChunks {
    by_time: BTreeMap<(UtcMs, u64), ChunkEntry>,
    /// `(hour, first_seq)` → key in `by_time`.
    slots: HashMap<(UtcMs, u64), (UtcMs, u64)>,
    /// Longest `utc_end - utc_start` seen; bounds how far before `from` a
    /// chunk reaching into `from` can start.
    max_span_ms: i64,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Adds a chunk, replacing one with the same key (a replayed interval
    /// rewrites the same chunk).
    pub fn insert(&mut self, entry: ChunkEntry) {
        let stream = self.streams.entry(entry.key.stream.clone()).or_default();
        let id = (entry.key.hour, entry.key.first_seq);
        let slot = (entry.utc_start, entry.first_seq);
        if let Some(old) = stream.slots.insert(id, slot) {
            stream.by_time.remove(&old);
        }
        stream.max_span_ms = stream.max_span_ms.max(entry.utc_end.0 - entry.utc_start.0);
        stream.by_time.insert(slot, entry);
    }

    /// Removes a chunk; returns it if it was there.
    pub fn remove(&mut self, key: &ChunkKey) -> Option<ChunkEntry> {
        let stream = self.streams.get_mut(&key.stream)?;
        let slot = stream.slots.remove(&(key.hour, key.first_seq))?;
        stream.by_time.remove(&slot)
    }

    /// The entry of a chunk, if catalogued.
    pub fn entry(&self, key: &ChunkKey) -> Option<&ChunkEntry> {
        let stream = self.streams.get(&key.stream)?;
        let slot = stream.slots.get(&(key.hour, key.first_seq))?;
        stream.by_time.get(slot)
    }

    /// The streams with at least one chunk.
    pub fn streams(&self) -> impl Iterator<Item = &StreamName> {
        self.streams
            .iter()
            .filter(|(_, c)| !c.by_time.is_empty())
            .map(|(s, _)| s)
    }

    /// Every chunk of a stream, oldest first.
    pub fn chunks(&self, stream: &StreamName) -> impl Iterator<Item = &ChunkEntry> {
        self.streams
            .get(stream)
            .into_iter()
            .flat_map(|c| c.by_time.values())
    }

    /// The chunks holding any time of `[from, to)`, oldest first.
    pub fn chunks_overlapping(
        &self,
        stream: &StreamName,
        from: UtcMs,
        to: UtcMs,
    ) -> Vec<&ChunkEntry> {
        let Some(chunks) = self.streams.get(stream) else {
            return Vec::new();
        };
        let scan_from = (UtcMs(from.0.saturating_sub(chunks.max_span_ms)), 0);
        chunks
            .by_time
            .range(scan_from..)
            .map(|(_, e)| e)
            .take_while(|e| e.utc_start < to)
            .filter(|e| e.overlaps(from, to))
            .collect()
    }

    /// The whole recorded span of a stream, first start to last end: the
    /// `{"S": {"from", "to"}}` answer.
    pub fn recorded_span(&self, stream: &StreamName) -> Option<TimeRange> {
        let chunks = &self.streams.get(stream)?.by_time;
        let from = chunks.values().next()?.utc_start;
        let to = chunks.values().map(|e| e.utc_end).max()?;
        Some(TimeRange { from, to })
    }

    /// Recorded ranges within `[from, to)`, contiguous chunks merged (see
    /// the module doc for the tolerance), clipped to the request.
    pub fn ranges(&self, stream: &StreamName, from: UtcMs, to: UtcMs) -> Vec<TimeRange> {
        merge_ranges(
            self.chunks_overlapping(stream, from, to)
                .into_iter()
                .map(|e| TimeRange {
                    from: e.utc_start.max(from),
                    to: e.utc_end.min(to),
                }),
        )
    }

    /// One flag per hour of `[from, to)` (widened to whole hours, at most
    /// [`MAX_BITMAP_HOURS`]).
    pub fn hour_bitmap(&self, stream: &StreamName, from: UtcMs, to: UtcMs) -> HourBitmap {
        let spans = self
            .chunks_overlapping(stream, from.floor_hour(), ceil_hour(to))
            .into_iter()
            .map(|e| TimeRange {
                from: e.utc_start,
                to: e.utc_end,
            });
        hour_bitmap(spans, from, to)
    }

    /// Timeline breaks of a stream's tape at or before `t`: between chunks
    /// (the later one starting at or before `t`) and inside every chunk that
    /// ends at or before `t`. The chunk holding `t`, if any, is returned for
    /// the caller to count its inside breaks up to `t` from its records.
    /// Chunks are summed from their entries, so this costs no storage read.
    pub fn breaks_through(&self, stream: &StreamName, t: UtcMs) -> (u64, Option<ChunkEntry>) {
        let mut count = 0u64;
        let mut holder = None;
        let mut previous_end: Option<UtcMs> = None;
        for e in self.chunks(stream).take_while(|e| e.utc_start <= t) {
            if previous_end
                .is_some_and(|end| breaks_timeline(end, e.utc_start, e.opens_discontinuous))
            {
                count += 1;
            }
            if e.utc_end <= t {
                count += u64::from(e.breaks);
            } else {
                holder = Some(e.clone());
            }
            previous_end = Some(e.utc_end);
        }
        (count, holder)
    }

    /// Total bytes of a stream's chunks.
    pub fn total_bytes(&self, stream: &StreamName) -> u64 {
        self.chunks(stream).map(|e| e.bytes).sum()
    }
}

/// The start of the first UTC hour at or after `t`.
fn ceil_hour(t: UtcMs) -> UtcMs {
    if t.floor_hour() == t {
        t
    } else {
        t.floor_hour().saturating_add_ms(3_600_000)
    }
}

/// One flag per hour of `[from, to)` (widened to whole hours, at most
/// [`MAX_BITMAP_HOURS`]): `'1'` where any of `spans` holds time of that hour.
/// The catalog's chunks and the packager's ranges (archive plus live log)
/// both come here, so the two bitmaps cannot disagree.
pub fn hour_bitmap(
    spans: impl IntoIterator<Item = TimeRange>,
    from: UtcMs,
    to: UtcMs,
) -> HourBitmap {
    let start = from.floor_hour();
    let end = ceil_hour(to);
    let end = end.min(start.saturating_add_ms(MAX_BITMAP_HOURS * 3_600_000));
    let hours = usize::try_from((end.0 - start.0).max(0) / 3_600_000).unwrap_or(0);
    let mut bits = vec![b'0'; hours];
    for span in spans {
        if span.to <= start || span.from >= end || span.to <= span.from {
            continue;
        }
        let first = (span.from.max(start).0 - start.0) / 3_600_000;
        // The last millisecond of the span decides its last hour.
        let last = (UtcMs(span.to.0 - 1).min(UtcMs(end.0 - 1)).0 - start.0) / 3_600_000;
        for h in first..=last {
            if let Some(b) = usize::try_from(h).ok().and_then(|h| bits.get_mut(h)) {
                *b = b'1';
            }
        }
    }
    HourBitmap {
        from: start,
        bits: String::from_utf8(bits).unwrap_or_default(),
    }
}

/// Merges ranges (sorted by start or not) that overlap or touch within
/// [`CONTIGUITY_TOLERANCE_MS`]; empty ranges are dropped.
pub fn merge_ranges(ranges: impl IntoIterator<Item = TimeRange>) -> Vec<TimeRange> {
    let mut v: Vec<TimeRange> = ranges.into_iter().filter(|r| r.to > r.from).collect();
    v.sort_by_key(|r| (r.from, r.to));
    let mut out: Vec<TimeRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.from.0 <= last.to.0.saturating_add(CONTIGUITY_TOLERANCE_MS) => {
                last.to = last.to.max(r.to);
            }
            _ => out.push(r),
        }
    }
    out
}

/// A listing sorted into chunks ready to index, and what does not fit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListingPlan {
    /// Chunks with both objects: read each `.idx`, then
    /// [`ChunkEntry::from_index`] with the `.ts` size given here.
    pub complete: Vec<(ChunkKey, u64)>,
    /// Keys of half-written chunks (one object without the other): a crash
    /// between the two uploads; the recorder's replay rewrites them.
    pub orphans: Vec<String>,
    /// Keys that are not archive objects (other than `locks.json`).
    pub foreign: Vec<String>,
}

/// First step of rebuilding the catalog (`dvr reindex`): sorts a listing of
/// `(key, size)` into complete chunks, orphans and foreign keys.
pub fn plan_rebuild<'a>(listing: impl IntoIterator<Item = (&'a str, u64)>) -> ListingPlan {
    let mut ts: BTreeMap<ChunkKey, (String, u64)> = BTreeMap::new();
    let mut idx: BTreeMap<ChunkKey, String> = BTreeMap::new();
    let mut plan = ListingPlan::default();
    for (key, size) in listing {
        match ChunkKey::parse(key) {
            Ok((k, ObjectKind::Chunk)) => {
                ts.insert(k, (key.to_owned(), size));
            }
            Ok((k, ObjectKind::Index)) => {
                idx.insert(k, key.to_owned());
            }
            Err(_) if key.ends_with("/locks.json") => {}
            Err(_) => plan.foreign.push(key.to_owned()),
        }
    }
    let both: BTreeSet<&ChunkKey> = ts.keys().filter(|k| idx.contains_key(*k)).collect();
    for (k, (name, size)) in &ts {
        if both.contains(k) {
            plan.complete.push((k.clone(), *size));
        } else {
            plan.orphans.push(name.clone());
        }
    }
    plan.orphans.extend(
        idx.iter()
            .filter(|(k, _)| !both.contains(k))
            .map(|(_, n)| n.clone()),
    );
    plan.complete.sort_by_key(|(k, _)| (k.hour, k.first_seq));
    plan
}

impl Catalog {
    /// Builds a catalog from complete chunks and their decoded indexes (the
    /// second step of a rebuild). Chunks whose index disagrees with the key
    /// or the object size are returned with the error, not inserted.
    pub fn rebuild(
        chunks: impl IntoIterator<Item = (ChunkKey, u64, ChunkIndex)>,
    ) -> (Catalog, Vec<ArchiveError>) {
        let mut catalog = Catalog::new();
        let mut errors = Vec::new();
        for (key, size, index) in chunks {
            match ChunkEntry::from_index(key, &index, Some(size)) {
                Ok(e) => catalog.insert(e),
                Err(e) => errors.push(e),
            }
        }
        (catalog, errors)
    }
}

#[cfg(test)]
mod tests {
    use dvr_common::Ticks;
    use dvr_media::{CodecSummary, SegmentFlags};
    use proptest::prelude::*;

    use super::*;

    pub(crate) const H0: i64 = 1_795_269_600_000; // 2026-11-21T14:00:00Z

    fn s() -> StreamName {
        "ort".parse().unwrap()
    }

    /// A chunk of `n` 2 s segments of 1000 bytes from `start`.
    fn index(first_seq: u64, start: i64, n: u64) -> ChunkIndex {
        let f = SegmentFlags {
            discontinuity: false,
            independent: true,
        };
        ChunkIndex::from_segments(
            CodecSummary::default(),
            (0..n).map(|i| {
                (
                    first_seq + i,
                    UtcMs(start + 2000 * i as i64),
                    Ticks(180_000),
                    Ticks(0),
                    1000,
                    f,
                )
            }),
        )
    }

    fn entry(first_seq: u64, start: i64, n: u64) -> ChunkEntry {
        let key = ChunkKey::new(s(), UtcMs(start), first_seq);
        ChunkEntry::from_index(key, &index(first_seq, start, n), None).unwrap()
    }

    #[test]
    fn breaks_are_counted_at_chunk_boundaries_and_inside_chunks() {
        let f = |discontinuity| SegmentFlags {
            discontinuity,
            independent: true,
        };
        // Chunk A: 0..6 s, then a PTS jump at 6 s (flag, no gap), 6..10 s.
        let a = ChunkIndex::from_segments(
            CodecSummary::default(),
            (0..5).map(|i| {
                (
                    i,
                    UtcMs(H0 + 2000 * i as i64),
                    Ticks(180_000),
                    Ticks(0),
                    1000,
                    f(i == 3),
                )
            }),
        );
        let a = ChunkEntry::from_index(ChunkKey::new(s(), UtcMs(H0), 0), &a, None).unwrap();
        assert_eq!((a.breaks, a.opens_discontinuous), (1, false));
        let mut c = Catalog::new();
        c.insert(a);
        // Chunk B continues A; chunk C comes after a 20 s gap.
        c.insert(entry(5, H0 + 10_000, 5));
        c.insert(entry(10, H0 + 40_000, 5));
        let at = |ms: i64| {
            let (n, holder) = c.breaks_through(&s(), UtcMs(H0 + ms));
            (n, holder.map(|e| e.first_seq))
        };
        assert_eq!(at(0), (0, Some(0)));
        // Inside A the caller counts from the records.
        assert_eq!(at(6_000), (0, Some(0)));
        assert_eq!(at(10_000), (1, Some(5)));
        assert_eq!(at(39_000), (1, None));
        // The gap before C is a break at C's first segment.
        assert_eq!(at(40_000), (2, Some(10)));
        assert_eq!(at(i64::MAX - H0), (2, None));
    }

    #[test]
    fn entries_come_from_indexes() {
        let e = entry(10, H0, 1800);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<ChunkEntry>(&json).unwrap(), e);
        assert_eq!(
            (e.first_seq, e.last_seq, e.segments, e.bytes),
            (10, 1809, 1800, 1_800_000)
        );
        assert_eq!((e.utc_start, e.utc_end), (UtcMs(H0), UtcMs(H0 + 3_600_000)));
        let key = ChunkKey::new(s(), UtcMs(H0), 10);
        assert!(matches!(
            ChunkEntry::from_index(key.clone(), &index(10, H0, 2), Some(1999)),
            Err(ArchiveError::ChunkSizeMismatch {
                index_bytes: 2000,
                object_bytes: 1999,
                ..
            })
        ));
        assert!(matches!(
            ChunkEntry::from_index(key.clone(), &index(11, H0, 2), None),
            Err(ArchiveError::ChunkKeyMismatch { .. })
        ));
        assert!(matches!(
            ChunkEntry::from_index(key, &index(10, H0 - 1, 2), None),
            Err(ArchiveError::ChunkKeyMismatch { .. })
        ));
    }

    #[test]
    fn ranges_merge_contiguous_chunks_and_split_at_gaps() {
        let mut c = Catalog::new();
        c.insert(entry(0, H0, 1800)); // 14:00-15:00
        c.insert(entry(1800, H0 + 3_600_000, 900)); // 15:00-15:30
        c.insert(entry(5000, H0 + 3_600_000 + 1_860_000, 30)); // 15:31-15:32
        c.insert(entry(5000, H0 + 3_600_000 + 1_860_000, 30)); // replay: no duplicate
        assert_eq!(c.chunks(&s()).count(), 3);
        let all = c.ranges(&s(), UtcMs(0), UtcMs(i64::MAX));
        assert_eq!(
            all,
            vec![
                TimeRange {
                    from: UtcMs(H0),
                    to: UtcMs(H0 + 5_400_000)
                },
                TimeRange {
                    from: UtcMs(H0 + 5_460_000),
                    to: UtcMs(H0 + 5_520_000)
                },
            ]
        );
        let clipped = c.ranges(&s(), UtcMs(H0 + 1000), UtcMs(H0 + 2000));
        assert_eq!(
            clipped,
            vec![TimeRange {
                from: UtcMs(H0 + 1000),
                to: UtcMs(H0 + 2000)
            }]
        );
        assert_eq!(
            c.chunks_overlapping(&s(), UtcMs(H0 + 3_599_999), UtcMs(H0 + 3_600_001))
                .len(),
            2
        );
        assert!(c
            .chunks_overlapping(&s(), UtcMs(H0 + 5_400_000), UtcMs(H0 + 5_460_000))
            .is_empty());
        assert_eq!(
            c.recorded_span(&s()),
            Some(TimeRange {
                from: UtcMs(H0),
                to: UtcMs(H0 + 5_520_000)
            })
        );
        assert_eq!(c.total_bytes(&s()), 2_730_000);
        let removed = c.remove(&ChunkKey::new(s(), UtcMs(H0), 0)).unwrap();
        assert_eq!(removed.first_seq, 0);
        assert_eq!(c.chunks(&s()).count(), 2);
        assert!(c.recorded_span(&"other".parse().unwrap()).is_none());
    }

    #[test]
    fn hour_bitmap_marks_recorded_hours() {
        let mut c = Catalog::new();
        c.insert(entry(0, H0 + 60_000, 10)); // 14:01 for 20 s
        c.insert(entry(100, H0 + 2 * 3_600_000 + 3_590_000, 10)); // 16:59:50 to 17:00:10
        let b = c.hour_bitmap(&s(), UtcMs(H0 + 5), UtcMs(H0 + 5 * 3_600_000));
        assert_eq!(b.from, UtcMs(H0));
        assert_eq!(b.bits, "10110");
        let b = c.hour_bitmap(&s(), UtcMs(H0), UtcMs(H0 + 3_600_000 + 1));
        assert_eq!(b.bits, "10");
        let everything = c.hour_bitmap(&s(), UtcMs(0), UtcMs(i64::MAX));
        assert_eq!(everything.bits.len() as i64, MAX_BITMAP_HOURS);
    }

    #[test]
    fn long_chunks_are_found_from_inside() {
        let mut c = Catalog::new();
        c.insert(entry(0, H0, 5400)); // three hours of 2 s segments
        let inside = UtcMs(H0 + 3 * 3_600_000 - 1);
        assert_eq!(
            c.chunks_overlapping(&s(), inside, UtcMs(inside.0 + 1))
                .len(),
            1
        );
    }

    #[test]
    fn rebuild_from_a_listing() {
        let a = ChunkKey::new(s(), UtcMs(H0), 0);
        let b = ChunkKey::new(s(), UtcMs(H0 + 3_600_000), 1800);
        let half = ChunkKey::new(s(), UtcMs(H0 + 7_200_000), 3600);
        let (ats, aidx, bts, bidx, hts) = (
            a.ts_key(),
            a.idx_key(),
            b.ts_key(),
            b.idx_key(),
            half.ts_key(),
        );
        let listing = vec![
            (bidx.as_str(), 500u64),
            (bts.as_str(), 2_000),
            (ats.as_str(), 1_800_000),
            (aidx.as_str(), 400),
            (hts.as_str(), 10),
            ("ort/locks.json", 50),
            ("ort/notes.txt", 5),
        ];
        let plan = plan_rebuild(listing);
        assert_eq!(
            plan.complete,
            vec![(a.clone(), 1_800_000), (b.clone(), 2_000)]
        );
        assert_eq!(plan.orphans, vec![hts.clone()]);
        assert_eq!(plan.foreign, vec!["ort/notes.txt".to_owned()]);
        let (catalog, errors) = Catalog::rebuild(vec![
            (a, 1_800_000, index(0, H0, 1800)),
            (b, 2_000, index(1800, H0 + 3_600_000, 3)),
        ]);
        assert_eq!(catalog.chunks(&s()).count(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    proptest! {
        #[test]
        fn merged_ranges_are_sorted_disjoint_and_cover_the_input(
            raw in proptest::collection::vec((0i64..100_000, 0i64..5_000), 0..30)
        ) {
            let input: Vec<TimeRange> = raw.iter().map(|&(f, d)| TimeRange { from: UtcMs(f), to: UtcMs(f + d) }).collect();
            let merged = merge_ranges(input.clone());
            for w in merged.windows(2) {
                prop_assert!(w[1].from.0 > w[0].to.0 + CONTIGUITY_TOLERANCE_MS);
            }
            for r in input.iter().filter(|r| r.to > r.from) {
                prop_assert!(merged.iter().any(|m| m.from <= r.from && r.to <= m.to));
            }
            for m in &merged {
                prop_assert!(input.iter().any(|r| r.from == m.from));
                prop_assert!(input.iter().any(|r| r.to == m.to));
            }
        }
    }
}
