//! The backends themselves: file, memory, S3 and Swift, all on Apache
//! OpenDAL.
//!
//! One type, [`OpendalStorage`], serves every protocol; what differs is how
//! its OpenDAL operator is made. This file holds the type and what every
//! backend shares (error mapping, the Swift-aware retry of a rejected token,
//! ranges, listings, streamed writers); each backend's setup and its own code
//! live beside it: `fs` (atomic writes through a hidden temporary
//! directory), `memory` (stores shared by URI), `s3` (presigned single
//! PUTs) and `swift` (the token-bound operator and the raw HTTP for large
//! objects). For Swift the operator is rebuilt whenever the token is renewed
//! (OpenDAL's Swift service takes a fixed token), and deletes go straight to
//! Swift with `multipart-manifest=delete` so that the segments of a large
//! upload are removed with its manifest instead of leaking.

mod fs;
mod memory;
mod s3;
mod swift;

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dvr_common::error::ErrorKind;
use dvr_common::{Clock, UtcMs};
use futures::{StreamExt, TryStreamExt};
use opendal::{ErrorKind as OdKind, Operator};
use tracing::debug;

use crate::config::StorageConfig;
use crate::error::{Op, StorageError, StorageResult};
use crate::key::{validate_prefix, ObjectKey};
use crate::redact::Redactor;
use crate::storage::{ObjectMeta, ObjectWriter, Storage};
use crate::upload::{exact_stream, UploadSource, MAX_SINGLE_PUT};
use crate::uri::{Protocol, StorageUri};

use self::swift::SwiftSession;

/// Parallel deletes against stores without a bulk delete we can use.
const DELETE_CONCURRENCY: usize = 8;

/// A [`Storage`] on an OpenDAL operator.
#[derive(Debug)]
pub struct OpendalStorage {
    uri: String,
    protocol: Protocol,
    backend: Backend,
    part_size: usize,
    single_put_max: u64,
    upload_timeout: Duration,
    /// For single PUTs to presigned S3 URLs (Swift uses its session's).
    http: reqwest::Client,
    redactor: Redactor,
    /// For S3, the endpoint as configured, so the start-up check can say
    /// which one it could not reach (OpenDAL's text buries it in a context).
    s3_endpoint: Option<String>,
}

#[derive(Debug)]
enum Backend {
    Plain {
        op: Operator,
        fs_root: Option<PathBuf>,
    },
    Swift(Arc<SwiftSession>),
}

impl OpendalStorage {
    /// Builds the backend for `uri`. Nothing is contacted yet: call
    /// [`Storage::check`] to find out whether the store is usable.
    pub fn new(
        uri: &StorageUri,
        config: &StorageConfig,
        clock: Arc<dyn Clock>,
    ) -> StorageResult<Self> {
        crate::install_opendal();
        let shown = uri.to_string();
        let redactor = Redactor::new(config.secrets());
        let cfg_err = |detail: String| StorageError::Config {
            uri: shown.clone(),
            detail: redactor.scrub(&detail),
        };
        if config.part_size < crate::config::MIN_PART_SIZE {
            return Err(cfg_err(format!(
                "part_size {} is below the 5 MiB minimum of S3 multipart uploads",
                config.part_size
            )));
        }
        let backend = match uri.protocol() {
            Protocol::File => Backend::Plain {
                op: fs::operator(uri).map_err(|e| cfg_err(e.to_string()))?,
                fs_root: Some(PathBuf::from(uri.path())),
            },
            Protocol::Memory => Backend::Plain {
                op: memory::operator(uri)?,
                fs_root: None,
            },
            Protocol::S3 => Backend::Plain {
                op: s3::operator(uri, &config.s3).map_err(|e| cfg_err(e.to_string()))?,
                fs_root: None,
            },
            Protocol::Swift => Backend::Swift(Arc::new(
                SwiftSession::new(uri, &config.swift, clock, redactor.clone()).map_err(cfg_err)?,
            )),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| cfg_err(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            uri: shown,
            protocol: uri.protocol(),
            backend,
            part_size: config.part_size,
            single_put_max: config.single_put_max.min(MAX_SINGLE_PUT),
            upload_timeout: config.timeout.upload(),
            http,
            redactor,
            s3_endpoint: (uri.protocol() == Protocol::S3).then(|| s3::shown_endpoint(&config.s3)),
        })
    }

