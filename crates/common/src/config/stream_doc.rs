//! One stream's settings as a document: the same YAML/JSON shape as an
//! entry of the config file's `streams:` map, written and read back.
//!
//! The API keeps each stream's settings in the streams KV bucket and
//! answers and accepts them in this shape, so an operator can paste an
//! entry of a config file into a request and back. Reading goes through the
//! same validator as the file ([`StreamConfig::from_doc_str`]); JSON is
//! YAML, so one parser takes both. Writing ([`Serialize`]) always gives the
//! map forms with units (`7d`, `10G`) and the inputs as written (with their
//! credentials: the document is configuration, never a log line), and
//! reads back to an equal [`StreamConfig`].

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::raw::RawStream;
use super::{yaml_error, CacheConfig, ConfigError, DvrConfig, InputUrl, StreamConfig, Validator};

impl StreamConfig {
    /// Parses one stream's settings (`{ inputs: [...], dvr: ..., cache: ... }`,
    /// YAML or JSON) with the config file's validation. `path` prefixes
    /// field names in errors (`stream` gives `stream.dvr.depth`), `archive`
    /// is the default root a `dvr` without one falls back to.
    ///
    /// What needs the other streams (a delayed channel's source must exist
    /// and record) is the caller's to check.
    pub fn from_doc_str(
        text: &str,
        source_name: &str,
        path: &str,
        archive: Option<&str>,
    ) -> Result<StreamConfig, ConfigError> {
        let raw: RawStream =
            serde_saphyr::from_str(text).map_err(|e| yaml_error(text, source_name, &e))?;
        Validator { source_name }.stream(path, raw, archive)
    }
}

/// An input as it is written in a config file, credentials included.
fn input_text(input: &InputUrl) -> String {
    input.written()
}

/// Milliseconds in the largest unit that divides them (`7d`, `90m`, `1500ms`).
pub fn format_duration_ms(ms: i64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Bytes in the largest binary unit that divides them (`10G`, `64K`).
pub fn format_size_bytes(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

impl Serialize for StreamConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let inputs: Vec<String> = self.inputs.iter().map(input_text).collect();
        map.serialize_entry("inputs", &inputs)?;
        if let Some(dvr) = &self.dvr {
            map.serialize_entry("dvr", dvr)?;
        }
        if let Some(cache) = &self.cache {
            map.serialize_entry("cache", cache)?;
        }
        if let Some(auth) = &self.auth {
            map.serialize_entry("auth", &auth.written())?;
        }
        if let Some(ms) = self.on_demand_ms {
            map.serialize_entry("on_demand", &format_duration_ms(ms))?;
        }
        map.end()
    }
}

impl Serialize for DvrConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("root", &self.root)?;
        if let Some(d) = self.depth_ms {
            map.serialize_entry("depth", &format_duration_ms(d))?;
        }
        map.serialize_entry(
            "segment_duration",
            &format_duration_ms(self.segment_duration_ms),
        )?;
        map.serialize_entry("copy_interval", &format_duration_ms(self.copy_interval_ms))?;
        if let Some(b) = self.max_size_bytes {
            map.serialize_entry("max_size", &format_size_bytes(b))?;
        }
        if let Some(p) = self.max_disk_usage_percent {
            map.serialize_entry("max_disk_usage", &format!("{p}%"))?;
        }
        if let Some(sched) = &self.schedule {
            map.serialize_entry("schedule", &sched.to_string())?;
        }
        map.serialize_entry("enabled", &self.enabled)?;
        if let Some(rate) = self.replicate_rate {
            map.serialize_entry("replicate", &true)?;
            map.serialize_entry("replicate_rate", &format_size_bytes(rate))?;
        }
        map.end()
    }
}

