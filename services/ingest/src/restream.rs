//! Restreaming: a stream whose inputs are `m4f://` follows another
//! origin's tape through its segment feed (`dvr_cluster`) and appends the
//! segments to this origin's live log as they are: the same seq, UTC,
//! duration, flags and bytes, so every URL gives the same answer here as
//! there, and the recorder archives the same tape.
//!
//! The inputs are the seeds' failover sources, in priority order: the first
//! one that answers is followed; when it fails the next takes over from the
//! last seq kept, and while a backup plays the better ones are asked again
//! every [`PREFER_FIRST_EVERY`]. Origins that restream one capture carry
//! the same seqs, so a switch between them is seamless. An origin that
//! numbers its own capture of the channel (its seqs at or below ours while
//! its time runs on) is renumbered after our last seq, the first segment
//! marked as a discontinuity; segments of a time this tape already has are
//! left out, so the tape never goes back.
//!
//! A segment's codecs are read from its own PAT and PMT (every segment
//! starts with them), as the source's ingest read them.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dvr_cluster::{ClusterKey, FeedClient, FeedItem, FeedSegment, FeedStart, FeedSubscription};
use dvr_common::{Clock, StreamName, UtcMs};
use dvr_media::{probe_codecs, Segment};
use tracing::{debug, info, warn};

use crate::config::IngestConfig;
use crate::error::IngestError;
use crate::input::InputUrl;
use crate::sink::SegmentSink;
use crate::stats::IngestStats;

/// How often a backup's better sources are asked again.
pub const PREFER_FIRST_EVERY: Duration = Duration::from_secs(10);
/// Pause after every source failed, before the next round.
const ROUND_PAUSE: Duration = Duration::from_secs(1);
/// Pause after the followed feed ended, before the sources are asked again.
const LOSS_PAUSE: Duration = Duration::from_millis(250);
/// How far a segment may start before the end of the last one kept and
/// still count as next (the tape's gap tolerance).
const OVERLAP_TOLERANCE_MS: i64 = dvr_media::TIMELINE_GAP_TOLERANCE_MS;

/// One `m4f://` input.
#[derive(Clone, Debug)]
struct Origin {
    url: String,
    base: String,
    stream: StreamName,
}

/// Where the tape stands: what the next segment must follow.
#[derive(Clone, Copy, Debug, Default)]
struct Position {
    last_seq: Option<u64>,
    last_start: Option<UtcMs>,
    last_end: Option<UtcMs>,
}

impl Position {
    /// Where a feed from any source picks up: at the last segment kept (its
    /// seq is the source's own numbering only if the source restreams the
    /// same capture, so the time decides, [`place`]), or at live.
    fn start(self) -> FeedStart {
        match self.last_start.or(self.last_end) {
            Some(utc) => FeedStart::At { utc, after: None },
            None => FeedStart::Live,
        }
    }
}

/// What to do with a segment from the feed.
#[derive(Debug, PartialEq, Eq)]
enum Placement {
    /// Next on the tape, under this seq; `renumbered` when not the source's.
    Append { seq: u64, renumbered: bool },
    /// A time the tape already has.
    Skip,
}

/// Where `meta` goes after `at`.
fn place(at: &Position, seq: u64, start: UtcMs) -> Placement {
    let (Some(last_seq), Some(last_end)) = (at.last_seq, at.last_end) else {
        return Placement::Append {
            seq,
            renumbered: false,
        };
    };
    if start.0 < last_end.0 - OVERLAP_TOLERANCE_MS {
        return Placement::Skip;
    }
    if seq > last_seq {
        Placement::Append {
            seq,
            renumbered: false,
        }
    } else {
        Placement::Append {
            seq: last_seq + 1,
            renumbered: true,
        }
    }
}

struct Restream<'a, S> {
    name: &'a str,
    sink: S,
    at: Position,
    /// Whether the last segment was renumbered.
    renumbering: bool,
    counters: IngestStats,
    shared: Arc<Mutex<IngestStats>>,
    metrics: crate::metrics::StreamMetrics,
    clock: Arc<dyn Clock>,
}

