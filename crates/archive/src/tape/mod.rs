//! One stream's tape: the archived part and, after it, the part still only
//! in the live log, joined seamlessly by `seq`.
//!
//! This is the one answer to "what is on the tape and where does it end":
//! the packager serves from it, the API reports its status from it and
//! ingest resumes after its end ([`StreamTape::end`]). [`store`] reads the
//! archived part from an [`crate::store::ArchiveStore`]; [`open_tape`] builds
//! a stream's tape from its settings through the process's registry.

mod open;
pub mod store;

pub use open::{open_tape, OpenTapeError};
pub use store::StoreTape;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use dvr_bus::{BusError, LiveLog};
use dvr_common::config::Schedule;
use dvr_common::error::{ErrorKind, HasErrorKind};
use dvr_common::UtcMs;
use dvr_media::SegmentMeta;

use crate::{recorded_ranges, IndexRecord, Lock, RecordRun, TimeRange};

/// What reading a tape can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapeError {
    /// The tape has nothing there (a segment trimmed from the live log, a
    /// chunk lost from the archive); the message says which and when.
    #[error("{0}")]
    NothingRecorded(String),
    /// Reading the tape failed.
    #[error("cannot read the tape of {stream}: {reason}")]
    Storage {
        /// The stream.
        stream: String,
        /// What went wrong (no credentials or paths).
        reason: String,
        /// Whether retrying may help.
        transient: bool,
    },
}

impl HasErrorKind for TapeError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            TapeError::NothingRecorded(_) => ErrorKind::NotFound,
            TapeError::Storage {
                transient: true, ..
            } => ErrorKind::Unavailable,
            TapeError::Storage {
                transient: false, ..
            } => ErrorKind::Internal,
        }
    }
}

/// Where a stream's numbering continues: the last `seq` on its tape and
/// the end of that segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapeEnd {
    /// The newest segment's `seq`.
    pub last_seq: u64,
    /// The end of the newest stretch of tape.
    pub utc_end: UtcMs,
}

impl TapeEnd {
    /// The further of two ends, each part on its own (the live log and the
    /// archive of one tape may disagree on both while a chunk is copied).
    pub fn further(a: Option<TapeEnd>, b: Option<TapeEnd>) -> Option<TapeEnd> {
        match (a, b) {
            (Some(a), Some(b)) => Some(TapeEnd {
                last_seq: a.last_seq.max(b.last_seq),
                utc_end: a.utc_end.max(b.utc_end),
            }),
            (a, b) => a.or(b),
        }
    }
}

/// Where a segment's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// In the stream's live log, by `seq`.
    LiveLog,
    /// In an archive chunk object: one ranged read.
    Archive {
        /// The chunk's object key.
        key: String,
        /// Offset of the segment in the chunk.
        offset: u64,
    },
}

/// A segment of the tape and where to read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapeSegment {
    /// Its metadata.
    pub meta: SegmentMeta,
    /// Where its bytes are.
    pub location: Location,
}

/// The archived part of one stream's tape.
#[async_trait]
pub trait ArchivedTape: Send + Sync + Debug {
    /// Archived segments overlapping `[from, to)`, oldest first.
    async fn segments_between(&self, from: UtcMs, to: UtcMs)
        -> Result<Vec<TapeSegment>, TapeError>;
    /// Index records of the archived segments overlapping `[from, to)`,
    /// oldest first: [`ArchivedTape::segments_between`] without locations,
    /// read in place, for playlists (a day's has 43,200 segments).
    async fn record_runs(&self, from: UtcMs, to: UtcMs) -> Result<Vec<RecordRun>, TapeError>;
    /// The bytes of an archived segment.
    async fn read(&self, segment: &TapeSegment) -> Result<Bytes, TapeError>;
    /// The `.smp` sample tables stored beside the chunk whose object key is
    /// `chunk_key`; `None` when there are none (chunks written before them).
    async fn sample_tables(&self, chunk_key: &str) -> Result<Option<Bytes>, TapeError>;
    /// Start and end of everything archived.
    async fn extent(&self) -> Result<Option<(UtcMs, UtcMs)>, TapeError>;
    /// Recorded ranges within `[from, to)`, from the catalog: no storage
    /// request, so `recording_status.json` stays cheap over weeks of tape.
    fn ranges(&self, from: UtcMs, to: UtcMs) -> Vec<(UtcMs, UtcMs)>;
    /// The stream's locks (a copy at most a few seconds old).
    async fn locks(&self, now: UtcMs) -> Result<Vec<Lock>, TapeError>;
    /// Timeline breaks on the archived tape at or before `t`, each counted
    /// at the segment after it.
    async fn breaks_before(&self, t: UtcMs) -> Result<u64, TapeError>;
    /// The seq of the last archived segment.
    fn last_seq(&self) -> Option<u64>;
}

