//! A stream's status from its tape, read where the API runs: the tape is
//! opened from the stream's settings through the process's registry and
//! the bus's live log ([`dvr_archive::tape::open_tape`]), the same tape the
//! packager serves and ingest resumes after, so the API needs no service
//! in its process and answers alike in one process and over NATS.

use std::sync::Arc;

use async_trait::async_trait;
use dvr_archive::tape::{open_tape, StreamTape};
use dvr_archive::ArchiveRegistry;
use dvr_bus::{Kv, Node};
use dvr_common::config::StreamConfig;
use dvr_common::{Clock, StreamName, UtcMs};
use dvr_proto::stream_config_key;
use tracing::debug;

use crate::state::stored_config;
use crate::status::{LastSegment, RuntimeStatus, Span, StreamStatusSource};

/// A source that delivered nothing for this long is reported dead: a
/// segment is cut at 10 s at the latest, and signal loss closes one after
/// twice the target duration.
pub const SOURCE_ALIVE_MS: i64 = 20_000;
/// Segments the bitrate is averaged over.
const BITRATE_SEGMENTS: usize = 10;
/// How far back gaps are reported, and how many.
const GAPS_WINDOW_MS: i64 = 86_400_000;
const MAX_GAPS: usize = 100;

/// Status from the stream's tape: its newest segments and recorded ranges.
#[derive(Debug)]
pub struct TapeStatus {
    node: Arc<Node>,
    registry: Arc<ArchiveRegistry>,
    streams: Arc<dyn Kv>,
    clock: Arc<dyn Clock>,
}

impl TapeStatus {
    /// Status of the tapes on `node`'s live logs and `registry`'s archives;
    /// a delayed channel's source is looked up in `streams`.
    pub fn new(
        node: Arc<Node>,
        registry: Arc<ArchiveRegistry>,
        streams: Arc<dyn Kv>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            node,
            registry,
            streams,
            clock,
        }
    }

    async fn tape(&self, name: &StreamName, config: &StreamConfig) -> Option<StreamTape> {
        let open = |name: StreamName, config: StreamConfig| async move {
            open_tape(
                &self.registry,
                &self.node,
                &name,
                &config,
                Arc::clone(&self.clock),
            )
            .await
            .map_err(|e| debug!(stream = %name, error = %e, "status: cannot open the tape"))
            .ok()
        };
        let Some((source, delay_ms)) = config.delayed_source() else {
            return open(name.clone(), config.clone()).await;
        };
        let entry = self.streams.get(&stream_config_key(&source)).await.ok()??;
        let source_config = stored_config(&source, &entry).ok()?;
        let source_tape = open(source, source_config).await?;
        Some(StreamTape::delayed(
            name.to_string(),
            &source_tape,
            delay_ms,
        ))
    }
}

#[async_trait]
impl StreamStatusSource for TapeStatus {
    async fn runtime(&self, stream: &StreamName, config: &StreamConfig) -> Option<RuntimeStatus> {
        let tape = self.tape(stream, config).await?;
        let now = self.clock.now();
        let newest = tape.newest(BITRATE_SEGMENTS).await.unwrap_or_default();
        let last = newest.last().map(|s| s.meta);
        let extent = tape.extent().await.ok().flatten();
        if last.is_none() && extent.is_none() {
            return None;
        }
        let source_alive = last.is_some_and(|m| now.0 - m.utc_end().0 <= SOURCE_ALIVE_MS);
        let (bytes, ms) = newest.iter().fold((0u64, 0i64), |(b, d), s| {
            (b + s.meta.bytes, d + s.meta.duration.as_ms())
        });
        let bitrate_bps = u64::try_from(ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(|ms| bytes.saturating_mul(8000) / ms);
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
        let outside_schedule = config
            .dvr
            .as_ref()
            .and_then(|d| d.schedule.as_ref())
            .is_some_and(|s| !s.contains(now));
        Some(RuntimeStatus {
            recording: tape.has_archive() && source_alive && !outside_schedule,
            source_alive,
            outside_schedule,
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
