//! The `cache` setting of a stream and the packager's memory budget.
//!
//! `cache` is the seeds' per-stream SSD cache of the archive
//! (`cache /mount/ssd1 3d 50G misses=2`: path, how long to keep, how much,
//! and after how many misses a segment is stored). It sits beside `dvr`
//! because that is where operators copy it from, and it matters only for
//! archives that are slow to reach (S3, Swift). Both spellings are
//! accepted: that line, or `{ path, depth, max_size, misses }`.

use super::units::parse_size_bytes;
use crate::time::parse_duration_ms;

/// Size of a disk cache whose `max_size` is not given: 10 GiB.
pub fn default_disk_cache_bytes() -> u64 {
    10 << 30
}

/// Memory the packager spends on cached indexes and segments unless
/// `packager.memory_cache` says otherwise: 256 MiB.
pub fn default_memory_cache_bytes() -> u64 {
    256 << 20
}

/// A stream's local disk cache of archived segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Absolute path of the cache directory (the stream's files go in
    /// `{path}/{stream}/`).
    pub path: String,
    /// Drop cached segments older than this, in milliseconds.
    pub depth_ms: Option<i64>,
    /// Most bytes the stream's cached files may take (default 10G).
    pub max_size_bytes: u64,
    /// Store a segment only on its N-th miss (the seeds' `misses=N`;
    /// default 1: the first).
    pub misses: u32,
}

/// The packager's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackagerSettings {
    /// Bytes of memory for cached chunk indexes and segments, shared by
    /// every stream (0 disables the memory cache).
    pub memory_cache_bytes: u64,
    /// Endless paced MPEG-TS answers (`mpegts`, `timeshift_abs/T`,
    /// `timeshift_rel/N`, `timeshift_abs-T.ts`) open at once on this node;
    /// past it `503` with `Retry-After`. Default 5,000 (about 25 KiB of
    /// memory each).
    pub max_paced_streams: usize,
    /// The same per client address. Default 16.
    pub max_paced_streams_per_client: usize,
    /// The program that decodes JPEG previews: a path, or a name looked
    /// for next to the `dvr` executable and then on `PATH`. Default
    /// `dvr-preview-decoder`; where none runs, JPEG previews answer `415`.
    pub preview_decoder: String,
    /// Decoder processes making JPEG previews at once. Default 2.
    pub preview_workers: usize,
    /// JPEG previews waiting for a worker; past it `503` with
    /// `Retry-After`. Default 32.
    pub preview_queue: usize,
    /// How long a saved export's job record (done or failed) stays in the
    /// exports bucket, in milliseconds; then the packagers delete it.
    /// Default 7 days.
    pub export_retention_ms: i64,
}

/// [`PackagerSettings::export_retention_ms`] unless
/// `packager.export_retention` says otherwise: 7 days.
pub const DEFAULT_EXPORT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

impl Default for PackagerSettings {
    fn default() -> Self {
        PackagerSettings {
            memory_cache_bytes: default_memory_cache_bytes(),
            max_paced_streams: 5000,
            max_paced_streams_per_client: 16,
            preview_decoder: "dvr-preview-decoder".to_owned(),
            preview_workers: 2,
            preview_queue: 32,
            export_retention_ms: DEFAULT_EXPORT_RETENTION_MS,
        }
    }
}

/// The parts of a cache setting, before defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheParts {
    pub path: Option<String>,
    pub depth_ms: Option<i64>,
    pub max_size_bytes: Option<u64>,
    pub misses: Option<u32>,
}

impl CacheParts {
    /// Applies defaults and checks the values.
    pub(crate) fn finish(self) -> Result<CacheConfig, String> {
        let path = self.path.ok_or("missing the cache path")?;
        check_cache_path(&path)?;
        if self.depth_ms.is_some_and(|d| d <= 0) {
            return Err("cache depth must be positive".into());
        }
        let max_size_bytes = self.max_size_bytes.unwrap_or_else(default_disk_cache_bytes);
        if max_size_bytes == 0 {
            return Err("cache max_size must be positive".into());
        }
        Ok(CacheConfig {
            path,
            depth_ms: self.depth_ms,
            max_size_bytes,
            misses: self.misses.unwrap_or(1).max(1),
        })
    }
}

/// A cache path must be an absolute local directory.
pub(crate) fn check_cache_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "cache path {path:?} must be an absolute local directory"
        ))
    }
}

/// Parses `PATH [DEPTH] [SIZE] [misses=N]`, in any order after the path,
/// as the seeds write it (`/ssd misses=5 2d 40G`).
pub(crate) fn parse_cache_line(line: &str) -> Result<CacheParts, String> {
    let mut tokens = line.split_whitespace();
    let path = tokens.next().ok_or("empty cache line")?;
    let trimmed = path.trim_end_matches('/');
    let mut out = CacheParts {
        path: Some(if trimmed.is_empty() { "/" } else { trimmed }.to_owned()),
        ..CacheParts::default()
    };
    for token in tokens {
        let bad = |reason: &str| format!("cache token {token:?}: {reason}");
        if let Some(n) = token.strip_prefix("misses=") {
            out.misses = Some(n.parse().map_err(|_| bad("not a whole number"))?);
        } else if token.ends_with(['K', 'M', 'G', 'T']) {
            out.max_size_bytes = Some(parse_size_bytes(token).map_err(bad)?);
        } else if token.starts_with(|c: char| c.is_ascii_digit()) {
            out.depth_ms = Some(parse_duration_ms(token).map_err(|e| bad(e.reason()))?);
        } else {
            return Err(format!("unknown cache token {token:?}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_cache_lines() {
        let c = parse_cache_line("/mount/ssd1 3d 50G")
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(
            c,
            CacheConfig {
                path: "/mount/ssd1".into(),
                depth_ms: Some(3 * 86_400_000),
                max_size_bytes: 50 << 30,
                misses: 1,
            }
        );
        let c = parse_cache_line("/ssd/ misses=5 2d 40G")
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!((c.path.as_str(), c.misses), ("/ssd", 5));
        let c = parse_cache_line("/ssd").unwrap().finish().unwrap();
        assert_eq!((c.depth_ms, c.max_size_bytes), (None, 10 << 30));
    }

    #[test]
    fn cache_errors_name_the_token() {
        assert_eq!(
            parse_cache_line("/ssd 3d fast").unwrap_err(),
            r#"unknown cache token "fast""#
        );
        assert_eq!(
            parse_cache_line("/ssd misses=x").unwrap_err(),
            r#"cache token "misses=x": not a whole number"#
        );
        assert!(parse_cache_line("ssd 3d").unwrap().finish().is_err());
        assert!(parse_cache_line("/ssd 0G").unwrap().finish().is_err());
    }
}
