//! Which tapes the packager serves, kept equal to the streams bucket, and
//! how a packager in another process than the recorder learns of new
//! chunks.
//!
//! Every stream is served: a recorded one from its archive (opened through
//! the process's [`ArchiveRegistry`], so the packager, the recorder and the
//! API read one catalog) joined to its live log, a live-only one from its
//! live log, and a delayed channel on top of its source's tape, so sources
//! are added first. A stream whose settings change is served anew.
//!
//! **Following the catalog.** The recorder writes a catalog summary (the
//! last seq and chunk it wrote) to the catalog bucket after every chunk.
//! In one process the store it writes through is the store served, so
//! nothing more is needed. Distributed, [`follow_catalog`] watches that
//! bucket and applies each summary ([`apply_summary`]): the chunk it names
//! is catalogued from its index (one read) when it continues the catalog,
//! chunks before the summary's first kept seq are forgotten (retention),
//! and only a chunk that does not continue the catalog (a missed summary,
//! a start) re-lists the stream's prefix.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use dvr_archive::store::{ArchiveStore, Followed};
use dvr_archive::tape::{open_tape, StreamTape};
use dvr_archive::ArchiveRegistry;
use dvr_bus::{KvOp, Node};
use dvr_common::config::StreamConfig;
use dvr_common::{Clock, StreamName};
use dvr_proto::{stream_from_config_key, CatalogSummary, Versioned, CATALOG_KV_BUCKET};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::service::Packager;

/// The tapes a packager serves; see the module docs.
#[allow(
    missing_debug_implementations,
    reason = "holds the packager, which is not Debug"
)]
pub struct Tapes {
    packager: Arc<Packager>,
    node: Arc<Node>,
    registry: Arc<ArchiveRegistry>,
    clock: Arc<dyn Clock>,
    /// The settings each served stream was added with.
    served: HashMap<StreamName, StreamConfig>,
}

impl Tapes {
    pub fn new(
        packager: Arc<Packager>,
        node: Arc<Node>,
        registry: Arc<ArchiveRegistry>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            packager,
            node,
            registry,
            clock,
            served: HashMap::new(),
        }
    }

    /// Serves every stream of `streams` and nothing else: recorded streams
    /// first, then delayed channels on top of their sources. What cannot
    /// be served is put in `failing`, with why.
    pub async fn reconcile(
        &mut self,
        streams: &BTreeMap<StreamName, StreamConfig>,
        failing: &mut BTreeMap<String, String>,
    ) {
        let packager = &self.packager;
        self.served.retain(|name, config| {
            let keep = streams.get(name) == Some(config);
            if !keep {
                packager.remove_stream(name.as_str());
            }
            keep
        });
        let (delayed, recorded): (Vec<_>, Vec<_>) =
            streams.iter().partition(|(_, c)| c.is_delayed());
        for (name, config) in recorded {
            if self.served.contains_key(name) {
                continue;
            }
            match self.tape(name, config).await {
                Ok(tape) => {
                    self.packager.add_stream(tape);
                    self.packager
                        .set_origins(name.as_str(), restreamed_from(config));
                    self.packager
                        .set_on_demand(name.as_str(), config.on_demand_ms);
                    self.served.insert(name.clone(), config.clone());
                }
                Err(e) => {
                    warn!(stream = %name, error = %format!("{e:#}"), "cannot serve the stream");
                    failing.insert(name.to_string(), format!("packager: {e:#}"));
                }
            }
        }
        for (name, config) in delayed {
            if self.served.contains_key(name) {
                continue;
            }
            let Some((source, delay_ms)) = config.delayed_source() else {
                continue;
            };
            match self
                .packager
                .add_delayed(name.as_str(), source.as_str(), delay_ms)
            {
                Ok(()) => {
                    info!(stream = %name, source = %source, delay_s = delay_ms / 1000, "delayed channel");
                    self.served.insert(name.clone(), config.clone());
                }
                Err(_) => {
                    failing.insert(
                        name.to_string(),
                        format!("packager: its source {source} is not served"),
                    );
                }
            }
        }
    }

    async fn tape(&self, name: &StreamName, config: &StreamConfig) -> anyhow::Result<StreamTape> {
        Ok(open_tape(
            &self.registry,
            &self.node,
            name,
            config,
            Arc::clone(&self.clock),
        )
        .await?)
    }
}

/// Where a restreamed stream is on the origins its `m4f://` inputs name,
/// in their order: `http://host:port/STREAM` each.
fn restreamed_from(config: &StreamConfig) -> Vec<String> {
    config
        .inputs
        .iter()
        .filter_map(|i| match i {
            dvr_common::config::InputUrl::M4f { origin, stream } => {
                Some(format!("{origin}{stream}"))
            }
            _ => None,
        })
        .collect()
}

/// Brings `store`'s catalog of `stream` up to a recorder's announcement;
/// see the module docs. Failures are logged: the next summary tries again.
pub async fn apply_summary(store: &ArchiveStore, stream: &StreamName, summary: &CatalogSummary) {
    // A replication's chunk older than the newest: cataloged first (a
    // re-listing, as it does not continue the catalog).
    if let Some(backfilled) = &summary.backfilled {
        if let Err(e) = store
            .follow_chunk(stream, backfilled, summary.first_seq)
            .await
        {
            warn!(stream = %stream, error = %e, "cannot catalog a replicated chunk");
        }
    }
    match store
        .follow_chunk(stream, &summary.last_chunk, summary.first_seq)
        .await
    {
        Ok(Followed::Reloaded(report)) => {
            debug!(stream = %stream, chunks = report.chunks, "catalog re-listed");
        }
        Ok(Followed::Applied | Followed::Known) => {}
        Err(e) => warn!(stream = %stream, error = %e, "cannot refresh the catalog"),
    }
}

/// Distributed packagers: follows the recorders' announcements (in other
/// processes) for every stream this process opened. Runs until aborted.
pub async fn follow_catalog(node: Arc<Node>, registry: Arc<ArchiveRegistry>) {
    loop {
        let watch = match node.kv(CATALOG_KV_BUCKET).await {
            Ok(kv) => kv.watch("").await,
            Err(e) => Err(e),
        };
        let mut watch = match watch {
            Ok(w) => w,
            Err(e) => {
                debug!(error = %format!("{e:#}"), "cannot watch the catalog yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(Ok(entry)) = watch.next().await {
            if entry.op != KvOp::Put {
                continue;
            }
            let (Some(stream), Ok(summary)) = (
                stream_from_config_key(&entry.key),
                CatalogSummary::decode(&entry.value),
            ) else {
                continue;
            };
            let Some(store) = registry.stream_store(&stream) else {
                continue;
            };
            apply_summary(&store, &stream, &summary).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
