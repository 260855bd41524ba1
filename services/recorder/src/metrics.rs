//! The recorder's Prometheus metrics, labelled by stream (and, for
//! results and errors, by a label with a handful of fixed values).
//!
//! Two gauges make the alerts in docs/prometheus-rules.yaml simple: the
//! backlog (how far the archive is behind the live log) next to the copy
//! interval it should stay within, and the time of the last chunk written.
//!
//! A stream's series exist while its recorder runs here: when the lease
//! moves to another replica (or the stream is removed) the recorder stops,
//! its [`StreamMetrics`] is dropped and the series are removed, so the
//! stream is reported by the one replica recording it.

use std::sync::LazyLock;
use std::time::Duration;

use dvr_common::UtcMs;
use dvr_media::SegmentMeta;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

use crate::recorder::RecorderError;

/// The stream's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// Stream name.
    pub stream: String,
}

/// The stream and an outcome from a fixed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Stream name.
    pub stream: String,
    /// `ok` or `error` for uploads; `upload`, `retention` or `live_log`
    /// for errors.
    pub result: &'static str,
}

type Histograms = Family<StreamLabel, Histogram, fn() -> Histogram>;

fn upload_histogram() -> Histogram {
    Histogram::new(dvr_telemetry::metrics::upload_seconds_buckets())
}

#[derive(Debug)]
struct RecorderMetrics {
    segments: Family<StreamLabel, Counter>,
    uploaded_bytes: Family<StreamLabel, Counter>,
    chunk_uploads: Family<OutcomeLabels, Counter>,
    chunk_upload_seconds: Histograms,
    upload_retries: Family<StreamLabel, Counter>,
    errors: Family<OutcomeLabels, Counter>,
    backlog_seconds: Family<StreamLabel, Gauge>,
    copy_interval_seconds: Family<StreamLabel, Gauge>,
    hot_tier_seconds: Family<StreamLabel, Gauge>,
    last_chunk_timestamp_seconds: Family<StreamLabel, Gauge>,
    retention_deletions: Family<StreamLabel, Counter>,
    retention_deleted_bytes: Family<StreamLabel, Counter>,
    unscheduled_segments: Family<StreamLabel, Counter>,
    backfilled_segments: Family<StreamLabel, Counter>,
    backfilled_bytes: Family<StreamLabel, Counter>,
    backfill_errors: Family<StreamLabel, Counter>,
    backfill_missing_seconds: Family<StreamLabel, Gauge>,
}

/// The streams whose series exist, by holder count.
static HOLDERS: LazyLock<dvr_telemetry::metrics::StreamSeries> = LazyLock::new(Default::default);

/// Every result and error place, for creating and removing series.
const RESULTS: [&str; 2] = ["ok", "error"];
const PLACES: [&str; 3] = ["upload", "retention", "live_log"];

impl RecorderMetrics {
    /// The per-stream counters, created at zero when a stream starts and
    /// removed when its last holder stops.
    fn stream_counters(&self) -> [&Family<StreamLabel, Counter>; 9] {
        [
            &self.backfilled_segments,
            &self.backfilled_bytes,
            &self.backfill_errors,
            &self.segments,
            &self.unscheduled_segments,
            &self.uploaded_bytes,
            &self.upload_retries,
            &self.retention_deletions,
            &self.retention_deleted_bytes,
        ]
    }
}