    async fn operator(&self, op: Op, key: &str) -> StorageResult<Operator> {
        match &self.backend {
            Backend::Plain { op, .. } => Ok(op.clone()),
            Backend::Swift(s) => s.logged_in(op, key, &self.uri).await.map(|c| c.op),
        }
    }

    /// Runs `f` on the current operator; on Swift, a rejected token is
    /// renewed once and the call repeated.
    async fn run<T, F, Fut>(&self, op: Op, key: &str, f: F) -> StorageResult<T>
    where
        F: Fn(Operator) -> Fut + Send + Sync,
        Fut: Future<Output = opendal::Result<T>> + Send,
        T: Send,
    {
        let mut renewed = false;
        loop {
            let operator = self.operator(op, key).await?;
            match f(operator).await {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == OdKind::PermissionDenied && !renewed => {
                    if let Backend::Swift(s) = &self.backend {
                        if s.auth.can_refresh() {
                            debug!(uri = %self.uri, op = %op, "swift token rejected, renewing");
                            s.invalidate().await;
                            renewed = true;
                            continue;
                        }
                    }
                    return Err(self.map_err(op, key, &e));
                }
                Err(e) => return Err(self.map_err(op, key, &e)),
            }
        }
    }

    fn map_err(&self, op: Op, key: &str, e: &opendal::Error) -> StorageError {
        map_opendal_err(&self.uri, &self.redactor, op, key, e)
    }

    async fn stat_inner(&self, op: Op, key: &str) -> StorageResult<Option<ObjectMeta>> {
        let res = self
            .run(op, key, |o| async move { o.stat(key).await })
            .await;
        match res {
            Ok(m) if m.is_dir() => Ok(None),
            Ok(m) => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                len: m.content_length(),
                last_modified: m.last_modified().map(to_utc_ms),
            })),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn writer(&self, op: Op, key: &str) -> StorageResult<OpendalWriter> {
        let part = self.part_size;
        let inner = self
            .run(op, key, |o| async move {
                o.writer_with(key).chunk(part).concurrent(2).await
            })
            .await?;
        Ok(OpendalWriter {
            inner,
            key: key.to_owned(),
            uri: self.uri.clone(),
            redactor: self.redactor.clone(),
            written: 0,
            replaced: self.replaced_segments(key).await,
        })
    }

    /// On Swift, the segments of the object a write is about to replace:
    /// overwriting a static large object orphans them, so they are deleted
    /// once the new object is in place.
    async fn replaced_segments(&self, key: &str) -> Option<(Arc<SwiftSession>, Vec<String>)> {
        match &self.backend {
            Backend::Swift(s) => {
                let old = s.segments_of(key).await;
                (!old.is_empty()).then(|| (s.clone(), old))
            }
            Backend::Plain { .. } => None,
        }
    }
}

impl OpendalStorage {
    /// A streamed upload through OpenDAL's writer: multipart on S3, SLO on
    /// Swift, a temporary file renamed into place on the file backend.
    async fn put_in_parts(&self, key: &str, source: &dyn UploadSource) -> StorageResult<u64> {
        let mut w = self.writer(Op::PutFile, key).await?;
        let mut stream = exact_stream(source);
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = w.inner.abort().await;
                    return Err(StorageError::LocalFile {
                        op: Op::PutFile,
                        key: key.to_owned(),
                        uri: self.uri.clone(),
                        path: source.origin(),
                        source: e,
                    });
                }
            };
            if let Err(e) = w.write_op(Op::PutFile, chunk).await {
                let _ = w.inner.abort().await;
                return Err(e);
            }
        }
        w.finish_op(Op::PutFile).await
    }
}

