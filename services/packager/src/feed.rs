//! The segment feed: another origin of the cluster follows a stream's
//! tape, the stored segments with their metadata, bytes unchanged
//! (`dvr_cluster::feed` is the wire format).
//!
//! `GET /_dvr/cluster/v1/feed?stream=NAME[&from=UTC_MS][&after=SEQ]`,
//! signed with the cluster key (`dvr_cluster::signature`); without a
//! configured key the route answers 404. It starts at the newest segment,
//! after `after` (while the live log holds it) or at the segments
//! overlapping `from`, then sends each segment of the tape in seq order,
//! archived ones first, and new ones as they are appended; a heartbeat
//! frame every few seconds while nothing is new. The answer never ends by
//! itself; a subscriber resumes with a new request after the last seq it
//! kept.
//!
//! Bounded: one segment is read at a time, and only when the previous one
//! was written to the socket (the body is a stream pulled by the
//! connection), so a slow subscriber costs one segment of memory; open
//! feeds are capped (`max_feeds`, then 503 with `Retry-After`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dvr_archive::tape::{StreamTape, TapeError, TapeSegment};
use dvr_cluster::feed::FEED_CONTENT_TYPE;
use dvr_cluster::FeedEncoder;
use dvr_common::error::HasErrorKind;
use dvr_common::{StreamName, UtcMs};
use dvr_edge::{ClientAddr, QuotaPermit};
use futures_util::stream;
use tokio::sync::watch;

use crate::Packager;

/// How often a heartbeat goes out while the tape has nothing new.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// The stretch of tape looked at per step.
const WINDOW_MS: i64 = 60_000;
/// Segments taken per step.
const BATCH: usize = 32;

/// The feed's route handler.
pub(crate) async fn serve_feed(
    State(packager): State<Arc<Packager>>,
    request: Request,
) -> Response {
    let Some(verifier) = packager.cluster.clone() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "this origin has no cluster_key: its segment feed is off",
        );
    };
    if request.method() != axum::http::Method::GET {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "the segment feed is GET only",
        );
    }
    let uri = request.uri().clone();
    let now = packager.clock.now().0;
    let verified = match verifier
        .verify_http(request.method(), &uri, request.headers(), now)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            let client = ClientAddr::of(request.extensions());
            tracing::warn!(client = ?client, error = %e, "segment feed request refused");
            let status =
                StatusCode::from_u16(e.error_kind().http_status()).unwrap_or(StatusCode::FORBIDDEN);
            return refuse(status, &e.to_string());
        }
    };
    let asked = match FeedAsk::parse(uri.query().unwrap_or("")) {
        Ok(a) => a,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, &message),
    };
    let Some(tape) = packager.stream_tape(asked.stream.as_str()) else {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("no stream {} on this origin", asked.stream),
        );
    };
    let client = ClientAddr::of(request.extensions())
        .unwrap_or(ClientAddr(std::net::Ipv4Addr::UNSPECIFIED.into()));
    let permit = match packager.feeds.try_acquire(client) {
        Ok(p) => p,
        Err(exceeded) => return dvr_edge::busy("segment_feeds", "segment feeds", exceeded),
    };
    let start = match start_of(&tape, &asked, packager.clock.now()).await {
        Ok(s) => s,
        Err(Refusal(status, message)) => return refuse(status, &message),
    };
    tracing::info!(stream = %asked.stream, client = ?client, from = start.cursor.0, after = ?start.after, "segment feed opened");
    crate::metrics::feed_opened();
    let state = Feed {
        packager: Arc::clone(&packager),
        tape: tape.clone(),
        encoder: FeedEncoder::new(verifier.key().clone(), verified.nonce),
        cursor: start.cursor,
        after: start.after,
        pending: VecDeque::new(),
        batch: VecDeque::new(),
        appended: tape.live().subscribe(),
        _permit: permit,
    };
    let body = stream::unfold(state, |mut feed| async move {
        let piece = feed.next_piece().await?;
        Some((Ok::<Bytes, std::io::Error>(piece), feed))
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(FEED_CONTENT_TYPE),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// What a feed request asks for.
#[derive(Debug, PartialEq, Eq)]
struct FeedAsk {
    stream: StreamName,
    from: Option<UtcMs>,
    after: Option<u64>,
}

impl FeedAsk {
    fn parse(query: &str) -> Result<Self, String> {
        let (mut stream, mut from, mut after) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "stream" => {
                    stream = Some(StreamName::new(value).map_err(|e| e.to_string())?);
                }
                "from" => {
                    let ms = value
                        .parse::<i64>()
                        .ok()
                        .filter(|ms| *ms >= 0)
                        .ok_or_else(|| format!("from={value:?} is not Unix milliseconds"))?;
                    from = Some(UtcMs(ms));
                }
                "after" => {
                    after = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| format!("after={value:?} is not a seq"))?,
                    );
                }
                other => {
                    return Err(format!(
                        "unknown feed parameter {other:?} (stream, from and after are known)"
                    ))
                }
            }
        }
        let stream = stream.ok_or("the feed needs stream=NAME")?;
        Ok(Self {
            stream,
            from,
            after,
        })
    }
}

