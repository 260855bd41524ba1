//! The [`LiveLog`] trait: one stream's recent segments, whatever holds them.
//!
//! Ingest appends, the recorder reads by seq and trims what it archived, the
//! packager reads by time and waits for new segments. The embedded
//! [`SegmentLog`] implements it by delegating to its own (synchronous)
//! methods; an append, a file write that may wait for the disk, runs in
//! `block_in_place` on a multi-threaded runtime so the async threads go on
//! meanwhile. The NATS implementation is [`crate::nats::NatsLiveLog`]. Both
//! pass the conformance suite in `tests/conformance/`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use dvr_common::UtcMs;
use dvr_media::{CodecSummary, Segment, SegmentMeta};
use tokio::sync::watch;

use crate::error::BusError;
use crate::segment_log::SegmentLog;

/// One stream's live log.
#[async_trait]
pub trait LiveLog: Send + Sync + fmt::Debug {
    /// Appends a segment; its `seq` must be greater than the newest one's.
    /// `Ok` means it is durable in the log (and survives a restart of
    /// whatever holds it).
    async fn append(&self, segment: &Segment) -> Result<(), BusError>;

    /// A segment with its bytes, `None` when not (or no longer) in the log.
    async fn get(&self, seq: u64) -> Result<Option<Segment>, BusError>;

    /// Metadata of the segments with `seq` greater than `after` (all for
    /// `None`), oldest first.
    async fn segments_after(&self, after: Option<u64>) -> Result<Vec<SegmentMeta>, BusError>;

    /// Metadata of the segments overlapping `[from, to)`, oldest first.
    async fn segments_between(&self, from: UtcMs, to: UtcMs) -> Result<Vec<SegmentMeta>, BusError>;

    /// The newest segment's metadata.
    async fn newest(&self) -> Result<Option<SegmentMeta>, BusError>;

    /// The oldest segment's metadata.
    async fn oldest(&self) -> Result<Option<SegmentMeta>, BusError>;

    /// Metadata of the newest `n` segments, oldest first.
    async fn last(&self, n: usize) -> Result<Vec<SegmentMeta>, BusError>;

    /// The tracks of segment `seq`, `None` when it is not in the log.
    /// Consecutive segments with the same tracks share one `Arc`.
    async fn codecs(&self, seq: u64) -> Result<Option<Arc<CodecSummary>>, BusError>;

    /// Drops segments that end at or before `before` and have
    /// `seq < keep_from_seq` (never what the recorder has not copied). An
    /// implementation may keep some of them (the embedded log drops whole
    /// files only); it never drops any other. Returns how many it dropped.
    async fn trim(&self, before: UtcMs, keep_from_seq: u64) -> Result<usize, BusError>;

    /// Watches appends: the receiver holds the newest segment's metadata.
    fn subscribe(&self) -> watch::Receiver<Option<SegmentMeta>>;
}

#[async_trait]
impl LiveLog for SegmentLog {
    async fn append(&self, segment: &Segment) -> Result<(), BusError> {
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_threaded {
            tokio::task::block_in_place(|| SegmentLog::append(self, segment))
        } else {
            SegmentLog::append(self, segment)
        }
    }

    async fn get(&self, seq: u64) -> Result<Option<Segment>, BusError> {
        SegmentLog::get(self, seq)
    }

    async fn segments_after(&self, after: Option<u64>) -> Result<Vec<SegmentMeta>, BusError> {
        Ok(SegmentLog::segments_after(self, after))
    }

    async fn segments_between(&self, from: UtcMs, to: UtcMs) -> Result<Vec<SegmentMeta>, BusError> {
        Ok(SegmentLog::segments_between(self, from, to))
    }

    async fn newest(&self) -> Result<Option<SegmentMeta>, BusError> {
        Ok(SegmentLog::newest(self))
    }

    async fn oldest(&self) -> Result<Option<SegmentMeta>, BusError> {
        Ok(SegmentLog::oldest(self))
    }

    async fn last(&self, n: usize) -> Result<Vec<SegmentMeta>, BusError> {
        Ok(SegmentLog::last(self, n))
    }

    async fn codecs(&self, seq: u64) -> Result<Option<Arc<CodecSummary>>, BusError> {
        Ok(SegmentLog::codecs(self, seq))
    }

    async fn trim(&self, before: UtcMs, keep_from_seq: u64) -> Result<usize, BusError> {
        SegmentLog::trim(self, before, keep_from_seq)
    }

    fn subscribe(&self) -> watch::Receiver<Option<SegmentMeta>> {
        SegmentLog::subscribe(self)
    }
}
