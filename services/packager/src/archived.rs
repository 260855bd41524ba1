//! The archived part of a stream's tape, read from an [`ArchiveStore`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use dvr_archive::store::{ArchiveStore, StoreError};
use dvr_archive::PlanItem;
use dvr_common::error::HasErrorKind;
use dvr_common::{StreamName, UtcMs};
use dvr_media::SegmentMeta;

use crate::error::PackagerError;
use crate::tape::{ArchivedTape, Location, TapeSegment};

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

    fn error(&self, e: &StoreError) -> PackagerError {
        PackagerError::Storage {
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
    ) -> Result<Vec<TapeSegment>, PackagerError> {
        let plan = self
            .store
            .plan(&self.stream, from, to)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(plan
            .into_iter()
            .filter_map(|item| match item {
                PlanItem::Segment(s) => Some(TapeSegment {
                    meta: SegmentMeta {
                        seq: s.record.seq,
                        utc_start: s.record.utc_start,
                        duration: s.record.duration,
                        pts_start: s.record.pts_start,
                        bytes: u64::from(s.record.length),
                        flags: s.record.flags,
                    },
                    location: Location::Archive {
                        key: s.ts_key,
                        offset: s.record.offset,
                    },
                }),
                PlanItem::Gap { .. } => None,
            })
            .collect())
    }

    async fn read(&self, segment: &TapeSegment) -> Result<Bytes, PackagerError> {
        let Location::Archive { key, offset } = &segment.location else {
            return Err(PackagerError::Storage {
                stream: self.stream.to_string(),
                reason: "not an archived segment".into(),
                transient: false,
            });
        };
        self.store
            .read(key, *offset..offset + segment.meta.bytes)
            .await
            .map_err(|e| self.error(&e))
    }

    async fn extent(&self) -> Result<Option<(UtcMs, UtcMs)>, PackagerError> {
        Ok(self.store.extent(&self.stream).map(|r| (r.from, r.to)))
    }
}
