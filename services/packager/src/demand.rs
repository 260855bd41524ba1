//! On-demand streams (`on_demand:`, the seeds' `ondemand`): the ingest
//! runs them only while viewers ask.
//!
//! Every request that follows the live edge (live and rewind playlists,
//! the live MPD, live MPEG-TS while its body is sent, `preview.jpg`, and a
//! restreamer's segment feed) notes the demand in the runtime bucket
//! (`demand.{stream}`, an empty value), at most once per
//! [`refresh_every`] of the stream so a crowd of viewers writes a few
//! entries a minute, not one per request. The ingests watch those keys and
//! run the stream until none came for its `on_demand` time; they judge
//! that by their own clock, so no two machines' clocks are compared.
//! Archive requests (ranges, `recording_status.json`, timeshift, stored
//! segments) do not start it: the tape answers them without an ingest.
//!
//! A stream that is not running when its first viewer comes has no fresh
//! segment yet: a live request then waits for one (the seeds' first viewer
//! "has to stand and wait"), polling the live log, for at most
//! [`START_WAIT`]; after that it is answered with what the tape holds,
//! and a restreamed stream's request with nothing here goes to its source
//! as any time this origin lacks does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use dvr_archive::tape::StreamTape;
use dvr_bus::Kv;
use dvr_common::{Clock, StreamName};
use tokio::time::Instant;
use tracing::debug;

/// How long a live request waits for a stream started on demand.
pub const START_WAIT: Duration = Duration::from_secs(15);
/// How often the live log is looked at while waiting.
const POLL: Duration = Duration::from_millis(200);
/// A live head ending longer ago than this is not the stream running now.
const FRESH_MS: i64 = 10_000;

/// How often a stream's demand is noted: a quarter of its `on_demand`
/// time, at most 5 s, so the ingest sees several notes before it would
/// stop the stream.
pub fn refresh_every(on_demand_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(on_demand_ms / 4).unwrap_or(0)).min(Duration::from_secs(5))
}

/// The on-demand streams a packager serves and when it last noted each.
#[derive(Debug, Default)]
pub struct Demand {
    streams: RwLock<HashMap<String, i64>>,
    noted: Mutex<HashMap<String, Instant>>,
}

impl Demand {
    /// Serves `name` on demand (`Some(on_demand_ms)`) or not.
    pub fn set(&self, name: &str, on_demand_ms: Option<i64>) {
        let mut streams = self.streams.write().unwrap_or_else(PoisonError::into_inner);
        match on_demand_ms {
            Some(ms) => {
                streams.insert(name.to_owned(), ms);
            }
            None => {
                streams.remove(name);
                self.noted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(name);
            }
        }
    }

    /// Notes a request for `name` in `runtime` when the stream is on
    /// demand and its last note is older than [`refresh_every`]; the write
    /// runs beside the request. Returns whether the stream is on demand.
    pub fn note(&self, name: &str, runtime: Option<&Arc<dyn Kv>>) -> bool {
        let Some(ms) = self
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
        else {
            return false;
        };
        let due = {
            let mut noted = self.noted.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let due = noted
                .get(name)
                .is_none_or(|at| now.duration_since(*at) >= refresh_every(ms));
            if due {
                noted.insert(name.to_owned(), now);
            }
            due
        };
        if let (true, Some(kv), Ok(stream)) = (due, runtime, StreamName::new(name)) {
            let kv = Arc::clone(kv);
            tokio::spawn(async move {
                let key = dvr_proto::demand_key(&stream);
                if let Err(e) = kv.put(&key, Bytes::new()).await {
                    debug!(key, error = %e, "cannot note the demand for an on-demand stream");
                }
            });
        }
        true
    }
}

/// `response` (an endless live transport stream) noting the demand for
/// `stream` as its body is sent, so the stream keeps running while the
/// client watches.
pub fn keeping_demand(
    response: axum::response::Response,
    demand: Arc<Demand>,
    runtime: Option<Arc<dyn Kv>>,
    stream: &str,
) -> axum::response::Response {
    use futures_util::StreamExt;
    let stream = stream.to_owned();
    response.map(|body| {
        axum::body::Body::from_stream(body.into_data_stream().inspect(move |_| {
            demand.note(&stream, runtime.as_ref());
        }))
    })
}

/// Waits until `tape` has a segment that ended in the last [`FRESH_MS`],
/// for at most [`START_WAIT`]; returns whether it has.
pub async fn wait_for_fresh(tape: &StreamTape, clock: &dyn Clock) -> bool {
    let deadline = Instant::now() + START_WAIT;
    loop {
        let fresh = matches!(
            tape.live_head().await,
            Ok(Some(head)) if clock.now().0 - head.utc_end().0 < FRESH_MS
        );
        if fresh {
            return true;
        }
        if Instant::now() + POLL > deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvr_bus::MemoryKv;
    use futures_util::StreamExt;

    #[test]
    fn notes_come_several_times_within_the_on_demand_time() {
        assert_eq!(refresh_every(20_000), Duration::from_secs(5));
        assert_eq!(refresh_every(8_000), Duration::from_secs(2));
        assert_eq!(refresh_every(1_000), Duration::from_millis(250));
    }

    #[tokio::test]
    async fn a_crowd_of_requests_notes_the_demand_once_per_refresh() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new("dvr_v1_runtime"));
        let demand = Demand::default();
        assert!(!demand.note("cam", Some(&kv)), "not on demand yet");
        demand.set("cam", Some(20_000));
        let mut watch = kv.watch("demand.").await.unwrap();
        for _ in 0..100 {
            assert!(demand.note("cam", Some(&kv)));
        }
        let first = tokio::time::timeout(Duration::from_secs(1), watch.next())
            .await
            .expect("one note")
            .unwrap()
            .unwrap();
        assert_eq!(first.key, "demand.cam");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), watch.next())
                .await
                .is_err(),
            "99 requests within the refresh wrote nothing more"
        );
        demand.set("cam", None);
        assert!(!demand.note("cam", Some(&kv)), "no longer on demand");
    }
}
