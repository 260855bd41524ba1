//! W3C trace context in NATS message headers, so work done for a message
//! (an auth check, a descriptor a follower applies) joins its sender's
//! trace. The propagation itself is `dvr_telemetry::propagation`'s; this is
//! only how to set and get a header of an `async_nats::HeaderMap`.

use async_nats::HeaderMap;

/// Adds the current span's `traceparent`/`tracestate` to `headers`
/// (nothing when there is no span being traced).
pub(crate) fn inject_current(headers: &mut HeaderMap) {
    dvr_telemetry::propagation::inject_current(|name, value| {
        headers.insert(name, value.as_str());
    });
}

/// Makes the trace in `headers` (if any) the parent of `span`.
pub(crate) fn set_parent(span: &tracing::Span, headers: Option<&HeaderMap>) {
    let Some(headers) = headers else {
        return;
    };
    dvr_telemetry::propagation::set_parent(span, |name| {
        headers.get(name).map(|v| v.as_str().to_owned())
    });
}

/// Whether `headers` carry a trace.
pub(crate) fn has_trace(headers: Option<&HeaderMap>) -> bool {
    headers.is_some_and(|h| h.get(dvr_telemetry::propagation::HEADERS[0]).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_map_carries_a_context_it_was_given() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        assert!(has_trace(Some(&headers)));
        let cx = dvr_telemetry::propagation::extract(|name| {
            headers.get(name).map(|v| v.as_str().to_owned())
        });
        let mut out = HeaderMap::new();
        dvr_telemetry::propagation::inject(&cx, |name, value| {
            out.insert(name, value.as_str());
        });
        assert_eq!(
            out.get("traceparent").map(|v| v.as_str().to_owned()),
            headers.get("traceparent").map(|v| v.as_str().to_owned())
        );
        assert!(!has_trace(Some(&HeaderMap::new())));
        assert!(!has_trace(None));
    }
}
