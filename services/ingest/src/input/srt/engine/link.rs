//! An open SRT connection: srt-protocol's `DuplexConnection`, stepped by
//! its port's (or caller's) task, and the channel its messages go out on.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use srt_protocol::connection::{Connection, DuplexConnection};
use srt_protocol::packet::{Packet, ReceivePacketResult};
use tokio::sync::mpsc;
use tracing::warn;

use super::contained;
use crate::input::srt::transport::SrtConnection;
use crate::input::BoxFuture;

/// Chunks (ticks' worth of messages) a reader may be behind.
const READER_CHUNKS: usize = 64;
/// Bytes a connection holds for a reader that does not keep up before it
/// gives up on it.
const MAX_BACKLOG: usize = 16 << 20;
/// How long a connection whose reader went away may take to shut down.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// An open connection and its reader.
#[derive(Debug)]
pub(super) struct Link {
    connection: DuplexConnection,
    data: mpsc::Sender<io::Result<Bytes>>,
    /// Released messages not handed on yet.
    released: BytesMut,
    /// When the reader went away; the connection is then shut down.
    orphaned: Option<Instant>,
}

impl Link {
    pub(super) fn new(connection: Connection) -> (Self, EngineConnection) {
        let (data, reader) = mpsc::channel(READER_CHUNKS);
        let link = Link {
            connection: DuplexConnection::new(connection),
            data,
            released: BytesMut::new(),
            orphaned: None,
        };
        (
            link,
            EngineConnection {
                data: reader,
                error: None,
            },
        )
    }

    /// Takes a packet from the peer; `false` when srt-protocol panicked on
    /// it, which ends the connection (its reader is told why).
    pub(super) fn packet(
        &mut self,
        now: Instant,
        packet: ReceivePacketResult,
        outbox: &mut Vec<(Packet, SocketAddr)>,
    ) -> bool {
        let taken = contained(|| {
            self.connection.handle_packet_input(now, packet);
            outbox.extend(std::iter::from_fn(|| self.connection.next_packet(now)));
        });
        if taken.is_none() {
            self.fail(io::Error::other(
                "srt-protocol panicked on a packet of this connection",
            ));
        }
        taken.is_some()
    }

    /// Runs the timers and hands released messages on; `false` once the
    /// connection is over, or when srt-protocol panicked running them (its
    /// reader is told why).
    pub(super) fn tick(&mut self, now: Instant, outbox: &mut Vec<(Packet, SocketAddr)>) -> bool {
        contained(|| self.run_timers(now, outbox)).unwrap_or_else(|| {
            self.fail(io::Error::other(
                "srt-protocol panicked running this connection's timers",
            ));
            false
        })
    }

    fn run_timers(&mut self, now: Instant, outbox: &mut Vec<(Packet, SocketAddr)>) -> bool {
        self.connection.check_timers(now);
        outbox.extend(std::iter::from_fn(|| self.connection.next_packet(now)));
        while let Some((_, message)) = self.connection.next_data(now) {
            if self.orphaned.is_none() {
                self.released.extend_from_slice(&message);
            }
        }
        if self.orphaned.is_none() && !self.released.is_empty() {
            let behind = self.released.len() > MAX_BACKLOG;
            let gone = match self.data.try_reserve() {
                Ok(permit) => {
                    permit.send(Ok(self.released.split().freeze()));
                    false
                }
                Err(mpsc::error::TrySendError::Full(())) if behind => {
                    warn!(
                        peer = %self.connection.settings().remote,
                        "SRT connection dropped: its stream did not keep up with it"
                    );
                    true
                }
                Err(mpsc::error::TrySendError::Full(())) => false,
                Err(mpsc::error::TrySendError::Closed(())) => true,
            };
            if gone {
                self.orphan(now);
            }
        }
        if self.orphaned.is_none() && self.data.is_closed() {
            self.orphan(now);
        }
        self.connection.is_open() && self.orphaned.is_none_or(|at| now - at < ORPHAN_GRACE)
    }

    /// Tells the reader why the connection ends here (when its channel has
    /// room; otherwise it sees the connection close).
    pub(super) fn fail(&self, error: io::Error) {
        let _ = self.data.try_send(Err(error));
    }

    /// Nobody reads any more: says goodbye to the peer.
    fn orphan(&mut self, now: Instant) {
        self.orphaned = Some(now);
        self.released = BytesMut::new();
        self.connection.handle_data_input(now, None);
    }
}

/// A connection's messages, as the engine hands them on.
#[derive(Debug)]
pub struct EngineConnection {
    data: mpsc::Receiver<io::Result<Bytes>>,
    /// An error met behind data: the next call returns it.
    error: Option<io::Error>,
}

impl SrtConnection for EngineConnection {
    fn recv(&mut self, max: usize) -> BoxFuture<'_, io::Result<Option<Bytes>>> {
        Box::pin(async move {
            if let Some(e) = self.error.take() {
                return Err(e);
            }
            let first = match self.data.recv().await {
                Some(chunk) => chunk?,
                None => return Ok(None),
            };
            if first.len() >= max {
                return Ok(Some(first));
            }
            // Chunks already waiting go out together.
            let mut more = BytesMut::new();
            while first.len() + more.len() < max {
                match self.data.try_recv() {
                    Ok(Ok(chunk)) => {
                        if more.is_empty() {
                            more.extend_from_slice(&first);
                        }
                        more.extend_from_slice(&chunk);
                    }
                    Ok(Err(e)) => {
                        self.error = Some(e);
                        break;
                    }
                    Err(_) => break,
                }
            }
            Ok(Some(if more.is_empty() {
                first
            } else {
                more.freeze()
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks already waiting go out together; an error behind them waits
    /// for the next call, and nothing is lost around it.
    #[tokio::test]
    async fn a_read_gathers_waiting_chunks_and_keeps_an_error_for_the_next() {
        let (tx, data) = mpsc::channel(8);
        let mut connection = EngineConnection { data, error: None };
        tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"cd"))).await.unwrap();
        tx.send(Err(io::Error::other("socket failed")))
            .await
            .unwrap();
        tx.send(Ok(Bytes::from_static(b"ef"))).await.unwrap();
        drop(tx);
        assert_eq!(connection.recv(1024).await.unwrap().unwrap(), "abcd");
        let e = connection.recv(1024).await.unwrap_err();
        assert_eq!(e.to_string(), "socket failed");
        assert_eq!(connection.recv(1024).await.unwrap().unwrap(), "ef");
        assert!(connection.recv(1024).await.unwrap().is_none());
    }
}
