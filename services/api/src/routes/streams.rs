//! A stream's settings in the streams bucket (list, read, create, update,
//! delete), its status, and its DVR switch.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use dvr_common::config::{InputUrl, StreamConfig};
use dvr_common::StreamName;
use dvr_proto::{runtime_key, stream_config_key, IngestReport, ReplicationReport, Versioned};
use tracing::{debug, info};

use super::StreamParam;
use crate::error::{ApiError, ErrorBody};
use crate::schema::{DvrSwitch, StatusList, StreamDoc, StreamEntry, StreamList};
use crate::state::{bus_error, ApiState, AppState};
use crate::status::StreamStatus;

pub(crate) fn entry_json(name: &StreamName, revision: u64, config: &StreamConfig) -> StreamEntry {
    StreamEntry {
        name: name.to_string(),
        revision,
        config: serde_json::to_value(config).unwrap_or_default(),
    }
}

pub(crate) fn with_etag(status: StatusCode, entry: StreamEntry) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", entry.revision)).ok();
    let mut response = (status, Json(entry)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// `If-Match: "REV"` (or a bare number) as a revision.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
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

impl ApiState {
    pub(crate) async fn set_dvr(
        &self,
        name: &StreamName,
        enabled: bool,
    ) -> Result<DvrSwitch, ApiError> {
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

    pub(crate) async fn status_of(&self, name: &StreamName, config: &StreamConfig) -> StreamStatus {
        let runtime = self.status.runtime(name, config).await;
        let ingest = self
            .report::<IngestReport>("ingest", name)
            .await
            .map(Into::into);
        let replication = self
            .report::<ReplicationReport>("replication", name)
            .await
            .map(Into::into);
        let dvr_enabled = config.dvr.as_ref().is_some_and(|d| d.enabled);
        let running = ingest.is_some() || runtime.as_ref().is_some_and(|r| r.source_alive);
        let mut runtime = runtime.unwrap_or_default();
        // The runner may not have followed a dvr_disable yet.
        runtime.recording &= dvr_enabled;
        StreamStatus {
            name: name.to_string(),
            dvr_configured: config.dvr.is_some(),
            dvr_enabled,
            running,
            runtime,
            ingest,
            replication,
        }
    }

    /// What `role` reports in the runtime bucket; `None` without a
    /// bucket, a report, or one this build reads (logged).
    async fn report<R: Versioned>(&self, role: &str, name: &StreamName) -> Option<R> {
        let kv = self.runtime.as_ref()?;
        let entry = kv.get(&runtime_key(role, name)).await.ok()??;
        match R::decode(&entry.value) {
            Ok(report) => Some(report),
            Err(e) => {
                debug!(stream = %name, role, error = %e, "unreadable runtime report");
                None
            }
        }
    }
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
