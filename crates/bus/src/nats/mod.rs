//! The bus over NATS JetStream (distributed mode).
//!
//! [`NatsBus`] holds one connection and hands out per-stream
//! [`NatsLiveLog`]s and per-bucket [`NatsKv`]s, creating the JetStream
//! streams and buckets named in `dvr-proto` on first use. The client
//! reconnects on its own after a server restart; every write retries until
//! [`NatsConfig::op_timeout`], and every retried write is idempotent (object
//! puts by name, descriptors de-duplicated by `Nats-Msg-Id`, KV writes
//! conditional or last-writer-wins), so a write that returned `Ok` is stored
//! exactly once.

mod credentials;
mod events;
mod kv;
mod live_log;
mod request;
mod trace;

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, object_store, stream};
use dvr_common::StreamName;
use dvr_proto::{LIVE_STREAM, LIVE_STREAM_SUBJECTS, SEGMENTS_OBJECT_BUCKET};

pub use self::credentials::{NatsAuth, NatsCredentials, NatsTls};
pub use self::events::NatsEvents;
pub use self::kv::NatsKv;
pub use self::live_log::NatsLiveLog;
pub use self::request::NatsRequests;
use crate::error::BusError;

/// How the live log is kept on JetStream.
#[derive(Clone, Debug)]
pub struct LiveLogConfig {
    /// Copies of every message in the cluster (3 in production, 1 for a
    /// single server).
    pub replicas: usize,
    /// Descriptors and bytes older than this are dropped by the server even
    /// if no recorder trimmed them: at least the copy interval plus a
    /// margin for a recorder that is late or failing over.
    pub max_age: Duration,
}

impl LiveLogConfig {
    /// Retention for a recorder that copies every `copy_interval`, keeping
    /// `margin` more for retries and takeovers.
    pub fn for_copy_interval(copy_interval: Duration, margin: Duration, replicas: usize) -> Self {
        Self {
            replicas,
            max_age: copy_interval + margin,
        }
    }
}

impl Default for LiveLogConfig {
    /// One-hour copy interval plus a four-hour outage budget, one replica.
    fn default() -> Self {
        Self::for_copy_interval(Duration::from_secs(3600), Duration::from_secs(4 * 3600), 1)
    }
}

/// How to reach NATS and what to create there.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated, e.g. `nats://nats:4222`
    /// (`tls://…` requires TLS).
    pub url: String,
    /// Who this process is to the server, and TLS.
    pub credentials: NatsCredentials,
    /// Live-log stream and object-store settings.
    pub live: LiveLogConfig,
    /// Replicas of KV buckets.
    pub kv_replicas: usize,
    /// How long a write keeps retrying through a disconnection before it
    /// fails.
    pub op_timeout: Duration,
}

impl NatsConfig {
    /// Defaults for the server at `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            credentials: NatsCredentials::default(),
            live: LiveLogConfig::default(),
            kv_replicas: 1,
            op_timeout: Duration::from_secs(30),
        }
    }
}

/// A connection to NATS and the JetStream resources of the protocol.
#[derive(Clone, Debug)]
pub struct NatsBus {
    js: jetstream::Context,
    config: NatsConfig,
}

impl NatsBus {
    /// Connects, retrying until the server answers within `op_timeout`.
    /// Credentials the server refuses fail at once, naming the user (never
    /// the secret): retrying would not change the answer.
    pub async fn connect(config: NatsConfig) -> Result<Self, BusError> {
        // `nats://a:4222,nats://b:4222`: the client tries them all, and
        // moves to another when its server goes.
        let servers = config
            .url
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BusError::Refused {
                target: config.url.clone(),
                detail: format!("not a list of NATS server URLs: {e}"),
            })?;
        let deadline = tokio::time::Instant::now() + config.op_timeout;
        let mut backoff = Duration::from_millis(100);
        let client = loop {
            let options = config
                .credentials
                .apply(
                    async_nats::ConnectOptions::new()
                        .name("dvr")
                        .event_callback(|event| async move {
                            // Permission violations arrive here, not as
                            // the failed call's error.
                            if let async_nats::Event::ServerError(e) = event {
                                tracing::warn!(error = %e, "NATS refused an operation");
                            }
                        }),
                )
                .await
                .map_err(|detail| BusError::Refused {
                    target: config.url.clone(),
                    detail,
                })?;
            match options.connect(servers.as_slice()).await {
                Ok(client) => break client,
                Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation => {
                    return Err(BusError::Refused {
                        target: config.url.clone(),
                        detail: format!(
                            "the server refused the credentials ({}): check DVR_NATS_* and the \
                             server's authorization",
                            config.credentials.auth.who()
                        ),
                    });
                }
                Err(e) if e.kind() == async_nats::ConnectErrorKind::Tls => {
                    return Err(BusError::Refused {
                        target: config.url.clone(),
                        detail: format!(
                            "TLS: {e}: check DVR_NATS_CA (the CA that signed the servers' \
                             certificate) and the URL's host"
                        ),
                    });
                }
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::debug!(error = %e, url = %config.url, "NATS not reachable yet, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(nats_err("connect", &config.url, e)),
            }
        };
        Ok(Self {
            js: jetstream::new(client),
            config,
        })
    }

