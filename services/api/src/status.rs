//! What a running stream is doing, as the API reports it.
//!
//! The API does not run streams: it reads their tapes
//! ([`crate::tape_status::TapeStatus`], a [`StreamStatusSource`]) and the
//! ingest's reports in the runtime bucket, and adds what the stored config
//! says (DVR configured, enabled).

use std::fmt::Debug;

use async_trait::async_trait;
use dvr_common::config::StreamConfig;
use dvr_common::StreamName;
use serde::Serialize;
use utoipa::ToSchema;

/// A span of tape in the seeds' units: UTC epoch seconds and seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Span {
    /// Start, UTC epoch seconds.
    pub from: i64,
    /// Length in seconds.
    pub duration: i64,
}

/// The newest segment on the tape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LastSegment {
    /// Its sequence number.
    pub seq: u64,
    /// Its start, UTC epoch milliseconds.
    pub utc_start_ms: i64,
    /// Its length in milliseconds.
    pub duration_ms: i64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What the process running a stream knows about it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct RuntimeStatus {
    /// Segments are being written to the archive (DVR on and the source
    /// delivering).
    pub recording: bool,
    /// The source delivered a segment recently.
    pub source_alive: bool,
    /// The stream records on a schedule (`dvr.schedule`) and now is outside
    /// it: its segments are live only, never archived (and `recording` is
    /// false for that reason).
    pub outside_schedule: bool,
    /// Bits per second over the newest segments.
    pub bitrate_bps: Option<u64>,
    /// The newest segment.
    pub last_segment: Option<LastSegment>,
    /// Start and length of everything on the tape (archive and live log).
    pub recorded: Option<Span>,
    /// Holes in the tape (signal loss, downtime), oldest first; at most
    /// the newest 100 within the last day.
    pub gaps: Vec<Span>,
}

/// The runtime state of streams, from whatever runs them.
#[async_trait]
pub trait StreamStatusSource: Send + Sync + Debug {
    /// The state of `stream` with settings `config`, or `None` when there
    /// is nothing to tell (no tape yet, or none readable here).
    async fn runtime(&self, stream: &StreamName, config: &StreamConfig) -> Option<RuntimeStatus>;
}

/// A status source that runs nothing: every stream is reported stopped.
/// For an API process that serves config only.
#[derive(Clone, Copy, Debug, Default)]
pub struct NothingRuns;

#[async_trait]
impl StreamStatusSource for NothingRuns {
    async fn runtime(&self, _: &StreamName, _: &StreamConfig) -> Option<RuntimeStatus> {
        None
    }
}

/// What the ingest running a stream reports (the runtime bucket,
/// [`dvr_proto::RUNTIME_KV_BUCKET`]): the same for every API replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct IngestState {
    /// The node running it.
    pub node: String,
    /// When it reported, UTC epoch milliseconds (every 5 s, and at once
    /// when the input changes).
    pub reported_at_ms: i64,
    /// The input playing: its index in `inputs`…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_index: Option<usize>,
    /// …and its URL, credentials masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Changes of the playing input since the ingest started.
    pub switches: u64,
    /// Times every input was lost or the signal stopped inside a segment.
    pub signal_losses: u64,
    /// Continuity-counter errors (lost or reordered TS packets).
    pub cc_errors: u64,
    /// Timestamp discontinuities in the source.
    pub discontinuities: u64,
    /// Bytes read from the inputs.
    pub bytes: u64,
    /// The last failure of an input, `URL: reason` (credentials masked):
    /// a source that refuses or drops the stream, kept while a backup
    /// plays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl From<dvr_proto::IngestReport> for IngestState {
    fn from(r: dvr_proto::IngestReport) -> Self {
        Self {
            node: r.node,
            reported_at_ms: r.at.0,
            input_index: r.input_index,
            input: r.input,
            switches: r.switches,
            signal_losses: r.signal_losses,
            cc_errors: r.cc_errors,
            discontinuities: r.discontinuities,
            bytes: r.bytes,
            last_error: r.last_error,
        }
    }
}

/// A stream's status as `GET /api/v1/streams/{name}/status` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct StreamStatus {
    /// The stream.
    pub name: String,
    /// The config has a `dvr` section.
    pub dvr_configured: bool,
    /// The config's `dvr.enabled` (the seeds' dvr_enable / dvr_disable).
    pub dvr_enabled: bool,
    /// The stream runs: an ingest reports it (in this process or on any
    /// node), or its tape received a segment within the last 20 s.
    pub running: bool,
    /// What the running stream reports (defaults when not running).
    #[serde(flatten)]
    pub runtime: RuntimeStatus,
    /// What its ingest reports, wherever it runs; absent when no ingest
    /// runs it (or reported within the last 30 s, on NATS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestState>,
    /// What its replication (`dvr.replicate`) reports; absent when the
    /// stream does not replicate or its recorder has not reported within
    /// the last 30 s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationState>,
}

/// How far a replicating stream copied its source's archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReplicationState {
    /// The node running it.
    pub node: String,
    /// When it reported, UTC epoch milliseconds (every 10 s, every 5 s
    /// while copying).
    pub reported_at_ms: i64,
    /// `copying`, `idle` (nothing it can copy) or `failing`.
    pub state: String,
    /// The source copied from, while copying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Milliseconds of tape within the depth this origin lacks (including
    /// what no source has).
    pub missing_ms: i64,
    /// Segments copied since the recorder started.
    pub segments: u64,
    /// Bytes copied since the recorder started.
    pub bytes: u64,
    /// The last pass's failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<dvr_proto::ReplicationReport> for ReplicationState {
    fn from(r: dvr_proto::ReplicationReport) -> Self {
        Self {
            node: r.node,
            reported_at_ms: r.at.0,
            state: r.state,
            source: r.source,
            missing_ms: r.missing_ms,
            segments: r.segments,
            bytes: r.bytes,
            error: r.error,
        }
    }
}
