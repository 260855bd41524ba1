//! HTTP MPEG-TS pull (`http://`, `https://`, `tshttp://`).
//!
//! A live TS over HTTP is one endless response body. When it breaks (server
//! restart, network) the source reports the loss and reconnects on the next
//! call, waiting an exponentially growing, jittered delay so a fleet of
//! ingests does not hammer a recovering origin in lockstep.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{mask_credentials, BoxFuture, InputUrl, Source, SourceChunk};
use crate::error::IngestError;

/// Connection behaviour of HTTP inputs.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Time allowed to establish the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time allowed between two reads of the response body.
    pub read_timeout: Duration,
    /// First reconnect delay; doubles at each failed attempt.
    pub backoff_start: Duration,
    /// Largest reconnect delay.
    pub backoff_cap: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            backoff_start: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
        }
    }
}

/// The delay before reconnect attempt `attempt` (1 for the first retry):
/// half the exponential step fixed, half random, capped.
pub fn backoff_delay(options: &HttpOptions, attempt: u32, random: u64) -> Duration {
    let start = options.backoff_start.as_millis().max(1);
    let cap = options.backoff_cap.as_millis().max(start);
    let step = start
        .saturating_mul(1u128 << attempt.saturating_sub(1).min(30))
        .min(cap);
    let half = step / 2;
    let jitter = u128::from(random) % (step - half + 1);
    Duration::from_millis(u64::try_from(half + jitter).unwrap_or(u64::MAX))
}

/// The HTTP client of one input: its timeouts, our user agent, rustls.
pub(super) fn build_client(
    url: &InputUrl,
    options: &HttpOptions,
) -> Result<reqwest::Client, IngestError> {
    // reqwest is built without a default crypto provider; ring is ours.
    // Installing fails harmlessly when another part already did.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.read_timeout)
        .user_agent(concat!("dvr-ingest/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| IngestError::Http {
            url: url.to_string(),
            message: mask_credentials(&e.to_string()),
            timeout: false,
        })
}

/// A request of input `url` failed: the error names the input (masked) and
/// reqwest's chain of causes, without the unmasked URL reqwest would print.
pub(super) fn request_error(url: &InputUrl, e: reqwest::Error) -> IngestError {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    IngestError::Http {
        url: url.to_string(),
        message: mask_credentials(&message),
        timeout,
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A streaming GET that reconnects.
pub struct HttpSource {
    url: InputUrl,
    target: String,
    client: reqwest::Client,
    options: HttpOptions,
    body: Option<Body>,
    /// Failed attempts since the last byte received.
    failures: u32,
    random: RandomState,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("url", &self.url)
            .field("connected", &self.body.is_some())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl HttpSource {
    /// A source for `target` (already `http` or `https`); connects lazily.
    pub fn new(url: InputUrl, target: &str, options: &HttpOptions) -> Result<Self, IngestError> {
        let client = build_client(&url, options)?;
        Ok(HttpSource {
            url,
            target: target.to_owned(),
            client,
            options: options.clone(),
            body: None,
            failures: 0,
            random: RandomState::new(),
        })
    }

    fn http_error(&self, e: reqwest::Error) -> IngestError {
        request_error(&self.url, e)
    }

    async fn connect(&mut self) -> Result<Body, IngestError> {
        if self.failures > 0 {
            let random = self.random.hash_one(self.failures);
            tokio::time::sleep(backoff_delay(&self.options, self.failures, random)).await;
        }
        let response = self.client.get(&self.target).send().await;
        let response = response.map_err(|e| self.http_error(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(IngestError::HttpStatus {
                url: self.url.to_string(),
                status: status.as_u16(),
            });
        }
        tracing::debug!(input = %self.url, "http source connected");
        Ok(Box::pin(response.bytes_stream()))
    }

    async fn read(&mut self) -> Result<Option<Bytes>, IngestError> {
        loop {
            if self.body.is_none() {
                match self.connect().await {
                    Ok(body) => self.body = Some(body),
                    Err(e) => {
                        self.failures = self.failures.saturating_add(1);
                        return Err(e);
                    }
                }
            }
            let Some(body) = self.body.as_mut() else {
                continue;
            };
            match body.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => {
                    self.failures = 0;
                    return Ok(Some(chunk));
                }
                Some(Err(e)) => {
                    self.body = None;
                    self.failures = self.failures.saturating_add(1);
                    return Err(self.http_error(e));
                }
                None => {
                    self.body = None;
                    self.failures = self.failures.saturating_add(1);
                    return Err(IngestError::Ended {
                        url: self.url.to_string(),
                    });
                }
            }
        }
    }
}

impl Source for HttpSource {
    fn url(&self) -> &InputUrl {
        &self.url
    }

    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<SourceChunk>, IngestError>> {
        Box::pin(async { Ok(self.read().await?.map(SourceChunk::from)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let o = HttpOptions::default();
        assert_eq!(backoff_delay(&o, 1, 0), Duration::from_millis(50));
        assert_eq!(backoff_delay(&o, 1, 50), Duration::from_millis(100));
        assert_eq!(backoff_delay(&o, 3, 0), Duration::from_millis(200));
        for attempt in 1..100 {
            for random in [0, 1, 12345, u64::MAX] {
                let d = backoff_delay(&o, attempt, random);
                assert!(d <= o.backoff_cap, "{attempt} {random} {d:?}");
            }
        }
        assert!(backoff_delay(&o, 40, 0) >= Duration::from_millis(2500));
    }
}
