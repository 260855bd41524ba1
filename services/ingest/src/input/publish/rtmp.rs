//! The RTMP listener encoders publish to (`rtmp: { listen: … }`).
//!
//! The protocol itself (handshake, chunk stream, AMF0 commands, the
//! connect/createStream/publish exchange) is the `rml_rtmp` crate's; it is
//! kept behind this module so it can be swapped. What the messages carry is
//! ours: FLV tag bodies go through [`dvr_media::flv::FlvToTs`] (bounds
//! checked, fuzzed) into transport stream for the stream's
//! [`super::PublishSource`].
//!
//! Which stream a publish feeds: RTMP splits the URL path into an
//! application (the first component) and a stream key (the rest); of the
//! whole path (`/news/hd` → `news/hd`), the key (`/live/ort` → `ort`) and
//! the application (`/ort`), the first that names a stream the hub knows
//! is taken. The token is the `token` query parameter of the key or the
//! application (`rtmp://h/ort?token=…`); when the application names the
//! stream, a key that is not a stream name is the token (an encoder's
//! "server `rtmp://h/ort`, stream key `SECRET`").
//!
//! Work is bounded: at most [`MAX_CONNECTIONS`] connections, each given
//! [`ADMIT_TIMEOUT`] to get from TCP connect to an admitted publish, and
//! RTMP's messages are at most 16 MiB by their 24-bit length.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dvr_media::flv::{check_declared_codecs, FlvError, FlvToTs};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::{Publish, PublishHub, Refusal};

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Time from TCP connect to an admitted publish.
pub const ADMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the socket at a time.
const READ_BUF: usize = 64 << 10;

/// The listener, accepting until dropped.
#[derive(Debug)]
pub struct RtmpListener {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl RtmpListener {
    /// Listens on `addr`, feeding publishes to `hub`'s streams.
    pub async fn bind(addr: SocketAddr, hub: Arc<PublishHub>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        info!(listen = %local, "RTMP listener started");
        let task = tokio::spawn(accept_loop(listener, hub));
        Ok(RtmpListener { local, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for RtmpListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, hub: Arc<PublishHub>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "RTMP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let hub = Arc::clone(&hub);
        tokio::spawn(async move {
            let _ = socket.set_nodelay(true);
            let mut conn = Connection {
                socket,
                peer,
                hub,
                publish: None,
                out: BytesMut::new(),
            };
            match conn.run().await {
                Ok(()) => debug!(%peer, "RTMP connection closed"),
                Err(reason) => info!(%peer, %reason, "RTMP connection closed"),
            }
            drop(permit);
        });
    }
}

/// An admitted publish and its converter.
#[derive(Debug)]
struct Active {
    publish: Publish,
    flv: FlvToTs,
}

struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    hub: Arc<PublishHub>,
    publish: Option<Active>,
    /// Transport stream converted and not yet handed on.
    out: BytesMut,
}

/// Whether the connection goes on after an event.
enum Next {
    Continue,
    Close(String),
}

impl Connection {
    async fn run(&mut self) -> Result<(), String> {
        let admit_by = tokio::time::Instant::now() + ADMIT_TIMEOUT;
        let leftover = tokio::time::timeout_at(admit_by, self.handshake())
            .await
            .map_err(|_| "handshake timed out".to_owned())??;
        let (mut session, results) =
            ServerSession::new(ServerSessionConfig::new()).map_err(|e| format!("session: {e}"))?;
        let mut results = results;
        if !leftover.is_empty() {
            results.extend(
                session
                    .handle_input(&leftover)
                    .map_err(|e| format!("RTMP: {e}"))?,
            );
        }
        let mut buf = vec![0u8; READ_BUF];
        loop {
            if let Next::Close(reason) = self.handle(&mut session, results).await? {
                return Err(reason);
            }
            let read = tokio::select! {
                read = self.socket.read(&mut buf) => read.map_err(|e| format!("read: {e}"))?,
                () = replaced(&mut self.publish) => {
                    return Err("disconnected: another publisher took the stream over, or it stopped".to_owned());
                }
                () = tokio::time::sleep_until(admit_by), if self.publish.is_none() => {
                    return Err(format!("no publish within {} s", ADMIT_TIMEOUT.as_secs()));
                }
            };
            if read == 0 {
                return Ok(());
            }
            results = session
                .handle_input(&buf[..read])
                .map_err(|e| format!("RTMP: {e}"))?;
        }
    }

