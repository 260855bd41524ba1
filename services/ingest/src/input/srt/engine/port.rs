//! A listener port: srt-protocol's `MultiplexListener` for the callers
//! still shaking hands, the open connections beside it, and the task that
//! drives both from one UDP socket.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use srt_protocol::listener::{
    AccessControlRequest, AccessControlResponse, Action, Input, MultiplexListener,
    NextInputContext, SessionId,
};
use srt_protocol::options::KeySize;
use srt_protocol::packet::{
    CoreRejectReason, Packet, ReceivePacketResult, RejectReason, ServerRejectReason,
};
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tracing::warn;

use super::link::{EngineConnection, Link};
use super::{contained, drain, flush, parse, passphrase, MAX_DATAGRAM, TICK};
use crate::input::srt::transport::{Connecting, Rejection, SrtConnection, SrtIncoming, SrtRequest};
use crate::input::BoxFuture;

/// How long an accepted caller may take to finish its handshake.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Peers without a connection the listener may track before it is rebuilt.
const MAX_STRANGERS: usize = 1024;
/// Steps of the listener per input: it answers each action with at most
/// one more, so a handful are plenty.
const MAX_STEPS: usize = 64;

/// A listener's answer to a caller, on its way to the port's task.
#[derive(Debug)]
pub struct Answer {
    pub(super) session: SessionId,
    pub(super) response: AccessControlResponse,
    /// Where the connection goes once the handshake completes.
    pub(super) reply: Option<oneshot::Sender<io::Result<EngineConnection>>>,
}

/// One listener port's state, without I/O: what its task drives, and what
/// the `srt` fuzz target feeds.
#[derive(Debug)]
pub struct PortCore {
    local: SocketAddr,
    settings: ConnInitSettings,
    listener: MultiplexListener,
    links: HashMap<SessionId, Link>,
    /// Peers without a connection since the listener was (re)built.
    strangers: HashSet<SessionId>,
    /// Accepted callers waiting for their handshake to complete.
    waiting: HashMap<SessionId, oneshot::Sender<io::Result<EngineConnection>>>,
    requests: mpsc::Sender<EngineRequest>,
    answers: mpsc::UnboundedSender<Answer>,
    /// Packets to send.
    pub outbox: Vec<(Packet, SocketAddr)>,
}

impl PortCore {
    /// A port at `local` whose callers' requests go to `requests` and
    /// whose answers come back through `answers`.
    pub fn new(
        now: Instant,
        local: SocketAddr,
        settings: ConnInitSettings,
        requests: mpsc::Sender<EngineRequest>,
        answers: mpsc::UnboundedSender<Answer>,
    ) -> Self {
        PortCore {
            local,
            listener: MultiplexListener::new(now, local, settings.clone()),
            settings,
            links: HashMap::new(),
            strangers: HashSet::new(),
            waiting: HashMap::new(),
            requests,
            answers,
            outbox: Vec::new(),
        }
    }

    /// A datagram from `from`.
    pub fn datagram(&mut self, now: Instant, bytes: &[u8], from: SocketAddr) {
        if let Some(packet) = parse(bytes, from, self.local.is_ipv6()) {
            self.packet(now, packet, from);
        }
    }

    /// A parsed datagram from `from`.
    pub fn packet(&mut self, now: Instant, packet: ReceivePacketResult, from: SocketAddr) {
        let session = SessionId(from);
        if let Some(link) = self.links.get_mut(&session) {
            if !link.packet(now, packet, &mut self.outbox) {
                warn!(port = self.local.port(), peer = %from, "SRT connection dropped: srt-protocol panicked on its packet");
                self.links.remove(&session);
            }
            return;
        }
        if self.strangers.insert(session) && self.strangers.len() > MAX_STRANGERS {
            warn!(
                port = self.local.port(),
                "more than {MAX_STRANGERS} SRT peers without a connection: handshakes start over"
            );
            self.restart_handshakes(now);
            self.strangers.insert(session);
        }
        self.step(now, Input::Packet(packet));
    }

