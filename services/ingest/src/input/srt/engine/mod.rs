//! [`SrtTransport`] as our own I/O loop around srt-protocol's sans-IO state
//! machines: its `MultiplexListener` (handshakes on a listener port), its
//! `Connect` (a caller's handshake) and its `DuplexConnection` (ACKs, NAKs,
//! retransmission, decryption, the latency buffer). The only module that
//! names the crate.
//!
//! Why not the crate's own tokio driver (srt-tokio): it runs the listener
//! and every connection in tasks of their own, passes each 1316-byte
//! message from task to task through channels, and wakes each connection at
//! every message's release instant: about four task wake-ups a message, the
//! bulk of an SRT stream's CPU. Here one task per port reads the socket and
//! steps the listener and every connection in place; every
//! [`TICK`] (SRT's ACK period) it runs their timers and hands each
//! connection's released messages on as one chunk.
//!
//! The packets of a connection go to it straight from the socket, not
//! through the listener, whose sessions then belong only to callers still
//! shaking hands. srt-protocol never forgets those, so the listener is
//! rebuilt when more than 1,024 peers without a connection have written to
//! the port: a flood of forged sources costs bounded memory.
//!
//! srt-protocol 0.4.4 panics on some input: a caller that sends keys
//! without announcing a key length, toward a stream in the clear (its "not
//! implemented: expected no secrets"), a handshake extension it does not
//! know, a control packet shorter than its type says. Every call into it
//! runs under `catch_unwind`: a datagram it panics parsing is dropped, a
//! panic while shaking hands rebuilds the listener (the handshakes in
//! progress start over, open connections carry on), a panic in a
//! connection ends that connection only.

mod fuzz;
mod link;
mod port;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use srt_protocol::options::{Passphrase, SocketOptions};
use srt_protocol::packet::{Packet, ReceivePacketError, ReceivePacketResult, SeqNumber};
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::settings::ConnInitSettings;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::debug;

use super::transport::{CallOptions, Connecting, SrtConnection, SrtIncoming, SrtTransport};
use crate::input::BoxFuture;
pub use fuzz::feed_listener;
use link::Link;
use port::{run_port, EngineIncoming, PortCore};

/// How often timers run and released messages are handed on: SRT's ACK
/// period, so ACKs go out on time.
pub(super) const TICK: Duration = Duration::from_millis(10);
/// How often a caller repeats its handshake.
const HANDSHAKE_RETRY: Duration = Duration::from_millis(100);
/// How long a caller waits for the listener's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Receive buffer asked of the kernel (it may grant less): a short stall of
/// the port's task must not lose datagrams.
const RECV_BUFFER: usize = 8 << 20;
/// Largest UDP payload.
pub(super) const MAX_DATAGRAM: usize = 65_536;
/// Datagrams read per wake-up before the task gives way.
const READS_PER_WAKE: usize = 256;

/// Runs a step of srt-protocol; `None` if it panicked.
pub(super) fn contained<R>(step: impl FnOnce() -> R) -> Option<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).ok()
}

/// srt-protocol, driven by this module, as ingest's SRT implementation.
#[derive(Debug, Default)]
pub struct SrtEngine;

pub(super) fn passphrase(secret: String) -> io::Result<Passphrase> {
    // The length is checked when the URL is parsed; the error never
    // carries the secret.
    Passphrase::try_from(secret).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "passphrase is not 10 to 79 bytes",
        )
    })
}

/// srt-protocol's defaults, with the latency (both ways, as SRT
/// negotiates the larger) and the passphrase given.
pub(super) fn settings(
    latency_ms: Option<u32>,
    passphrase: Option<Passphrase>,
) -> ConnInitSettings {
    let mut options = SocketOptions::default();
    if let Some(ms) = latency_ms {
        let latency = Duration::from_millis(u64::from(ms));
        options.sender.peer_latency = latency;
        options.receiver.latency = latency;
    }
    options.encryption.passphrase = passphrase;
    options.into()
}

