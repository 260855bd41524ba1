//! The accept loop: `axum::serve` with the limits it lacks.
//!
//! - a cap on open connections (past it a connection gets a `503` with
//!   `Retry-After` and is closed, without reading its request);
//! - a header read timeout (hyper's): a client that does not finish its
//!   request head in time, a slowloris, is dropped, and so is an idle
//!   keep-alive connection, since hyper times the wait for the next head
//!   the same way;
//! - a write-stall timeout ([`crate::io`]), never a total-time limit on a
//!   response;
//! - the TCP peer in every request's extensions as
//!   `ConnectInfo<SocketAddr>`, as `axum::serve` gives it;
//! - graceful shutdown: stop accepting, let answers in flight finish, but
//!   no longer than a drain deadline (endless streams never finish).

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::io::StallGuard;
use crate::{metrics, Edge};

/// How long shutdown waits for answers in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// What a connection past the cap is told before it is closed.
const TOO_MANY_CONNECTIONS: &str =
    "too many connections: this server's limit is reached; retry shortly\n";

/// Open connections, counted by guards.
#[derive(Debug, Default)]
struct Connections(AtomicUsize);

struct ConnectionGuard(Arc<Connections>);

impl Connections {
    fn try_open(self: &Arc<Self>, cap: usize) -> Option<ConnectionGuard> {
        if self.0.fetch_add(1, Ordering::AcqRel) >= cap {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        metrics::connection_opened();
        Some(ConnectionGuard(Arc::clone(self)))
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
        metrics::connection_closed();
    }
}

/// Serves `app` on `listener` with `edge`'s limits until `shutdown`
/// resolves, then drains. `app` should already be wrapped by
/// [`Edge::wrap`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    edge: Arc<Edge>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limits = *edge.limits();
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let write_stall = Duration::from_millis(limits.write_stall_timeout_ms);
    let connections = Arc::new(Connections::default());
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, retry.
                    warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(guard) = connections.try_open(limits.max_connections) else {
            metrics::refused("connections", "total");
            tokio::spawn(turn_away(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(StallGuard::new(stream, write_stall));
        let router = app.clone();
        let service = tower::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(Body::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(io, TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tasks.spawn(async move {
            if let Err(e) = connection.await {
                if e.is_timeout() {
                    metrics::timed_out("header_read");
                }
                debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            drop(guard);
        });
    }
    drop(listener);
    info!(
        open = connections.0.load(Ordering::Acquire),
        "http: draining connections"
    );
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        info!("http: drain deadline passed; closing the rest");
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Tells a connection past the cap to come back, without reading from it.
async fn turn_away(mut stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{TOO_MANY_CONNECTIONS}",
        TOO_MANY_CONNECTIONS.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
