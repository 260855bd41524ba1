//! The backends themselves: file, memory, S3 and Swift, all on Apache
//! OpenDAL.
//!
//! One type, [`OpendalStorage`], serves every protocol; what differs is how
//! its OpenDAL operator is made. For Swift the operator is rebuilt whenever
//! the token is renewed (OpenDAL's Swift service takes a fixed token), and
//! deletes go straight to Swift with `multipart-manifest=delete` so that the
//! segments of a large upload are removed with its manifest instead of
//! leaking.

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
use tokio::sync::Mutex;
use tracing::debug;

use crate::config::{S3Config, StorageConfig, SwiftConfig};
use crate::error::{Op, StorageError, StorageResult};
use crate::key::{validate_prefix, ObjectKey};
use crate::redact::Redactor;
use crate::storage::{ObjectMeta, ObjectWriter, Storage};
use crate::swift_auth::{refresh_at, SwiftAuth, SwiftToken};
use crate::upload::{exact_stream, streamed_put, PutFailure, UploadSource, MAX_SINGLE_PUT};
use crate::uri::{Protocol, StorageUri};

/// Where Swift keeps the segments of large objects (OpenDAL's convention);
/// hidden from listings of a container root.
const SWIFT_SEGMENTS_PREFIX: &str = ".segments/";

/// Where the file backend writes an object before renaming it into place,
/// so a crash or an aborted upload never leaves a half-written chunk under
/// its final key. Inside the root (rename needs one filesystem), hidden from
/// listings.
const FS_TMP_DIR: &str = ".dvr-tmp";

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