    /// The name of the server leading JetStream stream `name` (its
    /// replicas follow it), for status and tests; `None` on a single
    /// server.
    pub async fn stream_leader(&self, name: &str) -> Result<Option<String>, BusError> {
        let mut stream = self
            .js
            .get_stream(name)
            .await
            .map_err(|e| nats_err("get stream", name, e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| nats_err("stream info", name, e))?;
        Ok(info.cluster.as_ref().and_then(|c| c.leader.clone()))
    }

    /// The settings it was made with.
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// Whether the connection is up now (for readiness probes).
    pub fn is_connected(&self) -> bool {
        self.js.client().connection_state() == async_nats::connection::State::Connected
    }

    /// Events over this connection.
    pub fn events(&self) -> NatsEvents {
        NatsEvents::new(self.js.client())
    }

    /// The live log of `stream`, caught up with what the server holds.
    pub async fn live_log(&self, stream: &StreamName) -> Result<NatsLiveLog, BusError> {
        let live = self.live_stream().await?;
        let objects = self.segment_objects().await?;
        NatsLiveLog::open(
            self.js.clone(),
            live,
            objects,
            stream,
            self.config.op_timeout,
        )
        .await
    }

    /// Request/reply on this connection.
    pub fn requests(&self) -> NatsRequests {
        NatsRequests::new(self.js.client())
    }

    /// A KV bucket, created with file storage if missing.
    pub async fn kv(&self, bucket: &str) -> Result<NatsKv, BusError> {
        self.kv_with_max_age(bucket, Duration::ZERO).await
    }

    /// Opens or creates a KV bucket whose entries expire `max_age` after
    /// their last write (`Duration::ZERO`: never). An existing bucket keeps
    /// its settings.
    pub async fn kv_with_max_age(
        &self,
        bucket: &str,
        max_age: Duration,
    ) -> Result<NatsKv, BusError> {
        let store = match self.js.get_key_value(bucket).await {
            Ok(s) => s,
            Err(_) => self
                .js
                .create_key_value(jetstream::kv::Config {
                    bucket: bucket.to_owned(),
                    history: 1,
                    max_age,
                    storage: stream::StorageType::File,
                    num_replicas: self.config.kv_replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| nats_err("create kv bucket", bucket, e))?,
        };
        Ok(NatsKv::new(bucket, store))
    }

    async fn live_stream(&self) -> Result<stream::Stream, BusError> {
        let live = &self.config.live;
        self.js
            .create_or_update_stream(stream::Config {
                name: LIVE_STREAM.to_owned(),
                subjects: vec![LIVE_STREAM_SUBJECTS.to_owned()],
                storage: stream::StorageType::File,
                num_replicas: live.replicas,
                max_age: live.max_age,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err("create stream", LIVE_STREAM, e))?;
        self.js
            .get_stream(LIVE_STREAM)
            .await
            .map_err(|e| nats_err("get stream", LIVE_STREAM, e))
    }

    async fn segment_objects(&self) -> Result<object_store::ObjectStore, BusError> {
        let live = &self.config.live;
        if let Ok(store) = self.js.get_object_store(SEGMENTS_OBJECT_BUCKET).await {
            // The bucket outlives any one config: apply a changed retention
            // or replica count to its stream.
            let name = format!("OBJ_{SEGMENTS_OBJECT_BUCKET}");
            let mut stream = self
                .js
                .get_stream(&name)
                .await
                .map_err(|e| nats_err("get stream", &name, e))?;
            let mut config = stream
                .info()
                .await
                .map_err(|e| nats_err("stream info", &name, e))?
                .config
                .clone();
            if config.max_age != live.max_age || config.num_replicas != live.replicas {
                config.max_age = live.max_age;
                config.num_replicas = live.replicas;
                self.js
                    .update_stream(config)
                    .await
                    .map_err(|e| nats_err("update stream", &name, e))?;
            }
            return Ok(store);
        }
        self.js
            .create_object_store(object_store::Config {
                bucket: SEGMENTS_OBJECT_BUCKET.to_owned(),
                storage: stream::StorageType::File,
                num_replicas: live.replicas,
                max_age: live.max_age,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err("create object store", SEGMENTS_OBJECT_BUCKET, e))
    }
}

fn nats_err(op: &'static str, target: &str, source: impl Into<async_nats::Error>) -> BusError {
    BusError::Nats {
        op,
        target: target.to_owned(),
        source: source.into(),
    }
}

/// Runs `attempt` until it succeeds or `timeout` has passed, backing off
/// from 50 ms to 1 s between tries; the last error is returned. For
/// idempotent operations only.
async fn retry<T, F, Fut>(timeout: Duration, mut attempt: F) -> Result<T, BusError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BusError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut backoff = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                tracing::debug!(error = %e, "nats operation failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}
