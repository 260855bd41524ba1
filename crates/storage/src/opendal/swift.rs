//! The Swift backend: a login ([`crate::swift_auth`]) and an OpenDAL
//! `Swift` operator built on its token, plus the raw Swift HTTP that OpenDAL
//! does not do.
//!
//! OpenDAL's Swift service takes a fixed token, so [`SwiftSession`] rebuilds
//! the operator whenever the token is renewed (before it expires, or after a
//! 401). Large objects are static large objects whose segments OpenDAL
//! writes under [`SEGMENTS_PREFIX`]; deleting or overwriting one would leak
//! them, so deletes go straight to Swift with `multipart-manifest=delete`
//! and an overwrite deletes the segments it replaced. Single PUTs of a whole
//! file also go over raw HTTP, their body streamed.

use std::sync::Arc;
use std::time::Duration;

use dvr_common::{Clock, UtcMs};
use opendal::Operator;
use tokio::sync::Mutex;
use tracing::debug;

use crate::config::SwiftConfig;
use crate::error::{Op, StorageError, StorageResult};
use crate::redact::Redactor;
use crate::swift_auth::{refresh_at, SwiftAuth, SwiftToken};
use crate::upload::{streamed_put, PutFailure, UploadSource};
use crate::uri::StorageUri;

/// Where Swift keeps the segments of large objects (OpenDAL's convention);
/// hidden from listings of a container root.
pub(super) const SEGMENTS_PREFIX: &str = ".segments/";

/// A Swift login and the OpenDAL operator built on its token.
#[derive(Debug)]
pub(super) struct SwiftSession {
    pub(super) auth: SwiftAuth,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    margin: Duration,
    container: String,
    root: String,
    redactor: Redactor,
    current: Mutex<Option<SwiftCurrent>>,
}

/// The login in use: its token and the operator built on it.
#[derive(Clone, Debug)]
pub(super) struct SwiftCurrent {
    pub(super) op: Operator,
    token: SwiftToken,
    refresh_at: Option<UtcMs>,
}

