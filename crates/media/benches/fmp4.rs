//! The fMP4 writer's speed: MB of stored TS turned into fMP4 media segments
//! per CPU second, beside ffmpeg remuxing the same bytes to fragmented MP4
//! (`-c copy -f mp4 -movflags frag_keyframe+empty_moov`), in the same run.
//!
//! Input: every committed clip, looped with [`dvr_media::retime`] (as
//! ingest loops a file) into one continuous stream of about 16 MB, cut by
//! the real segmenter, held in memory: the packager's case of a cached TS
//! segment. ffmpeg gets the same segments concatenated, as a file; looping
//! rather than feeding it each 0.5 MB clip keeps its ~0.1 s start-up from
//! deciding the figure.
//!
//! Rows:
//! - *all tracks*: `Fragments::from_ts` over every track, then every
//!   track's media segment (init segments are built too);
//! - *one track*: only the first track asked for, as a packager answering
//!   one player request does;
//! - *ffmpeg*: the remux of the same bytes, all tracks, CPU time of the
//!   child (user + system, from `/proc/self/stat`).
//!
//! The target (issue 18): at least 1 GB/s (1000 MB/s) of TS input per core
//! for the writer. Run with `cargo bench -p dvr-media --bench fmp4`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use dvr_common::{SimulatedClock, UtcMs};
use dvr_media::codec::Codec;
use dvr_media::fmp4::{Fragments, SegmentTiming};
use dvr_media::retime::looped;
use dvr_media::{Segment, Segmenter, SegmenterConfig};
use dvr_testkit::clips;

const CLIPS: [&str; 9] = [
    "h264_aac_720p.ts",
    "h265_aac.ts",
    "h264_ac3_mp2.ts",
    "two_audio_langs.ts",
    "two_renditions.ts",
    "aac_only.ts",
    "interleaved.ts",
    "pts_wrap.ts",
    "unaligned_renditions.ts",
];
/// Bytes each clip is looped to.
const LOOPED_BYTES: usize = 16 << 20;
/// CPU seconds each of our rows runs for at least.
const MIN_CPU_SECONDS: f64 = 2.0;
/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// (own user + system, children's user + system) CPU seconds so far.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<f64> = after_name
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // Fields 14 to 17 (utime, stime, cutime, cstime), counted from 1; the
    // slice starts at field 3.
    (
        (fields[11] + fields[12]) / CLOCK_TICKS,
        (fields[13] + fields[14]) / CLOCK_TICKS,
    )
}

struct Clip {
    name: &'static str,
    segments: Vec<Segment>,
    timings: Vec<SegmentTiming>,
    /// The first writable track, for the one-track row.
    first_track: usize,
    has_aac: bool,
    /// ffmpeg's `-tag:v`/`-tag:a` for its DASH muxer, which will not take
    /// the TS stream types as MP4 tags; `None` where one tag per kind
    /// cannot name every track (mixed codecs, MPEG audio): that clip is
    /// left out of the DASH row.
    dash_tags: Option<Vec<String>>,
}

fn prepare(name: &'static str, loop_to: usize) -> Clip {
    let clip = clips::read(name);
    let passes = loop_to.div_ceil(clip.len()).max(1);
    let clock = SimulatedClock::new(UtcMs(1_795_269_600_000));
    let mut segmenter = Segmenter::new(SegmenterConfig::default(), Arc::new(clock));
    let mut segments = segmenter.push(&looped(&clip, passes));
    segments.extend(segmenter.finish());
    let mut run_start = segments[0].meta();
    let timings = segments
        .iter()
        .map(|s| {
            if s.flags.discontinuity {
                run_start = s.meta();
            }
            SegmentTiming::new(&run_start, &s.meta())
        })
        .collect::<Vec<_>>();
    let probe = Fragments::from_ts(&segments[0].payload, &timings[0], None).expect("fMP4");
    Clip {
        name,
        first_track: probe.tracks()[0].number,
        has_aac: probe.tracks().iter().any(|t| t.codec == Codec::Aac),
        dash_tags: dash_tags(&segments[0].payload),
        segments,
        timings,
    }
}