impl<S: SegmentSink> Restream<'_, S> {
    async fn append(&mut self, s: FeedSegment) -> Result<(), IngestError> {
        let meta = s.meta;
        let (seq, renumbered) = match place(&self.at, meta.seq, meta.utc_start) {
            Placement::Skip => {
                debug!(
                    stream = self.name,
                    seq = meta.seq,
                    "restream: a time the tape has, left out"
                );
                return Ok(());
            }
            Placement::Append { seq, renumbered } => (seq, renumbered),
        };
        let mut flags = meta.flags;
        if renumbered && !self.renumbering {
            warn!(stream = self.name, source_seq = meta.seq, seq, "restream: the source numbers another capture; renumbered after the tape's last seq");
            flags.discontinuity = true;
            // Shown in the stream status as the discontinuity it is.
            self.counters.demux.discontinuities += 1;
        }
        self.renumbering = renumbered;
        let len = s.payload.len() as u64;
        let segment = Segment {
            seq,
            pts_start: meta.pts_start,
            duration: meta.duration,
            utc_start: meta.utc_start,
            flags,
            codecs: probe_codecs(&s.payload),
            payload: s.payload,
        };
        let end = segment.utc_end();
        self.sink
            .append(segment)
            .await
            .map_err(|e| IngestError::Sink {
                stream: self.name.to_owned(),
                seq,
                source: Box::new(e),
            })?;
        self.at = Position {
            last_seq: Some(seq),
            last_start: Some(meta.utc_start),
            last_end: Some(end),
        };
        self.counters.segments += 1;
        self.counters.bytes += len;
        self.counters.packets += len / 188;
        Ok(())
    }

    fn publish(&mut self, active: Option<usize>) {
        self.counters.active_input = active;
        self.metrics.observe(&self.counters, self.clock.now());
        *self.shared.lock().unwrap_or_else(PoisonError::into_inner) = self.counters.clone();
    }
}

/// Follows the stream's `m4f://` inputs into `sink` until `shutdown`; the
/// counters in `stats` are kept up to date.
pub async fn run_restream<S: SegmentSink>(
    config: IngestConfig,
    clock: Arc<dyn Clock>,
    sink: S,
    stats: Arc<Mutex<IngestStats>>,
    shutdown: impl Future<Output = ()>,
) -> Result<IngestStats, IngestError> {
    let invalid = |reason: String| IngestError::InvalidUrl {
        url: config
            .inputs
            .first()
            .map_or_else(String::new, ToString::to_string),
        reason,
    };
    let key: ClusterKey = config
        .cluster_key
        .clone()
        .ok_or_else(|| invalid("m4f:// needs the cluster_key".to_owned()))?;
    let client = FeedClient::new(key).map_err(invalid)?;
    let origins: Vec<Origin> = config
        .inputs
        .iter()
        .filter_map(|i| match i {
            InputUrl::M4f { origin, stream } => Some(Origin {
                url: i.to_string(),
                base: origin.clone(),
                stream: stream.clone(),
            }),
            _ => None,
        })
        .collect();
    let resume = config.resume;
    let mut run = Restream {
        name: &config.name,
        sink,
        at: Position {
            last_seq: resume.tape_end.and(resume.next_seq.checked_sub(1)),
            last_start: None,
            last_end: resume.tape_end,
        },
        renumbering: false,
        counters: IngestStats::default(),
        shared: stats,
        metrics: crate::metrics::StreamMetrics::new(&config.name, clock.now()),
        clock: Arc::clone(&clock),
    };
    tokio::pin!(shutdown);
    let mut playing: Option<usize> = None;
    let mut after_loss = false;
    'rounds: loop {
        // A feed that ended is not asked again at once: one that answers
        // and closes straight away would otherwise be asked in a spin.
        if std::mem::take(&mut after_loss) {
            tokio::select! {
                biased;
                () = &mut shutdown => break 'rounds,
                () = tokio::time::sleep(LOSS_PAUSE) => {}
            }
        }
        // The first source that answers, in priority order.
        let mut followed = None;
        for (i, origin) in origins.iter().enumerate() {
            tokio::select! {
                biased;
                () = &mut shutdown => break 'rounds,
                opened = client.subscribe(&origin.base, &origin.stream, run.at.start(), clock.now()) => match opened {
                    Ok(sub) => {
                        followed = Some((i, sub));
                        break;
                    }
                    Err(e) => {
                        warn!(stream = %config.name, input = %origin.url, error = %e, "restream source unavailable");
                        run.counters.last_error = Some(format!("{}: {e}", origin.url));
                    }
                },
            }
        }
        let Some((mut index, mut sub)) = followed else {
            if playing.take().is_some() {
                run.counters.signal_losses += 1;
                warn!(stream = %config.name, "restream: every source is lost");
            }
            run.publish(None);
            tokio::select! {
                biased;
                () = &mut shutdown => break 'rounds,
                () = tokio::time::sleep(ROUND_PAUSE) => continue 'rounds,
            }
        };
        if playing != Some(index) {
            if playing.is_some() {
                run.counters.switches += 1;
            }
            info!(stream = %config.name, input = %origins[index].url, "restream: following");
            playing = Some(index);
        }
        run.publish(playing);
        let mut better = tokio::time::interval(PREFER_FIRST_EVERY);
        better.reset();
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break 'rounds,
                _ = better.tick(), if index > 0 => {
                    if let Some((i, s)) = better_source(&client, &origins[..index], run.at.start(), clock.now()).await {
                        info!(stream = %config.name, from = %origins[index].url, to = %origins[i].url, "restream: a better source is back");
                        run.counters.switches += 1;
                        (index, sub) = (i, s);
                        playing = Some(i);
                        run.publish(playing);
                    }
                }
                item = sub.next() => match item {
                    Ok(Some(FeedItem::Segment(s))) => {
                        run.append(s).await?;
                        run.publish(playing);
                    }
                    Ok(Some(FeedItem::Heartbeat { .. })) => {}
                    Ok(None) => {
                        warn!(stream = %config.name, input = %origins[index].url, "restream source ended its feed");
                        after_loss = true;
                        continue 'rounds;
                    }
                    Err(e) => {
                        warn!(stream = %config.name, input = %origins[index].url, error = %e, "restream source lost");
                        run.counters.last_error = Some(format!("{}: {e}", origins[index].url));
                        after_loss = true;
                        continue 'rounds;
                    }
                },
            }
        }
    }
    run.sink.flush().await.map_err(|e| IngestError::Sink {
        stream: config.name.clone(),
        seq: run.at.last_seq.unwrap_or(0),
        source: Box::new(e),
    })?;
    run.publish(None);
    Ok(run.counters)
}

