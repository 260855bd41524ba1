//! One stream's live log on JetStream.
//!
//! Bytes go to the object store first, then the descriptor to the live
//! stream: the descriptor is the commit point, so a reader never sees a
//! segment whose bytes are missing. Every handle keeps an index of the
//! stream's descriptors in memory, filled at open and kept current by a
//! follower task on an ordered consumer, so queries by seq and time cost no
//! round trip and `subscribe` sees appends made by other processes.
//!
//! A trim done by another process is not announced: this handle learns of
//! it when `get` finds a listed segment's object gone, and then forgets
//! that segment and every older one (trims only ever cut the oldest end).
//! Until then its listings may still name trimmed segments.
//!
//! A descriptor carries the appender's W3C trace context in its headers; a
//! follower applies it in a `bus.consume` span continuing that trace, and
//! reports how long after its publication it arrived
//! (`dvr_bus_consume_delay_seconds{consumer="live_log"}`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, object_store, stream};
use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::Bytes;
use dvr_common::{StreamName, UtcMs};
use dvr_media::{CodecSummary, Segment, SegmentMeta};
use dvr_proto::{
    live_segments_subject, segment_msg_id, SegmentDescriptor, Versioned, HEADER_MSG_ID,
    HEADER_PROTO_VERSION, PROTO_VERSION, SEGMENTS_OBJECT_BUCKET, SEGMENT_CHUNK_BYTES,
};
use futures::StreamExt;
use tokio::sync::watch;

use super::{nats_err, retry, trace};
use crate::error::BusError;
use crate::live_log::LiveLog;
use crate::metrics::{self, Backend};

#[derive(Clone, Debug)]
struct Entry {
    meta: SegmentMeta,
    codecs: Arc<CodecSummary>,
    /// The descriptor's sequence in the JetStream stream, for purging.
    stream_seq: u64,
}

#[derive(Debug, Default)]
struct Index {
    entries: BTreeMap<u64, Entry>,
    /// Segments below this seq were trimmed by this handle; the follower
    /// must not bring them back.
    trimmed_below: u64,
}

impl Index {
    /// Adds a descriptor; returns whether it is new.
    fn insert(&mut self, d: SegmentDescriptor, stream_seq: u64) -> bool {
        let seq = d.meta.seq;
        if seq < self.trimmed_below || self.entries.contains_key(&seq) {
            return false;
        }
        // Consecutive segments usually share their codecs: share the Arc.
        let codecs = match self.entries.range(..seq).next_back() {
            Some((_, prev)) if *prev.codecs == d.codecs => Arc::clone(&prev.codecs),
            _ => Arc::new(d.codecs),
        };
        self.entries.insert(
            seq,
            Entry {
                meta: d.meta,
                codecs,
                stream_seq,
            },
        );
        true
    }

    fn newest(&self) -> Option<SegmentMeta> {
        self.entries.values().next_back().map(|e| e.meta)
    }
}

#[derive(Debug)]
struct Shared {
    index: Mutex<Index>,
    appended: watch::Sender<Option<SegmentMeta>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, d: SegmentDescriptor, stream_seq: u64) {
        let newest = {
            let mut index = self.lock();
            if !index.insert(d, stream_seq) {
                return;
            }
            index.newest()
        };
        self.appended.send_if_modified(|cur| {
            let changed = *cur != newest;
            *cur = newest;
            changed
        });
    }
}

/// One stream's live log on JetStream; see the module docs.
pub struct NatsLiveLog {
    stream: StreamName,
    subject: String,
    js: jetstream::Context,
    live: stream::Stream,
    objects: object_store::ObjectStore,
    /// The object store's own stream, read by direct get (see
    /// [`NatsLiveLog::read_object`]).
    object_stream: stream::Stream,
    op_timeout: Duration,
    shared: Arc<Shared>,
    follower: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for NatsLiveLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLiveLog")
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .field("newest", &self.shared.lock().newest())
            .finish_non_exhaustive()
    }
}

