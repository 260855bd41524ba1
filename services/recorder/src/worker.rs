//! One stream's recorder as this process runs it: its archive opened
//! through the process's registry, its live log, the lock edits it shares
//! with the API, and the announcement of every chunk it writes (the
//! catalog summary on the bus and a `chunk_written` event), which is how
//! packagers and ingest elsewhere learn where the archive ends.
//!
//! The supervisor decides *which* streams this process records (leases);
//! it calls [`RecorderWorker::start`] and [`RecorderWorker::stop`].

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::{ArchiveRegistry, ChunkEntry};
use dvr_bus::{Exclusive, Node};
use dvr_common::config::{DvrConfig, StreamConfig};
use dvr_common::{Clock, StreamName};
use dvr_proto::{
    catalog_key, CatalogSummary, EventKind, Versioned, CATALOG_KV_BUCKET, LOCKS_KV_BUCKET,
    PROTO_VERSION, RUNTIME_KV_BUCKET,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{Backfill, DiskMeter, RecorderConfig, StreamRecorder};

/// What every stream's recorder in this process shares.
#[derive(Debug, Clone)]
pub struct RecorderContext {
    /// The bus: live logs, buckets, events.
    pub node: Arc<Node>,
    /// The archive stores, shared with the packager and the API.
    pub registry: Arc<ArchiveRegistry>,
    pub clock: Arc<dyn Clock>,
    /// Signs a replicating stream's requests to its sources (`m4f://`);
    /// `None` without `cluster_key`.
    pub cluster_key: Option<dvr_cluster::ClusterKey>,
}

/// One stream's running recorder; see the module docs.
#[derive(Debug)]
pub struct RecorderWorker {
    name: StreamName,
    dvr: DvrConfig,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RecorderWorker {
    /// Starts the stream's recorder if it records; `resumed` (recording
    /// was disabled and is enabled again) starts it after the live log's
    /// newest segment, leaving what was made while disabled unarchived.
    pub async fn start(
        ctx: &RecorderContext,
        name: &StreamName,
        config: &StreamConfig,
        resumed: bool,
    ) -> anyhow::Result<Option<Self>> {
        let Some(dvr) = config.dvr.as_ref().filter(|d| d.enabled) else {
            return Ok(None);
        };
        let store = ctx
            .registry
            .open_stream(name, dvr, config.cache.as_ref(), Arc::clone(&ctx.clock))
            .await?;
        let log = ctx.node.live_log(name).await?;
        let skip_to = if resumed {
            log.newest()
                .await
                .with_context(|| format!("stream {name}: cannot read its live log"))?
                .map(|m| m.seq)
        } else {
            None
        };
        let mut recorder_config = RecorderConfig::with_copy_interval(dvr.copy_interval_ms);
        recorder_config.retention = dvr.into();
        recorder_config.schedule = dvr.schedule.clone();
        recorder_config.hot_tier_ms = ctx
            .node
            .hot_tier()
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let (chunks_tx, chunks) = mpsc::unbounded_channel();
        let recorder = StreamRecorder::new(
            name.clone(),
            Arc::clone(&log),
            Arc::clone(&store),
            Arc::clone(&ctx.clock),
            recorder_config,
        )
        .with_observer(chunks_tx.clone())
        .skipping_to(skip_to)
        // Retention holds the key the API holds while it edits locks.
        .with_lock_edits(Exclusive::new(
            ctx.node.kv(LOCKS_KV_BUCKET).await?,
            &ctx.node.id,
        ));
        let recorder = match dvr.root.strip_prefix("file://") {
            Some(path) => recorder.with_disk(DiskMeter::new(path)),
            None => recorder,
        };
        let backfill = match Backfill::new(
            name,
            config,
            ctx.cluster_key.as_ref(),
            Arc::clone(&store),
            log,
            Arc::clone(&ctx.clock),
        ) {
            Ok(Some(b)) => Some(
                b.with_observer(chunks_tx.clone())
                    .with_report(ctx.node.kv(RUNTIME_KV_BUCKET).await?, &ctx.node.id),
            ),
            Ok(None) => None,
            Err(e) => anyhow::bail!("stream {name}: dvr.replicate: {e}"),
        };
        drop(chunks_tx);
        info!(stream = %name, after_seq = ?recorder.archived_seq(), replicates = backfill.is_some(), "recorder started");
        let (stop, stop_rx) = watch::channel(false);
        let announcer = ctx.clone();
        let stream = name.clone();
        let task = tokio::spawn(async move {
            let announce = tokio::spawn(announce_chunks(announcer, stream, store, chunks));
            let backfill = backfill.map(|b| tokio::spawn(b.run(stop_rx.clone())));
            recorder.run(stop_rx).await;
            if let Some(b) = backfill {
                let _ = b.await;
            }
            // The recorder and the backfill dropped their senders: the
            // announcer ends after the last chunk.
            let _ = announce.await;
        });
        Ok(Some(Self {
            name: name.clone(),
            dvr: dvr.clone(),
            stop,
            task,
        }))
    }

    /// The recording settings it runs with (a change restarts it).
    pub fn dvr(&self) -> &DvrConfig {
        &self.dvr
    }

    /// Stops it after it has copied what it holds to the archive.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        info!(stream = %self.name, "recorder stopped");
    }
}

/// The catalog summary announcing `entry`, the chunk just written, with
/// the oldest segment `store` still keeps, so followers forget what
/// retention deleted.
/// A chunk older than the newest (a replication's backfill) is named in
/// `backfilled`, the rest describing the newest chunk as always.
pub fn catalog_summary(store: &ArchiveStore, entry: &ChunkEntry) -> CatalogSummary {
    let newest = store
        .chunks(&entry.key.stream)
        .into_iter()
        .max_by_key(|c| c.last_seq)
        .filter(|n| n.last_seq > entry.last_seq);
    let (last, backfilled) = match &newest {
        Some(n) => (n, Some(entry.key.ts_key())),
        None => (entry, None),
    };
    CatalogSummary {
        v: PROTO_VERSION,
        last_seq: last.last_seq,
        last_chunk: last.key.ts_key(),
        to: last.utc_end,
        first_seq: store.first_seq(&entry.key.stream),
        backfilled,
    }
}

/// Tells the other processes of each chunk written: the catalog summary in
/// KV, and a `chunk_written` event.
async fn announce_chunks(
    ctx: RecorderContext,
    stream: StreamName,
    store: Arc<ArchiveStore>,
    mut chunks: mpsc::UnboundedReceiver<ChunkEntry>,
) {
    while let Some(entry) = chunks.recv().await {
        let summary = catalog_summary(&store, &entry);
        match ctx.node.kv(CATALOG_KV_BUCKET).await {
            Ok(kv) => {
                if let Err(e) = kv
                    .put(&catalog_key(&stream), Bytes::from(summary.encode()))
                    .await
                {
                    warn!(stream = %stream, error = %e, "cannot publish the catalog summary");
                }
            }
            Err(e) => {
                warn!(stream = %stream, error = %format!("{e:#}"), "cannot open the catalog bucket");
            }
        }
        let mut details = serde_json::Map::new();
        details.insert("first_seq".into(), entry.first_seq.into());
        details.insert("last_seq".into(), entry.last_seq.into());
        details.insert("key".into(), entry.key.ts_key().into());
        ctx.node
            .announce(&stream, EventKind::ChunkWritten, ctx.clock.now(), details)
            .await;
    }
}
