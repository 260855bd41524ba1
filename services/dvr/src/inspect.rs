//! `dvr inspect`: the segmenter over a file, with a report.
//!
//! It reads the file in large blocks and feeds the same [`Segmenter`] the
//! recorder uses, so what it prints is what would be recorded. It is also how
//! the segmenter's speed is measured (`make bench`).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use dvr_common::time::parse_duration_ms;
use dvr_common::{SystemClock, Ticks};
use dvr_media::{CodecSummary, DemuxStats, Segment, Segmenter, SegmenterConfig};
use serde::Serialize;

/// Arguments of `dvr inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The MPEG-TS file to cut.
    file: PathBuf,
    /// Target segment duration: cut at the first keyframe after it.
    #[arg(long, default_value = "2s", value_parser = parse_target)]
    segment_duration: Ticks,
    /// Program number to record from a multi-program stream (default: the first).
    #[arg(long)]
    program: Option<u16>,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write each segment to DIR/{seq:06}.ts.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn parse_target(s: &str) -> Result<Ticks, String> {
    let ms = parse_duration_ms(s).map_err(|e| e.to_string())?;
    if !(100..=10_000).contains(&ms) {
        return Err(format!("segment duration {s} is outside 100ms..10s"));
    }
    Ok(Ticks::from_ms(ms))
}

#[derive(Debug, Serialize)]
struct SegmentReport {
    seq: u64,
    utc_start: String,
    utc_start_ms: i64,
    pts_start: i64,
    duration: i64,
    duration_ms: i64,
    bytes: usize,
    independent: bool,
    discontinuity: bool,
}

impl SegmentReport {
    fn of(segment: &Segment) -> Self {
        Self {
            seq: segment.seq,
            utc_start: segment.utc_start.to_string(),
            utc_start_ms: segment.utc_start.0,
            pts_start: segment.pts_start.0,
            duration: segment.duration.0,
            duration_ms: segment.duration.as_ms(),
            bytes: segment.payload.len(),
            independent: segment.flags.independent,
            discontinuity: segment.flags.discontinuity,
        }
    }
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    file: &'a Path,
    segments: &'a [SegmentReport],
    codecs: &'a CodecSummary,
    stats: &'a DemuxStats,
}

/// Runs `dvr inspect`.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let mut file =
        File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let config = SegmenterConfig {
        program: args.program,
        ..SegmenterConfig::with_target(args.segment_duration)
    };
    let mut segmenter = Segmenter::new(config, Arc::new(SystemClock));
    let mut reports = Vec::new();
    // Small enough to stay in L2 while the segmenter walks it.
    let mut block = vec![0u8; 128 << 10];
    let mut last_codecs = None;
    loop {
        let n = match file.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", args.file.display()))
            }
        };
        for segment in segmenter.push(&block[..n]) {
            take(&segment, args, &mut reports, &mut last_codecs)?;
        }
    }
    for segment in segmenter.finish() {
        take(&segment, args, &mut reports, &mut last_codecs)?;
    }
    let stats = segmenter.stats();
    if reports.is_empty() {
        bail!(
            "{}: no segment could be cut ({} bytes read, {} packets in sync, {}; is it MPEG-TS?)",
            args.file.display(),
            stats.bytes_in,
            stats.packets,
            if segmenter.codecs().tracks.is_empty() {
                "no PAT/PMT found"
            } else {
                "no keyframe found"
            },
        );
    }
    let codecs = last_codecs.unwrap_or_else(|| Arc::clone(segmenter.codecs()));
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        let report = Report {
            file: &args.file,
            segments: &reports,
            codecs: &codecs,
            stats: &stats,
        };
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &reports, &codecs, &stats)?;
    }
    out.flush()?;
    Ok(())
}

fn take(
    segment: &Segment,
    args: &InspectArgs,
    reports: &mut Vec<SegmentReport>,
    last_codecs: &mut Option<Arc<CodecSummary>>,
) -> anyhow::Result<()> {
    if let Some(dir) = &args.out {
        let path = dir.join(format!("{:06}.ts", segment.seq));
        std::fs::write(&path, &segment.payload)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    reports.push(SegmentReport::of(segment));
    *last_codecs = Some(Arc::clone(&segment.codecs));
    Ok(())
}

fn print_table(
    out: &mut impl Write,
    reports: &[SegmentReport],
    codecs: &CodecSummary,
    stats: &DemuxStats,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>6}  {:<24}  {:>9}  {:>10}  {:<11}  discontinuity",
        "seq", "utc_start", "duration", "bytes", "independent"
    )?;
    for r in reports {
        writeln!(
            out,
            "{:>6}  {:<24}  {:>9}  {:>10}  {:<11}  {}",
            r.seq,
            r.utc_start,
            Ticks(r.duration).display_secs().to_string(),
            r.bytes,
            if r.independent { "yes" } else { "NO" },
            if r.discontinuity { "yes" } else { "" },
        )?;
    }
    let total: i64 = reports.iter().map(|r| r.duration).sum();
    let bytes: usize = reports.iter().map(|r| r.bytes).sum();
    writeln!(
        out,
        "{} segments, {} s, {} bytes",
        reports.len(),
        Ticks(total).display_secs(),
        bytes
    )?;
    writeln!(out, "program {}", codecs.program_number)?;
    for t in &codecs.tracks {
        let mut line = format!(
            "  pid {:>5}  {:<12}",
            t.pid,
            format!("{:?}", t.codec).to_lowercase()
        );
        if let Some(s) = t.codec_string() {
            line.push_str(&format!("  {s}"));
        }
        if let Some(v) = &t.video {
            line.push_str(&format!("  {}x{}", v.width, v.height));
            if let Some(f) = v.frame_rate {
                line.push_str(&format!(" @ {}/{} fps", f.num, f.den));
            }
        }
        if let Some(a) = &t.audio {
            line.push_str(&format!("  {} Hz, {} ch", a.sample_rate, a.channels));
        }
        if let Some(l) = &t.language {
            line.push_str(&format!("  [{l}]"));
        }
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "input: {} bytes, {} packets, {} sync losses, {} cc errors, {} psi errors, {} pes errors, {} forced cuts",
        stats.bytes_in, stats.packets, stats.sync_losses, stats.cc_errors, stats.psi_errors, stats.pes_errors, stats.forced_cuts
    )
}
