//! The routes: streams in the streams KV bucket, DVR switches, locks,
//! status, sessions, reindex, and the Flussonic-compatible aliases.
//!
//! Every handler validates what the request carries (the stream name in
//! the path, the body) before touching the bucket or an archive, so a bad
//! request costs no storage call. Stream names with `/` go in one path
//! segment as `%2F` (`/api/v1/streams/news%2Fhd`); the Flussonic aliases
//! take them unencoded, as middleware sends them.

#![allow(
    unused_qualifications,
    reason = "utoipa's params(...) expansion names types by path"
)]

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use dvr_archive::{ArchiveRegistry, Lock, RegistryError};
use dvr_bus::{BusError, Exclusive, Kv, KvEntry};
use dvr_common::config::{InputUrl, StreamConfig};
use dvr_common::{StreamName, UtcMs};
use dvr_proto::{
    lock_edit_key, stream_config_key, stream_from_config_key, SessionRecord, Versioned,
};
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::schema::StreamDoc;
use crate::status::{Span, StreamStatus, StreamStatusSource};

/// The latest UTC second accepted in a lock: years past 9999 are a typo
/// (milliseconds given as seconds).
const MAX_EPOCH_SECS: i64 = 253_402_300_799;
/// The longest lock accepted: ten years.
const MAX_LOCK_SECS: i64 = 10 * 366 * 86_400;
/// The longest file name an export request may carry.
const MAX_FILE_NAME_LEN: usize = 255;

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
    /// Lock edits are read-modify-write of `locks.json` in a store with no
    /// compare-and-set: one at a time per stream, across API replicas (a
    /// key per stream in [`dvr_proto::LOCKS_KV_BUCKET`]).
    pub(crate) lock_edits: Exclusive,
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
            lock_edits: Exclusive::new(locks, node),
        }
    }
}

type AppState = State<Arc<ApiState>>;

/// A stream name from the path, validated (400 otherwise, before anything
/// else happens).
#[derive(Debug)]
pub struct StreamParam(pub StreamName);

impl<S: Send + Sync> FromRequestParts<S> for StreamParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("stream name in the path: {e}")))?;
        StreamName::new(&raw)
            .map(StreamParam)
            .map_err(|e| ApiError::bad_request(format!("name: {e}")))
    }
}

/// A stream's stored settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEntry {
    /// The stream's name.
    pub name: String,
    /// The bucket revision of these settings: send it back as `If-Match`
    /// to update only what you read.
    pub revision: u64,
    /// The settings, as one entry of the config file's `streams:`.
    #[schema(value_type = StreamDoc)]
    pub config: serde_json::Value,
}

/// Every stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamList {
    /// By name.
    pub streams: Vec<StreamEntry>,
}

/// Every stream's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusList {
    /// By name.
    pub streams: Vec<StreamStatus>,
}

/// The DVR switch of a stream after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct DvrSwitch {
    /// The stream.
    pub name: String,
    /// Whether it records now.
    pub dvr_enabled: bool,
    /// The bucket revision of its settings.
    pub revision: u64,
}

/// A range to lock or unlock, in the seeds' units.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LockRange {
    /// Start, UTC epoch seconds.
    #[schema(minimum = 0, maximum = 253_402_300_799_i64)]
    #[param(minimum = 0, maximum = 253_402_300_799_i64)]
    pub from: i64,
    /// Length in seconds, positive.
    #[schema(minimum = 1, maximum = 316_224_000_i64)]
    #[param(minimum = 1, maximum = 316_224_000_i64)]
    pub duration: i64,
}

/// The seeds' `dvr/lock` and `dvr/unlock` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlussonicLock {
    /// The stream.
    pub stream: String,
    /// Start, UTC epoch seconds.
    pub from: i64,
    /// Length in seconds.
    pub duration: i64,
}

/// A stream's locks, the seeds' shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct LockList {
    /// The stream.
    pub stream: String,
    /// Protected ranges, oldest first.
    #[schema(value_type = Vec<Span>)]
    pub locks: Vec<Lock>,
}

/// What a reindex found.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReindexReport {
    /// The stream.
    pub stream: String,
    /// Chunks now in the catalog.
    pub chunks: usize,
    /// Half-written chunks (the recorder's replay rewrites them).
    pub orphans: Vec<String>,
    /// Chunks whose index is unreadable (served as gaps).
    pub bad: Vec<String>,
    /// Recorded ranges.
    pub ranges: Vec<Span>,
}