struct Refusal(StatusCode, String);

/// Where a feed starts: the instant it looks from and the last seq it
/// leaves out.
struct Start {
    cursor: UtcMs,
    after: Option<u64>,
}

async fn start_of(tape: &StreamTape, asked: &FeedAsk, now: UtcMs) -> Result<Start, Refusal> {
    let unavailable = |e: TapeError| {
        Refusal(
            StatusCode::from_u16(e.error_kind().http_status())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            e.to_string(),
        )
    };
    if let Some(from) = asked.from {
        return Ok(Start {
            cursor: from,
            after: asked.after,
        });
    }
    let live = tape.live();
    let Some(after) = asked.after else {
        // The newest segment, or whatever comes first on an empty tape.
        let head = tape.live_head().await.map_err(unavailable)?;
        return Ok(match head {
            Some(h) => Start {
                cursor: h.utc_start,
                after: h.seq.checked_sub(1),
            },
            None => Start {
                cursor: now,
                after: None,
            },
        });
    };
    let bus = |e: dvr_bus::BusError| {
        unavailable(TapeError::Storage {
            stream: tape.name().to_owned(),
            reason: e.to_string(),
            transient: true,
        })
    };
    if let Some(next) = live.segments_after(Some(after)).await.map_err(bus)?.first() {
        let oldest = live.oldest().await.map_err(bus)?;
        if oldest.is_some_and(|o| o.seq > after.saturating_add(1)) {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!(
                    "seq {after} of {} is no longer in the live log (it starts at {}): \
                     resume with from=UTC_MS as well",
                    tape.name(),
                    oldest.map_or(0, |o| o.seq)
                ),
            ));
        }
        return Ok(Start {
            cursor: next.utc_start,
            after: Some(after),
        });
    }
    // Nothing after it yet: wait from the head on.
    let head = tape.live_head().await.map_err(unavailable)?;
    Ok(Start {
        cursor: head.map_or(now, |h| h.utc_start),
        after: Some(after),
    })
}

/// One open feed.
struct Feed {
    tape: StreamTape,
    encoder: FeedEncoder,
    /// Segments overlapping this instant or later are still to be sent.
    cursor: UtcMs,
    /// The last seq sent.
    after: Option<u64>,
    /// Frame pieces not yet written.
    pending: VecDeque<Bytes>,
    /// Segments found, not yet read.
    batch: VecDeque<TapeSegment>,
    appended: watch::Receiver<Option<dvr_media::SegmentMeta>>,
    /// Notes the demand while the feed runs: a restreamer following an
    /// on-demand stream keeps it running here.
    packager: Arc<Packager>,
    _permit: QuotaPermit,
}