impl Serialize for CacheConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("path", &self.path)?;
        if let Some(d) = self.depth_ms {
            map.serialize_entry("depth", &format_duration_ms(d))?;
        }
        map.serialize_entry("max_size", &format_size_bytes(self.max_size_bytes))?;
        map.serialize_entry("misses", &self.misses)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// Every stream of the full fixture, and variations the fixture lacks,
    /// written as JSON and read back, equals itself.
    #[test]
    fn every_stream_round_trips_through_json() {
        let path = crate::fuzz_corpus::repo_path("crates/common/tests/fixtures/full.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut config = Config::from_yaml_str(&text, "full.yaml").unwrap();
        let extra = "version: 1\narchive: file:///a\nstreams:\n  \
            one_line:\n    inputs: [ \"http://u:p@h/x.ts?token=t\" ]\n    \
            dvr: \"/spool 3d 95% 64K schedule=1-2 offline\"\n  \
            cached:\n    inputs: [ \"udp://[::1]:5000\", \"file:///c.ts?loop=3&pace=false\" ]\n    \
            dvr: { depth: 90m, segment_duration: 1500ms, copy_interval: 1m, enabled: false }\n    \
            cache: { path: /ssd, depth: 1d, max_size: 3000, misses: 2 }\n  \
            hmac:\n    inputs: [ \"udp://1.2.3.4:5\" ]\n    auth: \"securetoken-hmac://k3y\"\n  \
            backend:\n    inputs: [ \"udp://1.2.3.4:6\" ]\n    auth: \"http://h/a soft_limitation=true\"\n  \
            open:\n    inputs: [ \"udp://1.2.3.4:7\" ]\n    auth: none\n  \
            asked:\n    inputs: [ \"udp://1.2.3.4:8\" ]\n    on_demand: 45s\n";
        config
            .streams
            .extend(Config::from_yaml_str(extra, "extra.yaml").unwrap().streams);
        assert_eq!(config.streams.len(), 10);
        for (name, stream) in &config.streams {
            let json = serde_json::to_string(stream).unwrap();
            let back = StreamConfig::from_doc_str(&json, "json", "stream", None)
                .unwrap_or_else(|e| panic!("{name}: {json}: {e}"));
            assert_eq!(&back, stream, "{name}: {json}");
        }
        let one_line =
            serde_json::to_value(&config.streams[&crate::StreamName::new("one_line").unwrap()])
                .unwrap();
        assert_eq!(
            one_line["inputs"][0], "http://u:p@h/x.ts?token=t",
            "credentials kept"
        );
        assert_eq!(one_line["dvr"]["enabled"], false);
    }

    #[test]
    fn a_document_reads_like_a_config_entry_and_names_fields() {
        let yaml = "inputs: [ \"udp://239.0.0.1:1234\" ]\ndvr: { depth: 7d }\n";
        let s = StreamConfig::from_doc_str(yaml, "body", "stream", Some("file:///a")).unwrap();
        let dvr = s.dvr.unwrap();
        assert_eq!((dvr.root.as_str(), dvr.enabled), ("file:///a", true));
        let e = StreamConfig::from_doc_str(r#"{"inputs": ["gopher://x"]}"#, "body", "stream", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("body line 1: stream.inputs[0]: invalid input URL"),
            "{e}"
        );
        let e = StreamConfig::from_doc_str(
            r#"{"inputs": ["udp://1.2.3.4:5"], "dvr": {"depth": "7d"}}"#,
            "body",
            "stream",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("stream.dvr: no archive root"), "{e}");
        let e =
            StreamConfig::from_doc_str(r#"{"inputs": [], "colour": 1}"#, "body", "stream", None)
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn units_are_the_largest_exact_ones() {
        assert_eq!(format_duration_ms(7 * 86_400_000), "7d");
        assert_eq!(format_duration_ms(90 * 60_000), "90m");
        assert_eq!(format_duration_ms(1500), "1500ms");
        assert_eq!(format_size_bytes(10 << 30), "10G");
        assert_eq!(format_size_bytes(3000), "3000");
    }
}
