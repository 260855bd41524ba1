//! Request/reply: one service asks, exactly one replica of another answers
//! (the packager asking auth whether a session may play).
//!
//! The model is NATS core request/reply with a queue group: a [`Requester`]
//! sends a body to a subject and waits for one reply or its timeout; a
//! [`Responder`] serves a subject and yields each [`IncomingRequest`] with
//! the handle to answer it. A request nobody serves fails at once with
//! [`BusError::NoResponders`] (NATS says so without waiting), a served one
//! that gets no answer in time with [`BusError::RequestTimeout`], and an
//! answer may be an error with an [`ErrorKind`] that the asker receives as
//! [`BusError::Remote`]. [`MemoryRequests`] is the embedded implementation
//! (one process); [`crate::nats::NatsRequests`] is the distributed one.
//!
//! Tracing: the asker's `bus.request` span is the parent of the server's
//! `bus.serve` span ([`IncomingRequest::span`]), passed along in process
//! and as W3C headers over NATS, so a packager request and the auth check
//! it waits for are one trace. The server's span lasts until the answer is
//! sent; a server that does more work for a request can run it inside that
//! span.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dvr_common::ErrorKind;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::BusError;
use crate::metrics::{self, Backend};

/// Sends requests and waits for their replies.
#[async_trait]
pub trait Requester: Send + Sync + fmt::Debug {
    /// Sends `body` to `subject`; the reply's body, or why there is none.
    async fn request(
        &self,
        subject: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, BusError>;
}

/// Serves subjects.
#[async_trait]
pub trait Responder: Send + Sync + fmt::Debug {
    /// Starts serving `subject` in the queue group `group`: each request is
    /// delivered to one server of the group. The stream ends when the bus
    /// goes away.
    async fn serve(&self, subject: &str, group: &str) -> Result<RequestStream, BusError>;
}

/// The requests arriving on a served subject.
pub type RequestStream = BoxStream<'static, IncomingRequest>;

/// One request, with the handle to answer it. Dropping it unanswered lets
/// the asker time out.
pub struct IncomingRequest {
    /// The subject it was sent to.
    pub subject: String,
    /// Its body.
    pub body: Bytes,
    reply: Box<dyn ReplySink>,
    span: tracing::Span,
}

impl fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("subject", &self.subject)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl IncomingRequest {
    /// A request answered through `reply` (for implementations), traced
    /// by no span until [`IncomingRequest::with_span`] gives it one.
    pub fn new(subject: String, body: Bytes, reply: Box<dyn ReplySink>) -> Self {
        Self {
            subject,
            body,
            reply,
            span: tracing::Span::none(),
        }
    }

    /// The same request, served inside `span` (the child of the asker's).
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// The span serving this request, a child of the asker's: a server
    /// instruments its work with it to keep the asker's trace.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Answers with `body`.
    pub async fn reply(self, body: Bytes) -> Result<(), BusError> {
        self.reply.send(Ok(body)).instrument(self.span).await
    }

    /// Answers with an error of `kind`; `message` is a short text for the
    /// asker's log.
    pub async fn reply_error(self, kind: ErrorKind, message: &str) -> Result<(), BusError> {
        self.span.record("error_kind", error_kind_name(kind));
        self.reply
            .send(Err((kind, message.to_owned())))
            .instrument(self.span)
            .await
    }
}

/// A reply body, or an error kind with its message.
pub type ReplyBody = Result<Bytes, (ErrorKind, String)>;

/// Where an implementation sends a request's answer.
#[async_trait]
pub trait ReplySink: Send + Sync {
    /// Delivers the answer.
    async fn send(self: Box<Self>, reply: ReplyBody) -> Result<(), BusError>;
}

/// The wire name of an error kind (`not_found`), as in `Dvr-Error-Kind`.
pub fn error_kind_name(kind: ErrorKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "internal".into())
}

/// The error kind a `Dvr-Error-Kind` value names; an unknown one is
/// `internal`.
pub fn error_kind_from_name(name: &str) -> ErrorKind {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .unwrap_or(ErrorKind::Internal)
}