    /// The RTMP handshake; returns the bytes read past it.
    async fn handshake(&mut self) -> Result<Vec<u8>, String> {
        let mut handshake = Handshake::new(PeerType::Server);
        let mut buf = vec![0u8; 4096];
        loop {
            let read = self
                .socket
                .read(&mut buf)
                .await
                .map_err(|e| format!("handshake read: {e}"))?;
            if read == 0 {
                return Err("closed during the handshake".to_owned());
            }
            match handshake
                .process_bytes(&buf[..read])
                .map_err(|e| format!("handshake: {e}"))?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.write(&response_bytes).await?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.write(&response_bytes).await?;
                    return Ok(remaining_bytes);
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.socket
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Acts on the session's results: answers, admissions, media.
    async fn handle(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<Next, String> {
        let mut pending = std::collections::VecDeque::from(results);
        while let Some(result) = pending.pop_front() {
            let event = match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    self.write(&packet.bytes).await?;
                    continue;
                }
                ServerSessionResult::RaisedEvent(event) => event,
                ServerSessionResult::UnhandleableMessageReceived(_) => continue,
            };
            match event {
                ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                    let answer = session
                        .accept_request(request_id)
                        .map_err(|e| format!("connect: {e}"))?;
                    pending.extend(answer);
                }
                ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    app_name,
                    stream_key,
                    ..
                } => {
                    if self.publish.is_some() {
                        return Ok(Next::Close("a second publish on one connection".to_owned()));
                    }
                    let admitted = match resolve(&self.hub, &app_name, &stream_key) {
                        Some((stream, token)) => self
                            .hub
                            .begin(&stream, &token, self.peer)
                            .await
                            .map_err(|refusal| (Some(stream), refusal)),
                        None => Err((None, unknown(&app_name))),
                    };
                    match admitted {
                        Ok(publish) => {
                            info!(peer = %self.peer, stream = publish.stream(), "publish started");
                            self.publish = Some(Active {
                                publish,
                                flv: FlvToTs::new(),
                            });
                            let answer = session
                                .accept_request(request_id)
                                .map_err(|e| format!("publish: {e}"))?;
                            pending.extend(answer);
                        }
                        Err((stream, refusal)) => {
                            warn!(
                                peer = %self.peer,
                                stream = stream.as_deref(),
                                code = refusal.code,
                                reason = %refusal.reason,
                                "publish refused"
                            );
                            let answer = session
                                .reject_request(request_id, refusal.code, &refusal.reason)
                                .map_err(|e| format!("publish refusal: {e}"))?;
                            for result in answer {
                                if let ServerSessionResult::OutboundResponse(packet) = result {
                                    self.write(&packet.bytes).await?;
                                }
                            }
                            let _ = self.socket.flush().await;
                            return Ok(Next::Close(format!("publish refused: {}", refusal.reason)));
                        }
                    }
                }
                ServerSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => {
                    if let Next::Close(reason) = self.media(true, timestamp.value, &data).await {
                        return Ok(Next::Close(reason));
                    }
                }
                ServerSessionEvent::AudioDataReceived {
                    data, timestamp, ..
                } => {
                    if let Next::Close(reason) = self.media(false, timestamp.value, &data).await {
                        return Ok(Next::Close(reason));
                    }
                }
                ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                    let answer = session
                        .reject_request(
                            request_id,
                            "NetStream.Play.Failed",
                            "this RTMP port takes publishes only: play over HTTP",
                        )
                        .map_err(|e| format!("play refusal: {e}"))?;
                    for result in answer {
                        if let ServerSessionResult::OutboundResponse(packet) = result {
                            self.write(&packet.bytes).await?;
                        }
                    }
                    return Ok(Next::Close("a play request: publishes only".to_owned()));
                }
                ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                    let declared =
                        check_declared_codecs(metadata.video_codec_id, metadata.audio_codec_id);
                    if let (Err(e), Some(active)) = (declared, &self.publish) {
                        let stream = active.publish.stream().to_owned();
                        return Ok(self.refuse_codec(&e, &stream));
                    }
                }
                ServerSessionEvent::PublishStreamFinished { .. } => {
                    if let Some(active) = self.publish.take() {
                        info!(peer = %self.peer, stream = active.publish.stream(), frames = active.flv.frames, "publish finished");
                        active
                            .publish
                            .end("the encoder stopped publishing".to_owned());
                    }
                }
                _ => {}
            }
        }
        Ok(Next::Continue)
    }

    /// Ends the publish of a codec that cannot be recorded, with a line
    /// naming it.
    fn refuse_codec(&mut self, e: &FlvError, stream: &str) -> Next {
        error!(peer = %self.peer, stream, error = %e, "publish refused: codec not supported");
        let reason = format!("publish refused: {e}");
        if let Some(active) = self.publish.take() {
            active.publish.end(reason.clone());
        }
        Next::Close(reason)
    }

    /// Converts one audio or video message and hands it on.
    async fn media(&mut self, video: bool, timestamp_ms: u32, body: &[u8]) -> Next {
        let Some(active) = &mut self.publish else {
            return Next::Continue;
        };
        let pushed = if video {
            active.flv.push_video(timestamp_ms, body, &mut self.out)
        } else {
            active.flv.push_audio(timestamp_ms, body, &mut self.out)
        };
        match pushed {
            Ok(_) => {}
            Err(e @ (FlvError::UnsupportedVideo(_) | FlvError::UnsupportedAudio(_))) => {
                let stream = active.publish.stream().to_owned();
                return self.refuse_codec(&e, &stream);
            }
            Err(e) => {
                debug!(peer = %self.peer, stream = active.publish.stream(), error = %e, "frame dropped");
            }
        }
        if !self.out.is_empty() && !active.publish.send(self.out.split().freeze()).await {
            return Next::Close("the stream's ingest stopped".to_owned());
        }
        Next::Continue
    }
}

