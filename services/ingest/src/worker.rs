//! One stream's ingest as this process runs it: where its tape resumes,
//! its live log behind a short queue, the trimming of a stream nothing
//! archives, its events and its runtime reports.
//!
//! The supervisor decides *which* streams this process ingests (leases);
//! everything about running one lives here, so the binary only calls
//! [`IngestWorker::start`], [`IngestWorker::tick`] once a second and
//! [`IngestWorker::stop`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dvr_archive::tape::{open_tape, StreamTape, TapeEnd};
use dvr_archive::ArchiveRegistry;
use dvr_bus::{LiveLog, Node};
use dvr_common::config::StreamConfig;
use dvr_common::{Clock, StreamName, Ticks, UtcMs};
use dvr_media::{Resume, Segment, SegmenterConfig};
use dvr_proto::{
    catalog_key, CatalogSummary, EventKind, Versioned, CATALOG_KV_BUCKET, RUNTIME_KV_BUCKET,
};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::input::PublishHub;
use crate::report::IngestReporter;
use crate::service::IngestTask;
use crate::sink::{Queued, SegmentSink};
use crate::stats::IngestStats;
use crate::IngestConfig;

/// How long a stream without `dvr` keeps its live log (embedded mode; on
/// NATS the live stream's own retention applies).
const LIVE_ONLY_KEEP_MS: i64 = 5 * 60_000;

/// Segments ingest may have made but the live log not yet taken: about half
/// a minute at 2 s, enough for a NATS leader election, at most a few tens
/// of MB a stream.
const INGEST_QUEUE_SEGMENTS: usize = 16;

/// What every stream's ingest in this process shares.
#[derive(Debug, Clone)]
pub struct IngestContext {
    /// The bus: live logs, buckets, events.
    pub node: Arc<Node>,
    /// The archive stores, for where an embedded tape resumes.
    pub registry: Arc<ArchiveRegistry>,
    pub clock: Arc<dyn Clock>,
    /// Where the RTMP listener's publishes go, when `rtmp.listen` is set.
    pub publish: Option<Arc<PublishHub>>,
    /// The cluster key, for streams restreamed from other origins
    /// (`m4f://`); `None` without `cluster_key`.
    pub cluster_key: Option<dvr_cluster::ClusterKey>,
}

/// One stream's running ingest; see the module docs.
#[derive(Debug)]
pub struct IngestWorker {
    name: StreamName,
    config: StreamConfig,
    task: IngestTask,
    trim: Option<JoinHandle<()>>,
    last: IngestStats,
    in_gap: bool,
    /// Its reports for the API; `None` when the bucket cannot be opened
    /// (the ingest runs anyway).
    reporter: Option<IngestReporter>,
}

impl IngestWorker {
    /// Starts capturing `name` into its live log, numbering on from where
    /// its tape ends.
    pub async fn start(
        ctx: &IngestContext,
        name: &StreamName,
        config: &StreamConfig,
    ) -> anyhow::Result<Self> {
        let log = ctx.node.live_log(name).await?;
        let segment_ms = config.dvr.as_ref().map_or(2000, |d| d.segment_duration_ms);
        let mut ingest = IngestConfig::new(name.to_string(), config.inputs.clone());
        ingest.segmenter = SegmenterConfig::with_target(Ticks::from_ms(segment_ms));
        ingest.resume = resume_point(ctx, name, config, &log).await?;
        ingest.publish = ctx.publish.clone();
        ingest.cluster_key = ctx.cluster_key.clone();
        info!(stream = %name, next_seq = ingest.resume.next_seq, "ingest started");
        // Nothing archives a stream without a recording dvr: its embedded
        // live log keeps the live window only (NATS: the stream's max age).
        let records = config.dvr.as_ref().is_some_and(|d| d.enabled);
        let trim = (!records && !ctx.node.is_distributed())
            .then(|| tokio::spawn(trim_live_only(Arc::clone(&log), Arc::clone(&ctx.clock))));
        // A queue in front of the live log: an append held up by a NATS
        // leader election (seconds; each retried under its Nats-Msg-Id)
        // does not stop the inputs being read.
        let sink = Queued::spawn(LiveLogSink { log }, INGEST_QUEUE_SEGMENTS);
        let task = IngestTask::spawn(ingest, Arc::clone(&ctx.clock), sink);
        ctx.node
            .announce(
                name,
                EventKind::RecordingStarted,
                ctx.clock.now(),
                serde_json::Map::new(),
            )
            .await;
        let reporter = match ctx.node.kv(RUNTIME_KV_BUCKET).await {
            Ok(kv) => Some(IngestReporter::new(kv, &ctx.node.id, name)),
            Err(e) => {
                warn!(stream = %name, error = %format!("{e:#}"), "the ingest's status will not be reported");
                None
            }
        };
        Ok(Self {
            name: name.clone(),
            config: config.clone(),
            task,
            trim,
            last: IngestStats::default(),
            in_gap: false,
            reporter,
        })
    }

