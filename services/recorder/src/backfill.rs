//! Replication (the seeds' `dvr … replicate`): a restreamed stream copies
//! the source's archived tape that this origin lacks, so two origins end
//! with the same tape.
//!
//! The restreamer's live feed already catches up after its own downtime
//! (it resumes at the end of its tape, and the source's feed sends the
//! archived segments first). What it never sees is the tape *before* it
//! first followed the source, and any stretch it missed while no source
//! answered and that the source it follows now did not send. Those are the
//! holes: within the stream's depth, before the first segment this origin
//! holds and between two of its stretches whose seqs leave room between
//! them (two stretches with consecutive seqs are one tape with a gap in
//! the source too, and there is nothing to copy).
//!
//! Each hole is asked of the sources in their order, through the same
//! segment feed the restreamer follows (`from` the hole's start, `after`
//! the seq before it), and every segment whose seq falls strictly inside
//! the hole is kept with its seq, UTC, flags and bytes unchanged; the copy
//! stops at the first segment at or past the hole's end, or at the
//! source's heartbeat (its tape has nothing more). Segments are spooled to
//! a file in the temporary directory (`TMPDIR`) and written as chunks cut
//! where the recorder would cut them (copy windows, seq breaks,
//! discontinuities) or at [`SPOOL_MAX_BYTES`], each with its sample tables
//! and index, so a chunk exists only when whole; one chunk is written
//! while the next is gathered. A copy interrupted
//! half-way leaves its hole smaller, and the next pass asks again from
//! there. A seq is never written twice: the hole's bounds are seqs this
//! origin holds.
//!
//! The copy is paced to the stream's `replicate_rate` (bytes a second), so
//! live recording and playback keep the server's network and disks. A hole
//! the sources had nothing for is asked again only after
//! [`SETTLED_FOR`]. With a size or disk limit the tape before the first
//! chunk is copied only while the archive is below 90 % of `max_size` (a
//! disk-percentage limit: not at all), so retention and replication never
//! undo each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_archive::key::copy_window;
use dvr_archive::store::{ArchiveStore, StoreError};
use dvr_archive::{ChunkEntry, ChunkIndex, ChunkKey};
use dvr_bus::{Kv, LiveLog};
use dvr_cluster::{ClusterKey, FeedClient, FeedError, FeedItem, FeedSegment, FeedStart};
use dvr_common::config::{DvrConfig, InputUrl, StreamConfig};
use dvr_common::{Clock, StreamName, UtcMs};
use dvr_media::mp4::{encode_chunk_tables, SampleTable};
use dvr_media::{probe_codecs, CodecSummary, SegmentMeta, TIMELINE_GAP_TOLERANCE_MS};
use dvr_proto::{runtime_key, ReplicationReport, Versioned, PROTO_VERSION};
use dvr_storage::FileUpload;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How often the holes are looked for (and the report rewritten, well
/// within the runtime bucket's max age).
pub const PASS_EVERY: Duration = Duration::from_secs(10);
/// How soon the next pass comes while this origin holds no tape at all
/// yet: a hole is measured against the first segment, and a new
/// replica's copy should start as soon as that segment is made.
const UNTIL_FIRST_TAPE: Duration = Duration::from_millis(500);
/// How long a hole the sources had nothing for is left alone.
pub const SETTLED_FOR: Duration = Duration::from_secs(600);
/// How often the report is rewritten while a hole is being copied.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// The largest chunk a copy gathers before writing it: a copy window of
/// a high-bitrate stream may be gigabytes, and two spools (one written,
/// one gathered) sit in the temporary directory at once.
pub const SPOOL_MAX_BYTES: u64 = 256 << 20;

/// Why a hole was not (fully) copied; the next pass asks again.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// No source answered the feed request.
    #[error("no source answered: {0}")]
    NoSource(String),
    /// The feed broke off.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// The spool file failed.
    #[error("the spool file failed: {0}")]
    Spool(#[from] std::io::Error),
    /// Writing to the archive failed.
    #[error("chunk {key}: {source}")]
    Archive {
        /// The chunk's object key.
        key: String,
        /// The storage error.
        source: StoreError,
    },
}

/// A stretch of time this origin's tape lacks, between seqs it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hole {
    /// Where it starts.
    pub from: UtcMs,
    /// Where it ends: the start of the next stretch held.
    pub to: UtcMs,
    /// The seq held before it (`None`: before the first).
    pub after: Option<u64>,
    /// The first seq held after it.
    pub before: u64,
}

