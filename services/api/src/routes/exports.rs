//! Export jobs (reserved until MP4 export exists): the request is checked
//! in full, the file name kept inside the export directory.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;

use super::locks::to_lock;
use super::StreamParam;
use crate::error::{ApiError, ErrorBody};
use crate::schema::{ExportRequest, LockRange};
use crate::state::{json_body, AppState};

/// The longest file name an export request may carry.
const MAX_FILE_NAME_LEN: usize = 255;

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
}
