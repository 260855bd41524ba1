//! The process's SRT listeners: one per UDP port, shared by every stream
//! whose input listens there, routing each caller by its stream id.
//!
//! The rule (also in docs/ingest.md): a stream with `streamid=X` takes the
//! callers that send exactly `X`; a stream without `streamid=` takes every
//! caller of its port, so it must be the port's only stream. The config
//! refuses streams that break this at load ([`SrtInput::listener_conflict`]),
//! and the registry refuses them again here, for streams added at run
//! time. A caller whose id no stream takes is refused and logged with the
//! id. A stream with a passphrase accepts only callers that encrypt with
//! it; one without refuses callers that encrypt.
//!
//! A listener lives while a stream uses it. If its task stops (the SRT
//! library panicked), every stream on the port gets an input error, and
//! the next read binds the port again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use dvr_common::config::SrtInput;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::transport::{Rejection, SrtConnection, SrtIncoming, SrtRequest, SrtTransport};

/// Connections a stream may have waiting; a newer caller replaces an
/// older one, so a few are plenty.
const PENDING_CONNECTIONS: usize = 4;

/// A stream taking callers on a port.
#[derive(Debug)]
struct Route {
    id: u64,
    stream: String,
    input: SrtInput,
    connections: mpsc::Sender<Box<dyn SrtConnection>>,
}

/// What the registry decided for a caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Accept it for `stream`, encrypted with `passphrase` when given.
    Accept {
        /// The route's id.
        route: u64,
        /// The stream it feeds.
        stream: String,
        /// The stream's passphrase.
        passphrase: Option<String>,
    },
    /// Turn it away.
    Refuse(Rejection, String),
}

/// The streams of one port. Kept apart from the listener so the routing
/// rule is a plain function, tested and fuzzed without sockets.
#[derive(Debug, Default)]
pub struct Routes(Vec<Route>);

impl Routes {
    /// Who takes a caller sending `stream_id`, encrypting or not.
    pub fn decide(&self, stream_id: Option<&str>, encrypted: bool) -> Decision {
        let route = self
            .0
            .iter()
            .find(|r| r.input.stream_id.is_some() && r.input.stream_id.as_deref() == stream_id)
            .or_else(|| match self.0.as_slice() {
                [only] if only.input.stream_id.is_none() => Some(only),
                _ => None,
            });
        let Some(route) = route else {
            return Decision::Refuse(
                Rejection::UnknownStream,
                match stream_id {
                    Some(_) => "no stream on this port takes this stream id".to_owned(),
                    None => {
                        "the caller sent no stream id and the port has streams by id".to_owned()
                    }
                },
            );
        };
        if encrypted && route.input.passphrase.is_none() {
            return Decision::Refuse(
                Rejection::BadSecret,
                format!(
                    "the caller encrypts and stream {:?} has no passphrase",
                    route.stream
                ),
            );
        }
        Decision::Accept {
            route: route.id,
            stream: route.stream.clone(),
            passphrase: route.input.passphrase.clone(),
        }
    }

    /// Adds a route unless it breaks the port's rule.
    fn add(&mut self, route: Route) -> Result<(), String> {
        if let Some(why) = self
            .0
            .iter()
            .find_map(|r| {
                route
                    .input
                    .listener_conflict(&r.input)
                    .map(|why| (why, &r.stream))
            })
            .map(|(why, other)| format!("{why} (stream {other:?})"))
        {
            return Err(why);
        }
        self.0.push(route);
        Ok(())
    }

    fn sender(&self, id: u64) -> Option<mpsc::Sender<Box<dyn SrtConnection>>> {
        self.0
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.connections.clone())
    }

    /// Routes for the fuzz harness: `(stream, input)` pairs, unchecked.
    pub fn for_fuzzing(inputs: Vec<(String, SrtInput)>) -> Self {
        Routes(
            inputs
                .into_iter()
                .enumerate()
                .map(|(id, (stream, input))| Route {
                    id: id as u64,
                    stream,
                    input,
                    connections: mpsc::channel(1).0,
                })
                .collect(),
        )
    }
}