/// An export request (reserved: MP4 export comes later).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Start, UTC epoch seconds.
    pub from: i64,
    /// Length in seconds.
    pub duration: i64,
    /// File name under the export directory: relative, no `..`, no NUL.
    pub file: Option<String>,
}

/// Play sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// As the auth service records them (`dvr_proto::SessionRecord`).
    #[schema(value_type = Vec<Object>)]
    pub sessions: Vec<SessionRecord>,
}

/// Query of `GET /api/v1/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only this stream's sessions.
    pub stream: Option<String>,
}

fn bus_error(doing: &str, e: &BusError) -> ApiError {
    ApiError::from_kind(doing, e)
}

/// Reads a request body as text (YAML or JSON).
fn body_text(body: &Bytes) -> Result<&str, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("body: not UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "body: empty; send the stream's settings, e.g. {\"inputs\": [\"udp://239.0.0.1:1234\"]}",
        ));
    }
    Ok(text)
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("body: {e}")))
}

/// A stored entry's settings.
fn stored_config(name: &StreamName, entry: &KvEntry) -> Result<StreamConfig, ApiError> {
    let text = std::str::from_utf8(&entry.value).unwrap_or_default();
    StreamConfig::from_doc_str(text, "the streams bucket", &format!("streams.{name}"), None)
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("stream {name}: its stored settings do not read back: {e}"),
            )
        })
}

fn encode(config: &StreamConfig) -> Bytes {
    // Strings, numbers and booleans only: serializing cannot fail.
    Bytes::from(serde_json::to_vec(config).unwrap_or_default())
}

impl ApiState {
    async fn entry(&self, name: &StreamName) -> Result<Option<KvEntry>, ApiError> {
        self.streams
            .get(&stream_config_key(name))
            .await
            .map_err(|e| bus_error(&format!("reading stream {name}"), &e))
    }

    async fn existing(&self, name: &StreamName) -> Result<(KvEntry, StreamConfig), ApiError> {
        let entry = self
            .entry(name)
            .await?
            .ok_or_else(|| ApiError::unknown_stream(name.as_str()))?;
        let config = stored_config(name, &entry)?;
        Ok((entry, config))
    }