/// One MP4 tag per kind of track for ffmpeg's DASH muxer, if the clip's
/// program (every PID, not only those fMP4 writes) allows one.
fn dash_tags(ts: &[u8]) -> Option<Vec<String>> {
    let program = dvr_media::tracks::program_of(ts)?;
    let (mut video, mut audio) = (None, None);
    for stream in &program.streams {
        let (slot, tag) = match stream.codec {
            Codec::H264 => (&mut video, "avc1"),
            Codec::H265 => (&mut video, "hvc1"),
            Codec::Aac => (&mut audio, "mp4a"),
            Codec::Ac3 => (&mut audio, "ac-3"),
            Codec::Eac3 => (&mut audio, "ec-3"),
            _ => return None,
        };
        match slot {
            Some(t) if *t != tag => return None,
            _ => *slot = Some(tag),
        }
    }
    let mut args = Vec::new();
    if let Some(v) = video {
        args.extend(["-tag:v".to_owned(), v.to_owned()]);
    }
    if let Some(a) = audio {
        args.extend(["-tag:a".to_owned(), a.to_owned()]);
    }
    Some(args)
}

/// Runs `pass` over every clip until enough CPU time has gone by; returns
/// MB of TS per CPU second and the CPU seconds spent.
fn measure(clips: &[&Clip], min_cpu: f64, mut pass: impl FnMut(&Clip) -> usize) -> (f64, f64) {
    let (start, _) = cpu_seconds();
    let mut bytes = 0usize;
    let mut out = 0usize;
    loop {
        for clip in clips {
            bytes += clip.segments.iter().map(|s| s.payload.len()).sum::<usize>();
            out += pass(clip);
        }
        let spent = cpu_seconds().0 - start;
        if spent >= min_cpu {
            assert!(out > 0);
            return (bytes as f64 / 1e6 / spent.max(0.01), spent);
        }
    }
}

/// What ffmpeg remuxes to, without re-encoding.
#[derive(Clone, Copy)]
enum Peer<'a> {
    /// One fragmented MP4 (`-f mp4`, fragments at keyframes).
    FragmentedMp4,
    /// DASH: an MPD and 2 s fMP4 segments per track (`-f dash`), the
    /// packager's job done ahead of time, with these codec tags.
    Dash(&'a [String]),
}

/// ffmpeg's CPU seconds to remux `path` as `peer`, writing into `out`.
fn ffmpeg(path: &Path, has_aac: bool, peer: Peer<'_>, out: &Path) -> f64 {
    let (_, before) = cpu_seconds();
    let mut command = Command::new("ffmpeg");
    command.args(["-nostdin", "-v", "error", "-i"]).arg(path);
    command.args(["-map", "0", "-c", "copy"]);
    if has_aac {
        command.args(["-bsf:a", "aac_adtstoasc"]);
    }
    match peer {
        Peer::FragmentedMp4 => {
            command.args([
                "-f",
                "mp4",
                "-movflags",
                "frag_keyframe+empty_moov+delay_moov",
                "-y",
                "/dev/null",
            ]);
        }
        Peer::Dash(tags) => {
            command
                .args(tags)
                .args(["-f", "dash", "-seg_duration", "2", "-y"])
                .arg(out.join("out.mpd"));
        }
    }
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ffmpeg (make test-deps)");
    assert!(status.success(), "ffmpeg failed on {path:?}");
    cpu_seconds().1 - before
}

/// The writer's whole job on each segment of `clip`: every track's media
/// segment; the bytes written.
fn all_tracks(clip: &Clip) -> usize {
    let mut out = 0;
    for (segment, timing) in clip.segments.iter().zip(&clip.timings) {
        let fragments = Fragments::from_ts(&segment.payload, timing, None).expect("fMP4");
        for track in fragments.tracks() {
            out += track.media().len();
        }
    }
    out
}

