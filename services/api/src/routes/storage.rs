//! `GET /api/v1/storage`: whether each archive the streams record into
//! answers, for the operator page and for monitoring that only speaks HTTP.
//!
//! Each root gets the backend's own check (the bucket or container exists,
//! the credentials work, a `file://` directory is there), bounded by
//! [`CHECK_TIMEOUT`], all roots at once. The answer is kept for
//! [`FRESH_FOR`] and one check runs at a time, so pages polling every few
//! seconds and a burst of requests cost the store at most one check per
//! root in that time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;

use crate::error::{ApiError, ErrorBody};
use crate::schema::{ArchiveHealth, StorageHealth};
use crate::state::{ApiState, AppState};

/// A root that has not answered by then is reported failing.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an answer is reused.
pub const FRESH_FOR: Duration = Duration::from_secs(10);

/// The last answer and when it was made.
#[derive(Debug, Default)]
pub(crate) struct HealthCache(tokio::sync::Mutex<Option<(Instant, StorageHealth)>>);

/// Every archive root in use, and whether it answers.
#[utoipa::path(get, path = "/api/v1/storage", tag = "status",
    responses((status = 200, body = StorageHealth), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn storage_health(State(api): AppState) -> Result<Json<StorageHealth>, ApiError> {
    // Held across the check: requests arriving meanwhile wait for its answer.
    let mut cached = api.storage_health.0.lock().await;
    if let Some((at, health)) = cached.as_ref() {
        if at.elapsed() < FRESH_FOR {
            let mut health = health.clone();
            health.age_ms = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
            return Ok(Json(health));
        }
    }
    let health = check_all(&api).await?;
    *cached = Some((Instant::now(), health.clone()));
    Ok(Json(health))
}

async fn check_all(api: &ApiState) -> Result<StorageHealth, ApiError> {
    let mut roots: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(root) = &api.default_archive {
        roots.entry(root.clone()).or_default();
    }
    for (name, _, config) in api.all().await? {
        if let Some(dvr) = config.dvr {
            roots.entry(dvr.root).or_default().push(name.to_string());
        }
    }
    let mut checks = tokio::task::JoinSet::new();
    for (index, (root, streams)) in roots.into_iter().enumerate() {
        let archives = Arc::clone(&api.archives);
        checks.spawn(async move {
            let started = Instant::now();
            let (uri, outcome) = match archives.get(&root) {
                // The registry's error masks credentials; so does the store's uri.
                Err(e) => (mask(&root), Err(e.to_string())),
                Ok(store) => {
                    let storage = store.storage();
                    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, storage.check()).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
                    };
                    (storage.uri().to_owned(), outcome)
                }
            };
            let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            (
                index,
                ArchiveHealth {
                    root: uri,
                    streams,
                    ok: outcome.is_ok(),
                    latency_ms,
                    error: outcome.err(),
                },
            )
        });
    }
    let mut archives = Vec::new();
    while let Some(done) = checks.join_next().await {
        if let Ok(entry) = done {
            archives.push(entry);
        }
    }
    archives.sort_by_key(|(index, _)| *index);
    Ok(StorageHealth {
        age_ms: 0,
        archives: archives.into_iter().map(|(_, a)| a).collect(),
    })
}

/// A root that did not parse, without anything between `//` and `@`.
fn mask(root: &str) -> String {
    match (root.find("://"), root.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}…{}", &root[..scheme + 3], &root[at..])
        }
        _ => root.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn unparsed_roots_lose_their_credentials() {
        assert_eq!(mask("s3://key:secret@bucket/x"), "s3://…@bucket/x");
        assert_eq!(mask("file:///data"), "file:///data");
    }
}
