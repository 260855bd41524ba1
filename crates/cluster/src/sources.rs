//! `sources:`: other origins whose streams this one restreams, the seeds'
//! `source HOST:PORT { only …; except …; extra config }`.
//!
//! Every [`REFRESH`] the follower asks each source for its stream list (a
//! signed `GET /api/v1/streams`) and keeps the streams bucket equal to what
//! the lists give: each stream a source lists and takes (`only`, `except`)
//! becomes a stream here whose inputs are `m4f://` on every source taking
//! it, in the order of `sources:` (failover sources, seamless between
//! origins carrying one capture), recorded with the first of them's `dvr`.
//! A source that cannot be asked keeps its last list, so its streams stay
//! (and fail over) while it is down. A stream configured here, in the file
//! or through the API, wins: the follower only changes or deletes the
//! streams it put there itself, which it notes in
//! [`dvr_proto::SOURCES_KV_BUCKET`].
//!
//! A stream outside a source's `only` (and not in its `except`) is the
//! seeds' grey list: it is taken as an on-demand stream
//! ([`StreamConfig::on_demand_ms`]), whose ingest runs only while viewers
//! ask for it, unless another source takes it as static.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_bus::{BusError, Kv};
use dvr_common::config::{SourceConfig, StreamConfig, Taken, DEFAULT_ON_DEMAND_MS};
use dvr_common::{Clock, StreamName};
use dvr_proto::stream_config_key;
use tracing::{info, warn};

use crate::client::FeedClient;

/// How often the sources' stream lists are read.
pub const REFRESH: Duration = Duration::from_secs(30);

/// The streams `sources` give, by name, from each source's last list
/// (`None`: never read).
pub fn derive_streams(
    sources: &[SourceConfig],
    lists: &[Option<Vec<StreamName>>],
) -> BTreeMap<StreamName, StreamConfig> {
    let mut out: BTreeMap<StreamName, StreamConfig> = BTreeMap::new();
    for (source, list) in sources.iter().zip(lists) {
        for name in list.iter().flatten() {
            let Some(taken) = source.takes(name.as_str()) else {
                continue;
            };
            let stream = out.entry(name.clone()).or_insert_with(|| StreamConfig {
                inputs: Vec::new(),
                dvr: source.dvr.clone(),
                cache: None,
                auth: None,
                on_demand_ms: Some(DEFAULT_ON_DEMAND_MS),
            });
            // On demand only while no source takes it as static.
            if taken == Taken::Static {
                stream.on_demand_ms = None;
            }
            stream.inputs.push(source.input(name));
        }
    }
    out
}

/// Keeps the streams bucket equal to the sources' lists; see the module docs.
#[derive(Debug)]
pub struct SourcesFollower {
    sources: Vec<SourceConfig>,
    client: FeedClient,
    streams: Arc<dyn Kv>,
    taken: Arc<dyn Kv>,
    clock: Arc<dyn Clock>,
    lists: Vec<Option<Vec<StreamName>>>,
}

impl SourcesFollower {
    /// A follower of `sources` writing into `streams` (the streams bucket)
    /// and noting what it wrote in `taken` (the sources bucket).
    pub fn new(
        sources: Vec<SourceConfig>,
        client: FeedClient,
        streams: Arc<dyn Kv>,
        taken: Arc<dyn Kv>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let lists = vec![None; sources.len()];
        Self {
            sources,
            client,
            streams,
            taken,
            clock,
            lists,
        }
    }

    /// Refreshes now, then every [`REFRESH`], for ever.
    pub async fn run(mut self) {
        loop {
            if let Err(e) = self.refresh().await {
                warn!(error = %e, "sources: cannot update the streams bucket");
            }
            tokio::time::sleep(REFRESH).await;
        }
    }

    /// Reads every source's list once and brings the streams bucket to it.
    pub async fn refresh(&mut self) -> Result<(), BusError> {
        for (i, source) in self.sources.iter().enumerate() {
            match self.client.streams(&source.url, self.clock.now()).await {
                Ok(list) => self.lists[i] = Some(list),
                Err(e) => {
                    warn!(source = %source.url, error = %e, "sources: cannot list the source's streams; keeping its last list");
                }
            }
        }
        let wanted = derive_streams(&self.sources, &self.lists);
        for (name, config) in &wanted {
            let key = stream_config_key(name);
            let value = Bytes::from(serde_json::to_vec(config).expect("stream settings serialize"));
            let ours = self.taken.get(&key).await?.is_some();
            match self.streams.get(&key).await? {
                // Configured here: it wins.
                Some(_) if !ours => continue,
                Some(current) if current.value == value => continue,
                _ => {}
            }
            self.taken.put(&key, Bytes::new()).await?;
            self.streams.put(&key, value).await?;
            info!(stream = %name, inputs = config.inputs.len(), "sources: stream taken");
        }
        for entry in self.taken.list("").await? {
            let still = wanted
                .keys()
                .any(|name| stream_config_key(name) == entry.key);
            if !still {
                self.streams.delete(&entry.key).await?;
                self.taken.delete(&entry.key).await?;
                info!(stream = %entry.key, "sources: stream no longer listed, removed");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvr_common::config::InputUrl;

    fn source(url: &str, only: &[&str], except: &[&str]) -> SourceConfig {
        SourceConfig {
            url: url.into(),
            only: only.iter().map(|s| (*s).to_owned()).collect(),
            except: except.iter().map(|s| (*s).to_owned()).collect(),
            dvr: None,
        }
    }

    fn names(list: &[&str]) -> Option<Vec<StreamName>> {
        Some(list.iter().map(|n| StreamName::new(n).unwrap()).collect())
    }

    #[test]
    fn sources_listing_a_stream_are_its_failover_inputs_in_order() {
        let sources = [
            source("http://a:1/", &["ch*"], &["ch-test"]),
            source("http://b:1/", &[], &[]),
        ];
        let lists = [
            names(&["ch1", "ch-test", "news"]),
            names(&["ch1", "ch-test"]),
        ];
        let got = derive_streams(&sources, &lists);
        let inputs = |n: &str| -> Vec<String> {
            got[&StreamName::new(n).unwrap()]
                .inputs
                .iter()
                .map(InputUrl::to_string)
                .collect()
        };
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(inputs("ch1"), ["m4f://a:1/ch1", "m4f://b:1/ch1"]);
        // a's except leaves ch-test to b.
        assert_eq!(inputs("ch-test"), ["m4f://b:1/ch-test"]);
        // Outside a's only, news is on demand; b's static ch1 is static
        // whatever a says.
        assert_eq!(inputs("news"), ["m4f://a:1/news"]);
        let on_demand = |n: &str| got[&StreamName::new(n).unwrap()].on_demand_ms;
        assert_eq!(on_demand("news"), Some(DEFAULT_ON_DEMAND_MS));
        assert_eq!(on_demand("ch1"), None);
        assert_eq!(on_demand("ch-test"), None);
        // A source never listed gives nothing.
        assert!(derive_streams(&sources, &[None, None]).is_empty());
    }
}