/// How long a presigned upload URL stays valid: the upload must start in
/// this time, not finish.
const PRESIGN_VALIDITY: Duration = Duration::from_secs(900);

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
            Protocol::File => {
                let tmp = format!("{}/{FS_TMP_DIR}", uri.path().trim_end_matches('/'));
                let builder = opendal::services::Fs::default()
                    .root(uri.path())
                    .atomic_write_dir(&tmp);
                let op = Operator::new(builder).map_err(|e| cfg_err(e.to_string()))?;
                Backend::Plain {
                    op,
                    fs_root: Some(PathBuf::from(uri.path())),
                }
            }
            Protocol::Memory => Backend::Plain {
                op: memory_operator(uri)?,
                fs_root: None,
            },
            Protocol::S3 => Backend::Plain {
                op: s3_operator(uri, &config.s3).map_err(|e| cfg_err(e.to_string()))?,
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
            s3_endpoint: (uri.protocol() == Protocol::S3).then(|| {
                config
                    .s3
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| "of AWS for the region".to_owned())
            }),
        })
    }

    async fn operator(&self, op: Op, key: &str) -> StorageResult<Operator> {
        match &self.backend {
            Backend::Plain { op, .. } => Ok(op.clone()),
            Backend::Swift(s) => s
                .current()
                .await
                .map(|c| c.op)
                .map_err(|e| self.auth_err(op, key, e)),
        }
    }

    fn auth_err(&self, op: Op, key: &str, (detail, transient): (String, bool)) -> StorageError {
        let detail = self.redactor.scrub(&detail);
        if transient {
            StorageError::Unavailable {
                op,
                key: key.to_owned(),
                uri: self.uri.clone(),
                detail,
            }
        } else {
            StorageError::Denied {
                op,
                key: key.to_owned(),
                uri: self.uri.clone(),
                detail,
            }
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

    /// One PUT to a presigned S3 URL, the body streamed from `source`.
    async fn s3_single_put(
        &self,
        op: &Operator,
        key: &str,
        source: &dyn UploadSource,
    ) -> StorageResult<()> {
        let signed = op
            .presign_write(key, PRESIGN_VALIDITY)
            .await
            .map_err(|e| map_opendal_err(&self.uri, &self.redactor, Op::PutFile, key, &e))?;
        let headers = signed.header().clone();
        streamed_put(
            &self.http,
            &signed.uri().to_string(),
            headers,
            source,
            self.upload_timeout,
        )
        .await
        .map_err(|f| {
            f.into_error(Op::PutFile, key, &self.uri, &source.origin(), |t| {
                self.redactor.scrub(t)
            })
        })
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
                Protocol::Swift => path.starts_with(SWIFT_SEGMENTS_PREFIX),
                Protocol::File => path.starts_with(FS_TMP_DIR),
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
            tokio::fs::create_dir_all(root)
                .await
                .map_err(|e| StorageError::Unusable {
                    uri: self.uri.clone(),
                    detail: format!("cannot create the archive directory: {e}"),
                    kind: ErrorKind::Internal,
                })?;
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

fn s3_operator(uri: &StorageUri, cfg: &S3Config) -> opendal::Result<Operator> {
    let mut b = opendal::services::S3::default()
        .bucket(uri.bucket())
        .root(&uri.root());
    if let Some(ep) = &cfg.endpoint {
        b = b.endpoint(ep);
    }
    b = b.region(cfg.region.as_deref().unwrap_or("us-east-1"));
    if !cfg.path_style {
        b = b.enable_virtual_host_style();
    }
    if let (Some(ak), Some(sk)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        b = b.access_key_id(ak).secret_access_key(sk.expose());
        if let Some(t) = &cfg.session_token {
            b = b.session_token(t.expose());
        }
    }
    if !cfg.load_default_credentials {
        b = b.disable_config_load();
    }
    Operator::new(b)
}

/// Memory stores live as long as the process and are shared by URI, so the
/// recorder and the packager of one embedded process see the same archive.
fn memory_operator(uri: &StorageUri) -> StorageResult<Operator> {
    use std::collections::HashMap;
    use std::sync::{Mutex as StdMutex, OnceLock};
    static STORES: OnceLock<StdMutex<HashMap<String, Operator>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = stores.lock().map_err(|_| StorageError::Config {
        uri: uri.to_string(),
        detail: "memory store registry poisoned".into(),
    })?;
    if let Some(op) = stores.get(&uri.to_string()) {
        return Ok(op.clone());
    }
    let op = Operator::new(opendal::services::Memory::default().root("/")).map_err(|e| {
        StorageError::Config {
            uri: uri.to_string(),
            detail: e.to_string(),
        }
    })?;
    stores.insert(uri.to_string(), op.clone());
    Ok(op)
}

/// A Swift login and the OpenDAL operator built on its token.
#[derive(Debug)]
struct SwiftSession {
    auth: SwiftAuth,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    margin: Duration,
    container: String,
    root: String,
    redactor: Redactor,
    current: Mutex<Option<SwiftCurrent>>,
}

#[derive(Clone, Debug)]
struct SwiftCurrent {
    op: Operator,
    token: SwiftToken,
    refresh_at: Option<UtcMs>,
}

impl SwiftSession {
    fn new(
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

    async fn invalidate(&self) {
        *self.current.lock().await = None;
    }

    /// Names of the SLO segments stored for `key` (OpenDAL's layout:
    /// `.segments/{root}{key}{upload-uuid}/{part:08}`). Best effort: a
    /// failed listing returns nothing and at worst leaves garbage.
    async fn segments_of(&self, key: &str) -> Vec<String> {
        let Ok(cur) = self.current().await else {
            return Vec::new();
        };
        let abs = format!("{}{}", self.root.trim_start_matches('/'), key);
        let prefix = format!("{SWIFT_SEGMENTS_PREFIX}{abs}");
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
    async fn logged_in(&self, op: Op, key: &str, uri: &str) -> StorageResult<SwiftCurrent> {
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
    async fn single_put(
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
    async fn delete_segments(&self, names: &[String]) {
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
    async fn delete(&self, key: &str, uri: &str) -> StorageResult<()> {
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
