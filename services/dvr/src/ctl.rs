//! `dvr ctl lock|unlock|locks`: protect ranges of a stream's tape from
//! retention in the embedded mode, by editing `{stream}/locks.json` in the
//! archive (read, change, write).
//!
//! Times are given as the packager's URLs take them, so an operator can
//! copy them from a catch-up URL: `--from` is UTC epoch seconds, and
//! `--duration` is seconds (`3600`) or a duration (`1h`, `90m`). A running
//! `dvr run` honours a new lock at its next retention pass (retention
//! always reads the file) and lists it in `recording_status.json` within a
//! few seconds.
//!
//! With `--url http://HOST:PORT` (and `--token`, or `DVR_ADMIN_TOKEN`)
//! every command goes to a running DVR's API instead (`crate::ctl_http`),
//! and `streams`, `status [S]` and `sessions` become available; without
//! it the lock commands work on the archive directly, as before, so they
//! still work while the DVR is stopped. A direct edit takes no turn: the
//! API and the recorder's retention pass hold a key in the running
//! process's locks bucket, which this process cannot see.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use dvr_archive::{Lock, LocksFile};
use dvr_common::time::parse_duration_ms;
use dvr_common::UtcMs;

use crate::archive::{block_on, Target};

/// Arguments of `dvr ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// A running DVR's HTTP address (`http://127.0.0.1:8080`): talk to its
    /// API instead of the archive.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The API's bearer token (api.tokens).
    #[arg(long, global = true, env = "DVR_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Protect a range from retention.
    Lock(LockArgs),
    /// Remove a lock (named by the same from and duration).
    Unlock(LockArgs),
    /// List a stream's locks as the seeds' JSON.
    Locks(Target),
    /// List the streams and their settings (needs --url).
    Streams,
    /// Status of every stream or of one (needs --url).
    Status {
        /// The stream; all without it.
        stream: Option<String>,
    },
    /// Play sessions (needs --url).
    Sessions,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub target: Target,
    /// Start of the range, UTC epoch seconds.
    #[arg(long, value_parser = parse_from, allow_hyphen_values = true)]
    pub from: i64,
    /// Length: seconds (`3600`) or a duration (`1h`, `90m`).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: i64,
}

impl LockArgs {
    fn lock(&self) -> anyhow::Result<Lock> {
        let from = UtcMs(
            self.from
                .checked_mul(1000)
                .context("--from is out of range")?,
        );
        Lock::new(from, self.duration).context("--duration must be positive")
    }
}

/// A UTC epoch second, as the packager's URLs take it.
fn parse_from(s: &str) -> Result<i64, String> {
    // As in URLs: years past 9999 are milliseconds given as seconds.
    dvr_packager::url::epoch(s).map_err(|e| e.to_string())
}

/// Seconds or a duration with a unit, a whole number of seconds, positive.
fn parse_duration(s: &str) -> Result<i64, String> {
    let ms = parse_duration_ms(s).map_err(|e| format!("duration {s:?}: {}", e.reason()))?;
    if ms <= 0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    if ms % 1000 != 0 {
        return Err(format!("duration {s:?} is not a whole number of seconds"));
    }
    Ok(ms)
}

/// Runs `dvr ctl`.
pub fn run(args: &CtlArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.url {
        return block_on(crate::ctl_http::run(url, args));
    }
    block_on(async {
        match &args.command {
            CtlCommand::Lock(a) => {
                let lock = a.lock()?;
                let store = a.target.open().await?;
                let locks = store.lock(&a.target.stream, lock).await?;
                println!("locked {} {}", a.target.stream, describe(&lock));
                print_locks(a.target.stream.as_str(), &locks);
            }
            CtlCommand::Unlock(a) => {
                let lock = a.lock()?;
                let store = a.target.open().await?;
                let current = store.locks(&a.target.stream).await?;
                if !current.locks.contains(&lock) {
                    bail!(
                        "stream {} has no lock {} (it has {}: see `dvr ctl locks`)",
                        a.target.stream,
                        describe(&lock),
                        current.locks.len()
                    );
                }
                let (locks, _) = store.unlock(&a.target.stream, lock).await?;
                println!("unlocked {} {}", a.target.stream, describe(&lock));
                print_locks(a.target.stream.as_str(), &locks);
            }
            CtlCommand::Locks(target) => {
                let store = target.open().await?;
                let locks = store.locks(&target.stream).await?;
                print_locks(target.stream.as_str(), &locks);
            }
            CtlCommand::Streams | CtlCommand::Status { .. } | CtlCommand::Sessions => {
                bail!("this command asks a running DVR: give --url http://HOST:PORT (and --token)")
            }
        }
        Ok(())
    })
}

fn describe(lock: &Lock) -> String {
    format!(
        "from {} for {} s ({} to {})",
        lock.from.as_secs(),
        lock.duration_ms / 1000,
        lock.from,
        lock.end()
    )
}

/// The seeds' shape, one line: `{"stream":"ort","locks":[{"from":…,"duration":…}]}`.
fn print_locks(stream: &str, locks: &LocksFile) {
    println!(
        "{}",
        serde_json::json!({ "stream": stream, "locks": locks.locks })
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_are_checked_like_urls() {
        assert_eq!(parse_from("1483971680"), Ok(1_483_971_680));
        assert!(parse_from("-5")
            .unwrap_err()
            .contains("not a UTC epoch second"));
        assert!(parse_from("1483971680000")
            .unwrap_err()
            .contains("not milliseconds"));
        assert!(parse_from("yesterday").is_err());
        assert_eq!(parse_duration("3600"), Ok(3_600_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert!(parse_duration("0").unwrap_err().contains("positive"));
        assert!(parse_duration("1500ms")
            .unwrap_err()
            .contains("whole number"));
        assert!(parse_duration("1y").unwrap_err().contains("unknown unit"));
    }
}
