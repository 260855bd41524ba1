//! Source URLs: the one parser for every input a stream can have.
//!
//! The config reads them so a typo fails at start with the stream and the
//! field named, not at the first reconnect; ingest opens exactly what was
//! parsed here. `Display` masks credentials (the password of the user info
//! and secret-named query values), so an input can be logged as is.

use std::fmt;
use std::str::FromStr;

use crate::stream_name::StreamName;

/// One input of a stream, in priority order with its siblings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputUrl {
    /// `udp://[iface@]host:port`: multicast (joined on `interface`) or unicast.
    Udp {
        /// Network interface to join the group on, e.g. `eth1`.
        interface: Option<String>,
        /// Group or unicast address (IPv6 without brackets).
        host: String,
        /// UDP port.
        port: u16,
    },
    /// `http://` or `https://` MPEG-TS pull.
    Http {
        /// The whole URL.
        url: String,
    },
    /// `tshttp://`: MPEG-TS over HTTP, the seeds' spelling; fetched as `http://`.
    TsHttp {
        /// The whole URL as written.
        url: String,
    },
    /// `file://PATH?loop=true&pace=false`: a TS file, paced in real time
    /// unless `pace=false`.
    File {
        /// The file path (`file://localhost/x` is `/x`).
        path: String,
        /// How many times to play it: `None` loops forever (`loop=true`),
        /// `Some(n)` plays n passes (`loop=N`; without `loop`, one).
        passes: Option<u64>,
        /// Release bytes at the stream's own rate (the default).
        paced: bool,
    },
    /// HLS pull: `hls://host/path.m3u8` (`hlss://` for https), or an
    /// `http(s)://` URL whose path ends in `.m3u8`.
    Hls {
        /// The playlist URL fetched (`http` or `https`), without our options.
        url: String,
        /// Which variant of a master playlist to record.
        bandwidth: HlsBandwidth,
        /// How `EXT-X-PROGRAM-DATE-TIME` stamps the tape.
        pdt: PdtMode,
    },
    /// `publish://`: what an encoder publishes over RTMP to this stream
    /// (needs the top-level `rtmp.listen`).
    Publish,
    /// `srt://host:port?mode=caller|listener[&streamid=…][&passphrase=…][&latency=ms]`.
    Srt(SrtInput),
    /// `m4f://host[:port]/STREAM` (`m4fs://` over HTTPS): STREAM's tape on
    /// another origin of the cluster, followed through its segment feed
    /// with seqs, UTC and bytes kept (the seeds' M4F restreaming; needs
    /// the top-level `cluster_key`).
    M4f {
        /// The origin, `http://host:port/` or `https://host:port/`.
        origin: String,
        /// The stream's name there.
        stream: StreamName,
    },
    /// `timeshift://OTHER/N`: OTHER's tape, N seconds behind live.
    Timeshift {
        /// The recorded stream to read.
        source: StreamName,
        /// The delay in milliseconds (the URL carries whole seconds).
        delay_ms: i64,
    },
}

/// Which variant of an HLS master playlist plays (`?bandwidth=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HlsBandwidth {
    /// The highest `BANDWIDTH` (the default).
    #[default]
    Max,
    /// The lowest `BANDWIDTH`.
    Min,
    /// The highest `BANDWIDTH` not above this many bits per second, or the
    /// lowest variant when all are above.
    AtMost(u64),
}

/// How an HLS input's `EXT-X-PROGRAM-DATE-TIME` stamps the tape (`?pdt=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PdtMode {
    /// Follow the PDT when it is within [`PdtMode::AUTO_TOLERANCE_MS`] of
    /// the wall clock, else anchor on the wall clock (the default).
    #[default]
    Auto,
    /// Follow any PDT (a feed delayed on purpose).
    Keep,
    /// Ignore the PDT: the wall clock anchors each run.
    Wall,
}

