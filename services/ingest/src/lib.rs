//! Ingest: turns a stream's inputs into segments (ARCHITECTURE section 2).
//!
//! A stream has inputs in priority order ([`input`]: UDP unicast or
//! multicast, HTTP-TS pull, HLS pull, looped files). They all run; [`failover`] picks
//! the first live one and switches when it is lost or when a better one
//! returns. What plays goes through the media crate's keyframe segmenter and
//! out to a [`SegmentSink`] (the live log); a stream whose inputs are
//! `m4f://` takes another origin's segments as they are instead
//! ([`restream`]). [`run_stream`] is the loop;
//! [`IngestTask`] runs it in a task with counters readable at any time.
//! [`IngestWorker`] is one stream as a process runs it: where its tape
//! resumes, its live log, its events and its runtime reports ([`report`]).
//!
//! Time comes from a [`dvr_common::Clock`]; [`TokioClock`] ties it to tokio's
//! timer so tests with a paused clock run faster than real time.

pub mod clock;
pub mod config;
pub mod error;
pub mod failover;
pub mod input;
pub mod metrics;
pub mod report;
pub mod restream;
pub mod service;
pub mod sink;
pub mod stats;
pub mod worker;

pub use clock::TokioClock;
pub use config::IngestConfig;
pub use error::IngestError;
pub use input::{open_source, InputUrl, Source};
pub use service::{run_stream, IngestTask};
pub use sink::{Queued, QueuedError, SegmentSink};
pub use stats::IngestStats;
pub use worker::{IngestContext, IngestWorker};