impl SwiftSession {
    pub(super) fn new(
        uri: &StorageUri,
        cfg: &SwiftConfig,
        clock: Arc<dyn Clock>,
        redactor: Redactor,
    ) -> Result<Self, String> {
        let auth = SwiftAuth::from_config(cfg)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            auth,
            http,
            clock,
            margin: Duration::from_secs(cfg.refresh_margin_secs),
            container: uri.bucket().to_owned(),
            root: uri.root(),
            redactor,
            current: Mutex::new(None),
        })
    }

    async fn current(&self) -> Result<SwiftCurrent, (String, bool)> {
        let mut guard = self.current.lock().await;
        let now = self.clock.now();
        if let Some(c) = guard.as_ref() {
            if c.refresh_at.is_none_or(|t| now < t) {
                return Ok(c.clone());
            }
        }
        let token = self.auth.authenticate(&self.http, now).await?;
        self.redactor.add(token.token.expose());
        let builder = opendal::services::Swift::default()
            .endpoint(&token.storage_url)
            .container(&self.container)
            .root(&self.root)
            .token(token.token.expose());
        let op = Operator::new(builder).map_err(|e| {
            (
                format!(
                    "cannot configure Swift: {}",
                    self.redactor.scrub(&e.to_string())
                ),
                false,
            )
        })?;
        debug!(container = %self.container, "swift token obtained");
        let cur = SwiftCurrent {
            op,
            refresh_at: refresh_at(&token, self.margin),
            token,
        };
        *guard = Some(cur.clone());
        Ok(cur)
    }

    pub(super) async fn invalidate(&self) {
        *self.current.lock().await = None;
    }

    /// Names of the SLO segments stored for `key` (OpenDAL's layout:
    /// `.segments/{root}{key}{upload-uuid}/{part:08}`). Best effort: a
    /// failed listing returns nothing and at worst leaves garbage.
    pub(super) async fn segments_of(&self, key: &str) -> Vec<String> {
        let Ok(cur) = self.current().await else {
            return Vec::new();
        };
        let abs = format!("{}{}", self.root.trim_start_matches('/'), key);
        let prefix = format!("{SEGMENTS_PREFIX}{abs}");
        let url = format!(
            "{}/{}?format=json&prefix={}",
            cur.token.storage_url,
            encode_path(&self.container),
            encode_path(&prefix).replace('/', "%2F")
        );
        let resp = self
            .http
            .get(&url)
            .header("X-Auth-Token", cur.token.token.expose())
            .send()
            .await;
        let Ok(resp) = resp else {
            return Vec::new();
        };
        if !resp.status().is_success() {
            return Vec::new();
        }
        let Ok(listing) = resp.json_value().await else {
            return Vec::new();
        };
        listing
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.get("name").and_then(|n| n.as_str()))
            .filter(|name| name.strip_prefix(&prefix).is_some_and(is_segment_suffix))
            .map(str::to_owned)
            .collect()
    }

    /// The current login, or the error that says why there is none.
    pub(super) async fn logged_in(
        &self,
        op: Op,
        key: &str,
        uri: &str,
    ) -> StorageResult<SwiftCurrent> {
        self.current().await.map_err(|(detail, transient)| {
            let detail = self.redactor.scrub(&detail);
            let (key, uri) = (key.to_owned(), uri.to_owned());
            if transient {
                StorageError::Unavailable {
                    op,
                    key,
                    uri,
                    detail,
                }
            } else {
                StorageError::Denied {
                    op,
                    key,
                    uri,
                    detail,
                }
            }
        })
    }

    /// The URL of `key` in the container, under the root.
    fn object_url(&self, cur: &SwiftCurrent, key: &str) -> String {
        let path = format!("{}{}", self.root.trim_start_matches('/'), key);
        format!(
            "{}/{}/{}",
            cur.token.storage_url,
            encode_path(&self.container),
            encode_path(&path)
        )
    }

    /// One PUT of the whole object, its body streamed from `source`; a
    /// token that expired early is renewed once.
    pub(super) async fn single_put(
        &self,
        key: &str,
        source: &dyn UploadSource,
        timeout: Duration,
        uri: &str,
    ) -> StorageResult<()> {
        let mut renewed = false;
        loop {
            let cur = self.logged_in(Op::PutFile, key, uri).await?;
            let mut headers = reqwest::header::HeaderMap::new();
            let token =
                reqwest::header::HeaderValue::from_str(cur.token.token.expose()).map_err(|_| {
                    StorageError::Denied {
                        op: Op::PutFile,
                        key: key.to_owned(),
                        uri: uri.to_owned(),
                        detail: "the Swift token is not a valid header value".to_owned(),
                    }
                })?;
            headers.insert("X-Auth-Token", token);
            match streamed_put(
                &self.http,
                &self.object_url(&cur, key),
                headers,
                source,
                timeout,
            )
            .await
            {
                Ok(()) => return Ok(()),
                Err(PutFailure::Status(401, _)) if !renewed && self.auth.can_refresh() => {
                    self.invalidate().await;
                    renewed = true;
                }
                Err(f) => {
                    return Err(f.into_error(Op::PutFile, key, uri, &source.origin(), |t| {
                        self.redactor.scrub(t)
                    }))
                }
            }
        }
    }

    /// Deletes segment objects by container-relative name; best effort.
    pub(super) async fn delete_segments(&self, names: &[String]) {
        let Ok(cur) = self.current().await else {
            return;
        };
        for name in names {
            let url = format!(
                "{}/{}/{}",
                cur.token.storage_url,
                encode_path(&self.container),
                encode_path(name)
            );
            let res = self
                .http
                .delete(&url)
                .header("X-Auth-Token", cur.token.token.expose())
                .send()
                .await;
            if let Err(e) = res {
                debug!(segment = %name, error = %e.without_url(), "could not delete a replaced segment");
            }
        }
    }

    /// Deletes an object and, if it is a static large object, its segments.
    ///
    /// `multipart-manifest=delete` removes a manifest with its segments; on a
    /// plain object Swift 2.30 answers with an inner 400 ("not an SLO
    /// manifest"), and a plain DELETE follows.
    pub(super) async fn delete(&self, key: &str, uri: &str) -> StorageResult<()> {
        let mut renewed = false;
        let mut slo = true;
        loop {
            let cur = self.logged_in(Op::Delete, key, uri).await?;
            let url = format!(
                "{}{}",
                self.object_url(&cur, key),
                if slo {
                    "?multipart-manifest=delete"
                } else {
                    ""
                }
            );
            let res = self
                .http
                .delete(&url)
                .header("X-Auth-Token", cur.token.token.expose())
                .header("Accept", "application/json")
                .send()
                .await;
            let err = |detail: String, transient: bool| {
                let (op, key, uri) = (Op::Delete, key.to_owned(), uri.to_owned());
                if transient {
                    StorageError::Unavailable {
                        op,
                        key,
                        uri,
                        detail,
                    }
                } else {
                    StorageError::Other {
                        op,
                        key,
                        uri,
                        detail,
                    }
                }
            };
            let resp =
                res.map_err(|e| err(self.redactor.scrub(&e.without_url().to_string()), true))?;
            let status = resp.status();
            if status.as_u16() == 401 && !renewed && self.auth.can_refresh() {
                self.invalidate().await;
                renewed = true;
                continue;
            }
            if status.is_success() || status.as_u16() == 404 {
                // The SLO middleware answers 200 with a bulk report; a
                // failure inside it shows as its "Response Status".
                let body = resp.text().await.unwrap_or_default();
                let inner = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| {
                        v.get("Response Status")
                            .and_then(|s| s.as_str())
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| "200 OK".to_owned());
                let code: u16 = inner
                    .split(' ')
                    .next()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(200);
                if code == 400 && slo {
                    slo = false;
                    continue;
                }
                if !(200..300).contains(&code) && code != 404 {
                    return Err(err(format!("swift reported {inner}"), code >= 500));
                }
                return Ok(());
            }
            if status.as_u16() == 400 && slo {
                slo = false;
                continue;
            }
            if status.as_u16() == 401 || status.as_u16() == 403 {
                return Err(StorageError::Denied {
                    op: Op::Delete,
                    key: key.to_owned(),
                    uri: uri.to_owned(),
                    detail: format!("swift answered {status}"),
                });
            }
            let transient = status.is_server_error() || status.as_u16() == 429;
            return Err(err(format!("swift answered {status}"), transient));
        }
    }
}