/// A stretch of tape held: times and seqs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// Start of its first segment.
    pub start: UtcMs,
    /// End of its last segment.
    pub end: UtcMs,
    /// Its first seq.
    pub first_seq: u64,
    /// Its last seq.
    pub last_seq: u64,
}

/// The holes of a tape made of `held` (any order, overlaps allowed), no
/// older than `floor`; before the first stretch only when `before_first`.
pub fn holes(held: &[Held], floor: UtcMs, before_first: bool) -> Vec<Hole> {
    let mut held = held.to_vec();
    held.sort_by_key(|h| (h.first_seq, h.start.0));
    let mut out = Vec::new();
    let Some(first) = held.first() else {
        return out;
    };
    if before_first && first.first_seq > 0 && first.start.0 - floor.0 > TIMELINE_GAP_TOLERANCE_MS {
        out.push(Hole {
            from: floor,
            to: first.start,
            after: None,
            before: first.first_seq,
        });
    }
    let (mut end, mut last_seq) = (first.end, first.last_seq);
    for h in &held[1..] {
        let from = end.max(floor);
        if h.first_seq > last_seq.saturating_add(1)
            && h.start.0 - from.0 > TIMELINE_GAP_TOLERANCE_MS
        {
            out.push(Hole {
                from,
                to: h.start,
                after: Some(last_seq),
                before: h.first_seq,
            });
        }
        end = end.max(h.end);
        last_seq = last_seq.max(h.last_seq);
    }
    out
}

/// What one segment does to the copy of a hole.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Kept, under its own seq.
    Keep,
    /// Already held (the feed starts at the segment overlapping `from`).
    Skip,
    /// At or past the hole's end: the copy is done.
    Done,
}

fn step(hole: &Hole, meta: &SegmentMeta) -> Step {
    if hole.after.is_some_and(|a| meta.seq <= a) {
        return Step::Skip;
    }
    if meta.seq >= hole.before
        || meta.utc_start.0 >= hole.to.0
        || meta.utc_end().0 > hole.to.0 + TIMELINE_GAP_TOLERANCE_MS
    {
        return Step::Done;
    }
    Step::Keep
}

/// One `m4f://` source.
#[derive(Clone, Debug)]
struct Source {
    url: String,
    base: String,
    stream: StreamName,
}

/// A chunk being gathered: its segments in a temporary file.
struct Spool {
    file: tempfile::NamedTempFile,
    writer: tokio::fs::File,
    first: SegmentMeta,
    last_seq: u64,
    /// Bytes spooled.
    bytes: u64,
    codecs: Arc<CodecSummary>,
    records: Vec<(
        u64,
        UtcMs,
        dvr_common::Ticks,
        dvr_common::Ticks,
        u32,
        dvr_media::SegmentFlags,
    )>,
    tables: Vec<(u64, SampleTable)>,
}

impl Spool {
    fn open(first: &FeedSegment) -> std::io::Result<Self> {
        let file = tempfile::Builder::new()
            .prefix("dvr-backfill-")
            .tempfile()?;
        let writer = tokio::fs::File::from_std(file.reopen()?);
        Ok(Self {
            file,
            writer,
            first: first.meta,
            last_seq: first.meta.seq,
            bytes: 0,
            codecs: probe_codecs(&first.payload),
            records: Vec::new(),
            tables: Vec::new(),
        })
    }

    /// Whether `meta` continues this chunk as the recorder would cut it,
    /// within [`SPOOL_MAX_BYTES`].
    fn continues(&self, meta: &SegmentMeta, copy_interval_ms: i64) -> bool {
        self.bytes + meta.bytes <= SPOOL_MAX_BYTES
            && meta.seq == self.last_seq + 1
            && !meta.flags.discontinuity
            && copy_window(meta.utc_start, copy_interval_ms)
                == copy_window(self.first.utc_start, copy_interval_ms)
    }

    async fn push(&mut self, segment: &FeedSegment) -> std::io::Result<()> {
        let meta = segment.meta;
        let length = u32::try_from(segment.payload.len())
            .map_err(|_| std::io::Error::other(format!("segment {} is over 4 GiB", meta.seq)))?;
        self.writer.write_all(&segment.payload).await?;
        self.bytes += u64::from(length);
        if let Ok(table) = SampleTable::from_ts(&segment.payload, meta.pts_start, meta.duration) {
            self.tables.push((meta.seq, table));
        }
        self.records.push((
            meta.seq,
            meta.utc_start,
            meta.duration,
            meta.pts_start,
            length,
            meta.flags,
        ));
        self.last_seq = meta.seq;
        Ok(())
    }
}

