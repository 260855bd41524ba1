//! The operator's API: REST under `/api/v1` with an OpenAPI document
//! generated from the handlers (`/api/v1/openapi.json`), and the
//! Flussonic-compatible aliases middleware calls (`/flussonic/api/…`).
//!
//! The API changes the running system only through the streams KV bucket
//! ([`dvr_proto::STREAMS_KV_BUCKET`], one key per stream, the stream's
//! settings as JSON in the config file's shape): creating, updating,
//! deleting a stream and switching its DVR (`dvr.enabled`) are writes
//! there, and whatever runs streams watches the bucket. Locks and reindex
//! act on the stream's archive; status comes from the stream's tape
//! ([`TapeStatus`]) and the ingest's reports; sessions are read from the
//! auth service's bucket.
//!
//! Every route sits behind [`auth`]: bearer tokens or basic auth from the
//! `api:` section ([`ApiConfig`]), or, only where the operator opted in,
//! a direct local request; never a cross-site one on a browser's ambient
//! credentials.

pub mod auth;
pub mod config;
pub mod error;
pub mod routes;
pub mod schema;
pub mod state;
pub mod status;
pub mod tape_status;

use std::sync::Arc;

use dvr_common::Clock;

use axum::routing::{get, post};
use axum::{Json, Router};
use tracing::{info, warn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::ApiConfig;
pub use error::ApiError;
pub use routes::save_mp4_alias;
pub use state::ApiState;
pub use status::{
    IngestState, LastSegment, NothingRuns, ReplicationState, RuntimeStatus, Span, StreamStatus,
    StreamStatusSource,
};
pub use tape_status::TapeStatus;

use crate::auth::Gate;
use crate::routes::*;

/// The document's frame: title, security schemes, the Flussonic aliases
/// (routed by hand, for their unencoded `/` in names).
#[derive(OpenApi)]
#[openapi(
    info(title = "dvr API", version = "1", description = "The operator's API of the DVR: streams, DVR switches, locks, status, sessions. Every route needs a bearer token or basic auth (or, only where the operator set api.open_on_loopback, a direct local request); a change on basic auth is refused cross-site."),
    paths(flussonic_dvr_enable, flussonic_dvr_disable, flussonic_lock, flussonic_unlock),
    modifiers(&Security),
    security(("bearer" = []), ("basic" = [])),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// Starting the API where it must not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Distributed mode without credentials: anyone who reaches the port
    /// could change everything.
    #[error("the API has no credentials configured: set api.tokens (e.g. [ \"${{DVR_ADMIN_TOKEN}}\" ]) or api.users in the config; it does not start open")]
    NoCredentials,
    /// Distributed mode with `api.open_on_loopback`: in a pod, sidecars and
    /// `kubectl port-forward` arrive from loopback.
    #[error("api.open_on_loopback is for a single dvr run on one machine; the distributed API service always needs credentials (in a pod, sidecars and kubectl port-forward arrive from loopback): remove it")]
    OpenOnLoopback,
}

/// The API over its state.
#[derive(Debug, Clone)]
pub struct ApiService {
    state: Arc<ApiState>,
    /// Lets the other origins of the cluster list the streams with a
    /// request signed by the cluster key ([`auth`]).
    cluster: Option<auth::ClusterAccess>,
}

impl ApiService {
    /// The API over `state`.
    pub fn new(state: ApiState) -> Self {
        Self {
            state: Arc::new(state),
            cluster: None,
        }
    }

    /// The routes and their document.
    fn parts(&self) -> (Router<Arc<ApiState>>, OpenApiDoc) {
        let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(list_streams))
            .routes(routes!(
                get_stream,
                create_stream,
                update_stream,
                delete_stream
            ))
            .routes(routes!(list_status))
            .routes(routes!(stream_status))
            .routes(routes!(dvr_enable))
            .routes(routes!(dvr_disable))
            .routes(routes!(list_locks, add_lock, remove_lock))
            .routes(routes!(reindex))
            .routes(routes!(export))
            .routes(routes!(list_exports))
            .routes(routes!(export_job))
            .routes(routes!(list_sessions))
            .routes(routes!(storage_health))
            .split_for_parts();
        let router = router
            .route(
                "/flussonic/api/dvr_enable/{*name}",
                post(flussonic_dvr_enable),
            )
            .route(
                "/flussonic/api/dvr_disable/{*name}",
                post(flussonic_dvr_disable),
            )
            .route("/flussonic/api/dvr/lock", post(flussonic_lock))
            .route("/flussonic/api/dvr/unlock", post(flussonic_unlock));
        (router, doc)
    }

    /// The OpenAPI document (what `/api/v1/openapi.json` serves).
    pub fn openapi(&self) -> OpenApiDoc {
        self.parts().1
    }

    /// Lets requests signed with the cluster key `verifier` checks list
    /// the streams (`GET /api/v1/streams`), as the other origins of the
    /// cluster do; `clock` dates them.
    pub fn with_cluster(mut self, verifier: dvr_cluster::Verifier, clock: Arc<dyn Clock>) -> Self {
        self.cluster = Some(auth::ClusterAccess { verifier, clock });
        self
    }

    fn router(&self, config: ApiConfig) -> Router {
        let gate = Gate {
            config,
            cluster: self.cluster.clone(),
        };
        let (router, doc) = self.parts();
        let doc = Arc::new(doc);
        router
            .route(
                "/api/v1/openapi.json",
                get(move || {
                    let doc = Arc::clone(&doc);
                    async move { Json(doc) }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(gate),
                auth::require_admin,
            ))
            .with_state(Arc::clone(&self.state))
    }

    /// The routes of `dvr run` on one machine. Without credentials they
    /// refuse everything, unless `config.open_on_loopback` lets direct
    /// local requests in ([`auth`]); which of the two is logged once, here.
    /// Serve with `into_make_service_with_connect_info::<SocketAddr>()` so
    /// the client address is known (without it, only credentials pass).
    pub fn embedded_router(&self, config: ApiConfig) -> Router {
        if !config.has_credentials() {
            if config.open_on_loopback {
                info!("api: no credentials configured; answering direct local requests only (api.open_on_loopback)");
            } else {
                warn!("api: closed until credentials are set: every request is refused; set api.tokens or api.users (or api.open_on_loopback: true for direct local requests)");
            }
        }
        self.router(config)
    }

    /// The routes of a distributed API service; refuses to exist without
    /// credentials or with `open_on_loopback`.
    pub fn distributed_router(&self, config: ApiConfig) -> Result<Router, StartError> {
        if config.open_on_loopback {
            return Err(StartError::OpenOnLoopback);
        }
        if !config.has_credentials() {
            return Err(StartError::NoCredentials);
        }
        Ok(self.router(config))
    }
}
