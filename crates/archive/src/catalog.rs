//! Which chunks exist, and the recorded time ranges they make.
//!
//! The catalog is derived data (ARCHITECTURE section 5): one
//! [`ChunkEntry`] per chunk, built from the chunk's index when the recorder
//! writes it, or rebuilt from a listing plus the indexes. It answers
//! `recording_status.json` without touching storage.
//!
//! Recorded ranges follow the tape's one gap rule, [`dvr_media::leaves_gap`]:
//! two stretches of tape are one range unless the later starts more than
//! [`dvr_media::TIMELINE_GAP_TOLERANCE_MS`] after the earlier ends, the same
//! rule that makes a playlist write `#EXT-X-DISCONTINUITY`. A chunk covers a
//! copy interval (an hour by default) and an outage can begin and end inside
//! it, so each entry keeps the holes between its segments ([`ChunkEntry::gaps`]),
//! not only its first start and last end; `recording_status.json` shows the
//! same gaps once the tape is archived as while it was in the live log.
//! A flapping source must not make the catalog grow without bound, so an
//! entry keeps at most [`MAX_GAPS_PER_CHUNK`] holes, filling the shortest
//! first: the ranges may then cover a few short holes, never hide recorded
//! time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dvr_common::{StreamName, UtcMs};
use dvr_media::{breaks_timeline, leaves_gap, TIMELINE_GAP_TOLERANCE_MS};
use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;
use crate::index::{ChunkIndex, IndexRecord};
use crate::key::{ChunkKey, ObjectKind};

/// Most holes a chunk's entry keeps (so at most one more recorded span):
/// a day of hour chunks of a source that drops out every minute stays a
/// few kilobytes. Beyond it the shortest holes are filled first.
pub const MAX_GAPS_PER_CHUNK: usize = 64;

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
    /// The holes inside the chunk where nothing is recorded, oldest first:
    /// where the next segment starts past the tape so far by more than the
    /// gap rule's tolerance ([`dvr_media::leaves_gap`]), flagged or not. At
    /// most [`MAX_GAPS_PER_CHUNK`], the shortest filled first. Derived from
    /// the index; empty in entries written before it existed (read as one
    /// span, as before) until a reload rebuilds them from the indexes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<TimeRange>,
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
        let spans = merge_ranges(index.records.iter().map(|r| TimeRange {
            from: r.utc_start,
            to: r.utc_end(),
        }));
        let gaps = fill_shortest(
            spans
                .windows(2)
                .map(|w| TimeRange {
                    from: w[0].to,
                    to: w[1].from,
                })
                .collect(),
            MAX_GAPS_PER_CHUNK,
        );
        Ok(ChunkEntry {
            first_seq: first.seq,
            last_seq: last.seq,
            utc_start: first.utc_start,
            utc_end,
            bytes,
            segments: u32::try_from(index.records.len()).unwrap_or(u32::MAX),
            breaks: u32::try_from(breaks).unwrap_or(u32::MAX),
            opens_discontinuous: first.flags.discontinuity,
            gaps,
            key,
        })
    }

    /// The recorded spans of the chunk, oldest first: its whole time less
    /// its [`gaps`](ChunkEntry::gaps).
    pub fn spans(&self) -> impl Iterator<Item = TimeRange> + '_ {
        let ends = self.gaps.iter().map(|g| g.from).chain([self.utc_end]);
        let starts = [self.utc_start]
            .into_iter()
            .chain(self.gaps.iter().map(|g| g.to));
        starts
            .zip(ends)
            .map(|(from, to)| TimeRange { from, to })
            .filter(|s| s.to > s.from)
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

    /// Recorded ranges within `[from, to)`: the chunks' recorded spans,
    /// merged where no gap separates them (see the module doc), clipped to
    /// the request.
    pub fn ranges(&self, stream: &StreamName, from: UtcMs, to: UtcMs) -> Vec<TimeRange> {
        let (wide_from, wide_to) = widen(from, to);
        recorded_ranges(
            self.chunks_overlapping(stream, wide_from, wide_to)
                .into_iter()
                .flat_map(ChunkEntry::spans),
            from,
            to,
        )
    }

    /// One flag per hour of `[from, to)` (widened to whole hours, at most
    /// [`MAX_BITMAP_HOURS`]).
    pub fn hour_bitmap(&self, stream: &StreamName, from: UtcMs, to: UtcMs) -> HourBitmap {
        let spans = self
            .chunks_overlapping(stream, from.floor_hour(), ceil_hour(to))
            .into_iter()
            .flat_map(ChunkEntry::spans);
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

/// Merges ranges (sorted by start or not) that no gap separates
/// ([`dvr_media::leaves_gap`]); empty ranges are dropped.
pub fn merge_ranges(ranges: impl IntoIterator<Item = TimeRange>) -> Vec<TimeRange> {
    let mut v: Vec<TimeRange> = ranges.into_iter().filter(|r| r.to > r.from).collect();
    v.sort_by_key(|r| (r.from, r.to));
    let mut out: Vec<TimeRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if !leaves_gap(last.to, r.from) => last.to = last.to.max(r.to),
            _ => out.push(r),
        }
    }
    out
}

