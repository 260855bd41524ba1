//! The supervisor: makes what runs in this process follow the streams
//! bucket and the leases.
//!
//! Stream settings live in the streams KV bucket (seeded from the config
//! file, changed by the API); every process watches it, so adding,
//! changing or removing a stream takes effect without a restart. Per role:
//!
//! - **ingest** captures the streams it owns (every stream that is not a
//!   delayed channel) into their live logs;
//! - **recorder** copies the streams it owns (those with an enabled `dvr`)
//!   to the archive, and tells the others of every chunk (the catalog
//!   summary in KV and a `chunk_written` event);
//! - **packager** serves every stream's tape, refreshing a stream's catalog
//!   when the catalog summary says a recorder elsewhere wrote a chunk.
//!
//! Embedded, this process owns every stream. Distributed, an
//! [`Ownership`] per role decides, and a stream leaving the owned set has
//! its worker stopped (a recorder flushes what it holds) before the lease
//! is released, so two replicas never work on one stream at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::{ArchiveRegistry, ChunkEntry};
use dvr_bus::{Exclusive, Kv, KvOp, LiveLog, Node, Ownership, OwnershipConfig};
use dvr_common::config::{InputUrl, StreamConfig};
use dvr_common::{Clock, StreamName, Ticks, UtcMs};
use dvr_ingest::{IngestConfig, IngestStats, IngestTask, Queued, SegmentSink};
use dvr_media::{Resume, Segment, SegmenterConfig};
use dvr_packager::{Packager, StoreTape, StreamTape};
use dvr_proto::{
    catalog_key, stream_from_config_key, CatalogSummary, Event, EventKind, Versioned,
    CATALOG_KV_BUCKET, LEASES_KV_BUCKET, LOCKS_KV_BUCKET, PROTO_VERSION, RUNTIME_KV_BUCKET,
};
use dvr_recorder::{DiskMeter, RecorderConfig, StreamRecorder};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::RunConfig;
use crate::runtime::IngestReporter;

/// How long a stream without `dvr` keeps its live log (embedded mode; on
/// NATS the live stream's own retention applies).
const LIVE_ONLY_KEEP_MS: i64 = 5 * 60_000;

/// Segments ingest may have made but the live log not yet taken: about half
/// a minute at 2 s, enough for a NATS leader election, at most a few tens
/// of MB a stream.
const INGEST_QUEUE_SEGMENTS: usize = 16;

/// Which services this process runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Roles {
    pub ingest: bool,
    pub recorder: bool,
    pub packager: bool,
    pub api: bool,
    pub auth: bool,
}

impl Roles {
    /// Every service (embedded mode).
    pub const ALL: Roles = Roles {
        ingest: true,
        recorder: true,
        packager: true,
        api: true,
        auth: true,
    };

    /// Parses `ingest,recorder,…`.
    pub fn parse(list: &str) -> anyhow::Result<Roles> {
        let mut roles = Roles::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "ingest" => roles.ingest = true,
                "recorder" => roles.recorder = true,
                "packager" => roles.packager = true,
                "api" => roles.api = true,
                "auth" => roles.auth = true,
                "all" => roles = Roles::ALL,
                other => {
                    return Err(anyhow!(
                        "unknown service {other:?} in --services (known: ingest, recorder, packager, api, auth, all)"
                    ))
                }
            }
        }
        if roles == Roles::default() {
            return Err(anyhow!("--services names no service"));
        }
        Ok(roles)
    }

    /// The names, for status and logs.
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.ingest, "ingest"),
            (self.recorder, "recorder"),
            (self.packager, "packager"),
            (self.api, "api"),
            (self.auth, "auth"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// What `/status` reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub streams: usize,
    pub ingest: BTreeSet<String>,
    pub recorder: BTreeSet<String>,
    pub ingest_members: Vec<String>,
    pub recorder_members: Vec<String>,
    /// Streams the last reconcile could not start, with why.
    pub failing: BTreeMap<String, String>,
}