    /// A new listener: the handshakes in progress start over.
    fn restart_handshakes(&mut self, now: Instant) {
        self.listener = MultiplexListener::new(now, self.local, self.settings.clone());
        self.strangers.clear();
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(io::Error::other(
                "the listener started its handshakes over",
            )));
        }
    }

    /// The accept loop's answer to a caller.
    pub fn answer(&mut self, now: Instant, answer: Answer) {
        if let Some(reply) = answer.reply {
            self.waiting.insert(answer.session, reply);
        }
        self.step(
            now,
            Input::AccessResponse(Some((answer.session, answer.response))),
        );
    }

    /// Runs every connection's timers.
    pub fn tick(&mut self, now: Instant) {
        self.step(now, Input::Timer);
        let outbox = &mut self.outbox;
        self.links.retain(|_, link| link.tick(now, outbox));
        self.waiting.retain(|_, reply| !reply.is_closed());
    }

    /// Steps the listener until it waits for input.
    fn step(&mut self, now: Instant, input: Input) {
        if contained(|| self.step_listener(now, input)).is_none() {
            warn!(
                port = self.local.port(),
                "an SRT handshake made srt-protocol panic: handshakes start over"
            );
            self.restart_handshakes(now);
        }
    }

    fn step_listener(&mut self, now: Instant, mut input: Input) {
        for _ in 0..MAX_STEPS {
            let action = self.listener.handle_input(now, input);
            let next = NextInputContext::for_action(&action);
            let done = match action {
                Action::SendPacket(packet) => {
                    self.outbox.push(packet);
                    Ok(())
                }
                Action::RequestAccess(session, request) => self
                    .requests
                    .try_send(EngineRequest {
                        session,
                        request,
                        answers: self.answers.clone(),
                    })
                    .map_err(drop),
                Action::RejectConnection(session, packet) => {
                    // The listener forgets a refused caller.
                    self.strangers.remove(&session);
                    self.outbox.extend(packet);
                    if let Some(reply) = self.waiting.remove(&session) {
                        let _ = reply.send(Err(io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            "the handshake was refused",
                        )));
                    }
                    Ok(())
                }
                Action::OpenConnection(session, opened) => {
                    let (packet, connection) = *opened;
                    self.outbox.extend(packet);
                    let (link, reader) = Link::new(connection);
                    // Nobody waits for it (the accept gave up): its next
                    // packet finds no connection and the listener drops it.
                    if let Some(reply) = self.waiting.remove(&session) {
                        if reply.send(Ok(reader)).is_ok() {
                            self.strangers.remove(&session);
                            self.links.insert(session, link);
                        }
                    }
                    Ok(())
                }
                Action::DelegatePacket(session, packet) => match self.links.get_mut(&session) {
                    Some(link) => {
                        if !link.packet(now, Ok(packet), &mut self.outbox) {
                            self.links.remove(&session);
                        }
                        Ok(())
                    }
                    None => Err(()),
                },
                Action::DropConnection(session) => {
                    self.strangers.remove(&session);
                    self.links.remove(&session);
                    self.waiting.remove(&session);
                    Ok(())
                }
                Action::UpdateStatistics(_) => Ok(()),
                Action::WaitForInput | Action::Close => return,
            };
            input = next.input_from(done);
        }
    }
}

/// A listener port's task.
pub(super) async fn run_port(
    socket: UdpSocket,
    mut core: PortCore,
    mut answers: mpsc::UnboundedReceiver<Answer>,
    requests: mpsc::Sender<EngineRequest>,
) {
    let port = core.local.port();
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut wire = BytesMut::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ready = socket.readable() => {
                let read = ready.and_then(|()| {
                    drain(&socket, &mut buf, |bytes, from| {
                        core.datagram(Instant::now(), bytes, from);
                    })
                });
                if let Err(e) = read {
                    warn!(port, error = %e, "SRT listener socket failed");
                    return;
                }
            }
            Some(answer) = answers.recv() => core.answer(Instant::now(), answer),
            _ = tick.tick() => core.tick(Instant::now()),
            // The listener was dropped: the port closes.
            () = requests.closed() => return,
        }
        flush(&socket, &mut core.outbox, &mut wire);
    }
}