/// The first of `better` that answers, with its feed.
async fn better_source(
    client: &FeedClient,
    better: &[Origin],
    start: FeedStart,
    now: UtcMs,
) -> Option<(usize, FeedSubscription)> {
    for (i, origin) in better.iter().enumerate() {
        if let Ok(sub) = client
            .subscribe(&origin.base, &origin.stream, start, now)
            .await
        {
            return Some((i, sub));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64, start_ms: i64, end_ms: i64) -> Position {
        Position {
            last_seq: Some(seq),
            last_start: Some(UtcMs(start_ms)),
            last_end: Some(UtcMs(end_ms)),
        }
    }

    #[test]
    fn segments_keep_their_seq_unless_the_source_numbers_another_capture() {
        let empty = Position::default();
        assert_eq!(
            place(&empty, 42, UtcMs(1_000)),
            Placement::Append {
                seq: 42,
                renumbered: false
            }
        );
        let tape = at(41, 8_000, 10_000);
        // The next one of the same capture, a little early or after a gap.
        for start in [10_000, 9_600, 30_000] {
            assert_eq!(
                place(&tape, 42, UtcMs(start)),
                Placement::Append {
                    seq: 42,
                    renumbered: false
                }
            );
        }
        // A time the tape has: left out, whatever its seq.
        assert_eq!(place(&tape, 41, UtcMs(8_000)), Placement::Skip);
        assert_eq!(place(&tape, 90, UtcMs(2_000)), Placement::Skip);
        // Another capture numbering below us, its time running on.
        assert_eq!(
            place(&tape, 7, UtcMs(10_100)),
            Placement::Append {
                seq: 42,
                renumbered: true
            }
        );
    }

    #[test]
    fn a_feed_resumes_at_the_last_segment_kept() {
        assert_eq!(Position::default().start(), FeedStart::Live);
        assert_eq!(
            at(41, 8_000, 10_000).start(),
            FeedStart::At {
                utc: UtcMs(8_000),
                after: None
            }
        );
    }
}
