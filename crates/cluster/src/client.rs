//! The subscriber's side of the segment feed.

use std::time::Duration;

use bytes::Bytes;
use dvr_common::{StreamName, UtcMs};
use futures::StreamExt;
use reqwest::Url;

use crate::feed::{FeedDecoder, FeedItem, FrameError};
use crate::key::ClusterKey;
use crate::signature::{RequestLine, SignedRequest};
use crate::FEED_PATH;

/// How long a feed may stay silent before the link counts as dead: the
/// source sends a heartbeat every few seconds while nothing is new.
pub const FEED_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest stream list read from another origin.
pub const MAX_LIST_BYTES: usize = 8 * 1024 * 1024;
/// The API route that lists an origin's streams.
const STREAMS_PATH: &str = "/api/v1/streams";

/// What is read of the stream list.
#[derive(serde::Deserialize)]
struct StreamList {
    streams: Vec<ListedStream>,
}

#[derive(serde::Deserialize)]
struct ListedStream {
    name: String,
}

/// The largest segment a subscriber takes by default.
pub const DEFAULT_MAX_SEGMENT_BYTES: usize = 256 * 1024 * 1024;

/// Where on the source's tape a feed starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedStart {
    /// At the newest segment.
    Live,
    /// After `seq`, which the source's live log still holds.
    After(u64),
    /// At the segments overlapping `utc` and later, leaving out those up
    /// to `after` when given: resuming anywhere on the archived tape.
    At {
        /// The instant.
        utc: UtcMs,
        /// The last seq the subscriber already has.
        after: Option<u64>,
    },
}

impl FeedStart {
    /// The query naming it (after `stream=`).
    fn query(self) -> String {
        match self {
            FeedStart::Live => String::new(),
            FeedStart::After(seq) => format!("&after={seq}"),
            FeedStart::At { utc, after } => {
                let mut q = format!("&from={}", utc.0);
                if let Some(seq) = after {
                    q.push_str(&format!("&after={seq}"));
                }
                q
            }
        }
    }
}

/// Why a feed could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The request did not reach the source or the link broke.
    #[error("the feed from {url} failed: {reason}")]
    Transport {
        /// The feed's URL (no secret is in it).
        url: String,
        /// What happened.
        reason: String,
    },
    /// The source answered with an error.
    #[error("the source {url} refused the feed with {status}: {message}")]
    Refused {
        /// The feed's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The source's message.
        message: String,
    },
    /// The bytes failed their check.
    #[error("the feed from {url} is corrupt: {source}")]
    Frame {
        /// The feed's URL.
        url: String,
        /// The check that failed.
        #[source]
        source: FrameError,
    },
    /// Nothing arrived for [`FEED_IDLE_TIMEOUT`].
    #[error("the feed from {url} went silent for {secs} s")]
    Silent {
        /// The feed's URL.
        url: String,
        /// How long.
        secs: u64,
    },
}

/// Asks other origins of the cluster, signing every request with the
/// cluster key: their stream lists and their tapes.
#[derive(Debug, Clone)]
pub struct FeedClient {
    http: reqwest::Client,
    key: ClusterKey,
    max_segment_bytes: usize,
}

