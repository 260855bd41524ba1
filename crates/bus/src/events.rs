//! The [`Events`] trait: what happened to a stream, told to whoever listens.
//!
//! Events are notifications, not state: a listener that was not connected
//! when one was published never sees it, and nothing waits for listeners.
//! Services publish them (recording started and stopped, source switched,
//! gap opened and closed, chunk written, lease moved) so an operator's
//! tooling, and the packagers that refresh their catalog on `chunk_written`,
//! learn of changes without polling. The embedded implementation is a
//! broadcast channel in the process ([`LocalEvents`]); the NATS one
//! publishes on the proto's `dvr.v1.events.{kind}.{stream}` subjects
//! ([`crate::nats::NatsEvents`]).

use std::fmt;

use async_trait::async_trait;
use dvr_common::StreamName;
use dvr_proto::Event;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;

use crate::error::BusError;
use crate::metrics::Backend;

/// A stream of events; a slow listener may miss some (they are
/// notifications), never receives them out of order.
pub type EventStream = BoxStream<'static, Event>;

/// Publishes and subscribes to events.
#[async_trait]
pub trait Events: Send + Sync + fmt::Debug {
    /// Publishes an event (fire and forget: `Ok` once handed to the bus).
    async fn publish(&self, event: &Event) -> Result<(), BusError>;

    /// Every event from now on, of one stream or (`None`) of all.
    async fn subscribe(&self, stream: Option<&StreamName>) -> Result<EventStream, BusError>;
}

/// Events inside one process (embedded mode).
#[derive(Debug, Clone)]
pub struct LocalEvents {
    sender: broadcast::Sender<Event>,
}

impl LocalEvents {
    /// A channel keeping up to `capacity` events for slow listeners.
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity.max(1)).0,
        }
    }
}

impl Default for LocalEvents {
    fn default() -> Self {
        Self::new(1024)
    }
}

#[async_trait]
impl Events for LocalEvents {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let started = tokio::time::Instant::now();
        // No listener is not an error: events are notifications.
        let _ = self.sender.send(event.clone());
        crate::metrics::published("event_publish", Backend::Embedded, started);
        Ok(())
    }

    async fn subscribe(&self, stream: Option<&StreamName>) -> Result<EventStream, BusError> {
        let only = stream.cloned();
        let receiver = self.sender.subscribe();
        Ok(futures::stream::unfold(receiver, move |mut receiver| {
            let only = only.clone();
            async move {
                loop {
                    match receiver.recv().await {
                        Ok(event) if only.as_ref().is_none_or(|s| *s == event.stream) => {
                            return Some((event, receiver));
                        }
                        // Another stream's, or missed ones: go on.
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed())
    }
}