/// Whether an SRT input calls a remote listener or listens for callers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SrtMode {
    /// Connect to `host:port`, where an encoder or gateway listens (the default).
    #[default]
    Caller,
    /// Listen on `host:port` (UDP) for encoders that call in.
    Listener,
}

impl SrtMode {
    fn as_str(self) -> &'static str {
        match self {
            SrtMode::Caller => "caller",
            SrtMode::Listener => "listener",
        }
    }
}

/// An SRT input (`srt://`), as parsed: every option here is applied.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtInput {
    /// The remote listener (caller), or the address to bind (listener;
    /// `srt://:PORT` binds every address, `0.0.0.0`).
    pub host: String,
    /// The UDP port.
    pub port: u16,
    /// Caller or listener.
    pub mode: SrtMode,
    /// The stream id: sent by a caller; for a listener, the id callers must
    /// send to reach this stream (without one, the stream takes every caller
    /// of its port and must be the port's only stream).
    pub stream_id: Option<String>,
    /// The AES passphrase, 10 to 79 bytes; never shown by `Display` or `Debug`.
    pub passphrase: Option<String>,
    /// The receive latency in milliseconds (`None`: SRT's default, 120 ms).
    pub latency_ms: Option<u32>,
}

impl SrtInput {
    /// The largest latency accepted, in milliseconds.
    pub const MAX_LATENCY_MS: u32 = 60_000;
    /// SRT's passphrase length rule, in bytes.
    pub const PASSPHRASE_BYTES: std::ops::RangeInclusive<usize> = 10..=79;

    /// Why two listener inputs cannot share their port, if they cannot:
    /// `None` when they are on different ports or can be routed apart.
    pub fn listener_conflict(&self, other: &SrtInput) -> Option<String> {
        if self.mode != SrtMode::Listener
            || other.mode != SrtMode::Listener
            || self.port != other.port
        {
            return None;
        }
        let port = self.port;
        match (&self.stream_id, &other.stream_id) {
            (None, _) | (_, None) => Some(format!(
                "SRT port {port} has several streams: each needs its own streamid= \
                 (a stream without one takes every caller, so it must be alone on its port)"
            )),
            (Some(a), Some(b)) if a == b => Some(format!(
                "SRT port {port}: streamid {a:?} is taken by another stream"
            )),
            _ if self.latency_ms != other.latency_ms => Some(format!(
                "SRT port {port}: streams sharing a port share its latency: {} and {}",
                latency_text(self.latency_ms),
                latency_text(other.latency_ms)
            )),
            _ => None,
        }
    }
}

fn latency_text(latency_ms: Option<u32>) -> String {
    latency_ms.map_or_else(|| "the default".to_owned(), |ms| format!("{ms} ms"))
}

impl fmt::Debug for SrtInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtInput")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("mode", &self.mode)
            .field("stream_id", &self.stream_id)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "***"))
            .field("latency_ms", &self.latency_ms)
            .finish()
    }
}

impl PdtMode {
    /// How far from the wall clock `auto` still trusts a PDT.
    pub const AUTO_TOLERANCE_MS: i64 = 60_000;

    fn as_str(self) -> &'static str {
        match self {
            PdtMode::Auto => "auto",
            PdtMode::Keep => "keep",
            PdtMode::Wall => "wall",
        }
    }
}

impl InputUrl {
    /// The URL an HTTP or HLS input fetches (`tshttp://` becomes `http://`,
    /// `hls://` the playlist's `http://` URL); `None` for other inputs.
    pub fn fetch_url(&self) -> Option<String> {
        match self {
            InputUrl::Http { url } | InputUrl::Hls { url, .. } => Some(url.clone()),
            InputUrl::TsHttp { url } => url
                .split_once("://")
                .map(|(_, rest)| format!("http://{rest}")),
            _ => None,
        }
    }
}

/// Why an input URL was rejected. The URL is shown with credentials masked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid input URL {input:?}: {reason}")]
pub struct InputUrlError {
    input: String,
    reason: String,
}

