//! The archive edits: a stream's locks (ranges retention keeps) and a
//! reindex of its catalog. A lock edit is a read-modify-write of
//! `locks.json`, one at a time per stream across replicas.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use dvr_archive::Lock;
use dvr_common::{StreamName, UtcMs};
use dvr_proto::lock_edit_key;
use tracing::info;

use super::{url_pairs, StreamParam};
use crate::error::{ApiError, ErrorBody};
use crate::schema::{LockList, LockRange, ReindexReport};
use crate::state::{json_body, ApiState, AppState};
use crate::status::Span;

/// The latest UTC second accepted in a lock: years past 9999 are a typo
/// (milliseconds given as seconds).
const MAX_EPOCH_SECS: i64 = 253_402_300_799;
/// The longest lock accepted: ten years.
const MAX_LOCK_SECS: i64 = 10 * 366 * 86_400;

impl ApiState {
    pub(crate) async fn edit_lock(
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

pub(crate) fn to_lock(range: &LockRange) -> Result<Lock, ApiError> {
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

pub(crate) fn lock_query(query: Option<&str>) -> Result<LockRange, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_queries_need_both_numbers() {
        assert!(lock_query(Some("from=1")).is_err());
        assert!(lock_query(Some("from=x&duration=1")).is_err());
    }
}