fn to_utc_ms(t: opendal::raw::Timestamp) -> UtcMs {
    UtcMs(t.into_inner().as_millisecond())
}

fn map_opendal_err(
    uri: &str,
    redactor: &Redactor,
    op: Op,
    key: &str,
    e: &opendal::Error,
) -> StorageError {
    let key = key.to_owned();
    let uri = uri.to_owned();
    let detail = redactor.scrub(&e.to_string());
    match e.kind() {
        OdKind::NotFound => StorageError::NotFound { op, key, uri },
        // OpenDAL files a missing bucket under configuration errors.
        OdKind::ConfigInvalid if detail.contains("NoSuchBucket") => {
            StorageError::NotFound { op, key, uri }
        }
        OdKind::RangeNotSatisfied => StorageError::InvalidRange {
            op,
            key,
            uri,
            range: 0..0,
            detail,
        },
        OdKind::PermissionDenied => StorageError::Denied {
            op,
            key,
            uri,
            detail,
        },
        OdKind::ConfigInvalid => StorageError::Config { uri, detail },
        OdKind::RateLimited => StorageError::Unavailable {
            op,
            key,
            uri,
            detail,
        },
        _ if e.is_temporary() => StorageError::Unavailable {
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

#[async_trait]
impl Storage for OpendalStorage {
    async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        ObjectKey::parse(key)?;
        let replaced = self.replaced_segments(key).await;
        let data = &data;
        self.run(
            Op::Put,
            key,
            |o| async move { o.write(key, data.clone()).await },
        )
        .await?;
        if let Some((s, old)) = replaced {
            s.delete_segments(&old).await;
        }
        Ok(())
    }

    async fn put_writer(&self, key: &str) -> StorageResult<Box<dyn ObjectWriter>> {
        ObjectKey::parse(key)?;
        Ok(Box::new(self.writer(Op::PutStream, key).await?))
    }

    async fn put_source(&self, key: &str, source: Arc<dyn UploadSource>) -> StorageResult<u64> {
        ObjectKey::parse(key)?;
        let len = source.len();
        if len > self.single_put_max {
            return self.put_in_parts(key, source.as_ref()).await;
        }
        match &self.backend {
            Backend::Plain { op, .. } if self.protocol == Protocol::S3 => {
                self.s3_single_put(op, key, source.as_ref()).await?;
            }
            Backend::Swift(session) => {
                let replaced = self.replaced_segments(key).await;
                session
                    .single_put(key, source.as_ref(), self.upload_timeout, &self.uri)
                    .await?;
                if let Some((s, old)) = replaced {
                    s.delete_segments(&old).await;
                }
            }
            Backend::Plain { .. } => return self.put_in_parts(key, source.as_ref()).await,
        }
        Ok(len)
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        ObjectKey::parse(key)?;
        let buf = self
            .run(Op::Get, key, |o| async move { o.read(key).await })
            .await?;
        Ok(buf.to_bytes())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        ObjectKey::parse(key)?;
        let invalid = |detail: String| StorageError::InvalidRange {
            op: Op::GetRange,
            key: key.to_owned(),
            uri: self.uri.clone(),
            range: range.clone(),
            detail,
        };
        if range.start > range.end {
            return Err(invalid("start is after end".into()));
        }
        let check_against_len = |len: u64| {
            if range.end > len {
                Err(invalid(format!("the object is {len} bytes")))
            } else {
                Ok(())
            }
        };
        if range.start == range.end {
            let meta = self.stat_inner(Op::GetRange, key).await?.ok_or_else(|| {
                StorageError::NotFound {
                    op: Op::GetRange,
                    key: key.to_owned(),
                    uri: self.uri.clone(),
                }
            })?;
            check_against_len(meta.len)?;
            return Ok(Bytes::new());
        }
        let r = range.clone();
        let res = self
            .run(Op::GetRange, key, |o| {
                let r = r.clone();
                async move { o.read_with(key).range(r).await }
            })
            .await;
        match res {
            Ok(buf) if buf.len() as u64 == range.end - range.start => Ok(buf.to_bytes()),
            Ok(buf) => Err(invalid(format!(
                "only {} bytes available from the start",
                buf.len()
            ))),
            Err(
                e @ (StorageError::NotFound { .. }
                | StorageError::Unavailable { .. }
                | StorageError::Denied { .. }),
            ) => Err(e),
            Err(e) => {
                // Stores disagree on a range past the end (416, a short 206,
                // an error about a short body): say the same thing for all.
                if let Ok(Some(meta)) = self.stat_inner(Op::GetRange, key).await {
                    check_against_len(meta.len)?;
                }
                match e {
                    StorageError::InvalidRange { detail, .. } => Err(invalid(detail)),
                    e => Err(e),
                }
            }
        }
    }

    async fn stat(&self, key: &str) -> StorageResult<Option<ObjectMeta>> {
        ObjectKey::parse(key)?;
        self.stat_inner(Op::Stat, key).await
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        // OpenDAL lists directories; a prefix that ends inside a name is
        // listed from its parent and filtered, so every backend agrees.
        let dir = match prefix.rfind('/') {
            _ if prefix.is_empty() => "/".to_owned(),
            Some(i) => prefix[..=i].to_owned(),
            None => "/".to_owned(),
        };
        let dir_ref = dir.as_str();
        let res = self
            .run(Op::List, prefix, |o| async move {
                o.list_with(dir_ref).recursive(true).await
            })
            .await;
        let entries = match res {
            Ok(e) => e,
            Err(StorageError::NotFound { .. }) if !dir.is_empty() && dir != "/" => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.path();
            if path.ends_with('/') || entry.metadata().is_dir() || !path.starts_with(prefix) {
                continue;
            }
            let hidden = match self.protocol {
                Protocol::Swift => path.starts_with(swift::SEGMENTS_PREFIX),
                Protocol::File => path.starts_with(fs::TMP_DIR),
                _ => false,
            };
            if hidden {
                continue;
            }
            let meta = entry.metadata();
            let last_modified = meta.last_modified().map(to_utc_ms);
            if last_modified.is_none() {
                // Local listings carry no sizes; ask for them.
                if let Some(m) = self.stat_inner(Op::List, path).await? {
                    out.push(m);
                }
                continue;
            }
            out.push(ObjectMeta {
                key: path.to_owned(),
                len: meta.content_length(),
                last_modified,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        ObjectKey::parse(key)?;
        match &self.backend {
            Backend::Swift(s) => s.delete(key, &self.uri).await,
            Backend::Plain { .. } => {
                let res = self
                    .run(Op::Delete, key, |o| async move { o.delete(key).await })
                    .await;
                match res {
                    Err(StorageError::NotFound { .. }) => Ok(()),
                    r => r,
                }
            }
        }
    }

    async fn delete_many(&self, keys: &[String]) -> StorageResult<()> {
        for key in keys {
            ObjectKey::parse(key)?;
        }
        if keys.is_empty() {
            return Ok(());
        }
        match &self.backend {
            Backend::Swift(s) => {
                let uri = self.uri.as_str();
                futures::stream::iter(keys.iter().cloned())
                    .map(|k| async move { s.delete(&k, uri).await })
                    .buffer_unordered(DELETE_CONCURRENCY)
                    .try_collect::<Vec<()>>()
                    .await?;
                Ok(())
            }
            Backend::Plain { .. } => {
                let what = format!("{} keys from {}", keys.len(), keys[0]);
                let res = self
                    .run(Op::DeleteMany, &what, |o| async move {
                        o.delete_iter(keys.iter().map(String::as_str)).await
                    })
                    .await;
                match res {
                    Err(StorageError::NotFound { .. }) => Ok(()),
                    r => r,
                }
            }
        }
    }

    async fn check(&self) -> StorageResult<()> {
        if let Backend::Plain {
            fs_root: Some(root),
            ..
        } = &self.backend
        {
            fs::create_root(root, &self.uri).await?;
        }
        let res = self
            .run(Op::Check, "", |o| async move {
                let mut lister = o.lister_with("/").await?;
                lister.try_next().await.map(|_| ())
            })
            .await;
        let what = match self.protocol {
            Protocol::S3 => "bucket",
            Protocol::Swift => "container",
            Protocol::File => "directory",
            Protocol::Memory => "store",
        };
        res.map_err(|e| {
            let (detail, kind) = match &e {
                StorageError::NotFound { .. } => {
                    (format!("the {what} does not exist"), ErrorKind::NotFound)
                }
                StorageError::Denied { detail, .. } => (
                    format!("access denied: check the credentials and their rights on the {what} ({detail})"),
                    ErrorKind::Forbidden,
                ),
                StorageError::Unavailable { detail, .. } => (
                    match &self.s3_endpoint {
                        // OpenDAL's text is `... context: { url: ..., } =>
                        // send http request, source: CAUSE`; the cause and
                        // the endpoint are what an operator needs.
                        Some(endpoint) => format!(
                            "cannot reach the endpoint {endpoint}: check the endpoint setting ({})",
                            detail.rsplit("source: ").next().unwrap_or(detail).trim()
                        ),
                        None => format!(
                            "cannot reach the endpoint: check the endpoint setting ({detail})"
                        ),
                    },
                    ErrorKind::Unavailable,
                ),
                other => (other.to_string(), other_kind(other)),
            };
            StorageError::Unusable { uri: self.uri.clone(), detail, kind }
        })
    }

    fn uri(&self) -> &str {
        &self.uri
    }
}

fn other_kind(e: &StorageError) -> ErrorKind {
    use dvr_common::error::HasErrorKind;
    e.error_kind()
}

/// A streamed upload on an OpenDAL writer.
struct OpendalWriter {
    inner: opendal::Writer,
    key: String,
    uri: String,
    redactor: Redactor,
    written: u64,
    replaced: Option<(Arc<SwiftSession>, Vec<String>)>,
}

impl std::fmt::Debug for OpendalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpendalWriter")
            .field("key", &self.key)
            .field("uri", &self.uri)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl OpendalWriter {
    async fn write_op(&mut self, op: Op, chunk: Bytes) -> StorageResult<()> {
        let n = chunk.len() as u64;
        self.inner
            .write(chunk)
            .await
            .map_err(|e| map_opendal_err(&self.uri, &self.redactor, op, &self.key, &e))?;
        self.written += n;
        Ok(())
    }

    async fn finish_op(mut self, op: Op) -> StorageResult<u64> {
        match self.inner.close().await {
            Ok(_) => {
                if let Some((s, old)) = self.replaced.take() {
                    s.delete_segments(&old).await;
                }
                Ok(self.written)
            }
            Err(e) => {
                let err = map_opendal_err(&self.uri, &self.redactor, op, &self.key, &e);
                let _ = self.inner.abort().await;
                Err(err)
            }
        }
    }
}

#[async_trait]
impl ObjectWriter for OpendalWriter {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        self.write_op(Op::PutStream, chunk).await
    }

    async fn finish(self: Box<Self>) -> StorageResult<u64> {
        (*self).finish_op(Op::PutStream).await
    }

    async fn abort(mut self: Box<Self>) -> StorageResult<()> {
        self.inner
            .abort()
            .await
            .map_err(|e| map_opendal_err(&self.uri, &self.redactor, Op::PutStream, &self.key, &e))
    }
}
