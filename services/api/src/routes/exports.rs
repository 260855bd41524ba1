//! Saved MP4 exports: `POST …/dvr/export` (and the seeds' `POST
//! /STREAM/save-mp4-FROM-DUR?file=NAME`, rewritten to it by
//! [`save_mp4_alias`]) queue a job in the exports bucket
//! ([`dvr_proto::EXPORTS_KV_BUCKET`]); a packager replica writes it into
//! the stream's archive store (`dvr_packager::exports`). The request is
//! checked in full first: range, file name (kept inside the stream's
//! exports prefix), a stream that records, an existing object unless
//! `overwrite`. `GET /api/v1/exports[/{id}]` shows the jobs.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use dvr_bus::BusError;
use dvr_proto::{
    export_job_key, export_object_key, ExportJob, ExportState, Versioned, PROTO_VERSION,
};

use super::locks::to_lock;
use super::StreamParam;
use crate::error::{ApiError, ErrorBody};
use crate::schema::{ExportList, ExportQuery, ExportRequest, LockRange};
use crate::state::{bus_error, json_body, AppState};

/// The most jobs one `GET /api/v1/exports` answer lists (newest first)…
const MAX_LISTED: usize = 1000;
/// …and how many unless `?limit=` says.
const DEFAULT_LISTED: usize = 100;
/// The longest file name an export request may carry.
const MAX_FILE_NAME_LEN: usize = 255;
/// The most bytes of metadata (names and values) one export may store in
/// its file (`413` past it); the seeds' `meta=true` body counts whole.
pub const MAX_META_BYTES: usize = 64 << 10;
/// The largest export request body: the metadata's bytes JSON-escaped
/// (at most 6 bytes a byte) and the rest.
const MAX_EXPORT_BODY: usize = 6 * MAX_META_BYTES + 4096;

fn too_large(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{what}: more than {} KiB", MAX_META_BYTES >> 10),
    )
}

/// Checks the metadata an export stores: names non-empty, at most 255
/// bytes, no control characters; names and values at most
/// [`MAX_META_BYTES`] together.
fn check_meta(meta: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
    for name in meta.keys() {
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "meta: name {name:?}: 1 to 255 bytes, no control characters"
            )));
        }
    }
    let bytes: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_META_BYTES {
        return Err(too_large("meta"));
    }
    Ok(())
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