/// What writing one chunk came to.
type ChunkWritten = Result<ChunkEntry, BackfillError>;

/// Writes `spool` as a chunk of `stream` (see [`Backfill::write_chunk`]).
async fn write_chunk(
    archive: Arc<ArchiveStore>,
    stream: StreamName,
    mut spool: Spool,
) -> ChunkWritten {
    spool.writer.flush().await?;
    let key = ChunkKey::new(stream.clone(), spool.first.utc_start, spool.first.seq);
    let ts_key = key.ts_key();
    let archive_err = |source: StoreError| BackfillError::Archive {
        key: ts_key.clone(),
        source,
    };
    let upload = FileUpload::open(spool.file.path()).await?;
    archive
        .storage()
        .put_source(&ts_key, Arc::new(upload))
        .await
        .map_err(|e| archive_err(e.into()))?;
    if !spool.tables.is_empty() {
        let smp_key = key.smp_key();
        let tables = Bytes::from(encode_chunk_tables(&spool.tables));
        if let Err(error) = archive.storage().put(&smp_key, tables).await {
            warn!(%stream, key = %smp_key, %error, "sample tables not written; exports compute them from the chunk");
        }
    }
    let index = ChunkIndex::from_segments((*spool.codecs).clone(), spool.records);
    archive.commit_chunk(key, index).await.map_err(archive_err)
}

/// Counters since the backfill started, and the last measure of the holes.
#[derive(Debug, Default)]
struct Progress {
    segments: u64,
    bytes: u64,
    missing_ms: i64,
    copying: Option<String>,
    error: Option<String>,
}

/// One stream's replication; see the module docs.
pub struct Backfill {
    stream: StreamName,
    sources: Vec<Source>,
    client: FeedClient,
    archive: Arc<ArchiveStore>,
    log: Arc<dyn LiveLog>,
    clock: Arc<dyn Clock>,
    dvr: DvrConfig,
    rate: u64,
    observer: Option<mpsc::UnboundedSender<ChunkEntry>>,
    report: Option<(Arc<dyn Kv>, String)>,
    settled: HashMap<(Option<u64>, u64), Instant>,
    progress: Progress,
    metrics: crate::metrics::StreamMetrics,
}

