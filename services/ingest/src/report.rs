//! The ingest's reports in the runtime bucket
//! ([`dvr_proto::RUNTIME_KV_BUCKET`]): which input plays and the counters,
//! written by the node running the stream and read by the API wherever it
//! runs, in one process or over NATS. With several API or packager
//! replicas a request/reply would get one answer; a KV entry per stream is
//! the same for every reader.
//!
//! A report is written every [`REPORT_EVERY`] and at once when the input
//! playing changes; the write runs on its own task, so a slow bus never
//! holds up the worker's tick. The key is deleted when the ingest
//! stops; on NATS an entry not rewritten expires by itself
//! ([`dvr_proto::RUNTIME_MAX_AGE_SECS`]), so a node that died leaves no
//! report behind.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_bus::Kv;
use dvr_common::config::StreamConfig;
use dvr_common::{StreamName, UtcMs};
use dvr_proto::{runtime_key, IngestReport, Versioned, PROTO_VERSION};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

use crate::stats::IngestStats;

/// How often a running ingest rewrites its report: well inside the
/// bucket's max age.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// One stream's reporter.
#[derive(Debug)]
pub struct IngestReporter {
    kv: Arc<dyn Kv>,
    node: String,
    stream: StreamName,
    key: String,
    last: Option<(Instant, Option<usize>)>,
    /// The write in flight: at most one, and awaited before the delete so
    /// a late write cannot bring the report back.
    writing: Option<JoinHandle<()>>,
}

impl IngestReporter {
    pub fn new(kv: Arc<dyn Kv>, node: &str, stream: &StreamName) -> Self {
        Self {
            kv,
            node: node.to_owned(),
            stream: stream.clone(),
            key: runtime_key("ingest", stream),
            last: None,
            writing: None,
        }
    }

    /// Writes a report from `stats` when one is due.
    pub fn observe(&mut self, stats: &IngestStats, config: &StreamConfig, now: UtcMs) {
        let due = match self.last {
            None => true,
            Some((at, input)) => at.elapsed() >= REPORT_EVERY || input != stats.active_input,
        };
        if !due || self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        self.last = Some((Instant::now(), stats.active_input));
        let report = IngestReport {
            v: PROTO_VERSION,
            stream: self.stream.clone(),
            node: self.node.clone(),
            at: now,
            input_index: stats.active_input,
            // Display masks credentials.
            input: stats
                .active_input
                .and_then(|i| config.inputs.get(i))
                .map(ToString::to_string),
            switches: stats.switches,
            signal_losses: stats.signal_losses,
            cc_errors: stats.cc_errors,
            discontinuities: stats.demux.discontinuities,
            bytes: stats.bytes,
            last_error: stats.last_error.clone(),
        };
        let kv = Arc::clone(&self.kv);
        let key = self.key.clone();
        self.writing = Some(tokio::spawn(async move {
            if let Err(e) = kv.put(&key, Bytes::from(report.encode())).await {
                debug!(key, error = %e, "cannot write the ingest report");
            }
        }));
    }

    /// Removes the report: the ingest stopped here. A report another node
    /// wrote meanwhile (it took the stream over) stays.
    pub async fn clear(mut self) {
        if let Some(writing) = self.writing.take() {
            let _ = writing.await;
        }
        let ours = match self.kv.get(&self.key).await {
            Ok(Some(entry)) => {
                IngestReport::decode(&entry.value).is_ok_and(|r| r.node == self.node)
            }
            Ok(None) => false,
            Err(_) => true,
        };
        if !ours {
            return;
        }
        if let Err(e) = self.kv.delete(&self.key).await {
            debug!(key = self.key, error = %e, "cannot delete the ingest report");
        }
    }
}
