//! Message bodies: JSON, each with a `v` field that a reader checks before
//! trusting the rest ([`Versioned::check_version`]).
//!
//! Segment bytes are never in these messages: a [`SegmentDescriptor`] names
//! the object that holds them, and is published only after that object is
//! complete, so a reader that sees a descriptor can always fetch its bytes
//! (until retention removes both).

use dvr_common::{StreamName, UtcMs};
use dvr_media::{CodecSummary, SegmentMeta};
use serde::{Deserialize, Serialize};

use crate::PROTO_VERSION;

/// A message that is not of this protocol version or not valid JSON of its
/// type.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The body's `v` is not [`PROTO_VERSION`].
    #[error("{what}: protocol version {got}, this build speaks {PROTO_VERSION}")]
    Version {
        /// The message type.
        what: &'static str,
        /// The version it carried.
        got: u32,
    },
    /// The body is not valid JSON of the type.
    #[error("{what}: {source}")]
    Json {
        /// The message type.
        what: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
}

/// A message type with a `v` field; decode with [`Versioned::decode`].
pub trait Versioned: Serialize + for<'de> Deserialize<'de> {
    /// The type's name, for errors.
    const WHAT: &'static str;

    /// The `v` the message carries.
    fn version(&self) -> u32;

    /// The JSON body.
    fn encode(&self) -> Vec<u8> {
        // Serializing these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a body and checks its version.
    fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let msg: Self = serde_json::from_slice(body).map_err(|source| ProtoError::Json {
            what: Self::WHAT,
            source,
        })?;
        if msg.version() != PROTO_VERSION {
            return Err(ProtoError::Version {
                what: Self::WHAT,
                got: msg.version(),
            });
        }
        Ok(msg)
    }
}

/// One segment of a live log, published on
/// [`live_segments_subject`](crate::live_segments_subject); its bytes are the
/// object [`SegmentDescriptor::object`] in
/// [`SEGMENTS_OBJECT_BUCKET`](crate::SEGMENTS_OBJECT_BUCKET).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentDescriptor {
    /// Protocol version, 1.
    pub v: u32,
    /// The DVR stream.
    pub stream: StreamName,
    /// seq, utc_start, duration, pts_start, bytes, flags.
    #[serde(flatten)]
    pub meta: SegmentMeta,
    /// The tracks.
    pub codecs: CodecSummary,
    /// Object name of the bytes.
    pub object: String,
}

impl SegmentDescriptor {
    /// The descriptor of a segment of `stream`.
    pub fn new(stream: &StreamName, meta: SegmentMeta, codecs: CodecSummary) -> Self {
        Self {
            v: PROTO_VERSION,
            stream: stream.clone(),
            meta,
            codecs,
            object: crate::segment_object_name(stream, meta.seq),
        }
    }
}

impl Versioned for SegmentDescriptor {
    const WHAT: &'static str = "segment descriptor";
    fn version(&self) -> u32 {
        self.v
    }
}

/// The kinds of event, each its own subject token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A stream's recording began (ingest has a source and appends).
    RecordingStarted,
    /// A stream's recording stopped (removed, disabled, lease given up).
    RecordingStopped,
    /// Ingest switched to another input of the stream.
    SourceSwitched,
    /// The tape stopped receiving segments (signal loss).
    GapOpened,
    /// Segments arrive again after a gap.
    GapClosed,
    /// The recorder wrote a chunk and its index to the archive.
    ChunkWritten,
    /// A lease changed holder.
    LeaseMoved,
}

impl EventKind {
    /// The subject token, e.g. `gap_opened`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RecordingStarted => "recording_started",
            EventKind::RecordingStopped => "recording_stopped",
            EventKind::SourceSwitched => "source_switched",
            EventKind::GapOpened => "gap_opened",
            EventKind::GapClosed => "gap_closed",
            EventKind::ChunkWritten => "chunk_written",
            EventKind::LeaseMoved => "lease_moved",
        }
    }
}

