//! How the DVR's services hand segments to each other.
//!
//! Ingest appends segments to a per-stream *live log*; the recorder copies
//! them to the archive once per copy interval and the packager serves the
//! part not yet copied from it (ARCHITECTURE sections 2 and 6). In embedded
//! mode the live log is [`segment_log::SegmentLog`], append-only files on
//! local disk.

pub mod error;
pub mod segment_log;

pub use error::BusError;
pub use segment_log::{SegmentLog, SegmentLogOptions};
