//! The layer in front of every route: it names the client
//! ([`ClientAddr`]) and caps the requests being answered at once, in total
//! and per client, answering `503` with `Retry-After` past either cap
//! rather than queueing: a burst of expensive requests is turned away in
//! microseconds instead of stalling the node for everyone.
//!
//! A request holds its share until its response head is ready: that is
//! where the work is (parsing, catalog lookups, rendering a playlist). A
//! body that streams on (a download, an endless paced stream) is paced by
//! its client, bounded by the connection cap and the write-stall timeout,
//! and, for paced streams, by the packager's own cap.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use dvr_common::config::{HttpConfig, HttpLimits, IpNet};

use crate::quota::{Exceeded, Quota};
use crate::{metrics, ClientAddr};

/// Paths never refused by the request caps: probes and scrapes answer
/// from memory, and a kubelet that cannot reach `/healthz` under load would
/// restart the pod, which makes the load worse.
const EXEMPT: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The edge's state: trusted proxies, limits and what they count.
#[derive(Debug)]
pub struct Edge {
    trusted: Vec<IpNet>,
    limits: HttpLimits,
    requests: Arc<Quota>,
}

impl Edge {
    /// The edge `config` describes.
    pub fn new(config: &HttpConfig) -> Arc<Edge> {
        let limits = config.limits;
        Arc::new(Edge {
            trusted: config.trusted_proxies.clone(),
            limits,
            requests: Quota::new(limits.max_requests, limits.max_requests_per_client),
        })
    }

    /// The limits it applies.
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// `app` behind the edge's layer.
    pub fn wrap(self: &Arc<Self>, app: Router) -> Router {
        app.layer(axum::middleware::from_fn_with_state(
            Arc::clone(self),
            admit,
        ))
    }

    /// The client of a request from `peer` with these headers.
    pub fn client(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> ClientAddr {
        ClientAddr::resolve(peer, headers, &self.trusted)
    }
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        metrics::request_started();
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::request_ended();
    }
}

/// The middleware: names the client, then admits the request or answers
/// `503`.
async fn admit(State(edge): State<Arc<Edge>>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let client = edge.client(peer, request.headers());
    request.extensions_mut().insert(client);
    if EXEMPT.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let _share = match edge.requests.try_acquire(client) {
        Ok(share) => share,
        Err(exceeded) => return busy("requests", "requests being answered", exceeded),
    };
    let _in_flight = InFlight::start();
    next.run(request).await
}

/// The answer past a cap: `503 Service Unavailable`, `Retry-After: 1`, and
/// one line naming the cap, counted under `limit` in
/// `dvr_http_refused_total`. `what` says what is counted ("paced streams").
pub fn busy(limit: &'static str, what: &str, exceeded: Exceeded) -> Response {
    metrics::refused(limit, exceeded.scope());
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many {what}: {exceeded} is reached; retry shortly\n"),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
