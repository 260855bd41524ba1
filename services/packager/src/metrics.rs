//! The packager's Prometheus metrics: requests by URL form and status,
//! their latency, and the bytes sent.
//!
//! A middleware outside every other layer measures each answer as the
//! client gets it (after `304`, ranges and gzip). The URL form is the name
//! of the parsed [`Form`](crate::url::Form) variant in snake case, so the
//! label has as many values as the URL surface has forms and needs no
//! upkeep when a form is added; paths that do not parse are `unknown` or
//! `invalid`. Latency is to the response head: endless MPEG-TS answers
//! have no end to measure to. The same middleware opens the request's
//! trace span, and counts the bytes of an authorized play into its
//! session's [`SessionMeter`].

use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use tracing::Instrument;

use crate::auth::SessionMeter;
use crate::url::{self, UrlError};

/// A request's URL form and answer status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The URL form, e.g. `range_playlist`, `segment`, `live_mpegts`.
    pub form: String,
    /// The HTTP status code.
    pub status: u16,
}

/// A URL form.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormLabel {
    /// The URL form.
    pub form: String,
}

#[derive(Debug)]
struct PackagerMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<FormLabel, Histogram, fn() -> Histogram>,
    sent_bytes: Family<FormLabel, Counter>,
    feeds_opened: Counter,
    feed_segments: Counter,
    feed_bytes: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new(dvr_telemetry::metrics::request_seconds_buckets())
}

static METRICS: LazyLock<PackagerMetrics> = LazyLock::new(|| {
    let m = PackagerMetrics {
        requests: Family::default(),
        latency: Family::new_with_constructor(latency_histogram),
        sent_bytes: Family::default(),
        feeds_opened: Counter::default(),
        feed_segments: Counter::default(),
        feed_bytes: Counter::default(),
    };
    dvr_telemetry::metrics::register(|r| {
        r.register(
            "dvr_packager_requests",
            "Playback requests by URL form and HTTP status",
            m.requests.clone(),
        );
        r.register_with_unit(
            "dvr_packager_request_duration",
            "Time from a request to its response head, by URL form",
            Unit::Seconds,
            m.latency.clone(),
        );
        r.register_with_unit(
            "dvr_packager_sent",
            "Body bytes sent, by URL form",
            Unit::Bytes,
            m.sent_bytes.clone(),
        );
        r.register(
            "dvr_packager_feeds_opened",
            "Segment feeds opened by other origins of the cluster",
            m.feeds_opened.clone(),
        );
        r.register(
            "dvr_packager_feed_segments",
            "Segments sent on segment feeds",
            m.feed_segments.clone(),
        );
        r.register_with_unit(
            "dvr_packager_feed_sent",
            "Segment bytes sent on segment feeds",
            Unit::Bytes,
            m.feed_bytes.clone(),
        );
    });
    m
});

/// A segment feed was opened.
pub(crate) fn feed_opened() {
    METRICS.feeds_opened.inc();
}

/// A segment of `len` bytes went out on a feed.
pub(crate) fn feed_segment(len: usize) {
    METRICS.feed_segments.inc();
    METRICS.feed_bytes.inc_by(len as u64);
}

/// Registers the packager's families, so they are listed before the
/// first request.
pub fn register() {
    LazyLock::force(&METRICS);
}

/// The label of a path: its form's variant name in snake case.
pub fn form_label(path: &str) -> String {
    match url::parse(path) {
        Ok(playback) => {
            let debug = format!("{:?}", playback.form);
            let name = debug
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default();
            let mut snake = String::with_capacity(name.len() + 4);
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            snake
        }
        Err(UrlError::Unknown) => "unknown".to_owned(),
        Err(UrlError::Invalid(_)) => "invalid".to_owned(),
    }
}

/// The middleware: counts and times every answer, and counts its bytes as
/// they are sent.
pub async fn observe(request: Request, next: Next) -> Response {
    let form = form_label(request.uri().path());
    let started = Instant::now();
    // One span per request, the child of the caller's trace when it sends
    // `traceparent`; exported only when OTLP is configured.
    let span = tracing::info_span!("playback", form = %form, status = tracing::field::Empty);
    dvr_telemetry::propagation::set_parent(&span, |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let mut response = next.run(request).instrument(span.clone()).await;
    let session = response.extensions_mut().remove::<Arc<SessionMeter>>();
    let m = &*METRICS;
    let status = response.status().as_u16();
    span.record("status", status);
    m.requests
        .get_or_create(&RequestLabels {
            form: form.clone(),
            status,
        })
        .inc();
    let label = FormLabel { form };
    m.latency
        .get_or_create(&label)
        .observe(started.elapsed().as_secs_f64());
    let sent = m.sent_bytes.get_or_create(&label).clone();
    response.map(|body| {
        Body::new(Counted {
            inner: body,
            sent,
            session,
        })
    })
}

/// A body that adds what passes through it to a counter (and to its
/// session's meter), keeping the inner body's size hint (so
/// `Content-Length` is unchanged).
struct Counted {
    inner: Body,
    sent: Counter,
    session: Option<Arc<SessionMeter>>,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let bytes = data.len() as u64;
                self.sent.inc_by(bytes);
                if let Some(session) = &self.session {
                    session.add(bytes);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_named_by_their_variant() {
        assert_eq!(form_label("/ort/index.m3u8"), "live_playlist");
        assert_eq!(
            form_label("/ort/archive-1700000000-3600.ts"),
            "range_mpegts"
        );
        assert_eq!(
            form_label("/ort/timeshift_abs-1700000000.m3u8"),
            "timeshift_abs_playlist"
        );
        assert_eq!(form_label("/ort/recording_status.json"), "recording_status");
        assert_eq!(form_label("/favicon.ico"), "unknown");
    }
}