/// Queues an MP4 export of a range into the stream's archive store
/// (`exports/STREAM/FILE`); answers `202` with the job, whose state
/// `GET /api/v1/exports/{id}` follows.
#[utoipa::path(post, path = "/api/v1/streams/{name}/dvr/export", tag = "dvr",
    params(("name" = String, Path, description = "Stream name; `/` as %2F")),
    request_body = ExportRequest,
    responses((status = 202, description = "The job (an `ExportJob`)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn export(
    State(api): AppState,
    StreamParam(name): StreamParam,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.len() > MAX_EXPORT_BODY {
        return Err(too_large("the export request"));
    }
    let request: ExportRequest = json_body(&body)?;
    check_meta(&request.meta)?;
    to_lock(&LockRange {
        from: request.from,
        duration: request.duration,
    })?;
    let file = request
        .file
        .ok_or_else(|| ApiError::bad_request("file: required (the name to save the MP4 as)"))?;
    check_file_name("file", &file)?;
    if !file.ends_with(".mp4") {
        return Err(ApiError::bad_request(format!(
            "file: {file:?}: must end in .mp4"
        )));
    }
    let key = export_object_key(&name, &file);
    dvr_storage::ObjectKey::parse(&key)
        .map_err(|e| ApiError::bad_request(format!("file: {file:?}: {e}")))?;
    let Some(jobs) = api.exports.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "exports: this process has no exports bucket",
        ));
    };
    let store = api.archive_of(&name).await?;
    if !request.overwrite {
        let exists = store
            .storage()
            .stat(&key)
            .await
            .map_err(|e| ApiError::from_kind(&format!("checking {key}"), &e))?;
        if exists.is_some() {
            return Err(ApiError::conflict(format!(
                "{key} exists; add \"overwrite\": true to replace it"
            )));
        }
    }
    let now = api.clock.now();
    let random = RandomState::new();
    let id = format!(
        "{:016x}{:016x}",
        random.hash_one((&key, request.from, request.duration, now.0)),
        random.hash_one(now.0)
    );
    let job = ExportJob {
        v: PROTO_VERSION,
        id: id.clone(),
        stream: name.clone(),
        from: request.from,
        duration: request.duration,
        file,
        precise: request.precise,
        ignore_gaps: request.ignore_gaps,
        overwrite: request.overwrite,
        meta: request.meta.into_iter().collect(),
        state: ExportState::Queued,
        node: None,
        bytes: 0,
        total: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    jobs.create(&export_job_key(&id), Bytes::from(job.encode()))
        .await
        .map_err(|e| bus_error("queueing the export", &e))?;
    tracing::info!(stream = %name, job = %id, key, "api: export queued");
    let mut response = (StatusCode::ACCEPTED, Json(&job)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/exports/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The export jobs, newest first: `?limit=` of them (default 100, at
/// most 1000), older than `?before=` (the `next` of the previous page).
/// The bucket holds only the jobs of the retention (done and failed jobs
/// expire, `packager.export_retention`), which bounds the read.
#[utoipa::path(get, path = "/api/v1/exports", tag = "dvr",
    params(ExportQuery),
    responses((status = 200, body = ExportList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_exports(
    State(api): AppState,
    RawQuery(query): RawQuery,
) -> Result<Json<ExportList>, ApiError> {
    let (limit, before) = list_query(query.as_deref().unwrap_or_default())?;
    let Some(jobs) = api.exports.clone() else {
        return Ok(Json(ExportList {
            exports: Vec::new(),
            next: None,
        }));
    };
    let entries = jobs
        .list("job.")
        .await
        .map_err(|e| bus_error("listing exports", &e))?;
    let mut exports: Vec<ExportJob> = entries
        .iter()
        .filter_map(|e| ExportJob::decode(&e.value).ok())
        .filter(|job| {
            before
                .as_ref()
                .is_none_or(|b| order(job) < (b.0, b.1.as_str()))
        })
        .collect();
    exports.sort_by(|a, b| order(b).cmp(&order(a)));
    let next = (exports.len() > limit).then(|| {
        let last = &exports[limit - 1];
        format!("{}-{}", last.created_at.0, last.id)
    });
    exports.truncate(limit);
    Ok(Json(ExportList { exports, next }))
}

/// Where a job sorts in the list (newest last).
fn order(job: &ExportJob) -> (i64, &str) {
    (job.created_at.0, job.id.as_str())
}

/// `?limit=` and `?before=MS-ID` of the list.
fn list_query(query: &str) -> Result<(usize, Option<(i64, String)>), ApiError> {
    let mut limit = DEFAULT_LISTED;
    let mut before = None;
    for (key, value) in super::url_pairs(query) {
        match key.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LISTED).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit={value:?}: expected 1 to {MAX_LISTED}"
                        ))
                    })?;
            }
            "before" => {
                let cursor = value
                    .split_once('-')
                    .and_then(|(ms, id)| Some((ms.parse().ok()?, id.to_owned())))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "before={value:?}: expected the `next` of a previous answer"
                        ))
                    })?;
                before = Some(cursor);
            }
            _ => {}
        }
    }
    Ok((limit, before))
}

/// One export job: `state` (`queued`, `running`, `done`, `failed`),
/// `bytes` of `total`, `error`.
#[utoipa::path(get, path = "/api/v1/exports/{id}", tag = "dvr",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "The job (an `ExportJob`)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn export_job(
    State(api): AppState,
    Path(id): Path<String>,
) -> Result<Json<ExportJob>, ApiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "export id {id:?}: expected hex digits"
        )));
    }
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no export {id}"));
    let jobs = api.exports.clone().ok_or_else(not_found)?;
    let entry = jobs
        .get(&export_job_key(&id))
        .await
        .map_err(|e: BusError| bus_error("reading the export", &e))?
        .ok_or_else(not_found)?;
    ExportJob::decode(&entry.value).map(Json).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("export {id}: {e}"),
        )
    })
}

