//! The supervisor: makes what runs in this process follow the streams
//! bucket and the leases.
//!
//! Stream settings live in the streams KV bucket (seeded from the config
//! file, changed by the API); every process watches it, so adding,
//! changing or removing a stream takes effect without a restart. Per role:
//!
//! - **ingest** captures the streams it owns (every stream that is not a
//!   delayed channel, and an on-demand stream only while a packager noted
//!   a request for it within its `on_demand` time) into their live logs
//!   ([`IngestWorker`]);
//! - **recorder** copies the streams it owns (those with an enabled `dvr`)
//!   to the archive and tells the others of every chunk ([`RecorderWorker`]);
//! - **packager** serves every stream's tape ([`Tapes`]), following the
//!   catalog when the recorder runs elsewhere.
//!
//! What it takes to run one stream in a role is that service's own code;
//! this module only decides which streams run here.
//!
//! Embedded, this process owns every stream. Distributed, an
//! [`Ownership`] per role decides, and a stream leaving the owned set has
//! its worker stopped (a recorder flushes what it holds) before the lease
//! is released, so two replicas never work on one stream at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use dvr_archive::ArchiveRegistry;
use dvr_bus::{Kv, KvOp, Node, Ownership, OwnershipConfig};
use dvr_common::config::StreamConfig;
use dvr_common::{Clock, StreamName};
use dvr_ingest::{IngestContext, IngestWorker};
use dvr_packager::{Packager, Tapes};
use dvr_proto::{stream_from_config_key, DEMAND_ROLE, LEASES_KV_BUCKET, RUNTIME_KV_BUCKET};
use dvr_recorder::{RecorderContext, RecorderWorker};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::RunConfig;

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
    /// What this process's ingest and recorder workers share.
    ingest: IngestContext,
    recorder: RecorderContext,
    status: std::sync::Mutex<Status>,
    ready: watch::Sender<bool>,
    /// Told of every change of the streams, so play authorization follows
    /// policies set through the API.
    authorizers: Vec<Arc<dyn dvr_bus::Authorizer>>,
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
    /// The packager's tapes, when this process serves or reports them.
    tapes: Option<Tapes>,
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
        ingest: IngestContext,
    ) -> Arc<Self> {
        let recorder = RecorderContext {
            node: Arc::clone(&node),
            registry: Arc::clone(&registry),
            clock: Arc::clone(&clock),
            cluster_key: ingest.cluster_key.clone(),
        };
        Arc::new(Self {
            node,
            roles,
            config,
            clock,
            packager,
            registry,
            ingest,
            recorder,
            status: std::sync::Mutex::default(),
            ready: watch::channel(false).0,
            authorizers,
        })
    }

    /// Opens the archive of every recorded stream of `streams` (the config
    /// file's), so a store that cannot be reached fails the start.
    pub async fn open_archives(&self, streams: &Streams) -> anyhow::Result<()> {
        for (name, config) in streams {
            if let Some(dvr) = &config.dvr {
                self.registry
                    .open_stream(name, dvr, config.cache.as_ref(), Arc::clone(&self.clock))
                    .await?;
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
        let mut demand = match (self.roles.ingest, self.node.kv(RUNTIME_KV_BUCKET).await) {
            (true, Ok(runtime)) => follow_demand(runtime),
            (true, Err(e)) => {
                warn!(error = %e, "ingest: cannot watch the demand for on-demand streams");
                watch::channel(HashMap::new()).1
            }
            (false, _) => watch::channel(HashMap::new()).1,
        };
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
        let catalog_follower =
            (distributed && (self.roles.packager || self.roles.api)).then(|| {
                tokio::spawn(dvr_packager::follow_catalog(
                    Arc::clone(&self.node),
                    Arc::clone(&self.registry),
                ))
            });

        let mut workers = Workers {
            tapes: (self.roles.packager || self.roles.api).then(|| {
                Tapes::new(
                    Arc::clone(&self.packager),
                    Arc::clone(&self.node),
                    Arc::clone(&self.registry),
                    Arc::clone(&self.clock),
                )
            }),
            ..Workers::default()
        };
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
            let asked = demand.borrow_and_update().clone();
            ingest_wanted_tx.send_if_modified(|w| replace(w, ingest_streams(&current, &asked)));
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
                _ = demand.changed() => {}
                _ = ingest_owned.changed() => {}
                _ = recorder_owned.changed() => {}
                _ = tick.tick() => {
                    for worker in workers.ingest.values_mut() {
                        worker.tick(&self.ingest).await;
                    }
                }
                _ = stop.changed() => break,
            }
        }

        info!("shutting down: closing the open segments and copying them to the archive");
        for (_, worker) in workers.ingest.drain() {
            worker.stop(&self.ingest).await;
        }
        let stops = workers.recorder.drain().map(|(_, worker)| worker.stop());
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
                    !ingest_owned.contains(*name) || streams.get(*name) != Some(w.config())
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in stale {
                if let Some(worker) = workers.ingest.remove(&name) {
                    worker.stop(&self.ingest).await;
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
                if workers.ingest.contains_key(name) || config.is_delayed() {
                    continue;
                }
                match IngestWorker::start(&self.ingest, name, config).await {
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
                        || streams.get(*name).and_then(|c| c.dvr.as_ref()) != Some(w.dvr())
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in stale {
                let Some(worker) = workers.recorder.remove(&name) else {
                    continue;
                };
                // A flush may upload for a while; the lease is renewed
                // meanwhile and released only once the recorder stopped.
                worker.stop().await;
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
                match RecorderWorker::start(&self.recorder, name, config, resumed).await {
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
        if let Some(tapes) = &mut workers.tapes {
            tapes.reconcile(streams, &mut failing).await;
        }
        self.set_status(|s| s.failing = failing);
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

/// Streams that need an ingest owner: all but delayed channels, and an
/// on-demand stream only while it was asked for within its `on_demand`
/// time (`asked`: when, by this process's clock).
fn ingest_streams(
    streams: &Streams,
    asked: &HashMap<StreamName, tokio::time::Instant>,
) -> BTreeSet<StreamName> {
    streams
        .iter()
        .filter(|(name, c)| {
            !c.is_delayed()
                && c.on_demand_ms.is_none_or(|ms| {
                    asked.get(*name).is_some_and(|at| {
                        at.elapsed() < Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                    })
                })
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// A gap between two notes of a stream longer than any packager's
/// refresh ([`dvr_packager::demand::refresh_every`], 5 s at most): the
/// stream has likely stopped, and the note should start it at once.
const DEMAND_QUIET: Duration = Duration::from_secs(5);

/// When each stream was last asked for, by this process's clock: the
/// packagers' notes (`demand.{stream}` in the runtime bucket) as they
/// arrive. An entry is never removed; [`ingest_streams`] judges its age.
fn follow_demand(
    runtime: Arc<dyn Kv>,
) -> watch::Receiver<HashMap<StreamName, tokio::time::Instant>> {
    let (tx, rx) = watch::channel(HashMap::new());
    let prefix = format!("{DEMAND_ROLE}.");
    tokio::spawn(async move {
        loop {
            match runtime.watch(&prefix).await {
                Ok(mut notes) => {
                    while let Some(Ok(entry)) = notes.next().await {
                        let stream = entry
                            .key
                            .strip_prefix(&prefix)
                            .and_then(stream_from_config_key);
                        if let (KvOp::Put, Some(stream)) = (entry.op, stream) {
                            let now = tokio::time::Instant::now();
                            // Only a stream that is likely not running wakes
                            // the loop; a running one's note is read on its
                            // next tick, so notes from many viewers of many
                            // streams cost no reconcile each.
                            let woke = tx.send_if_modified(|asked| {
                                asked
                                    .insert(stream.clone(), now)
                                    .is_none_or(|at| now.duration_since(at) > DEMAND_QUIET)
                            });
                            if woke {
                                info!(stream = %stream, "on-demand stream asked for");
                            }
                        }
                    }
                }
                Err(e) => debug!(error = %e, "cannot watch the demand for on-demand streams yet"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}

/// Streams that need a recorder owner: those recording.
fn recorder_streams(streams: &Streams) -> BTreeSet<StreamName> {
    streams
        .iter()
        .filter(|(_, c)| c.dvr.as_ref().is_some_and(|d| d.enabled) && !c.is_delayed())
        .map(|(n, _)| n.clone())
        .collect()
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