/// An event, published on [`event_subject`](crate::event_subject).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Protocol version, 1.
    pub v: u32,
    /// What happened.
    pub kind: EventKind,
    /// To which stream.
    pub stream: StreamName,
    /// When, by the publisher's clock.
    pub at: UtcMs,
    /// Who published it (node id).
    pub node: String,
    /// Kind-specific details: `input` for source_switched, `first_seq` and
    /// `key` for chunk_written, `holder` and `role` for lease_moved; absent
    /// keys are allowed, unknown keys must be ignored.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Versioned for Event {
    const WHAT: &'static str = "event";
    fn version(&self) -> u32 {
        self.v
    }
}

/// The value of a lease in [`LEASES_KV_BUCKET`](crate::LEASES_KV_BUCKET).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Protocol version, 1.
    pub v: u32,
    /// Node id of the holder.
    pub holder: String,
    /// When the holder last renewed it, by its clock.
    pub renewed: UtcMs,
}

impl Versioned for LeaseRecord {
    const WHAT: &'static str = "lease";
    fn version(&self) -> u32 {
        self.v
    }
}

/// A stream's catalog summary in
/// [`CATALOG_KV_BUCKET`](crate::CATALOG_KV_BUCKET): what the recorder last
/// wrote to the archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSummary {
    /// Protocol version, 1.
    pub v: u32,
    /// The newest archived segment's seq.
    pub last_seq: u64,
    /// The newest chunk's `.ts` object key.
    pub last_chunk: String,
    /// Where the archived tape ends.
    pub to: UtcMs,
    /// The oldest archived segment still kept (retention deletes from the
    /// front); absent in summaries written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    /// A chunk just written before the newest one (a replication's
    /// backfill), whose `.ts` key followers must catalog too: the rest of
    /// the summary still describes the newest chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfilled: Option<String>,
}

impl Versioned for CatalogSummary {
    const WHAT: &'static str = "catalog summary";
    fn version(&self) -> u32 {
        self.v
    }
}

/// Where an export job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    /// Waiting for a packager to take it.
    Queued,
    /// Being written (by `node`).
    Running,
    /// Written: the object is complete.
    Done,
    /// Given up: `error` says why; no object claims to be complete.
    Failed,
}

/// An MP4 export job in [`EXPORTS_KV_BUCKET`](crate::EXPORTS_KV_BUCKET):
/// the range of a stream written as one MP4 into the stream's archive
/// store at [`export_object_key`](crate::export_object_key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportJob {
    /// Protocol version, 1.
    pub v: u32,
    /// The job's id (32 hex digits).
    pub id: String,
    /// The stream.
    pub stream: StreamName,
    /// Start, UTC epoch seconds.
    pub from: i64,
    /// Length in seconds.
    pub duration: i64,
    /// The file name under the stream's exports prefix.
    pub file: String,
    /// Start and end to the frame (`precise=true`).
    #[serde(default)]
    pub precise: bool,
    /// Join the parts of a range with a gap (`ignore_gaps=true`).
    #[serde(default)]
    pub ignore_gaps: bool,
    /// Replace an object of that name.
    #[serde(default)]
    pub overwrite: bool,
    /// Metadata written into the file's `moov/udta/meta/ilst` (name,
    /// value), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta: Vec<(String, String)>,
    /// Where it is.
    pub state: ExportState,
    /// The node writing it (or that last did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Bytes written so far.
    pub bytes: u64,
    /// The file's length, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was asked for.
    pub created_at: UtcMs,
    /// When its record last changed.
    pub updated_at: UtcMs,
}

impl Versioned for ExportJob {
    const WHAT: &'static str = "export job";
    fn version(&self) -> u32 {
        self.v
    }
}

