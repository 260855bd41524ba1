//! Uploads one local file to an archive root and prints how long it took,
//! for `make bench` (bench/storage.py runs it beside boto3's `upload_file`).
//! Storage settings come from the usual environment variables
//! (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, …).
//!
//! ```text
//! put_file --archive s3://bench --file PATH --key KEY [--parts]
//! ```
//! `--parts` turns the single streamed PUT off, forcing a multipart upload.

use std::path::PathBuf;
use std::time::Instant;

use dvr_storage::{StorageConfig, StorageUri};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut archive = None;
    let mut file = None;
    let mut key = None;
    let mut parts = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--archive" => archive = args.next(),
            "--file" => file = args.next().map(PathBuf::from),
            "--key" => key = args.next(),
            "--parts" => parts = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let archive: StorageUri = archive.ok_or("--archive URI is required")?.parse()?;
    let file = file.ok_or("--file PATH is required")?;
    let key = key.ok_or("--key KEY is required")?;
    let mut config = StorageConfig::default();
    config.apply_env(|k| std::env::var(k).ok());
    if parts {
        config.single_put_max = 0;
    }
    let storage = dvr_storage::resolve(&archive, &config)?;
    storage.check().await?;
    let began = Instant::now();
    let bytes = storage.put_file(&key, &file).await?;
    let took = began.elapsed().as_secs_f64();
    println!(
        "bytes={bytes} seconds={took:.3} mb_per_s={:.0}",
        bytes as f64 / 1e6 / took
    );
    Ok(())
}
