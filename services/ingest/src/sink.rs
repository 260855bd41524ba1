//! Where segments go. The live log implements [`SegmentSink`]; a channel and
//! a `Vec` implement it too, for tools and tests.

use std::convert::Infallible;
use std::future::Future;

use dvr_media::Segment;
use tokio::sync::mpsc;

/// Receives a stream's segments, in `seq` order.
pub trait SegmentSink: Send {
    /// Why a segment could not be stored.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Stores one segment. Ingest waits for it, so a slow sink slows ingest
    /// (live inputs then lose data in their socket buffers, never in memory).
    fn append(&mut self, segment: Segment) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl SegmentSink for mpsc::Sender<Segment> {
    type Error = mpsc::error::SendError<Segment>;

    async fn append(&mut self, segment: Segment) -> Result<(), Self::Error> {
        self.send(segment).await
    }
}

impl SegmentSink for Vec<Segment> {
    type Error = Infallible;

    async fn append(&mut self, segment: Segment) -> Result<(), Self::Error> {
        self.push(segment);
        Ok(())
    }
}
