//! One stream's recorder.

use std::sync::Arc;
use std::time::Duration;

use dvr_archive::key::copy_window;
use dvr_archive::store::{ArchiveStore, StoreError};
use dvr_archive::{ChunkEntry, ChunkIndex, ChunkKey, RetentionPlan};
use dvr_bus::{BusError, Exclusive, LiveLog};
use dvr_common::error::{ErrorKind, HasErrorKind};
use dvr_common::{Clock, StreamName, UtcMs};
use dvr_media::{CodecSummary, SegmentMeta};
use dvr_proto::lock_edit_key;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::RecorderConfig;
use crate::disk::DiskMeter;
use crate::upload::LiveLogUpload;

/// Why a copy failed; the recorder retries on the next tick.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// Reading the live log failed.
    #[error("recorder {stream}: {source}")]
    LiveLog {
        /// The stream.
        stream: StreamName,
        /// The live log's error.
        source: BusError,
    },
    /// A segment vanished from the live log before it was archived.
    #[error("recorder {stream}: segment {seq} is missing from the live log")]
    Missing {
        /// The stream.
        stream: StreamName,
        /// The segment.
        seq: u64,
    },
    /// Writing to the archive failed.
    #[error("recorder {stream}: chunk {key}: {source}")]
    Archive {
        /// The stream.
        stream: StreamName,
        /// The chunk's object key.
        key: String,
        /// The storage error.
        source: StoreError,
    },
}

/// Why a retention pass deleted nothing; the next pass tries again.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The stream's lock-edit key could not be held (an editor kept it past
    /// the wait, or the bus failed).
    #[error("retention of {stream}: cannot hold the lock-edit key: {source}")]
    LockKey {
        /// The stream.
        stream: StreamName,
        /// The bus error.
        source: BusError,
    },
    /// The file system under a `file://` root could not be measured.
    #[error("retention of {stream}: cannot measure the disk at {path}: {source}")]
    Disk {
        /// The stream.
        stream: StreamName,
        /// The directory measured.
        path: String,
        /// The statvfs error.
        source: std::io::Error,
    },
    /// Reading the locks or deleting chunks failed.
    #[error("retention of {stream}: {source}")]
    Archive {
        /// The stream.
        stream: StreamName,
        /// The storage error.
        source: StoreError,
    },
}

impl HasErrorKind for RecorderError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            RecorderError::LiveLog { source, .. } => source.error_kind(),
            RecorderError::Missing { .. } => ErrorKind::Internal,
            RecorderError::Archive { source, .. } => source.error_kind(),
        }
    }
}

/// A run of failed copies: when it began, how many attempts failed, when to
/// try next.
#[derive(Debug)]
struct Outage {
    since: Instant,
    failures: u32,
    retry_at: Instant,
}

/// The wait after the `failures`-th failure in a row: `first` doubled per
/// failure after the first, capped at `max`.
fn backoff(first: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    first.saturating_mul(factor).min(max)
}

/// Copies one stream's live log to the archive.
#[derive(Debug)]
pub struct StreamRecorder {
    stream: StreamName,
    log: Arc<dyn LiveLog>,
    archive: Arc<ArchiveStore>,
    clock: Arc<dyn Clock>,
    config: RecorderConfig,
    /// The last seq known to be in the archive.
    archived: Option<u64>,
    metrics: crate::metrics::StreamMetrics,
    /// Told of every chunk written (distributed mode publishes them).
    observer: Option<mpsc::UnboundedSender<ChunkEntry>>,
    /// Held around each retention pass, as lock editors hold it around an
    /// edit of `locks.json`.
    lock_edits: Option<Exclusive>,
    /// The file system a `file://` root is on, for a disk-percentage limit.
    disk: Option<DiskMeter>,
}

impl StreamRecorder {
    /// A recorder that continues after what the archive's catalog holds.
    pub fn new(
        stream: StreamName,
        log: Arc<dyn LiveLog>,
        archive: Arc<ArchiveStore>,
        clock: Arc<dyn Clock>,
        config: RecorderConfig,
    ) -> Self {
        let archived = archive.last_seq(&stream);
        let metrics = crate::metrics::StreamMetrics::new(
            stream.as_str(),
            config.copy_interval_ms,
            config.hot_tier_ms,
        );
        Self {
            metrics,
            stream,
            log,
            archive,
            clock,
            config,
            archived,
            observer: None,
            lock_edits: None,
            disk: None,
        }
    }

