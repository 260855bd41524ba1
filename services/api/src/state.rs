//! What every route shares: the buckets, the status source, the archive
//! registry, and the reads and writes of a stream's stored settings that
//! more than one route family makes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use dvr_archive::{ArchiveRegistry, RegistryError};
use dvr_bus::{BusError, Exclusive, Kv, KvEntry};
use dvr_common::config::{InputUrl, StreamConfig};
use dvr_common::StreamName;
use dvr_proto::{stream_config_key, stream_from_config_key};
use serde::Deserialize;

use crate::error::ApiError;
use crate::status::StreamStatusSource;

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState {
    /// The streams bucket ([`dvr_proto::STREAMS_KV_BUCKET`]).
    pub streams: Arc<dyn Kv>,
    /// The sessions bucket ([`dvr_proto::SESSIONS_KV_BUCKET`]), if the
    /// auth service keeps one here.
    pub sessions: Option<Arc<dyn Kv>>,
    /// What runs the streams.
    pub status: Arc<dyn StreamStatusSource>,
    /// Archives for locks and reindex, shared with the rest of the process.
    pub archives: Arc<ArchiveRegistry>,
    /// The config's top-level `archive`: the root of a new stream's `dvr`
    /// that names none.
    pub default_archive: Option<String>,
    /// Whether the config has an RTMP listener (`rtmp.listen`): without
    /// one a stream with a `publish://` input is refused.
    pub takes_publishes: bool,
    /// Lock edits are read-modify-write of `locks.json` in a store with no
    /// compare-and-set: one at a time per stream, across API replicas (a
    /// key per stream in [`dvr_proto::LOCKS_KV_BUCKET`]).
    pub(crate) lock_edits: Exclusive,
    /// The runtime bucket ([`dvr_proto::RUNTIME_KV_BUCKET`]) the ingest
    /// reports into, when the process has one ([`ApiState::with_runtime`]).
    pub runtime: Option<Arc<dyn Kv>>,
    /// The exports bucket ([`dvr_proto::EXPORTS_KV_BUCKET`]) jobs are
    /// queued in ([`ApiState::with_exports`]).
    pub exports: Option<Arc<dyn Kv>>,
    /// The clock jobs are stamped with.
    pub clock: Arc<dyn dvr_common::Clock>,
    /// The last `GET /api/v1/storage` answer.
    pub(crate) storage_health: crate::routes::storage::HealthCache,
}

impl ApiState {
    /// State over these parts. `locks` is the bucket that serializes lock
    /// edits ([`dvr_proto::LOCKS_KV_BUCKET`]), shared by every API replica;
    /// `node` names this one there.
    pub fn new(
        streams: Arc<dyn Kv>,
        sessions: Option<Arc<dyn Kv>>,
        locks: Arc<dyn Kv>,
        node: &str,
        status: Arc<dyn StreamStatusSource>,
        archives: Arc<ArchiveRegistry>,
        default_archive: Option<String>,
    ) -> Self {
        Self {
            streams,
            sessions,
            status,
            archives,
            default_archive,
            takes_publishes: false,
            lock_edits: Exclusive::new(locks, node),
            storage_health: Default::default(),
            runtime: None,
            exports: None,
            clock: Arc::new(dvr_common::SystemClock),
        }
    }

    /// Queues export jobs in `exports` ([`dvr_proto::EXPORTS_KV_BUCKET`]),
    /// stamped by `clock`.
    #[must_use]
    pub fn with_exports(mut self, exports: Arc<dyn Kv>, clock: Arc<dyn dvr_common::Clock>) -> Self {
        self.exports = Some(exports);
        self.clock = clock;
        self
    }

    /// Reads what the ingest reports from `runtime`
    /// ([`dvr_proto::RUNTIME_KV_BUCKET`]) into the streams' status.
    #[must_use]
    pub fn with_runtime(mut self, runtime: Arc<dyn Kv>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The same state, taking streams with `publish://` inputs when `yes`.
    #[must_use]
    pub fn with_publishes(mut self, yes: bool) -> Self {
        self.takes_publishes = yes;
        self
    }
}

pub(crate) type AppState = State<Arc<ApiState>>;

pub(crate) fn bus_error(doing: &str, e: &BusError) -> ApiError {
    ApiError::from_kind(doing, e)
}

/// Reads a request body as text (YAML or JSON).
pub(crate) fn body_text(body: &Bytes) -> Result<&str, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("body: not UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "body: empty; send the stream's settings, e.g. {\"inputs\": [\"udp://239.0.0.1:1234\"]}",
        ));
    }
    Ok(text)
}

pub(crate) fn json_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("body: {e}")))
}

