//! The edge over real TCP: slowloris clients are dropped at the header
//! timeout while a long download keeps flowing; a client that stops
//! reading is dropped at the write-stall timeout while a slow one is not;
//! connections and requests past their caps get `503` with `Retry-After`;
//! the client address comes through trusted proxies only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use dvr_common::config::{HttpConfig, IpNet};
use dvr_edge::{ClientAddr, Edge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

/// A generous bound on anything the tests wait for, so a broken edge
/// fails the test instead of hanging it.
const GUARD: Duration = Duration::from_secs(20);

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(config: HttpConfig, app: Router) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let edge = Edge::new(&config);
    let app = edge.wrap(app);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(dvr_edge::serve(listener, app, edge, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
    }
}

fn config(f: impl FnOnce(&mut HttpConfig)) -> HttpConfig {
    let mut c = HttpConfig::default();
    f(&mut c);
    c
}

/// A body of `chunks` chunks of 1 KiB, one every `every`; sets `dropped`
/// when the server drops it (finished or not).
fn slow_body(chunks: usize, every: Duration, dropped: Arc<AtomicBool>) -> Body {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = Flag(dropped);
    let stream = futures_util::stream::unfold((0, flag), move |(i, flag)| async move {
        if i == chunks {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024])),
            (i + 1, flag),
        ))
    });
    Body::from_stream(stream)
}

/// Reads an HTTP/1.1 response to the end of the connection (the requests
/// here say `Connection: close`).
async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, stream.read_to_end(&mut out))
        .await
        .expect("the response ends")
        .expect("the response reads");
    out
}

async fn get_once(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    String::from_utf8_lossy(&read_all(&mut s).await).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_dropped_at_the_header_timeout_while_a_long_download_flows() {
    let dropped = Arc::new(AtomicBool::new(false));
    let body_dropped = Arc::clone(&dropped);
    let app = Router::new().route(
        "/long",
        get(move || {
            let flag = Arc::clone(&body_dropped);
            async move { slow_body(20, Duration::from_millis(100), flag) }
        }),
    );
    let server = start(config(|c| c.limits.header_read_timeout_ms = 400), app).await;

    // The download: 2 s of body, five header timeouts long.
    let addr = server.addr;
    let download = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /long HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        read_all(&mut s).await
    });

    // The slowloris: a request head one byte every 100 ms, 40 bytes, four
    // seconds in all; the server must hang up long before it is complete.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let head = b"GET /long HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n";
    let mut sent = 0;
    let mut closed = false;
    for &b in head {
        if slow.write_all(&[b]).await.is_err() {
            closed = true;
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 64];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the server kept a connection that sent {sent} header bytes in {} ms",
        sent * 100
    );
    assert!(sent < head.len(), "the header was never completed");

    let body = download.await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let payload = body.split(|&b| b == b'x').count() - 1;
    assert_eq!(payload, 20 * 1024, "the whole 2 s download arrived");
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_a_slow_reader_is_not() {
    let endless_dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&endless_dropped);
    let app = Router::new()
        .route(
            "/endless",
            get(move || {
                let flag = Arc::clone(&flag);
                // 64 KiB every 10 ms: far more than a socket buffers.
                async move {
                    let chunk = Bytes::from(vec![b'y'; 65536]);
                    struct Flag(Arc<AtomicBool>);
                    impl Drop for Flag {
                        fn drop(&mut self) {
                            self.0.store(true, Ordering::SeqCst);
                        }
                    }
                    let guard = Flag(flag);
                    Body::from_stream(futures_util::stream::unfold(guard, move |guard| {
                        let chunk = chunk.clone();
                        async move {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            Some((Ok::<_, std::io::Error>(chunk), guard))
                        }
                    }))
                }
            }),
        )
        .route(
            "/slow",
            get(|| async { slow_body(15, Duration::from_millis(100), Arc::default()) }),
        );
    let server = start(config(|c| c.limits.write_stall_timeout_ms = 500), app).await;

    // Asks for the endless body and never reads it.
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    stuck
        .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    // A reader that takes 1.5 s, three stall timeouts, reading as it comes.
    let body = get_once(server.addr, "/slow", "").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert_eq!(body.matches('x').count(), 15 * 1024);

    let waited = tokio::time::timeout(GUARD, async {
        while !endless_dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the server still writes to a client that stopped reading"
    );
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_turned_away() {
    let app = Router::new().route("/", get(|| async { "ok" }));
    let server = start(config(|c| c.limits.max_connections = 2), app).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        // A full keep-alive exchange, so the server has surely counted it.
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let third = get_once(server.addr, "/", "").await;
    assert!(third.starts_with("HTTP/1.1 503"), "{third}");
    assert!(third.contains("Retry-After: 1"), "{third}");
    assert!(third.contains("too many connections"), "{third}");
    held.clear();
    // Once they close, new connections are served again.
    let ok = tokio::time::timeout(GUARD, async {
        loop {
            if get_once(server.addr, "/", "")
                .await
                .starts_with("HTTP/1.1 200")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ok.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_a_clients_cap_get_503_and_probes_still_answer() {
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let (r, e) = (Arc::clone(&release), Arc::clone(&entered));
    let app = Router::new()
        .route(
            "/slow",
            get(move || {
                let (r, e) = (Arc::clone(&r), Arc::clone(&e));
                async move {
                    e.notify_one();
                    r.notified().await;
                    "done"
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let server = start(config(|c| c.limits.max_requests_per_client = 1), app).await;
    let addr = server.addr;
    let first = tokio::spawn(async move { get_once(addr, "/slow", "").await });
    entered.notified().await;
    let second = get_once(server.addr, "/slow", "").await;
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("retry-after: 1"),
        "{second}"
    );
    assert!(
        second.contains("the limit of 1 per client address"),
        "{second}"
    );
    let probe = get_once(server.addr, "/healthz", "").await;
    assert!(probe.starts_with("HTTP/1.1 200"), "{probe}");
    release.notify_one();
    assert!(first.await.unwrap().ends_with("done"));
    let again = get_once(server.addr, "/healthz", "").await;
    assert!(again.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_is_named_through_trusted_proxies_only() {
    let echo = || {
        Router::new().route(
            "/who",
            get(|request: Request| async move {
                format!("client={}", ClientAddr::of(request.extensions()).unwrap().0)
            }),
        )
    };
    let forged = "X-Forwarded-For: 203.0.113.9\r\n";
    let direct = start(HttpConfig::default(), echo()).await;
    let answer = get_once(direct.addr, "/who", forged).await;
    assert!(answer.ends_with("client=127.0.0.1"), "{answer}");
    let proxied = start(
        config(|c| c.trusted_proxies = vec![IpNet::parse("127.0.0.1").unwrap()]),
        echo(),
    )
    .await;
    let answer = get_once(proxied.addr, "/who", forged).await;
    assert!(answer.ends_with("client=203.0.113.9"), "{answer}");
}
