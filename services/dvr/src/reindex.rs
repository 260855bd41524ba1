//! `dvr reindex --stream S`: rebuild a stream's catalog from a listing of
//! its archive and say what was found.
//!
//! It is the same [`ArchiveStore::load`] that `dvr run` performs at start,
//! run on its own: one listing of `{stream}/` plus one GET per chunk index,
//! and nothing written. So it is safe against a live archive, and useful
//! offline to see what a restart will serve, to find half-written chunks
//! (orphans: a crash between the two uploads, which the recorder's replay
//! rewrites) and damaged ones (an index that does not decode or disagrees
//! with its object), and, with `--check`, to alert on them from cron.

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use dvr_archive::store::ArchiveStore;
use dvr_common::UtcMs;
use serde::Serialize;

use crate::archive::{block_on, Target};

/// Arguments of `dvr reindex`.
#[derive(Debug, Args)]
pub struct ReindexArgs {
    #[command(flatten)]
    target: Target,
    /// Print one JSON document instead of a report.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 if orphans or damaged chunks were found.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Serialize)]
struct Range {
    from: UtcMs,
    to: UtcMs,
    from_secs: i64,
    duration_secs: i64,
}

#[derive(Debug, Serialize)]
struct Report {
    stream: String,
    archive: String,
    chunks: usize,
    segments: u64,
    bytes: u64,
    ranges: Vec<Range>,
    orphans: Vec<String>,
    bad: Vec<String>,
    seconds: f64,
}

/// Runs `dvr reindex`.
pub fn run(args: &ReindexArgs) -> anyhow::Result<()> {
    let report = block_on(reindex(args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if args.check && !(report.orphans.is_empty() && report.bad.is_empty()) {
        bail!(
            "stream {}: {} orphaned and {} damaged chunk objects",
            report.stream,
            report.orphans.len(),
            report.bad.len()
        );
    }
    Ok(())
}

async fn reindex(args: &ReindexArgs) -> anyhow::Result<Report> {
    let stream = &args.target.stream;
    let store: Arc<ArchiveStore> = args.target.open().await?;
    // Wall time of the listing and reads, for the operator; not a clock read
    // that any logic depends on.
    let started = Instant::now();
    let loaded = store.load(stream).await?;
    let seconds = started.elapsed().as_secs_f64();
    let chunks = store.chunks(stream);
    let ranges = store
        .ranges(stream, UtcMs(i64::MIN), UtcMs(i64::MAX))
        .into_iter()
        .map(|r| Range {
            from: r.from,
            to: r.to,
            from_secs: r.from.as_secs(),
            duration_secs: (r.to.0 - r.from.0 + 999) / 1000,
        })
        .collect();
    Ok(Report {
        stream: stream.to_string(),
        archive: store.storage().uri().to_owned(),
        chunks: loaded.chunks,
        segments: chunks.iter().map(|c| u64::from(c.segments)).sum(),
        bytes: chunks.iter().map(|c| c.bytes).sum(),
        ranges,
        orphans: loaded.orphans,
        bad: loaded.bad,
        seconds,
    })
}

fn print_report(r: &Report) {
    println!("stream    {}", r.stream);
    println!("archive   {}", r.archive);
    println!(
        "chunks    {} ({} segments, {}), listed and read in {:.2} s",
        r.chunks,
        r.segments,
        human_bytes(r.bytes),
        r.seconds
    );
    println!("ranges    {}", r.ranges.len());
    for range in &r.ranges {
        println!(
            "          {} to {} ({})",
            range.from,
            range.to,
            human_duration(range.duration_secs)
        );
    }
    println!(
        "orphans   {} (half-written; the recorder's replay rewrites them)",
        r.orphans.len()
    );
    for key in &r.orphans {
        println!("          {key}");
    }
    println!(
        "bad       {} (left out of the catalog; served as gaps)",
        r.bad.len()
    );
    for key in &r.bad {
        println!("          {key}");
    }
    println!("nothing was written to the archive");
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = b;
    while scaled >= 10 * 1024 && unit + 1 < UNITS.len() {
        scaled /= 1024;
        unit += 1;
    }
    format!("{scaled} {}", UNITS[unit])
}

fn human_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}
