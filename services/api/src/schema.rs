//! The OpenAPI schema of a stream's settings document.
//!
//! The document's Rust type lives in dvr-common, which does not know
//! utoipa, and its reading is a validator, not a derive; so its schema is
//! written here, from the same fields the config file accepts
//! (`crates/common/src/config/raw.rs`), unknown fields refused as there.

use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

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
                "udp://[iface@]host:port, http(s)://, tshttp://, file://PATH?loop=true, timeshift://OTHER/N",
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
                .description(Some(
                    "A stream's settings, exactly as one entry of the config file's streams: map (YAML or JSON).",
                )),
        )
        .into()
    }
}

impl ToSchema for StreamDoc {}
