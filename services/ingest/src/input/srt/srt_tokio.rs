//! [`SrtTransport`] over the pure-Rust `srt-tokio` crate; the only module
//! that names it.
//!
//! srt-tokio runs each listener and each connection in tasks of its own;
//! when one of them panics its channels close, which reads here as a
//! stopped listener or a closed connection, never as a crash.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{CoreRejectReason, RejectReason, ServerRejectReason};
use srt_protocol::settings::KeySettings;
use srt_tokio::{ConnectionRequest, SrtListener, SrtSocket};

use super::listener::Routes;
use super::transport::{
    CallOptions, Connecting, Rejection, SrtConnection, SrtIncoming, SrtRequest, SrtTransport,
};
use crate::input::BoxFuture;

/// srt-tokio as ingest's SRT implementation.
#[derive(Debug, Default)]
pub struct SrtTokio;

fn latency(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

fn passphrase(secret: String) -> io::Result<Passphrase> {
    // The length is checked when the URL is parsed; the error never
    // carries the secret.
    Passphrase::try_from(secret).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "passphrase is not 10 to 79 bytes",
        )
    })
}

impl SrtTransport for SrtTokio {
    fn call(&self, remote: SocketAddr, options: CallOptions) -> Connecting {
        Box::pin(async move {
            let mut builder = SrtSocket::builder();
            if let Some(ms) = options.latency_ms {
                builder = builder.latency(latency(ms));
            }
            if let Some(secret) = options.passphrase {
                let secret = passphrase(secret)?;
                builder = builder.set(|o| {
                    o.encryption.passphrase = Some(secret);
                });
            }
            let socket = builder.call(remote, options.stream_id.as_deref()).await?;
            Ok(Box::new(TokioConnection::new(socket)) as Box<dyn SrtConnection>)
        })
    }

    fn listen(
        &self,
        local: SocketAddr,
        latency_ms: Option<u32>,
    ) -> BoxFuture<'static, io::Result<Box<dyn SrtIncoming>>> {
        Box::pin(async move {
            let mut builder = SrtListener::builder();
            if let Some(ms) = latency_ms {
                builder = builder.latency(latency(ms));
            }
            let (listener, incoming) = builder.bind(local).await?;
            Ok(Box::new(TokioIncoming {
                _listener: listener,
                incoming,
            }) as Box<dyn SrtIncoming>)
        })
    }
}

/// A connection, and what its last batch left for the next call.
#[derive(Debug)]
struct TokioConnection {
    socket: SrtSocket,
    /// An error met after data in a batch: returned by the next call.
    error: Option<io::Error>,
    closed: bool,
}

impl TokioConnection {
    fn new(socket: SrtSocket) -> Self {
        TokioConnection {
            socket,
            error: None,
            closed: false,
        }
    }

    async fn recv_batch(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.closed {
            return Ok(None);
        }
        let first = match self.socket.next().await {
            Some(Ok((_, data))) => data,
            Some(Err(e)) => return Err(e),
            None => return Ok(None),
        };
        // Messages are about 1316 bytes: gather those already delivered so
        // a busy stream costs one hand-over per batch, not per message.
        let mut batch: Option<BytesMut> = None;
        while batch.as_ref().map_or(first.len(), BytesMut::len) < max {
            match self.socket.next().now_or_never() {
                Some(Some(Ok((_, more)))) => batch
                    .get_or_insert_with(|| {
                        let mut b = BytesMut::with_capacity(max + 2048);
                        b.extend_from_slice(&first);
                        b
                    })
                    .extend_from_slice(&more),
                Some(Some(Err(e))) => {
                    self.error = Some(e);
                    break;
                }
                Some(None) => {
                    self.closed = true;
                    break;
                }
                None => break,
            }
        }
        Ok(Some(batch.map_or(first, BytesMut::freeze)))
    }
}

impl SrtConnection for TokioConnection {
    fn recv(&mut self, max: usize) -> BoxFuture<'_, io::Result<Option<Bytes>>> {
        Box::pin(self.recv_batch(max))
    }
}

/// A bound listener: dropping it closes the port.
#[derive(Debug)]
struct TokioIncoming {
    _listener: SrtListener,
    incoming: srt_tokio::SrtIncoming,
}

impl SrtIncoming for TokioIncoming {
    fn next(&mut self) -> BoxFuture<'_, Option<Box<dyn SrtRequest>>> {
        Box::pin(async move {
            let request = self.incoming.incoming().next().await?;
            Some(Box::new(TokioRequest(request)) as Box<dyn SrtRequest>)
        })
    }
}

#[derive(Debug)]
struct TokioRequest(ConnectionRequest);

impl SrtRequest for TokioRequest {
    fn stream_id(&self) -> Option<&str> {
        self.0.stream_id().map(|id| id.as_str())
    }

    fn peer(&self) -> SocketAddr {
        self.0.remote()
    }

    fn encrypted(&self) -> bool {
        self.0.key_size() != KeySize::Unspecified
    }

    fn accept(self: Box<Self>, secret: Option<String>) -> Connecting {
        Box::pin(async move {
            let keys = match secret {
                // The caller's key length, whatever it is: srt-protocol
                // 0.4.4 panics on a mismatch instead of refusing it.
                Some(secret) => Some(KeySettings {
                    key_size: self.0.key_size(),
                    passphrase: passphrase(secret)?,
                }),
                None => None,
            };
            let socket = self.0.accept(keys).await?;
            Ok(Box::new(TokioConnection::new(socket)) as Box<dyn SrtConnection>)
        })
    }

