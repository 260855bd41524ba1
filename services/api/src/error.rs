//! The API's one error type: a status and a sentence, answered as
//! `{"error": "..."}`.
//!
//! Library errors map through their [`ErrorKind`] (so a store that is down
//! is 503 here as everywhere), and every message names what was being done
//! and to which stream, field or key.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dvr_common::{ErrorKind, HasErrorKind};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the field, stream or key concerned.
    pub error: String,
}

/// A failed request: the status to answer and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The sentence the client reads.
    pub message: String,
}

impl ApiError {
    /// An error with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request itself is wrong; name the field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such stream.
    pub fn unknown_stream(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("stream {name} is not configured"),
        )
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// An error of a library, by its kind, with what was being done.
    pub fn from_kind(doing: &str, e: &(impl HasErrorKind + std::fmt::Display)) -> Self {
        let kind = e.error_kind();
        let status = match kind {
            // A dependency's own refusal (a revoked key, a bad object) is
            // the store being unusable for us, not the client's fault.
            ErrorKind::Unauthorized | ErrorKind::Forbidden | ErrorKind::InvalidData => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            other => StatusCode::from_u16(other.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        Self::new(status, format!("{doing}: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let headers = response.headers_mut();
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dvr\""),
            );
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"dvr\", charset=\"UTF-8\""),
            );
        }
        response
    }
}