impl std::fmt::Debug for Backfill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backfill")
            .field("stream", &self.stream)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl Backfill {
    /// The replication of `stream`, or `None` when its config does not
    /// ask for it (`dvr.replicate` on a stream with `m4f://` inputs).
    pub fn new(
        stream: &StreamName,
        config: &StreamConfig,
        key: Option<&ClusterKey>,
        archive: Arc<ArchiveStore>,
        log: Arc<dyn LiveLog>,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, String> {
        let Some(dvr) = config.dvr.as_ref() else {
            return Ok(None);
        };
        let Some(rate) = dvr.replicate_rate else {
            return Ok(None);
        };
        let sources: Vec<Source> = config
            .inputs
            .iter()
            .filter_map(|i| match i {
                InputUrl::M4f { origin, stream } => Some(Source {
                    url: i.to_string(),
                    base: origin.clone(),
                    stream: stream.clone(),
                }),
                _ => None,
            })
            .collect();
        if sources.is_empty() {
            return Ok(None);
        }
        let key = key.ok_or("replicate needs the cluster_key")?;
        let client = FeedClient::new(key.clone())?;
        let metrics =
            crate::metrics::StreamMetrics::new(stream.as_str(), dvr.copy_interval_ms, None);
        Ok(Some(Self {
            stream: stream.clone(),
            sources,
            client,
            archive,
            log,
            clock,
            dvr: dvr.clone(),
            rate,
            observer: None,
            report: None,
            settled: HashMap::new(),
            progress: Progress::default(),
            metrics,
        }))
    }

    /// Sends every chunk written to `observer`, as the recorder does.
    pub fn with_observer(mut self, observer: mpsc::UnboundedSender<ChunkEntry>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Reports progress in `runtime` (the runtime bucket) as `node`.
    pub fn with_report(mut self, runtime: Arc<dyn Kv>, node: &str) -> Self {
        self.report = Some((runtime, node.to_owned()));
        self
    }

    /// Runs a pass every [`PASS_EVERY`] (every [`UNTIL_FIRST_TAPE`] while
    /// nothing is held yet) until `shutdown` turns true; a copy under way
    /// stops at once (a chunk already being written is finished, the one
    /// being gathered is not written).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        info!(stream = %self.stream, rate = self.rate, "replication started");
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {
                    let held_any = tokio::select! {
                        held_any = self.pass() => held_any,
                        _ = shutdown.changed() => break,
                    };
                    wait = if held_any { PASS_EVERY } else { UNTIL_FIRST_TAPE };
                }
                _ = shutdown.changed() => break,
            }
        }
        if let Some((kv, _)) = &self.report {
            let _ = kv.delete(&runtime_key("replication", &self.stream)).await;
        }
    }

    /// The holes now; `None` while this origin holds no tape to measure
    /// them against.
    async fn holes_now(&self) -> Option<Vec<Hole>> {
        let mut held: Vec<Held> = self
            .archive
            .chunks(&self.stream)
            .iter()
            .map(|c| Held {
                start: c.utc_start,
                end: c.utc_end,
                first_seq: c.first_seq,
                last_seq: c.last_seq,
            })
            .collect();
        if let (Ok(Some(oldest)), Ok(Some(newest))) =
            (self.log.oldest().await, self.log.newest().await)
        {
            held.push(Held {
                start: oldest.utc_start,
                end: newest.utc_end(),
                first_seq: oldest.seq,
                last_seq: newest.seq,
            });
        }
        let now = self.clock.now();
        let floor = self
            .dvr
            .depth_ms
            .map_or(UtcMs(0), |d| UtcMs(now.0.saturating_sub(d)));
        (!held.is_empty()).then(|| holes(&held, floor, self.before_first()))
    }

    /// Whether the tape before the first chunk may be copied (module docs).
    fn before_first(&self) -> bool {
        if self.dvr.max_disk_usage_percent.is_some() {
            return false;
        }
        match self.dvr.max_size_bytes {
            Some(max) => {
                let held: u64 = self
                    .archive
                    .chunks(&self.stream)
                    .iter()
                    .map(|c| c.bytes)
                    .sum();
                held < max / 10 * 9
            }
            None => true,
        }
    }

    /// One pass: every hole not settled, newest first (what a viewer most
    /// likely rewinds to). False when nothing is held yet.
    async fn pass(&mut self) -> bool {
        let Some(holes) = self.holes_now().await else {
            return false;
        };
        self.progress.missing_ms = holes.iter().map(|h| h.to.0 - h.from.0).sum();
        self.metrics.missing(self.progress.missing_ms);
        self.settled.retain(|_, at| at.elapsed() < SETTLED_FOR);
        let mut failed = None;
        for hole in holes.iter().rev() {
            if self.settled.contains_key(&(hole.after, hole.before)) {
                continue;
            }
            match self.fill(hole).await {
                Ok(0) => {
                    debug!(stream = %self.stream, from = hole.from.0, to = hole.to.0, "replication: the sources have nothing for this hole");
                    self.settled
                        .insert((hole.after, hole.before), Instant::now());
                }
                Ok(segments) => {
                    info!(stream = %self.stream, from = hole.from.0, to = hole.to.0, segments, "replication: hole filled");
                }
                Err(e) => {
                    warn!(stream = %self.stream, from = hole.from.0, to = hole.to.0, error = %e, "replication: hole not filled; asked again on the next pass");
                    self.metrics.backfill_failed();
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if failed.is_none()
            && holes
                .iter()
                .any(|h| !self.settled.contains_key(&(h.after, h.before)))
        {
            self.progress.missing_ms = self
                .holes_now()
                .await
                .unwrap_or_default()
                .iter()
                .map(|h| h.to.0 - h.from.0)
                .sum();
            self.metrics.missing(self.progress.missing_ms);
        }
        self.progress.error = failed;
        self.progress.copying = None;
        self.publish().await;
        true
    }

    /// Copies what the first answering source has of `hole`; returns the
    /// segments written.
    async fn fill(&mut self, hole: &Hole) -> Result<u64, BackfillError> {
        let start = FeedStart::At {
            utc: hole.from,
            after: hole.after,
        };
        let mut errors = Vec::new();
        let mut opened = None;
        for source in &self.sources {
            match self
                .client
                .subscribe(&source.base, &source.stream, start, self.clock.now())
                .await
            {
                Ok(sub) => {
                    opened = Some((source.url.clone(), sub));
                    break;
                }
                Err(e) => errors.push(format!("{}: {e}", source.url)),
            }
        }
        let Some((url, mut sub)) = opened else {
            return Err(BackfillError::NoSource(errors.join("; ")));
        };
        self.progress.copying = Some(url);
        let mut spool: Option<Spool> = None;
        let mut writing: Option<tokio::task::JoinHandle<ChunkWritten>> = None;
        let mut written = 0u64;
        let paced_from = Instant::now();
        let mut paced_bytes = 0u64;
        let mut reported = Instant::now();
        let outcome = loop {
            let segment = match sub.next().await {
                Ok(Some(FeedItem::Segment(s))) => s,
                // The source's tape has nothing more, or the feed ended.
                Ok(Some(FeedItem::Heartbeat { .. }) | None) => break Ok(()),
                Err(e) => break Err(BackfillError::from(e)),
            };
            match step(hole, &segment.meta) {
                Step::Skip => continue,
                Step::Done => break Ok(()),
                Step::Keep => {}
            }
            if spool
                .as_ref()
                .is_some_and(|s| !s.continues(&segment.meta, self.dvr.copy_interval_ms))
            {
                if let Some(full) = spool.take() {
                    // One chunk is written while the next one is received.
                    if let Some(previous) = writing.take() {
                        written += self.settle(previous).await?;
                    }
                    writing = Some(self.write_chunk(full));
                }
            }
            let open = match spool.as_mut() {
                Some(s) => s,
                None => spool.insert(Spool::open(&segment)?),
            };
            open.push(&segment).await?;
            paced_bytes += segment.payload.len() as u64;
            let due = paced_from + Duration::from_secs_f64(paced_bytes as f64 / self.rate as f64);
            tokio::time::sleep_until(due).await;
            if reported.elapsed() >= REPORT_EVERY {
                reported = Instant::now();
                self.publish().await;
            }
        };
        // What was gathered is whole segments of the hole: kept even when
        // the feed broke off after them.
        if let Some(previous) = writing.take() {
            written += self.settle(previous).await?;
        }
        if let Some(full) = spool.take() {
            let last = self.write_chunk(full);
            written += self.settle(last).await?;
        }
        outcome.map(|()| written)
    }

    /// Starts writing a spooled chunk beside the copy: the `.ts`, its
    /// sample tables, then the index that makes it exist. Once started it
    /// runs to the end, so a chunk is either whole or not there.
    fn write_chunk(&self, spool: Spool) -> tokio::task::JoinHandle<ChunkWritten> {
        let archive = self.archive.clone();
        let stream = self.stream.clone();
        tokio::spawn(write_chunk(archive, stream, spool))
    }

    /// Waits for a chunk's write and counts it; returns its segments.
    async fn settle(
        &mut self,
        writing: tokio::task::JoinHandle<ChunkWritten>,
    ) -> Result<u64, BackfillError> {
        let entry = writing
            .await
            .map_err(|e| std::io::Error::other(format!("the chunk writer stopped: {e}")))??;
        let segments = u64::from(entry.segments);
        info!(stream = %self.stream, key = %entry.key.ts_key(), first_seq = entry.first_seq, last_seq = entry.last_seq, bytes = entry.bytes, "replication: chunk copied");
        self.progress.segments += segments;
        self.progress.bytes += entry.bytes;
        self.metrics.backfilled(segments, entry.bytes);
        if let Some(observer) = &self.observer {
            let _ = observer.send(entry);
        }
        Ok(segments)
    }

    /// Writes the report into the runtime bucket.
    async fn publish(&self) {
        let Some((kv, node)) = &self.report else {
            return;
        };
        let p = &self.progress;
        let state = if p.error.is_some() {
            "failing"
        } else if p.copying.is_some() {
            "copying"
        } else {
            "idle"
        };
        let report = ReplicationReport {
            v: PROTO_VERSION,
            stream: self.stream.clone(),
            node: node.clone(),
            at: self.clock.now(),
            state: state.to_owned(),
            source: p.copying.clone(),
            missing_ms: p.missing_ms,
            segments: p.segments,
            bytes: p.bytes,
            error: p.error.clone(),
        };
        if let Err(e) = kv
            .put(
                &runtime_key("replication", &self.stream),
                Bytes::from(report.encode()),
            )
            .await
        {
            debug!(stream = %self.stream, error = %e, "cannot write the replication report");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(start: i64, end: i64, first_seq: u64, last_seq: u64) -> Held {
        Held {
            start: UtcMs(start),
            end: UtcMs(end),
            first_seq,
            last_seq,
        }
    }

    #[test]
    fn holes_are_between_seqs_held_and_within_the_depth() {
        // Two chunks with a hole of seqs 20..=29 between them, and the live
        // log overlapping the second chunk's end.
        let tape = [
            held(100_000, 140_000, 30, 49),
            held(40_000, 80_000, 0, 19),
            held(130_000, 150_000, 45, 54),
        ];
        assert_eq!(
            holes(&tape, UtcMs(0), true),
            vec![Hole {
                from: UtcMs(80_000),
                to: UtcMs(100_000),
                after: Some(19),
                before: 30
            }],
            "seq 0 first: nothing can come before it"
        );
        // Consecutive seqs with a time gap: the source has the gap too.
        assert!(holes(
            &[held(0, 10_000, 5, 9), held(50_000, 60_000, 10, 14)],
            UtcMs(0),
            true
        )
        .is_empty());
        // Before the first stretch, from the floor; not at all when told.
        let later = [held(50_000, 60_000, 500, 504)];
        assert_eq!(
            holes(&later, UtcMs(20_000), true),
            vec![Hole {
                from: UtcMs(20_000),
                to: UtcMs(50_000),
                after: None,
                before: 500
            }]
        );
        assert!(holes(&later, UtcMs(20_000), false).is_empty());
        // A hole older than the floor is cut at it; one wholly older, gone.
        let tape = [held(0, 10_000, 0, 4), held(50_000, 60_000, 100, 104)];
        assert_eq!(holes(&tape, UtcMs(30_000), true)[0].from, UtcMs(30_000));
        assert!(holes(&tape, UtcMs(49_900), true).is_empty());
        assert!(holes(&[], UtcMs(0), true).is_empty());
    }

    #[test]
    fn a_copy_keeps_the_seqs_strictly_inside_its_hole() {
        let hole = Hole {
            from: UtcMs(10_000),
            to: UtcMs(20_000),
            after: Some(4),
            before: 10,
        };
        let meta = |seq: u64, start: i64| SegmentMeta {
            seq,
            utc_start: UtcMs(start),
            duration: dvr_common::Ticks::from_ms(2_000),
            pts_start: dvr_common::Ticks(0),
            bytes: 188,
            flags: dvr_media::SegmentFlags::default(),
        };
        assert_eq!(step(&hole, &meta(4, 8_000)), Step::Skip);
        assert_eq!(step(&hole, &meta(5, 10_000)), Step::Keep);
        assert_eq!(step(&hole, &meta(9, 18_000)), Step::Keep);
        assert_eq!(step(&hole, &meta(10, 20_000)), Step::Done);
        assert_eq!(
            step(&hole, &meta(8, 20_000)),
            Step::Done,
            "time past the hole"
        );
        assert_eq!(
            step(&hole, &meta(8, 19_000)),
            Step::Done,
            "ends past the hole"
        );
    }

    #[tokio::test]
    async fn a_chunk_is_cut_where_the_recorder_would_and_at_the_spool_cap() {
        let segment = |seq: u64, start: i64, bytes: u64, discontinuity: bool| FeedSegment {
            meta: SegmentMeta {
                seq,
                utc_start: UtcMs(start),
                duration: dvr_common::Ticks::from_ms(2_000),
                pts_start: dvr_common::Ticks(0),
                bytes,
                flags: dvr_media::SegmentFlags {
                    discontinuity,
                    ..Default::default()
                },
            },
            payload: Bytes::from(vec![0x47; 188]),
        };
        let minute = 60_000;
        let first = segment(1, 0, 188, false);
        let mut spool = Spool::open(&first).unwrap();
        spool.push(&first).await.unwrap();
        assert!(spool.continues(&segment(2, 2_000, 188, false).meta, minute));
        assert!(
            !spool.continues(&segment(3, 2_000, 188, false).meta, minute),
            "a seq skipped"
        );
        assert!(
            !spool.continues(&segment(2, 2_000, 188, true).meta, minute),
            "a discontinuity"
        );
        assert!(
            !spool.continues(&segment(2, 60_000, 188, false).meta, minute),
            "the next window"
        );
        assert!(
            !spool.continues(&segment(2, 2_000, SPOOL_MAX_BYTES, false).meta, minute),
            "over the spool cap"
        );
        assert!(spool.continues(
            &segment(2, 2_000, SPOOL_MAX_BYTES - 188, false).meta,
            minute
        ));
    }
}