impl FromStr for InputUrl {
    type Err = InputUrlError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| InputUrlError {
            input: mask_credentials(input),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = input.split_once("://").ok_or_else(|| {
            err("missing scheme (udp://, srt://, http://, https://, tshttp://, hls://, hlss://, file://, publish://, m4f://, timeshift://)")
        })?;
        match scheme.to_ascii_lowercase().as_str() {
            "udp" => parse_udp(rest).map_err(|e| err(&e)),
            "srt" => parse_srt(rest).map(InputUrl::Srt).map_err(|e| err(&e)),
            scheme @ ("hls" | "hlss") => {
                check_authority(rest).map_err(err)?;
                let fetch = if scheme == "hls" { "http" } else { "https" };
                parse_hls(fetch, rest, false).map_err(|e| err(&e))
            }
            scheme @ ("http" | "https") if is_playlist_path(rest) => {
                check_authority(rest).map_err(err)?;
                parse_hls(scheme, rest, true).map_err(|e| err(&e))
            }
            scheme @ ("http" | "https" | "tshttp") => {
                check_authority(rest).map_err(err)?;
                let url = format!("{scheme}://{rest}");
                Ok(if scheme == "tshttp" {
                    InputUrl::TsHttp { url }
                } else {
                    InputUrl::Http { url }
                })
            }
            "file" => parse_file(rest).map_err(|e| err(&e)),
            "timeshift" => parse_timeshift(rest).map_err(|e| err(&e)),
            scheme @ ("m4f" | "m4fs") => {
                check_authority(rest).map_err(err)?;
                parse_m4f(scheme == "m4fs", rest).map_err(|e| err(&e))
            }
            "publish" if rest.is_empty() => Ok(InputUrl::Publish),
            "rtmp" | "rtmps" => Err(err(
                "RTMP is not pulled: encoders publish to the rtmp.listen address, into a stream with a publish:// input",
            )),
            "publish" => Err(err(
                "publish:// takes nothing after it: the stream's name is where encoders publish",
            )),
            _ => Err(err(&format!(
                "unsupported scheme {scheme:?} (use udp, srt, http, https, tshttp, hls, hlss, file, publish, m4f, m4fs or timeshift)"
            ))),
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = hostport.rsplit_once(':').ok_or("missing :port")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("missing host");
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
    {
        return Err("invalid character in host");
    }
    let port: u16 = port
        .parse()
        .map_err(|_| "port is not a number from 1 to 65535")?;
    if port == 0 {
        return Err("port is not a number from 1 to 65535");
    }
    Ok((host.to_owned(), port))
}

/// Whether `name` can be a network interface (Linux: under 16 bytes, no
/// path tricks; it is looked up under `/sys/class/net`).
fn valid_interface(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

fn parse_udp(rest: &str) -> Result<InputUrl, String> {
    if rest.contains(['/', '?']) {
        return Err("udp takes only [iface@]host:port".to_owned());
    }
    let (interface, hostport) = match rest.split_once('@') {
        Some(("", _)) => return Err("empty interface before '@'".to_owned()),
        Some((iface, _)) if !valid_interface(iface) => {
            return Err(format!("invalid interface name {iface:?}"))
        }
        Some((iface, hp)) => (Some(iface.to_owned()), hp),
        None => (None, rest),
    };
    let (host, port) = split_host_port(hostport)?;
    if host
        .parse::<std::net::Ipv6Addr>()
        .is_ok_and(|a| a.is_multicast())
    {
        return Err("IPv6 multicast is not supported yet".to_owned());
    }
    Ok(InputUrl::Udp {
        interface,
        host,
        port,
    })
}

/// An SRT input from `rest` (after `srt://`): `host:port` (or `:port` for a
/// listener on every address) and the query options, each applied or refused.
fn parse_srt(rest: &str) -> Result<SrtInput, String> {
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    if hostport.contains(['/', '@', '#']) {
        return Err("srt takes host:port and options, no path or user info".to_owned());
    }
    let mut mode = SrtMode::default();
    let mut stream_id = None;
    let mut passphrase = None;
    let mut latency_ms = None;
    let mut seen: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if seen.contains(&key) {
            return Err(format!("option {key:?} is given twice"));
        }
        seen.push(key);
        match key {
            "mode" => {
                mode = match value {
                    "caller" => SrtMode::Caller,
                    "listener" => SrtMode::Listener,
                    _ => return Err(format!("mode={value}: expected caller or listener")),
                }
            }
            "streamid" => {
                let id = percent_decode(value).map_err(|e| format!("streamid: {e}"))?;
                if id.is_empty() || id.len() > 512 {
                    return Err(format!(
                        "streamid is {} bytes: SRT takes 1 to 512",
                        id.len()
                    ));
                }
                stream_id = Some(id);
            }
            "passphrase" => {
                // The value is never quoted back: it is a secret.
                let secret = percent_decode(value)
                    .map_err(|_| "passphrase: invalid percent-encoding or UTF-8".to_owned())?;
                if !SrtInput::PASSPHRASE_BYTES.contains(&secret.len()) {
                    return Err(format!(
                        "passphrase is {} bytes: SRT takes 10 to 79",
                        secret.len()
                    ));
                }
                passphrase = Some(secret);
            }
            "latency" => {
                latency_ms = match value.parse::<u32>() {
                    Ok(ms) if ms <= SrtInput::MAX_LATENCY_MS => Some(ms),
                    _ => {
                        return Err(format!(
                            "latency={value}: expected milliseconds from 0 to {}",
                            SrtInput::MAX_LATENCY_MS
                        ))
                    }
                }
            }
            _ => {
                return Err(format!(
                    "unknown option {key:?} (known: mode, streamid, passphrase, latency)"
                ))
            }
        }
    }
    let (host, port) = match hostport.strip_prefix(':') {
        Some(port) if mode == SrtMode::Listener => split_host_port(&format!("0.0.0.0:{port}"))?,
        _ => split_host_port(hostport)?,
    };
    Ok(SrtInput {
        host,
        port,
        mode,
        stream_id,
        passphrase,
        latency_ms,
    })
}

/// `%XX` escapes decoded (a stream id may hold `&`, `#` or `%`).
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("invalid percent-encoding at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once percent-decoded".to_owned())
}

/// `value` with the characters that would end or confuse a query value escaped.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '&' | '#' | '?' | '+') || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The written form of an SRT input, the passphrase shown or masked.
fn srt_written(srt: &SrtInput, show_secret: bool) -> String {
    let mut out = if srt.host.contains(':') {
        format!("srt://[{}]:{}", srt.host, srt.port)
    } else {
        format!("srt://{}:{}", srt.host, srt.port)
    };
    out.push_str("?mode=");
    out.push_str(srt.mode.as_str());
    if let Some(id) = &srt.stream_id {
        out.push_str("&streamid=");
        out.push_str(&percent_encode(id));
    }
    if let Some(secret) = &srt.passphrase {
        out.push_str("&passphrase=");
        out.push_str(&if show_secret {
            percent_encode(secret)
        } else {
            "***".to_owned()
        });
    }
    if let Some(ms) = srt.latency_ms {
        out.push_str(&format!("&latency={ms}"));
    }
    out
}

fn check_authority(rest: &str) -> Result<(), &'static str> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if hostport.is_empty() {
        return Err("missing host");
    }
    if hostport.contains(':') && !hostport.ends_with(']') {
        split_host_port(hostport)?;
    }
    Ok(())
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{key}={value}: expected true or false")),
    }
}

