//! Saved MP4 exports (the seeds' `save-mp4`, the API's export): jobs in the
//! exports bucket ([`dvr_proto::EXPORTS_KV_BUCKET`]) that a packager
//! replica writes into the stream's archive store.
//!
//! **Who runs a job.** Every packager process runs an [`ExportRunner`]. It
//! watches the bucket and, every [`RESCAN`], lists it; for each job not
//! done or failed it tries to hold the job's key
//! ([`dvr_proto::export_held_key`], `dvr_bus::Exclusive`). The holder runs
//! it, renewing the hold; a replica that dies stops renewing, and another
//! takes the job over after the hold's TTL and writes it again from the
//! start. Job state lives on the bus, never in one packager.
//!
//! **What is written.** The same bytes `archive-FROM-DUR.mp4` answers
//! (with `precise` and `ignore_gaps` as asked, and the job's `meta` in
//! `moov/udta/meta/ilst`), produced by the packager's
//! own request path without the playback gate (an export is an admin's
//! request, checked by the API), streamed into a storage writer
//! (`Storage::put_writer`: S3 multipart, Swift segments, a file renamed
//! into place), so nothing is visible under the key until the whole file
//! is, and a crash leaves no object claiming to be complete. Progress
//! (`bytes` of `total`) is written to the job at most every
//! [`PROGRESS_EVERY`].
//!
//! **Records expire.** A done or failed job's record is deleted once it
//! has not changed for the retention (`packager.export_retention`, 7 days
//! by default) by every runner's rescan ([`expire`]), so the bucket, and
//! the API's list that reads it, holds the jobs of that window only. The
//! sweep is the same on NATS and in the embedded bucket; a bucket
//! `max_age` would also drop jobs still queued or running.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use dvr_archive::ArchiveRegistry;
use dvr_bus::{BusError, Exclusive, Kv, KvEntry, KvOp};
use dvr_common::config::StreamConfig;
use dvr_common::{Clock, HasErrorKind, UtcMs};
use dvr_proto::{
    export_held_key, export_job_key, export_object_key, stream_config_key, ExportJob, ExportState,
    Versioned,
};
use futures_util::StreamExt;
use tracing::{info, warn};

use crate::config::RequestContext;
use crate::service::Packager;

/// How often the bucket is listed for jobs nobody runs (a holder that
/// died frees its job only by not renewing, which no watch reports).
pub const RESCAN: Duration = Duration::from_secs(10);
/// How often a running job's progress is written.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// A job's hold not renewed for this long is free (renewed every third of
/// it while the job runs).
pub const HOLD_TTL: Duration = Duration::from_secs(6);
/// How long a replica waits for a held job before it lets go until the
/// next rescan. Longer than [`HOLD_TTL`]: a waiter takes a hold over only
/// once it has seen it unrenewed for the whole TTL, so a shorter wait
/// would never take over the job of a replica that died.
const HOLD_WAIT: Duration = Duration::from_secs(8);

/// Runs the export jobs this replica can take; see the module docs.
#[allow(
    missing_debug_implementations,
    reason = "holds the packager, which is not Debug"
)]
pub struct ExportRunner {
    packager: Arc<Packager>,
    jobs: Arc<dyn Kv>,
    streams: Arc<dyn Kv>,
    registry: Arc<ArchiveRegistry>,
    clock: Arc<dyn Clock>,
    node: String,
    retention: Duration,
    exclusive: Exclusive,
    /// Jobs this replica is trying or running now.
    busy: Mutex<HashSet<String>>,
}