/// The streams bucket, decoded.
pub type Streams = BTreeMap<StreamName, StreamConfig>;

/// One process's services; see the module docs.
#[derive(Debug)]
pub struct Supervisor {
    node: Arc<Node>,
    roles: Roles,
    config: Arc<RunConfig>,
    clock: Arc<dyn Clock>,
    packager: Arc<Packager>,
    /// The process's stores, one per root, shared with the API.
    registry: Arc<ArchiveRegistry>,
    /// Which store each recorded stream's archive is in.
    stream_stores: Mutex<HashMap<StreamName, Arc<ArchiveStore>>>,
    status: std::sync::Mutex<Status>,
    ready: watch::Sender<bool>,
    /// Told of every change of the streams, so play authorization follows
    /// policies set through the API.
    authorizers: Vec<Arc<dyn dvr_bus::Authorizer>>,
    /// Where the RTMP listener's publishes go, when `rtmp.listen` is set.
    publish: Option<Arc<dvr_ingest::input::PublishHub>>,
}

struct IngestWorker {
    config: StreamConfig,
    task: IngestTask,
    trim: Option<JoinHandle<()>>,
    last: IngestStats,
    in_gap: bool,
    /// Its reports for the API; `None` when the bucket cannot be opened
    /// (the ingest runs anyway).
    reporter: Option<IngestReporter>,
}