fn parse_file(rest: &str) -> Result<InputUrl, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = match path.strip_prefix("localhost/") {
        Some(p) => format!("/{p}"),
        None => path.to_owned(),
    };
    if path.is_empty() {
        return Err("missing path".to_owned());
    }
    let mut passes = Some(1);
    let mut paced = true;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        match key {
            "loop" => {
                passes = match value.parse::<u64>() {
                    Ok(0) => return Err("loop=0: play at least one pass".to_owned()),
                    Ok(n) => Some(n),
                    Err(_) => (!parse_bool(key, value)?).then_some(1),
                }
            }
            "pace" => paced = parse_bool(key, value)?,
            _ => return Err(format!("unknown option {key:?} (known: loop, pace)")),
        }
    }
    Ok(InputUrl::File {
        path,
        passes,
        paced,
    })
}

/// Whether the path of `rest` (after `scheme://`) ends in `.m3u8`: such an
/// `http(s)://` input is a playlist, never a transport stream.
fn is_playlist_path(rest: &str) -> bool {
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let path = &rest[..end];
    path.contains('/')
        && path
            .rsplit('/')
            .next()
            .is_some_and(|name| name.to_ascii_lowercase().ends_with(".m3u8"))
}

/// An HLS input from `rest` (after `scheme://`), fetched as `fetch://`.
/// `bandwidth` and `pdt` in the query are ours and leave the fetched URL.
/// Other keys are refused after `hls://`; after `http(s)://` they are the
/// origin's (tokens, signatures) and stay in the URL.
fn parse_hls(fetch: &str, rest: &str, origin_query: bool) -> Result<InputUrl, String> {
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut bandwidth = HlsBandwidth::default();
    let mut pdt = PdtMode::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "bandwidth" => {
                bandwidth = match value {
                    "max" => HlsBandwidth::Max,
                    "min" => HlsBandwidth::Min,
                    n => match n.parse::<u64>() {
                        Ok(n) if n > 0 => HlsBandwidth::AtMost(n),
                        _ => {
                            return Err(format!(
                                "bandwidth={value}: expected max, min or bits per second"
                            ))
                        }
                    },
                }
            }
            "pdt" => {
                pdt = match value {
                    "auto" => PdtMode::Auto,
                    "keep" => PdtMode::Keep,
                    "wall" => PdtMode::Wall,
                    _ => return Err(format!("pdt={value}: expected keep, wall or auto")),
                }
            }
            _ if origin_query => kept.push(pair),
            _ => {
                return Err(format!(
                    "unknown option {key:?} (known: bandwidth, pdt; origin query \
                     parameters need the http(s):// form)"
                ))
            }
        }
    }
    let mut url = format!("{fetch}://{path}");
    if !kept.is_empty() {
        url.push('?');
        url.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        url.push('#');
        url.push_str(f);
    }
    Ok(InputUrl::Hls {
        url,
        bandwidth,
        pdt,
    })
}