fn bind(local: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
        debug!(error = %e, "SRT socket keeps the kernel's receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&local.into())?;
    UdpSocket::from_std(socket.into())
}

/// A datagram as a packet; `None` when srt-protocol panicked parsing it
/// (0.4.4 does on a handshake extension it does not know: one datagram
/// from anyone would otherwise end the port).
pub(super) fn parse(bytes: &[u8], from: SocketAddr, ipv6: bool) -> Option<ReceivePacketResult> {
    let parsed = contained(|| Packet::parse(&mut &bytes[..], ipv6));
    if parsed.is_none() {
        debug!(%from, "SRT datagram dropped: srt-protocol panicked parsing it");
    }
    Some(
        parsed?
            .map(|packet| (packet, from))
            .map_err(ReceivePacketError::Parse),
    )
}

/// Sends what the state machines queued. UDP drops what it cannot take
/// now, as the network would; SRT asks again for what mattered.
pub(super) fn flush(
    socket: &UdpSocket,
    outbox: &mut Vec<(Packet, SocketAddr)>,
    wire: &mut BytesMut,
) {
    for (packet, to) in outbox.drain(..) {
        wire.clear();
        packet.serialize(wire);
        if let Err(e) = socket.try_send_to(wire, to) {
            debug!(%to, error = %e, "SRT packet not sent");
        }
    }
}

/// Reads the datagrams queued on `socket`, at most [`READS_PER_WAKE`].
/// `Err` when the socket failed.
pub(super) fn drain(
    socket: &UdpSocket,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8], SocketAddr),
) -> io::Result<()> {
    for _ in 0..READS_PER_WAKE {
        match socket.try_recv_from(buf) {
            Ok((len, from)) => each(&buf[..len], from),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A caller's connection's task.
async fn run_caller(socket: UdpSocket, mut link: Link, remote: SocketAddr) {
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut wire = BytesMut::new();
    let mut outbox = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ready = socket.readable() => {
                let mut alive = true;
                let read = ready.and_then(|()| {
                    drain(&socket, &mut buf, |bytes, from| {
                        if let (true, Some(packet)) = (alive, parse(bytes, from, remote.is_ipv6())) {
                            alive = link.packet(Instant::now(), packet, &mut outbox);
                        }
                    })
                });
                if !alive {
                    return;
                }
                if let Err(e) = read {
                    link.fail(e);
                    return;
                }
            }
            _ = tick.tick() => {
                if !link.tick(Instant::now(), &mut outbox) {
                    return;
                }
            }
        }
        flush(&socket, &mut outbox, &mut wire);
    }
}

/// A caller's handshake with the listener at `remote`.
async fn call(remote: SocketAddr, options: CallOptions) -> io::Result<Box<dyn SrtConnection>> {
    let local = match remote {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = bind(local)?;
    let secret = options.passphrase.map(passphrase).transpose()?;
    let first_seq = getrandom::u32().map_err(|e| io::Error::other(e.to_string()))?;
    let mut connect = Connect::new(
        remote,
        local.ip(),
        settings(options.latency_ms, secret),
        options.stream_id,
        SeqNumber::new_truncate(first_seq),
    );
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut wire = BytesMut::new();
    let mut retry = tokio::time::interval(HANDSHAKE_RETRY);
    let deadline = tokio::time::sleep(CALL_TIMEOUT);
    tokio::pin!(deadline);
    let connection = loop {
        let result = tokio::select! {
            () = &mut deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer in {} s", CALL_TIMEOUT.as_secs()),
                ));
            }
            _ = retry.tick() => connect.handle_tick(Instant::now()),
            ready = socket.readable() => {
                ready?;
                match socket.try_recv_from(&mut buf) {
                    Ok((len, from)) => match parse(&buf[..len], from, remote.is_ipv6()) {
                        Some(packet) => connect.handle_packet(packet, Instant::now()),
                        None => continue,
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        let mut outbox = Vec::new();
        match result {
            ConnectionResult::SendPacket(packet) => outbox.push(packet),
            ConnectionResult::Reject(packet, reason) => {
                outbox.extend(packet);
                flush(&socket, &mut outbox, &mut wire);
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, reason));
            }
            ConnectionResult::Connected(packet, connection) => {
                outbox.extend(packet);
                flush(&socket, &mut outbox, &mut wire);
                break connection;
            }
            ConnectionResult::Failure(e) => return Err(e),
            ConnectionResult::NotHandled(e) => {
                debug!(%remote, error = ?e, "SRT handshake packet ignored");
            }
            ConnectionResult::NoAction | ConnectionResult::RequestAccess(_) => {}
        }
        flush(&socket, &mut outbox, &mut wire);
    };
    let (link, reader) = Link::new(connection);
    tokio::spawn(run_caller(socket, link, remote));
    Ok(Box::new(reader))
}

impl SrtTransport for SrtEngine {
    fn call(&self, remote: SocketAddr, options: CallOptions) -> Connecting {
        Box::pin(call(remote, options))
    }

    fn listen(
        &self,
        local: SocketAddr,
        latency_ms: Option<u32>,
    ) -> BoxFuture<'static, io::Result<Box<dyn SrtIncoming>>> {
        Box::pin(async move {
            let socket = bind(local)?;
            let local = socket.local_addr()?;
            let (requests, incoming) = mpsc::channel(64);
            let (answers, answered) = mpsc::unbounded_channel();
            let core = PortCore::new(
                Instant::now(),
                local,
                settings(latency_ms, None),
                requests.clone(),
                answers,
            );
            tokio::spawn(run_port(socket, core, answered, requests));
            Ok(Box::new(EngineIncoming(incoming)) as Box<dyn SrtIncoming>)
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use srt_protocol::connection::DuplexConnection;

    use super::*;
    use crate::input::srt::transport::Rejection;

    /// Our listener over loopback: our caller with an unknown stream id is
    /// refused (not left to time out), and an encrypted sender driven by
    /// hand with srt-protocol gets 400 numbered messages through whole
    /// and in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_listener_and_a_caller_carry_messages_in_order() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let local = SocketAddr::from(([127, 0, 0, 1], port));
        let mut incoming = SrtEngine.listen(local, Some(80)).await.unwrap();
        let secret = "correct-horse-battery".to_owned();

        let accepting = tokio::spawn(async move {
            let mut answered = Vec::new();
            while let Some(request) = incoming.next().await {
                match request.stream_id() {
                    Some("cam") => {
                        let connection = request
                            .accept(Some("correct-horse-battery".to_owned()))
                            .await;
                        answered.push("accepted");
                        return (connection, answered, incoming);
                    }
                    _ => {
                        request.reject(Rejection::UnknownStream).await;
                        answered.push("refused");
                    }
                }
            }
            panic!("the listener stopped");
        });

        let refused = call(
            local,
            CallOptions {
                stream_id: Some("other".into()),
                passphrase: None,
                latency_ms: Some(80),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(
            refused.kind(),
            io::ErrorKind::ConnectionRefused,
            "{refused}"
        );

        // The engine's caller only receives: the sender is driven by hand.
        let sender_socket = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let mut connect = Connect::new(
            local,
            Ipv4Addr::LOCALHOST.into(),
            settings(Some(80), Some(passphrase(secret).unwrap())),
            Some("cam".into()),
            SeqNumber::new_truncate(7),
        );
        let mut buf = vec![0; MAX_DATAGRAM];
        let mut wire = BytesMut::new();
        let mut outbox = Vec::new();
        let connection = 'shake: loop {
            if let ConnectionResult::SendPacket(p) = connect.handle_tick(Instant::now()) {
                outbox.push(p);
            }
            flush(&sender_socket, &mut outbox, &mut wire);
            let wait = tokio::time::timeout(Duration::from_millis(100), sender_socket.readable());
            if wait.await.is_ok() {
                while let Ok((len, from)) = sender_socket.try_recv_from(&mut buf) {
                    match connect
                        .handle_packet(parse(&buf[..len], from, false).unwrap(), Instant::now())
                    {
                        ConnectionResult::SendPacket(p) => outbox.push(p),
                        ConnectionResult::Connected(p, connection) => {
                            outbox.extend(p);
                            flush(&sender_socket, &mut outbox, &mut wire);
                            break 'shake connection;
                        }
                        ConnectionResult::Reject(_, why) => panic!("refused: {why}"),
                        _ => {}
                    }
                }
            }
        };
        let (receiver, answered, _incoming) = accepting.await.unwrap();
        assert_eq!(answered, ["refused", "accepted"]);
        let mut receiver = receiver.unwrap();

        // 400 messages of 1316 bytes, numbered, sent over 2 s.
        let mut sender = DuplexConnection::new(connection);
        let messages: Vec<Bytes> = (0..400u32)
            .map(|i| Bytes::from([i.to_be_bytes().as_slice(), &[0x47; 1312]].concat()))
            .collect();
        let sending = messages.clone();
        let pump = tokio::spawn(async move {
            let mut queue = sending.into_iter();
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let started = Instant::now();
            loop {
                tick.tick().await;
                let now = Instant::now();
                for message in queue.by_ref().take(1) {
                    sender.handle_data_input(now, Some((now, message)));
                }
                while let Ok((len, from)) = sender_socket.try_recv_from(&mut buf) {
                    sender.handle_packet_input(now, parse(&buf[..len], from, false).unwrap());
                }
                sender.check_timers(now);
                outbox.extend(std::iter::from_fn(|| sender.next_packet(now)));
                flush(&sender_socket, &mut outbox, &mut wire);
                if now - started > Duration::from_secs(4) {
                    return;
                }
            }
        });
        let mut received = BytesMut::new();
        while received.len() < 400 * 1316 {
            let chunk = tokio::time::timeout(Duration::from_secs(5), receiver.recv(64 * 1024))
                .await
                .expect("messages keep coming")
                .unwrap()
                .expect("the connection stays open");
            received.extend_from_slice(&chunk);
        }
        assert_eq!(received, messages.concat());
        pump.abort();
    }
}