impl Drop for NatsLiveLog {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl NatsLiveLog {
    /// The bytes of object `name`, `None` when it is gone (trimmed).
    ///
    /// Read chunk by chunk with direct gets on the object store's stream,
    /// not with the client's object reader: that one creates an ordered
    /// consumer per object, and a recorder copying an hour of 2 s segments
    /// reads 1,800 objects within seconds, past the server's limit of
    /// consumers per stream (and the client panics on that error).
    async fn read_object(&self, name: &str) -> Result<Option<Vec<u8>>, BusError> {
        let info = match self.objects.info(name).await {
            Ok(info) => info,
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(nats_err("get segment info", name, e)),
        };
        if info.deleted {
            return Ok(None);
        }
        let subject = format!("$O.{SEGMENTS_OBJECT_BUCKET}.C.{}", info.nuid);
        let mut bytes = Vec::with_capacity(info.size);
        let mut next = None;
        for _ in 0..info.chunks {
            let chunk = match self
                .object_stream
                .direct_get_next_for_subject(subject.as_str(), next)
                .await
            {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(nats_err("read segment bytes", name, e)),
            };
            bytes.extend_from_slice(&chunk.payload);
            next = Some(chunk.sequence + 1);
        }
        if bytes.len() != info.size {
            return Err(nats_err(
                "read segment bytes",
                name,
                format!("read {} bytes of {}", bytes.len(), info.size),
            ));
        }
        Ok(Some(bytes))
    }

    pub(super) async fn open(
        js: jetstream::Context,
        live: stream::Stream,
        objects: object_store::ObjectStore,
        stream: &StreamName,
        op_timeout: Duration,
    ) -> Result<Self, BusError> {
        let subject = live_segments_subject(stream);
        let object_stream_name = format!("OBJ_{SEGMENTS_OBJECT_BUCKET}");
        let object_stream = js
            .get_stream(&object_stream_name)
            .await
            .map_err(|e| nats_err("get stream", &object_stream_name, e))?;
        let shared = Arc::new(Shared {
            index: Mutex::new(Index::default()),
            appended: watch::channel(None).0,
        });
        // Read what is there before returning, so `newest` is right at once
        // (ingest continues its seq from it after a restart).
        let last = match live.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => m.sequence,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => 0,
            Err(e) => return Err(nats_err("read last descriptor", &subject, e)),
        };
        let mut messages = follow(&live, &subject, 1).await?;
        let mut next = 1;
        // Bounded: a purge racing with this could leave `last` unreachable.
        let catch_up = async {
            while next <= last {
                let Some(msg) = messages.next().await else {
                    return Err(nats_err(
                        "read descriptors",
                        &subject,
                        "consumer ended while catching up",
                    ));
                };
                let msg = msg.map_err(|e| nats_err("read descriptors", &subject, e))?;
                let caught_up = msg.info().is_ok_and(|i| i.pending == 0);
                next = apply(&shared, &subject, &msg) + 1;
                if caught_up {
                    break;
                }
            }
            Ok(())
        };
        tokio::time::timeout(op_timeout, catch_up)
            .await
            .map_err(|e| nats_err("read descriptors", &subject, e))??;
        let follower = tokio::spawn(run_follower(
            live.clone(),
            subject.clone(),
            Arc::clone(&shared),
            messages,
            next,
        ));
        Ok(Self {
            stream: stream.clone(),
            subject,
            js,
            live,
            objects,
            object_stream,
            op_timeout,
            shared,
            follower,
        })
    }

    /// The DVR stream whose log this is.
    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    async fn put_once(&self, segment: &Segment, body: &Bytes) -> Result<u64, BusError> {
        let d_object = dvr_proto::segment_object_name(&self.stream, segment.seq);
        let meta = object_store::ObjectMetadata {
            name: d_object.clone(),
            chunk_size: Some(SEGMENT_CHUNK_BYTES),
            ..Default::default()
        };
        let mut reader: &[u8] = &segment.payload;
        self.objects
            .put(meta, &mut reader)
            .await
            .map_err(|e| nats_err("put segment bytes", &d_object, e))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            HEADER_MSG_ID,
            segment_msg_id(&self.stream, segment.seq).as_str(),
        );
        headers.insert(HEADER_PROTO_VERSION, PROTO_VERSION.to_string().as_str());
        trace::inject_current(&mut headers);
        let ack = self
            .js
            .publish_with_headers(self.subject.clone(), headers, body.clone())
            .await
            .map_err(|e| nats_err("publish descriptor", &self.subject, e))?
            .await
            .map_err(|e| nats_err("publish descriptor", &self.subject, e))?;
        Ok(ack.sequence)
    }
}