/// One bound port.
#[derive(Debug)]
struct Port {
    host: String,
    routes: Arc<Mutex<Routes>>,
    /// Set when the accept loop ended: the port must be bound again.
    stopped: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for Port {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(routes: &Mutex<Routes>) -> std::sync::MutexGuard<'_, Routes> {
    routes.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The process's listeners, by port.
#[derive(Debug)]
pub struct SrtListeners {
    transport: Arc<dyn SrtTransport>,
    ports: tokio::sync::Mutex<HashMap<u16, Weak<Port>>>,
    next_id: AtomicU64,
}

/// A stream's place on a port: the connections its callers make. Dropping
/// it removes the route, and the last one closes the port.
#[derive(Debug)]
pub struct Registration {
    port: Arc<Port>,
    id: u64,
    /// Accepted callers, newest last.
    pub connections: mpsc::Receiver<Box<dyn SrtConnection>>,
}

impl Registration {
    /// Whether the listener stopped (the stream must register again).
    pub fn stopped(&self) -> bool {
        self.port.stopped.load(Ordering::Acquire)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.port.routes).0.retain(|r| r.id != self.id);
    }
}

impl SrtListeners {
    /// Listeners made by `transport`.
    pub fn new(transport: Arc<dyn SrtTransport>) -> Arc<Self> {
        Arc::new(SrtListeners {
            transport,
            ports: tokio::sync::Mutex::default(),
            next_id: AtomicU64::new(1),
        })
    }

