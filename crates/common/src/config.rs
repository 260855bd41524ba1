//! The YAML configuration file (`dvr run --config FILE`).
//!
//! Reading is two steps. serde-saphyr turns the text into the raw shape
//! (`config/raw.rs`) with `deny_unknown_fields` everywhere and source
//! locations kept; then [`Config::from_yaml_str`] validates every value and
//! applies defaults, so an error always says which file, which line, which
//! field (`streams.ort.dvr.depth`) and what is wrong with it, e.g.
//! `config.yaml line 7: streams.ort.dvr.depth: invalid duration "7x": unknown unit`.
//!
//! ```yaml
//! version: 1
//! http: { listen: "0.0.0.0:8080" }
//! rtmp: { listen: "0.0.0.0:1935" }   # only for publish:// inputs
//! archive: file:///var/lib/dvr
//! streams:
//!   ort:
//!     inputs: [ "udp://239.0.0.1:1234" ]
//!     dvr: { depth: 7d, segment_duration: 2s, copy_interval: 1h }
//!   news:
//!     inputs: [ "udp://eth1@239.0.0.2:1234" ]
//!     dvr: "/var/lib/dvr 3d 10G"
//!     cache: "/mount/ssd1 3d 50G"
//! packager: { memory_cache: 256M }
//! cluster_key: "${DVR_CLUSTER_KEY}"   # origin-to-origin requests (segment feed)
//! sources:                            # other origins' streams, restreamed
//!   - { url: "http://origin-a:8080", only: [ "ch*" ], except: [ "ch-test" ], dvr: { depth: 3d } }
//! ```

mod auth;
mod cache;
mod dvr;
mod http;
mod input;
mod raw;
mod reads;
mod schedule;
mod stream_doc;
mod units;

use serde_saphyr::{MessageFormatter, Spanned};
use std::collections::BTreeMap;
use std::fmt;

pub use auth::{
    expand_env, parse_auth_spec, parse_backend, AuthBackendConfig, AuthRules, AuthSpec, BackendUrl,
    IpNet, Secret,
};
pub use cache::{
    default_disk_cache_bytes, default_memory_cache_bytes, CacheConfig, PackagerSettings,
};
pub use dvr::{
    check_copy_interval, check_depth, check_segment_duration, default_copy_interval_ms,
    default_segment_duration_ms, root_uri, DvrConfig, MAX_COPY_INTERVAL_MS,
    MAX_SEGMENT_DURATION_MS, MIN_COPY_INTERVAL_MS, MIN_SEGMENT_DURATION_MS,
};
pub use http::{default_listen, HttpConfig, HttpLimits};
pub use input::{
    mask_credentials, HlsBandwidth, InputUrl, InputUrlError, PdtMode, SrtInput, SrtMode,
};
pub use reads::{policy_reads, PolicyReads};
pub use schedule::Schedule;
pub use stream_doc::{format_duration_ms, format_size_bytes};
pub use units::{parse_percent, parse_size_bytes};

use crate::error::{ErrorKind, HasErrorKind};
use crate::stream_name::StreamName;
use crate::time::parse_duration_ms;
use raw::{RawCache, RawConfig, RawDvr, RawDvrMap, Scalar};

/// The only config format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// The whole configuration, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Format version; always [`CONFIG_VERSION`].
    pub version: u32,
    /// The HTTP server.
    pub http: HttpConfig,
    /// The RTMP listener encoders publish to; `None`: no listener, and no
    /// stream may have a `publish://` input.
    pub rtmp: Option<RtmpConfig>,
    /// Default archive root URI for every stream's `dvr` (`file:///var/lib/dvr`,
    /// `s3://bucket/prefix`, `swift://container/prefix`).
    pub archive: Option<String>,
    /// The streams, by name.
    pub streams: BTreeMap<StreamName, StreamConfig>,
    /// The packager: its memory cache.
    pub packager: PackagerSettings,
    /// The global default play authorization (streams without `auth:`).
    pub auth: Option<AuthSpec>,
    /// Named rule sets and backends, for `auth://NAME`.
    pub auth_backends: BTreeMap<String, AuthBackendConfig>,
    /// The key the origins of a cluster sign their requests with (the
    /// seeds' `cluster_key`); `${VAR}` is read from the environment of the
    /// process that uses it. `None`: this origin serves no segment feed.
    pub cluster_key: Option<Secret>,
    /// Other origins whose streams this one restreams (`sources:`), in
    /// priority order.
    pub sources: Vec<SourceConfig>,
}

