//! The routes: streams in the streams KV bucket, DVR switches, locks,
//! status, sessions, reindex, and the Flussonic-compatible aliases.
//!
//! Every handler validates what the request carries (the stream name in
//! the path, the body) before touching the bucket or an archive, so a bad
//! request costs no storage call. Stream names with `/` go in one path
//! segment as `%2F` (`/api/v1/streams/news%2Fhd`); the Flussonic aliases
//! take them unencoded, as middleware sends them.
//!
//! The routes by family: [`streams`] (settings, status, DVR switches),
//! [`locks`] (locks and reindex, the archive edits), [`exports`],
//! [`sessions`], [`storage`] (whether the archives answer), and [`flussonic`] (the aliases middleware calls). Their
//! types and document are in [`crate::schema`], what they share in
//! [`crate::state`].

#![allow(
    unused_qualifications,
    reason = "utoipa's params(...) expansion names types by path"
)]

pub mod exports;
pub mod flussonic;
pub mod locks;
pub mod sessions;
pub mod storage;
pub mod streams;

pub use exports::*;
pub use flussonic::*;
pub use locks::*;
pub use sessions::*;
pub use storage::*;
pub use streams::*;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use dvr_common::StreamName;

use crate::error::ApiError;

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

/// `a=1&b=2` as decoded pairs (`+` is a space, invalid escapes stay as
/// written, invalid UTF-8 is replaced).
pub(crate) fn url_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            url_pairs("k=a%2Fb%zz%"),
            vec![("k".into(), "a/b%zz%".into())]
        );
    }
}
