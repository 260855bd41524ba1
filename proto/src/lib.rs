//! The DVR's wire protocol over NATS: every subject, JetStream stream and
//! bucket, header and message type the services exchange.
//!
//! The one idea: the protocol version is part of every name (`dvr.v1.…`
//! subjects, `DVR_V1_…` streams, `dvr_v1_…` buckets) and every JSON body
//! carries a `v` field, so a v2 can run beside v1 during an upgrade and a
//! reader can refuse what it does not understand. Services never spell a
//! subject: they call the constructors here, which also escape stream names
//! into single subject tokens. `README.md` beside this crate is the same
//! protocol written for someone implementing a client in another language.

pub mod message;
pub mod names;

pub use message::{
    AuthDecision, AuthReply, AuthRequest, CatalogSummary, Event, EventKind, ExportJob, ExportState,
    IngestReport, LeaseRecord, ProtoError, ReplicationReport, SegmentDescriptor, SessionBytes,
    SessionRecord, SessionUsage, Versioned,
};
pub use names::*;

/// The protocol version this crate speaks, as in `dvr.v1.` and `"v": 1`.
pub const PROTO_VERSION: u32 = 1;