/// An `m4f://` (`tls`: `m4fs://`) input from `rest`: `host[:port]/STREAM`.
fn parse_m4f(tls: bool, rest: &str) -> Result<InputUrl, String> {
    if rest.contains(['?', '#']) {
        return Err("m4f:// takes no options: the origin and the stream name only".to_owned());
    }
    let (authority, stream) = rest
        .split_once('/')
        .ok_or("expected m4f://HOST[:PORT]/STREAM")?;
    if authority.contains('@') {
        return Err("m4f:// takes no credentials: origins sign with the cluster_key".to_owned());
    }
    let stream = StreamName::new(stream).map_err(|e| e.to_string())?;
    let scheme = if tls { "https" } else { "http" };
    Ok(InputUrl::M4f {
        origin: format!("{scheme}://{authority}/"),
        stream,
    })
}

fn parse_timeshift(rest: &str) -> Result<InputUrl, String> {
    let (source, secs) = rest
        .rsplit_once('/')
        .ok_or("expected timeshift://STREAM/SECONDS")?;
    let source = StreamName::new(source).map_err(|e| e.to_string())?;
    let secs: i64 = secs
        .parse()
        .map_err(|_| "delay is not a whole number of seconds")?;
    if secs <= 0 || secs > 366 * 86_400 {
        return Err("delay must be from 1 second to 366 days".to_owned());
    }
    Ok(InputUrl::Timeshift {
        source,
        delay_ms: secs * 1000,
    })
}

