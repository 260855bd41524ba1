//! The archived part of a stream's tape, read from an [`ArchiveStore`].
//!
//! A segment whose chunk object turns out missing or short is answered as
//! "nothing recorded" (404) with the segment's time in the message; the
//! store has by then marked the chunk damaged, so the next plan shows the
//! hole as a gap.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use dvr_common::error::{ErrorKind, HasErrorKind};
use dvr_common::{StreamName, UtcMs};

use super::{meta_of, ArchivedTape, Location, TapeError, TapeSegment};
use crate::store::{ArchiveStore, StoreError};
use crate::{ChunkKey, Lock, PlanItem, RecordRun};

/// One stream's chunks in an archive store.
#[derive(Debug, Clone)]
pub struct StoreTape {
    stream: StreamName,
    store: Arc<ArchiveStore>,
}

impl StoreTape {
    /// The archive of `stream` in `store`.
    pub fn new(stream: StreamName, store: Arc<ArchiveStore>) -> Self {
        Self { stream, store }
    }

    fn error(&self, e: &StoreError) -> TapeError {
        TapeError::Storage {
            stream: self.stream.to_string(),
            reason: e.to_string(),
            transient: e.error_kind().is_transient(),
        }
    }
}

#[async_trait]
impl ArchivedTape for StoreTape {
    async fn segments_between(
        &self,
        from: UtcMs,
        to: UtcMs,
    ) -> Result<Vec<TapeSegment>, TapeError> {
        let plan = self
            .store
            .plan(&self.stream, from, to)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(plan
            .into_iter()
            .filter_map(|item| match item {
                PlanItem::Segment(s) => Some(TapeSegment {
                    meta: meta_of(&s.record),
                    location: Location::Archive {
                        key: s.ts_key,
                        offset: s.record.offset,
                    },
                }),
                PlanItem::Gap { .. } => None,
            })
            .collect())
    }

    async fn record_runs(&self, from: UtcMs, to: UtcMs) -> Result<Vec<RecordRun>, TapeError> {
        self.store
            .record_runs(&self.stream, from, to)
            .await
            .map_err(|e| self.error(&e))
    }

    async fn read(&self, segment: &TapeSegment) -> Result<Bytes, TapeError> {
        let Location::Archive { key, offset } = &segment.location else {
            return Err(TapeError::Storage {
                stream: self.stream.to_string(),
                reason: "not an archived segment".into(),
                transient: false,
            });
        };
        match self
            .store
            .read(key, *offset..offset + segment.meta.bytes)
            .await
        {
            Ok(bytes) => Ok(bytes),
            Err(StoreError::Damaged { reason, .. }) => Err(TapeError::NothingRecorded(format!(
                "segment of {} at {} ({}) is lost from the archive: {reason}",
                self.stream,
                segment.meta.utc_start,
                segment.meta.utc_start.as_secs()
            ))),
            Err(e) => Err(self.error(&e)),
        }
    }

    async fn sample_tables(&self, chunk_key: &str) -> Result<Option<Bytes>, TapeError> {
        let Ok((key, _)) = ChunkKey::parse(chunk_key) else {
            return Ok(None);
        };
        match self.store.storage().get(&key.smp_key()).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.error_kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(&e.into())),
        }
    }

    fn ranges(&self, from: UtcMs, to: UtcMs) -> Vec<(UtcMs, UtcMs)> {
        self.store
            .ranges(&self.stream, from, to)
            .into_iter()
            .map(|r| (r.from, r.to))
            .collect()
    }

    async fn locks(&self, now: UtcMs) -> Result<Vec<Lock>, TapeError> {
        Ok(self
            .store
            .locks_cached(&self.stream, now)
            .await
            .map_err(|e| self.error(&e))?
            .locks)
    }

    async fn breaks_before(&self, t: UtcMs) -> Result<u64, TapeError> {
        self.store
            .breaks_before(&self.stream, t)
            .await
            .map_err(|e| self.error(&e))
    }

    fn last_seq(&self) -> Option<u64> {
        self.store.last_seq(&self.stream)
    }

    async fn extent(&self) -> Result<Option<(UtcMs, UtcMs)>, TapeError> {
        Ok(self.store.extent(&self.stream).map(|r| (r.from, r.to)))
    }
}
