//! SRT input (`srt://`): as a caller that connects to an encoder's or
//! gateway's listener, or as a listener that encoders call, several
//! streams sharing one port by stream id ([`listener`]).
//!
//! The SRT implementation sits behind [`SrtTransport`] so it can be
//! swapped: [`engine`] drives the pure-Rust `srt-protocol` crate's state
//! machines. That library may panic on odd packets, so nothing of it runs
//! in the stream's own task: calls, handshakes and each connection's reads
//! run in tasks of their own, and a panic there is an input error like a
//! lost connection. A caller reconnects at the next read, as other live sources
//! do; a listener waits for its caller to come back.
//!
//! What arrives is MPEG-TS, as SRT senders carry it (seven packets a
//! message): the bytes go to the segmenter unchanged.

pub mod engine;
pub mod listener;
pub mod transport;

use std::io;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use dvr_common::config::{SrtInput, SrtMode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::info;

use super::{BoxFuture, InputUrl, Source, SourceChunk};
use crate::error::IngestError;
pub use listener::{Decision, Registration, Routes, SrtListeners};
pub use transport::{CallOptions, Rejection, SrtConnection, SrtTransport};

/// Bytes gathered from a connection before they are handed on.
const MAX_CHUNK: usize = 64 * 1024;
/// Chunks a connection's reader may be ahead of the stream.
const PUMP_CHUNKS: usize = 64;

/// The process's SRT listeners, over [`engine::SrtEngine`].
pub fn listeners() -> &'static Arc<SrtListeners> {
    static LISTENERS: OnceLock<Arc<SrtListeners>> = OnceLock::new();
    LISTENERS.get_or_init(|| SrtListeners::new(Arc::new(engine::SrtEngine)))
}

/// One connection read in a task of its own.
#[derive(Debug)]
struct Pump {
    data: mpsc::Receiver<io::Result<Bytes>>,
    task: JoinHandle<()>,
}

