//! One stream's ingest: inputs → failover → segmenter → sink.
//!
//! Each input runs in its own task and sends what it reads, stamped with its
//! arrival time, over one channel; the stream's loop hands events to the
//! [`Failover`] state machine and does what it says to the [`Segmenter`].
//!
//! The segmenter is given a clock that the loop sets to each chunk's arrival
//! time before pushing it. Live chunks arrive "now" anyway; a backup's
//! backlog replayed at a switch keeps the time it really arrived, which is
//! what lets the tape resume where the lost input stopped instead of after
//! the detection timeout. A chunk whose source knows its UTC (HLS program
//! date-time) carries it as a hint, handed to the segmenter before the bytes.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dvr_common::{Clock, SimulatedClock};
use dvr_media::{Segment, Segmenter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::IngestConfig;
use crate::error::IngestError;
use crate::failover::{Action, Chunk, Failover};
use crate::input::{open_source, InputUrl};
use crate::sink::SegmentSink;
use crate::stats::IngestStats;

/// Events from the input tasks.
#[derive(Debug)]
enum InputEvent {
    Data(Chunk),
    Error(IngestError),
    Ended,
}

/// Pause before asking a failed source again (HTTP adds its own backoff).
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Reads one input forever (or to its end), sending what it reads.
async fn run_input(
    index: usize,
    url: InputUrl,
    config: Arc<IngestConfig>,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<(usize, InputEvent)>,
) {
    let mut source = loop {
        let publish = config.publish.as_ref();
        match open_source(
            &url,
            &config.http,
            Arc::clone(&clock),
            &config.name,
            publish,
        )
        .await
        {
            Ok(source) => break source,
            Err(e) => {
                if tx.send((index, InputEvent::Error(e))).await.is_err() {
                    return;
                }
                tokio::time::sleep(RETRY_PAUSE * 5).await;
            }
        }
    };
    loop {
        let event = match source.next_chunk().await {
            Ok(Some(chunk)) => InputEvent::Data(Chunk {
                data: chunk.data,
                arrival: clock.now(),
                utc_hint: chunk.utc_hint,
            }),
            Ok(None) => InputEvent::Ended,
            Err(e) => InputEvent::Error(e),
        };
        let pause = matches!(event, InputEvent::Error(_));
        let ended = matches!(event, InputEvent::Ended);
        if tx.send((index, event)).await.is_err() || ended {
            return;
        }
        if pause {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// Aborts the input tasks when the stream loop ends, however it ends.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

/// The stream loop's state.
struct Stream<'a, S> {
    name: &'a str,
    inputs: &'a [InputUrl],
    clock: Arc<dyn Clock>,
    /// The segmenter's clock: set to each chunk's arrival before a push.
    seg_clock: SimulatedClock,
    segmenter: Segmenter,
    sink: S,
    counters: IngestStats,
    shared: Arc<Mutex<IngestStats>>,
    metrics: crate::metrics::StreamMetrics,
}

impl<S: SegmentSink> Stream<'_, S> {
    async fn emit(&mut self, segment: Option<Segment>) -> Result<(), IngestError> {
        let Some(segment) = segment else {
            return Ok(());
        };
        let seq = segment.seq;
        self.counters.segments += 1;
        self.sink
            .append(segment)
            .await
            .map_err(|e| IngestError::Sink {
                stream: self.name.to_owned(),
                seq,
                source: Box::new(e),
            })
    }

    async fn push(&mut self, chunk: &Chunk) -> Result<(), IngestError> {
        self.seg_clock.set(chunk.arrival);
        if let Some(utc) = chunk.utc_hint {
            self.segmenter.hint_utc(utc);
        }
        for segment in self.segmenter.push(&chunk.data) {
            self.emit(Some(segment)).await?;
        }
        Ok(())
    }

    /// Ends the current run: the open segment is closed at what was received.
    async fn end_run(&mut self) -> Result<(), IngestError> {
        self.seg_clock.set(self.clock.now());
        for segment in self.segmenter.finish() {
            self.emit(Some(segment)).await?;
        }
        Ok(())
    }

    fn input_name(&self, index: Option<usize>) -> String {
        index
            .and_then(|i| self.inputs.get(i))
            .map_or_else(|| "none".to_owned(), ToString::to_string)
    }

    async fn apply(&mut self, action: Action) -> Result<(), IngestError> {
        match action {
            Action::None => {}
            Action::Push(chunk) => self.push(&chunk).await?,
            Action::Switch { from, to, replay } => {
                // From no input (start, or after every input was lost) the
                // run has already ended; from a playing one, end it now.
                if from.is_some() {
                    self.end_run().await?;
                    self.counters.switches += 1;
                }
                info!(
                    stream = %self.name,
                    from = %self.input_name(from),
                    to = %self.input_name(Some(to)),
                    replayed = replay.len(),
                    "source switched"
                );
                for chunk in &replay {
                    self.push(chunk).await?;
                }
            }
            Action::Lost { from } => {
                self.end_run().await?;
                self.counters.signal_losses += 1;
                warn!(stream = %self.name, input = %self.input_name(Some(from)), "signal lost on every input");
            }
        }
        Ok(())
    }

    async fn tick(&mut self, failover: &mut Failover) -> Result<(), IngestError> {
        let now = self.clock.now();
        let action = failover.on_tick(now);
        self.apply(action).await?;
        self.seg_clock.set(now);
        let ended = self.segmenter.check_signal();
        if !ended.is_empty() {
            self.counters.signal_losses += 1;
            warn!(stream = %self.name, "no data: segment closed");
        }
        for segment in ended {
            self.emit(Some(segment)).await?;
        }
        Ok(())
    }

    fn publish(&mut self, active: Option<usize>) {
        let demux = self.segmenter.stats();
        self.counters.bytes = demux.bytes_in;
        self.counters.packets = demux.packets;
        self.counters.cc_errors = demux.cc_errors;
        self.counters.active_input = active;
        self.counters.demux = demux;
        self.metrics.observe(&self.counters, self.clock.now());
        *self.shared.lock().unwrap_or_else(PoisonError::into_inner) = self.counters.clone();
    }
}

/// Runs one stream's ingest until `shutdown` completes or every input has
/// ended; the open segment is then closed and delivered. `stats` is kept
/// up to date as data flows.
pub async fn run_stream<S: SegmentSink>(
    config: IngestConfig,
    clock: Arc<dyn Clock>,
    sink: S,
    stats: Arc<Mutex<IngestStats>>,
    shutdown: impl Future<Output = ()>,
) -> Result<IngestStats, IngestError> {
    if config.inputs.is_empty() {
        return Err(IngestError::NoInputs {
            stream: config.name,
        });
    }
    // Another origin's tape, taken as it is: no segmenter.
    if config
        .inputs
        .iter()
        .all(|i| matches!(i, InputUrl::M4f { .. }))
    {
        return crate::restream::run_restream(config, clock, sink, stats, shutdown).await;
    }
    let timeout_ms = config.source_timeout_ms();
    let (tx, mut rx) = mpsc::channel(1024);
    // Publishes find the stream while it runs.
    let _publish_guard = config
        .publish
        .as_ref()
        .map(|hub| hub.register_stream(&config.name));
    let shared_config = Arc::new(config.clone());
    let tasks = AbortOnDrop(
        config
            .inputs
            .iter()
            .enumerate()
            .map(|(index, url)| {
                tokio::spawn(run_input(
                    index,
                    url.clone(),
                    Arc::clone(&shared_config),
                    Arc::clone(&clock),
                    tx.clone(),
                ))
            })
            .collect(),
    );
    drop(tx);
    let seg_clock = SimulatedClock::new(clock.now());
    let segmenter = Segmenter::resume(
        config.segmenter.clone(),
        Arc::new(seg_clock.clone()),
        config.resume,
    );
    let metrics = crate::metrics::StreamMetrics::new(&config.name, clock.now());
    let mut stream = Stream {
        name: &config.name,
        inputs: &config.inputs,
        clock,
        seg_clock,
        segmenter,
        sink,
        counters: IngestStats::default(),
        shared: stats,
        metrics,
    };
    let mut failover = Failover::new(config.inputs.len(), timeout_ms, config.max_backlog_bytes);
    let period = Duration::from_millis(u64::try_from(timeout_ms / 4).unwrap_or(100).clamp(10, 100));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            event = rx.recv() => {
                let Some((index, event)) = event else { break };
                let action = match event {
                    InputEvent::Data(chunk) => failover.on_data(index, chunk),
                    InputEvent::Error(e) => {
                        let now = stream.clock.now();
                        let (was_alive, action) = failover.on_error(index, false, now);
                        stream.counters.last_error = Some(format!("{}: {e}", config.inputs[index]));
                        if was_alive {
                            warn!(stream = %config.name, input = %config.inputs[index], error = %e, "input lost");
                        } else {
                            debug!(stream = %config.name, input = %config.inputs[index], error = %e, "input still down");
                        }
                        action
                    }
                    InputEvent::Ended => {
                        info!(stream = %config.name, input = %config.inputs[index], "input ended");
                        failover.on_error(index, true, stream.clock.now()).1
                    }
                };
                stream.apply(action).await?;
                if failover.all_ended() {
                    break;
                }
            }
            _ = ticker.tick() => stream.tick(&mut failover).await?,
        }
        stream.publish(failover.active());
    }
    drop(tasks);
    stream.end_run().await?;
    stream.sink.flush().await.map_err(|e| IngestError::Sink {
        stream: config.name.clone(),
        seq: stream.segmenter.next_seq(),
        source: Box::new(e),
    })?;
    stream.publish(None);
    Ok(stream.counters)
}

