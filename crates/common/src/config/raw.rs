//! The YAML as written, with source locations, before validation.
//!
//! serde-saphyr reports the line of syntax and shape errors (unknown keys,
//! wrong types) by itself; values that need checking beyond their type
//! (durations, sizes, URLs, names) are read as [`Spanned`] text here so the
//! validation in `config.rs` can name the line too.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub http: Option<RawHttp>,
    /// The RTMP listener for `publish://` inputs.
    #[serde(default)]
    pub rtmp: Option<RawRtmp>,
    #[serde(default)]
    pub archive: Option<Spanned<String>>,
    #[serde(default)]
    pub streams: RawStreams,
    /// How to reach the object store: defined and read by the storage crate
    /// (`config::from_yaml_str_as`); skipped here so `deny_unknown_fields`
    /// still catches misspelled top-level keys.
    #[serde(default)]
    #[allow(dead_code, reason = "read by the binary, not here")]
    pub storage: Option<de::IgnoredAny>,
    #[serde(default)]
    pub packager: Option<RawPackager>,
    /// The operator's API (tokens, users): defined and read by the api
    /// crate, like `storage:`.
    #[serde(default)]
    #[allow(dead_code, reason = "read by the api crate, not here")]
    pub api: Option<de::IgnoredAny>,
    /// The global default play authorization.
    #[serde(default)]
    pub auth: Option<Spanned<String>>,
    /// Named rule sets and backends (`auth://NAME`).
    #[serde(default)]
    pub auth_backends: Option<RawNamed<RawAuthBackend>>,
    /// The secret the origins of a cluster sign their requests with.
    #[serde(default)]
    pub cluster_key: Option<Spanned<String>>,
    /// Other origins whose streams this one restreams.
    #[serde(default)]
    pub sources: Option<Spanned<Vec<RawSource>>>,
}

/// One `sources:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    pub url: Spanned<String>,
    #[serde(default)]
    pub only: Vec<Spanned<String>>,
    #[serde(default)]
    pub except: Vec<Spanned<String>>,
    #[serde(default)]
    pub dvr: Option<Spanned<RawDvr>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthBackend {
    #[serde(default)]
    pub allow: Option<RawAuthRules>,
    #[serde(default)]
    pub deny: Option<RawAuthRules>,
    #[serde(default)]
    pub backends: Vec<Spanned<String>>,
    #[serde(default)]
    pub default: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthRules {
    #[serde(default)]
    pub ip: Vec<Spanned<String>>,
    #[serde(default)]
    pub token: Vec<String>,
    #[serde(default)]
    pub ua: Vec<String>,
}

/// A map in document order, keys with their locations.
#[derive(Debug)]
pub(crate) struct RawNamed<T>(pub Vec<(Spanned<String>, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for RawNamed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = RawNamed<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of names to settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNamed<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    out.push((key, map.next_value()?));
                }
                Ok(RawNamed(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawNamed<T>, E> {
                Ok(RawNamed(Vec::new()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPackager {
    #[serde(default)]
    pub memory_cache: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub max_paced_streams: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_paced_streams_per_client: Option<Spanned<u64>>,
    #[serde(default)]
    /// Replaced by `preview_decoder`: refused with a line saying so.
    pub ffmpeg: Option<Spanned<String>>,
    #[serde(default)]
    pub preview_decoder: Option<Spanned<String>>,
    #[serde(default)]
    pub preview_workers: Option<Spanned<u64>>,
    #[serde(default)]
    pub preview_queue: Option<Spanned<u64>>,
    #[serde(default)]
    pub export_retention: Option<Spanned<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRtmp {
    pub listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    /// Replaced by `trusted_proxies`; read only to refuse it with a line
    /// that says so.
    #[serde(default)]
    pub trust_forwarded_for: Option<Spanned<bool>>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    #[serde(default)]
    pub max_connections: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_requests: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_requests_per_client: Option<Spanned<u64>>,
    #[serde(default)]
    pub header_read_timeout: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub write_stall_timeout: Option<Spanned<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStream {
    pub inputs: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub dvr: Option<Spanned<RawDvr>>,
    #[serde(default)]
    pub cache: Option<Spanned<RawCache>>,
    #[serde(default)]
    pub auth: Option<Spanned<String>>,
    #[serde(default)]
    pub on_demand: Option<Spanned<Scalar>>,
}

/// `cache:` is either the seeds' line or the map.
#[derive(Debug)]
pub(crate) enum RawCache {
    Line(String),
    Map(Box<RawCacheMap>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCacheMap {
    pub path: Spanned<String>,
    #[serde(default)]
    pub depth: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub max_size: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub misses: Option<Spanned<u32>>,
}

impl<'de> Deserialize<'de> for RawCache {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCache;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cache line such as \"/mount/ssd1 3d 50G\" or a map")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCache, E> {
                Ok(RawCache::Line(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawCache, A::Error> {
                RawCacheMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|m| RawCache::Map(Box::new(m)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `streams` map in document order, keys with their locations.
#[derive(Debug, Default)]
pub(crate) struct RawStreams(pub Vec<(Spanned<String>, RawStream)>);

impl<'de> Deserialize<'de> for RawStreams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawStreams;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of stream name to stream settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawStreams, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    out.push((key, map.next_value()?));
                }
                Ok(RawStreams(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawStreams, E> {
                Ok(RawStreams::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// `dvr:` is either the one-line string or the map.
#[derive(Debug)]
pub(crate) enum RawDvr {
    Line(String),
    Map(Box<RawDvrMap>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDvrMap {
    #[serde(default)]
    pub root: Option<Spanned<String>>,
    #[serde(default)]
    pub depth: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub segment_duration: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub copy_interval: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub max_size: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub max_disk_usage: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    #[serde(default)]
    pub enabled: Option<Spanned<bool>>,
    #[serde(default)]
    pub replicate: Option<Spanned<bool>>,
    #[serde(default)]
    pub replicate_rate: Option<Spanned<Scalar>>,
}

impl<'de> Deserialize<'de> for RawDvr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDvr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dvr line such as \"/var/lib/dvr 3d 10G\" or a map")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDvr, E> {
                Ok(RawDvr::Line(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawDvr, A::Error> {
                RawDvrMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|m| RawDvr::Map(Box::new(m)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A scalar that may be written as a number or as text (`2`, `2s`, `10G`).
#[derive(Debug)]
pub(crate) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
