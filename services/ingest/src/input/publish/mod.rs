//! Publish inputs (`publish://`): streams that encoders push to, instead of
//! sources ingest pulls.
//!
//! One [`PublishHub`] per process sits between the listener that encoders
//! connect to ([`rtmp`]) and the streams' ingest. A stream's ingest
//! registers its name ([`PublishHub::register_stream`]) and its
//! `publish://` input attaches a channel ([`PublishSource`]); a publish is
//! then admitted or refused by [`PublishHub::begin`]:
//!
//! - a stream the hub does not know, or one without a `publish://` input,
//!   is refused (the encoder is told `NetStream.Publish.BadName`);
//! - a stream with a play policy is authorised like a play, by the same
//!   [`Authorizer`] the packager asks, with protocol `rtmp` and the token of
//!   the URL (`?token=`) or the stream key; a refusal is
//!   `NetStream.Publish.Unauthorized`;
//! - while a publisher is live, a second one is refused, unless the first
//!   has sent no media for [`PUBLISH_IDLE_TIMEOUT`], or the newcomer is
//!   authorised to take over: on a stream with a play policy, a newcomer
//!   the policy allows with the same token as the live publisher (the same
//!   encoder, reconnecting after a half-open drop) takes the stream over at
//!   once. Then the first is disconnected. A newcomer with other
//!   credentials waits for the idle timeout, so two encoders with their own
//!   keys never take a stream from each other while both send.
//!
//! What a publisher sends reaches the source as transport stream. The end
//! of a publish, or its replacement, is an error of the source, so the
//! failover logic ends the run: the tape's `seq` continues and the next
//! publish starts with a discontinuity, exactly as a lost and recovered
//! pulled input does.
//!
//! The authorizer is a trait object handed in by the binary, so ingest
//! imports no other service.

pub mod rtmp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use dvr_bus::Authorizer;
use dvr_common::StreamName;
use dvr_proto::{AuthDecision, AuthRequest, PROTO_VERSION};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::info;

use super::{BoxFuture, InputUrl, Source, SourceChunk};
use crate::error::IngestError;

/// Silence after which a live publisher may be replaced by a new one.
pub const PUBLISH_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunks a publish may have in flight to its stream; a full channel
/// slows the publisher's socket down instead of growing.
const CHANNEL_CHUNKS: usize = 256;

/// What a publish tells the stream's source.
#[derive(Debug)]
enum PublishEvent {
    /// Publish `id` begins.
    Started(u64),
    /// Transport stream from publish `id`.
    Data(u64, Bytes),
    /// Publish `id` ended, and why.
    Ended(u64, String),
}

/// The publisher live on a stream.
#[derive(Debug)]
struct Live {
    id: u64,
    peer: SocketAddr,
    /// The BLAKE3 of the token the policy allowed it with (`None` on a
    /// stream without a policy): a newcomer with the same one takes over.
    credential: Option<blake3::Hash>,
    last_media: Arc<Mutex<Instant>>,
    /// Fired to disconnect it when a newcomer takes over.
    kick: Option<oneshot::Sender<()>>,
}

/// What the hub knows of one stream.
#[derive(Debug, Default)]
struct Slot {
    /// How many ingest runs registered the name (one, normally).
    registered: usize,
    /// The stream's `publish://` source, when it has one.
    input: Option<mpsc::Sender<PublishEvent>>,
    live: Option<Live>,
}

/// Why a publish was refused: the RTMP status code and the reason logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `NetStream.Publish.BadName` or `NetStream.Publish.Unauthorized`.
    pub code: &'static str,
    /// What the log says, naming the stream.
    pub reason: String,
}

impl Refusal {
    fn bad_name(reason: String) -> Self {
        Refusal {
            code: "NetStream.Publish.BadName",
            reason,
        }
    }
}