static METRICS: LazyLock<RecorderMetrics> = LazyLock::new(|| {
    let m = RecorderMetrics {
        segments: Family::default(),
        uploaded_bytes: Family::default(),
        chunk_uploads: Family::default(),
        chunk_upload_seconds: Family::new_with_constructor(upload_histogram),
        upload_retries: Family::default(),
        errors: Family::default(),
        backlog_seconds: Family::default(),
        copy_interval_seconds: Family::default(),
        hot_tier_seconds: Family::default(),
        last_chunk_timestamp_seconds: Family::default(),
        retention_deletions: Family::default(),
        retention_deleted_bytes: Family::default(),
        unscheduled_segments: Family::default(),
        backfilled_segments: Family::default(),
        backfilled_bytes: Family::default(),
        backfill_errors: Family::default(),
        backfill_missing_seconds: Family::default(),
    };
    dvr_telemetry::metrics::register(|r| {
        r.register(
            "dvr_recorder_segments",
            "Segments written to the archive",
            m.segments.clone(),
        );
        r.register_with_unit(
            "dvr_recorder_uploaded",
            "Bytes of chunk objects written to the archive",
            Unit::Bytes,
            m.uploaded_bytes.clone(),
        );
        r.register(
            "dvr_recorder_chunk_uploads",
            "Chunk uploads (object and index) by result: ok or error",
            m.chunk_uploads.clone(),
        );
        r.register_with_unit(
            "dvr_recorder_chunk_upload",
            "Time to write one chunk object and its index",
            Unit::Seconds,
            m.chunk_upload_seconds.clone(),
        );
        r.register(
            "dvr_recorder_upload_retries",
            "Copies to the archive that failed and will be retried with backoff",
            m.upload_retries.clone(),
        );
        r.register(
            "dvr_recorder_errors",
            "Errors by where they happened: upload (the archive store), retention (deleting from it), live_log (the local disk)",
            m.errors.clone(),
        );
        r.register_with_unit(
            "dvr_recorder_backlog",
            "Age of the oldest segment still only in the live log (0 when all is archived)",
            Unit::Seconds,
            m.backlog_seconds.clone(),
        );
        r.register_with_unit(
            "dvr_recorder_copy_interval",
            "The stream's copy interval: the backlog normally stays under it plus a grace",
            Unit::Seconds,
            m.copy_interval_seconds.clone(),
        );
        r.register_with_unit(
            "dvr_recorder_hot_tier",
            "How long the live log keeps a segment whatever the recorder does (NATS max age); a backlog reaching it loses segments",
            Unit::Seconds,
            m.hot_tier_seconds.clone(),
        );
        r.register(
            "dvr_recorder_last_chunk_timestamp_seconds",
            "When the last chunk was written (Unix time)",
            m.last_chunk_timestamp_seconds.clone(),
        );
        r.register(
            "dvr_recorder_retention_deletions",
            "Chunks deleted by retention",
            m.retention_deletions.clone(),
        );
        r.register_with_unit(
            "dvr_recorder_retention_deleted",
            "Bytes deleted by retention",
            Unit::Bytes,
            m.retention_deleted_bytes.clone(),
        );
        r.register(
            "dvr_recorder_unscheduled_segments",
            "Segments left out of the archive because they were made outside the stream's recording schedule (dvr.schedule)",
            m.unscheduled_segments.clone(),
        );
        r.register(
            "dvr_recorder_backfilled_segments",
            "Segments copied from a source's archive by replication (dvr.replicate)",
            m.backfilled_segments.clone(),
        );
        r.register_with_unit(
            "dvr_recorder_backfilled",
            "Bytes copied from a source's archive by replication",
            Unit::Bytes,
            m.backfilled_bytes.clone(),
        );
        r.register(
            "dvr_recorder_backfill_errors",
            "Replication passes that stopped on an error (no source, a broken feed, the archive)",
            m.backfill_errors.clone(),
        );
        r.register_with_unit(
            "dvr_recorder_backfill_missing",
            "Tape within the depth that this origin lacks and replication looks for",
            Unit::Seconds,
            m.backfill_missing_seconds.clone(),
        );
    });
    m
});

/// Registers the recorder's families, so they are listed before any
/// stream records.
pub fn register() {
    LazyLock::force(&METRICS);
}

/// One stream's handles.
#[derive(Debug)]
pub(crate) struct StreamMetrics {
    stream: StreamLabel,
}

impl StreamMetrics {
    pub(crate) fn new(
        stream: &str,
        copy_interval_ms: i64,
        hot_tier_ms: Option<i64>,
    ) -> StreamMetrics {
        let m = &*METRICS;
        HOLDERS.hold(stream);
        let stream = StreamLabel {
            stream: stream.to_owned(),
        };
        m.copy_interval_seconds
            .get_or_create(&stream)
            .set(copy_interval_ms / 1000);
        if let Some(ms) = hot_tier_ms {
            m.hot_tier_seconds.get_or_create(&stream).set(ms / 1000);
        }
        for family in m.stream_counters() {
            let _ = family.get_or_create(&stream);
        }
        let _ = m.backlog_seconds.get_or_create(&stream);
        let _ = m.chunk_upload_seconds.get_or_create(&stream);
        for result in RESULTS {
            let _ = m
                .chunk_uploads
                .get_or_create(&Self::outcome(&stream, result));
        }
        for place in PLACES {
            let _ = m.errors.get_or_create(&Self::outcome(&stream, place));
        }
        StreamMetrics { stream }
    }

    fn outcome(stream: &StreamLabel, result: &'static str) -> OutcomeLabels {
        OutcomeLabels {
            stream: stream.stream.clone(),
            result,
        }
    }

