//! Uploads of a known length from a replayable source, as one streamed PUT.
//!
//! An hour of a 5 Mbps channel is a 2.25 GB chunk. As a multipart upload in
//! 16 MiB parts that is some 140 requests, each billed, and every part held
//! in memory while it is sent. The recorder knows the chunk's length before
//! it starts (the sum of its segments), so it can instead send the whole
//! chunk as one PUT with a `Content-Length`, its body streamed from the live
//! log on disk: one request per chunk, constant memory. S3 and Swift accept
//! single objects of up to 5 GiB this way; beyond that (or where
//! [`StorageConfig::single_put_max`](crate::StorageConfig::single_put_max)
//! says so) the backend falls back to its multipart or segmented upload.
//!
//! A source can be read again from the start ([`UploadSource::open`]), which
//! is what lets the retry decorator replay a failed upload.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::error::{Op, StorageError};

/// Largest object S3 and Swift accept in one PUT.
pub const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// Bytes to upload, of a length known in advance, readable from the start
/// as many times as retries need.
pub trait UploadSource: Send + Sync + fmt::Debug {
    /// The exact number of bytes [`UploadSource::open`] yields.
    fn len(&self) -> u64;

    /// Whether there is nothing to upload.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh stream of every byte, from the first.
    fn open(&self) -> BoxStream<'static, std::io::Result<Bytes>>;

    /// Where the bytes come from, for error messages (a path, a log range).
    fn origin(&self) -> String;
}

/// A local file as an upload source.
#[derive(Clone, Debug)]
pub struct FileUpload {
    path: PathBuf,
    len: u64,
}

/// Bytes read from a file at a time.
const FILE_READ_SIZE: usize = 1024 * 1024;

impl FileUpload {
    /// The file at `path`, whose length is taken now; a file that changes
    /// size before the upload ends fails it.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let len = tokio::fs::metadata(path).await?.len();
        Ok(Self {
            path: path.to_owned(),
            len,
        })
    }
}

impl UploadSource for FileUpload {
    fn len(&self) -> u64 {
        self.len
    }

    fn open(&self) -> BoxStream<'static, std::io::Result<Bytes>> {
        let path = self.path.clone();
        futures::stream::once(async move { tokio::fs::File::open(path).await })
            .flat_map(|opened| match opened {
                Ok(file) => futures::stream::unfold(Some(file), |file| async move {
                    let mut file = file?;
                    let mut buf = BytesMut::with_capacity(FILE_READ_SIZE);
                    match file.read_buf(&mut buf).await {
                        Ok(0) => None,
                        Ok(_) => Some((Ok(buf.freeze()), Some(file))),
                        Err(e) => Some((Err(e), None)),
                    }
                })
                .boxed(),
                Err(e) => futures::stream::iter([Err(e)]).boxed(),
            })
            .boxed()
    }

    fn origin(&self) -> String {
        format!("local file {}", self.path.display())
    }
}

/// `source`'s stream, ending in an error if it yields more or fewer bytes
/// than it announced: a store must never keep a chunk whose length differs
/// from what its index will say.
pub(crate) fn exact_stream(
    source: &dyn UploadSource,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let announced = source.len();
    futures::stream::unfold(
        (source.open(), 0u64, false),
        move |(mut inner, seen, done)| async move {
            if done {
                return None;
            }
            let wrong = |seen: u64| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the source gave {seen} bytes, {announced} were announced"),
                )
            };
            match inner.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > announced {
                        Some((Err(wrong(seen)), (inner, seen, true)))
                    } else {
                        Some((Ok(chunk), (inner, seen, false)))
                    }
                }
                Some(Err(e)) => Some((Err(e), (inner, seen, true))),
                None if seen != announced => Some((Err(wrong(seen)), (inner, seen, true))),
                None => None,
            }
        },
    )
    .boxed()
}

/// Why a streamed PUT failed.
#[derive(Debug)]
pub(crate) enum PutFailure {
    /// The server answered with this status (and body, shortened).
    Status(u16, String),
    /// No answer: connection refused, reset, timed out.
    Network(String),
    /// Reading the source failed.
    Source(std::io::Error),
}

/// Sends `source` as the body of one PUT to `url` with `headers` and a
/// `Content-Length`; `Ok` on any 2xx answer.
pub(crate) async fn streamed_put(
    http: &reqwest::Client,
    url: &str,
    headers: reqwest::header::HeaderMap,
    source: &dyn UploadSource,
    timeout: Duration,
) -> Result<(), PutFailure> {
    // hyper reports a failed body stream as a generic send error; keep the
    // source's own error to report what really went wrong.
    let source_error: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
    let slot = Arc::clone(&source_error);
    let body = exact_stream(source).map(move |item| {
        item.map_err(|e| {
            let shown = std::io::Error::new(e.kind(), e.to_string());
            if let Ok(mut slot) = slot.lock() {
                slot.get_or_insert(e);
            }
            shown
        })
    });
    let sent = http
        .put(url)
        .headers(headers)
        .header(reqwest::header::CONTENT_LENGTH, source.len())
        .timeout(timeout)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    let taken = source_error.lock().ok().and_then(|mut s| s.take());
    if let Some(e) = taken {
        return Err(PutFailure::Source(e));
    }
    let response = sent.map_err(|e| PutFailure::Network(describe(&e.without_url())))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let short: String = body.chars().take(300).collect();
    Err(PutFailure::Status(status.as_u16(), short))
}

/// An error and its causes on one line.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl PutFailure {
    /// The storage error for this failure; `detail` has been scrubbed of
    /// secrets by the caller's redactor through `scrub`.
    pub(crate) fn into_error(
        self,
        op: Op,
        key: &str,
        uri: &str,
        origin: &str,
        scrub: impl Fn(&str) -> String,
    ) -> StorageError {
        let (op, key, uri) = (op, key.to_owned(), uri.to_owned());
        match self {
            PutFailure::Source(source) => StorageError::LocalFile {
                op,
                key,
                uri,
                path: origin.to_owned(),
                source,
            },
            PutFailure::Network(detail) => StorageError::Unavailable {
                op,
                key,
                uri,
                detail: scrub(&detail),
            },
            PutFailure::Status(status, body) => {
                let detail = scrub(&format!("the store answered {status}: {body}"));
                match status {
                    401 | 403 => StorageError::Denied {
                        op,
                        key,
                        uri,
                        detail,
                    },
                    404 => StorageError::NotFound { op, key, uri },
                    408 | 429 | 500..=599 => StorageError::Unavailable {
                        op,
                        key,
                        uri,
                        detail,
                    },
                    _ => StorageError::Other {
                        op,
                        key,
                        uri,
                        detail,
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    #[tokio::test]
    async fn a_file_reads_whole_and_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        let data: Vec<u8> = (0..3 * FILE_READ_SIZE + 17).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let source = FileUpload::open(&path).await.unwrap();
        assert_eq!(source.len(), data.len() as u64);
        for _ in 0..2 {
            let chunks: Vec<Bytes> = source.open().try_collect().await.unwrap();
            assert_eq!(chunks.concat(), data);
        }
        std::fs::remove_file(&path).unwrap();
        let err = source.open().try_collect::<Vec<Bytes>>().await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(source.origin().contains("a.bin"));
    }
}
