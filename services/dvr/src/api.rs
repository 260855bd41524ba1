//! The API inside `dvr run`: the status of the streams from this process's
//! tapes, and the API's routes beside the others on the one HTTP port.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use dvr_api::{ApiService, ApiState, LastSegment, RuntimeStatus, Span, StreamStatusSource};
use dvr_archive::ArchiveRegistry;
use dvr_bus::Kv;
use dvr_common::{Clock, StreamName, UtcMs};
use dvr_packager::Packager;

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

/// The KV buckets the API works on.
pub struct ApiBuckets {
    /// [`dvr_proto::STREAMS_KV_BUCKET`].
    pub streams: Arc<dyn Kv>,
    /// [`dvr_proto::SESSIONS_KV_BUCKET`].
    pub sessions: Arc<dyn Kv>,
    /// [`dvr_proto::LOCKS_KV_BUCKET`].
    pub locks: Arc<dyn Kv>,
    /// [`dvr_proto::RUNTIME_KV_BUCKET`].
    pub runtime: Arc<dyn Kv>,
    /// [`dvr_proto::EXPORTS_KV_BUCKET`].
    pub exports: Arc<dyn Kv>,
}

/// The API's routes for this process: its buckets, the process's archive
/// registry (the stores its recorder and packager use), its packager's tapes as status.
pub fn router(
    config: &RunConfig,
    api: dvr_api::ApiConfig,
    buckets: ApiBuckets,
    node: &str,
    packager: &Arc<Packager>,
    registry: Arc<ArchiveRegistry>,
    clock: &Arc<dyn Clock>,
    distributed: bool,
) -> anyhow::Result<Router> {
    let status = Arc::new(TapeStatus {
        packager: Arc::clone(packager),
        clock: Arc::clone(clock),
    });
    let state = ApiState::new(
        buckets.streams,
        Some(buckets.sessions),
        buckets.locks,
        node,
        status,
        registry,
        config.node.archive.clone(),
    )
    .with_runtime(buckets.runtime)
    .with_exports(buckets.exports, Arc::clone(clock))
    .with_publishes(config.node.rtmp.is_some());
    let service = ApiService::new(state);
    if distributed {
        Ok(service.distributed_router(api)?)
    } else {
        Ok(service.embedded_router(api))
    }
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
            let ranges = tape.ranges(window, to).await.unwrap_or_default();
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