    /// Routes callers for `input` (a listener input of `stream`) to the
    /// registration, binding the port if no stream uses it yet.
    pub async fn register(&self, stream: &str, input: &SrtInput) -> Result<Registration, String> {
        let mut ports = self.ports.lock().await;
        let live = ports
            .get(&input.port)
            .and_then(Weak::upgrade)
            .filter(|p| !p.stopped.load(Ordering::Acquire));
        let port = match live {
            Some(port) if port.host != input.host => {
                return Err(format!(
                    "SRT port {} already listens on {}, not {}",
                    input.port, port.host, input.host
                ))
            }
            Some(port) => port,
            None => {
                let port = self.bind(input).await?;
                ports.insert(input.port, Arc::downgrade(&port));
                port
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(PENDING_CONNECTIONS);
        lock(&port.routes).add(Route {
            id,
            stream: stream.to_owned(),
            input: input.clone(),
            connections: tx,
        })?;
        Ok(Registration {
            port,
            id,
            connections: rx,
        })
    }

    async fn bind(&self, input: &SrtInput) -> Result<Arc<Port>, String> {
        let addr = tokio::net::lookup_host((input.host.as_str(), input.port))
            .await
            .map_err(|e| format!("resolve {}: {e}", input.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", input.host))?;
        let incoming = self
            .transport
            .listen(addr, input.latency_ms)
            .await
            .map_err(|e| format!("bind SRT listener on {addr}: {e}"))?;
        info!(listen = %addr, "SRT listener started");
        let routes = Arc::new(Mutex::new(Routes::default()));
        let stopped = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(accept_loop(
            incoming,
            input.port,
            Arc::clone(&routes),
            Arc::clone(&stopped),
        ));
        Ok(Arc::new(Port {
            host: input.host.clone(),
            routes,
            stopped,
            task,
        }))
    }
}

async fn accept_loop(
    mut incoming: Box<dyn SrtIncoming>,
    port: u16,
    routes: Arc<Mutex<Routes>>,
    stopped: Arc<AtomicBool>,
) {
    while let Some(request) = incoming.next().await {
        let decision = lock(&routes).decide(request.stream_id(), request.encrypted());
        tokio::spawn(answer(request, decision, port, Arc::clone(&routes)));
    }
    warn!(port, "SRT listener stopped; its streams will bind it again");
    stopped.store(true, Ordering::Release);
    // Closing the streams' channels tells each source to register again.
    lock(&routes).0.clear();
}

/// Accepts or refuses one caller, in a task of its own: a slow or failing
/// handshake holds up nobody else, and a panic in it ends only it.
async fn answer(
    request: Box<dyn SrtRequest>,
    decision: Decision,
    port: u16,
    routes: Arc<Mutex<Routes>>,
) {
    let peer = request.peer();
    let stream_id = request.stream_id().unwrap_or("").to_owned();
    match decision {
        Decision::Refuse(rejection, reason) => {
            warn!(port, %peer, stream_id, %reason, "SRT caller refused");
            request.reject(rejection).await;
        }
        Decision::Accept {
            route,
            stream,
            passphrase,
        } => {
            let encrypted = passphrase.is_some();
            match tokio::spawn(request.accept(passphrase)).await {
                Ok(Ok(connection)) => {
                    info!(port, %peer, stream_id, stream, encrypted, "SRT caller connected");
                    let sender = lock(&routes).sender(route);
                    if let Some(sender) = sender {
                        let _ = sender.send(connection).await;
                    }
                }
                Ok(Err(e)) if encrypted => warn!(
                    port, %peer, stream_id, stream, error = %e,
                    "SRT caller refused: its passphrase is not the stream's, or it sent none"
                ),
                Ok(Err(e)) => {
                    warn!(port, %peer, stream_id, stream, error = %e, "SRT handshake failed");
                }
                Err(e) => warn!(
                    port, %peer, stream_id, stream, error = %e,
                    "SRT handshake ended abnormally in the SRT library"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(url: &str) -> SrtInput {
        match url.parse() {
            Ok(dvr_common::config::InputUrl::Srt(srt)) => srt,
            other => panic!("{url}: {other:?}"),
        }
    }

    fn accepted(decision: Decision) -> (String, Option<String>) {
        match decision {
            Decision::Accept {
                stream, passphrase, ..
            } => (stream, passphrase),
            Decision::Refuse(r, why) => panic!("refused ({r:?}): {why}"),
        }
    }

    #[test]
    fn callers_go_by_stream_id_and_a_port_without_ids_takes_everyone() {
        let by_id = Routes::for_fuzzing(vec![
            (
                "a".into(),
                input("srt://:9000?mode=listener&streamid=cam-a"),
            ),
            (
                "b".into(),
                input("srt://:9000?mode=listener&streamid=cam-b&passphrase=0123456789"),
            ),
        ]);
        assert_eq!(
            accepted(by_id.decide(Some("cam-a"), false)),
            ("a".into(), None)
        );
        assert_eq!(
            accepted(by_id.decide(Some("cam-b"), true)),
            ("b".into(), Some("0123456789".into()))
        );
        for (id, encrypted, rejection, why) in [
            (
                Some("cam-z"),
                false,
                Rejection::UnknownStream,
                "takes this stream id",
            ),
            (None, false, Rejection::UnknownStream, "sent no stream id"),
            (
                Some("cam-a"),
                true,
                Rejection::BadSecret,
                "has no passphrase",
            ),
        ] {
            match by_id.decide(id, encrypted) {
                Decision::Refuse(r, reason) => {
                    assert_eq!(r, rejection);
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("{id:?}: {other:?}"),
            }
        }
        let alone = Routes::for_fuzzing(vec![("only".into(), input("srt://:9000?mode=listener"))]);
        assert_eq!(accepted(alone.decide(None, false)).0, "only");
        assert_eq!(accepted(alone.decide(Some("anything"), false)).0, "only");
    }

    #[test]
    fn a_route_that_breaks_the_port_rule_is_refused() {
        let mut routes = Routes::default();
        let route = |id, stream: &str, url: &str| Route {
            id,
            stream: stream.to_owned(),
            input: input(url),
            connections: mpsc::channel(1).0,
        };
        routes
            .add(route(1, "a", "srt://:9000?mode=listener&streamid=a"))
            .unwrap();
        let e = routes
            .add(route(2, "b", "srt://:9000?mode=listener"))
            .unwrap_err();
        assert!(
            e.contains("each needs its own streamid=") && e.contains("\"a\""),
            "{e}"
        );
        let e = routes
            .add(route(3, "c", "srt://:9000?mode=listener&streamid=a"))
            .unwrap_err();
        assert!(e.contains("streamid \"a\" is taken"), "{e}");
        routes
            .add(route(4, "d", "srt://:9000?mode=listener&streamid=d"))
            .unwrap();
    }
}
