//! The Flussonic-compatible aliases middleware calls: names unencoded in
//! the path, locks as a JSON body; each answers as the seeds do.

use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use dvr_common::StreamName;

use super::StreamParam;
use crate::error::{ApiError, ErrorBody};
use crate::schema::{FlussonicLock, LockList, LockRange};
use crate::state::{json_body, AppState};

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

pub(crate) fn flussonic_target(body: &Bytes) -> Result<(StreamName, LockRange), ApiError> {
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