/// Completes when the live publish must stop; never without one.
async fn replaced(publish: &mut Option<Active>) {
    match publish {
        Some(active) => active.publish.replaced().await,
        None => std::future::pending().await,
    }
}

/// `(path, token)` of `app` or `key`: the part before `?` and the value of
/// its `token` parameter.
fn split_token(s: &str) -> (&str, Option<String>) {
    match s.split_once('?') {
        Some((path, query)) => {
            let token = query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == "token").then(|| v.to_owned())
            });
            (path, token)
        }
        None => (s, None),
    }
}

/// The stream and token a publish to application `app` with stream key
/// `key` means (see the module documentation); `None` when no stream
/// matches.
fn resolve(hub: &PublishHub, app: &str, key: &str) -> Option<(String, String)> {
    let (app, app_token) = split_token(app.trim_matches('/'));
    let (key, key_token) = split_token(key.trim_matches('/'));
    let token = key_token.or(app_token);
    let whole = if key.is_empty() {
        app.to_owned()
    } else {
        format!("{app}/{key}")
    };
    if hub.knows(&whole) {
        return Some((whole, token.unwrap_or_default()));
    }
    if !key.is_empty() && hub.knows(key) {
        return Some((key.to_owned(), token.unwrap_or_default()));
    }
    if hub.knows(app) {
        return Some((app.to_owned(), token.unwrap_or_else(|| key.to_owned())));
    }
    None
}

/// The refusal of a publish no stream matches. The stream key is not
/// shown: it may be a token.
fn unknown(app: &str) -> Refusal {
    let (app, _) = split_token(app.trim_matches('/'));
    Refusal {
        code: "NetStream.Publish.BadName",
        reason: format!(
            "no stream ingested here matches the path (application {app:?}; the stream key is not shown, it may be a token)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_the_first_known_of_path_key_and_app() {
        let hub = PublishHub::new(None);
        let _a = hub.register_stream("news/hd");
        let _b = hub.register_stream("ort");
        let r = |app: &str, key: &str| resolve(&hub, app, key);
        let own = |s: &str, t: &str| Some((s.to_owned(), t.to_owned()));
        assert_eq!(r("news", "hd"), own("news/hd", ""));
        assert_eq!(r("live", "ort?token=abc"), own("ort", "abc"));
        assert_eq!(r("ort?token=abc", ""), own("ort", "abc"));
        assert_eq!(r("ort", "SECRET"), own("ort", "SECRET"));
        assert_eq!(r("ort", "x?token=t"), own("ort", "t"));
        assert_eq!(r("live", "nope"), None);
        assert_eq!(r("elsewhere", "SECRET"), None);
        let refusal = unknown("elsewhere?token=t");
        assert!(
            refusal.reason.contains("application \"elsewhere\""),
            "{}",
            refusal.reason
        );
    }
}