/// What the ingest running a stream reports in
/// [`RUNTIME_KV_BUCKET`](crate::RUNTIME_KV_BUCKET): which input plays and
/// the counters since it started, for the API's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReport {
    /// Protocol version, 1.
    pub v: u32,
    /// The stream.
    pub stream: StreamName,
    /// The node running it.
    pub node: String,
    /// When this was written.
    pub at: UtcMs,
    /// The input playing now: its index in the stream's `inputs`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_index: Option<usize>,
    /// …and its URL, credentials masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Changes of the playing input.
    pub switches: u64,
    /// Times every input was lost, or the signal stopped inside a segment.
    pub signal_losses: u64,
    /// Continuity-counter errors (lost or reordered TS packets).
    pub cc_errors: u64,
    /// Timestamp discontinuities the segmenter saw in the source.
    pub discontinuities: u64,
    /// Bytes read from the playing inputs.
    pub bytes: u64,
    /// The last failure of an input, `URL: reason` (credentials masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What a replicating stream's backfill reports in
/// [`RUNTIME_KV_BUCKET`](crate::RUNTIME_KV_BUCKET) (role `replication`):
/// how far it copied the source's archive, for the API's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationReport {
    /// Protocol version, 1.
    pub v: u32,
    /// The stream.
    pub stream: StreamName,
    /// The node running it.
    pub node: String,
    /// When this was written.
    pub at: UtcMs,
    /// `copying`, `idle` (nothing missing) or `failing`.
    pub state: String,
    /// The source copied from (`m4f://…`), while copying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Milliseconds of tape this origin lacks within its depth, as last
    /// measured.
    pub missing_ms: i64,
    /// Segments copied since the recorder started.
    pub segments: u64,
    /// Bytes copied since the recorder started.
    pub bytes: u64,
    /// The last failure, until a pass succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Versioned for ReplicationReport {
    const WHAT: &'static str = "replication report";
    fn version(&self) -> u32 {
        self.v
    }
}

impl Versioned for IngestReport {
    const WHAT: &'static str = "ingest report";
    fn version(&self) -> u32 {
        self.v
    }
}

/// A play session in [`SESSIONS_KV_BUCKET`](crate::SESSIONS_KV_BUCKET):
/// one viewer (stream, client address, token) as the auth service tracks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Protocol version, 1.
    pub v: u32,
    /// The session id: hex of a hash of (stream, ip, token).
    pub id: String,
    /// The stream played.
    pub stream: StreamName,
    /// The client's address.
    pub ip: String,
    /// The user the auth backend named (`X-UserId`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `hls`, `mpegts`, `dash` or `mp4`.
    pub protocol: String,
    /// When the session was opened.
    pub opened_at: UtcMs,
    /// When it was last checked or served.
    pub updated_at: UtcMs,
    /// When it was closed (by the backend, a session limit or idleness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<UtcMs>,
    /// Bytes served in it so far.
    pub bytes: u64,
}

impl Versioned for SessionRecord {
    const WHAT: &'static str = "session";
    fn version(&self) -> u32 {
        self.v
    }
}

/// How a player asks to play, as the packager saw the request: the body of
/// a request on [`AUTH_CHECK_SUBJECT`](crate::AUTH_CHECK_SUBJECT).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// Protocol version, 1.
    pub v: u32,
    /// The stream asked for.
    pub stream: StreamName,
    /// The client's address (the peer, or `X-Forwarded-For` from a trusted
    /// proxy).
    pub ip: String,
    /// The `?token=` of the URL; empty when the URL has none.
    #[serde(default)]
    pub token: String,
    /// The `User-Agent` header, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The `Referer` header, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    /// `hls`, `mpegts`, `dash` or `mp4`: what the URL serves.
    pub protocol: String,
}

impl Versioned for AuthRequest {
    const WHAT: &'static str = "auth request";
    fn version(&self) -> u32 {
        self.v
    }
}

/// What auth decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthDecision {
    /// Serve it.
    Allow,
    /// Refuse it (403).
    Deny,
    /// Send the player to [`AuthReply::location`] (302).
    Redirect,
}