    /// One chunk upload's outcome.
    pub(crate) fn chunk(
        &self,
        result: &Result<(), RecorderError>,
        group: &[SegmentMeta],
        took: Duration,
        now: UtcMs,
    ) {
        let m = &*METRICS;
        let ok = result.is_ok();
        m.chunk_uploads
            .get_or_create(&Self::outcome(
                &self.stream,
                if ok { "ok" } else { "error" },
            ))
            .inc();
        if ok {
            m.chunk_upload_seconds
                .get_or_create(&self.stream)
                .observe(took.as_secs_f64());
            m.segments
                .get_or_create(&self.stream)
                .inc_by(group.len() as u64);
            m.uploaded_bytes
                .get_or_create(&self.stream)
                .inc_by(group.iter().map(|s| s.bytes).sum());
            m.last_chunk_timestamp_seconds
                .get_or_create(&self.stream)
                .set(now.as_secs());
        }
    }

    /// `count` segments made outside the recording schedule, never archived.
    pub(crate) fn unscheduled(&self, count: usize) {
        METRICS
            .unscheduled_segments
            .get_or_create(&self.stream)
            .inc_by(count as u64);
    }

    /// Replication wrote a chunk of `segments` and `bytes`.
    pub(crate) fn backfilled(&self, segments: u64, bytes: u64) {
        let m = &*METRICS;
        m.backfilled_segments
            .get_or_create(&self.stream)
            .inc_by(segments);
        m.backfilled_bytes.get_or_create(&self.stream).inc_by(bytes);
    }

    /// A replication pass stopped on an error.
    pub(crate) fn backfill_failed(&self) {
        METRICS.backfill_errors.get_or_create(&self.stream).inc();
    }

    /// The tape replication looks for, in milliseconds.
    pub(crate) fn missing(&self, ms: i64) {
        METRICS
            .backfill_missing_seconds
            .get_or_create(&self.stream)
            .set(ms / 1000);
    }

    /// A copy that failed and will be retried.
    pub(crate) fn copy_failed(&self, error: &RecorderError) {
        let m = &*METRICS;
        m.upload_retries.get_or_create(&self.stream).inc();
        let place = match error {
            RecorderError::Archive { .. } => "upload",
            RecorderError::LiveLog { .. } | RecorderError::Missing { .. } => "live_log",
        };
        m.errors
            .get_or_create(&Self::outcome(&self.stream, place))
            .inc();
    }

    /// Retention ran: `chunks` deleted, `bytes` freed, or it failed.
    pub(crate) fn retention(&self, outcome: Option<(usize, u64)>) {
        let m = &*METRICS;
        match outcome {
            Some((chunks, bytes)) => {
                m.retention_deletions
                    .get_or_create(&self.stream)
                    .inc_by(chunks as u64);
                m.retention_deleted_bytes
                    .get_or_create(&self.stream)
                    .inc_by(bytes);
            }
            None => {
                m.errors
                    .get_or_create(&Self::outcome(&self.stream, "retention"))
                    .inc();
            }
        }
    }

    /// Removes every series of the stream (the last holder is gone).
    fn remove(stream: &StreamLabel) {
        let m = &*METRICS;
        for family in m.stream_counters() {
            family.remove(stream);
        }
        for family in [
            &m.backlog_seconds,
            &m.copy_interval_seconds,
            &m.hot_tier_seconds,
            &m.last_chunk_timestamp_seconds,
            &m.backfill_missing_seconds,
        ] {
            family.remove(stream);
        }
        m.chunk_upload_seconds.remove(stream);
        for result in RESULTS {
            m.chunk_uploads.remove(&Self::outcome(stream, result));
        }
        for place in PLACES {
            m.errors.remove(&Self::outcome(stream, place));
        }
    }

    /// How far the archive is behind: the age of the oldest pending segment.
    pub(crate) fn backlog(&self, oldest_pending: Option<UtcMs>, now: UtcMs) {
        let secs = oldest_pending.map_or(0, |t| (now.0 - t.0).max(0) / 1000);
        METRICS
            .backlog_seconds
            .get_or_create(&self.stream)
            .set(secs);
    }
}

impl Drop for StreamMetrics {
    /// The recorder of the stream stopped here (lease moved, stream
    /// removed, shutdown): its series go with the last handle.
    fn drop(&mut self) {
        HOLDERS.release(&self.stream.stream, || Self::remove(&self.stream));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streams_series_go_when_its_recorder_stops() {
        let series = |text: &str| {
            text.lines()
                .filter(|l| l.contains("stream=\"metrics-drop\""))
                .count()
        };
        let first = StreamMetrics::new("metrics-drop", 60_000, None);
        let second = StreamMetrics::new("metrics-drop", 60_000, None);
        second.backlog(None, UtcMs(0));
        assert!(series(&dvr_telemetry::metrics::render()) > 10);
        drop(first);
        assert!(
            series(&dvr_telemetry::metrics::render()) > 10,
            "a restarted recorder's series stay while the new one runs"
        );
        drop(second);
        let text = dvr_telemetry::metrics::render();
        assert_eq!(series(&text), 0, "{text}");
    }
}
