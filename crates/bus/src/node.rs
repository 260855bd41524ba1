//! Where this process's services meet: the bus, embedded or over NATS.
//!
//! Embedded (`dvr run` without `--nats`): live logs are append-only files
//! under the data directory, KV buckets live in memory and events go
//! through a broadcast channel; every service is in this process, so that
//! is all the sharing needed. Distributed (`--nats URL`): the same things
//! on JetStream, shared with the other processes. Services ask this module
//! for a stream's live log or a bucket and never know which one they got
//! (the embedded log moves its file writes off the async threads itself).
//! One handle per stream and bucket is kept per process, so the JetStream
//! followers and the embedded files are opened once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dvr_common::{StreamName, UtcMs};
use dvr_proto::{Event, EventKind, PROTO_VERSION};
use tokio::sync::Mutex;
use tracing::debug;

use crate::{
    BusError, Events, Kv, LiveLog, LocalEvents, MemoryKv, MemoryRequests, NatsBus, NatsConfig,
    Requester, Responder, SegmentLog, SegmentLogOptions,
};

/// The bus of this process.
#[derive(Debug)]
pub struct Node {
    /// This process's id among the replicas (leases, events).
    pub id: String,
    kind: Kind,
    logs: Mutex<HashMap<StreamName, Arc<dyn LiveLog>>>,
    kvs: Mutex<HashMap<String, Arc<dyn Kv>>>,
    events: Arc<dyn Events>,
}

#[derive(Debug)]
enum Kind {
    Embedded {
        data_dir: PathBuf,
        requests: MemoryRequests,
    },
    Nats(Box<NatsBus>),
}

impl Node {
    /// The embedded bus, live logs under `data_dir/livelog`.
    pub fn embedded(id: String, data_dir: PathBuf) -> Self {
        Self {
            id,
            kind: Kind::Embedded {
                data_dir,
                requests: MemoryRequests::new(),
            },
            logs: Mutex::default(),
            kvs: Mutex::default(),
            events: Arc::new(LocalEvents::default()),
        }
    }

    /// The bus over NATS at `config.url` (waits for the server, within the
    /// config's operation timeout).
    pub async fn nats(id: String, config: NatsConfig) -> Result<Self, BusError> {
        let bus = NatsBus::connect(config).await?;
        Ok(Self {
            id,
            events: Arc::new(bus.events()),
            kind: Kind::Nats(Box::new(bus)),
            logs: Mutex::default(),
            kvs: Mutex::default(),
        })
    }

    /// Whether the streams live on NATS (several processes).
    pub fn is_distributed(&self) -> bool {
        matches!(self.kind, Kind::Nats(_))
    }

    /// How long the live log keeps a segment whatever the recorder does:
    /// NATS's max age; `None` embedded, where only the recorder trims.
    pub fn hot_tier(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Embedded { .. } => None,
            Kind::Nats(bus) => Some(bus.config().live.max_age),
        }
    }

    /// Whether the bus is reachable now.
    pub fn is_connected(&self) -> bool {
        match &self.kind {
            Kind::Embedded { .. } => true,
            Kind::Nats(bus) => bus.is_connected(),
        }
    }

    /// The live log of `stream`.
    pub async fn live_log(&self, stream: &StreamName) -> Result<Arc<dyn LiveLog>, BusError> {
        let mut logs = self.logs.lock().await;
        if let Some(log) = logs.get(stream) {
            return Ok(Arc::clone(log));
        }
        let log: Arc<dyn LiveLog> = match &self.kind {
            Kind::Embedded { data_dir, .. } => {
                let dir = data_dir.join("livelog").join(stream.as_str());
                Arc::new(SegmentLog::open(&dir, SegmentLogOptions::default())?)
            }
            Kind::Nats(bus) => Arc::new(bus.live_log(stream).await?),
        };
        logs.insert(stream.clone(), Arc::clone(&log));
        Ok(log)
    }

    /// A KV bucket. The entries of some buckets expire
    /// ([`dvr_proto::kv_max_age_secs`]): the runtime bucket's, so a dead
    /// node's reports go, and the cluster nonces', so the bucket stays as
    /// small as the requests of a few minutes; in one process as on NATS.
    pub async fn kv(&self, bucket: &str) -> Result<Arc<dyn Kv>, BusError> {
        let mut kvs = self.kvs.lock().await;
        if let Some(kv) = kvs.get(bucket) {
            return Ok(Arc::clone(kv));
        }
        let max_age =
            dvr_proto::kv_max_age_secs(bucket).map_or(Duration::ZERO, Duration::from_secs);
        let kv: Arc<dyn Kv> = match &self.kind {
            Kind::Embedded { .. } => Arc::new(MemoryKv::with_max_age(bucket, max_age)),
            Kind::Nats(bus) => Arc::new(bus.kv_with_max_age(bucket, max_age).await?),
        };
        kvs.insert(bucket.to_owned(), Arc::clone(&kv));
        Ok(kv)
    }

    /// The events.
    pub fn events(&self) -> Arc<dyn Events> {
        Arc::clone(&self.events)
    }

    /// Tells whoever listens that `kind` happened to `stream` at `at`, from
    /// this node. Events are notifications: one that cannot be published
    /// is logged at debug level and dropped.
    pub async fn announce(
        &self,
        stream: &StreamName,
        kind: EventKind,
        at: UtcMs,
        details: serde_json::Map<String, serde_json::Value>,
    ) {
        let event = Event {
            v: PROTO_VERSION,
            kind,
            stream: stream.clone(),
            at,
            node: self.id.clone(),
            details,
        };
        if let Err(e) = self.events.publish(&event).await {
            debug!(stream = %stream, error = %e, "cannot publish an event");
        }
    }

    /// Asks services over the bus (request/reply).
    pub fn requester(&self) -> Arc<dyn Requester> {
        match &self.kind {
            Kind::Embedded { requests, .. } => Arc::new(requests.clone()),
            Kind::Nats(bus) => Arc::new(bus.requests()),
        }
    }

    /// Answers requests over the bus.
    pub fn responder(&self) -> Arc<dyn Responder> {
        match &self.kind {
            Kind::Embedded { requests, .. } => Arc::new(requests.clone()),
            Kind::Nats(bus) => Arc::new(bus.requests()),
        }
    }
}
