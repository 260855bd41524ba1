//! The request/reply part of the conformance suite (`suite.rs`):
//! replies reach their askers, error kinds cross the bus, a subject nobody
//! serves fails at once, silence times out, and a queue group answers each
//! request once.

// Test code: building the failure context eagerly costs nothing that matters.
#![allow(clippy::expect_fun_call)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_common::ErrorKind;
use futures::StreamExt;

use dvr_bus::error::BusError;
use dvr_bus::request::{Requester, Responder};

/// A hang guard, never a measurement.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs every request/reply check on `requester` and `responder` (which may
/// be one connection or two), naming the implementation `n` in failures.
pub async fn run_all(n: &str, requester: Arc<dyn Requester>, responder: Arc<dyn Responder>) {
    replies_reach_their_askers(n, &requester, &responder).await;
    error_kinds_cross_the_bus(n, &requester, &responder).await;
    unserved_and_silent_subjects_fail(n, &requester, &responder).await;
    a_queue_group_answers_each_request_once(n, &requester, &responder).await;
}

/// Serves `subject` by answering `prefix + body`, counting what it answered.
async fn echo(
    responder: &Arc<dyn Responder>,
    subject: &str,
    prefix: &'static str,
) -> Arc<AtomicUsize> {
    let mut requests = responder.serve(subject, "suite").await.expect("serve");
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        while let Some(req) = requests.next().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut out = prefix.as_bytes().to_vec();
            out.extend_from_slice(&req.body);
            let _ = req.reply(Bytes::from(out)).await;
        }
    });
    count
}

/// Fifty concurrent requests each get the reply to their own body.
pub async fn replies_reach_their_askers(
    n: &str,
    requester: &Arc<dyn Requester>,
    responder: &Arc<dyn Responder>,
) {
    echo(responder, "suite.echo", "re:").await;
    let asks = (0..50).map(|i| {
        let requester = Arc::clone(requester);
        async move {
            let body = Bytes::from(format!("q{i}"));
            (i, requester.request("suite.echo", body, PATIENCE).await)
        }
    });
    for (i, reply) in futures::future::join_all(asks).await {
        let reply = reply.expect(&format!("[{n}] request {i}"));
        assert_eq!(reply, Bytes::from(format!("re:q{i}")), "[{n}] reply {i}");
    }
}

/// An error answer arrives as [`BusError::Remote`] with its kind and text.
pub async fn error_kinds_cross_the_bus(
    n: &str,
    requester: &Arc<dyn Requester>,
    responder: &Arc<dyn Responder>,
) {
    let mut requests = responder
        .serve("suite.refuse", "suite")
        .await
        .expect("serve");
    tokio::spawn(async move {
        while let Some(req) = requests.next().await {
            let _ = req.reply_error(ErrorKind::Forbidden, "not for you").await;
        }
    });
    let err = requester
        .request("suite.refuse", Bytes::from_static(b"x"), PATIENCE)
        .await
        .expect_err(&format!("[{n}] an error reply is an error"));
    match err {
        BusError::Remote { kind, message, .. } => {
            assert_eq!(kind, ErrorKind::Forbidden, "[{n}]");
            assert_eq!(message, "not for you", "[{n}]");
        }
        other => panic!("[{n}] expected a remote error, got {other:?}"),
    }
}

/// Nobody serves: `NoResponders` without waiting out the timeout; served
/// but dropped unanswered: `RequestTimeout` after the timeout.
pub async fn unserved_and_silent_subjects_fail(
    n: &str,
    requester: &Arc<dyn Requester>,
    responder: &Arc<dyn Responder>,
) {
    let start = tokio::time::Instant::now();
    let err = requester
        .request("suite.nobody", Bytes::new(), PATIENCE)
        .await
        .expect_err(&format!("[{n}] unserved subject"));
    assert!(
        matches!(err, BusError::NoResponders { .. }),
        "[{n}] unserved subject: {err:?}"
    );
    assert!(
        start.elapsed() < PATIENCE,
        "[{n}] no responders must not wait for the timeout"
    );

    let mut requests = responder
        .serve("suite.silent", "suite")
        .await
        .expect("serve");
    tokio::spawn(async move {
        while let Some(req) = requests.next().await {
            drop(req);
        }
    });
    let timeout = Duration::from_millis(300);
    let start = tokio::time::Instant::now();
    let err = requester
        .request("suite.silent", Bytes::new(), timeout)
        .await
        .expect_err(&format!("[{n}] silent server"));
    assert!(
        matches!(err, BusError::RequestTimeout { .. }),
        "[{n}] silent server: {err:?}"
    );
    assert!(
        start.elapsed() >= timeout,
        "[{n}] gave up before the timeout"
    );
}

/// Two servers in one group: forty requests, forty answers in all.
pub async fn a_queue_group_answers_each_request_once(
    n: &str,
    requester: &Arc<dyn Requester>,
    responder: &Arc<dyn Responder>,
) {
    let a = echo(responder, "suite.group", "a:").await;
    let b = echo(responder, "suite.group", "b:").await;
    for i in 0..40 {
        let reply = requester
            .request("suite.group", Bytes::from(format!("{i}")), PATIENCE)
            .await
            .expect(&format!("[{n}] group request {i}"));
        let text = String::from_utf8_lossy(&reply).into_owned();
        assert!(
            text == format!("a:{i}") || text == format!("b:{i}"),
            "[{n}] group reply {text:?}"
        );
    }
    let answered = a.load(Ordering::SeqCst) + b.load(Ordering::SeqCst);
    assert_eq!(answered, 40, "[{n}] each request answered by one server");
}