/// An ordered consumer of the stream's descriptors from `start` on.
async fn follow(
    live: &stream::Stream,
    subject: &str,
    start: u64,
) -> Result<consumer::pull::Ordered, BusError> {
    live.create_consumer(consumer::pull::OrderedConfig {
        filter_subject: subject.to_owned(),
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: start.max(1),
        },
        ..Default::default()
    })
    .await
    .map_err(|e| nats_err("create consumer", subject, e))?
    .messages()
    .await
    .map_err(|e| nats_err("consume", subject, e))
}

/// Adds one descriptor message to the index; returns its stream sequence.
fn apply(shared: &Shared, subject: &str, msg: &jetstream::Message) -> u64 {
    let stream_seq = msg.info().map_or(0, |i| i.stream_sequence);
    match SegmentDescriptor::decode(&msg.payload) {
        Ok(d) => shared.add(d, stream_seq),
        Err(e) => tracing::warn!(subject, stream_seq, error = %e, "skipping a descriptor"),
    }
    stream_seq
}

/// [`apply`] for a message that arrived live: timed against its
/// publication, and inside the appender's trace when it carries one.
fn follow_one(shared: &Shared, subject: &str, msg: &jetstream::Message) -> u64 {
    if let Ok(info) = msg.info() {
        let published_ms = info.published.unix_timestamp_nanos() / 1_000_000;
        let now_ms = i128::from(dvr_common::Clock::now(&dvr_common::SystemClock).0);
        metrics::consumed(
            "live_log",
            i64::try_from(now_ms - published_ms).unwrap_or(i64::MAX),
        );
    }
    if !trace::has_trace(msg.headers.as_ref()) {
        return apply(shared, subject, msg);
    }
    let span = tracing::info_span!(parent: None, "bus.consume", subject, consumer = "live_log");
    trace::set_parent(&span, msg.headers.as_ref());
    span.in_scope(|| apply(shared, subject, msg))
}

