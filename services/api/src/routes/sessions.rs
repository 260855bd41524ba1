//! Play sessions, read from the bucket the auth service keeps.

use axum::extract::{RawQuery, State};
use axum::Json;
use dvr_common::StreamName;
use dvr_proto::{SessionRecord, Versioned};

use super::url_pairs;
use crate::error::{ApiError, ErrorBody};
use crate::schema::{SessionList, SessionQuery};
use crate::state::{bus_error, AppState};

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