/// A stored entry's settings.
pub(crate) fn stored_config(name: &StreamName, entry: &KvEntry) -> Result<StreamConfig, ApiError> {
    let text = std::str::from_utf8(&entry.value).unwrap_or_default();
    StreamConfig::from_doc_str(text, "the streams bucket", &format!("streams.{name}"), None)
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("stream {name}: its stored settings do not read back: {e}"),
            )
        })
}

pub(crate) fn encode(config: &StreamConfig) -> Bytes {
    // Strings, numbers and booleans only: serializing cannot fail.
    Bytes::from(serde_json::to_vec(config).unwrap_or_default())
}

impl ApiState {
    pub(crate) async fn entry(&self, name: &StreamName) -> Result<Option<KvEntry>, ApiError> {
        self.streams
            .get(&stream_config_key(name))
            .await
            .map_err(|e| bus_error(&format!("reading stream {name}"), &e))
    }

    pub(crate) async fn existing(
        &self,
        name: &StreamName,
    ) -> Result<(KvEntry, StreamConfig), ApiError> {
        let entry = self
            .entry(name)
            .await?
            .ok_or_else(|| ApiError::unknown_stream(name.as_str()))?;
        let config = stored_config(name, &entry)?;
        Ok((entry, config))
    }

    /// Every stored stream, by name.
    pub(crate) async fn all(&self) -> Result<Vec<(StreamName, KvEntry, StreamConfig)>, ApiError> {
        let keys = self
            .streams
            .keys()
            .await
            .map_err(|e| bus_error("listing streams", &e))?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(name) = stream_from_config_key(&key) else {
                continue;
            };
            // Deleted between the listing and now: skip it.
            if let Some(entry) = self.entry(&name).await? {
                let config = stored_config(&name, &entry)?;
                out.push((name, entry, config));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// A delayed channel's source must be a stored stream that records; a
    /// `publish://` input needs the RTMP listener, and is taken once.
    pub(crate) async fn check_sources(
        &self,
        name: &StreamName,
        config: &StreamConfig,
    ) -> Result<(), ApiError> {
        let mut publishes = 0;
        for (i, input) in config.inputs.iter().enumerate() {
            if *input == InputUrl::Publish {
                publishes += 1;
                if !self.takes_publishes {
                    return Err(ApiError::bad_request(format!(
                        "stream.inputs[{i}]: publish:// needs the RTMP listener (rtmp.listen in the config file)"
                    )));
                }
                if publishes > 1 {
                    return Err(ApiError::bad_request(format!(
                        "stream.inputs[{i}]: a stream takes publishes once: a second publish:// adds nothing"
                    )));
                }
            }
            if let InputUrl::Timeshift { source, .. } = input {
                let records = if source == name {
                    false
                } else {
                    match self.entry(source).await? {
                        Some(e) => stored_config(source, &e)?.dvr.is_some(),
                        None => false,
                    }
                };
                if !records {
                    return Err(ApiError::bad_request(format!(
                        "stream.inputs[{i}]: timeshift source \"{source}\" is not a configured stream with dvr"
                    )));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn parse(&self, body: &Bytes) -> Result<StreamConfig, ApiError> {
        let text = body_text(body)?;
        StreamConfig::from_doc_str(text, "body", "stream", self.default_archive.as_deref())
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    pub(crate) async fn write(
        &self,
        name: &StreamName,
        config: &StreamConfig,
        revision: Option<u64>,
    ) -> Result<u64, ApiError> {
        let key = stream_config_key(name);
        let result = match revision {
            None => self.streams.create(&key, encode(config)).await,
            Some(r) => self.streams.update(&key, encode(config), r).await,
        };
        result.map_err(|e| match e {
            BusError::KvConflict { .. } if revision.is_none() => {
                ApiError::conflict(format!("stream {name} exists; update it with PUT"))
            }
            BusError::KvConflict { reason, .. } => ApiError::conflict(format!(
                "stream {name} changed since it was read ({reason}); read it again"
            )),
            other => bus_error(&format!("writing stream {name}"), &other),
        })
    }

    /// The stream's archive; 409 if it does not record.
    pub(crate) async fn archive_of(
        &self,
        name: &StreamName,
    ) -> Result<Arc<dvr_archive::store::ArchiveStore>, ApiError> {
        let (_, config) = self.existing(name).await?;
        let Some(dvr) = config.dvr else {
            return Err(ApiError::conflict(format!(
                "stream {name} has no dvr, so no archive"
            )));
        };
        self.archives.get(&dvr.root).map_err(|e| match e {
            RegistryError::Root { root, source } => {
                ApiError::conflict(format!("stream {name}: its archive root {root}: {source}"))
            }
            e => ApiError::from_kind(&format!("stream {name}: opening its archive"), &e),
        })
    }
}