/// A segment's metadata from its index record.
pub fn meta_of(r: &IndexRecord) -> SegmentMeta {
    SegmentMeta {
        seq: r.seq,
        utc_start: r.utc_start,
        duration: r.duration,
        pts_start: r.pts_start,
        bytes: u64::from(r.length),
        flags: r.flags,
    }
}

/// The segments of a stretch of tape, oldest first, read in place: the
/// archived ones as runs of the index cache's records, then the live log's.
/// A day's playlist lists 43,200 of them, and copying them twice per request
/// cost as much as writing the playlist.
#[derive(Clone, Debug, Default)]
pub struct TapeMetas {
    archived: Vec<RecordRun>,
    live: Vec<SegmentMeta>,
    len: usize,
}

impl TapeMetas {
    fn new(archived: Vec<RecordRun>, live: Vec<SegmentMeta>) -> Self {
        let len = archived.iter().map(|r| r.records().len()).sum::<usize>() + live.len();
        Self {
            archived,
            live,
            len,
        }
    }

    /// How many segments.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments, oldest first.
    pub fn iter(&self) -> Metas<'_> {
        Metas {
            runs: self.archived.iter(),
            records: [].iter(),
            live: self.live.iter(),
            left: self.len,
        }
    }

    /// The segments, copied.
    pub fn to_vec(&self) -> Vec<SegmentMeta> {
        self.iter().collect()
    }
}

/// The iterator of [`TapeMetas`].
#[derive(Clone, Debug)]
pub struct Metas<'a> {
    runs: std::slice::Iter<'a, RecordRun>,
    records: std::slice::Iter<'a, IndexRecord>,
    live: std::slice::Iter<'a, SegmentMeta>,
    left: usize,
}

