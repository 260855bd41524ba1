//! The process's Prometheus registry and its `/metrics` endpoint.
//!
//! Why `prometheus-client`: it is the Prometheus project's own Rust client
//! (maintained under the `prometheus` GitHub organisation), has typed label
//! sets (`#[derive(EncodeLabelSet)]`, so a label cannot be misspelt at one
//! call site), writes the OpenMetrics text format that Prometheus scrapes
//! natively, and needs no global recorder or background thread, unlike
//! `metrics` + `metrics-exporter-prometheus`, whose facade hides the label
//! types behind strings. The older `prometheus` crate (TiKV) is in
//! maintenance mode.
//!
//! Each crate keeps its metrics in its own `metrics` module: a struct of
//! families behind a `LazyLock`, which registers them here when first used.
//! A service forces that at start (`dvr_ingest::metrics::register()` …), so
//! every family is listed from the first scrape, before anything happened.
//!
//! Naming: `dvr_<service>_<subject>_<unit>`, counters end in `_total`, and
//! the only label with unbounded values is `stream`. A stream's series live
//! as long as some worker of the stream runs in this process
//! ([`StreamSeries`]): when its lease moves to another node, or the stream
//! is removed, they go, so no stream is reported by two nodes.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

pub use prometheus_client;

/// What `/metrics` answers with: OpenMetrics text, which Prometheus
/// negotiates and parses natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

/// Adds metrics to the process's registry (each crate's `metrics` module
/// calls this once, from its `LazyLock`).
pub fn register(add: impl FnOnce(&mut Registry)) {
    add(&mut REGISTRY.lock().unwrap_or_else(PoisonError::into_inner));
}

/// Every registered metric as OpenMetrics text.
pub fn render() -> String {
    let mut out = String::new();
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// The `/metrics` handler.
pub async fn handler() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(),
    )
        .into_response()
}

/// A router with `GET /metrics`, to merge into a service's own.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/metrics", get(handler))
}

/// Counts the holders of each stream's series in one crate, so the last
/// one to go removes them (`Family::remove`). A worker restarting overlaps
/// its successor; counting keeps the successor's series.
#[derive(Debug, Default)]
pub struct StreamSeries {
    holders: Mutex<HashMap<String, usize>>,
}

impl StreamSeries {
    /// One more holder of `stream`'s series.
    pub fn hold(&self, stream: &str) {
        let mut holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        *holders.entry(stream.to_owned()).or_default() += 1;
    }

    /// One holder of `stream` fewer; the last one runs `remove` (under the
    /// lock, so no new holder's series are removed with the old ones).
    pub fn release(&self, stream: &str, remove: impl FnOnce()) {
        let mut holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(count) = holders.get_mut(stream) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            holders.remove(stream);
            remove();
        }
    }
}

/// Seconds buckets from 1 ms to about 33 s, doubling: request latencies.
pub fn request_seconds_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16)
}

/// Seconds buckets from 50 ms to about 7 minutes, doubling: uploads of
/// whole chunks.
pub fn upload_seconds_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.05, 2.0, 14)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    #[test]
    fn the_last_holder_of_a_stream_removes_its_series() {
        let series = StreamSeries::default();
        let removed = std::cell::Cell::new(0);
        series.hold("ch1");
        series.hold("ch1");
        series.release("ch1", || removed.set(removed.get() + 1));
        assert_eq!(removed.get(), 0, "one holder is left");
        series.release("ch1", || removed.set(removed.get() + 1));
        assert_eq!(removed.get(), 1);
        series.release("ch1", || removed.set(removed.get() + 1));
        assert_eq!(removed.get(), 1, "a release without a hold removes nothing");
    }

    #[tokio::test]
    async fn registered_metrics_are_served_as_openmetrics() {
        let counter: Counter = Counter::default();
        register(|r| {
            r.register(
                "dvr_test_things",
                "Things counted by this test",
                counter.clone(),
            );
        });
        counter.inc_by(3);
        let response = router::<()>()
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("# TYPE dvr_test_things counter"), "{text}");
        assert!(text.contains("dvr_test_things_total 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