impl Pump {
    fn spawn(mut connection: Box<dyn SrtConnection>) -> Self {
        let (tx, data) = mpsc::channel(PUMP_CHUNKS);
        let task = tokio::spawn(async move {
            loop {
                let read = connection.recv(MAX_CHUNK).await;
                let last = !matches!(read, Ok(Some(_)));
                let item = match read {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) => return,
                    Err(e) => Err(e),
                };
                if tx.send(item).await.is_err() || last {
                    return;
                }
            }
        });
        Pump { data, task }
    }

    /// The next bytes, or why the connection is over.
    async fn next(&mut self) -> Result<Bytes, String> {
        match self.data.recv().await {
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(e)) => Err(format!("connection lost: {e}")),
            None => match (&mut self.task).await {
                Err(e) if e.is_panic() => Err("the SRT library panicked reading it".to_owned()),
                _ => Err("the peer closed the connection".to_owned()),
            },
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An SRT input of one stream.
#[derive(Debug)]
pub struct SrtSource {
    url: InputUrl,
    input: SrtInput,
    stream: String,
    transport: Arc<dyn SrtTransport>,
    listeners: Arc<SrtListeners>,
    /// A listener's place on its port, taken at the first read.
    registration: Option<Registration>,
    connection: Option<Pump>,
}

impl SrtSource {
    /// The input `input` of `stream`, calling with `transport` or listening
    /// through `listeners`. Nothing is connected or bound before the first
    /// read.
    pub fn new(
        url: InputUrl,
        input: SrtInput,
        stream: &str,
        transport: Arc<dyn SrtTransport>,
        listeners: Arc<SrtListeners>,
    ) -> Self {
        SrtSource {
            url,
            input,
            stream: stream.to_owned(),
            transport,
            listeners,
            registration: None,
            connection: None,
        }
    }

    fn error(&self, reason: String) -> IngestError {
        IngestError::Srt {
            url: self.url.to_string(),
            reason,
        }
    }

    async fn call(&mut self) -> Result<(), IngestError> {
        let remote = tokio::net::lookup_host((self.input.host.as_str(), self.input.port))
            .await
            .map_err(|e| self.error(format!("resolve {}: {e}", self.input.host)))?
            .next()
            .ok_or_else(|| self.error(format!("{} resolves to no address", self.input.host)))?;
        let options = CallOptions {
            stream_id: self.input.stream_id.clone(),
            passphrase: self.input.passphrase.clone(),
            latency_ms: self.input.latency_ms,
        };
        let connection = match tokio::spawn(self.transport.call(remote, options)).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(self.error(format!("call to {remote} failed: {e}"))),
            Err(e) => {
                return Err(self.error(format!(
                    "call to {remote} ended abnormally in the SRT library: {e}"
                )))
            }
        };
        info!(stream = %self.stream, input = %self.url, "SRT connected");
        self.connection = Some(Pump::spawn(connection));
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<SourceChunk>, IngestError> {
        match self.input.mode {
            SrtMode::Caller => {
                if self.connection.is_none() {
                    self.call().await?;
                }
            }
            SrtMode::Listener => {
                if self.registration.as_ref().is_none_or(Registration::stopped) {
                    self.registration = None;
                    let registration = self
                        .listeners
                        .register(&self.stream, &self.input)
                        .await
                        .map_err(|reason| self.error(reason))?;
                    self.registration = Some(registration);
                }
            }
        }
        loop {
            let registration = self.registration.as_mut();
            let connection = self.connection.as_mut();
            let event = tokio::select! {
                accepted = async {
                    match registration {
                        Some(r) => r.connections.recv().await,
                        None => std::future::pending().await,
                    }
                } => Err(accepted),
                data = async {
                    match connection {
                        Some(c) => c.next().await,
                        None => std::future::pending().await,
                    }
                } => Ok(data),
            };
            match event {
                Ok(Ok(data)) => return Ok(Some(SourceChunk::from(data))),
                Ok(Err(reason)) => {
                    self.connection = None;
                    return Err(self.error(reason));
                }
                Err(Some(connection)) => {
                    let replaced = self.connection.replace(Pump::spawn(connection)).is_some();
                    if replaced {
                        // A new run: the old caller's bytes end here.
                        return Err(self.error("a new caller took over".to_owned()));
                    }
                }
                Err(None) => {
                    self.registration = None;
                    self.connection = None;
                    return Err(self.error(format!(
                        "the SRT listener on port {} stopped",
                        self.input.port
                    )));
                }
            }
        }
    }
}

impl Source for SrtSource {
    fn url(&self) -> &InputUrl {
        &self.url
    }

    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<SourceChunk>, IngestError>> {
        Box::pin(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::transport::{Connecting, SrtIncoming};
    use super::*;
    use std::net::SocketAddr;

    /// An SRT library that panics where srt-protocol might: in a call, or
    /// reading a connection.
    #[derive(Debug)]
    struct Panicking {
        in_call: bool,
    }

    #[derive(Debug)]
    struct PanickingConnection;

    impl SrtConnection for PanickingConnection {
        fn recv(&mut self, _max: usize) -> BoxFuture<'_, io::Result<Option<Bytes>>> {
            Box::pin(async { panic!("odd packet") })
        }
    }

    impl SrtTransport for Panicking {
        fn call(&self, _remote: SocketAddr, _options: CallOptions) -> Connecting {
            let in_call = self.in_call;
            Box::pin(async move {
                assert!(!in_call, "odd handshake");
                Ok(Box::new(PanickingConnection) as Box<dyn SrtConnection>)
            })
        }

        fn listen(
            &self,
            _local: SocketAddr,
            _latency_ms: Option<u32>,
        ) -> BoxFuture<'static, io::Result<Box<dyn SrtIncoming>>> {
            Box::pin(async { Err(io::Error::other("not used")) })
        }
    }

    #[tokio::test]
    async fn a_panic_in_the_srt_library_is_an_input_error() {
        let url: InputUrl = "srt://127.0.0.1:9000?passphrase=0123456789abc"
            .parse()
            .unwrap();
        let InputUrl::Srt(input) = url.clone() else {
            unreachable!()
        };
        for (in_call, why) in [
            (true, "ended abnormally in the SRT library"),
            (false, "the SRT library panicked reading it"),
        ] {
            let mut source = SrtSource::new(
                url.clone(),
                input.clone(),
                "s",
                Arc::new(Panicking { in_call }),
                Arc::clone(listeners()),
            );
            let e = source.next().await.unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
            assert!(!e.contains("0123456789abc"), "{e}");
            // The next read tries again.
            assert!(source.next().await.is_err());
        }
    }
}