    /// Measures `disk` on each retention pass, for the policy's
    /// disk-percentage limit (a `file://` root; the config refuses the limit
    /// on object stores).
    pub fn with_disk(mut self, disk: DiskMeter) -> Self {
        self.disk = Some(disk);
        self
    }

    /// Runs each retention pass while holding the stream's key in
    /// `lock_edits` (a [`Exclusive`] over the locks bucket), the key every
    /// lock editor holds: a lock written while retention plans is either
    /// read by the plan or waits until the deletes are done, and is never
    /// deleted under it. Without it retention reads `locks.json` unguarded
    /// (a process with no lock editors besides itself).
    pub fn with_lock_edits(mut self, lock_edits: Exclusive) -> Self {
        self.lock_edits = Some(lock_edits);
        self
    }

    /// Treats every segment up to `seq` as done: they are never archived
    /// (recording was disabled while they were made). Does nothing for a
    /// seq the archive already passed.
    pub fn skipping_to(mut self, seq: Option<u64>) -> Self {
        self.archived = self.archived.max(seq);
        self
    }

    /// Sends every chunk written, once it is in the archive, to `observer`.
    pub fn with_observer(mut self, observer: mpsc::UnboundedSender<ChunkEntry>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The last archived seq.
    pub fn archived_seq(&self) -> Option<u64> {
        self.archived
    }

    /// Writes every closed copy window still only in the live log; with
    /// `flush`, the open window too (at shutdown). Returns the chunks written.
    pub async fn copy(&mut self, flush: bool) -> Result<usize, RecorderError> {
        let now = self.clock.now();
        let pending = self
            .log
            .segments_after(self.archived)
            .await
            .map_err(|source| self.live_log_error(source))?;
        let groups = self.chunk_groups(&pending).await?;
        let mut written = 0;
        let count = groups.len();
        for (i, group) in groups.into_iter().enumerate() {
            let (_, window_end) = copy_window(group[0].utc_start, self.config.copy_interval_ms);
            let closed = i + 1 < count || now.0 >= window_end.0 + self.config.close_grace_ms;
            if !closed && !flush {
                break;
            }
            for run in self.scheduled(&group) {
                let started = Instant::now();
                let result = self.write_chunk(run).await;
                self.metrics
                    .chunk(&result, run, started.elapsed(), self.clock.now());
                result?;
                written += 1;
            }
            // What the schedule left out is done with too: never archived.
            self.archived = self.archived.max(group.last().map(|m| m.seq));
        }
        let keep_after =
            UtcMs(now.0 - self.config.copy_interval_ms - self.config.live_log_margin_ms);
        let keep_seq = self.archived.map_or(0, |a| a + 1);
        self.log
            .trim(keep_after, keep_seq)
            .await
            .map_err(|source| self.live_log_error(source))?;
        Ok(written)
    }

    /// The runs of `group` to archive: all of it without a schedule, else
    /// each run of consecutive segments that start inside it (a chunk's
    /// segments stay consecutive; the holes show as gaps in the catalog).
    fn scheduled<'g>(&self, group: &'g [SegmentMeta]) -> Vec<&'g [SegmentMeta]> {
        let Some(schedule) = &self.config.schedule else {
            return vec![group];
        };
        let runs: Vec<&[SegmentMeta]> = group
            .chunk_by(|a, b| schedule.contains(a.utc_start) == schedule.contains(b.utc_start))
            .filter(|run| schedule.contains(run[0].utc_start))
            .collect();
        let kept: usize = runs.iter().map(|r| r.len()).sum();
        if kept < group.len() {
            self.metrics.unscheduled(group.len() - kept);
            debug!(
                stream = %self.stream,
                left_out = group.len() - kept,
                first_seq = group[0].seq,
                "segments outside the recording schedule are not archived"
            );
        }
        runs
    }

    fn live_log_error(&self, source: BusError) -> RecorderError {
        RecorderError::LiveLog {
            stream: self.stream.clone(),
            source,
        }
    }

    /// Splits pending segments into chunks: one per copy window, and a new
    /// one where the tracks change (an index describes one program).
    async fn chunk_groups(
        &self,
        pending: &[SegmentMeta],
    ) -> Result<Vec<Vec<SegmentMeta>>, RecorderError> {
        let mut groups: Vec<Vec<SegmentMeta>> = Vec::new();
        let mut group_codecs: Option<Arc<CodecSummary>> = None;
        for meta in pending {
            let codecs = self
                .log
                .codecs(meta.seq)
                .await
                .map_err(|source| self.live_log_error(source))?;
            let same_window = groups.last().and_then(|g| g.first()).is_some_and(|first| {
                copy_window(first.utc_start, self.config.copy_interval_ms)
                    == copy_window(meta.utc_start, self.config.copy_interval_ms)
            });
            let same_codecs = match (&group_codecs, &codecs) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                _ => true,
            };
            if same_window && same_codecs {
                if let Some(g) = groups.last_mut() {
                    g.push(*meta);
                }
            } else {
                groups.push(vec![*meta]);
                group_codecs = codecs;
            }
        }
        Ok(groups)
    }

    async fn write_chunk(&mut self, group: &[SegmentMeta]) -> Result<(), RecorderError> {
        let first = group[0];
        let key = ChunkKey::new(self.stream.clone(), first.utc_start, first.seq);
        let ts_key = key.ts_key();
        let archive_err = |source: StoreError| RecorderError::Archive {
            stream: self.stream.clone(),
            key: ts_key.clone(),
            source,
        };
        let codecs = self
            .log
            .codecs(first.seq)
            .await
            .map_err(|source| self.live_log_error(source))?
            .map(|c| (*c).clone())
            .unwrap_or_default();
        let mut records = Vec::with_capacity(group.len());
        for meta in group {
            let length = u32::try_from(meta.bytes).map_err(|_| RecorderError::Missing {
                stream: self.stream.clone(),
                seq: meta.seq,
            })?;
            records.push((
                meta.seq,
                meta.utc_start,
                meta.duration,
                meta.pts_start,
                length,
                meta.flags,
            ));
        }
        // One PUT streamed from the live log (parts only past 5 GiB).
        let source = Arc::new(LiveLogUpload::new(
            self.stream.clone(),
            Arc::clone(&self.log),
            group,
        ));
        self.archive
            .storage()
            .put_source(&ts_key, Arc::clone(&source) as _)
            .await
            .map_err(|e| archive_err(e.into()))?;
        // The sample tables (MP4 export) before the index that makes the
        // chunk exist, so a chunk that exists has them. They are optional:
        // a failed write is logged, and readers compute them from the `.ts`.
        if let Some(tables) = source.sample_tables() {
            let smp_key = key.smp_key();
            if let Err(error) = self.archive.storage().put(&smp_key, tables).await {
                warn!(stream = %self.stream, key = %smp_key, %error, "sample tables not written; exports compute them from the chunk");
            }
        }
        let index = ChunkIndex::from_segments(codecs, records);
        let entry = self
            .archive
            .commit_chunk(key, index)
            .await
            .map_err(archive_err)?;
        info!(
            stream = %self.stream,
            key = %ts_key,
            segments = entry.segments,
            bytes = entry.bytes,
            "chunk written"
        );
        self.archived = Some(entry.last_seq);
        if let Some(observer) = &self.observer {
            let _ = observer.send(entry);
        }
        Ok(())
    }

    /// Runs until `shutdown` turns true, then flushes the open window.
    ///
    /// While the archive fails (a store that is down, a network partition)
    /// the segments stay in the live log and the copy is retried with a
    /// capped exponential backoff rather than on every tick, with one
    /// warning when the outage starts and one line when it ends; retention
    /// waits for the store to come back. The backlog then goes up oldest
    /// first under the same deterministic keys, so a window that failed
    /// half-way is rewritten, never duplicated.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retention = tokio::time::interval(self.config.retention_every);
        let mut outage: Option<Outage> = None;
        let mut hot_tier_warned = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let pending = self.log.segments_after(self.archived).await.unwrap_or_default();
                    let oldest = pending.first().map(|m| m.utc_start);
                    self.metrics.backlog(oldest, self.clock.now());
                    self.watch_hot_tier(oldest, &mut hot_tier_warned);
                    if outage.as_ref().is_some_and(|o| Instant::now() < o.retry_at) {
                        continue;
                    }
                    match self.copy(false).await {
                        Ok(chunks) => {
                            if let Some(o) = outage.take() {
                                info!(
                                    stream = %self.stream,
                                    failed_attempts = o.failures,
                                    outage_secs = o.since.elapsed().as_secs(),
                                    chunks,
                                    "archive reachable again; backlog uploaded"
                                );
                            }
                        }
                        Err(e) => {
                            self.metrics.copy_failed(&e);
                            let o = outage.get_or_insert_with(|| {
                                warn!(
                                    stream = %self.stream,
                                    error = %e,
                                    "cannot copy to the archive; keeping the segments in the live log and retrying with backoff"
                                );
                                Outage { since: Instant::now(), failures: 0, retry_at: Instant::now() }
                            });
                            o.failures += 1;
                            let wait = backoff(self.config.tick, self.config.retry_backoff_max, o.failures);
                            o.retry_at = Instant::now() + wait;
                            debug!(stream = %self.stream, failures = o.failures, wait_ms = wait.as_millis() as u64, error = %e, "copy to the archive failed again");
                        }
                    }
                }
                _ = retention.tick() => {
                    if outage.is_none() {
                        self.enforce_retention().await;
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        for attempt in 1..=3 {
            match self.copy(true).await {
                Ok(_) => break,
                Err(e) => warn!(attempt, error = %e, "final copy at shutdown failed"),
            }
        }
    }

    /// One retention pass: reads the locks, plans and deletes, all under
    /// the stream's lock-edit key when [`Self::with_lock_edits`] gave one.
    pub async fn retain(&self) -> Result<RetentionPlan, RetentionError> {
        let pass = async {
            let disk = match &self.disk {
                Some(meter) if self.config.retention.max_disk_usage_percent.is_some() => {
                    Some(meter.measure().map_err(|source| RetentionError::Disk {
                        stream: self.stream.clone(),
                        path: meter.path().display().to_string(),
                        source,
                    })?)
                }
                _ => None,
            };
            self.archive
                .enforce_retention(&self.stream, &self.config.retention, self.clock.now(), disk)
                .await
                .map_err(|source| RetentionError::Archive {
                    stream: self.stream.clone(),
                    source,
                })
        };
        match &self.lock_edits {
            None => pass.await,
            Some(exclusive) => exclusive
                .run(&lock_edit_key(&self.stream), pass)
                .await
                .map_err(|source| RetentionError::LockKey {
                    stream: self.stream.clone(),
                    source,
                })?,
        }
    }

    /// Warns once when the oldest unarchived segment has used three
    /// quarters of the hot tier's keep time (and once when it is back
    /// under): past it, the live log drops segments never archived.
    fn watch_hot_tier(&self, oldest: Option<UtcMs>, warned: &mut bool) {
        let Some(hot_tier_ms) = self.config.hot_tier_ms else {
            return;
        };
        let age_ms = oldest.map_or(0, |t| self.clock.now().0 - t.0);
        let near = age_ms > hot_tier_ms / 4 * 3;
        if near && !*warned {
            warn!(
                stream = %self.stream,
                backlog_secs = age_ms / 1000,
                hot_tier_secs = hot_tier_ms / 1000,
                "the archive backlog nears what the live log keeps: segments older than hot_tier_secs expire unarchived"
            );
        } else if !near && *warned {
            info!(stream = %self.stream, backlog_secs = age_ms / 1000, "the archive backlog is back within the hot tier's budget");
        }
        *warned = near;
    }

    async fn enforce_retention(&self) {
        match self.retain().await {
            Ok(plan) if !plan.delete.is_empty() => {
                self.metrics
                    .retention(Some((plan.delete.len(), plan.freed_bytes)));
                info!(stream = %self.stream, chunks = plan.delete.len(), bytes = plan.freed_bytes, "retention deleted chunks");
            }
            Ok(_) => {}
            Err(e) => {
                self.metrics.retention(None);
                warn!(stream = %self.stream, error = %e, "retention failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_the_tick_doubles_and_is_capped() {
        let (tick, max) = (Duration::from_secs(1), Duration::from_secs(15));
        let waits: Vec<u64> = (1..=7).map(|n| backoff(tick, max, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 15, 15, 15]);
        assert_eq!(backoff(tick, max, u32::MAX), max);
    }
}
