//! A chunk's bytes read straight from the live log, as an upload source.
//!
//! The live log (local disk when embedded, JetStream when distributed) is
//! the recorder's spool: the segments of the
//! window being recorded are already there, and stay there until the chunk
//! holding them is in the archive. Uploading streams them from it one
//! segment at a time, so a chunk of any size costs one segment of memory,
//! and a retry reads them again from the start.

use std::sync::Arc;

use bytes::Bytes;
use dvr_bus::LiveLog;
use dvr_common::StreamName;
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
        }
    }
}

impl UploadSource for LiveLogUpload {
    fn len(&self) -> u64 {
        self.len
    }

    fn open(&self) -> BoxStream<'static, std::io::Result<Bytes>> {
        let log = Arc::clone(&self.log);
        let seqs: Vec<u64> = self.segments.iter().map(|m| m.seq).collect();
        futures::stream::iter(seqs)
            .then(move |seq| {
                let log = Arc::clone(&log);
                async move {
                    match log.get(seq).await {
                        Ok(Some(segment)) => Ok(segment.payload),
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
