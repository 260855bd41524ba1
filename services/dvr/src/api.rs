//! The API inside `dvr run` (embedded mode): the streams bucket seeded
//! from the config file, the status of the streams this process runs, and
//! the API's routes beside the packager's on the one HTTP port.
//!
//! Each piece is a small function so the supervisor that follows the
//! streams bucket can take them over without touching the rest of `run.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use axum::Router;
use bytes::Bytes;
use dvr_api::{
    ApiService, ApiState, Archives, LastSegment, RuntimeStatus, Span, StreamStatusSource,
};
use dvr_archive::store::ArchiveStore;
use dvr_bus::{Kv, MemoryKv};
use dvr_common::config::Config;
use dvr_common::{Clock, StreamName, UtcMs};
use dvr_packager::Packager;
use dvr_proto::{stream_config_key, SESSIONS_KV_BUCKET, STREAMS_KV_BUCKET};

use crate::config::RunConfig;

/// A source that delivered nothing for this long is reported dead: a
/// segment is cut at 10 s at the latest, and signal loss closes one after
/// twice the target duration.
const SOURCE_ALIVE_MS: i64 = 20_000;
/// Segments the bitrate is averaged over.
const BITRATE_SEGMENTS: usize = 10;
/// How far back gaps are reported, and how many.
const GAPS_WINDOW_MS: i64 = 86_400_000;
const MAX_GAPS: usize = 100;
/// Ranges closer than this are one (timestamps jitter at segment joins).
const GAP_TOLERANCE_MS: i64 = 1_000;

/// The streams bucket of an embedded run, holding the config file's
/// streams (each as its `streams:` entry, in JSON).
pub async fn seed_streams_kv(config: &Config) -> anyhow::Result<Arc<dyn Kv>> {
    let kv = Arc::new(MemoryKv::new(STREAMS_KV_BUCKET));
    for (name, stream) in &config.streams {
        let value = serde_json::to_vec(stream).context("encoding a stream's settings")?;
        kv.put(&stream_config_key(name), Bytes::from(value))
            .await
            .with_context(|| format!("stream {name}: cannot store its settings"))?;
    }
    Ok(kv)
}

/// The sessions bucket of an embedded run (the auth service writes it).
pub fn sessions_kv() -> Arc<dyn Kv> {
    Arc::new(MemoryKv::new(SESSIONS_KV_BUCKET))
}

/// The API's routes for this process: its streams bucket, its archives,
/// its packager's tapes as status.
pub fn router(
    config: &RunConfig,
    streams: Arc<dyn Kv>,
    sessions: Arc<dyn Kv>,
    packager: &Arc<Packager>,
    archives: &HashMap<String, Arc<ArchiveStore>>,
    clock: &Arc<dyn Clock>,
) -> Router {
    let shared = Arc::new(Archives::new(config.storage.clone()));
    for (root, store) in archives {
        shared.insert(root, Arc::clone(store));
    }
    let status = Arc::new(TapeStatus {
        packager: Arc::clone(packager),
        clock: Arc::clone(clock),
    });
    let state = ApiState::new(
        streams,
        Some(sessions),
        status,
        shared,
        config.node.archive.clone(),
    );
    ApiService::new(state).embedded_router(config.api.clone())
}

/// Status from what the packager serves: the tape's newest segments and
/// its recorded ranges.
#[derive(Debug)]
struct TapeStatus {
    packager: Arc<Packager>,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl StreamStatusSource for TapeStatus {
    async fn runtime(&self, stream: &StreamName) -> Option<RuntimeStatus> {
        let tape = self.packager.stream_tape(stream.as_str())?;
        let now = self.clock.now();
        let newest = tape.newest(BITRATE_SEGMENTS).await.unwrap_or_default();
        let last = newest.last().map(|s| s.meta);
        let source_alive = last.is_some_and(|m| now.0 - m.utc_end().0 <= SOURCE_ALIVE_MS);
        let (bytes, ms) = newest.iter().fold((0u64, 0i64), |(b, d), s| {
            (b + s.meta.bytes, d + s.meta.duration.as_ms())
        });
        let bitrate_bps = u64::try_from(ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(|ms| bytes.saturating_mul(8000) / ms);
        let extent = tape.extent().await.ok().flatten();
        let mut gaps = Vec::new();
        if let Some((from, to)) = extent {
            let window = UtcMs(from.0.max(to.0 - GAPS_WINDOW_MS));
            let ranges = tape
                .ranges(window, to, GAP_TOLERANCE_MS)
                .await
                .unwrap_or_default();
            gaps = ranges
                .windows(2)
                .map(|w| span(w[0].1, w[1].0))
                .collect::<Vec<_>>();
            let skip = gaps.len().saturating_sub(MAX_GAPS);
            gaps.drain(..skip);
        }
        Some(RuntimeStatus {
            recording: tape.has_archive() && source_alive,
            source_alive,
            bitrate_bps,
            last_segment: last.map(|m| LastSegment {
                seq: m.seq,
                utc_start_ms: m.utc_start.0,
                duration_ms: m.duration.as_ms(),
                bytes: m.bytes,
            }),
            recorded: extent.map(|(a, b)| span(a, b)),
            gaps,
        })
    }
}

fn span(from: UtcMs, to: UtcMs) -> Span {
    Span {
        from: from.as_secs(),
        duration: (to.0 - from.0 + 999).div_euclid(1000),
    }
}