/// A bound listener's callers: dropping it closes the port.
#[derive(Debug)]
pub(super) struct EngineIncoming(pub(super) mpsc::Receiver<EngineRequest>);

impl SrtIncoming for EngineIncoming {
    fn next(&mut self) -> BoxFuture<'_, Option<Box<dyn SrtRequest>>> {
        Box::pin(async move {
            let request = self.0.recv().await?;
            Some(Box::new(request) as Box<dyn SrtRequest>)
        })
    }
}

/// A caller waiting for the accept loop's answer.
#[derive(Debug)]
pub struct EngineRequest {
    pub(super) session: SessionId,
    pub(super) request: AccessControlRequest,
    answers: mpsc::UnboundedSender<Answer>,
}

impl EngineRequest {
    fn respond(
        &self,
        response: AccessControlResponse,
        reply: Option<oneshot::Sender<io::Result<EngineConnection>>>,
    ) -> io::Result<()> {
        self.answers
            .send(Answer {
                session: self.session,
                response,
                reply,
            })
            .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "the SRT listener stopped"))
    }
}

pub(super) fn rejection(reason: Rejection) -> RejectReason {
    match reason {
        Rejection::UnknownStream => RejectReason::Server(ServerRejectReason::Notfound),
        Rejection::BadSecret => RejectReason::Core(CoreRejectReason::BadSecret),
    }
}

impl SrtRequest for EngineRequest {
    fn stream_id(&self) -> Option<&str> {
        self.request.stream_id.as_ref().map(|id| id.as_str())
    }

    fn peer(&self) -> SocketAddr {
        self.request.remote
    }

    fn encrypted(&self) -> bool {
        self.request.key_size != KeySize::Unspecified
    }

    fn accept(self: Box<Self>, secret: Option<String>) -> Connecting {
        Box::pin(async move {
            let keys = match secret {
                // The caller's key length, whatever it is: srt-protocol
                // 0.4.4 panics on a mismatch instead of refusing it.
                Some(secret) => Some(KeySettings {
                    key_size: self.request.key_size,
                    passphrase: passphrase(secret)?,
                }),
                None => None,
            };
            let (reply, opened) = oneshot::channel();
            self.respond(AccessControlResponse::Accepted(keys), Some(reply))?;
            match tokio::time::timeout(ACCEPT_TIMEOUT, opened).await {
                Ok(Ok(Ok(connection))) => Ok(Box::new(connection) as Box<dyn SrtConnection>),
                Ok(Ok(Err(e))) => Err(e),
                Ok(Err(_)) => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the SRT listener stopped",
                )),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the caller did not finish its handshake",
                )),
            }
        })
    }

    fn reject(self: Box<Self>, reason: Rejection) -> BoxFuture<'static, ()> {
        let _ = self.respond(AccessControlResponse::Rejected(rejection(reason)), None);
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use srt_protocol::packet::SeqNumber;
    use srt_protocol::protocol::pending_connection::connect::Connect;
    use srt_protocol::protocol::pending_connection::ConnectionResult;

    use super::super::settings;
    use super::*;

    /// Callers that start a handshake and never finish it (forged sources)
    /// are tracked up to the cap, and the port still answers the next.
    #[test]
    fn peers_that_never_finish_a_handshake_are_bounded() {
        let local = SocketAddr::from(([127, 0, 0, 1], 9000));
        let now = Instant::now();
        let (requests, _asked) = mpsc::channel(64);
        let (answers, _answered) = mpsc::unbounded_channel();
        let mut port = PortCore::new(now, local, settings(None, None), requests, answers);
        for i in 0..3 * MAX_STRANGERS as u32 {
            let peer = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4000));
            let mut connect = Connect::new(
                local,
                peer.ip(),
                settings(None, None),
                None,
                SeqNumber::new_truncate(i),
            );
            let ConnectionResult::SendPacket((induction, _)) = connect.handle_tick(now) else {
                panic!("a caller starts with an induction");
            };
            port.outbox.clear();
            port.packet(now, Ok((induction, peer)), peer);
            assert_eq!(port.outbox.len(), 1, "peer {i} is answered");
            assert!(port.strangers.len() <= MAX_STRANGERS);
        }
    }
}
