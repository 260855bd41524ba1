//! The `dvr` setting of a stream: where its tape goes and how long it stays.
//!
//! Two spellings are accepted: the YAML map
//! (`{ depth: 7d, segment_duration: 2s, copy_interval: 1h }`) and the
//! one-line form operators copy from Flussonic configs
//! (`"/var/lib/dvr 3d 90% 10G"`). Both end up as [`DvrConfig`]; this file
//! holds the one-line tokenizer, the bounds every value is checked against
//! and the defaults.

use super::schedule::Schedule;
use super::units::{parse_percent, parse_size_bytes};
use crate::time::parse_duration_ms;

/// Default target segment duration: 2 s (ARCHITECTURE section 4).
pub fn default_segment_duration_ms() -> i64 {
    2_000
}

/// Default copy interval: one hour, the seeds' `copy=` behaviour.
pub fn default_copy_interval_ms() -> i64 {
    3_600_000
}

/// Default rate of a replication's backfill: 64 MiB/s a stream, some
/// hundred times real time for a broadcast channel, a small share of a
/// server's network.
pub const DEFAULT_REPLICATE_RATE: u64 = 64 << 20;

/// Shortest accepted target segment duration.
pub const MIN_SEGMENT_DURATION_MS: i64 = 500;
/// Longest accepted target segment duration (the segmenter's hard cut).
pub const MAX_SEGMENT_DURATION_MS: i64 = 10_000;
/// Shortest accepted copy interval.
pub const MIN_COPY_INTERVAL_MS: i64 = 60_000;
/// Longest accepted copy interval: a chunk never spans an hour.
pub const MAX_COPY_INTERVAL_MS: i64 = 3_600_000;

/// A stream's recording settings, validated and with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DvrConfig {
    /// Archive root URI for this stream (`file:///var/lib/dvr`,
    /// `s3://bucket/prefix`, `swift://container/prefix`); the stream's
    /// objects go under `{root}/{stream}/`. Falls back to the top-level
    /// `archive`.
    pub root: String,
    /// Keep this much tape, in milliseconds; `None` keeps it until a size
    /// or disk limit applies.
    pub depth_ms: Option<i64>,
    /// Target segment duration in milliseconds (500 ms to 10 s).
    pub segment_duration_ms: i64,
    /// How often the recorder writes a chunk, in milliseconds (1 min to
    /// 1 h, dividing the hour evenly).
    pub copy_interval_ms: i64,
    /// Largest total size of this stream's chunks, in bytes.
    pub max_size_bytes: Option<u64>,
    /// For `file://` roots only: delete oldest chunks while the file
    /// system holding the root is fuller than this percentage.
    pub max_disk_usage_percent: Option<u8>,
    /// Archive only segments that start inside these UTC times of day;
    /// `None` archives around the clock.
    pub schedule: Option<Schedule>,
    /// Whether the stream records now. `false` is the seeds' `dvr_offline`:
    /// configured, not recording until `dvr_enable` (the API's
    /// `POST /api/v1/streams/S/dvr/enable`) sets it. Default `true`.
    pub enabled: bool,
    /// The seeds' `replicate`: a restreamed stream (`m4f://` inputs) also
    /// copies the source's archived tape it lacks, within `depth`, at no
    /// more than this many bytes a second. `None`: no backfill.
    pub replicate_rate: Option<u64>,
}

/// The one-line form split into its parts, before defaults and bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DvrLine {
    pub root: Option<String>,
    pub depth_ms: Option<i64>,
    pub segment_duration_ms: Option<i64>,
    pub copy_interval_ms: Option<i64>,
    pub max_size_bytes: Option<u64>,
    pub max_disk_usage_percent: Option<u8>,
    pub schedule: Option<Schedule>,
    pub enabled: Option<bool>,
    pub replicate: bool,
    pub replicate_rate: Option<u64>,
}