/// One origin whose streams this one takes (the seeds' `source`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// `http://host:port/` or `https://…/`, with the trailing `/`.
    pub url: String,
    /// Names taken (`*` matches any run of characters, `/` included);
    /// empty: every stream the origin lists.
    pub only: Vec<String>,
    /// Names never taken; wins over `only`.
    pub except: Vec<String>,
    /// Recording settings for every stream taken; `None`: live only.
    pub dvr: Option<DvrConfig>,
}

/// How a stream another origin lists is taken (the seeds' white and grey
/// lists; the black list is not taken at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Run all the time (matched by `only`, or no `only`).
    Static,
    /// Run while viewers ask for it (outside `only`).
    OnDemand,
}

impl SourceConfig {
    /// How a stream this origin lists is taken: `except` leaves it out
    /// (and wins), `only` makes it static, and a stream outside a
    /// non-empty `only` is on demand.
    pub fn takes(&self, name: &str) -> Option<Taken> {
        let any = |patterns: &[String]| patterns.iter().any(|p| wildcard_match(p, name));
        if any(&self.except) {
            None
        } else if self.only.is_empty() || any(&self.only) {
            Some(Taken::Static)
        } else {
            Some(Taken::OnDemand)
        }
    }

    /// The `m4f://` (or `m4fs://`) input of `stream` on this origin.
    pub fn input(&self, stream: &StreamName) -> InputUrl {
        InputUrl::M4f {
            origin: self.url.clone(),
            stream: stream.clone(),
        }
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters (none included) and everything else for itself. Linear in
/// the lengths: the last `*` is the only one ever backtracked to.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The RTMP listener (`rtmp:`), one per process: every stream with a
/// `publish://` input takes its publishes from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtmpConfig {
    /// The address to listen on, e.g. `0.0.0.0:1935`.
    pub listen: std::net::SocketAddr,
}

/// One stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// Sources in priority order: the first that works is used, the next
    /// takes over on loss, the first returns when it is back. Never empty.
    pub inputs: Vec<InputUrl>,
    /// Recording settings; `None` means the stream is live only.
    pub dvr: Option<DvrConfig>,
    /// A local disk cache of the stream's archived segments (the seeds'
    /// `cache PATH DEPTH SIZE`); `None` caches in memory only.
    pub cache: Option<CacheConfig>,
    /// The stream's play authorization; `None` follows the global `auth:`.
    pub auth: Option<AuthSpec>,
    /// The seeds' `ondemand`: the ingest runs only while viewers ask for
    /// the stream, and stops this many milliseconds after the last request
    /// (the seeds' `client_timeout`); `None` runs it all the time.
    pub on_demand_ms: Option<i64>,
}

/// How long an on-demand stream runs after its last request when
/// `on_demand: true` names no time (the seeds' `client_timeout` default).
pub const DEFAULT_ON_DEMAND_MS: i64 = 20_000;

/// `on_demand:`: `true` ([`DEFAULT_ON_DEMAND_MS`]), `false`, or the time
/// the stream runs after its last request, 1 s to 1 h.
fn on_demand_ms(value: &str) -> Result<Option<i64>, String> {
    match value {
        "true" => Ok(Some(DEFAULT_ON_DEMAND_MS)),
        "false" => Ok(None),
        text => {
            let ms = parse_duration_ms(text).map_err(|e| {
                format!("{e}: give true, false, or how long the stream runs after its last request (20s)")
            })?;
            if !(1000..=3_600_000).contains(&ms) {
                return Err(format!(
                    "{text} is out of range: an on-demand stream runs 1s to 1h after its last request"
                ));
            }
            Ok(Some(ms))
        }
    }
}

impl StreamConfig {
    /// The source and delay of a delayed channel (`timeshift://OTHER/N`,
    /// its only input); the config's validation makes sure of the rest.
    pub fn delayed_source(&self) -> Option<(StreamName, i64)> {
        match self.inputs.as_slice() {
            [InputUrl::Timeshift { source, delay_ms }] => Some((source.clone(), *delay_ms)),
            _ => None,
        }
    }

    /// Whether it is a delayed channel: it has no ingest and no recorder of
    /// its own, it plays its source's tape.
    pub fn is_delayed(&self) -> bool {
        self.delayed_source().is_some()
    }
}

/// A configuration that cannot be used: where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file name the text came from, as given by the caller.
    pub source_name: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// Dotted path of the field, e.g. `streams.ort.dvr.depth`; empty for the
    /// document itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source_name)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl HasErrorKind for ConfigError {
    fn error_kind(&self) -> ErrorKind {
        ErrorKind::BadRequest
    }
}