/// The embedded request/reply hub: subjects served by tasks of this
/// process, each request handed to one server of the subject in turn.
#[derive(Clone, Debug, Default)]
pub struct MemoryRequests {
    servers: Arc<Mutex<HashMap<String, Served>>>,
}

#[derive(Debug, Default)]
struct Served {
    senders: Vec<mpsc::Sender<IncomingRequest>>,
    next: usize,
}

impl MemoryRequests {
    /// A hub with nothing served.
    pub fn new() -> Self {
        Self::default()
    }

    /// A live server of `subject`, taken in turn; closed ones are dropped.
    fn pick(&self, subject: &str) -> Option<mpsc::Sender<IncomingRequest>> {
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        let served = servers.get_mut(subject)?;
        served.senders.retain(|s| !s.is_closed());
        if served.senders.is_empty() {
            return None;
        }
        served.next = (served.next + 1) % served.senders.len();
        Some(served.senders[served.next].clone())
    }
}

struct OneshotSink(oneshot::Sender<ReplyBody>);

#[async_trait]
impl ReplySink for OneshotSink {
    async fn send(self: Box<Self>, reply: ReplyBody) -> Result<(), BusError> {
        // The asker may have timed out and gone: not the answerer's error.
        let _ = self.0.send(reply);
        Ok(())
    }
}

#[async_trait]
impl Requester for MemoryRequests {
    async fn request(
        &self,
        subject: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, BusError> {
        let span = tracing::info_span!("bus.request", subject, backend = "embedded");
        let started = Instant::now();
        let result = self
            .send(subject, body, timeout, &span)
            .instrument(span.clone())
            .await;
        metrics::requested(subject, Backend::Embedded, started, &result);
        result
    }
}

impl MemoryRequests {
    /// One request; the server's span is the child of `asker`.
    async fn send(
        &self,
        subject: &str,
        body: Bytes,
        timeout: Duration,
        asker: &tracing::Span,
    ) -> Result<Bytes, BusError> {
        let no_responders = || BusError::NoResponders {
            subject: subject.to_owned(),
        };
        let (tx, rx) = oneshot::channel();
        let served = tracing::info_span!(
            parent: asker,
            "bus.serve",
            subject,
            backend = "embedded",
            error_kind = tracing::field::Empty
        );
        let request = IncomingRequest::new(subject.to_owned(), body, Box::new(OneshotSink(tx)))
            .with_span(served);
        let server = self.pick(subject).ok_or_else(no_responders)?;
        server.send(request).await.map_err(|_| no_responders())?;
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Err(_)) => {
                // Dropped unanswered: as on NATS, the asker only sees
                // silence until its timeout.
                tokio::time::sleep_until(deadline).await;
                Err(BusError::RequestTimeout {
                    subject: subject.to_owned(),
                    timeout,
                })
            }
            Err(_) => Err(BusError::RequestTimeout {
                subject: subject.to_owned(),
                timeout,
            }),
            Ok(Ok(Ok(body))) => Ok(body),
            Ok(Ok(Err((kind, message)))) => Err(BusError::Remote {
                subject: subject.to_owned(),
                kind,
                message,
            }),
        }
    }
}

#[async_trait]
impl Responder for MemoryRequests {
    async fn serve(&self, subject: &str, _group: &str) -> Result<RequestStream, BusError> {
        let (tx, rx) = mpsc::channel(1024);
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(subject.to_owned())
            .or_default()
            .senders
            .push(tx);
        Ok(
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
                .boxed(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_round_trip_their_wire_names() {
        for kind in [
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::Timeout,
        ] {
            assert_eq!(error_kind_from_name(&error_kind_name(kind)), kind);
        }
        assert_eq!(error_kind_name(ErrorKind::BadRequest), "bad_request");
        assert_eq!(error_kind_from_name("no_such_kind"), ErrorKind::Internal);
    }
}