/// Parses `PATH [DEPTH] [N%] [SIZE] [schedule=…] [copy=URI]
/// [segment_duration=D] [copy_interval=D] [offline] [replicate]
/// [replicate_rate=SIZE]` (`offline`: the seeds' `dvr_offline`, configured
/// but not recording; `replicate`: the seeds' archive replication, a
/// rate in bytes a second). A bare number as depth is minutes, as in the
/// seeds (`dvr /storage 10080`). Errors name the token.
pub(crate) fn parse_dvr_line(line: &str) -> Result<DvrLine, String> {
    let mut tokens = line.split_whitespace();
    let first = tokens.next().ok_or("empty dvr line")?;
    let mut out = DvrLine {
        root: Some(root_uri(first)?),
        ..DvrLine::default()
    };
    for token in tokens {
        let bad = |reason: &str| format!("dvr token {token:?}: {reason}");
        if token == "offline" {
            out.enabled = Some(false);
        } else if token == "replicate" {
            out.replicate = true;
        } else if let Some((key, value)) = token.split_once('=') {
            match key {
                "schedule" => out.schedule = Some(Schedule::parse(value).map_err(|e| bad(&e))?),
                "copy" => {
                    return Err(bad(
                        "a local spool copied to another root is not supported: \
                         give that root as the path (`URI 3d …`); the recorder \
                         writes it directly",
                    ))
                }
                "segment_duration" => out.segment_duration_ms = Some(duration(value).map_err(bad)?),
                "copy_interval" => out.copy_interval_ms = Some(duration(value).map_err(bad)?),
                "replicate_rate" => {
                    out.replicate_rate = Some(rate(value).map_err(|e| bad(&e))?);
                }
                _ => return Err(format!("unknown dvr token {token:?}")),
            }
        } else if token.ends_with('%') {
            out.max_disk_usage_percent = Some(parse_percent(token).map_err(bad)?);
        } else if token.ends_with(['K', 'M', 'G', 'T']) {
            out.max_size_bytes = Some(parse_size_bytes(token).map_err(bad)?);
        } else if token.bytes().all(|b| b.is_ascii_digit()) {
            let minutes: i64 = token.parse().map_err(|_| bad("number too large"))?;
            out.depth_ms = Some(
                minutes
                    .checked_mul(60_000)
                    .ok_or_else(|| bad("too large"))?,
            );
        } else if token.starts_with(|c: char| c.is_ascii_digit()) {
            out.depth_ms = Some(duration(token).map_err(bad)?);
        } else {
            return Err(format!("unknown dvr token {token:?}"));
        }
    }
    Ok(out)
}

/// A replication rate: a size a second (`200M`), at least 1 MiB.
pub fn rate(s: &str) -> Result<u64, String> {
    let bytes = parse_size_bytes(s).map_err(|e| format!("invalid size {s:?}: {e}"))?;
    if bytes < 1 << 20 {
        return Err(format!(
            "{s:?} a second is below 1M: a backfill that slow never catches up"
        ));
    }
    Ok(bytes)
}

fn duration(s: &str) -> Result<i64, &'static str> {
    parse_duration_ms(s).map_err(|e| e.reason())
}