/// The recorded ranges that `pieces` of tape (segments, chunk spans,
/// ranges; in any order) make, clipped to `[from, to)`: merged first, so a
/// range reaching into the request keeps its true start. The pieces must
/// include those within [`dvr_media::TIMELINE_GAP_TOLERANCE_MS`] of the
/// bounds ([`widen`]); the archive and the live log both answer through
/// here, so the same tape gives the same ranges wherever it is kept.
pub fn recorded_ranges(
    pieces: impl IntoIterator<Item = TimeRange>,
    from: UtcMs,
    to: UtcMs,
) -> Vec<TimeRange> {
    let mut ranges = merge_ranges(pieces);
    ranges.retain_mut(|r| {
        r.from = r.from.max(from);
        r.to = r.to.min(to);
        r.to > r.from
    });
    ranges
}

/// `[from, to)` widened by the gap rule's tolerance on both sides: the
/// stretch whose pieces decide [`recorded_ranges`] within `[from, to)`
/// (a piece ending just before `from` joins a range that reaches into it).
pub fn widen(from: UtcMs, to: UtcMs) -> (UtcMs, UtcMs) {
    (
        from.saturating_add_ms(-TIMELINE_GAP_TOLERANCE_MS),
        to.saturating_add_ms(TIMELINE_GAP_TOLERANCE_MS),
    )
}

/// `gaps` (oldest first) cut to the `max` longest, the shortest filled
/// first (of equal ones, the later), still oldest first.
fn fill_shortest(mut gaps: Vec<TimeRange>, max: usize) -> Vec<TimeRange> {
    if gaps.len() > max {
        gaps.sort_by_key(|g| (std::cmp::Reverse(g.duration_ms()), g.from));
        gaps.truncate(max);
        gaps.sort_by_key(|g| g.from);
    }
    gaps
}

/// A listing sorted into chunks ready to index, and what does not fit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListingPlan {
    /// Chunks with both objects: read each `.idx`, then
    /// [`ChunkEntry::from_index`] with the `.ts` size given here.
    pub complete: Vec<(ChunkKey, u64)>,
    /// Keys of half-written chunks (one object without the other): a crash
    /// between the two uploads; the recorder's replay rewrites them. Also
    /// `.smp` sample tables of a chunk that is not complete.
    pub orphans: Vec<String>,
    /// Keys that are not archive objects (other than `locks.json`).
    pub foreign: Vec<String>,
}

