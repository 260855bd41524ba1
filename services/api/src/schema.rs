//! The request and response types of the routes, and the OpenAPI schema
//! of a stream's settings document.
//!
//! The types derive their schemas. The settings document's is written by
//! hand: its Rust type lives in dvr-common, which does not know utoipa, and
//! its reading is a validator, not a derive; so its schema is written here, from the same fields the config file accepts
//! (`crates/common/src/config/raw.rs`), unknown fields refused as there.

#![allow(
    unused_qualifications,
    reason = "utoipa's params(...) expansion names types by path"
)]

use dvr_archive::Lock;
use dvr_proto::SessionRecord;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::status::{Span, StreamStatus};

/// A stream's settings: one entry of the config file's `streams:` map.
#[derive(Debug)]
pub struct StreamDoc;

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
}

fn closed(object: ObjectBuilder) -> ObjectBuilder {
    object.additional_properties(Some(
        utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
    ))
}

impl PartialSchema for StreamDoc {
    fn schema() -> RefOr<Schema> {
        let inputs = ArrayBuilder::new()
            .items(string(
                "udp://[iface@]host:port, http(s)://, tshttp://, hls://, srt://, publish://, m4f://ORIGIN/STREAM, file://PATH?loop=true, timeshift://OTHER/N",
            ))
            .min_items(Some(1))
            .max_items(Some(16))
            .description(Some("Sources in priority order (backups after the first)."));
        let dvr_map = closed(
            ObjectBuilder::new()
                .property(
                    "root",
                    string("Archive root URI; default: the config's top-level archive."),
                )
                .property("depth", string("Keep this much tape: 7d, 12h."))
                .property(
                    "segment_duration",
                    string("Target segment duration, 500ms..10s."),
                )
                .property(
                    "copy_interval",
                    string("Chunk interval, 1m..1h dividing the hour."),
                )
                .property(
                    "max_size",
                    string("Size bound of the stream's archive: 10G."),
                )
                .property(
                    "max_disk_usage",
                    string("Local roots: delete oldest while the disk is fuller: 90%."),
                )
                .property(
                    "schedule",
                    string("UTC times of day to record: 8:00-16:00,22-1:30."),
                )
                .property(
                    "enabled",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Boolean))
                        .description(Some(
                            "false: configured but not recording (the seeds' dvr_offline).",
                        )),
                )
                .property(
                    "replicate",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Boolean))
                        .description(Some(
                            "true: copy the source's tape this origin lacks (needs m4f:// inputs).",
                        )),
                )
                .property(
                    "replicate_rate",
                    string("Bytes a second replication may copy: 200M (default 64M)."),
                ),
        );
        let dvr = OneOfBuilder::new()
            .item(string("The one-line form: \"/var/lib/dvr 3d 10G\"."))
            .item(dvr_map)
            .description(Some("Recording settings; absent: live only."));
        let cache_map = closed(
            ObjectBuilder::new()
                .property("path", string("Absolute directory."))
                .property("depth", string("Drop cached segments older than this."))
                .property("max_size", string("Size bound: 50G."))
                .property(
                    "misses",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Integer))
                        .minimum(Some(0))
                        .maximum(Some(u32::MAX)),
                )
                .required("path"),
        );
        let cache = OneOfBuilder::new()
            .item(string(
                "The one-line form: \"/mount/ssd1 3d 50G misses=2\".",
            ))
            .item(cache_map)
            .description(Some("Local disk cache of the archive (needs dvr)."));
        closed(
            ObjectBuilder::new()
                .property("inputs", inputs)
                .required("inputs")
                .property("dvr", dvr)
                .property("cache", cache)
                .property(
                    "auth",
                    string("The stream's play authorization: none, securetoken://SECRET, securetoken-hmac://SECRET, http(s)://BACKEND or auth://NAME."),
                )
                .property(
                    "on_demand",
                    OneOfBuilder::new()
                        .item(
                            ObjectBuilder::new()
                                .schema_type(SchemaType::Type(Type::Boolean)),
                        )
                        .item(string("How long it runs after its last viewer: 20s (1s..1h)."))
                        .description(Some(
                            "Capture only while viewers ask for the stream live (true: 20s).",
                        )),
                )
                .description(Some(
                    "A stream's settings, exactly as one entry of the config file's streams: map (YAML or JSON).",
                )),
        )
        .into()
    }
}

impl ToSchema for StreamDoc {}

/// A stream's stored settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEntry {
    /// The stream's name.
    pub name: String,
    /// The bucket revision of these settings: send it back as `If-Match`
    /// to update only what you read.
    pub revision: u64,
    /// The settings, as one entry of the config file's `streams:`.
    #[schema(value_type = StreamDoc)]
    pub config: serde_json::Value,
}

