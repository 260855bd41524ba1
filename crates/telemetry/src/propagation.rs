//! W3C trace context (`traceparent`, `tracestate`) in and out of any
//! header map.
//!
//! The functions take closures instead of a header type, so the same code
//! carries a trace through HTTP headers and NATS message headers without
//! this crate knowing either: the caller says how to set and how to get one
//! header.
//!
//! ```
//! use std::collections::HashMap;
//! let mut headers: HashMap<String, String> = HashMap::new();
//! dvr_telemetry::propagation::inject_current(|k, v| {
//!     headers.insert(k.to_owned(), v);
//! });
//! // … on the receiving side, before handling the message:
//! let span = tracing::info_span!("handle");
//! dvr_telemetry::propagation::set_parent(&span, |k| headers.get(k).cloned());
//! ```

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header names W3C trace context uses.
pub const HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Makes W3C trace context the global propagator (done by
/// [`crate::init`] when traces are exported).
pub fn install() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

struct SetWith<F>(F);

impl<F: FnMut(&str, String)> Injector for SetWith<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value);
    }
}

/// The two trace headers, read once through the caller's getter (an
/// `Extractor` lends `&str`s, which a getter of owned values cannot).
struct Fetched {
    values: [Option<String>; 2],
}

impl Extractor for Fetched {
    fn get(&self, key: &str) -> Option<&str> {
        let i = HEADERS.iter().position(|h| h.eq_ignore_ascii_case(key))?;
        self.values[i].as_deref()
    }

    fn keys(&self) -> Vec<&str> {
        HEADERS
            .iter()
            .zip(&self.values)
            .filter_map(|(k, v)| v.as_ref().map(|_| *k))
            .collect()
    }
}

/// Writes `cx`'s trace context as headers through `set(name, value)`;
/// nothing when `cx` has no valid span.
pub fn inject(cx: &Context, set: impl FnMut(&str, String)) {
    TraceContextPropagator::new().inject_context(cx, &mut SetWith(set));
}

/// Writes the current `tracing` span's trace context through `set`.
pub fn inject_current(set: impl FnMut(&str, String)) {
    inject(&tracing::Span::current().context(), set);
}

/// The trace context carried by headers read through `get(name)` (names
/// are asked for in lowercase); an empty context when there is none.
pub fn extract(get: impl Fn(&str) -> Option<String>) -> Context {
    let fetched = Fetched {
        values: HEADERS.map(&get),
    };
    TraceContextPropagator::new().extract(&fetched)
}

/// Makes the trace in the headers read through `get` the parent of `span`,
/// so work done for a message or request joins its sender's trace.
pub fn set_parent(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    let _ = span.set_parent(extract(get));
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::*;

    #[test]
    fn a_context_survives_a_trip_through_any_header_map() {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(span.clone());
        let mut headers = HashMap::new();
        inject(&cx, |k, v| {
            headers.insert(k.to_owned(), v);
        });
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let back = extract(|k| headers.get(k).cloned());
        let got = back.span().span_context().clone();
        assert_eq!(got.trace_id(), span.trace_id());
        assert_eq!(got.span_id(), span.span_id());
        assert!(got.is_sampled() && got.is_remote());
    }

    #[test]
    fn no_or_bad_headers_give_no_parent() {
        assert!(!extract(|_| None).span().span_context().is_valid());
        let bad = extract(|k| (k == "traceparent").then(|| "00-zz-yy-01".to_owned()));
        assert!(!bad.span().span_context().is_valid());
        let mut written = 0;
        inject(&Context::new(), |_, _| written += 1);
        assert_eq!(written, 0, "an empty context writes no header");
    }
}
