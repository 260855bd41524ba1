//! The bus's Prometheus metrics: how long writes to the bus take, how late
//! the live log's followers see what was published, how long requests wait
//! for their reply, and how often leases move between replicas.
//!
//! Every label has a handful of fixed values (no `stream` here): the bus is
//! shared by every stream, and what an operator asks of it is "is the bus
//! slow" and "do leases flap", not which stream was unlucky. A request's
//! subject is a label only when it is one of the protocol's constant
//! request subjects ([`REQUEST_SUBJECTS`]); any other is `other`, so a
//! caller cannot make the label unbounded.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use tokio::time::Instant;

use crate::error::BusError;

/// Which implementation did the work.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Backend {
    /// In this process (embedded mode).
    Embedded,
    /// NATS JetStream or core NATS (distributed mode).
    Nats,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Nats => "nats",
        }
    }
}

/// A write to the bus and where it went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishLabels {
    /// `live_log_append`, `event_publish`, `kv_put`, `kv_create`,
    /// `kv_update` or `kv_delete`.
    pub op: &'static str,
    /// `embedded` or `nats`.
    pub backend: &'static str,
}

/// Which follower saw a message late.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumeLabels {
    /// `live_log` (segment descriptors) or `events`.
    pub consumer: &'static str,
}

/// A request's subject, implementation and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// One of [`REQUEST_SUBJECTS`], or `other`.
    pub subject: &'static str,
    /// `embedded` or `nats`.
    pub backend: &'static str,
    /// `ok`, `remote_error`, `no_responders`, `timeout` or `error`.
    pub result: &'static str,
}

/// A role's lease and what happened to it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    /// `ingest` or `recorder`.
    pub role: String,
    /// `acquired`, `lost` (taken by another replica or not renewed in
    /// time) or `released` (handed over or given up at shutdown).
    pub change: &'static str,
}

/// The role alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    /// `ingest` or `recorder`.
    pub role: String,
}

/// The subjects requests are sent to: the protocol's constants. Anything
/// else is counted as `other`.
pub const REQUEST_SUBJECTS: &[&str] = &[dvr_proto::AUTH_CHECK_SUBJECT];

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(dvr_telemetry::metrics::request_seconds_buckets())
}

#[derive(Debug)]
struct BusMetrics {
    publish: Histograms<PublishLabels>,
    consume_delay: Histograms<ConsumeLabels>,
    request: Histograms<RequestLabels>,
    lease_moves: Family<LeaseLabels, Counter>,
    leases_held: Family<RoleLabel, Gauge>,
}

static METRICS: LazyLock<BusMetrics> = LazyLock::new(|| {
    let m = BusMetrics {
        publish: Family::new_with_constructor(latency_histogram),
        consume_delay: Family::new_with_constructor(latency_histogram),
        request: Family::new_with_constructor(latency_histogram),
        lease_moves: Family::default(),
        leases_held: Family::default(),
    };
    dvr_telemetry::metrics::register(|r| {
        r.register_with_unit(
            "dvr_bus_publish",
            "Time to write to the bus until it acknowledged: live-log appends, event publishes, KV writes",
            Unit::Seconds,
            m.publish.clone(),
        );
        r.register_with_unit(
            "dvr_bus_consume_delay",
            "Time from a message's publication to its delivery to a follower in this process",
            Unit::Seconds,
            m.consume_delay.clone(),
        );
        r.register_with_unit(
            "dvr_bus_request",
            "Time from sending a request to its reply (or failure), by subject and result",
            Unit::Seconds,
            m.request.clone(),
        );
        r.register(
            "dvr_bus_lease_moves",
            "Stream leases acquired, lost or released by this replica, by role",
            m.lease_moves.clone(),
        );
        r.register(
            "dvr_bus_leases_held",
            "Stream leases this replica holds now, by role",
            m.leases_held.clone(),
        );
    });
    m
});

/// Registers the bus's families, so they are listed before the bus is used.
pub fn register() {
    LazyLock::force(&METRICS);
}