impl ExportRunner {
    /// A runner over the exports bucket `jobs` and the streams bucket
    /// `streams` (where each stream's archive root is), writing through
    /// `registry`; finished jobs' records go after `retention`.
    pub fn new(
        packager: Arc<Packager>,
        jobs: Arc<dyn Kv>,
        streams: Arc<dyn Kv>,
        registry: Arc<ArchiveRegistry>,
        clock: Arc<dyn Clock>,
        node: &str,
        retention: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            exclusive: Exclusive::new(Arc::clone(&jobs), node).with_timing(HOLD_TTL, HOLD_WAIT),
            packager,
            jobs,
            streams,
            registry,
            clock,
            node: node.to_owned(),
            retention,
            busy: Mutex::default(),
        })
    }

    /// Follows the bucket until the process ends.
    pub async fn run(self: Arc<Self>) {
        let mut rescan = tokio::time::interval(RESCAN);
        loop {
            let mut watch = match self.jobs.watch("job.").await {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "exports: cannot watch the jobs");
                    rescan.tick().await;
                    continue;
                }
            };
            loop {
                tokio::select! {
                    entry = watch.next() => match entry {
                        Some(Ok(entry)) if entry.op == KvOp::Put => self.consider(&entry.value),
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = rescan.tick() => match self.jobs.list("job.").await {
                        Ok(entries) => {
                            for entry in entries.iter().filter(|e| e.op == KvOp::Put) {
                                self.consider(&entry.value);
                            }
                            let now = self.clock.now();
                            if let Err(e) = expire(&*self.jobs, &entries, now, self.retention).await {
                                warn!(error = %e, "exports: cannot delete expired jobs");
                            }
                        }
                        Err(e) => warn!(error = %e, "exports: cannot list the jobs"),
                    },
                }
            }
        }
    }

    /// Tries a job that is not over, unless this replica already is.
    fn consider(self: &Arc<Self>, value: &Bytes) {
        let Ok(job) = ExportJob::decode(value) else {
            return;
        };
        if matches!(job.state, ExportState::Done | ExportState::Failed) {
            return;
        }
        if !self.lock_busy().insert(job.id.clone()) {
            return;
        }
        let runner = Arc::clone(self);
        tokio::spawn(async move {
            let id = job.id.clone();
            // Held elsewhere: the holder runs it (or frees it by dying).
            let _ = runner
                .exclusive
                .run(&export_held_key(&id), runner.run_job(&id))
                .await;
            runner.lock_busy().remove(&id);
        });
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs job `id` while holding it: reads its record again (it may have
    /// finished meanwhile), writes the file, records the outcome.
    async fn run_job(&self, id: &str) {
        let Ok(Some((mut job, mut revision))) = self.read(id).await else {
            return;
        };
        if matches!(job.state, ExportState::Done | ExportState::Failed) {
            return;
        }
        job.state = ExportState::Running;
        job.node = Some(self.node.clone());
        job.bytes = 0;
        revision = self.save(&mut job, revision).await.unwrap_or(revision);
        info!(job = %job.id, stream = %job.stream, file = %job.file, "export started");
        let outcome = self.write(&mut job, &mut revision).await;
        match outcome {
            Ok(len) => {
                job.state = ExportState::Done;
                job.bytes = len;
                job.total = Some(len);
                info!(job = %job.id, bytes = len, "export written");
            }
            Err(why) => {
                job.state = ExportState::Failed;
                warn!(job = %job.id, error = %why, "export failed");
                job.error = Some(why);
            }
        }
        let _ = self.save(&mut job, revision).await;
    }

    async fn read(&self, id: &str) -> Result<Option<(ExportJob, u64)>, BusError> {
        let Some(entry) = self.jobs.get(&export_job_key(id)).await? else {
            return Ok(None);
        };
        Ok(ExportJob::decode(&entry.value)
            .ok()
            .map(|job| (job, entry.revision)))
    }

    /// Writes the record if it is still the one read (a delete by the API
    /// in between wins).
    async fn save(&self, job: &mut ExportJob, revision: u64) -> Result<u64, BusError> {
        job.updated_at = self.clock.now();
        self.jobs
            .update(
                &export_job_key(&job.id),
                Bytes::from(job.encode()),
                revision,
            )
            .await
    }

    /// Writes the MP4; its length, or why not.
    async fn write(&self, job: &mut ExportJob, revision: &mut u64) -> Result<u64, String> {
        let root = self.root_of(job).await?;
        let store = self
            .registry
            .get(&root)
            .map_err(|e| format!("the archive of {}: {e}", job.stream))?;
        let storage = Arc::clone(store.storage());
        let key = export_object_key(&job.stream, &job.file);
        if !job.overwrite {
            match storage.stat(&key).await {
                Ok(Some(_)) => {
                    return Err(format!(
                        "{key} exists in {}; ask with overwrite to replace it",
                        storage.uri()
                    ))
                }
                Ok(None) => {}
                Err(e) => return Err(format!("{key}: {e}")),
            }
        }
        let path = format!("/{}/archive-{}-{}.mp4", job.stream, job.from, job.duration);
        let mut query = Vec::new();
        if job.precise {
            query.push("precise=true");
        }
        if job.ignore_gaps {
            query.push("ignore_gaps=true");
        }
        let query = query.join("&");
        let response = self
            .packager
            .answer_ungated(
                &path,
                (!query.is_empty()).then_some(query.as_str()),
                &RequestContext {
                    mp4_tags: job.meta.clone(),
                    ..RequestContext::default()
                },
            )
            .await;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap_or_default();
            return Err(format!(
                "{path}: {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        job.total = response
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let mut writer = storage
            .put_writer(&key)
            .await
            .map_err(|e| format!("{key}: {e}"))?;
        let mut body = response.into_body().into_data_stream();
        let mut written = 0u64;
        let mut reported = tokio::time::Instant::now();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(format!("reading the tape: {e}"));
                }
            };
            written += chunk.len() as u64;
            if let Err(e) = writer.write(chunk).await {
                let _ = writer.abort().await;
                return Err(format!("{key}: {e} ({:?})", e.error_kind()));
            }
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = tokio::time::Instant::now();
                job.bytes = written;
                if let Ok(r) = self.save(job, *revision).await {
                    *revision = r;
                }
            }
        }
        writer.finish().await.map_err(|e| format!("{key}: {e}"))
    }

    /// The stream's archive root, from its settings in the streams bucket.
    async fn root_of(&self, job: &ExportJob) -> Result<String, String> {
        let entry = self
            .streams
            .get(&stream_config_key(&job.stream))
            .await
            .map_err(|e| format!("reading stream {}: {e}", job.stream))?
            .ok_or_else(|| format!("stream {} no longer exists", job.stream))?;
        let text = String::from_utf8_lossy(&entry.value);
        let config = StreamConfig::from_doc_str(
            &text,
            "the streams bucket",
            &format!("streams.{}", job.stream),
            None,
        )
        .map_err(|e| format!("stream {}: {e}", job.stream))?;
        config
            .dvr
            .map(|d| d.root)
            .ok_or_else(|| format!("stream {} no longer records", job.stream))
    }
}

