//! A stream's tape from its settings: its live log, and its archive when
//! it records, opened through the process's [`ArchiveRegistry`] so every
//! caller of one process (packager, API, ingest) reads one catalog.

use std::sync::Arc;

use dvr_bus::{BusError, Node};
use dvr_common::config::StreamConfig;
use dvr_common::{Clock, StreamName};

use super::{ArchivedTape, StoreTape, StreamTape};
use crate::registry::{ArchiveRegistry, StreamArchiveError};

/// Why a stream's tape cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenTapeError {
    /// Its live log cannot be opened.
    #[error("its live log: {0}")]
    LiveLog(#[from] BusError),
    /// Its archive cannot be opened.
    #[error(transparent)]
    Archive(#[from] StreamArchiveError),
}

/// The tape of stream `name` with settings `config`: its live log, joined
/// to its archive when `dvr` is configured, recording on its schedule.
/// A delayed channel's tape is its source's; see [`StreamTape::delayed`].
pub async fn open_tape(
    registry: &ArchiveRegistry,
    node: &Node,
    name: &StreamName,
    config: &StreamConfig,
    clock: Arc<dyn Clock>,
) -> Result<StreamTape, OpenTapeError> {
    let log = node.live_log(name).await?;
    let archived = match &config.dvr {
        Some(dvr) => {
            let store = registry
                .open_stream(name, dvr, config.cache.as_ref(), clock)
                .await?;
            Some(Arc::new(StoreTape::new(name.clone(), store)) as Arc<dyn ArchivedTape>)
        }
        None => None,
    };
    let schedule = config.dvr.as_ref().and_then(|d| d.schedule.clone());
    Ok(StreamTape::new(name.to_string(), log, archived).with_schedule(schedule))
}