    /// Every stored stream, by name.
    async fn all(&self) -> Result<Vec<(StreamName, KvEntry, StreamConfig)>, ApiError> {
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

    /// A delayed channel's source must be a stored stream that records.
    async fn check_sources(
        &self,
        name: &StreamName,
        config: &StreamConfig,
    ) -> Result<(), ApiError> {
        for (i, input) in config.inputs.iter().enumerate() {
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

    fn parse(&self, body: &Bytes) -> Result<StreamConfig, ApiError> {
        let text = body_text(body)?;
        StreamConfig::from_doc_str(text, "body", "stream", self.default_archive.as_deref())
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    async fn write(
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

    async fn set_dvr(&self, name: &StreamName, enabled: bool) -> Result<DvrSwitch, ApiError> {
        let (entry, mut config) = self.existing(name).await?;
        let Some(dvr) = config.dvr.as_mut() else {
            return Err(ApiError::conflict(format!(
                "stream {name} has no dvr configured; add one with PUT /api/v1/streams/{name}"
            )));
        };
        let mut revision = entry.revision;
        if dvr.enabled != enabled {
            dvr.enabled = enabled;
            revision = self.write(name, &config, Some(entry.revision)).await?;
            info!(stream = %name, enabled, "api: dvr switched");
        }
        Ok(DvrSwitch {
            name: name.to_string(),
            dvr_enabled: enabled,
            revision,
        })
    }

    async fn status_of(&self, name: &StreamName, config: &StreamConfig) -> StreamStatus {
        let runtime = self.status.runtime(name).await;
        let dvr_enabled = config.dvr.as_ref().is_some_and(|d| d.enabled);
        let running = runtime.is_some();
        let mut runtime = runtime.unwrap_or_default();
        // The runner may not have followed a dvr_disable yet.
        runtime.recording &= dvr_enabled;
        StreamStatus {
            name: name.to_string(),
            dvr_configured: config.dvr.is_some(),
            dvr_enabled,
            running,
            runtime,
        }
    }

    /// The stream's archive; 409 if it does not record.
    async fn archive_of(
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

    async fn edit_lock(
        &self,
        name: &StreamName,
        range: &LockRange,
        add: bool,
    ) -> Result<LockList, ApiError> {
        let lock = to_lock(range)?;
        let store = self.archive_of(name).await?;
        let doing = format!("stream {name}: editing its locks");
        let edited = self
            .lock_edits
            .run(&lock_edit_key(name), async {
                if add {
                    store.lock(name, lock).await.map(|locks| (locks, true))
                } else {
                    store.unlock(name, lock).await
                }
            })
            .await
            .map_err(|e| ApiError::from_kind(&doing, &e))?;
        let (locks, found) = edited.map_err(|e| ApiError::from_kind(&doing, &e))?;
        if !found {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "stream {name} has no lock from {} for {} s",
                    range.from, range.duration
                ),
            ));
        }
        info!(stream = %name, from = range.from, duration = range.duration, add, "api: lock edited");
        Ok(LockList {
            stream: name.to_string(),
            locks: locks.locks,
        })
    }
}

fn to_lock(range: &LockRange) -> Result<Lock, ApiError> {
    if !(0..=MAX_EPOCH_SECS).contains(&range.from) {
        return Err(ApiError::bad_request(format!(
            "from: {} is not a UTC epoch second from 0 to the year 9999 (seconds, not milliseconds)",
            range.from
        )));
    }
    if !(1..=MAX_LOCK_SECS).contains(&range.duration) {
        return Err(ApiError::bad_request(format!(
            "duration: {} s is not from 1 s to 10 years",
            range.duration
        )));
    }
    Lock::new(UtcMs(range.from * 1000), range.duration * 1000)
        .ok_or_else(|| ApiError::bad_request("duration: must be positive"))
}

/// Checks a file name a request carries: relative, no `..`, no NUL or
/// control characters, bounded.
pub fn check_file_name(field: &str, name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::bad_request(format!("{field}: {name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_FILE_NAME_LEN {
        return bad("longer than 255 bytes");
    }
    if name.chars().any(char::is_control) {
        return bad("control characters (NUL included) are not allowed");
    }
    if name.starts_with('/') || name.starts_with('\\') || name.contains(':') {
        return bad("must be relative to the export directory");
    }
    if name
        .split(['/', '\\'])
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("'.', '..' and empty components are not allowed");
    }
    Ok(())
}

fn entry_json(name: &StreamName, revision: u64, config: &StreamConfig) -> StreamEntry {
    StreamEntry {
        name: name.to_string(),
        revision,
        config: serde_json::to_value(config).unwrap_or_default(),
    }
}

fn with_etag(status: StatusCode, entry: StreamEntry) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", entry.revision)).ok();
    let mut response = (status, Json(entry)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// `If-Match: "REV"` (or a bare number) as a revision.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request("If-Match: expected the revision a GET returned, e.g. \"42\"")
        })
}

/// List every stream's settings.
#[utoipa::path(get, path = "/api/v1/streams", tag = "streams",
    responses((status = 200, body = StreamList), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_streams(State(api): AppState) -> Result<Json<StreamList>, ApiError> {
    let streams = api
        .all()
        .await?
        .into_iter()
        .map(|(n, e, c)| entry_json(&n, e.revision, &c))
        .collect();
    Ok(Json(StreamList { streams }))
}

/// One stream's settings (the `ETag` is its revision).
#[utoipa::path(get, path = "/api/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    responses((status = 200, body = StreamEntry), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get_stream(
    State(api): AppState,
    StreamParam(name): StreamParam,
) -> Result<Response, ApiError> {
    let (entry, config) = api.existing(&name).await?;
    Ok(with_etag(
        StatusCode::OK,
        entry_json(&name, entry.revision, &config),
    ))
}

/// Create a stream (409 if it exists). The body is one entry of the config
/// file's `streams:`, in JSON or YAML.
#[utoipa::path(post, path = "/api/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    request_body(content = StreamDoc, content_type = "application/json"),
    responses((status = 201, body = StreamEntry), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_stream(
    State(api): AppState,
    StreamParam(name): StreamParam,
    body: Bytes,
) -> Result<Response, ApiError> {
    let config = api.parse(&body)?;
    api.check_sources(&name, &config).await?;
    let revision = api.write(&name, &config, None).await?;
    info!(stream = %name, revision, "api: stream created");
    Ok(with_etag(
        StatusCode::CREATED,
        entry_json(&name, revision, &config),
    ))
}

/// Replace a stream's settings. With `If-Match: "REV"` only if they are
/// still at that revision (409 otherwise).
#[utoipa::path(put, path = "/api/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name; `/` as %2F"),
           ("If-Match" = Option<String>, Header, description = "The revision read, e.g. \"42\"")),
    request_body(content = StreamDoc, content_type = "application/json"),
    responses((status = 200, body = StreamEntry), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn update_stream(
    State(api): AppState,
    StreamParam(name): StreamParam,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let config = api.parse(&body)?;
    api.check_sources(&name, &config).await?;
    let (entry, _) = api.existing(&name).await?;
    let revision = api
        .write(&name, &config, Some(expected.unwrap_or(entry.revision)))
        .await?;
    info!(stream = %name, revision, "api: stream updated");
    Ok(with_etag(
        StatusCode::OK,
        entry_json(&name, revision, &config),
    ))
}

/// Delete a stream's settings (its archive stays). 409 while a delayed
/// channel plays its tape.
#[utoipa::path(delete, path = "/api/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn delete_stream(
    State(api): AppState,
    StreamParam(name): StreamParam,
) -> Result<StatusCode, ApiError> {
    api.existing(&name).await?;
    for (other, _, config) in api.all().await? {
        let plays_it = config
            .inputs
            .iter()
            .any(|i| matches!(i, InputUrl::Timeshift { source, .. } if *source == name));
        if plays_it && other != name {
            return Err(ApiError::conflict(format!(
                "stream {other} plays {name}'s tape (timeshift://); delete or change it first"
            )));
        }
    }
    api.streams
        .delete(&stream_config_key(&name))
        .await
        .map_err(|e| bus_error(&format!("deleting stream {name}"), &e))?;
    info!(stream = %name, "api: stream deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Every stream's status.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, body = StatusList), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_status(State(api): AppState) -> Result<Json<StatusList>, ApiError> {
    let mut streams = Vec::new();
    for (name, _, config) in api.all().await? {
        streams.push(api.status_of(&name, &config).await);
    }
    Ok(Json(StatusList { streams }))
}

/// One stream's status: recording, source, bitrate, last segment, recorded
/// range, gaps.
#[utoipa::path(get, path = "/api/v1/streams/{name}/status", tag = "status",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    responses((status = 200, body = StreamStatus), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stream_status(
    State(api): AppState,
    StreamParam(name): StreamParam,
) -> Result<Json<StreamStatus>, ApiError> {
    let (_, config) = api.existing(&name).await?;
    Ok(Json(api.status_of(&name, &config).await))
}

/// Start recording (the seeds' `dvr_enable`): sets `dvr.enabled` in the
/// stored settings; the node running the stream follows.
#[utoipa::path(post, path = "/api/v1/streams/{name}/dvr/enable", tag = "dvr",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    responses((status = 200, body = DvrSwitch), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn dvr_enable(
    State(api): AppState,
    StreamParam(name): StreamParam,
) -> Result<Json<DvrSwitch>, ApiError> {
    Ok(Json(api.set_dvr(&name, true).await?))
}