/// Every stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamList {
    /// By name.
    pub streams: Vec<StreamEntry>,
}

/// Every stream's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusList {
    /// By name.
    pub streams: Vec<StreamStatus>,
}

/// The DVR switch of a stream after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct DvrSwitch {
    /// The stream.
    pub name: String,
    /// Whether it records now.
    pub dvr_enabled: bool,
    /// The bucket revision of its settings.
    pub revision: u64,
}

/// A range to lock or unlock, in the seeds' units.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LockRange {
    /// Start, UTC epoch seconds.
    #[schema(minimum = 0, maximum = 253_402_300_799_i64)]
    #[param(minimum = 0, maximum = 253_402_300_799_i64)]
    pub from: i64,
    /// Length in seconds, positive.
    #[schema(minimum = 1, maximum = 316_224_000_i64)]
    #[param(minimum = 1, maximum = 316_224_000_i64)]
    pub duration: i64,
}

/// The seeds' `dvr/lock` and `dvr/unlock` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlussonicLock {
    /// The stream.
    pub stream: String,
    /// Start, UTC epoch seconds.
    pub from: i64,
    /// Length in seconds.
    pub duration: i64,
}

/// A stream's locks, the seeds' shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct LockList {
    /// The stream.
    pub stream: String,
    /// Protected ranges, oldest first.
    #[schema(value_type = Vec<Span>)]
    pub locks: Vec<Lock>,
}

/// What a reindex found.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReindexReport {
    /// The stream.
    pub stream: String,
    /// Chunks now in the catalog.
    pub chunks: usize,
    /// Half-written chunks (the recorder's replay rewrites them).
    pub orphans: Vec<String>,
    /// Chunks whose index is unreadable (served as gaps).
    pub bad: Vec<String>,
    /// Recorded ranges.
    pub ranges: Vec<Span>,
}

/// An export request: the range saved as one MP4 under the stream's
/// exports prefix.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Start, UTC epoch seconds.
    pub from: i64,
    /// Length in seconds (at most 3 hours, as `archive-FROM-DUR.mp4`).
    pub duration: i64,
    /// File name under `exports/STREAM/`: relative, no `..`, ends in `.mp4`.
    pub file: Option<String>,
    /// Start and end to the frame (`archive-FROM-DUR.mp4?precise=true`).
    #[serde(default)]
    pub precise: bool,
    /// Join the recorded parts of a range with a gap.
    #[serde(default)]
    pub ignore_gaps: bool,
    /// Replace an object of that name (refused with 409 otherwise).
    #[serde(default)]
    pub overwrite: bool,
    /// Metadata stored in the file's `moov/udta/meta/ilst`: name to text.
    /// `title`, `comment`, `artist`, `album`, `date`, `genre`, `composer`,
    /// `description`, `copyright`, `encoder` get their iTunes atoms, other
    /// names freeform `----` items; at most 64 KiB of names and values.
    #[serde(default)]
    pub meta: std::collections::BTreeMap<String, String>,
}

/// Export jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportList {
    /// Newest first: `id`, `stream`, `from`, `duration`, `file`, `state`
    /// (`queued`, `running`, `done`, `failed`), `node`, `bytes`, `total`,
    /// `error`, `created_at`, `updated_at` (UTC ms).
    #[schema(value_type = Vec<Object>)]
    pub exports: Vec<dvr_proto::ExportJob>,
    /// More jobs are older than the last one listed: ask again with
    /// `?before=` this cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Query of `GET /api/v1/exports`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Jobs in the answer: 1 to 1000, default 100.
    pub limit: Option<usize>,
    /// Only jobs older than this cursor (the `next` of a previous answer).
    pub before: Option<String>,
}

/// Play sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// As the auth service records them (`dvr_proto::SessionRecord`).
    #[schema(value_type = Vec<Object>)]
    pub sessions: Vec<SessionRecord>,
}

/// Query of `GET /api/v1/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only this stream's sessions.
    pub stream: Option<String>,
}

/// Whether the archives answer (`GET /api/v1/storage`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StorageHealth {
    /// How long ago the roots were checked, in ms (an answer is reused
    /// for 10 s).
    pub age_ms: u64,
    /// The config's default archive and every stream's, each once.
    pub archives: Vec<ArchiveHealth>,
}

/// One archive root's check.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ArchiveHealth {
    /// The root, credentials masked.
    pub root: String,
    /// The streams recording there.
    pub streams: Vec<String>,
    /// The backend answered its check (bucket there, credentials accepted).
    pub ok: bool,
    /// How long the check took, in ms.
    pub latency_ms: u64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