/// A stream's ingest running in its own task.
#[derive(Debug)]
pub struct IngestTask {
    name: String,
    stats: Arc<Mutex<IngestStats>>,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<IngestStats, IngestError>>,
}

impl IngestTask {
    /// Starts ingesting `config`'s inputs into `sink`.
    pub fn spawn<S: SegmentSink + 'static>(
        config: IngestConfig,
        clock: Arc<dyn Clock>,
        sink: S,
    ) -> IngestTask {
        let stats = Arc::new(Mutex::new(IngestStats::default()));
        let (stop, stopped) = oneshot::channel::<()>();
        let name = config.name.clone();
        let shared = Arc::clone(&stats);
        let handle = tokio::spawn(async move {
            let shutdown = async move {
                // A dropped sender stops the stream too.
                let _ = stopped.await;
            };
            run_stream(config, clock, sink, shared, shutdown).await
        });
        IngestTask {
            name,
            stats,
            stop: Some(stop),
            handle,
        }
    }

    /// The counters now.
    pub fn stats(&self) -> IngestStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the task has finished (every input ended, or an error).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Stops the ingest, delivers the last segment and returns the counters.
    pub async fn stop(mut self) -> Result<IngestStats, IngestError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join().await
    }

    /// Waits for the ingest to end on its own (every input ended).
    pub async fn join(self) -> Result<IngestStats, IngestError> {
        let name = self.name;
        let _keep_running = self.stop;
        self.handle.await.map_err(|e| IngestError::TaskDied {
            stream: name,
            reason: e.to_string(),
        })?
    }
}