impl Iterator for Metas<'_> {
    type Item = SegmentMeta;

    fn next(&mut self) -> Option<SegmentMeta> {
        let next = loop {
            if let Some(r) = self.records.next() {
                break Some(meta_of(r));
            }
            match self.runs.next() {
                Some(run) => self.records = run.records().iter(),
                None => break self.live.next().copied(),
            }
        };
        self.left = self.left.saturating_sub(usize::from(next.is_some()));
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Metas<'_> {}

/// A stream's whole tape.
#[derive(Debug, Clone)]
pub struct StreamTape {
    name: String,
    live: Arc<dyn LiveLog>,
    archive: Option<Arc<dyn ArchivedTape>>,
    /// For a delayed channel (`timeshift://OTHER/N`): how far behind its
    /// source's live it plays, in milliseconds; 0 for a recorded stream.
    delay_ms: i64,
    /// The stream's recording schedule (`dvr.schedule`): live-log segments
    /// outside it are live only, see [`StreamTape::with_schedule`].
    schedule: Option<Schedule>,
}

impl StreamTape {
    /// The tape of stream `name`.
    pub fn new(
        name: impl Into<String>,
        live: Arc<dyn LiveLog>,
        archive: Option<Arc<dyn ArchivedTape>>,
    ) -> Self {
        Self {
            name: name.into(),
            live,
            archive,
            delay_ms: 0,
            schedule: None,
        }
    }

    /// The tape of a stream recording on `schedule` only. Segments made
    /// outside it are live only: the live playlist lists them and their
    /// URLs answer while they are in the live log, but the recorded view
    /// (ranges and `recording_status.json`, archive, rewind and timeshift
    /// playlists, downloads and exports) leaves them out, as the recorder
    /// never archives them.
    #[must_use]
    pub fn with_schedule(mut self, schedule: Option<Schedule>) -> Self {
        self.schedule = schedule;
        self
    }

    /// Whether a live-log segment belongs to the recorded view.
    fn scheduled(&self, meta: &SegmentMeta) -> bool {
        self.schedule
            .as_ref()
            .is_none_or(|s| s.contains(meta.utc_start))
    }

    /// A delayed channel `name`: `source`'s tape, played `delay_ms` behind
    /// its live. It reads the same segments as the source (and shares its
    /// caches), so a thousand viewers of the delayed channel cost no more
    /// store reads than one.
    pub fn delayed(name: impl Into<String>, source: &StreamTape, delay_ms: i64) -> Self {
        Self {
            name: name.into(),
            live: Arc::clone(&source.live),
            archive: source.archive.clone(),
            delay_ms,
            schedule: source.schedule.clone(),
        }
    }

    /// How far behind its source's live a delayed channel plays (0 for a
    /// recorded stream).
    pub fn delay_ms(&self) -> i64 {
        self.delay_ms
    }

    /// Whether the tape has an archived part (the stream records).
    pub fn has_archive(&self) -> bool {
        self.archive.is_some()
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The live log.
    pub fn live(&self) -> &Arc<dyn LiveLog> {
        &self.live
    }

    /// Recorded segments overlapping `[from, to)`, oldest first: archived
    /// ones, then those only in the live log (within the schedule).
    pub async fn segments_between(
        &self,
        from: UtcMs,
        to: UtcMs,
    ) -> Result<Vec<TapeSegment>, TapeError> {
        let mut out = self.every_segment_between(from, to).await?;
        if self.schedule.is_some() {
            out.retain(|s| s.location != Location::LiveLog || self.scheduled(&s.meta));
        }
        Ok(out)
    }

    /// Every segment overlapping `[from, to)`, live-only ones included: for
    /// the segment URLs the live playlist lists.
    pub async fn every_segment_between(
        &self,
        from: UtcMs,
        to: UtcMs,
    ) -> Result<Vec<TapeSegment>, TapeError> {
        let mut out = match &self.archive {
            Some(archive) => archive.segments_between(from, to).await?,
            None => Vec::new(),
        };
        let archived_until = out.last().map(|s| s.meta.seq);
        out.extend(
            self.live
                .segments_between(from, to)
                .await
                .map_err(|e| self.live_error(&e))?
                .into_iter()
                .filter(|m| archived_until.is_none_or(|last| m.seq > last))
                .map(|meta| TapeSegment {
                    meta,
                    location: Location::LiveLog,
                }),
        );
        Ok(out)
    }

    /// Metadata of the segments overlapping `[from, to)`, oldest first:
    /// what [`StreamTape::segments_between`] finds, without locations.
    pub async fn metas_between(&self, from: UtcMs, to: UtcMs) -> Result<TapeMetas, TapeError> {
        let archived = match &self.archive {
            Some(archive) => archive.record_runs(from, to).await?,
            None => Vec::new(),
        };
        let archived_until = archived
            .iter()
            .rev()
            .find_map(|run| run.records().last())
            .map(|r| r.seq);
        let mut live = self
            .live
            .segments_between(from, to)
            .await
            .map_err(|e| self.live_error(&e))?;
        live.retain(|m| archived_until.is_none_or(|last| m.seq > last) && self.scheduled(m));
        Ok(TapeMetas::new(archived, live))
    }

    /// The newest `n` segments (live).
    pub async fn newest(&self, n: usize) -> Result<Vec<TapeSegment>, TapeError> {
        Ok(self
            .live
            .last(n)
            .await
            .map_err(|e| self.live_error(&e))?
            .into_iter()
            .map(|meta| TapeSegment {
                meta,
                location: Location::LiveLog,
            })
            .collect())
    }

    /// The newest segment's metadata, `None` before the first.
    pub async fn live_head(&self) -> Result<Option<SegmentMeta>, TapeError> {
        self.live.newest().await.map_err(|e| self.live_error(&e))
    }

    fn live_error(&self, e: &BusError) -> TapeError {
        TapeError::Storage {
            stream: self.name.clone(),
            reason: e.to_string(),
            transient: e.error_kind().is_transient(),
        }
    }

    /// The bytes of a segment.
    pub async fn read(&self, segment: &TapeSegment) -> Result<Bytes, TapeError> {
        match &segment.location {
            Location::LiveLog => {
                let seq = segment.meta.seq;
                match self.live.get(seq).await {
                    Ok(Some(s)) => Ok(s.payload),
                    Ok(None) => Err(TapeError::NothingRecorded(format!(
                        "segment {seq} of {} is no longer in the live log",
                        self.name
                    ))),
                    Err(e) => Err(self.live_error(&e)),
                }
            }
            Location::Archive { .. } => match &self.archive {
                Some(archive) => archive.read(segment).await,
                None => Err(TapeError::Storage {
                    stream: self.name.clone(),
                    reason: "no archive configured".into(),
                    transient: false,
                }),
            },
        }
    }

    /// The `.smp` sample tables beside the archive chunk `chunk_key`;
    /// `None` when it has none or the tape has no archive.
    pub async fn sample_tables(&self, chunk_key: &str) -> Result<Option<Bytes>, TapeError> {
        match &self.archive {
            Some(archive) => archive.sample_tables(chunk_key).await,
            None => Ok(None),
        }
    }

    /// Recorded ranges within `[from, to)`: the archive's from its catalog,
    /// then the live log's segments after the archive's last, merged by the
    /// tape's one gap rule ([`dvr_media::leaves_gap`], through
    /// [`crate::recorded_ranges`]) and clipped to the request. The
    /// catalog keeps the gaps inside each chunk, so a stretch of tape gives
    /// the same ranges before and after the recorder copies it.
    pub async fn ranges(&self, from: UtcMs, to: UtcMs) -> Result<Vec<(UtcMs, UtcMs)>, TapeError> {
        let (wide_from, wide_to) = crate::widen(from, to);
        // The last seq first: a chunk committed in between is then counted
        // twice (harmless), never missed.
        let archived_until = self.archive.as_ref().and_then(|a| a.last_seq());
        let mut pieces: Vec<TimeRange> = match &self.archive {
            Some(archive) => archive
                .ranges(wide_from, wide_to)
                .into_iter()
                .map(|(from, to)| TimeRange { from, to })
                .collect(),
            None => Vec::new(),
        };
        pieces.extend(
            self.live
                .segments_between(wide_from, wide_to)
                .await
                .map_err(|e| self.live_error(&e))?
                .into_iter()
                .filter(|m| archived_until.is_none_or(|last| m.seq > last) && self.scheduled(m))
                .map(|m| TimeRange {
                    from: m.utc_start,
                    to: m.utc_end(),
                }),
        );
        Ok(recorded_ranges(pieces, from, to)
            .into_iter()
            .map(|r| (r.from, r.to))
            .collect())
    }

    /// The `EXT-X-DISCONTINUITY-SEQUENCE` of a window that starts with
    /// `first`: every timeline break on the tape up to and including the one
    /// just before it. Stateless, so every replica and every reload agrees:
    /// archived breaks are summed from the catalog, the live log's are
    /// counted after the archive's last segment. (Retention deleting a chunk
    /// with breaks lowers the count; that happens days behind the window.)
    pub async fn breaks_before(&self, first: &SegmentMeta) -> Result<u64, TapeError> {
        let (archived, last_seq, archived_end) = match &self.archive {
            Some(a) => (
                a.breaks_before(first.utc_start).await?,
                a.last_seq(),
                a.extent().await?.map(|(_, end)| end),
            ),
            None => (0, None, None),
        };
        if last_seq.is_some_and(|last| first.seq <= last) {
            return Ok(archived);
        }
        let mut count = archived;
        let mut previous_end = archived_end;
        let from = archived_end.map_or(UtcMs(0), |end| UtcMs(end.0 - 1));
        for meta in self
            .live
            .segments_between(from, first.utc_end())
            .await
            .map_err(|e| self.live_error(&e))?
            .into_iter()
            .filter(|m| last_seq.is_none_or(|last| m.seq > last) && m.seq <= first.seq)
        {
            if previous_end.is_some_and(|end| {
                dvr_media::breaks_timeline(end, meta.utc_start, meta.flags.discontinuity)
            }) {
                count += 1;
            }
            previous_end = Some(meta.utc_end());
        }
        Ok(count)
    }

    /// Where the tape ends, `None` on a tape with nothing yet: the newest
    /// `seq` and end in the live log or the archive, whichever is further
    /// (the live log may have been trimmed past a restart, the archive may
    /// lag the live log by a chunk).
    pub async fn end(&self) -> Result<Option<TapeEnd>, TapeError> {
        let logged = self.live_head().await?.map(|m| TapeEnd {
            last_seq: m.seq,
            utc_end: m.utc_end(),
        });
        let archived = match &self.archive {
            Some(a) => a
                .last_seq()
                .zip(a.extent().await?)
                .map(|(last_seq, (_, utc_end))| TapeEnd { last_seq, utc_end }),
            None => None,
        };
        Ok(TapeEnd::further(logged, archived))
    }

    /// The stream's locks; none without an archive.
    pub async fn locks(&self, now: UtcMs) -> Result<Vec<Lock>, TapeError> {
        match &self.archive {
            Some(archive) => archive.locks(now).await,
            None => Ok(Vec::new()),
        }
    }

    /// Start and end of the whole tape.
    pub async fn extent(&self) -> Result<Option<(UtcMs, UtcMs)>, TapeError> {
        let archived = match &self.archive {
            Some(a) => a.extent().await?,
            None => None,
        };
        let oldest = self.live.oldest().await.map_err(|e| self.live_error(&e))?;
        let newest = self.live_head().await?;
        let live = oldest.zip(newest).map(|(o, n)| (o.utc_start, n.utc_end()));
        Ok(match (archived, live) {
            (Some((a0, a1)), Some((l0, l1))) => Some((a0.min(l0), a1.max(l1))),
            (a, l) => a.or(l),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvr_bus::{SegmentLog, SegmentLogOptions};
    use dvr_testkit::fixtures::segment;

    #[tokio::test]
    async fn a_tape_ends_after_its_newest_segment() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(SegmentLog::open(dir.path(), SegmentLogOptions::default()).unwrap());
        let tape = StreamTape::new("ort", log.clone(), None);
        assert_eq!(tape.end().await.unwrap(), None, "an empty tape has no end");
        for seq in 7..10 {
            log.append(&segment(seq).on_tape_from(1_000_000).build())
                .unwrap();
        }
        assert_eq!(
            tape.end().await.unwrap(),
            Some(TapeEnd {
                last_seq: 9,
                utc_end: UtcMs(1_020_000)
            })
        );
    }

    #[test]
    fn the_further_end_takes_each_part_from_the_further_side() {
        let live = TapeEnd {
            last_seq: 12,
            utc_end: UtcMs(5_000),
        };
        let archived = TapeEnd {
            last_seq: 10,
            utc_end: UtcMs(9_000),
        };
        assert_eq!(
            TapeEnd::further(Some(live), Some(archived)),
            Some(TapeEnd {
                last_seq: 12,
                utc_end: UtcMs(9_000)
            })
        );
        assert_eq!(TapeEnd::further(None, Some(archived)), Some(archived));
        assert_eq!(TapeEnd::further(Some(live), None), Some(live));
        assert_eq!(TapeEnd::further(None, None), None);
    }
}