impl InputUrl {
    /// The input as written in a config file, credentials included; it
    /// parses back to the same value.
    pub fn written(&self) -> String {
        match self {
            InputUrl::Http { url } | InputUrl::TsHttp { url } => url.clone(),
            InputUrl::Hls {
                url,
                bandwidth,
                pdt,
            } => hls_written(url, *bandwidth, *pdt),
            InputUrl::Srt(srt) => srt_written(srt, true),
            other => other.to_string(),
        }
    }
}

/// An HLS input's written form: the fetched URL (as `hls(s)://` when its
/// path does not end in `.m3u8`), then the options that are not defaults.
fn hls_written(url: &str, bandwidth: HlsBandwidth, pdt: PdtMode) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) if !is_playlist_path(rest) => {
            let scheme = if scheme == "https" { "hlss" } else { "hls" };
            format!("{scheme}://{rest}")
        }
        _ => base.to_owned(),
    };
    let mut sep = if out.contains('?') { '&' } else { '?' };
    let mut option = |text: String| {
        out.push(sep);
        out.push_str(&text);
        sep = '&';
    };
    match bandwidth {
        HlsBandwidth::Max => {}
        HlsBandwidth::Min => option("bandwidth=min".to_owned()),
        HlsBandwidth::AtMost(n) => option(format!("bandwidth={n}")),
    }
    if pdt != PdtMode::Auto {
        option(format!("pdt={}", pdt.as_str()));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

impl fmt::Display for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputUrl::Hls { .. } => f.write_str(&mask_credentials(&self.written())),
            InputUrl::Udp {
                interface,
                host,
                port,
            } => {
                f.write_str("udp://")?;
                if let Some(i) = interface {
                    write!(f, "{i}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]:{port}")
                } else {
                    write!(f, "{host}:{port}")
                }
            }
            InputUrl::Http { url } | InputUrl::TsHttp { url } => {
                f.write_str(&mask_credentials(url))
            }
            InputUrl::File {
                path,
                passes,
                paced,
            } => {
                write!(f, "file://{path}")?;
                let mut sep = '?';
                match passes {
                    None => {
                        write!(f, "{sep}loop=true")?;
                        sep = '&';
                    }
                    Some(1) => {}
                    Some(n) => {
                        write!(f, "{sep}loop={n}")?;
                        sep = '&';
                    }
                }
                if !paced {
                    write!(f, "{sep}pace=false")?;
                }
                Ok(())
            }
            InputUrl::Timeshift { source, delay_ms } => {
                write!(f, "timeshift://{source}/{}", delay_ms / 1000)
            }
            InputUrl::Publish => f.write_str("publish://"),
            InputUrl::M4f { origin, stream } => {
                let (scheme, authority) = match origin.strip_prefix("https://") {
                    Some(a) => ("m4fs", a),
                    None => ("m4f", origin.strip_prefix("http://").unwrap_or(origin)),
                };
                write!(f, "{scheme}://{authority}{stream}")
            }
            InputUrl::Srt(srt) => f.write_str(&srt_written(srt, false)),
        }
    }
}

/// Query keys whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "token",
    "password",
    "pass",
    "passwd",
    "secret",
    "key",
    "auth",
    "sig",
    "signature",
    "passphrase",
];

