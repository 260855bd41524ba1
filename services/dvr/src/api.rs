//! The API inside `dvr run`: its buckets, this process's archive registry
//! and live logs for the streams' status, and its routes beside the others
//! on the one HTTP port.

use std::sync::Arc;

use axum::Router;
use dvr_api::{ApiService, ApiState, TapeStatus};
use dvr_archive::ArchiveRegistry;
use dvr_bus::{Kv, Node};
use dvr_common::Clock;

use crate::config::RunConfig;

/// The KV buckets the API works on.
pub struct ApiBuckets {
    /// [`dvr_proto::STREAMS_KV_BUCKET`].
    pub streams: Arc<dyn Kv>,
    /// [`dvr_proto::SESSIONS_KV_BUCKET`].
    pub sessions: Arc<dyn Kv>,
    /// [`dvr_proto::LOCKS_KV_BUCKET`].
    pub locks: Arc<dyn Kv>,
    /// [`dvr_proto::RUNTIME_KV_BUCKET`].
    pub runtime: Arc<dyn Kv>,
    /// [`dvr_proto::EXPORTS_KV_BUCKET`].
    pub exports: Arc<dyn Kv>,
}

/// The API's routes for this process: its buckets, the process's archive
/// registry (the stores its recorder and packager use), its node (the
/// streams' live logs, its id, embedded or distributed) and, with a
/// `cluster_key`, the checker of the other origins' requests.
pub fn router(
    config: &RunConfig,
    api: dvr_api::ApiConfig,
    buckets: ApiBuckets,
    live: Arc<Node>,
    registry: Arc<ArchiveRegistry>,
    clock: &Arc<dyn Clock>,
    cluster: Option<dvr_cluster::Verifier>,
) -> anyhow::Result<Router> {
    let distributed = live.is_distributed();
    let node = live.id.clone();
    let status = Arc::new(TapeStatus::new(
        live,
        Arc::clone(&registry),
        Arc::clone(&buckets.streams),
        Arc::clone(clock),
    ));
    let state = ApiState::new(
        buckets.streams,
        Some(buckets.sessions),
        buckets.locks,
        &node,
        status,
        registry,
        config.node.archive.clone(),
    )
    .with_runtime(buckets.runtime)
    .with_exports(buckets.exports, Arc::clone(clock))
    .with_publishes(config.node.rtmp.is_some());
    let mut service = ApiService::new(state);
    if let Some(verifier) = cluster {
        service = service.with_cluster(verifier, Arc::clone(clock));
    }
    if distributed {
        Ok(service.distributed_router(api)?)
    } else {
        Ok(service.embedded_router(api))
    }
}
