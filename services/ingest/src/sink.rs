//! Where segments go. The live log implements [`SegmentSink`]; a channel and
//! a `Vec` implement it too, for tools and tests. [`Queued`] puts a short
//! queue in front of a sink whose writes can stall for seconds (a NATS
//! leader election), so the stream's loop keeps reading its inputs.

use std::convert::Infallible;
use std::future::Future;

use dvr_media::Segment;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Receives a stream's segments, in `seq` order.
pub trait SegmentSink: Send {
    /// Why a segment could not be stored.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Stores one segment. Ingest waits for it, so a slow sink slows ingest
    /// (live inputs then lose data in their socket buffers, never in memory).
    fn append(&mut self, segment: Segment) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Waits until every segment appended so far is stored (ingest calls
    /// it when the stream stops). Most sinks store in `append` already.
    fn flush(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Why a [`Queued`] sink stopped taking segments.
#[derive(Debug, thiserror::Error)]
pub enum QueuedError<E: std::error::Error + 'static> {
    /// The sink behind the queue failed (after its own retries).
    #[error(transparent)]
    Sink(E),
    /// The task writing to it died.
    #[error("the live-log writer stopped: {0}")]
    Writer(String),
}

/// A sink behind a queue of up to `capacity` segments, written in order by
/// a task of its own: a write that stalls (a NATS leader election, a slow
/// disk) holds the queue, not the stream's loop, so the inputs keep being
/// read and segmented meanwhile. A full queue slows ingest as a slow sink
/// would. The first error of the sink behind it is returned by the next
/// `append` (or `flush`); the segments queued after it are dropped with it,
/// as the sink would have refused them too.
#[derive(Debug)]
pub struct Queued<S: SegmentSink> {
    queue: Option<mpsc::Sender<Segment>>,
    writer: Option<JoinHandle<Result<(), S::Error>>>,
}

impl<S: SegmentSink + 'static> Queued<S> {
    /// Starts the writer of `sink` with room for `capacity` segments.
    pub fn spawn(mut sink: S, capacity: usize) -> Self {
        let (queue, mut queued) = mpsc::channel::<Segment>(capacity.max(1));
        let writer = tokio::spawn(async move {
            while let Some(segment) = queued.recv().await {
                sink.append(segment).await?;
            }
            sink.flush().await
        });
        Self {
            queue: Some(queue),
            writer: Some(writer),
        }
    }

    /// The writer's outcome, once it has stopped.
    async fn outcome(&mut self) -> Result<(), QueuedError<S::Error>> {
        self.queue = None;
        match self.writer.take() {
            None => Err(QueuedError::Writer("already stopped".to_owned())),
            Some(writer) => match writer.await {
                Ok(result) => result.map_err(QueuedError::Sink),
                Err(e) => Err(QueuedError::Writer(e.to_string())),
            },
        }
    }
}

impl<S: SegmentSink + 'static> SegmentSink for Queued<S> {
    type Error = QueuedError<S::Error>;

    async fn append(&mut self, segment: Segment) -> Result<(), Self::Error> {
        let sent = match &self.queue {
            Some(queue) => queue.send(segment).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped on an error: that is the answer.
        self.outcome().await?;
        Err(QueuedError::Writer("stopped without an error".to_owned()))
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.outcome().await
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Notify;

    fn segment(seq: u64) -> Segment {
        dvr_testkit::fixtures::segment(seq).build()
    }

    /// A sink that stalls until released, then stores; it fails on `fail_at`.
    struct Stalling {
        release: Arc<Notify>,
        stored: mpsc::UnboundedSender<u64>,
        fail_at: Option<u64>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("refused seq {0}")]
    struct Refused(u64);

    impl SegmentSink for Stalling {
        type Error = Refused;

        async fn append(&mut self, segment: Segment) -> Result<(), Refused> {
            self.release.notified().await;
            self.release.notify_one();
            if Some(segment.seq) == self.fail_at {
                return Err(Refused(segment.seq));
            }
            self.stored.send(segment.seq).unwrap();
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_stalled_sink_holds_the_queue_not_the_caller_and_loses_nothing() {
        let release = Arc::new(Notify::new());
        let (stored, mut got) = mpsc::unbounded_channel();
        let mut sink = Queued::spawn(
            Stalling {
                release: Arc::clone(&release),
                stored,
                fail_at: None,
            },
            8,
        );
        // Eight appends return at once while the sink is stalled.
        for seq in 0..8 {
            tokio::time::timeout(Duration::from_secs(1), sink.append(segment(seq)))
                .await
                .expect("append returns while the sink stalls")
                .unwrap();
        }
        assert!(got.try_recv().is_err(), "nothing stored yet");
        release.notify_one();
        sink.append(segment(8)).await.unwrap();
        sink.flush().await.unwrap();
        let mut seqs = Vec::new();
        while let Ok(seq) = got.try_recv() {
            seqs.push(seq);
        }
        assert_eq!(seqs, (0..9).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn the_sinks_error_comes_back_on_the_next_append() {
        let release = Arc::new(Notify::new());
        release.notify_one();
        let (stored, _got) = mpsc::unbounded_channel();
        let mut sink = Queued::spawn(
            Stalling {
                release,
                stored,
                fail_at: Some(2),
            },
            1,
        );
        let mut error = None;
        for seq in 0..10 {
            if let Err(e) = sink.append(segment(seq)).await {
                error = Some(e);
                break;
            }
        }
        let error = error.expect("the failure surfaces");
        assert_eq!(error.to_string(), "refused seq 2");
    }
}