impl FeedClient {
    /// A client signing with `key`.
    pub fn new(key: ClusterKey) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build the cluster's HTTP client: {e}"))?;
        Ok(Self {
            http,
            key,
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
        })
    }

    /// Refuses segments larger than `bytes`.
    pub fn with_max_segment_bytes(mut self, bytes: usize) -> Self {
        self.max_segment_bytes = bytes;
        self
    }

    /// The names of the streams the origin at `base` (`http://host:port/`)
    /// has, from its API's stream list, asked with a signature (signed at
    /// `now`). At most [`MAX_LIST_BYTES`] of answer are read.
    pub async fn streams(&self, base: &str, now: UtcMs) -> Result<Vec<StreamName>, FeedError> {
        let (response, shown, _) = self
            .get_signed(base, STREAMS_PATH, "", now, Some(Duration::from_secs(10)))
            .await?;
        let body = capped_body(response, MAX_LIST_BYTES, &shown).await?;
        let list: StreamList = serde_json::from_slice(&body).map_err(|e| FeedError::Transport {
            url: shown.clone(),
            reason: format!("not a stream list: {e}"),
        })?;
        Ok(list
            .streams
            .into_iter()
            .filter_map(|s| StreamName::new(&s.name).ok())
            .collect())
    }

    /// Sends a GET of `path?query` at `base` signed at `now` (answered
    /// within `timeout` when given): the successful response, the URL as
    /// shown in errors, and the request's nonce, which the answer's MACs
    /// are bound to. An error status is a [`FeedError::Refused`].
    async fn get_signed(
        &self,
        base: &str,
        path: &str,
        query: &str,
        now: UtcMs,
        timeout: Option<Duration>,
    ) -> Result<(reqwest::Response, String, String), FeedError> {
        let (url, shown, signed) = self.signed_get(base, path, query, now)?;
        let mut request = self.http.get(url);
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        for (name, value) in signed.headers() {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| FeedError::Transport {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        if !response.status().is_success() {
            return Err(refused(response, shown).await);
        }
        Ok((response, shown, signed.nonce))
    }

    /// The URL of `path?query` at `base`, as shown in errors, and its
    /// signature at `now`.
    fn signed_get(
        &self,
        base: &str,
        path: &str,
        query: &str,
        now: UtcMs,
    ) -> Result<(Url, String, SignedRequest), FeedError> {
        let mut url =
            Url::parse(base)
                .and_then(|b| b.join(path))
                .map_err(|e| FeedError::Transport {
                    url: base.to_owned(),
                    reason: e.to_string(),
                })?;
        url.set_query(Some(query).filter(|q| !q.is_empty()));
        let shown = url.to_string();
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => {
                return Err(FeedError::Transport {
                    url: shown,
                    reason: "the URL has no host".into(),
                })
            }
        };
        let signed = SignedRequest::sign(
            &self.key,
            &RequestLine {
                method: "GET",
                host: &host,
                path: url.path(),
                query: url.query().unwrap_or(""),
                body: b"",
            },
            now.0,
        );
        Ok((url, shown, signed))
    }

    /// Opens the feed of `stream` on the origin at `base`
    /// (`http://host:port`) from `start`, signed at `now`.
    pub async fn subscribe(
        &self,
        base: &str,
        stream: &StreamName,
        start: FeedStart,
        now: UtcMs,
    ) -> Result<FeedSubscription, FeedError> {
        let query = format!("stream={stream}{}", start.query());
        // No overall timeout: the answer lasts as long as the feed.
        let (response, shown, nonce) = self.get_signed(base, FEED_PATH, &query, now, None).await?;
        Ok(FeedSubscription {
            body: response.bytes_stream().boxed(),
            decoder: FeedDecoder::new(self.key.clone(), nonce, self.max_segment_bytes),
            url: shown,
        })
    }
}

/// The body of `response`, refused past `cap` bytes.
async fn capped_body(
    response: reqwest::Response,
    cap: usize,
    shown: &str,
) -> Result<Vec<u8>, FeedError> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| FeedError::Transport {
            url: shown.to_owned(),
            reason: e.to_string(),
        })?;
        if body.len() + chunk.len() > cap {
            return Err(FeedError::Transport {
                url: shown.to_owned(),
                reason: format!("the answer is over {cap} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The refusal an error status says, with the first of its message.
async fn refused(response: reqwest::Response, shown: String) -> FeedError {
    let status = response.status().as_u16();
    let message = match capped_body(response, 64 * 1024, &shown).await {
        Ok(body) => String::from_utf8_lossy(&body)
            .trim()
            .chars()
            .take(500)
            .collect(),
        Err(e) => e.to_string(),
    };
    FeedError::Refused {
        url: shown,
        status,
        message,
    }
}

/// An open feed: its items as they come, verified.
pub struct FeedSubscription {
    body: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: FeedDecoder,
    url: String,
}

impl std::fmt::Debug for FeedSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSubscription")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl FeedSubscription {
    /// The next item; `None` when the source ended the answer cleanly.
    pub async fn next(&mut self) -> Result<Option<FeedItem>, FeedError> {
        loop {
            let frame = |source| FeedError::Frame {
                url: self.url.clone(),
                source,
            };
            if let Some(item) = self.decoder.next_item().map_err(frame)? {
                return Ok(Some(item));
            }
            match tokio::time::timeout(FEED_IDLE_TIMEOUT, self.body.next()).await {
                Err(_) => {
                    return Err(FeedError::Silent {
                        url: self.url.clone(),
                        secs: FEED_IDLE_TIMEOUT.as_secs(),
                    })
                }
                Ok(None) => {
                    self.decoder.finish().map_err(|source| FeedError::Frame {
                        url: self.url.clone(),
                        source,
                    })?;
                    return Ok(None);
                }
                Ok(Some(Err(e))) => {
                    return Err(FeedError::Transport {
                        url: self.url.clone(),
                        reason: e.to_string(),
                    })
                }
                Ok(Some(Ok(bytes))) => self.decoder.push(&bytes),
            }
        }
    }
}