/// Stop recording (the seeds' `dvr_disable`); the archive stays.
#[utoipa::path(post, path = "/api/v1/streams/{name}/dvr/disable", tag = "dvr",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    responses((status = 200, body = DvrSwitch), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn dvr_disable(
    State(api): AppState,
    StreamParam(name): StreamParam,
) -> Result<Json<DvrSwitch>, ApiError> {
    Ok(Json(api.set_dvr(&name, false).await?))
}

/// A stream's locks (ranges retention keeps).
#[utoipa::path(get, path = "/api/v1/streams/{name}/dvr/locks", tag = "dvr",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    responses((status = 200, body = LockList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_locks(
    State(api): AppState,
    StreamParam(name): StreamParam,
) -> Result<Json<LockList>, ApiError> {
    let store = api.archive_of(&name).await?;
    let locks = store
        .locks(&name)
        .await
        .map_err(|e| ApiError::from_kind(&format!("stream {name}: reading its locks"), &e))?;
    Ok(Json(LockList {
        stream: name.to_string(),
        locks: locks.locks,
    }))
}

/// Lock a range: retention will not delete it.
#[utoipa::path(post, path = "/api/v1/streams/{name}/dvr/locks", tag = "dvr",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    request_body = LockRange,
    responses((status = 200, body = LockList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn add_lock(
    State(api): AppState,
    StreamParam(name): StreamParam,
    body: Bytes,
) -> Result<Json<LockList>, ApiError> {
    let range: LockRange = json_body(&body)?;
    Ok(Json(api.edit_lock(&name, &range, true).await?))
}

/// Remove a lock, named by its from and duration (404 if there is none).
#[utoipa::path(delete, path = "/api/v1/streams/{name}/dvr/locks", tag = "dvr",
    params(("name" = String, Path, description = "Stream name; `/` as %2F"), LockRange),
    responses((status = 200, body = LockList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn remove_lock(
    State(api): AppState,
    StreamParam(name): StreamParam,
    RawQuery(query): RawQuery,
) -> Result<Json<LockList>, ApiError> {
    let range = lock_query(query.as_deref())?;
    Ok(Json(api.edit_lock(&name, &range, false).await?))
}

fn lock_query(query: Option<&str>) -> Result<LockRange, ApiError> {
    let mut from = None;
    let mut duration = None;
    for (k, v) in url_pairs(query.unwrap_or_default()) {
        let parsed = || {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("{k}: {v:?} is not a whole number")))
        };
        match k.as_str() {
            "from" => from = Some(parsed()?),
            "duration" => duration = Some(parsed()?),
            _ => {}
        }
    }
    Ok(LockRange {
        from: from
            .ok_or_else(|| ApiError::bad_request("from: missing (?from=SECS&duration=SECS)"))?,
        duration: duration
            .ok_or_else(|| ApiError::bad_request("duration: missing (?from=SECS&duration=SECS)"))?,
    })
}

/// `a=1&b=2` as decoded pairs.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rebuild the stream's catalog from a listing of its archive (what a
/// restart does) and report what was found.
#[utoipa::path(post, path = "/api/v1/streams/{name}/dvr/reindex", tag = "dvr",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    responses((status = 200, body = ReindexReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn reindex(
    State(api): AppState,
    StreamParam(name): StreamParam,
) -> Result<Json<ReindexReport>, ApiError> {
    let store = api.archive_of(&name).await?;
    let report = store
        .load(&name)
        .await
        .map_err(|e| ApiError::from_kind(&format!("stream {name}: reindexing"), &e))?;
    let ranges = store
        .ranges(&name, UtcMs(i64::MIN), UtcMs(i64::MAX))
        .into_iter()
        .map(|r| Span {
            from: r.from.as_secs(),
            duration: (r.to.0 - r.from.0 + 999) / 1000,
        })
        .collect();
    info!(stream = %name, chunks = report.chunks, "api: reindexed");
    Ok(Json(ReindexReport {
        stream: name.to_string(),
        chunks: report.chunks,
        orphans: report.orphans,
        bad: report.bad,
        ranges,
    }))
}

/// Reserved for MP4 export jobs (the seeds' `save-mp4`): validates the
/// request, then answers 501 until MP4 export exists.
#[utoipa::path(post, path = "/api/v1/streams/{name}/dvr/export", tag = "dvr",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    request_body = ExportRequest,
    responses((status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 501, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn export(
    State(api): AppState,
    StreamParam(name): StreamParam,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ExportRequest = json_body(&body)?;
    to_lock(&LockRange {
        from: request.from,
        duration: request.duration,
    })?;
    if let Some(file) = &request.file {
        check_file_name("file", file)?;
    }
    api.existing(&name).await?;
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "export of stream {name} is not available yet: MP4 export jobs come with the MP4 issue; download /{name}/archive-{}-{}.ts meanwhile",
            request.from, request.duration
        ),
    ))
}