/// The answer to an [`AuthRequest`]: the decision and how long the asker
/// may reuse it for the same session without asking again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthReply {
    /// Protocol version, 1.
    pub v: u32,
    /// Allow, deny or redirect.
    pub decision: AuthDecision,
    /// Seconds the decision holds for this session (the backend's
    /// `X-AuthDuration`, default 180; 0: ask again next time).
    pub duration_s: u32,
    /// The session id (hex of a hash of stream, ip and token).
    pub session: String,
    /// Where to send the player, for a redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Why, in words for the operator's log (never shown to the player;
    /// never contains a secret).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Versioned for AuthReply {
    const WHAT: &'static str = "auth reply";
    fn version(&self) -> u32 {
        self.v
    }
}

/// Bytes a packager served in play sessions since its last report: the
/// body of a request on [`AUTH_USAGE_SUBJECT`](crate::AUTH_USAGE_SUBJECT).
/// The auth service adds them to each [`SessionRecord::bytes`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUsage {
    /// Protocol version, 1.
    pub v: u32,
    /// One entry per session that served bytes since the last report.
    pub sessions: Vec<SessionBytes>,
}

/// The bytes served in one session, part of a [`SessionUsage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionBytes {
    /// The session id, as [`AuthReply::session`] gave it.
    pub session: String,
    /// Bytes of response bodies sent since the last report.
    pub bytes: u64,
}

impl Versioned for SessionUsage {
    const WHAT: &'static str = "session usage";
    fn version(&self) -> u32 {
        self.v
    }
}

#[cfg(test)]
mod tests {
    use dvr_common::Ticks;
    use dvr_media::SegmentFlags;

    use super::*;

    #[test]
    fn descriptor_json_is_flat_and_versioned() {
        let stream = StreamName::new("ort").unwrap();
        let meta = SegmentMeta {
            seq: 7,
            utc_start: UtcMs(1_700_000_000_000),
            duration: Ticks(180_000),
            pts_start: Ticks(900),
            bytes: 188,
            flags: SegmentFlags {
                discontinuity: false,
                independent: true,
            },
        };
        let d = SegmentDescriptor::new(&stream, meta, CodecSummary::default());
        let json: serde_json::Value = serde_json::from_slice(&d.encode()).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["seq"], 7);
        assert_eq!(json["utc_start"], 1_700_000_000_000_i64);
        assert_eq!(json["object"], "ort/00000000000000000007");
        assert_eq!(SegmentDescriptor::decode(&d.encode()).unwrap(), d);

        let mut v2 = json;
        v2["v"] = 2.into();
        let err = SegmentDescriptor::decode(&serde_json::to_vec(&v2).unwrap()).unwrap_err();
        assert!(matches!(err, ProtoError::Version { got: 2, .. }), "{err}");
    }

    /// The README is the reference for other languages: its examples must
    /// be what this crate reads.
    #[test]
    fn readme_examples_decode() {
        let readme = include_str!("../README.md");
        let blocks: Vec<&str> = readme
            .split("```json")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert_eq!(
            blocks.len(),
            7,
            "descriptor, lease, catalog summary, event, auth request, auth reply, usage"
        );
        let d = SegmentDescriptor::decode(blocks[0].as_bytes()).unwrap();
        assert_eq!(
            (d.meta.seq, d.object.as_str()),
            (42, "ort/00000000000000000042")
        );
        assert_eq!(d.codecs.tracks.len(), 2);
        LeaseRecord::decode(blocks[1].as_bytes()).unwrap();
        let c = CatalogSummary::decode(blocks[2].as_bytes()).unwrap();
        assert_eq!(c.last_seq, 5123);
        let e = Event::decode(blocks[3].as_bytes()).unwrap();
        assert_eq!(e.kind, EventKind::GapOpened);
        let q = AuthRequest::decode(blocks[4].as_bytes()).unwrap();
        assert_eq!((q.stream.as_str(), q.protocol.as_str()), ("news", "hls"));
        let r = AuthReply::decode(blocks[5].as_bytes()).unwrap();
        assert_eq!((r.decision, r.duration_s), (AuthDecision::Allow, 180));
        let u = SessionUsage::decode(blocks[6].as_bytes()).unwrap();
        assert_eq!(u.sessions[0].session, r.session, "the reply's session");
        assert_eq!(u.sessions[0].bytes, 1_880_000);
    }
}
