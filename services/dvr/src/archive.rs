//! One stream's archive, opened for the operator's offline tools
//! (`dvr reindex`, `dvr ctl`): from the stream's `dvr` root in a config
//! file, from an explicit `--archive URI`, or, with neither, the archive
//! the demo (`dvr run` without a config) records to.
//!
//! The tools talk to the archive directly, not to a running `dvr run`, so
//! they work while it is stopped; what they change (`locks.json`) a running
//! packager sees within its locks TTL and retention on its next pass.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use dvr_archive::store::ArchiveStore;
use dvr_archive::ArchiveRegistry;
use dvr_common::config::{root_uri, Config};
use dvr_common::StreamName;
use dvr_storage::StorageConfig;

use crate::config::RunConfig;

/// Which stream, in which archive.
#[derive(Debug, Args)]
pub struct Target {
    /// The stream.
    #[arg(long)]
    pub stream: StreamName,
    /// The YAML configuration whose `dvr` root holds the stream's archive.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The archive root instead of a config: `file:///…`, `s3://bucket/prefix`,
    /// `swift://container/prefix` (credentials from the environment).
    #[arg(long, value_name = "URI", conflicts_with = "config")]
    archive: Option<String>,
    /// Without --config or --archive: the data directory of the demo
    /// (`dvr run` without a config records to DIR/archive).
    #[arg(long, value_name = "DIR", default_value = "data")]
    data_dir: PathBuf,
}

impl Target {
    /// The archive root URI.
    pub fn root(&self) -> anyhow::Result<String> {
        if let Some(uri) = &self.archive {
            return root_uri(uri).map_err(anyhow::Error::msg);
        }
        let Some(path) = &self.config else {
            let data = std::fs::canonicalize(&self.data_dir).with_context(|| {
                format!(
                    "no --config or --archive, and the demo data directory {} does not exist",
                    self.data_dir.display()
                )
            })?;
            return Ok(format!("file://{}/archive", data.display()));
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let config = Config::from_yaml_str(&text, &path.display().to_string())?;
        let Some(stream) = config.streams.get(&self.stream) else {
            bail!("stream {} is not in {}", self.stream, path.display());
        };
        match &stream.dvr {
            Some(dvr) => Ok(dvr.root.clone()),
            None => bail!(
                "stream {} does not record (no dvr in {})",
                self.stream,
                path.display()
            ),
        }
    }

    /// The archive, checked to be reachable, with an empty catalog and no
    /// cache (a tool reads each object once). Store settings come from the
    /// config's `storage:` section when there is a config, and from the
    /// environment as always.
    pub async fn open(&self) -> anyhow::Result<Arc<ArchiveStore>> {
        let root = self.root()?;
        let storage_config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config {}", path.display()))?;
                RunConfig::from_yaml_str(&text, &path.display().to_string(), |k| {
                    std::env::var(k).ok()
                })?
                .storage
            }
            None => {
                let mut c = StorageConfig::default();
                c.apply_env(|k| std::env::var(k).ok());
                c
            }
        };
        let stream = &self.stream;
        ArchiveRegistry::new(storage_config, 0)
            .open(&root)
            .await
            .map_err(|e| anyhow!("stream {stream}: {e}"))
    }
}

/// Runs an offline tool's future on a small runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}
