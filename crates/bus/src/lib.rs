//! How the DVR's services hand segments and state to each other.
//!
//! Ingest appends segments to a per-stream *live log*; the recorder copies
//! them to the archive once per copy interval and the packager serves the
//! part not yet copied from it (ARCHITECTURE sections 2 and 6). Small shared
//! state (stream config, leases, catalog, locks) lives in *KV buckets*.
//! Services see both through the [`LiveLog`] and [`Kv`] traits, which have
//! two implementations: embedded ([`SegmentLog`], append-only files on local
//! disk, and [`MemoryKv`]) and distributed ([`nats`], JetStream). One
//! conformance suite (`tests/conformance/`) holds both to the same
//! contract. Both report to the same [`metrics`] and carry W3C trace
//! context across the bus (request/reply and live-log descriptors), so a
//! request is one trace whichever implementation runs.

pub mod authorizer;
pub mod error;
pub mod events;
pub mod exclusive;
pub mod kv;
pub mod live_log;
pub mod metrics;
pub mod nats;
pub mod node;
pub mod ownership;
pub mod request;
pub mod segment_log;

pub use authorizer::{Authorizer, BusAuthorizer};
pub use error::BusError;
pub use events::{EventStream, Events, LocalEvents};
pub use exclusive::Exclusive;
pub use kv::{Kv, KvEntry, KvOp, KvWatch, MemoryKv};
pub use live_log::LiveLog;
pub use nats::{
    LiveLogConfig, NatsAuth, NatsBus, NatsConfig, NatsCredentials, NatsEvents, NatsKv, NatsLiveLog,
    NatsRequests, NatsTls,
};
pub use node::Node;
pub use ownership::{Ownership, OwnershipConfig};
pub use request::{IncomingRequest, MemoryRequests, RequestStream, Requester, Responder};
pub use segment_log::{SegmentLog, SegmentLogOptions};