/// The process's register of streams that take publishes.
#[derive(Debug)]
pub struct PublishHub {
    slots: Mutex<HashMap<String, Slot>>,
    authorizer: Option<Arc<dyn Authorizer>>,
    next_id: AtomicU64,
    idle_timeout: Duration,
}

impl PublishHub {
    /// A hub authorising publishes with `authorizer` (`None`: every stream
    /// is open, as plays are without one).
    pub fn new(authorizer: Option<Arc<dyn Authorizer>>) -> Arc<Self> {
        Arc::new(PublishHub {
            slots: Mutex::default(),
            authorizer,
            next_id: AtomicU64::new(1),
            idle_timeout: PUBLISH_IDLE_TIMEOUT,
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `stream` known while the guard lives (its ingest runs).
    pub fn register_stream(self: &Arc<Self>, stream: &str) -> StreamGuard {
        self.slots()
            .entry(stream.to_owned())
            .or_default()
            .registered += 1;
        StreamGuard {
            hub: Arc::clone(self),
            stream: stream.to_owned(),
        }
    }

    /// Whether `stream` is registered.
    pub fn knows(&self, stream: &str) -> bool {
        self.slots().contains_key(stream)
    }

    /// Attaches the `publish://` source of `stream`.
    fn attach(&self, stream: &str) -> mpsc::Receiver<PublishEvent> {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let mut slots = self.slots();
        let slot = slots.entry(stream.to_owned()).or_default();
        slot.input = Some(tx);
        // A publisher of the previous source cannot feed this one.
        if let Some(mut live) = slot.live.take() {
            if let Some(kick) = live.kick.take() {
                let _ = kick.send(());
            }
        }
        rx
    }

    /// Admits or refuses a publish to `stream` from `peer` with `token`
    /// (empty when none was given).
    pub async fn begin(
        self: &Arc<Self>,
        stream: &str,
        token: &str,
        peer: SocketAddr,
    ) -> Result<Publish, Refusal> {
        {
            let slots = self.slots();
            match slots.get(stream) {
                None => {
                    return Err(Refusal::bad_name(format!(
                        "no stream {stream:?} is ingested here"
                    )))
                }
                Some(slot) if slot.input.is_none() => {
                    return Err(Refusal::bad_name(format!(
                        "stream {stream:?} has no publish:// input"
                    )))
                }
                Some(_) => {}
            }
        }
        let credential = self.authorize(stream, token, peer).await?;
        let mut slots = self.slots();
        let slot = slots
            .get_mut(stream)
            .ok_or_else(|| Refusal::bad_name(format!("stream {stream:?} stopped")))?;
        let input = slot.input.clone().ok_or_else(|| {
            Refusal::bad_name(format!("stream {stream:?} has no publish:// input"))
        })?;
        if let Some(live) = &mut slot.live {
            let idle = live
                .last_media
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed();
            let same_credential = credential.is_some() && live.credential == credential;
            if idle < self.idle_timeout && !same_credential {
                return Err(Refusal::bad_name(format!(
                    "stream {stream:?} is already being published by {} (last media {} ms ago)",
                    live.peer,
                    idle.as_millis()
                )));
            }
            info!(
                stream,
                old = %live.peer,
                new = %peer,
                idle_ms = idle.as_millis() as u64,
                why = if idle < self.idle_timeout {
                    "the same credentials"
                } else {
                    "the first went idle"
                },
                "publish takes over"
            );
            if let Some(kick) = live.kick.take() {
                let _ = kick.send(());
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let last_media = Arc::new(Mutex::new(Instant::now()));
        let (kick, kicked) = oneshot::channel();
        slot.live = Some(Live {
            id,
            peer,
            credential,
            last_media: Arc::clone(&last_media),
            kick: Some(kick),
        });
        // Never blocks: the source drains the channel; a full one drops the
        // start, and the source then reads the data as the same run.
        let _ = input.try_send(PublishEvent::Started(id));
        Ok(Publish {
            hub: Arc::clone(self),
            stream: stream.to_owned(),
            id,
            input,
            last_media,
            kicked: Some(kicked),
            ended: None,
        })
    }

    /// Asks the authorizer when `stream` has a policy; an allowed publish
    /// is told the BLAKE3 of its token, its credential for a takeover.
    async fn authorize(
        &self,
        stream: &str,
        token: &str,
        peer: SocketAddr,
    ) -> Result<Option<blake3::Hash>, Refusal> {
        let Some(authorizer) = &self.authorizer else {
            return Ok(None);
        };
        if !authorizer.protects(stream) {
            return Ok(None);
        }
        let unauthorized = |reason: String| Refusal {
            code: "NetStream.Publish.Unauthorized",
            reason,
        };
        let name = StreamName::new(stream).map_err(|e| unauthorized(e.to_string()))?;
        let request = AuthRequest {
            v: PROTO_VERSION,
            stream: name,
            ip: peer.ip().to_string(),
            token: token.to_owned(),
            user_agent: None,
            referer: None,
            protocol: "rtmp".to_owned(),
        };
        match authorizer.check(&request).await {
            Ok(reply) if reply.decision == AuthDecision::Allow => {
                Ok((!token.is_empty()).then(|| blake3::hash(token.as_bytes())))
            }
            Ok(reply) => Err(unauthorized(format!(
                "publish to {stream:?} not authorised ({:?}{})",
                reply.decision,
                if token.is_empty() { ", no token" } else { "" }
            ))),
            Err(e) => Err(unauthorized(format!(
                "publish to {stream:?}: no auth decision could be had: {e}"
            ))),
        }
    }

    /// Forgets publish `id` of `stream` if it is still the live one.
    fn finish(&self, stream: &str, id: u64) {
        if let Some(slot) = self.slots().get_mut(stream) {
            if slot.live.as_ref().is_some_and(|l| l.id == id) {
                slot.live = None;
            }
        }
    }
}

/// Keeps a stream known to the hub; dropping it forgets the stream and
/// disconnects its publisher.
#[derive(Debug)]
pub struct StreamGuard {
    hub: Arc<PublishHub>,
    stream: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut slots = self.hub.slots();
        if let Some(slot) = slots.get_mut(&self.stream) {
            slot.registered = slot.registered.saturating_sub(1);
            if slot.registered == 0 {
                if let Some(mut live) = slots.remove(&self.stream).and_then(|s| s.live) {
                    if let Some(kick) = live.kick.take() {
                        let _ = kick.send(());
                    }
                }
            }
        }
    }
}

/// An admitted publish: where its transport stream goes.
#[derive(Debug)]
pub struct Publish {
    hub: Arc<PublishHub>,
    stream: String,
    id: u64,
    input: mpsc::Sender<PublishEvent>,
    last_media: Arc<Mutex<Instant>>,
    kicked: Option<oneshot::Receiver<()>>,
    ended: Option<String>,
}

impl Publish {
    /// The stream published to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Hands transport stream to the stream's source; `false` when the
    /// source is gone (the stream stopped).
    pub async fn send(&mut self, data: Bytes) -> bool {
        *self
            .last_media
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.input
            .send(PublishEvent::Data(self.id, data))
            .await
            .is_ok()
    }

    /// Completes when the publish must stop: another publisher took over
    /// or the stream stopped.
    pub async fn replaced(&mut self) {
        match self.kicked.as_mut() {
            Some(kicked) => {
                let _ = kicked.await;
                self.kicked = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Ends the publish with `reason` (for the source's error).
    pub fn end(mut self, reason: String) {
        self.ended = Some(reason);
    }
}

impl Drop for Publish {
    fn drop(&mut self) {
        let reason = self
            .ended
            .take()
            .unwrap_or_else(|| "the publisher went away".to_owned());
        let _ = self.input.try_send(PublishEvent::Ended(self.id, reason));
        self.hub.finish(&self.stream, self.id);
    }
}

/// The source of a stream's `publish://` input: what its publishers send.
#[derive(Debug)]
pub struct PublishSource {
    url: InputUrl,
    stream: String,
    events: mpsc::Receiver<PublishEvent>,
    current: Option<u64>,
}

impl PublishSource {
    /// Attaches `stream`'s publish input to `hub`.
    pub fn attach(url: InputUrl, stream: &str, hub: &PublishHub) -> Self {
        PublishSource {
            url,
            stream: stream.to_owned(),
            events: hub.attach(stream),
            current: None,
        }
    }

    async fn next(&mut self) -> Result<Option<SourceChunk>, IngestError> {
        loop {
            let Some(event) = self.events.recv().await else {
                return Ok(None);
            };
            match event {
                PublishEvent::Started(id) => {
                    if self.current.replace(id).is_some() {
                        return Err(self.lost("a new publisher took over".to_owned()));
                    }
                }
                PublishEvent::Data(id, data) => {
                    // Data of an unseen publish: its start was dropped.
                    if self.current.is_none() {
                        self.current = Some(id);
                    }
                    if self.current == Some(id) {
                        return Ok(Some(SourceChunk::from(data)));
                    }
                }
                PublishEvent::Ended(id, reason) if self.current == Some(id) => {
                    self.current = None;
                    return Err(self.lost(reason));
                }
                PublishEvent::Ended(..) => {}
            }
        }
    }

    fn lost(&self, reason: String) -> IngestError {
        IngestError::Publish {
            stream: self.stream.clone(),
            reason,
        }
    }
}

impl Source for PublishSource {
    fn url(&self) -> &InputUrl {
        &self.url
    }

    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<SourceChunk>, IngestError>> {
        Box::pin(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn unknown_streams_and_streams_without_publish_input_are_refused() {
        let hub = PublishHub::new(None);
        let e = hub.begin("nope", "", peer(1)).await.unwrap_err();
        assert_eq!(e.code, "NetStream.Publish.BadName");
        assert!(e.reason.contains("no stream \"nope\""), "{}", e.reason);
        let _guard = hub.register_stream("pulled");
        let e = hub.begin("pulled", "", peer(1)).await.unwrap_err();
        assert!(e.reason.contains("has no publish:// input"), "{}", e.reason);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_publisher_waits_for_the_first_to_go_idle() {
        let hub = PublishHub::new(None);
        let guard = hub.register_stream("studio");
        let mut source = PublishSource::attach(InputUrl::Publish, "studio", &hub);
        let mut first = hub.begin("studio", "", peer(1)).await.unwrap();
        assert!(first.send(Bytes::from_static(b"one")).await);
        assert_eq!(source.next().await.unwrap().unwrap().data, "one");
        let e = hub.begin("studio", "", peer(2)).await.unwrap_err();
        assert!(
            e.reason.contains("already being published by 127.0.0.1:1"),
            "{}",
            e.reason
        );
        tokio::time::advance(PUBLISH_IDLE_TIMEOUT).await;
        let mut second = hub.begin("studio", "", peer(2)).await.unwrap();
        // The first is told to go; its late data is not the stream's.
        tokio::time::timeout(Duration::from_secs(1), first.replaced())
            .await
            .unwrap();
        assert!(first.send(Bytes::from_static(b"late")).await);
        drop(first);
        assert!(second.send(Bytes::from_static(b"two")).await);
        let e = source.next().await.unwrap_err();
        assert!(e.to_string().contains("a new publisher took over"), "{e}");
        assert_eq!(source.next().await.unwrap().unwrap().data, "two");
        second.end("the encoder stopped".to_owned());
        let e = source.next().await.unwrap_err();
        assert!(e.to_string().contains("the encoder stopped"), "{e}");
        // A fresh publish after the end is admitted at once.
        let _third = hub.begin("studio", "", peer(3)).await.unwrap();
        drop(guard);
        assert!(!hub.knows("studio"));
    }
}