/// Records one write that took from `started` until now.
pub(crate) fn published(op: &'static str, backend: Backend, started: Instant) {
    METRICS
        .publish
        .get_or_create(&PublishLabels {
            op,
            backend: backend.label(),
        })
        .observe(started.elapsed().as_secs_f64());
}

/// Runs a write and records how long it took, whatever its outcome.
pub(crate) async fn time_publish<T>(
    op: &'static str,
    backend: Backend,
    write: impl std::future::Future<Output = T>,
) -> T {
    let started = Instant::now();
    let out = write.await;
    published(op, backend, started);
    out
}

/// Records how late a follower received a message (negative delays, from
/// clocks that disagree, count as zero).
pub(crate) fn consumed(consumer: &'static str, delay_ms: i64) {
    let delay = Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0));
    METRICS
        .consume_delay
        .get_or_create(&ConsumeLabels { consumer })
        .observe(delay.as_secs_f64());
}

/// The label of a request subject: itself if it is one of the protocol's,
/// else `other`.
pub fn subject_label(subject: &str) -> &'static str {
    REQUEST_SUBJECTS
        .iter()
        .find(|s| **s == subject)
        .copied()
        .unwrap_or("other")
}

/// Records one request's round trip.
pub(crate) fn requested<T>(
    subject: &str,
    backend: Backend,
    started: Instant,
    result: &Result<T, BusError>,
) {
    let result = match result {
        Ok(_) => "ok",
        Err(BusError::Remote { .. }) => "remote_error",
        Err(BusError::NoResponders { .. }) => "no_responders",
        Err(BusError::RequestTimeout { .. }) => "timeout",
        Err(_) => "error",
    };
    METRICS
        .request
        .get_or_create(&RequestLabels {
            subject: subject_label(subject),
            backend: backend.label(),
            result,
        })
        .observe(started.elapsed().as_secs_f64());
}

/// A replica's lease counters for one role.
#[derive(Debug)]
pub(crate) struct LeaseMetrics {
    role: String,
}

impl LeaseMetrics {
    /// The counters of `role`, created at zero so a replica that never
    /// moved a lease shows 0, not nothing.
    pub(crate) fn new(role: &str) -> Self {
        let m = &*METRICS;
        for change in ["acquired", "lost", "released"] {
            let _ = m.lease_moves.get_or_create(&LeaseLabels {
                role: role.to_owned(),
                change,
            });
        }
        let _ = m.leases_held.get_or_create(&RoleLabel {
            role: role.to_owned(),
        });
        Self {
            role: role.to_owned(),
        }
    }

    /// Counts one change and sets how many leases are held after it.
    pub(crate) fn changed(&self, change: &'static str, held: usize) {
        let m = &*METRICS;
        m.lease_moves
            .get_or_create(&LeaseLabels {
                role: self.role.clone(),
                change,
            })
            .inc();
        self.held(held);
    }

    /// Sets how many leases are held.
    pub(crate) fn held(&self, held: usize) {
        METRICS
            .leases_held
            .get_or_create(&RoleLabel {
                role: self.role.clone(),
            })
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_protocol_subjects_become_labels() {
        assert_eq!(subject_label("dvr.v1.auth.check"), "dvr.v1.auth.check");
        assert_eq!(subject_label("dvr.v1.live.ch1.seg"), "other");
        assert_eq!(subject_label(""), "other");
    }

    #[test]
    fn lease_moves_are_counted_by_role() {
        let leases = LeaseMetrics::new("metrics-unit-role");
        leases.changed("acquired", 1);
        leases.changed("acquired", 2);
        leases.changed("released", 1);
        let text = dvr_telemetry::metrics::render();
        let value = |series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series))
                .unwrap_or_else(|| panic!("no {series} in {text}"))
                .trim()
                .to_owned()
        };
        let changes = |change: &str| {
            value(&format!(
                "dvr_bus_lease_moves_total{{role=\"metrics-unit-role\",change=\"{change}\"}}"
            ))
        };
        assert_eq!(changes("acquired"), "2");
        assert_eq!(changes("released"), "1");
        assert_eq!(changes("lost"), "0");
        assert_eq!(
            value("dvr_bus_leases_held{role=\"metrics-unit-role\"}"),
            "1"
        );
    }
}