/// Whether `rest` is `{uuid}/{part}`, the tail of a segment name, so the
/// segments of `a.ts` are not confused with those of `a.ts.idx`.
fn is_segment_suffix(rest: &str) -> bool {
    let Some((uuid, part)) = rest.split_once('/') else {
        return false;
    };
    uuid.len() == 36
        && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && !part.is_empty()
        && part.chars().all(|c| c.is_ascii_digit())
}

trait JsonValue {
    async fn json_value(self) -> Result<serde_json::Value, ()>;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Result<serde_json::Value, ()> {
        let bytes = self.bytes().await.map_err(|_| ())?;
        serde_json::from_slice(&bytes).map_err(|_| ())
    }
}

/// Percent-encodes a path for a Swift URL, keeping `/`.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_matched_exactly() {
        assert!(is_segment_suffix(
            "9f201046-0f40-4307-a74b-7971f733d5be/00000002"
        ));
        assert!(!is_segment_suffix(
            ".idx9f201046-0f40-4307-a74b-7971f733d5be/00000002"
        ));
        assert!(!is_segment_suffix("9f201046-0f40-4307-a74b-7971f733d5be"));
    }

    #[test]
    fn swift_paths_are_percent_encoded() {
        assert_eq!(encode_path("a b/ü.ts"), "a%20b/%C3%BC.ts");
    }
}