struct RecorderWorker {
    dvr: dvr_common::config::DvrConfig,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The workers running now.
#[derive(Default)]
struct Workers {
    ingest: HashMap<StreamName, IngestWorker>,
    recorder: HashMap<StreamName, RecorderWorker>,
    /// Streams seen with `dvr.enabled: false`: when one is enabled again
    /// its recorder starts after the live log's newest segment, so the
    /// disabled period stays out of the archive (a gap).
    recording_paused: BTreeSet<StreamName>,
    tapes: HashMap<StreamName, StreamConfig>,
}

impl Supervisor {
    pub fn new(
        node: Arc<Node>,
        roles: Roles,
        config: Arc<RunConfig>,
        clock: Arc<dyn Clock>,
        packager: Arc<Packager>,
        registry: Arc<ArchiveRegistry>,
        authorizers: Vec<Arc<dyn dvr_bus::Authorizer>>,
        publish: Option<Arc<dvr_ingest::input::PublishHub>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node,
            roles,
            config,
            clock,
            packager,
            registry,
            stream_stores: Mutex::default(),
            status: std::sync::Mutex::default(),
            ready: watch::channel(false).0,
            authorizers,
            publish,
        })
    }

    /// Opens the archive of every recorded stream of `streams` (the config
    /// file's), so a store that cannot be reached fails the start.
    pub async fn open_archives(&self, streams: &Streams) -> anyhow::Result<()> {
        for (name, config) in streams {
            if config.dvr.is_some() {
                self.archive(name, config).await?;
            }
        }
        Ok(())
    }

    /// The node's bus.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The services run here.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// What `/status` shows.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether the first reconcile is done and the bus is up.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow() && self.node.is_connected()
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// Runs until `stop` turns true, then stops every worker (recorders
    /// flush) and gives up the leases.
    pub async fn run(self: Arc<Self>, streams_kv: Arc<dyn Kv>, mut stop: watch::Receiver<bool>) {
        let streams = follow_streams(streams_kv).await;
        let distributed = self.node.is_distributed();
        let (ingest_wanted_tx, ingest_wanted) = watch::channel(BTreeSet::new());
        let (recorder_wanted_tx, recorder_wanted) = watch::channel(BTreeSet::new());
        let ownership = |role: &str, wanted: watch::Receiver<BTreeSet<StreamName>>| {
            let supervisor = Arc::clone(&self);
            let role = role.to_owned();
            async move {
                let kv = supervisor.node.kv(LEASES_KV_BUCKET).await?;
                anyhow::Ok(Ownership::spawn(
                    kv,
                    OwnershipConfig::new(&role, &supervisor.node.id),
                    wanted,
                    Some(supervisor.node.events()),
                    Arc::clone(&supervisor.clock),
                ))
            }
        };
        let ingest_owner = match (distributed, self.roles.ingest) {
            (true, true) => match ownership("ingest", ingest_wanted.clone()).await {
                Ok(o) => Some(o),
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "ingest: cannot take part in ownership");
                    None
                }
            },
            _ => None,
        };
        let recorder_owner = match (distributed, self.roles.recorder) {
            (true, true) => match ownership("recorder", recorder_wanted.clone()).await {
                Ok(o) => Some(o),
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "recorder: cannot take part in ownership");
                    None
                }
            },
            _ => None,
        };
        let mut ingest_owned = ingest_owner
            .as_ref()
            .map_or_else(|| ingest_wanted.clone(), Ownership::owned);
        let mut recorder_owned = recorder_owner
            .as_ref()
            .map_or_else(|| recorder_wanted.clone(), Ownership::owned);
        let catalog_follower = (distributed && (self.roles.packager || self.roles.api))
            .then(|| tokio::spawn(Arc::clone(&self).follow_catalog()));

        let mut workers = Workers::default();
        let mut streams_rx = streams.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut policies_of: Option<Streams> = None;
        loop {
            let current = streams_rx.borrow_and_update().clone();
            if policies_of.as_ref() != Some(&current) {
                let mut config = self.config.node.clone();
                config.streams = current.clone();
                for authorizer in &self.authorizers {
                    authorizer.set_policies(&config);
                }
                policies_of = Some(current.clone());
            }
            ingest_wanted_tx.send_if_modified(|w| replace(w, ingest_streams(&current)));
            recorder_wanted_tx.send_if_modified(|w| replace(w, recorder_streams(&current)));
            let ingest_set = ingest_owned.borrow_and_update().clone();
            let recorder_set = recorder_owned.borrow_and_update().clone();
            self.reconcile(
                &current,
                &ingest_set,
                &recorder_set,
                &mut workers,
                ingest_owner.as_ref(),
                recorder_owner.as_ref(),
            )
            .await;
            self.set_status(|s| {
                s.streams = current.len();
                s.ingest = workers.ingest.keys().map(ToString::to_string).collect();
                s.recorder = workers.recorder.keys().map(ToString::to_string).collect();
                s.ingest_members = ingest_owner
                    .as_ref()
                    .map(Ownership::members)
                    .unwrap_or_default();
                s.recorder_members = recorder_owner
                    .as_ref()
                    .map(Ownership::members)
                    .unwrap_or_default();
            });
            self.ready.send_replace(true);
            tokio::select! {
                _ = streams_rx.changed() => {}
                _ = ingest_owned.changed() => {}
                _ = recorder_owned.changed() => {}
                _ = tick.tick() => self.watch_ingest(&mut workers).await,
                _ = stop.changed() => break,
            }
        }

        info!("shutting down: closing the open segments and copying them to the archive");
        for (name, worker) in workers.ingest.drain() {
            self.stop_ingest(&name, worker).await;
        }
        let stops: Vec<_> = workers
            .recorder
            .drain()
            .map(|(name, worker)| {
                let supervisor = Arc::clone(&self);
                async move { supervisor.stop_recorder(&name, worker).await }
            })
            .collect();
        futures::future::join_all(stops).await;
        if let Some(o) = ingest_owner {
            o.shutdown().await;
        }
        if let Some(o) = recorder_owner {
            o.shutdown().await;
        }
        if let Some(task) = catalog_follower {
            task.abort();
        }
    }

    /// Makes the workers match the streams and the owned sets.
    async fn reconcile(
        self: &Arc<Self>,
        streams: &Streams,
        ingest_owned: &BTreeSet<StreamName>,
        recorder_owned: &BTreeSet<StreamName>,
        workers: &mut Workers,
        ingest_owner: Option<&Ownership>,
        recorder_owner: Option<&Ownership>,
    ) {
        let mut failing = BTreeMap::new();
        if self.roles.ingest {
            let stale: Vec<StreamName> = workers
                .ingest
                .iter()
                .filter(|(name, w)| {
                    !ingest_owned.contains(*name) || streams.get(*name) != Some(&w.config)
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in stale {
                if let Some(worker) = workers.ingest.remove(&name) {
                    self.stop_ingest(&name, worker).await;
                }
                if !ingest_owned.contains(&name) {
                    if let Some(o) = ingest_owner {
                        o.released(&name);
                    }
                }
            }
            for name in ingest_owned {
                let Some(config) = streams.get(name) else {
                    continue;
                };
                if workers.ingest.contains_key(name) || is_delayed(config) {
                    continue;
                }
                match self.start_ingest(name, config).await {
                    Ok(worker) => {
                        workers.ingest.insert(name.clone(), worker);
                    }
                    Err(e) => {
                        warn!(stream = %name, error = %format!("{e:#}"), "cannot start ingest");
                        failing.insert(name.to_string(), format!("ingest: {e:#}"));
                    }
                }
            }
        }
        if self.roles.recorder {
            let stale: Vec<StreamName> = workers
                .recorder
                .iter()
                .filter(|(name, w)| {
                    !recorder_owned.contains(*name)
                        || streams.get(*name).and_then(|c| c.dvr.as_ref()) != Some(&w.dvr)
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in stale {
                let Some(worker) = workers.recorder.remove(&name) else {
                    continue;
                };
                // A flush may upload for a while; the lease is renewed
                // meanwhile and released only once the recorder stopped.
                self.stop_recorder(&name, worker).await;
                if !recorder_owned.contains(&name) {
                    if let Some(o) = recorder_owner {
                        o.released(&name);
                    }
                }
            }
            // Every recorder process notes the streams whose dvr is off, so
            // whichever takes a stream's lease when it is enabled again
            // starts after what was made meanwhile.
            workers
                .recording_paused
                .retain(|name| streams.get(name).is_some_and(|c| c.dvr.is_some()));
            workers.recording_paused.extend(
                streams
                    .iter()
                    .filter(|(_, c)| c.dvr.as_ref().is_some_and(|d| !d.enabled))
                    .map(|(name, _)| name.clone()),
            );
            for name in recorder_owned {
                let Some(config) = streams.get(name) else {
                    continue;
                };
                if workers.recorder.contains_key(name) {
                    continue;
                }
                let resumed = workers.recording_paused.remove(name);
                match self.start_recorder(name, config, resumed).await {
                    Ok(Some(worker)) => {
                        workers.recorder.insert(name.clone(), worker);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(stream = %name, error = %format!("{e:#}"), "cannot start the recorder");
                        failing.insert(name.to_string(), format!("recorder: {e:#}"));
                    }
                }
            }
        }
        if self.roles.packager || self.roles.api {
            self.reconcile_tapes(streams, &mut workers.tapes, &mut failing)
                .await;
        }
        self.set_status(|s| s.failing = failing);
    }

    /// Serves every stream's tape: recorded streams first, then delayed
    /// channels on top of their sources.
    async fn reconcile_tapes(
        &self,
        streams: &Streams,
        tapes: &mut HashMap<StreamName, StreamConfig>,
        failing: &mut BTreeMap<String, String>,
    ) {
        tapes.retain(|name, config| {
            let keep = streams.get(name) == Some(config);
            if !keep {
                self.packager.remove_stream(name.as_str());
            }
            keep
        });
        let (delayed, recorded): (Vec<_>, Vec<_>) =
            streams.iter().partition(|(_, c)| is_delayed(c));
        for (name, config) in recorded {
            if tapes.contains_key(name) {
                continue;
            }
            match self.tape(name, config).await {
                Ok(tape) => {
                    self.packager.add_stream(tape);
                    tapes.insert(name.clone(), config.clone());
                }
                Err(e) => {
                    warn!(stream = %name, error = %format!("{e:#}"), "cannot serve the stream");
                    failing.insert(name.to_string(), format!("packager: {e:#}"));
                }
            }
        }
        for (name, config) in delayed {
            if tapes.contains_key(name) {
                continue;
            }
            let Some((source, delay_ms)) = delayed_source(config) else {
                continue;
            };
            match self
                .packager
                .add_delayed(name.as_str(), source.as_str(), delay_ms)
            {
                Ok(()) => {
                    info!(stream = %name, source = %source, delay_s = delay_ms / 1000, "delayed channel");
                    tapes.insert(name.clone(), config.clone());
                }
                Err(_) => {
                    failing.insert(
                        name.to_string(),
                        format!("packager: its source {source} is not served"),
                    );
                }
            }
        }
    }

    async fn tape(&self, name: &StreamName, config: &StreamConfig) -> anyhow::Result<StreamTape> {
        let log = self.node.live_log(name).await?;
        let archived = match &config.dvr {
            Some(_) => Some(Arc::new(StoreTape::new(
                name.clone(),
                self.archive(name, config).await?,
            )) as Arc<dyn dvr_packager::ArchivedTape>),
            None => None,
        };
        let schedule = config.dvr.as_ref().and_then(|d| d.schedule.clone());
        Ok(StreamTape::new(name.to_string(), log, archived).with_schedule(schedule))
    }

    /// The archive store of a stream's root (opened once per root), with
    /// the stream's catalog loaded from a listing, so a recorder that takes
    /// a stream over continues after what the previous owner wrote.
    async fn archive(
        &self,
        name: &StreamName,
        config: &StreamConfig,
    ) -> anyhow::Result<Arc<ArchiveStore>> {
        let dvr = config
            .dvr
            .as_ref()
            .ok_or_else(|| anyhow!("stream {name} has no dvr"))?;
        let store = self
            .registry
            .open(&dvr.root)
            .await
            .map_err(|e| anyhow!("stream {name}: {e}"))?;
        let report = store
            .load(name)
            .await
            .map_err(|e| anyhow!("stream {name}: cannot load its archive: {e}"))?;
        self.stream_stores
            .lock()
            .await
            .insert(name.clone(), Arc::clone(&store));
        debug!(stream = %name, chunks = report.chunks, orphans = report.orphans.len(), bad = report.bad.len(), "archive loaded");
        if let Some(cache) = &config.cache {
            store
                .enable_disk_cache(name, cache, Arc::clone(&self.clock))
                .with_context(|| {
                    format!("stream {name}: cannot open its cache at {}", cache.path)
                })?;
        }
        Ok(store)
    }

    async fn start_ingest(
        &self,
        name: &StreamName,
        config: &StreamConfig,
    ) -> anyhow::Result<IngestWorker> {
        let log = self.node.live_log(name).await?;
        let segment_ms = config.dvr.as_ref().map_or(2000, |d| d.segment_duration_ms);
        let mut ingest = IngestConfig::new(name.to_string(), config.inputs.clone());
        ingest.segmenter = SegmenterConfig::with_target(Ticks::from_ms(segment_ms));
        ingest.resume = self.resume_point(name, config, &log).await?;
        ingest.publish = self.publish.clone();
        info!(stream = %name, next_seq = ingest.resume.next_seq, "ingest started");
        // Nothing archives a stream without a recording dvr: its embedded
        // live log keeps the live window only (NATS: the stream's max age).
        let records = config.dvr.as_ref().is_some_and(|d| d.enabled);
        let trim = (!records && !self.node.is_distributed())
            .then(|| tokio::spawn(trim_live_only(Arc::clone(&log), Arc::clone(&self.clock))));
        // A queue in front of the live log: an append held up by a NATS
        // leader election (seconds; each retried under its Nats-Msg-Id)
        // does not stop the inputs being read.
        let sink = Queued::spawn(LogSink { log }, INGEST_QUEUE_SEGMENTS);
        let task = IngestTask::spawn(ingest, Arc::clone(&self.clock), sink);
        self.publish(name, EventKind::RecordingStarted, serde_json::Map::new())
            .await;
        let reporter = match self.node.kv(RUNTIME_KV_BUCKET).await {
            Ok(kv) => Some(IngestReporter::new(kv, &self.node.id, name)),
            Err(e) => {
                warn!(stream = %name, error = %format!("{e:#}"), "the ingest's status will not be reported");
                None
            }
        };
        Ok(IngestWorker {
            config: config.clone(),
            task,
            trim,
            last: IngestStats::default(),
            in_gap: false,
            reporter,
        })
    }

    async fn stop_ingest(&self, name: &StreamName, worker: IngestWorker) {
        if let Some(trim) = worker.trim {
            trim.abort();
        }
        if let Err(e) = worker.task.stop().await {
            warn!(stream = %name, error = %e, "ingest stopped with an error");
        }
        if let Some(reporter) = worker.reporter {
            reporter.clear().await;
        }
        info!(stream = %name, "ingest stopped");
        self.publish(name, EventKind::RecordingStopped, serde_json::Map::new())
            .await;
    }

    /// Where the stream's numbering continues: after the newest segment in
    /// the live log, or in the archive (embedded: its catalog; distributed:
    /// the catalog summary), as a discontinuity.
    async fn resume_point(
        &self,
        name: &StreamName,
        config: &StreamConfig,
        log: &Arc<dyn LiveLog>,
    ) -> anyhow::Result<Resume> {
        let logged = log
            .newest()
            .await
            .with_context(|| format!("stream {name}: cannot read its live log"))?;
        let archived = if config.dvr.is_none() {
            None
        } else if self.node.is_distributed() {
            self.catalog_summary(name).await.map(|c| (c.last_seq, c.to))
        } else {
            let store = self.archive(name, config).await?;
            store.last_seq(name).zip(store.extent(name).map(|r| r.to))
        };
        let last_seq = logged.map(|m| m.seq).max(archived.map(|a| a.0));
        let tape_end = logged.map(|m| m.utc_end()).max(archived.map(|a| a.1));
        Ok(Resume {
            next_seq: last_seq.map_or(0, |s| s + 1),
            tape_end,
            discontinuity: last_seq.is_some(),
        })
    }

    async fn catalog_summary(&self, name: &StreamName) -> Option<CatalogSummary> {
        let kv = self.node.kv(CATALOG_KV_BUCKET).await.ok()?;
        let entry = kv.get(&catalog_key(name)).await.ok()??;
        CatalogSummary::decode(&entry.value).ok()
    }

    /// Starts the stream's recorder if it records; `resumed` (recording
    /// was disabled and is enabled again) starts it after the live log's
    /// newest segment, leaving what was made while disabled unarchived.
    async fn start_recorder(
        self: &Arc<Self>,
        name: &StreamName,
        config: &StreamConfig,
        resumed: bool,
    ) -> anyhow::Result<Option<RecorderWorker>> {
        let Some(dvr) = config.dvr.as_ref().filter(|d| d.enabled) else {
            return Ok(None);
        };
        let store = self.archive(name, config).await?;
        let log = self.node.live_log(name).await?;
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
        recorder_config.hot_tier_ms = self
            .node
            .hot_tier()
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let (chunks_tx, chunks) = mpsc::unbounded_channel();
        let recorder = StreamRecorder::new(
            name.clone(),
            log,
            store,
            Arc::clone(&self.clock),
            recorder_config,
        )
        .with_observer(chunks_tx)
        .skipping_to(skip_to)
        // Retention holds the key the API holds while it edits locks.
        .with_lock_edits(Exclusive::new(
            self.node.kv(LOCKS_KV_BUCKET).await?,
            &self.node.id,
        ));
        let recorder = match dvr.root.strip_prefix("file://") {
            Some(path) => recorder.with_disk(DiskMeter::new(path)),
            None => recorder,
        };
        info!(stream = %name, after_seq = ?recorder.archived_seq(), "recorder started");
        let (stop, stop_rx) = watch::channel(false);
        let supervisor = Arc::clone(self);
        let stream = name.clone();
        let task = tokio::spawn(async move {
            let announce = tokio::spawn(Arc::clone(&supervisor).announce_chunks(stream, chunks));
            recorder.run(stop_rx).await;
            // The recorder dropped its sender: the announcer ends after the
            // last chunk.
            let _ = announce.await;
        });
        Ok(Some(RecorderWorker {
            dvr: dvr.clone(),
            stop,
            task,
        }))
    }

    async fn stop_recorder(&self, name: &StreamName, worker: RecorderWorker) {
        let _ = worker.stop.send(true);
        let _ = worker.task.await;
        info!(stream = %name, "recorder stopped");
    }

    /// Tells the other processes of each chunk written: the catalog summary
    /// in KV, and a `chunk_written` event.
    async fn announce_chunks(
        self: Arc<Self>,
        stream: StreamName,
        mut chunks: mpsc::UnboundedReceiver<ChunkEntry>,
    ) {
        while let Some(entry) = chunks.recv().await {
            let summary = CatalogSummary {
                v: PROTO_VERSION,
                last_seq: entry.last_seq,
                last_chunk: entry.key.ts_key(),
                to: entry.utc_end,
            };
            match self.node.kv(CATALOG_KV_BUCKET).await {
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
            self.publish(&stream, EventKind::ChunkWritten, details)
                .await;
        }
    }

    /// Distributed packagers: reload a stream's catalog when the recorder
    /// (in another process) says it wrote past what this one knows.
    async fn follow_catalog(self: Arc<Self>) {
        loop {
            let watch = match self.node.kv(CATALOG_KV_BUCKET).await {
                Ok(kv) => kv.watch("").await,
                Err(e) => Err(e),
            };
            let mut watch = match watch {
                Ok(w) => w,
                Err(e) => {
                    debug!(error = %format!("{e:#}"), "cannot watch the catalog yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(Ok(entry)) = watch.next().await {
                if entry.op != KvOp::Put {
                    continue;
                }
                let (Some(stream), Ok(summary)) = (
                    stream_from_config_key(&entry.key),
                    CatalogSummary::decode(&entry.value),
                ) else {
                    continue;
                };
                let store = self.stream_stores.lock().await.get(&stream).cloned();
                let Some(store) = store else { continue };
                if store.last_seq(&stream) >= Some(summary.last_seq) {
                    continue;
                }
                if let Err(e) = store.load(&stream).await {
                    warn!(stream = %stream, error = %e, "cannot refresh the catalog");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Once a second: turns ingest counters into events and reports
    /// ([`IngestReporter`]), and notices an ingest that ended on its own.
    async fn watch_ingest(&self, workers: &mut Workers) {
        for (name, worker) in &mut workers.ingest {
            let now = worker.task.stats();
            if now.switches > worker.last.switches {
                let mut details = serde_json::Map::new();
                if let Some(input) = now.active_input.and_then(|i| worker.config.inputs.get(i)) {
                    details.insert("input".into(), input.to_string().into());
                }
                self.publish(name, EventKind::SourceSwitched, details).await;
            }
            if now.signal_losses > worker.last.signal_losses && !worker.in_gap {
                worker.in_gap = true;
                self.publish(name, EventKind::GapOpened, serde_json::Map::new())
                    .await;
            } else if worker.in_gap && now.segments > worker.last.segments {
                worker.in_gap = false;
                self.publish(name, EventKind::GapClosed, serde_json::Map::new())
                    .await;
            }
            if let Some(reporter) = &mut worker.reporter {
                reporter.observe(&now, &worker.config, self.clock.now());
            }
            worker.last = now;
        }
    }

    async fn publish(
        &self,
        stream: &StreamName,
        kind: EventKind,
        details: serde_json::Map<String, serde_json::Value>,
    ) {
        let event = Event {
            v: PROTO_VERSION,
            kind,
            stream: stream.clone(),
            at: self.clock.now(),
            node: self.node.id.clone(),
            details,
        };
        if let Err(e) = self.node.events().publish(&event).await {
            debug!(stream = %stream, error = %e, "cannot publish an event");
        }
    }
}

/// Keeps the stream map current from the bucket.
async fn follow_streams(kv: Arc<dyn Kv>) -> watch::Receiver<Streams> {
    let (tx, rx) = watch::channel(Streams::new());
    let initial = async {
        let mut streams = Streams::new();
        for key in kv.keys().await? {
            if let Some(entry) = kv.get(&key).await? {
                if let Some((name, config)) = decode_stream(&entry.key, &entry.value) {
                    streams.insert(name, config);
                }
            }
        }
        anyhow::Ok(streams)
    };
    match initial.await {
        Ok(streams) => {
            tx.send_replace(streams);
        }
        Err(e) => warn!(error = %format!("{e:#}"), "cannot read the streams bucket yet"),
    }
    tokio::spawn(async move {
        loop {
            match kv.watch("").await {
                Ok(mut watch) => {
                    while let Some(Ok(entry)) = watch.next().await {
                        match entry.op {
                            KvOp::Put => {
                                if let Some((name, config)) =
                                    decode_stream(&entry.key, &entry.value)
                                {
                                    tx.send_if_modified(|s| {
                                        let changed = s.get(&name) != Some(&config);
                                        s.insert(name, config);
                                        changed
                                    });
                                }
                            }
                            KvOp::Delete => {
                                if let Some(name) = stream_from_config_key(&entry.key) {
                                    tx.send_if_modified(|s| s.remove(&name).is_some());
                                }
                            }
                        }
                    }
                }
                Err(e) => debug!(error = %e, "cannot watch the streams bucket yet"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}

fn decode_stream(key: &str, value: &[u8]) -> Option<(StreamName, StreamConfig)> {
    let name = stream_from_config_key(key)?;
    let text = std::str::from_utf8(value).ok()?;
    match StreamConfig::from_doc_str(text, "the streams bucket", &format!("streams.{name}"), None) {
        Ok(config) => Some((name, config)),
        Err(e) => {
            warn!(stream = %name, error = %e, "ignoring stored settings that do not read back");
            None
        }
    }
}

fn replace(current: &mut BTreeSet<StreamName>, new: BTreeSet<StreamName>) -> bool {
    let changed = *current != new;
    *current = new;
    changed
}

/// Streams that need an ingest owner: all but delayed channels.
fn ingest_streams(streams: &Streams) -> BTreeSet<StreamName> {
    streams
        .iter()
        .filter(|(_, c)| !is_delayed(c))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Streams that need a recorder owner: those recording.
fn recorder_streams(streams: &Streams) -> BTreeSet<StreamName> {
    streams
        .iter()
        .filter(|(_, c)| c.dvr.as_ref().is_some_and(|d| d.enabled) && !is_delayed(c))
        .map(|(n, _)| n.clone())
        .collect()
}

fn is_delayed(config: &StreamConfig) -> bool {
    delayed_source(config).is_some()
}

/// The source and delay of a delayed channel (`timeshift://OTHER/N`, its
/// only input); the config file's validation makes sure of the rest.
pub fn delayed_source(config: &StreamConfig) -> Option<(StreamName, i64)> {
    match config.inputs.as_slice() {
        [InputUrl::Timeshift { source, delay_ms }] => Some((source.clone(), *delay_ms)),
        _ => None,
    }
}

/// Appends ingest's segments to the live log.
#[derive(Debug)]
struct LogSink {
    log: Arc<dyn LiveLog>,
}

impl SegmentSink for LogSink {
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

/// Default node id: the host name (a pod's name in Kubernetes) and the
/// process id, so two processes on one host differ.
pub fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "dvr".to_owned());
    format!("{host}-{}", std::process::id())
}
