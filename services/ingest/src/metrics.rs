//! Ingest's Prometheus metrics, one family per counter of [`IngestStats`],
//! labelled by stream only.
//!
//! The stream loop already keeps its counters in [`IngestStats`]; rather
//! than a second set of increments scattered through the loop, each
//! published snapshot is turned into increments here (the difference from
//! the previous one), so the two can never disagree.
//!
//! A stream's series exist while its loop runs here: when the lease moves
//! to another replica (or the stream is removed) the loop ends, its
//! [`StreamMetrics`] is dropped and the series are removed, so the stream
//! is reported by the one replica ingesting it.

use std::sync::LazyLock;

use dvr_common::UtcMs;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Unit;

use crate::stats::IngestStats;

/// The one label: the stream's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// Stream name.
    pub stream: String,
}

/// Every ingest family.
#[derive(Debug, Default)]
struct IngestMetrics {
    received_bytes: Family<StreamLabel, Counter>,
    bitrate: Family<StreamLabel, Gauge>,
    packets: Family<StreamLabel, Counter>,
    cc_errors: Family<StreamLabel, Counter>,
    source_switches: Family<StreamLabel, Counter>,
    signal_losses: Family<StreamLabel, Counter>,
    segments: Family<StreamLabel, Counter>,
}

/// The streams whose series exist, by holder count.
static HOLDERS: LazyLock<dvr_telemetry::metrics::StreamSeries> = LazyLock::new(Default::default);

impl IngestMetrics {
    /// The per-stream counters, created at zero when a stream starts and
    /// removed when its last holder stops.
    fn stream_counters(&self) -> [&Family<StreamLabel, Counter>; 6] {
        [
            &self.received_bytes,
            &self.packets,
            &self.cc_errors,
            &self.source_switches,
            &self.signal_losses,
            &self.segments,
        ]
    }
}

static METRICS: LazyLock<IngestMetrics> = LazyLock::new(|| {
    let m = IngestMetrics::default();
    dvr_telemetry::metrics::register(|r| {
        r.register_with_unit(
            "dvr_ingest_received",
            "Bytes of MPEG-TS fed to the segmenter from the playing input",
            Unit::Bytes,
            m.received_bytes.clone(),
        );
        r.register(
            "dvr_ingest_bitrate_bits_per_second",
            "Input bitrate over the last few seconds",
            m.bitrate.clone(),
        );
        r.register(
            "dvr_ingest_packets",
            "TS packets received",
            m.packets.clone(),
        );
        r.register(
            "dvr_ingest_cc_errors",
            "Continuity-counter errors: TS packets lost or reordered",
            m.cc_errors.clone(),
        );
        r.register(
            "dvr_ingest_source_switches",
            "Changes of the playing input (failover or return to a better one)",
            m.source_switches.clone(),
        );
        r.register(
            "dvr_ingest_signal_losses",
            "Times the stream had no signal (every input lost, or no data for twice the segment duration)",
            m.signal_losses.clone(),
        );
        r.register(
            "dvr_ingest_segments",
            "Segments cut and appended to the live log",
            m.segments.clone(),
        );
    });
    m
});

/// Registers ingest's families, so they are listed before any stream runs.
pub fn register() {
    LazyLock::force(&METRICS);
}

/// The shortest span a bitrate is measured over.
const BITRATE_WINDOW_MS: i64 = 2_000;

/// One stream's view: the last snapshot, to turn the next into increments.
#[derive(Debug)]
pub(crate) struct StreamMetrics {
    label: StreamLabel,
    last: IngestStats,
    window_start: UtcMs,
    window_bytes: u64,
}

impl StreamMetrics {
    pub(crate) fn new(stream: &str, now: UtcMs) -> StreamMetrics {
        HOLDERS.hold(stream);
        let label = StreamLabel {
            stream: stream.to_owned(),
        };
        // Create the series at zero: a stream that never receives anything
        // shows 0, not nothing.
        let m = &*METRICS;
        for family in m.stream_counters() {
            let _ = family.get_or_create(&label);
        }
        m.bitrate.get_or_create(&label).set(0);
        StreamMetrics {
            label,
            last: IngestStats::default(),
            window_start: now,
            window_bytes: 0,
        }
    }

    /// Adds what changed since the last snapshot.
    pub(crate) fn observe(&mut self, now: &IngestStats, at: UtcMs) {
        let m = &*METRICS;
        let l = &self.label;
        let add = |family: &Family<StreamLabel, Counter>, new: u64, old: u64| {
            if new > old {
                family.get_or_create(l).inc_by(new - old);
            }
        };
        add(&m.received_bytes, now.bytes, self.last.bytes);
        add(&m.packets, now.packets, self.last.packets);
        add(&m.cc_errors, now.cc_errors, self.last.cc_errors);
        add(&m.source_switches, now.switches, self.last.switches);
        add(&m.signal_losses, now.signal_losses, self.last.signal_losses);
        add(&m.segments, now.segments, self.last.segments);
        self.window_bytes += now.bytes.saturating_sub(self.last.bytes);
        let span_ms = at.0 - self.window_start.0;
        if span_ms >= BITRATE_WINDOW_MS {
            let bits = i128::from(self.window_bytes) * 8 * 1000 / i128::from(span_ms);
            m.bitrate
                .get_or_create(l)
                .set(i64::try_from(bits).unwrap_or(i64::MAX));
            self.window_start = at;
            self.window_bytes = 0;
        }
        self.last = now.clone();
    }
}

impl Drop for StreamMetrics {
    /// The stream's loop stopped here: its series go with the last handle.
    fn drop(&mut self) {
        let label = &self.label;
        HOLDERS.release(&label.stream, || {
            let m = &*METRICS;
            for family in m.stream_counters() {
                family.remove(label);
            }
            m.bitrate.remove(label);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_become_increments_and_a_bitrate() {
        let mut s = StreamMetrics::new("metrics-unit", UtcMs(0));
        let snap = |bytes, packets, cc| IngestStats {
            bytes,
            packets,
            cc_errors: cc,
            ..IngestStats::default()
        };
        s.observe(&snap(100_000, 532, 0), UtcMs(1_000));
        s.observe(&snap(500_000, 2660, 2), UtcMs(2_000));
        let text = dvr_telemetry::metrics::render();
        let value = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l.contains("stream=\"metrics-unit\""))
                .and_then(|l| l.rsplit(' ').next())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .to_owned()
        };
        assert_eq!(value("dvr_ingest_received_bytes_total"), "500000");
        assert_eq!(value("dvr_ingest_packets_total"), "2660");
        assert_eq!(value("dvr_ingest_cc_errors_total"), "2");
        // 500 kB over 2 s.
        assert_eq!(value("dvr_ingest_bitrate_bits_per_second"), "2000000");
        assert_eq!(value("dvr_ingest_signal_losses_total"), "0");
        drop(s);
        let text = dvr_telemetry::metrics::render();
        assert!(
            !text.contains("stream=\"metrics-unit\""),
            "a stopped stream's series are removed: {text}"
        );
    }
}
