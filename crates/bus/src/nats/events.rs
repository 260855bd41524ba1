//! Events on NATS core subjects (no JetStream: they are notifications).
//! An event carries its publisher's trace context in its headers, and a
//! listener reports how long after the event's time it arrived.

use async_nats::HeaderMap;
use async_trait::async_trait;
use dvr_common::StreamName;
use dvr_proto::{
    event_subject, events_of_stream, Event, Versioned, EVENTS_ALL, HEADER_PROTO_VERSION,
    PROTO_VERSION,
};
use futures::stream::StreamExt;
use tracing::debug;

use super::{nats_err, trace};
use crate::error::BusError;
use crate::events::{EventStream, Events};
use crate::metrics::{self, Backend};

/// Publishes on `dvr.v1.events.{kind}.{stream}`, subscribes by wildcard.
#[derive(Clone, Debug)]
pub struct NatsEvents {
    client: async_nats::Client,
}

impl NatsEvents {
    /// Events over `client`.
    pub fn new(client: async_nats::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Events for NatsEvents {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let subject = event_subject(event.kind, &event.stream);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_PROTO_VERSION, PROTO_VERSION.to_string().as_str());
        trace::inject_current(&mut headers);
        metrics::time_publish(
            "event_publish",
            Backend::Nats,
            self.client
                .publish_with_headers(subject.clone(), headers, event.encode().into()),
        )
        .await
        .map_err(|e| nats_err("publish event", &subject, e))
    }

    async fn subscribe(&self, stream: Option<&StreamName>) -> Result<EventStream, BusError> {
        let subject = stream.map_or_else(|| EVENTS_ALL.to_owned(), events_of_stream);
        let subscriber = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| nats_err("subscribe to events", &subject, e))?;
        Ok(subscriber
            .filter_map(|message| async move {
                match Event::decode(&message.payload) {
                    Ok(event) => {
                        let now = dvr_common::Clock::now(&dvr_common::SystemClock);
                        metrics::consumed("events", now.0 - event.at.0);
                        Some(event)
                    }
                    Err(e) => {
                        debug!(subject = %message.subject, error = %e, "ignoring an event we cannot read");
                        None
                    }
                }
            })
            .boxed())
    }
}