impl Config {
    /// Parses and validates a YAML configuration. `source_name` is the file
    /// name errors start with.
    pub fn from_yaml_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            serde_saphyr::from_str(text).map_err(|e| yaml_error(text, source_name, &e))?;
        Validator { source_name }.config(raw)
    }

    /// The authorization that applies to `stream`: its own `auth:`, else
    /// the global one; `None` when plays are open.
    pub fn auth_of(&self, stream: &StreamName) -> Option<&AuthSpec> {
        let spec = self
            .streams
            .get(stream)?
            .auth
            .as_ref()
            .or(self.auth.as_ref());
        spec.filter(|s| **s != AuthSpec::Off)
    }

    /// The streams that record, with their settings.
    pub fn recorded_streams(&self) -> impl Iterator<Item = (&StreamName, &DvrConfig)> {
        self.streams
            .iter()
            .filter_map(|(n, s)| s.dvr.as_ref().map(|d| (n, d)))
    }
}

struct Validator<'a> {
    source_name: &'a str,
}

impl Validator<'_> {
    fn err<T>(
        &self,
        at: Option<u64>,
        path: &str,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            source_name: self.source_name.to_owned(),
            line: at.filter(|&l| l > 0),
            path: path.to_owned(),
            message: message.into(),
        })
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        if raw.version.value != CONFIG_VERSION {
            return self.err(
                line(&raw.version),
                "version",
                format!(
                    "unsupported version {} (this build reads version 1)",
                    raw.version.value
                ),
            );
        }
        let http = match raw.http {
            Some(raw) => self.http(raw)?,
            None => HttpConfig::default(),
        };
        let rtmp = match raw.rtmp {
            Some(r) => Some(RtmpConfig {
                listen: r.listen.value.parse().or_else(|_| {
                    self.err(
                        line(&r.listen),
                        "rtmp.listen",
                        format!("{:?} is not an address:port", r.listen.value),
                    )
                })?,
            }),
            None => None,
        };
        let archive = match raw.archive {
            Some(a) => Some(root_uri(&a.value).or_else(|m| self.err(line(&a), "archive", m))?),
            None => None,
        };
        let auth_backends = self.auth_backends(raw.auth_backends)?;
        let auth = match &raw.auth {
            Some(a) => Some(self.auth_spec("auth", a, &auth_backends)?),
            None => None,
        };
        let mut streams = BTreeMap::new();
        for (name, stream) in raw.streams.0 {
            let path = format!("streams.{}", name.value);
            let stream_name = match StreamName::new(&name.value) {
                Ok(n) => n,
                Err(e) => return self.err(line(&name), &path, e.to_string()),
            };
            if streams.contains_key(&stream_name) {
                return self.err(line(&name), &path, "duplicate stream");
            }
            let stream_auth = match &stream.auth {
                Some(a) => Some(self.auth_spec(&format!("{path}.auth"), a, &auth_backends)?),
                None => None,
            };
            let mut config = self.stream(&path, stream, archive.as_deref())?;
            config.auth = stream_auth;
            streams.insert(stream_name, (line(&name), config));
        }
        // Delayed channels read another stream's tape: it must exist and record.
        // A publish:// input needs the RTMP listener, and one is enough.
        for (name, (at, stream)) in &streams {
            let publishes = stream
                .inputs
                .iter()
                .enumerate()
                .filter(|(_, i)| **i == InputUrl::Publish);
            for (n, (i, _)) in publishes.enumerate() {
                let path = format!("streams.{name}.inputs[{i}]");
                if rtmp.is_none() {
                    return self.err(
                        *at,
                        &path,
                        "publish:// needs the RTMP listener: set rtmp: { listen: \"0.0.0.0:1935\" }",
                    );
                }
                if n > 0 {
                    return self.err(
                        *at,
                        &path,
                        "a stream takes publishes once: a second publish:// adds nothing",
                    );
                }
            }
            for (i, input) in stream.inputs.iter().enumerate() {
                if let InputUrl::Timeshift { source, .. } = input {
                    let records = streams.get(source).is_some_and(|(_, s)| s.dvr.is_some());
                    if !records {
                        return self.err(
                            *at,
                            &format!("streams.{name}.inputs[{i}]"),
                            format!(
                                "timeshift source \"{source}\" is not a configured stream with dvr"
                            ),
                        );
                    }
                }
            }
        }
        let cluster_key = match raw.cluster_key {
            Some(k) if k.value.trim().is_empty() => {
                return self.err(
                    line(&k),
                    "cluster_key",
                    "an empty cluster key signs nothing",
                )
            }
            Some(k) => Some(Secret::new(k.value)),
            None => None,
        };
        // A restreamed tape keeps its origin's seqs and bytes: it cannot
        // also be cut here, and following it needs the cluster key.
        for (name, (at, stream)) in &streams {
            let restreamed = stream
                .inputs
                .iter()
                .filter(|i| matches!(i, InputUrl::M4f { .. }))
                .count();
            if restreamed == 0 {
                if stream
                    .dvr
                    .as_ref()
                    .is_some_and(|d| d.replicate_rate.is_some())
                {
                    return self.err(
                        *at,
                        &format!("streams.{name}.dvr.replicate"),
                        "replication copies another origin's archive: the stream needs m4f:// inputs",
                    );
                }
                continue;
            }
            let path = format!("streams.{name}.inputs");
            if restreamed != stream.inputs.len() {
                return self.err(
                    *at,
                    &path,
                    "m4f:// inputs keep their origin's seqs and bytes, so they cannot be mixed with inputs this origin segments itself",
                );
            }
            if cluster_key.is_none() {
                return self.err(
                    *at,
                    &path,
                    "m4f:// needs cluster_key: the origins of a cluster sign their requests with it",
                );
            }
        }
        let sources = match raw.sources {
            Some(list) if cluster_key.is_none() => return self.err(
                line(&list),
                "sources",
                "sources need cluster_key: the origins of a cluster sign their requests with it",
            ),
            Some(list) => list
                .value
                .into_iter()
                .enumerate()
                .map(|(i, s)| self.source(&format!("sources[{i}]"), s, archive.as_deref()))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        // SRT listeners on one port are routed by stream id (docs/ingest.md).
        let mut listeners: Vec<(String, &SrtInput)> = Vec::new();
        for (name, (at, stream)) in &streams {
            for (i, input) in stream.inputs.iter().enumerate() {
                let InputUrl::Srt(srt) = input else { continue };
                let path = format!("streams.{name}.inputs[{i}]");
                if let Some((other, why)) = listeners
                    .iter()
                    .find_map(|(p, o)| srt.listener_conflict(o).map(|why| (p, why)))
                {
                    return self.err(*at, &path, format!("{why} (also {other})"));
                }
                listeners.push((path, srt));
            }
        }
        let streams = streams.into_iter().map(|(n, (_, s))| (n, s)).collect();
        let packager = match raw.packager {
            Some(raw) => self.packager(raw)?,
            None => PackagerSettings::default(),
        };
        Ok(Config {
            version: CONFIG_VERSION,
            http,
            rtmp,
            archive,
            streams,
            packager,
            auth,
            auth_backends,
            cluster_key,
            sources,
        })
    }

    fn http(&self, raw: raw::RawHttp) -> Result<HttpConfig, ConfigError> {
        let mut http = HttpConfig::default();
        if let Some(old) = raw.trust_forwarded_for {
            return self.err(
                line(&old),
                "http.trust_forwarded_for",
                "replaced by http.trusted_proxies: list the addresses of the proxies whose X-Forwarded-For to believe",
            );
        }
        if let Some(listen) = raw.listen {
            http.listen = listen.value.parse().or_else(|_| {
                self.err(
                    line(&listen),
                    "http.listen",
                    format!("invalid address {:?}: expected IP:PORT", listen.value),
                )
            })?;
        }
        for (i, net) in raw.trusted_proxies.iter().enumerate() {
            let parsed = IpNet::parse(&net.value)
                .or_else(|m| self.err(line(net), &format!("http.trusted_proxies[{i}]"), m))?;
            http.trusted_proxies.push(parsed);
        }
        let limits = &mut http.limits;
        let counts = [
            (
                "max_connections",
                raw.max_connections,
                &mut limits.max_connections,
            ),
            ("max_requests", raw.max_requests, &mut limits.max_requests),
            (
                "max_requests_per_client",
                raw.max_requests_per_client,
                &mut limits.max_requests_per_client,
            ),
        ];
        for (name, value, field) in counts {
            if let Some(v) = value {
                *field = http::count_limit(v.value)
                    .or_else(|m| self.err(line(&v), &format!("http.{name}"), m))?;
            }
        }
        let timeouts = [
            (
                "header_read_timeout",
                raw.header_read_timeout,
                &mut limits.header_read_timeout_ms,
            ),
            (
                "write_stall_timeout",
                raw.write_stall_timeout,
                &mut limits.write_stall_timeout_ms,
            ),
        ];
        for (name, value, field) in timeouts {
            if let Some(v) = value {
                let path = format!("http.{name}");
                let ms = parse_duration_ms(&v.value.0)
                    .or_else(|e| self.err(line(&v), &path, e.to_string()))?;
                *field = http::timeout_ms(ms).or_else(|m| self.err(line(&v), &path, m))?;
            }
        }
        Ok(http)
    }

    fn packager(&self, raw: raw::RawPackager) -> Result<PackagerSettings, ConfigError> {
        let mut packager = PackagerSettings::default();
        if let Some(v) = raw.memory_cache {
            packager.memory_cache_bytes = parse_size_bytes(&v.value.0).or_else(|m| {
                self.err(
                    line(&v),
                    "packager.memory_cache",
                    format!("invalid size {:?}: {m}", v.value.0),
                )
            })?;
        }
        let counts = [
            (
                "max_paced_streams",
                raw.max_paced_streams,
                &mut packager.max_paced_streams,
            ),
            (
                "max_paced_streams_per_client",
                raw.max_paced_streams_per_client,
                &mut packager.max_paced_streams_per_client,
            ),
            (
                "preview_workers",
                raw.preview_workers,
                &mut packager.preview_workers,
            ),
        ];
        for (name, value, field) in counts {
            if let Some(v) = value {
                *field = http::count_limit(v.value)
                    .or_else(|m| self.err(line(&v), &format!("packager.{name}"), m))?;
            }
        }
        if let Some(v) = raw.preview_queue {
            packager.preview_queue = usize::try_from(v.value).unwrap_or(usize::MAX);
        }
        if let Some(v) = raw.export_retention {
            let ms = parse_duration_ms(&v.value.0)
                .or_else(|e| self.err(line(&v), "packager.export_retention", e.to_string()))?;
            if ms <= 0 {
                return self.err(
                    line(&v),
                    "packager.export_retention",
                    "must be positive (e.g. 7d)",
                );
            }
            packager.export_retention_ms = ms;
        }
        if let Some(old) = raw.ffmpeg {
            return self.err(
                line(&old),
                "packager.ffmpeg",
                "replaced by packager.preview_decoder: JPEG previews are decoded by dvr-preview-decoder (libavcodec), not an ffmpeg process",
            );
        }
        if let Some(v) = raw.preview_decoder {
            if v.value.trim().is_empty() || v.value.contains('\0') {
                return self.err(
                    line(&v),
                    "packager.preview_decoder",
                    "expected the path or name of the dvr-preview-decoder program",
                );
            }
            packager.preview_decoder = v.value;
        }
        Ok(packager)
    }

    fn auth_spec(
        &self,
        path: &str,
        raw: &Spanned<String>,
        backends: &BTreeMap<String, AuthBackendConfig>,
    ) -> Result<AuthSpec, ConfigError> {
        let spec = parse_auth_spec(&raw.value).or_else(|m| self.err(line(raw), path, m))?;
        if let AuthSpec::Named(name) = &spec {
            if !backends.contains_key(name) {
                return self.err(
                    line(raw),
                    path,
                    format!("auth://{name}: no such entry in auth_backends"),
                );
            }
        }
        Ok(spec)
    }

    fn auth_backends(
        &self,
        raw: Option<raw::RawNamed<raw::RawAuthBackend>>,
    ) -> Result<BTreeMap<String, AuthBackendConfig>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, b) in raw.map(|r| r.0).unwrap_or_default() {
            let path = format!("auth_backends.{}", name.value);
            if let Err(m) = parse_auth_spec(&format!("auth://{}", name.value)) {
                return self.err(line(&name), &path, m);
            }
            let rules =
                |r: Option<raw::RawAuthRules>, which: &str| {
                    let Some(r) = r else {
                        return Ok(AuthRules::default());
                    };
                    let mut ip = Vec::with_capacity(r.ip.len());
                    for (i, net) in r.ip.iter().enumerate() {
                        ip.push(IpNet::parse(&net.value).or_else(|m| {
                            self.err(line(net), &format!("{path}.{which}.ip[{i}]"), m)
                        })?);
                    }
                    Ok(AuthRules {
                        ip,
                        token: r.token.into_iter().map(Secret::new).collect(),
                        ua: r.ua,
                    })
                };
            let allow = rules(b.allow, "allow")?;
            let deny = rules(b.deny, "deny")?;
            let mut backends = Vec::with_capacity(b.backends.len());
            for (i, url) in b.backends.iter().enumerate() {
                backends.push(
                    parse_backend(&url.value)
                        .or_else(|m| self.err(line(url), &format!("{path}.backends[{i}]"), m))?,
                );
            }
            let allow_default = match b.default.as_ref().map(|d| (d, d.value.as_str())) {
                None | Some((_, "deny")) => false,
                Some((_, "allow")) => true,
                Some((d, other)) => {
                    return self.err(
                        line(d),
                        &format!("{path}.default"),
                        format!("default is allow or deny, not {other:?}"),
                    )
                }
            };
            if out.contains_key(&name.value) {
                return self.err(line(&name), &path, "duplicate auth backend");
            }
            out.insert(
                name.value.clone(),
                AuthBackendConfig {
                    allow,
                    deny,
                    backends,
                    allow_default,
                },
            );
        }
        Ok(out)
    }

    fn source(
        &self,
        path: &str,
        raw: raw::RawSource,
        archive: Option<&str>,
    ) -> Result<SourceConfig, ConfigError> {
        let url = raw.url.value.trim_end_matches('/');
        let authority = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .filter(|a| !a.is_empty() && !a.contains(['/', '?', '#', '@']));
        if authority.is_none() {
            return self.err(
                line(&raw.url),
                &format!("{path}.url"),
                format!(
                    "{:?} is not an origin: write http://HOST[:PORT] or https://HOST[:PORT]",
                    raw.url.value
                ),
            );
        }
        let patterns = |field: &str, list: Vec<Spanned<String>>| {
            list.into_iter()
                .enumerate()
                .map(|(i, p)| {
                    let ok = !p.value.is_empty()
                        && p.value.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '*')
                        });
                    if ok {
                        Ok(p.value)
                    } else {
                        self.err(
                            line(&p),
                            &format!("{path}.{field}[{i}]"),
                            format!("{:?} is not a stream name pattern (letters, digits, _ - . / and * only)", p.value),
                        )
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let only = patterns("only", raw.only)?;
        let except = patterns("except", raw.except)?;
        let dvr = match raw.dvr {
            Some(d) => Some(self.dvr(&format!("{path}.dvr"), d, archive)?),
            None => None,
        };
        Ok(SourceConfig {
            url: format!("{url}/"),
            only,
            except,
            dvr,
        })
    }

    fn stream(
        &self,
        path: &str,
        raw: raw::RawStream,
        archive: Option<&str>,
    ) -> Result<StreamConfig, ConfigError> {
        if raw.inputs.value.is_empty() {
            return self.err(
                line(&raw.inputs),
                &format!("{path}.inputs"),
                "at least one input is needed",
            );
        }
        let mut inputs = Vec::with_capacity(raw.inputs.value.len());
        for (i, input) in raw.inputs.value.iter().enumerate() {
            match input.value.parse::<InputUrl>() {
                Ok(url) => inputs.push(url),
                Err(e) => {
                    return self.err(line(input), &format!("{path}.inputs[{i}]"), e.to_string())
                }
            }
        }
        let dvr = match raw.dvr {
            Some(d) => Some(self.dvr(&format!("{path}.dvr"), d, archive)?),
            None => None,
        };
        let cache = match raw.cache {
            Some(c) if dvr.is_none() => {
                return self.err(
                    line(&c),
                    &format!("{path}.cache"),
                    "a cache needs dvr: it caches the stream's archive",
                )
            }
            Some(c) => Some(self.cache(&format!("{path}.cache"), c)?),
            None => None,
        };
        // `auth://NAME` must name an entry of `auth_backends`: the config
        // file's caller checks that (a stored document has no backends; the
        // engine denies every play of a name it does not know).
        let auth = match &raw.auth {
            Some(a) => Some(
                parse_auth_spec(&a.value)
                    .or_else(|m| self.err(line(a), &format!("{path}.auth"), m))?,
            ),
            None => None,
        };
        let on_demand_ms = match &raw.on_demand {
            Some(v) => {
                let path = format!("{path}.on_demand");
                let ms = on_demand_ms(&v.value.0).or_else(|m| self.err(line(v), &path, m))?;
                if ms.is_some() && matches!(inputs.as_slice(), [InputUrl::Timeshift { .. }]) {
                    return self.err(
                        line(v),
                        &path,
                        "a delayed channel plays its source's tape: it has no ingest to start on demand",
                    );
                }
                ms
            }
            None => None,
        };
        Ok(StreamConfig {
            inputs,
            dvr,
            cache,
            auth,
            on_demand_ms,
        })
    }

    fn cache(&self, path: &str, raw: Spanned<RawCache>) -> Result<CacheConfig, ConfigError> {
        let at = line(&raw);
        let parts = match raw.value {
            RawCache::Line(text) => {
                cache::parse_cache_line(&text).or_else(|m| self.err(at, path, m))?
            }
            RawCache::Map(map) => {
                let depth_ms = match &map.depth {
                    Some(v) => Some(parse_duration_ms(&v.value.0).or_else(|e| {
                        self.err(
                            line(v),
                            &format!("{path}.depth"),
                            format!("invalid duration {:?}: {}", e.input(), e.reason()),
                        )
                    })?),
                    None => None,
                };
                let max_size_bytes = match &map.max_size {
                    Some(v) => Some(parse_size_bytes(&v.value.0).or_else(|m| {
                        self.err(
                            line(v),
                            &format!("{path}.max_size"),
                            format!("invalid size {:?}: {m}", v.value.0),
                        )
                    })?),
                    None => None,
                };
                cache::check_cache_path(&map.path.value)
                    .or_else(|m| self.err(line(&map.path), &format!("{path}.path"), m))?;
                cache::CacheParts {
                    path: Some(map.path.value.clone()),
                    depth_ms,
                    max_size_bytes,
                    misses: map.misses.map(|m| m.value),
                }
            }
        };
        parts.finish().or_else(|m| self.err(at, path, m))
    }

    fn dvr(
        &self,
        path: &str,
        raw: Spanned<RawDvr>,
        archive: Option<&str>,
    ) -> Result<DvrConfig, ConfigError> {
        let at = line(&raw);
        let parts = match raw.value {
            RawDvr::Line(text) => dvr::parse_dvr_line(&text).or_else(|m| self.err(at, path, m))?,
            RawDvr::Map(map) => self.dvr_map(path, &map)?,
        };
        let root = match parts.root.as_deref().or(archive) {
            Some(r) => r.to_owned(),
            None => {
                return self.err(
                    at,
                    path,
                    "no archive root: set `root` here or `archive` at the top",
                )
            }
        };
        let segment_duration_ms = parts
            .segment_duration_ms
            .unwrap_or_else(default_segment_duration_ms);
        let copy_interval_ms = parts
            .copy_interval_ms
            .unwrap_or_else(default_copy_interval_ms);
        // The map form was checked field by field with its own lines; this
        // catches the one-line form's key=value tokens.
        check_segment_duration(segment_duration_ms)
            .or_else(|m| self.err(at, &format!("{path}.segment_duration"), m))?;
        check_copy_interval(copy_interval_ms)
            .or_else(|m| self.err(at, &format!("{path}.copy_interval"), m))?;
        if let Some(depth) = parts.depth_ms {
            check_depth(depth).or_else(|m| self.err(at, &format!("{path}.depth"), m))?;
        }
        if parts.max_disk_usage_percent.is_some() && !root.starts_with("file://") {
            return self.err(
                at,
                &format!("{path}.max_disk_usage"),
                format!(
                    "a disk-usage limit needs a file:// root, and {root} is an object store \
                     (no disk to measure): use max_size"
                ),
            );
        }
        if parts.replicate_rate.is_some() && !parts.replicate {
            return self.err(
                at,
                &format!("{path}.replicate_rate"),
                "a replication rate without replicate: add `replicate` (the line) or `replicate: true`",
            );
        }
        let replicate_rate = parts
            .replicate
            .then(|| parts.replicate_rate.unwrap_or(dvr::DEFAULT_REPLICATE_RATE));
        Ok(DvrConfig {
            replicate_rate,
            root,
            depth_ms: parts.depth_ms,
            segment_duration_ms,
            copy_interval_ms,
            max_size_bytes: parts.max_size_bytes,
            max_disk_usage_percent: parts.max_disk_usage_percent,
            schedule: parts.schedule,
            enabled: parts.enabled.unwrap_or(true),
        })
    }

    fn dvr_map(&self, path: &str, map: &RawDvrMap) -> Result<dvr::DvrLine, ConfigError> {
        let duration =
            |field: &str, v: &Option<Spanned<Scalar>>, check: fn(i64) -> Result<(), String>| {
                let Some(v) = v else { return Ok(None) };
                let p = format!("{path}.{field}");
                let ms = parse_duration_ms(&v.value.0).or_else(|e| {
                    self.err(
                        line(v),
                        &p,
                        format!("invalid duration {:?}: {}", e.input(), e.reason()),
                    )
                })?;
                check(ms).or_else(|m| self.err(line(v), &p, m))?;
                Ok(Some(ms))
            };
        let root = match &map.root {
            Some(r) => Some(
                root_uri(&r.value).or_else(|m| self.err(line(r), &format!("{path}.root"), m))?,
            ),
            None => None,
        };
        let max_size_bytes = match &map.max_size {
            Some(v) => Some(parse_size_bytes(&v.value.0).or_else(|m| {
                self.err(
                    line(v),
                    &format!("{path}.max_size"),
                    format!("invalid size {:?}: {m}", v.value.0),
                )
            })?),
            None => None,
        };
        let max_disk_usage_percent = match &map.max_disk_usage {
            Some(v) => Some(parse_percent(&v.value.0).or_else(|m| {
                self.err(
                    line(v),
                    &format!("{path}.max_disk_usage"),
                    format!("invalid percentage {:?}: {m}", v.value.0),
                )
            })?),
            None => None,
        };
        let replicate_rate = match &map.replicate_rate {
            Some(v) => Some(
                dvr::rate(&v.value.0)
                    .or_else(|m| self.err(line(v), &format!("{path}.replicate_rate"), m))?,
            ),
            None => None,
        };
        let schedule = match &map.schedule {
            Some(s) => Some(
                Schedule::parse(&s.value)
                    .or_else(|m| self.err(line(s), &format!("{path}.schedule"), m))?,
            ),
            None => None,
        };
        Ok(dvr::DvrLine {
            root,
            depth_ms: duration("depth", &map.depth, check_depth)?,
            segment_duration_ms: duration(
                "segment_duration",
                &map.segment_duration,
                check_segment_duration,
            )?,
            copy_interval_ms: duration("copy_interval", &map.copy_interval, check_copy_interval)?,
            max_size_bytes,
            max_disk_usage_percent,
            schedule,
            enabled: map.enabled.as_ref().map(|e| e.value),
            replicate: map.replicate.as_ref().is_some_and(|r| r.value),
            replicate_rate,
        })
    }
}