/// Deletes the records among `entries` of jobs done or failed that have
/// not changed for `retention` at `now`; how many went. Jobs queued or
/// running stay whatever their age (a runner finishes or fails them).
pub async fn expire(
    jobs: &dyn Kv,
    entries: &[KvEntry],
    now: UtcMs,
    retention: Duration,
) -> Result<usize, BusError> {
    let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut deleted = 0;
    for entry in entries.iter().filter(|e| e.op == KvOp::Put) {
        let Ok(job) = ExportJob::decode(&entry.value) else {
            continue;
        };
        let over = matches!(job.state, ExportState::Done | ExportState::Failed);
        if over && now.0.saturating_sub(job.updated_at.0) >= retention {
            jobs.delete(&entry.key).await?;
            info!(job = %job.id, state = ?job.state, "exports: job record expired");
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvr_bus::MemoryKv;
    use dvr_common::{SimulatedClock, StreamName};
    use dvr_proto::PROTO_VERSION;

    fn job(id: &str, state: ExportState, at: UtcMs) -> ExportJob {
        ExportJob {
            v: PROTO_VERSION,
            id: id.into(),
            stream: StreamName::new("ch1").unwrap(),
            from: 1_700_000_000,
            duration: 60,
            file: format!("{id}.mp4"),
            precise: false,
            ignore_gaps: false,
            overwrite: false,
            meta: Vec::new(),
            state,
            node: None,
            bytes: 0,
            total: None,
            error: None,
            created_at: at,
            updated_at: at,
        }
    }

    async fn left(kv: &MemoryKv) -> Vec<String> {
        let mut keys = kv.keys().await.unwrap();
        keys.sort();
        keys
    }

    /// On a simulated clock: finished jobs go once unchanged for the
    /// retention, not a millisecond before; queued and running stay.
    #[tokio::test]
    async fn finished_jobs_expire_after_the_retention() {
        let kv = MemoryKv::new(dvr_proto::EXPORTS_KV_BUCKET);
        let clock = SimulatedClock::new(UtcMs(1_000_000));
        let retention = Duration::from_secs(3600);
        let t0 = clock.now();
        for (id, state) in [
            ("d0", ExportState::Done),
            ("f0", ExportState::Failed),
            ("q0", ExportState::Queued),
            ("r0", ExportState::Running),
        ] {
            kv.put(
                &export_job_key(id),
                Bytes::from(job(id, state, t0).encode()),
            )
            .await
            .unwrap();
        }
        clock.advance_ms(1_800_000);
        kv.put(
            &export_job_key("d1"),
            Bytes::from(job("d1", ExportState::Done, clock.now()).encode()),
        )
        .await
        .unwrap();
        clock.advance_ms(1_800_000 - 1);
        let entries = kv.list("job.").await.unwrap();
        assert_eq!(
            expire(&kv, &entries, clock.now(), retention).await.unwrap(),
            0
        );
        clock.advance_ms(1);
        let entries = kv.list("job.").await.unwrap();
        assert_eq!(
            expire(&kv, &entries, clock.now(), retention).await.unwrap(),
            2
        );
        assert_eq!(
            left(&kv).await,
            ["job.d1", "job.q0", "job.r0"].map(String::from)
        );
        clock.advance_ms(1_800_000);
        let entries = kv.list("job.").await.unwrap();
        assert_eq!(
            expire(&kv, &entries, clock.now(), retention).await.unwrap(),
            1
        );
        assert_eq!(left(&kv).await, ["job.q0", "job.r0"].map(String::from));
    }
}
