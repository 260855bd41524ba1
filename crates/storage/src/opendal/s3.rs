//! The S3 backend: an OpenDAL `S3` operator from the URI and [`S3Config`],
//! and the single PUT of a whole file to a presigned URL.
//!
//! A source of known length up to the single-PUT limit goes up as one PUT
//! to a URL that OpenDAL presigns, its body streamed by `reqwest` (see
//! [`crate::upload`]): one request per chunk instead of a multipart upload.

use std::time::Duration;

use opendal::Operator;

use super::{map_opendal_err, OpendalStorage};
use crate::config::S3Config;
use crate::error::{Op, StorageResult};
use crate::upload::{streamed_put, UploadSource};
use crate::uri::StorageUri;

/// How long a presigned upload URL stays valid: the upload must start in
/// this time, not finish.
const PRESIGN_VALIDITY: Duration = Duration::from_secs(900);

/// The operator for an `s3://bucket/prefix` root.
pub(super) fn operator(uri: &StorageUri, cfg: &S3Config) -> opendal::Result<Operator> {
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

/// The endpoint as the start-up check names it when it cannot be reached.
pub(super) fn shown_endpoint(cfg: &S3Config) -> String {
    cfg.endpoint
        .clone()
        .unwrap_or_else(|| "of AWS for the region".to_owned())
}

impl OpendalStorage {
    /// One PUT to a presigned S3 URL, the body streamed from `source`.
    pub(super) async fn s3_single_put(
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