    fn reject(self: Box<Self>, reason: Rejection) -> BoxFuture<'static, ()> {
        let reason = match reason {
            Rejection::UnknownStream => RejectReason::Server(ServerRejectReason::Notfound),
            Rejection::BadSecret => RejectReason::Core(CoreRejectReason::BadSecret),
        };
        Box::pin(async move {
            let _ = self.0.reject(reason).await;
        })
    }
}

/// Feeds `datagrams` (each from one of a few peers, by `peer % 4`) to
/// srt-tokio's listener core, answering each caller with `routes`' decision
/// as the accept loop does: the path every datagram sent to a listener
/// port takes before a connection exists. For the `srt` fuzz target.
///
/// The listener is srt-protocol's sans-IO `MultiplexListener`, which
/// srt-tokio's listener task drives the same way. A handshake's cookie
/// depends on the minute, so the harness copies the cookie the listener
/// last sent a peer into that peer's next handshake, as a real caller
/// would: the fuzzer then reaches the conclusion and key exchange.
///
/// srt-protocol 0.4.4 panics on some handshakes (a caller that encrypts
/// toward a stream without a passphrase: its "not implemented: expected
/// no secrets" panic, which its access-control request gives no way to
/// see coming). At run time that ends srt-tokio's listener task and the port
/// is bound again ([`super::listener`]); here the listener is rebuilt the
/// same way. A panic anywhere else (our routing, the harness) is a bug and
/// goes on unwinding. Returns how many times the listener was rebuilt.
pub fn feed_listener<'a>(
    datagrams: impl IntoIterator<Item = (u8, &'a [u8])>,
    routes: &Routes,
) -> usize {
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let datagrams: Vec<(u8, &[u8])> = datagrams.into_iter().collect();
    let mut from = 0;
    let mut rebuilt = 0;
    loop {
        let in_library = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&in_library);
        let hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let file = info.location().map_or("", |l| l.file());
            flag.store(
                file.contains("srt-protocol-") || file.contains("srt-tokio-"),
                Ordering::SeqCst,
            );
        }));
        let mut fed = 0;
        let run = panic::catch_unwind(AssertUnwindSafe(|| {
            drive_listener(&datagrams[from..], routes, &mut fed);
        }));
        panic::set_hook(hook);
        match run {
            Ok(()) => return rebuilt,
            Err(_) if in_library.load(Ordering::SeqCst) => {
                // The datagram that panicked it is gone with the old listener.
                from += fed + 1;
                rebuilt += 1;
            }
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

/// [`feed_listener`]'s run of one listener; `fed` counts the datagrams
/// it finished.
fn drive_listener(datagrams: &[(u8, &[u8])], routes: &Routes, fed: &mut usize) {
    use std::collections::HashMap;
    use std::time::Instant;

    use srt_protocol::listener::{
        AccessControlResponse, Action, Input, MultiplexListener, NextInputContext,
    };
    use srt_protocol::packet::{ControlTypes, Packet, ReceivePacketError};
    use srt_protocol::settings::ConnInitSettings;

    use super::listener::Decision;

    let local = SocketAddr::from(([127, 0, 0, 1], 9000));
    let mut now = Instant::now();
    let mut listener = MultiplexListener::new(now, local, ConnInitSettings::default());
    let mut cookies: HashMap<SocketAddr, i32> = HashMap::new();
    *fed = 0;
    for &(peer, bytes) in datagrams {
        let from = SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(peer % 4)));
        now += Duration::from_millis(10);
        let mut packet = Packet::parse(&mut &bytes[..], false);
        if let Ok(Packet::Control(control)) = &mut packet {
            if let (ControlTypes::Handshake(shake), Some(cookie)) =
                (&mut control.control_type, cookies.get(&from))
            {
                shake.syn_cookie = *cookie;
            }
        }
        let mut input = Input::Packet(packet.map(|p| (p, from)).map_err(ReceivePacketError::Parse));
        // Each datagram's actions, bounded: the listener answers every
        // action with at most one more.
        for _ in 0..64 {
            let action = listener.handle_input(now, input);
            let next = NextInputContext::for_action(&action);
            input = match action {
                Action::SendPacket((Packet::Control(control), to)) => {
                    if let ControlTypes::Handshake(shake) = &control.control_type {
                        cookies.insert(to, shake.syn_cookie);
                    }
                    next.input_from(Ok::<(), ()>(()))
                }
                Action::RequestAccess(session, request) => {
                    let encrypted = request.key_size != KeySize::Unspecified;
                    let stream_id = request.stream_id.as_ref().map(|id| id.as_str());
                    let response = match routes.decide(stream_id, encrypted) {
                        Decision::Accept { passphrase, .. } => {
                            AccessControlResponse::Accepted(passphrase.map(|p| KeySettings {
                                key_size: request.key_size,
                                passphrase: Passphrase::from(p.as_str()),
                            }))
                        }
                        Decision::Refuse(Rejection::UnknownStream, _) => {
                            AccessControlResponse::Rejected(RejectReason::Server(
                                ServerRejectReason::Notfound,
                            ))
                        }
                        Decision::Refuse(Rejection::BadSecret, _) => {
                            AccessControlResponse::Rejected(RejectReason::Core(
                                CoreRejectReason::BadSecret,
                            ))
                        }
                    };
                    Input::AccessResponse(Some((session, response)))
                }
                Action::WaitForInput | Action::Close => break,
                _ => next.input_from(Ok::<(), ()>(())),
            };
        }
        *fed += 1;
    }
}
