//! The edge's Prometheus metrics: what it holds and what it turned away.
//!
//! - `dvr_http_connections_open`, `dvr_http_requests_in_flight`: gauges of
//!   what the caps count;
//! - `dvr_http_refused_total{limit, scope}`: answers `503` past a cap
//!   (`limit`: `connections`, `requests`, or a caller's own such as
//!   `paced_streams`; `scope`: `total` or `per_client`);
//! - `dvr_http_timeouts_total{kind}`: connections dropped by a timeout
//!   (`header_read`, `write_stall`).

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Which cap refused an answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `connections`, `requests`, `paced_streams`, ...
    pub limit: &'static str,
    /// `total` or `per_client`.
    pub scope: &'static str,
}

/// Which timeout dropped a connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    /// `header_read` or `write_stall`.
    pub kind: &'static str,
}

#[derive(Debug)]
struct EdgeMetrics {
    connections: Gauge,
    in_flight: Gauge,
    refused: Family<RefusedLabels, Counter>,
    timeouts: Family<TimeoutLabels, Counter>,
}

static METRICS: LazyLock<EdgeMetrics> = LazyLock::new(|| {
    let m = EdgeMetrics {
        connections: Gauge::default(),
        in_flight: Gauge::default(),
        refused: Family::default(),
        timeouts: Family::default(),
    };
    dvr_telemetry::metrics::register(|r| {
        r.register(
            "dvr_http_connections_open",
            "Open HTTP connections",
            m.connections.clone(),
        );
        r.register(
            "dvr_http_requests_in_flight",
            "Requests being answered (up to their response head)",
            m.in_flight.clone(),
        );
        r.register(
            "dvr_http_refused",
            "Answers 503 with Retry-After past a cap, by cap",
            m.refused.clone(),
        );
        r.register(
            "dvr_http_timeouts",
            "Connections dropped by a timeout, by kind",
            m.timeouts.clone(),
        );
    });
    m
});

/// Registers the families, so they are listed before anything happened.
pub fn register() {
    LazyLock::force(&METRICS);
}

/// Counts an answer refused by `limit` in `scope`.
pub fn refused(limit: &'static str, scope: &'static str) {
    METRICS
        .refused
        .get_or_create(&RefusedLabels { limit, scope })
        .inc();
}

pub(crate) fn timed_out(kind: &'static str) {
    METRICS
        .timeouts
        .get_or_create(&TimeoutLabels { kind })
        .inc();
}

pub(crate) fn connection_opened() {
    METRICS.connections.inc();
}

pub(crate) fn connection_closed() {
    METRICS.connections.dec();
}

pub(crate) fn request_started() {
    METRICS.in_flight.inc();
}

pub(crate) fn request_ended() {
    METRICS.in_flight.dec();
}