/// The seeds' `POST /STREAM/save-mp4-FROM-DUR?file=NAME`, rewritten to
/// `POST /api/v1/streams/STREAM/dvr/export` before routing, so it passes
/// the API's credentials check and answers as that route does. `precise`,
/// `ignore_gaps` and `overwrite` are taken from the query; with
/// `meta=true` the body (UTF-8 text, at most [`MAX_META_BYTES`], `413`
/// past it) is the file's `comment` (`©cmt` in `udta/meta/ilst`), as the
/// seeds store their opaque value there. Every other request passes
/// unchanged. Applied around the whole router by the
/// binary (a layer on the router would run after routing).
pub async fn save_mp4_alias(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let Some((stream, last)) = path.trim_start_matches('/').rsplit_once('/') else {
        return next.run(request).await;
    };
    let Some(range) = last.strip_prefix("save-mp4-") else {
        return next.run(request).await;
    };
    if request.method() != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "save-mp4: POST with admin credentials\n",
        )
            .into_response();
    }
    let (mut json, meta) = match alias_body(range, request.uri().query().unwrap_or_default()) {
        Ok(asked) => asked,
        Err(e) => return e.into_response(),
    };
    let (mut parts, body) = request.into_parts();
    if meta {
        match meta_body(&parts.headers, body).await {
            Ok(text) => json["meta"] = serde_json::json!({ "comment": text }),
            Err(e) => return e.into_response(),
        }
    }
    let encoded = stream.replace('%', "%25").replace('/', "%2F");
    let Ok(uri) = format!("/api/v1/streams/{encoded}/dvr/export").parse() else {
        return ApiError::bad_request("save-mp4: the stream name does not fit a URL")
            .into_response();
    };
    parts.uri = uri;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    next.run(Request::from_parts(parts, Body::from(json.to_string())))
        .await
}

/// The body of a `save-mp4-…&meta=true`: UTF-8 text of at most
/// [`MAX_META_BYTES`], read no further than that.
async fn meta_body(headers: &axum::http::HeaderMap, body: Body) -> Result<String, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_META_BYTES as u64) {
        return Err(too_large("save-mp4: meta=true: the body"));
    }
    let bytes = axum::body::to_bytes(body, MAX_META_BYTES)
        .await
        .map_err(|_| too_large("save-mp4: meta=true: the body (or it was not read)"))?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::bad_request("save-mp4: meta=true: the body must be UTF-8 text"))
}

/// The export request a `save-mp4-FROM-DUR?…` URL asks for, as JSON, and
/// whether it asks for `meta=true` (the body, to be read, as metadata).
fn alias_body(range: &str, query: &str) -> Result<(serde_json::Value, bool), ApiError> {
    let bad = |why: String| ApiError::bad_request(format!("save-mp4-{range}: {why}"));
    let (from, duration) = range
        .split_once('-')
        .and_then(|(f, d)| Some((f.parse::<i64>().ok()?, d.parse::<i64>().ok()?)))
        .ok_or_else(|| bad("expected save-mp4-FROM-DURATION in whole seconds".into()))?;
    let mut request = serde_json::json!({ "from": from, "duration": duration });
    let mut meta = false;
    for (key, value) in super::url_pairs(query) {
        let flag = || match value.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(bad(format!("{key}={other:?}: expected true or false"))),
        };
        match key.as_str() {
            "file" => request["file"] = value.into(),
            "precise" | "ignore_gaps" | "overwrite" => request[key.as_str()] = flag()?.into(),
            "meta" => meta = flag()?,
            other => return Err(bad(format!("unknown parameter {other:?}"))),
        }
    }
    Ok((request, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_save_mp4_url_becomes_an_export_request() {
        let (v, meta) = alias_body("1350274200-4200", "file=a%2Fb.mp4&precise=true").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"from": 1_350_274_200_i64, "duration": 4200, "file": "a/b.mp4", "precise": true})
        );
        assert!(!meta);
        assert!(alias_body("1-2", "file=a.mp4&meta=true").unwrap().1);
        for (range, query, why) in [
            ("1-x", "file=a.mp4", "expected save-mp4-FROM-DURATION"),
            ("1-2", "file=a.mp4&meta=maybe", "meta=\"maybe\""),
            ("1-2", "file=a.mp4&x=1", "unknown parameter \"x\""),
            ("1-2", "file=a.mp4&overwrite=yes", "overwrite=\"yes\""),
        ] {
            let e = alias_body(range, query).unwrap_err();
            assert!(e.message.contains(why), "{}", e.message);
        }
    }

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
}