/// Play sessions, from the sessions bucket the auth service keeps.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    params(SessionQuery),
    responses((status = 200, body = SessionList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_sessions(
    State(api): AppState,
    RawQuery(query): RawQuery,
) -> Result<Json<SessionList>, ApiError> {
    let mut only = None;
    for (k, v) in url_pairs(query.as_deref().unwrap_or_default()) {
        if k == "stream" {
            only = Some(
                StreamName::new(&v).map_err(|e| ApiError::bad_request(format!("stream: {e}")))?,
            );
        }
    }
    let Some(kv) = &api.sessions else {
        return Ok(Json(SessionList {
            sessions: Vec::new(),
        }));
    };
    let keys = kv
        .keys()
        .await
        .map_err(|e| bus_error("listing sessions", &e))?;
    let mut sessions = Vec::new();
    for key in keys {
        let Some(entry) = kv
            .get(&key)
            .await
            .map_err(|e| bus_error("reading a session", &e))?
        else {
            continue;
        };
        // A record of another version is skipped, not fatal to the list.
        if let Ok(record) = SessionRecord::decode(&entry.value) {
            if only.as_ref().is_none_or(|s| *s == record.stream) {
                sessions.push(record);
            }
        }
    }
    sessions.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
    Ok(Json(SessionList { sessions }))
}

/// The seeds' `dvr_enable/STREAM`: answers `true`.
#[utoipa::path(post, path = "/flussonic/api/dvr_enable/{name}", tag = "flussonic",
    params(("name" = String, Path, description = "Stream name (may contain /)")),
    responses((status = 200, body = bool), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn flussonic_dvr_enable(
    State(api): AppState,
    StreamParam(name): StreamParam,
) -> Result<Json<bool>, ApiError> {
    api.set_dvr(&name, true).await.map(|_| Json(true))
}

/// The seeds' `dvr_disable/STREAM`: answers `true`.
#[utoipa::path(post, path = "/flussonic/api/dvr_disable/{name}", tag = "flussonic",
    params(("name" = String, Path, description = "Stream name (may contain /)")),
    responses((status = 200, body = bool), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn flussonic_dvr_disable(
    State(api): AppState,
    StreamParam(name): StreamParam,
) -> Result<Json<bool>, ApiError> {
    api.set_dvr(&name, false).await.map(|_| Json(true))
}

fn flussonic_target(body: &Bytes) -> Result<(StreamName, LockRange), ApiError> {
    let b: FlussonicLock = json_body(body)?;
    let name =
        StreamName::new(&b.stream).map_err(|e| ApiError::bad_request(format!("stream: {e}")))?;
    Ok((
        name,
        LockRange {
            from: b.from,
            duration: b.duration,
        },
    ))
}

/// The seeds' `dvr/lock` with `{"stream","from","duration"}`.
#[utoipa::path(post, path = "/flussonic/api/dvr/lock", tag = "flussonic",
    request_body = FlussonicLock,
    responses((status = 200, body = LockList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn flussonic_lock(State(api): AppState, body: Bytes) -> Result<Json<LockList>, ApiError> {
    let (name, range) = flussonic_target(&body)?;
    Ok(Json(api.edit_lock(&name, &range, true).await?))
}

/// The seeds' `dvr/unlock` with `{"stream","from","duration"}`.
#[utoipa::path(post, path = "/flussonic/api/dvr/unlock", tag = "flussonic",
    request_body = FlussonicLock,
    responses((status = 200, body = LockList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn flussonic_unlock(
    State(api): AppState,
    body: Bytes,
) -> Result<Json<LockList>, ApiError> {
    let (name, range) = flussonic_target(&body)?;
    Ok(Json(api.edit_lock(&name, &range, false).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_inside_the_export_directory() {
        check_file_name("file", "ort/2026-11-21.mp4").unwrap();
        for bad in [
            "",
            "/etc/passwd",
            "../x.mp4",
            "a/../../x",
            "a//b",
            "./a",
            "a\0b",
            "C:x",
            "\\\\host\\x",
        ] {
            let e = check_file_name("file", bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(e.message.starts_with("file: "), "{}", e.message);
        }
        assert!(check_file_name("file", &"a".repeat(256)).is_err());
    }

    #[test]
    fn queries_decode() {
        assert_eq!(
            url_pairs("from=1&duration=%32&x"),
            vec![
                ("from".into(), "1".into()),
                ("duration".into(), "2".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
        assert!(lock_query(Some("from=1")).is_err());
        assert!(lock_query(Some("from=x&duration=1")).is_err());
    }
}
