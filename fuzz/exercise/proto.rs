//! Every message body of the wire protocol (`dvr_proto`), decoded from any
//! bytes a peer on the bus could publish.
//!
//! Shared by the `proto` fuzz target and the proto crate's corpus replay
//! test. Each body is tried as every message type: what decodes carries
//! this protocol version, encodes, and decodes again to the same message
//! (a service that re-publishes what it read must not change it), and the
//! stream names in it survive the escaping into subjects and KV keys.

use std::fmt::Debug;

use dvr_common::StreamName;
use dvr_proto::{
    stream_config_key, stream_from_config_key, stream_from_token, stream_token, AuthReply,
    AuthRequest, CatalogSummary, Event, LeaseRecord, SegmentDescriptor, SessionRecord,
    SessionUsage, Versioned, PROTO_VERSION,
};

/// Decodes `data` as each message type.
pub fn exercise_proto(data: &[u8]) {
    if let Some(d) = round_trip::<SegmentDescriptor>(data) {
        names(&d.stream);
    }
    if let Some(e) = decoded::<Event>(data) {
        names(&e.stream);
        // `details` is free JSON: its floats may come back a rounding
        // away (serde_json parses floats fast, not exactly).
        let back = Event::decode(&e.encode())
            .unwrap_or_else(|err| panic!("{e:?} re-encoded does not decode: {err}"));
        assert_eq!(
            (back.v, back.kind, &back.stream, back.at, &back.node),
            (e.v, e.kind, &e.stream, e.at, &e.node)
        );
        let (a, b) = (
            serde_json::Value::Object(e.details.clone()),
            serde_json::Value::Object(back.details),
        );
        assert!(same_json(&a, &b), "details {a} came back as {b}");
    }
    round_trip::<LeaseRecord>(data);
    round_trip::<CatalogSummary>(data);
    if let Some(s) = round_trip::<SessionRecord>(data) {
        names(&s.stream);
    }
    if let Some(r) = round_trip::<AuthRequest>(data) {
        names(&r.stream);
    }
    round_trip::<AuthReply>(data);
    round_trip::<SessionUsage>(data);
}

/// `T` decoded from `data`, if it is one, checked for its version.
fn decoded<T: Versioned + Debug>(data: &[u8]) -> Option<T> {
    let message = T::decode(data).ok()?;
    assert_eq!(message.version(), PROTO_VERSION, "{message:?}");
    Some(message)
}

/// `T` decoded from `data`, checked to encode and decode to itself.
fn round_trip<T: Versioned + Debug + PartialEq>(data: &[u8]) -> Option<T> {
    let message = decoded::<T>(data)?;
    let body = message.encode();
    let back = T::decode(&body).unwrap_or_else(|e| {
        panic!(
            "{message:?} encoded as {:?} does not decode: {e}",
            String::from_utf8_lossy(&body)
        )
    });
    assert_eq!(back, message, "{}", String::from_utf8_lossy(&body));
    Some(message)
}

/// A stream name escaped into a subject token and a KV key comes back.
fn names(stream: &StreamName) {
    let token = stream_token(stream);
    assert!(!token.contains('.'), "{stream}: token {token}");
    assert_eq!(stream_from_token(&token).as_ref(), Some(stream));
    let key = stream_config_key(stream);
    assert_eq!(stream_from_config_key(&key).as_ref(), Some(stream));
}

/// Equal JSON, floats within a rounding of each other.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= x.abs().max(y.abs()) * 1e-12,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