/// Deserializes the configuration text as any `T`, with errors in the same
/// form as [`Config::from_yaml_str`] (file, line, dotted path).
///
/// This is how a section that another crate defines is read: the binary
/// reads `storage:` into the storage crate's type with a struct that holds
/// only that field, so this crate need not depend on the storage crate, and
/// [`Config::from_yaml_str`] accepts the section without looking inside.
pub fn from_yaml_str_as<T: serde::de::DeserializeOwned>(
    text: &str,
    source_name: &str,
) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| yaml_error(text, source_name, &e))
}

/// A serde-saphyr error as a [`ConfigError`], with the path of the key on
/// the error's line.
fn yaml_error(text: &str, source_name: &str, e: &serde_saphyr::Error) -> ConfigError {
    let line = e.location().map(|l| l.line()).filter(|&l| l > 0);
    let message = serde_saphyr::DefaultMessageFormatter
        .format_message(e.without_snippet())
        .into_owned();
    let mut path = line.map(|l| yaml_path_at_line(text, l)).unwrap_or_default();
    // These point at a key (unknown) or at the map (missing): the field is
    // named in the message, the path is the map holding it. On a flow map's
    // line the heuristic already stops at the map.
    let field = message.split('`').nth(1).unwrap_or_default();
    let unknown_here =
        message.starts_with("unknown field") && path.rsplit('.').next() == Some(field);
    if unknown_here || message.starts_with("missing field") {
        path.truncate(path.rfind('.').unwrap_or(0));
    }
    ConfigError {
        source_name: source_name.to_owned(),
        line,
        path,
        message,
    }
}

