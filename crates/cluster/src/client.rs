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

/// Follows other origins' tapes, signing every request with the cluster key.
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
        let mut url = Url::parse(base)
            .and_then(|b| b.join(FEED_PATH))
            .map_err(|e| FeedError::Transport {
                url: base.to_owned(),
                reason: e.to_string(),
            })?;
        url.set_query(Some(&query));
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
        let mut request = self.http.get(url);
        for (name, value) in signed.headers() {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| FeedError::Transport {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status();
        if !status.is_success() {
            let message = response.text().await.unwrap_or_default();
            return Err(FeedError::Refused {
                url: shown,
                status: status.as_u16(),
                message: message.trim().chars().take(500).collect(),
            });
        }
        Ok(FeedSubscription {
            body: response.bytes_stream().boxed(),
            decoder: FeedDecoder::new(self.key.clone(), signed.nonce, self.max_segment_bytes),
            url: shown,
        })
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
