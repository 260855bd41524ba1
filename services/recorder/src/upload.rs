//! A chunk's bytes read straight from the live log, as an upload source.
//!
//! The live log (local disk when embedded, JetStream when distributed) is
//! the recorder's spool: the segments of the
//! window being recorded are already there, and stay there until the chunk
//! holding them is in the archive. Uploading streams them from it one
//! segment at a time, so a chunk of any size costs one segment of memory,
//! and a retry reads them again from the start.
//!
//! On the way through, each segment's MP4 sample table is taken
//! ([`SampleTable::from_ts`], one demux pass over bytes already in memory)
//! so the recorder can store the chunk's `.smp` beside it without reading
//! the live log twice. A segment whose table cannot be made (no program
//! tables, no track MP4 can carry) is left out of it; readers then compute
//! it from the segment, and fail the same way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use dvr_bus::LiveLog;
use dvr_common::StreamName;
use dvr_media::mp4::{encode_chunk_tables, SampleTable};
use dvr_media::SegmentMeta;
use dvr_storage::UploadSource;
use futures::stream::BoxStream;
use futures::StreamExt;

/// The segments of one chunk, in order, from a stream's live log.
#[derive(Debug)]
pub struct LiveLogUpload {
    stream: StreamName,
    log: Arc<dyn LiveLog>,
    segments: Vec<SegmentMeta>,
    len: u64,
    /// Each segment's sample table, by seq, as the upload went past it.
    tables: Arc<Mutex<BTreeMap<u64, SampleTable>>>,
}

impl LiveLogUpload {
    /// The chunk made of `segments` (in seq order).
    pub fn new(stream: StreamName, log: Arc<dyn LiveLog>, segments: &[SegmentMeta]) -> Self {
        let len = segments.iter().map(|m| m.bytes).sum();
        Self {
            stream,
            log,
            segments: segments.to_vec(),
            len,
            tables: Arc::default(),
        }
    }

    /// The chunk's `.smp` bytes: the tables of the segments the last
    /// upload read, `None` when it could make none.
    pub fn sample_tables(&self) -> Option<Bytes> {
        let tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let list: Vec<(u64, SampleTable)> = self
            .segments
            .iter()
            .filter_map(|m| tables.get(&m.seq).map(|t| (m.seq, t.clone())))
            .collect();
        (!list.is_empty()).then(|| Bytes::from(encode_chunk_tables(&list)))
    }
}

impl UploadSource for LiveLogUpload {
    fn len(&self) -> u64 {
        self.len
    }

    fn open(&self) -> BoxStream<'static, std::io::Result<Bytes>> {
        let log = Arc::clone(&self.log);
        let tables = Arc::clone(&self.tables);
        futures::stream::iter(self.segments.clone())
            .then(move |meta| {
                let log = Arc::clone(&log);
                let tables = Arc::clone(&tables);
                let seq = meta.seq;
                async move {
                    match log.get(seq).await {
                        Ok(Some(segment)) => {
                            if let Ok(table) = SampleTable::from_ts(
                                &segment.payload,
                                meta.pts_start,
                                meta.duration,
                            ) {
                                tables
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .insert(seq, table);
                            }
                            Ok(segment.payload)
                        }
                        Ok(None) => Err(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("segment {seq} is no longer in the live log"),
                        )),
                        Err(e) => Err(std::io::Error::other(e)),
                    }
                }
            })
            .boxed()
    }

    fn origin(&self) -> String {
        match (self.segments.first(), self.segments.last()) {
            (Some(first), Some(last)) => format!(
                "the live log of {} (segments {} to {})",
                self.stream, first.seq, last.seq
            ),
            _ => format!("the live log of {} (no segments)", self.stream),
        }
    }
}