    /// The settings it runs with (a change restarts it).
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Closes the open segment, stops the inputs and withdraws the report.
    pub async fn stop(self, ctx: &IngestContext) {
        if let Some(trim) = self.trim {
            trim.abort();
        }
        if let Err(e) = self.task.stop().await {
            warn!(stream = %self.name, error = %e, "ingest stopped with an error");
        }
        if let Some(reporter) = self.reporter {
            reporter.clear().await;
        }
        info!(stream = %self.name, "ingest stopped");
        ctx.node
            .announce(
                &self.name,
                EventKind::RecordingStopped,
                ctx.clock.now(),
                serde_json::Map::new(),
            )
            .await;
    }

    /// Once a second: turns the counters into events (source switched, gap
    /// opened and closed) and the runtime report.
    pub async fn tick(&mut self, ctx: &IngestContext) {
        let now = self.task.stats();
        let announce = |kind, details| {
            ctx.node
                .announce(&self.name, kind, ctx.clock.now(), details)
        };
        if now.switches > self.last.switches {
            let mut details = serde_json::Map::new();
            if let Some(input) = now.active_input.and_then(|i| self.config.inputs.get(i)) {
                details.insert("input".into(), input.to_string().into());
            }
            announce(EventKind::SourceSwitched, details).await;
        }
        if now.signal_losses > self.last.signal_losses && !self.in_gap {
            self.in_gap = true;
            announce(EventKind::GapOpened, serde_json::Map::new()).await;
        } else if self.in_gap && now.segments > self.last.segments {
            self.in_gap = false;
            announce(EventKind::GapClosed, serde_json::Map::new()).await;
        }
        if let Some(reporter) = &mut self.reporter {
            reporter.observe(&now, &self.config, ctx.clock.now());
        }
        self.last = now;
    }
}

/// Where the stream's numbering continues: after the end of its tape
/// ([`StreamTape::end`]: the live log and the archive, whichever is
/// further), as a discontinuity. Distributed, the archive's end is the
/// catalog summary the recorder keeps on the bus, so a starting ingest
/// does not list the archive.
async fn resume_point(
    ctx: &IngestContext,
    name: &StreamName,
    config: &StreamConfig,
    log: &Arc<dyn LiveLog>,
) -> anyhow::Result<Resume> {
    let cannot = || format!("stream {name}: cannot read where its tape ends");
    let end = if ctx.node.is_distributed() || config.dvr.is_none() {
        let live = StreamTape::new(name.to_string(), Arc::clone(log), None)
            .end()
            .await
            .with_context(cannot)?;
        let archived = match &config.dvr {
            Some(_) => catalog_summary(&ctx.node, name).await.map(|c| TapeEnd {
                last_seq: c.last_seq,
                utc_end: c.to,
            }),
            None => None,
        };
        TapeEnd::further(live, archived)
    } else {
        open_tape(
            &ctx.registry,
            &ctx.node,
            name,
            config,
            Arc::clone(&ctx.clock),
        )
        .await?
        .end()
        .await
        .with_context(cannot)?
    };
    Ok(Resume {
        next_seq: end.map_or(0, |e| e.last_seq + 1),
        tape_end: end.map(|e| e.utc_end),
        discontinuity: end.is_some(),
    })
}

async fn catalog_summary(node: &Node, name: &StreamName) -> Option<CatalogSummary> {
    let kv = node.kv(CATALOG_KV_BUCKET).await.ok()?;
    let entry = kv.get(&catalog_key(name)).await.ok()??;
    CatalogSummary::decode(&entry.value).ok()
}

/// Appends ingest's segments to the live log.
#[derive(Debug)]
struct LiveLogSink {
    log: Arc<dyn LiveLog>,
}

impl SegmentSink for LiveLogSink {
    type Error = dvr_bus::BusError;

    async fn append(&mut self, segment: Segment) -> Result<(), Self::Error> {
        self.log.append(&segment).await
    }
}

/// Keeps the live log of a stream without DVR to a few minutes.
async fn trim_live_only(log: Arc<dyn LiveLog>, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let before = UtcMs(clock.now().0 - LIVE_ONLY_KEEP_MS);
        if let Err(e) = log.trim(before, u64::MAX).await {
            debug!(error = %e, "cannot trim a live-only log");
        }
    }
}
