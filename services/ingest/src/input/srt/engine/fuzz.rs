//! The `srt` fuzz target's harness: a listener port's core fed datagrams
//! without sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use srt_protocol::listener::AccessControlResponse;
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::Packet;
use srt_protocol::settings::KeySettings;
use tokio::sync::{mpsc, oneshot};

use super::port::{rejection, Answer, PortCore};
use super::{parse, settings};
use crate::input::srt::listener::Routes;

/// Feeds `datagrams` (each from one of a few peers, by `peer % 4`) to a
/// listener port's [`PortCore`], answering each caller with `routes`'
/// decision as the accept loop does, and ticking the port's clock 10 ms a
/// datagram: the path every datagram sent to a listener port takes. For
/// the `srt` fuzz target.
///
/// A handshake's cookie depends on the minute, so the harness copies the
/// cookie the listener last sent a peer into that peer's next handshake,
/// as a real caller would: the fuzzer then reaches the conclusion, the key
/// exchange and open connections.
///
/// The port contains srt-protocol's panics; a panic with srt-protocol
/// nowhere on the stack (ours, the harness) is a bug, and this panics with
/// it. Returns how many
/// panics of srt-protocol the port contained.
pub fn feed_listener<'a>(
    datagrams: impl IntoIterator<Item = (u8, &'a [u8])>,
    routes: &Routes,
) -> usize {
    use std::panic;
    use std::sync::{Arc, Mutex, PoisonError};

    let datagrams: Vec<(u8, &[u8])> = datagrams.into_iter().collect();
    // Each panic, and whether srt-protocol was on the stack (its parser
    // panics inside `bytes`, for one).
    let panics: Arc<Mutex<Vec<(bool, String)>>> = Arc::default();
    let seen = Arc::clone(&panics);
    let hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let in_library = info
            .location()
            .is_some_and(|l| l.file().contains("srt-protocol-"))
            || std::backtrace::Backtrace::force_capture()
                .to_string()
                .contains("srt_protocol::");
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((in_library, info.to_string()));
    }));
    let run = panic::catch_unwind(panic::AssertUnwindSafe(|| drive_port(&datagrams, routes)));
    panic::set_hook(hook);
    let panics = std::mem::take(&mut *panics.lock().unwrap_or_else(PoisonError::into_inner));
    let said: Vec<&str> = panics.iter().map(|(_, p)| p.as_str()).collect();
    if run.is_err() {
        panic!("the port did not contain a panic: {}", said.join("; "));
    }
    if let Some((_, ours)) = panics.iter().find(|(in_library, _)| !in_library) {
        panic!("a panic outside srt-protocol was contained: {ours}");
    }
    panics.len()
}

/// [`feed_listener`]'s run of one port.
fn drive_port(datagrams: &[(u8, &[u8])], routes: &Routes) {
    use srt_protocol::packet::ControlTypes;

    use crate::input::srt::listener::Decision;

    let local = SocketAddr::from(([127, 0, 0, 1], 9000));
    let mut now = Instant::now();
    let (requests, mut asked) = mpsc::channel(64);
    let (answers, _answered) = mpsc::unbounded_channel();
    let mut port = PortCore::new(now, local, settings(None, None), requests, answers);
    let mut cookies: HashMap<SocketAddr, i32> = HashMap::new();
    // The accepted connections' readers, kept so the connections live on.
    let mut readers = Vec::new();
    for &(peer, bytes) in datagrams {
        let from = SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(peer % 4)));
        now += Duration::from_millis(10);
        let Some(mut packet) = parse(bytes, from, false) else {
            continue;
        };
        if let Ok((Packet::Control(control), _)) = &mut packet {
            if let (ControlTypes::Handshake(shake), Some(cookie)) =
                (&mut control.control_type, cookies.get(&from))
            {
                shake.syn_cookie = *cookie;
            }
        }
        port.packet(now, packet, from);
        while let Ok(request) = asked.try_recv() {
            let encrypted = request.request.key_size != KeySize::Unspecified;
            let stream_id = request.request.stream_id.as_ref().map(|id| id.as_str());
            let (response, reply) = match routes.decide(stream_id, encrypted) {
                Decision::Accept { passphrase, .. } => {
                    let (reply, reader) = oneshot::channel();
                    readers.push(reader);
                    let keys = passphrase.map(|p| KeySettings {
                        key_size: request.request.key_size,
                        passphrase: Passphrase::from(p.as_str()),
                    });
                    (AccessControlResponse::Accepted(keys), Some(reply))
                }
                Decision::Refuse(reason, _) => {
                    (AccessControlResponse::Rejected(rejection(reason)), None)
                }
            };
            port.answer(
                now,
                Answer {
                    session: request.session,
                    response,
                    reply,
                },
            );
        }
        port.tick(now);
        for (packet, to) in port.outbox.drain(..) {
            if let Packet::Control(control) = &packet {
                if let ControlTypes::Handshake(shake) = &control.control_type {
                    cookies.insert(to, shake.syn_cookie);
                }
            }
        }
    }
}
