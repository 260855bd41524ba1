//! Records whole hours of a channel to an archive as fast as the store
//! takes them, for `make bench` (bench/storage.py counts the requests the
//! store sees per stream-hour).
//!
//! The input file is cut into 2 s segments once; they are appended to a
//! live log in a loop, on a tape starting at an hour boundary, until it
//! holds `--hours` hours; then a recorder on a simulated clock just past
//! the last hour copies every closed window, exactly as `dvr run` does each
//! hour. Storage settings come from the usual environment variables
//! (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, …).
//!
//! ```text
//! archive_hour --archive s3://bench/ch --input FILE.ts [--hours 1] [--parts]
//! ```
//! `--parts` turns the single streamed PUT off (`single_put_max: 0`), to show
//! what a multipart upload of the same chunk costs.

use std::sync::Arc;
use std::time::Instant;

use dvr_archive::store::ArchiveStore;
use dvr_bus::{SegmentLog, SegmentLogOptions};
use dvr_common::{Clock, SimulatedClock, StreamName, SystemClock, Ticks, UtcMs};
use dvr_media::{Segmenter, SegmenterConfig};
use dvr_recorder::{RecorderConfig, StreamRecorder};
use dvr_storage::{StorageConfig, StorageUri};

const HOUR_MS: i64 = 3_600_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut archive = None;
    let mut input = None;
    let mut hours = 1i64;
    let mut parts = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--archive" => archive = args.next(),
            "--input" => input = args.next(),
            "--hours" => hours = args.next().ok_or("--hours N")?.parse()?,
            "--parts" => parts = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let archive: StorageUri = archive.ok_or("--archive URI is required")?.parse()?;
    let input = input.ok_or("--input FILE is required")?;

    // Cut the input into segments once.
    let data = std::fs::read(&input)?;
    let start = UtcMs((SystemClock.now().0 / HOUR_MS - hours - 1) * HOUR_MS);
    let clock = Arc::new(SimulatedClock::new(start));
    let mut segmenter = Segmenter::new(
        SegmenterConfig::with_target(Ticks::from_secs(2)),
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let mut cut = segmenter.push(&data);
    cut.extend(segmenter.finish());
    if cut.is_empty() {
        return Err("the input has no segments".into());
    }

    // Fill the live log with `hours` hours of tape.
    let dir = tempfile::tempdir()?;
    let log = Arc::new(SegmentLog::open(dir.path(), SegmentLogOptions::default())?);
    let end = UtcMs(start.0 + hours * HOUR_MS);
    let mut utc = start;
    let mut seq = 0u64;
    let mut bytes = 0u64;
    while utc.0 < end.0 {
        let mut segment = cut[(seq as usize) % cut.len()].clone();
        segment.seq = seq;
        segment.utc_start = utc;
        segment.flags.discontinuity = false;
        bytes += segment.payload.len() as u64;
        utc = segment.utc_end();
        log.append(&segment)?;
        seq += 1;
    }

    let mut storage_config = StorageConfig::default();
    storage_config.apply_env(|key| std::env::var(key).ok());
    if parts {
        storage_config.single_put_max = 0;
    }
    let storage = dvr_storage::resolve(&archive, &storage_config)?;
    storage.check().await?;
    let store = Arc::new(ArchiveStore::new(storage));
    clock.set(UtcMs(end.0 + 60_000));
    let name: StreamName = "bench".parse()?;
    let mut recorder = StreamRecorder::new(
        name,
        log,
        store,
        clock as Arc<dyn Clock>,
        RecorderConfig::with_copy_interval(HOUR_MS),
    );
    let began = Instant::now();
    let chunks = recorder.copy(false).await?;
    let took = began.elapsed().as_secs_f64();
    println!(
        "hours={hours} segments={seq} bytes={bytes} chunks={chunks} upload_s={took:.2} mb_per_s={:.0}",
        bytes as f64 / 1e6 / took
    );
    Ok(())
}