fn line<T>(s: &Spanned<T>) -> Option<u64> {
    Some(s.referenced.line()).filter(|&l| l > 0)
}

/// Best-effort dotted path of the key on `line` (1-based) of block-style
/// YAML, from indentation: serde-saphyr gives the line of a shape error but
/// not the path, and "which stream" is what an operator needs first. Flow
/// maps (`{ depth: 7d }`) resolve to the key that holds them.
fn yaml_path_at_line(text: &str, line: u64) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(idx) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)) else {
        return String::new();
    };
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start().len();
        let body = l.trim_start().trim_start_matches("- ");
        if body.starts_with('#') || body.is_empty() {
            return None;
        }
        let (key, _) = body.split_once(':')?;
        let key = key.trim().trim_matches(['"', '\'']);
        (!key.is_empty() && !key.contains([' ', '{', '[', ','])).then(|| (indent, key.to_owned()))
    };
    let mut path = Vec::new();
    let mut limit = usize::MAX;
    for l in lines
        .iter()
        .take(idx.saturating_add(1).min(lines.len()))
        .rev()
    {
        if let Some((indent, key)) = key_of(l) {
            if indent < limit {
                path.push(key);
                limit = indent;
                if indent == 0 {
                    break;
                }
            }
        }
    }
    path.reverse();
    path.join(".")
}

#[cfg(test)]
mod tests;