/// `url` with the password of its user info and the values of secret-named
/// query parameters replaced by `***`. Works on strings that do not parse,
/// so error messages that quote a URL can pass through it too.
pub fn mask_credentials(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> InputUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn m4f_names_an_origin_and_its_stream_and_writes_back_as_given() {
        for (written, origin, stream) in [
            (
                "m4f://origin-a.example:8080/ch1",
                "http://origin-a.example:8080/",
                "ch1",
            ),
            (
                "m4fs://origin-a.example/sport/hd",
                "https://origin-a.example/",
                "sport/hd",
            ),
        ] {
            let input = ok(written);
            assert_eq!(
                input,
                InputUrl::M4f {
                    origin: origin.into(),
                    stream: StreamName::new(stream).unwrap(),
                }
            );
            assert_eq!(input.to_string(), written);
            assert_eq!(input.written().parse::<InputUrl>().unwrap(), input);
        }
        for (bad, says) in [
            ("m4f://origin-a", "expected m4f://HOST[:PORT]/STREAM"),
            ("m4f://origin-a/ch1?x=1", "takes no options"),
            ("m4f://u:p@origin-a/ch1", "no credentials"),
            ("m4f://origin-a/../ch1", "invalid stream name"),
            ("m4f:///ch1", "missing host"),
        ] {
            let err = bad.parse::<InputUrl>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_every_supported_scheme() {
        assert_eq!(
            ok("udp://eth1@239.0.0.2:1234"),
            InputUrl::Udp {
                interface: Some("eth1".into()),
                host: "239.0.0.2".into(),
                port: 1234
            }
        );
        assert_eq!(
            ok("udp://[::1]:5000"),
            InputUrl::Udp {
                interface: None,
                host: "::1".into(),
                port: 5000
            }
        );
        assert!(matches!(
            ok("http://backup.example/ort.ts"),
            InputUrl::Http { .. }
        ));
        assert!(matches!(
            ok("https://u:p@h.example:8443/x?y=1"),
            InputUrl::Http { .. }
        ));
        assert!(matches!(ok("tshttp://vlc:9090/"), InputUrl::TsHttp { .. }));
        assert_eq!(
            ok("TSHTTP://cam.example:8080/live.ts")
                .fetch_url()
                .as_deref(),
            Some("http://cam.example:8080/live.ts")
        );
        assert_eq!(
            ok("file:///clips/a.ts?loop=true"),
            InputUrl::File {
                path: "/clips/a.ts".into(),
                passes: None,
                paced: true
            }
        );
        assert_eq!(
            ok("timeshift://ort/3600"),
            InputUrl::Timeshift {
                source: "ort".parse().unwrap(),
                delay_ms: 3_600_000
            }
        );
        for s in [
            "udp://eth1@239.0.0.2:1234",
            "udp://[::1]:5000",
            "file:///a?loop=true",
            "file:///a?loop=3&pace=false",
            "file:///a",
            "timeshift://ort/3600",
            "http://h.example/a.ts",
            "publish://",
        ] {
            assert_eq!(ok(s).to_string(), s);
        }
    }

    #[test]
    fn parses_file_options() {
        assert_eq!(
            ok("file://clip.ts?pace=false"),
            InputUrl::File {
                path: "clip.ts".into(),
                passes: Some(1),
                paced: false
            }
        );
        assert_eq!(
            ok("file://localhost/x.ts?loop=3"),
            InputUrl::File {
                path: "/x.ts".into(),
                passes: Some(3),
                paced: true
            }
        );
        assert!(matches!(
            ok("file:///x?loop"),
            InputUrl::File { passes: None, .. }
        ));
        assert!(matches!(
            ok("file:///x?loop=false"),
            InputUrl::File {
                passes: Some(1),
                ..
            }
        ));
    }

    #[test]
    fn rejects_malformed_urls() {
        for bad in [
            "239.0.0.1:1234",
            "rtmp://x/y",
            "udp://239.0.0.1",
            "udp://239.0.0.1:0",
            "udp://239.0.0.1:70000",
            "udp://@239.0.0.1:1",
            "udp://:1234",
            "udp://../x@239.0.0.1:1",
            "udp://averyveryverylongname@239.0.0.1:1",
            "udp://[ff02::1]:1234",
            "http://",
            "http://h:port/",
            "file://",
            "file:///a?lop=true",
            "file:///x.ts?loop=maybe",
            "file:///x.ts?loop=0",
            "timeshift://ort",
            "timeshift://../x/10",
            "timeshift://ort/-5",
            "publish://ort",
            "publish:///",
        ] {
            assert!(bad.parse::<InputUrl>().is_err(), "{bad}");
        }
        assert_eq!(
            "udp://239.0.0.1"
                .parse::<InputUrl>()
                .unwrap_err()
                .to_string(),
            r#"invalid input URL "udp://239.0.0.1": missing :port"#
        );
    }

    #[test]
    fn parses_hls_inputs_and_their_options() {
        use HlsBandwidth::{AtMost, Max, Min};
        let hls = |url: &str, bandwidth, pdt| InputUrl::Hls {
            url: url.to_owned(),
            bandwidth,
            pdt,
        };
        assert_eq!(
            ok("hls://origin.example/live/index.m3u8"),
            hls("http://origin.example/live/index.m3u8", Max, PdtMode::Auto)
        );
        assert_eq!(
            ok("hlss://origin.example:8443/live?bandwidth=min&pdt=keep"),
            hls("https://origin.example:8443/live", Min, PdtMode::Keep)
        );
        // An http(s) playlist is HLS, not TS; foreign keys are the origin's.
        assert_eq!(
            ok("https://cdn.example/a/Index.M3U8?token=abc&bandwidth=800000&pdt=wall"),
            hls(
                "https://cdn.example/a/Index.M3U8?token=abc",
                AtMost(800_000),
                PdtMode::Wall
            )
        );
        assert!(matches!(
            ok("http://cdn.example/a.m3u8.ts"),
            InputUrl::Http { .. }
        ));
        assert!(matches!(
            ok("tshttp://cdn.example/a.m3u8"),
            InputUrl::TsHttp { .. }
        ));
        for s in [
            "hls://origin.example/live",
            "hlss://origin.example/live?bandwidth=min",
            "http://origin.example/live.m3u8",
            "https://origin.example/live.m3u8?token=abc&bandwidth=500&pdt=keep",
        ] {
            assert_eq!(ok(s).written(), s);
            assert_eq!(ok(&ok(s).written()), ok(s));
        }
        assert_eq!(
            ok("hls://origin.example/x.m3u8?pdt=wall").written(),
            "http://origin.example/x.m3u8?pdt=wall"
        );
        assert_eq!(
            ok("hlss://u:pw@origin.example/x.m3u8").to_string(),
            "https://u:***@origin.example/x.m3u8"
        );
        for (bad, why) in [
            (
                "hls://origin.example/x.m3u8?token=1",
                "unknown option \"token\"",
            ),
            (
                "hls://origin.example/x.m3u8?bandwidth=fast",
                "bandwidth=fast",
            ),
            ("hls://origin.example/x.m3u8?bandwidth=0", "bandwidth=0"),
            ("https://origin.example/x.m3u8?pdt=never", "pdt=never"),
            ("hls://", "missing host"),
        ] {
            let e = bad.parse::<InputUrl>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_never_show() {
        let u = ok("https://bob:hunter2@origin.example/ort.ts?token=abc&x=1");
        assert_eq!(
            u.to_string(),
            "https://bob:***@origin.example/ort.ts?token=***&x=1"
        );
        assert_eq!(
            u.fetch_url().as_deref(),
            Some("https://bob:hunter2@origin.example/ort.ts?token=abc&x=1")
        );
        let err = "gopher://bob:hunter2@x/".parse::<InputUrl>().unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(
            mask_credentials("udp://eth1@239.0.0.1:1"),
            "udp://eth1@239.0.0.1:1"
        );
        assert_eq!(mask_credentials("not a url"), "not a url");
        assert_eq!(
            mask_credentials("http://u:p@h/a@b?Key=1"),
            "http://u:***@h/a@b?Key=***"
        );
    }
}