/// First step of rebuilding the catalog (`dvr reindex`): sorts a listing of
/// `(key, size)` into complete chunks, orphans and foreign keys.
pub fn plan_rebuild<'a>(listing: impl IntoIterator<Item = (&'a str, u64)>) -> ListingPlan {
    let mut ts: BTreeMap<ChunkKey, (String, u64)> = BTreeMap::new();
    let mut idx: BTreeMap<ChunkKey, String> = BTreeMap::new();
    let mut smp: Vec<(ChunkKey, String)> = Vec::new();
    let mut plan = ListingPlan::default();
    for (key, size) in listing {
        match ChunkKey::parse(key) {
            Ok((k, ObjectKind::Chunk)) => {
                ts.insert(k, (key.to_owned(), size));
            }
            Ok((k, ObjectKind::Index)) => {
                idx.insert(k, key.to_owned());
            }
            // Sample tables are optional beside a chunk; ones without a
            // complete chunk are orphans like its other objects.
            Ok((k, ObjectKind::SampleTables)) => {
                smp.push((k, key.to_owned()));
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
    plan.orphans.extend(
        smp.into_iter()
            .filter(|(k, _)| !both.contains(k))
            .map(|(_, n)| n),
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

    /// A chunk of segments given as `(start, duration, discontinuity)` in
    /// milliseconds, seqs from `first_seq`.
    fn chunk_of(first_seq: u64, segments: &[(i64, i64, bool)]) -> ChunkEntry {
        let index = ChunkIndex::from_segments(
            CodecSummary::default(),
            segments
                .iter()
                .zip(first_seq..)
                .map(|(&(start, ms, d), seq)| {
                    (
                        seq,
                        UtcMs(start),
                        Ticks::from_ms(ms),
                        Ticks(0),
                        1000,
                        SegmentFlags {
                            discontinuity: d,
                            independent: true,
                        },
                    )
                }),
        );
        let key = ChunkKey::new(s(), UtcMs(segments[0].0), first_seq);
        ChunkEntry::from_index(key, &index, None).unwrap()
    }

    fn range(from: i64, to: i64) -> TimeRange {
        TimeRange {
            from: UtcMs(from),
            to: UtcMs(to),
        }
    }

    /// An hour of 2 s segments from `H0` with the source lost for 6 s, 15 s
    /// and 5 min (each flagged on return), and a 300 ms hole (rounding, not
    /// a gap) and a flagged PTS jump without a hole.
    fn hour_with_outages() -> Vec<(i64, i64, bool)> {
        let mut out = Vec::new();
        let mut t = H0;
        let mut flag = false;
        while t + 2000 <= H0 + 3_600_000 {
            out.push((t, 2000, flag));
            t += 2000;
            let n = out.len();
            flag = n == 100;
            t += match n {
                50 => 6_000,
                300 => 15_000,
                600 => 300_000,
                700 => 300,
                _ => 0,
            };
            flag |= matches!(n, 50 | 300 | 600);
        }
        out
    }

    #[test]
    fn gaps_inside_a_chunk_split_its_ranges() {
        let segments = hour_with_outages();
        let e = chunk_of(0, &segments);
        let at = |n: usize| segments[n].0;
        let end = |n: usize| segments[n].0 + 2000;
        assert_eq!(
            e.gaps,
            vec![
                range(end(49), at(50)),
                range(end(299), at(300)),
                range(end(599), at(600))
            ]
        );
        assert_eq!(
            (e.gaps[0].duration_ms(), e.gaps[1].duration_ms()),
            (6_000, 15_000)
        );
        assert_eq!(e.gaps[2].duration_ms(), 300_000);
        let mut c = Catalog::new();
        c.insert(e.clone());
        let last = segments.len() - 1;
        let expected = vec![
            range(at(0), end(49)),
            range(at(50), end(299)),
            range(at(300), end(599)),
            range(at(600), end(last)),
        ];
        assert_eq!(c.ranges(&s(), UtcMs(0), UtcMs(i64::MAX)), expected);
        // The same as the segments themselves give, as the live log does.
        let pieces = segments.iter().map(|&(t, d, _)| range(t, t + d));
        assert_eq!(recorded_ranges(pieces, UtcMs(0), UtcMs(i64::MAX)), expected);
        // A request starting inside the 300 ms hole keeps its start.
        let inside = UtcMs(end(699) + 100);
        assert_eq!(
            c.ranges(&s(), inside, UtcMs(end(last))),
            vec![range(inside.0, end(last))]
        );
        // A request inside the 5 min gap has nothing recorded.
        assert!(c.ranges(&s(), UtcMs(end(599)), UtcMs(at(600))).is_empty());
        // An entry from before the field existed reads as one span.
        let mut old = serde_json::to_value(&e).unwrap();
        old.as_object_mut().unwrap().remove("gaps");
        let old: ChunkEntry = serde_json::from_value(old).unwrap();
        assert!(old.gaps.is_empty());
        assert_eq!(
            old.spans().collect::<Vec<_>>(),
            vec![range(at(0), end(last))]
        );
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<ChunkEntry>(&json).unwrap(), e);
    }

    #[test]
    fn an_hour_inside_a_gap_is_not_recorded() {
        // A three-hour chunk (a long copy interval): the first 20 minutes,
        // then nothing until 15:10.
        let first: Vec<(i64, i64, bool)> = (0..600).map(|i| (H0 + i * 2000, 2000, false)).collect();
        let back = H0 + 4_200_000;
        let rest = (0..300).map(|i| (back + i * 2000, 2000, i == 0));
        let e = chunk_of(0, &first.into_iter().chain(rest).collect::<Vec<_>>());
        let mut c = Catalog::new();
        c.insert(e);
        let b = c.hour_bitmap(&s(), UtcMs(H0), UtcMs(H0 + 3 * 3_600_000));
        assert_eq!(b.bits, "110");
        let b = c.hour_bitmap(&s(), UtcMs(H0 + 1_300_000), UtcMs(H0 + 3_600_000));
        assert_eq!(b.bits, "1", "an hour with any recording stays 1");
    }

    #[test]
    fn a_flapping_source_keeps_the_longest_gaps() {
        // 100 outages of 1 s to 100 s, in a scrambled order.
        let mut segments = Vec::new();
        let mut t = H0;
        for i in 0..=100i64 {
            segments.push((t, 2000, i > 0));
            t += 2000 + ((i + 1) * 37 % 101) * 1000;
        }
        let e = chunk_of(0, &segments);
        assert_eq!(e.gaps.len(), MAX_GAPS_PER_CHUNK);
        let shortest_kept = e.gaps.iter().map(TimeRange::duration_ms).min().unwrap();
        assert_eq!(shortest_kept, (100 - MAX_GAPS_PER_CHUNK as i64 + 1) * 1000);
        assert!(e.gaps.windows(2).all(|w| w[0].to < w[1].from));
        // The spans still cover every segment: filled holes, no lost tape.
        let spans: Vec<TimeRange> = e.spans().collect();
        assert_eq!(spans.len(), MAX_GAPS_PER_CHUNK + 1);
        for &(t, d, _) in &segments {
            assert!(spans.iter().any(|r| r.from.0 <= t && t + d <= r.to.0));
        }
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
        let (asmp, hsmp) = (a.smp_key(), half.smp_key());
        let listing = vec![
            (asmp.as_str(), 900u64),
            (hsmp.as_str(), 90),
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
        // A chunk's sample tables are neither a chunk nor foreign; those of
        // a half-written chunk are orphans with it.
        assert_eq!(plan.orphans, vec![hts.clone(), hsmp.clone()]);
        assert_eq!(plan.foreign, vec!["ort/notes.txt".to_owned()]);
        let (catalog, errors) = Catalog::rebuild(vec![
            (a, 1_800_000, index(0, H0, 1800)),
            (b, 2_000, index(1800, H0 + 3_600_000, 3)),
        ]);
        assert_eq!(catalog.chunks(&s()).count(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    /// Segments from `(hole before, duration, discontinuity)` in ms, laid
    /// end to end from `H0`.
    fn lay_out(raw: &[(i64, i64, bool)]) -> Vec<(i64, i64, bool)> {
        let mut t = H0;
        raw.iter()
            .map(|&(hole, d, flag)| {
                t += hole;
                let s = (t, d, flag);
                t += d;
                s
            })
            .collect()
    }

    proptest! {
        /// The catalog's ranges are the index's segments merged by the gap
        /// rule, wherever the chunks were cut, and clipped to the request:
        /// every recorded millisecond of the request is in a range, no range
        /// holds a hole longer than the tolerance, and each range starts and
        /// ends at a segment's start and end or at the request's bounds.
        #[test]
        fn ranges_are_the_segments_of_the_index(
            raw in proptest::collection::vec(
                (prop_oneof![Just(0i64), 0i64..1_500, 0i64..400_000], 1i64..4_000, any::<bool>()),
                1..40,
            ),
            cuts in proptest::collection::btree_set(1usize..40, 0..4),
            window in (0i64..1_000_000, 0i64..1_000_000),
        ) {
            let segments = lay_out(&raw);
            let mut c = Catalog::new();
            let mut first = 0;
            for end in cuts.iter().copied().filter(|&e| e < segments.len()).chain([segments.len()]) {
                c.insert(chunk_of(first as u64, &segments[first..end]));
                first = end;
            }
            let (from, to) = (UtcMs(H0 + window.0.min(window.1)), UtcMs(H0 + window.0.max(window.1)));
            let ranges = c.ranges(&s(), from, to);
            let live = recorded_ranges(segments.iter().map(|&(t, d, _)| range(t, t + d)), from, to);
            prop_assert_eq!(&ranges, &live);
            for w in ranges.windows(2) {
                prop_assert!(leaves_gap(w[0].to, w[1].from));
                // Nothing recorded between two ranges.
                prop_assert!(segments.iter().all(|&(t, d, _)| t + d <= w[0].to.0 || t >= w[1].from.0));
            }
            for &(t, d, _) in &segments {
                let (a, b) = (t.max(from.0), (t + d).min(to.0));
                if a < b {
                    prop_assert!(ranges.iter().any(|r| r.from.0 <= a && b <= r.to.0));
                }
            }
            for r in &ranges {
                prop_assert!(r.from == from || segments.iter().any(|&(t, _, _)| t == r.from.0));
                prop_assert!(r.to == to || segments.iter().any(|&(t, d, _)| t + d == r.to.0));
                // No hole over the tolerance inside a range.
                let mut inside: Vec<(i64, i64)> = segments
                    .iter()
                    .map(|&(t, d, _)| (t.max(r.from.0), (t + d).min(r.to.0)))
                    .filter(|(a, b)| a < b)
                    .collect();
                inside.sort_unstable();
                let mut reached = r.from.0;
                for (a, b) in inside {
                    prop_assert!(a - reached <= TIMELINE_GAP_TOLERANCE_MS);
                    reached = reached.max(b);
                }
                prop_assert!(r.to.0 - reached <= TIMELINE_GAP_TOLERANCE_MS);
            }
        }

        #[test]
        fn merged_ranges_are_sorted_disjoint_and_cover_the_input(
            raw in proptest::collection::vec((0i64..100_000, 0i64..5_000), 0..30)
        ) {
            let input: Vec<TimeRange> = raw.iter().map(|&(f, d)| TimeRange { from: UtcMs(f), to: UtcMs(f + d) }).collect();
            let merged = merge_ranges(input.clone());
            for w in merged.windows(2) {
                prop_assert!(w[1].from.0 > w[0].to.0 + TIMELINE_GAP_TOLERANCE_MS);
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