/// Keeps the index current; recreates the consumer if it ends (the ordered
/// consumer itself survives reconnects and server restarts).
async fn run_follower(
    live: stream::Stream,
    subject: String,
    shared: Arc<Shared>,
    mut messages: consumer::pull::Ordered,
    mut next: u64,
) {
    loop {
        while let Some(msg) = messages.next().await {
            match msg {
                Ok(msg) => next = follow_one(&shared, &subject, &msg) + 1,
                Err(e) => {
                    tracing::debug!(subject, error = %e, "live log follower");
                    // Errors come while the server is away; do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match follow(&live, &subject, next).await {
                Ok(m) => {
                    messages = m;
                    break;
                }
                Err(e) => tracing::debug!(subject, error = %e, "live log follower restart"),
            }
        }
    }
}

#[async_trait]
impl LiveLog for NatsLiveLog {
    async fn append(&self, segment: &Segment) -> Result<(), BusError> {
        if let Some(last) = self.shared.lock().newest() {
            if segment.seq <= last.seq {
                return Err(BusError::OutOfOrder {
                    path: self.subject.clone().into(),
                    seq: segment.seq,
                    last: last.seq,
                });
            }
        }
        let descriptor =
            SegmentDescriptor::new(&self.stream, segment.meta(), (*segment.codecs).clone());
        let body = Bytes::from(descriptor.encode());
        let stream_seq = metrics::time_publish(
            "live_log_append",
            Backend::Nats,
            retry(self.op_timeout, || self.put_once(segment, &body)),
        )
        .await?;
        self.shared.add(descriptor, stream_seq);
        Ok(())
    }

    async fn get(&self, seq: u64) -> Result<Option<Segment>, BusError> {
        let Some(entry) = self.shared.lock().entries.get(&seq).cloned() else {
            return Ok(None);
        };
        let name = dvr_proto::segment_object_name(&self.stream, seq);
        let payload = retry(self.op_timeout, || self.read_object(&name)).await?;
        if payload.is_none() {
            let mut index = self.shared.lock();
            index.trimmed_below = index.trimmed_below.max(seq + 1);
            index.entries.retain(|&s, _| s > seq);
        }
        Ok(payload.map(|payload| Segment {
            seq,
            pts_start: entry.meta.pts_start,
            duration: entry.meta.duration,
            utc_start: entry.meta.utc_start,
            flags: entry.meta.flags,
            codecs: entry.codecs,
            payload: Bytes::from(payload),
        }))
    }

    async fn segments_after(&self, after: Option<u64>) -> Result<Vec<SegmentMeta>, BusError> {
        let index = self.shared.lock();
        let from = after.map_or(0, |a| a.saturating_add(1));
        if after == Some(u64::MAX) {
            return Ok(Vec::new());
        }
        Ok(index.entries.range(from..).map(|(_, e)| e.meta).collect())
    }

    async fn segments_between(&self, from: UtcMs, to: UtcMs) -> Result<Vec<SegmentMeta>, BusError> {
        let index = self.shared.lock();
        Ok(index
            .entries
            .values()
            .map(|e| e.meta)
            .skip_while(|m| m.utc_end() <= from)
            .take_while(|m| m.utc_start < to)
            .collect())
    }

    async fn newest(&self) -> Result<Option<SegmentMeta>, BusError> {
        Ok(self.shared.lock().newest())
    }

    async fn oldest(&self) -> Result<Option<SegmentMeta>, BusError> {
        Ok(self.shared.lock().entries.values().next().map(|e| e.meta))
    }

    async fn last(&self, n: usize) -> Result<Vec<SegmentMeta>, BusError> {
        let index = self.shared.lock();
        let mut out: Vec<SegmentMeta> = index
            .entries
            .values()
            .rev()
            .take(n)
            .map(|e| e.meta)
            .collect();
        out.reverse();
        Ok(out)
    }

    async fn codecs(&self, seq: u64) -> Result<Option<Arc<CodecSummary>>, BusError> {
        Ok(self
            .shared
            .lock()
            .entries
            .get(&seq)
            .map(|e| Arc::clone(&e.codecs)))
    }

    async fn trim(&self, before: UtcMs, keep_from_seq: u64) -> Result<usize, BusError> {
        let (dropped, first_kept) = {
            let index = self.shared.lock();
            let dropped: Vec<u64> = index
                .entries
                .values()
                .take_while(|e| e.meta.utc_end() <= before && e.meta.seq < keep_from_seq)
                .map(|e| e.meta.seq)
                .collect();
            let first_kept = index
                .entries
                .range(dropped.last().map_or(0, |s| s + 1)..)
                .next()
                .map(|(_, e)| e.stream_seq);
            (dropped, first_kept)
        };
        let Some(&last_dropped) = dropped.last() else {
            return Ok(0);
        };
        // Descriptors first, so no reader finds a segment without bytes.
        retry(self.op_timeout, || async {
            let purge = self.live.purge().filter(&self.subject);
            match first_kept {
                Some(seq) => purge.sequence(seq).await.map(drop),
                None => purge.await.map(drop),
            }
            .map_err(|e| nats_err("purge descriptors", &self.subject, e))
        })
        .await?;
        {
            let mut index = self.shared.lock();
            index.trimmed_below = index.trimmed_below.max(last_dropped + 1);
            index.entries.retain(|&seq, _| seq > last_dropped);
        }
        for seq in &dropped {
            let name = dvr_proto::segment_object_name(&self.stream, *seq);
            retry(self.op_timeout, || async {
                match self.objects.delete(&name).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
                    Err(e) => Err(nats_err("delete segment bytes", &name, e)),
                }
            })
            .await?;
        }
        Ok(dropped.len())
    }

    fn subscribe(&self) -> watch::Receiver<Option<SegmentMeta>> {
        self.shared.appended.subscribe()
    }
}