fn main() {
    // `cargo test --all-targets` builds and runs benches as tests: then one
    // pass over each clip, unlooped and without ffmpeg, so the code keeps
    // working; only `cargo bench` (which passes --bench) measures.
    let measuring = std::env::args().any(|a| a == "--bench");
    let (loop_to, min_cpu) = if measuring {
        (LOOPED_BYTES, MIN_CPU_SECONDS)
    } else {
        (0, 0.0)
    };
    let started = Instant::now();
    let clips: Vec<Clip> = CLIPS.iter().map(|name| prepare(name, loop_to)).collect();
    let total: usize = clips
        .iter()
        .flat_map(|c| &c.segments)
        .map(|s| s.payload.len())
        .sum();
    let count: usize = clips.iter().map(|c| c.segments.len()).sum();
    println!(
        "fMP4 from cached TS segments: {} clips looped to ~{} MB each, {count} segments, {:.1} MB of TS",
        clips.len(),
        loop_to >> 20,
        total as f64 / 1e6
    );

    let every: Vec<&Clip> = clips.iter().collect();
    let (all, all_cpu) = measure(&every, min_cpu, all_tracks);
    let (one, one_cpu) = measure(&every, min_cpu, |clip| {
        let mut out = 0;
        let asked = [clip.first_track];
        for (segment, timing) in clip.segments.iter().zip(&clip.timings) {
            let fragments =
                Fragments::from_ts(&segment.payload, timing, Some(&asked)).expect("fMP4");
            out += fragments.tracks()[0].media().len();
        }
        out
    });

    if !measuring {
        println!("fmp4 is a benchmark: one pass done; run cargo bench -p dvr-media --bench fmp4");
        return;
    }
    let dir = tempfile::tempdir().expect("a scratch directory");
    let (mut ffmpeg_cpu, mut dash_cpu, mut dash_bytes) = (0.0, 0.0, 0usize);
    for clip in &clips {
        let path = dir.path().join(clip.name);
        let bytes: Vec<u8> = clip
            .segments
            .iter()
            .flat_map(|s| s.payload.iter().copied())
            .collect();
        std::fs::write(&path, bytes).expect("write the stored TS");
        let out = dir.path().join(format!("{}-dash", clip.name));
        std::fs::create_dir_all(&out).expect("a DASH directory");
        ffmpeg_cpu += ffmpeg(&path, clip.has_aac, Peer::FragmentedMp4, &out);
        if let Some(tags) = &clip.dash_tags {
            dash_cpu += ffmpeg(&path, clip.has_aac, Peer::Dash(tags), &out);
            dash_bytes += clip.segments.iter().map(|s| s.payload.len()).sum::<usize>();
        }
    }
    let ffmpeg_rate = total as f64 / 1e6 / ffmpeg_cpu.max(0.01);
    let dash_rate = dash_bytes as f64 / 1e6 / dash_cpu.max(0.01);
    // Ours on the same clips as ffmpeg's DASH row.
    let dashable: Vec<&Clip> = clips.iter().filter(|c| c.dash_tags.is_some()).collect();
    let (ours_dashable, _) = measure(&dashable, min_cpu, all_tracks);

    println!("{:<34} {:>12} {:>8}", "row", "MB/CPU-s", "CPU s");
    println!(
        "{:<34} {:>12.0} {:>8.2}",
        "dvr fmp4, all tracks", all, all_cpu
    );
    println!(
        "{:<34} {:>12.0} {:>8.2}",
        "dvr fmp4, one track", one, one_cpu
    );
    println!(
        "{:<34} {:>12.0} {:>8.2}",
        "ffmpeg -c copy -f mp4 (fragmented)", ffmpeg_rate, ffmpeg_cpu
    );
    println!(
        "{:<34} {:>12.0} {:>8.2}  ({} of {} clips: one MP4 tag per kind)",
        "ffmpeg -c copy -f dash",
        dash_rate,
        dash_cpu,
        dashable.len(),
        clips.len()
    );
    println!(
        "{:<34} {:>12.0}",
        "dvr fmp4, all tracks, those clips", ours_dashable
    );
    println!("ratio dvr (all tracks) / ffmpeg: {:.1}x", all / ffmpeg_rate);
    // The same TS in both: CPU per hour of tape is in the same ratio.
    let per_hour = ours_dashable / dash_rate;
    let dash_verdict = if per_hour >= 3.0 { "met" } else { "NOT met" };
    println!(
        "CPU per hour of tape, ffmpeg -f dash / dvr (all tracks): {per_hour:.1}x; target >= 3x: {dash_verdict}"
    );
    let verdict = if all >= 1000.0 { "met" } else { "NOT met" };
    println!("target >= 1000 MB/s of TS per core (all tracks): {verdict}");
    println!("({:.1} s in all)", started.elapsed().as_secs_f64());
}