/// Turns an archive root as written (`/var/lib/dvr`, `file:///…`,
/// `s3://bucket/prefix`, `swift://container/prefix`, `memory://name`) into a
/// root URI, or says why not.
pub fn root_uri(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        return Ok(format!("file://{}", s.trim_end_matches('/')));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!(
            "archive root {s:?} is neither an absolute path nor a file://, s3://, swift:// or memory:// URI"
        ));
    };
    match scheme {
        "file" if rest.starts_with('/') => {}
        "file" => {
            return Err(format!(
                "archive root {s:?}: file:// needs an absolute path"
            ))
        }
        "s3" | "swift" if !rest.is_empty() && !rest.starts_with('/') => {}
        "s3" | "swift" => return Err(format!("archive root {s:?}: missing bucket or container")),
        "memory" => {}
        other => {
            return Err(format!(
                "archive root {s:?}: unsupported scheme {other:?} (use file, s3, swift or memory)"
            ))
        }
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// Checks a target segment duration against its bounds.
pub fn check_segment_duration(ms: i64) -> Result<(), String> {
    if (MIN_SEGMENT_DURATION_MS..=MAX_SEGMENT_DURATION_MS).contains(&ms) {
        Ok(())
    } else {
        Err(format!("{ms} ms is outside 500ms..10s"))
    }
}

/// Checks a copy interval: 1 min to 1 h, and a divisor of the hour so every
/// chunk ends on an hour boundary.
pub fn check_copy_interval(ms: i64) -> Result<(), String> {
    if !(MIN_COPY_INTERVAL_MS..=MAX_COPY_INTERVAL_MS).contains(&ms) {
        return Err(format!("{ms} ms is outside 1m..1h"));
    }
    if MAX_COPY_INTERVAL_MS % ms != 0 {
        return Err(format!(
            "{ms} ms does not divide the hour evenly (use 1m, 2m, 5m, 10m, 15m, 20m, 30m, 1h…)"
        ));
    }
    Ok(())
}

/// Checks a retention depth: positive.
pub fn check_depth(ms: i64) -> Result<(), String> {
    if ms > 0 {
        Ok(())
    } else {
        Err("depth must be positive".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_form_like_the_seeds() {
        let l = parse_dvr_line("/var/lib/dvr 3d 10G").unwrap();
        assert_eq!(l.root.as_deref(), Some("file:///var/lib/dvr"));
        assert_eq!(l.depth_ms, Some(3 * 86_400_000));
        assert_eq!(l.max_size_bytes, Some(10 << 30));
        let l = parse_dvr_line("/storage 6h 90% 10G schedule=8:00-16:00").unwrap();
        assert_eq!(l.depth_ms, Some(6 * 3_600_000));
        assert_eq!(l.max_disk_usage_percent, Some(90));
        assert_eq!(l.schedule.map(|s| s.intervals), Some(vec![(480, 960)]));
        let l = parse_dvr_line("/storage 7d replicate replicate_rate=200M").unwrap();
        assert!(l.replicate);
        assert_eq!(l.replicate_rate, Some(200 << 20));
        let l = parse_dvr_line("/storage 10080").unwrap();
        assert_eq!(l.depth_ms, Some(7 * 86_400_000), "a bare number is minutes");
        let e = parse_dvr_line("/storage copy=s3://bucket/tv 10G").unwrap_err();
        assert!(
            e.starts_with("dvr token \"copy=s3://bucket/tv\": a local spool"),
            "{e}"
        );
        let l = parse_dvr_line("s3://b 95% segment_duration=4s copy_interval=10m").unwrap();
        assert_eq!(
            (l.segment_duration_ms, l.copy_interval_ms),
            (Some(4000), Some(600_000))
        );
    }

    #[test]
    fn one_line_errors_name_the_token() {
        assert_eq!(
            parse_dvr_line("/storage 3d replicat").unwrap_err(),
            r#"unknown dvr token "replicat""#
        );
        assert_eq!(
            parse_dvr_line("/storage 3x").unwrap_err(),
            r#"dvr token "3x": unknown unit"#
        );
        assert_eq!(
            parse_dvr_line("/storage 120%").unwrap_err(),
            r#"dvr token "120%": not a whole number from 1 to 100"#
        );
        assert!(parse_dvr_line("storage 3d").is_err());
        assert!(parse_dvr_line("").is_err());
    }

    #[test]
    fn bounds() {
        assert!(check_copy_interval(3_600_000).is_ok());
        assert!(check_copy_interval(600_000).is_ok());
        assert!(check_copy_interval(59_999).is_err());
        assert!(check_copy_interval(7 * 60_000)
            .unwrap_err()
            .contains("divide the hour"));
        assert!(check_segment_duration(500).is_ok());
        assert!(check_segment_duration(10_001).is_err());
        assert!(root_uri("ftp://x").is_err());
        assert!(root_uri("file://relative").is_err());
        assert_eq!(root_uri("/a/b/").unwrap(), "file:///a/b");
    }
}
