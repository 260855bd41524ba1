//! Request/reply over NATS core: `request` with a `Dvr-Proto` header and a
//! timeout, `serve` as a queue subscription, error replies as a
//! `Dvr-Error-Kind` header with a text body (proto/README.md). A request
//! carries the asker's W3C trace context in its headers and the server's
//! `bus.serve` span continues that trace.

use std::time::Duration;

use async_nats::{HeaderMap, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use dvr_proto::{HEADER_ERROR_KIND, HEADER_PROTO_VERSION, PROTO_VERSION};
use futures::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use super::{nats_err, trace};
use crate::error::BusError;
use crate::metrics::{self, Backend};
use crate::request::{
    error_kind_from_name, error_kind_name, IncomingRequest, ReplyBody, ReplySink, RequestStream,
    Requester, Responder,
};

/// Request/reply on a NATS connection.
#[derive(Clone, Debug)]
pub struct NatsRequests {
    client: async_nats::Client,
}

impl NatsRequests {
    pub(super) fn new(client: async_nats::Client) -> Self {
        Self { client }
    }
}

fn proto_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_PROTO_VERSION, PROTO_VERSION.to_string().as_str());
    headers
}

#[async_trait]
impl Requester for NatsRequests {
    async fn request(
        &self,
        subject: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, BusError> {
        let span = tracing::info_span!("bus.request", subject, backend = "nats");
        let started = Instant::now();
        let result = self.send(subject, body, timeout).instrument(span).await;
        metrics::requested(subject, Backend::Nats, started, &result);
        result
    }
}

impl NatsRequests {
    /// One request, inside the caller's `bus.request` span (whose context
    /// the headers carry).
    async fn send(&self, subject: &str, body: Bytes, timeout: Duration) -> Result<Bytes, BusError> {
        use async_nats::client::RequestErrorKind;
        let mut headers = proto_headers();
        trace::inject_current(&mut headers);
        let request = async_nats::Request::new()
            .payload(body)
            .headers(headers)
            .timeout(Some(timeout));
        let reply = self
            .client
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::NoResponders => BusError::NoResponders {
                    subject: subject.to_owned(),
                },
                RequestErrorKind::TimedOut => BusError::RequestTimeout {
                    subject: subject.to_owned(),
                    timeout,
                },
                RequestErrorKind::Other => nats_err("request", subject, e),
            })?;
        let kind = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(HEADER_ERROR_KIND))
            .map(|v| error_kind_from_name(v.as_str()));
        match kind {
            Some(kind) => Err(BusError::Remote {
                subject: subject.to_owned(),
                kind,
                message: String::from_utf8_lossy(&reply.payload).into_owned(),
            }),
            None => Ok(reply.payload),
        }
    }
}

/// How long `serve` waits for its round trip to the server.
const SERVE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

struct NatsReply {
    client: async_nats::Client,
    subject: String,
    reply_to: async_nats::Subject,
}

#[async_trait]
impl ReplySink for NatsReply {
    async fn send(self: Box<Self>, reply: ReplyBody) -> Result<(), BusError> {
        let mut headers = proto_headers();
        let body = match reply {
            Ok(body) => body,
            Err((kind, message)) => {
                headers.insert(HEADER_ERROR_KIND, error_kind_name(kind).as_str());
                Bytes::from(message)
            }
        };
        self.client
            .publish_with_headers(self.reply_to, headers, body)
            .await
            .map_err(|e| nats_err("reply", &self.subject, e))
    }
}

#[async_trait]
impl Responder for NatsRequests {
    async fn serve(&self, subject: &str, group: &str) -> Result<RequestStream, BusError> {
        let subscriber: Subscriber = self
            .client
            .queue_subscribe(subject.to_owned(), group.to_owned())
            .await
            .map_err(|e| nats_err("serve", subject, e))?;
        // The subscription must be registered with the server before the
        // caller announces it serves. `flush` only writes the socket, so
        // make a round trip: the server handles a connection's operations
        // in order, so once a request to a subject nobody serves comes back
        // ("no responders"), the subscription before it is in place.
        self.client
            .flush()
            .await
            .map_err(|e| nats_err("serve", subject, e))?;
        let probe = async_nats::Request::new().timeout(Some(SERVE_PROBE_TIMEOUT));
        let _ = self
            .client
            .send_request(self.client.new_inbox(), probe)
            .await;
        let client = self.client.clone();
        Ok(subscriber
            .filter_map(move |msg| {
                let client = client.clone();
                async move {
                    // A message without a reply subject is a publish, not a
                    // request: nobody waits for an answer.
                    let reply_to = msg.reply?;
                    let subject = msg.subject.to_string();
                    // The asker's trace goes on here, not the consumer's.
                    let span = tracing::info_span!(
                        parent: None,
                        "bus.serve",
                        subject = %subject,
                        backend = "nats",
                        error_kind = tracing::field::Empty
                    );
                    trace::set_parent(&span, msg.headers.as_ref());
                    let sink = NatsReply {
                        client,
                        subject: subject.clone(),
                        reply_to,
                    };
                    Some(IncomingRequest::new(subject, msg.payload, Box::new(sink)).with_span(span))
                }
            })
            .boxed())
    }
}