impl Feed {
    /// The next bytes of the answer; `None` ends it (a read that failed:
    /// the subscriber resumes with a new request).
    async fn next_piece(&mut self) -> Option<Bytes> {
        loop {
            if let Some(piece) = self.pending.pop_front() {
                return Some(piece);
            }
            if let Some(segment) = self.batch.pop_front() {
                match self.tape.read(&segment).await {
                    Ok(bytes) => {
                        crate::metrics::feed_segment(bytes.len());
                        self.pending
                            .extend(self.encoder.segment(&segment.meta, bytes));
                    }
                    // Trimmed or deleted in between: the tape no longer
                    // has it, so neither does the feed.
                    Err(TapeError::NothingRecorded(why)) => {
                        tracing::debug!(stream = self.tape.name(), %why, "segment skipped");
                    }
                    Err(e) => {
                        tracing::warn!(stream = self.tape.name(), error = %e, "segment feed ends");
                        return None;
                    }
                }
                self.after = Some(segment.meta.seq);
                self.cursor = segment.meta.utc_start;
                continue;
            }
            self.packager.note_demand(self.tape.name());
            // Marked seen before looking, so an append after the look wakes
            // the wait below.
            self.appended.borrow_and_update();
            match self.next_batch().await {
                Ok(found) if !found.is_empty() => self.batch = found.into(),
                Ok(_) => {
                    let woke = tokio::time::timeout(HEARTBEAT, self.appended.changed()).await;
                    let appended = match woke {
                        Ok(Ok(())) => true,
                        // The live log's sender is gone: look again after a
                        // heartbeat's wait rather than at once.
                        Ok(Err(_)) => {
                            tokio::time::sleep(HEARTBEAT).await;
                            false
                        }
                        Err(_) => false,
                    };
                    if !appended {
                        let newest = self.tape.live_head().await.ok().flatten().map(|m| m.seq);
                        self.pending.extend(self.encoder.heartbeat(newest));
                    }
                }
                Err(e) => {
                    tracing::warn!(stream = self.tape.name(), error = %e, "segment feed ends");
                    return None;
                }
            }
        }
    }

    /// The next segments after the cursor, skipping the tape's gaps; empty
    /// when the tape has nothing new.
    async fn next_batch(&mut self) -> Result<Vec<TapeSegment>, TapeError> {
        let Some(end) = self.tape.end().await? else {
            return Ok(Vec::new());
        };
        loop {
            if self.cursor >= end.utc_end {
                return Ok(Vec::new());
            }
            let to = self.cursor.saturating_add_ms(WINDOW_MS);
            let after = self.after;
            let found: Vec<TapeSegment> = self
                .tape
                .segments_between(self.cursor, to)
                .await?
                .into_iter()
                .filter(|s| after.is_none_or(|a| s.meta.seq > a))
                .take(BATCH)
                .collect();
            if !found.is_empty() {
                return Ok(found);
            }
            // Nothing new in this stretch: on to the next recorded range.
            match self.tape.ranges(to, end.utc_end).await?.first() {
                Some((start, _)) => self.cursor = (*start).max(to),
                None => return Ok(Vec::new()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_parameters_are_checked_and_unknown_ones_named() {
        let ask = FeedAsk::parse("stream=news/hd&from=1780000000000&after=41").unwrap();
        assert_eq!(ask.stream.as_str(), "news/hd");
        assert_eq!(ask.from, Some(UtcMs(1_780_000_000_000)));
        assert_eq!(ask.after, Some(41));
        for (query, says) in [
            ("", "needs stream=NAME"),
            ("stream=../x", "invalid stream name"),
            ("stream=a&from=-5", "not Unix milliseconds"),
            ("stream=a&after=x", "not a seq"),
            ("stream=a&since=5", "unknown feed parameter \"since\""),
        ] {
            let err = FeedAsk::parse(query).unwrap_err();
            assert!(err.contains(says), "{query}: {err}");
        }
    }
}
