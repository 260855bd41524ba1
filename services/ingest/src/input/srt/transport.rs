//! What ingest needs of an SRT implementation, as a trait: call a listener,
//! listen for callers and decide each one, read a connection's messages.
//!
//! Everything above this trait (routing callers by stream id, reconnecting,
//! turning a library panic into an input error) is ours and does not change
//! when the implementation does; [`super::engine`] is the one in use.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::input::BoxFuture;

/// A connection's future, owning everything it needs so it can run in its
/// own task (where a panic of the library is caught).
pub type Connecting = BoxFuture<'static, io::Result<Box<dyn SrtConnection>>>;

/// An SRT implementation.
pub trait SrtTransport: Send + Sync + fmt::Debug {
    /// Calls the listener at `remote`.
    fn call(&self, remote: SocketAddr, options: CallOptions) -> Connecting;

    /// Binds a listener on `local` whose connections receive with
    /// `latency_ms` (`None`: the implementation's default).
    fn listen(
        &self,
        local: SocketAddr,
        latency_ms: Option<u32>,
    ) -> BoxFuture<'static, io::Result<Box<dyn SrtIncoming>>>;
}

/// How a caller connects.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// The stream id sent to the listener.
    pub stream_id: Option<String>,
    /// The AES passphrase (10 to 79 bytes), if the stream is encrypted.
    pub passphrase: Option<String>,
    /// The receive latency in milliseconds.
    pub latency_ms: Option<u32>,
}

impl fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallOptions")
            .field("stream_id", &self.stream_id)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "***"))
            .field("latency_ms", &self.latency_ms)
            .finish()
    }
}

/// An established connection that ingest receives from.
pub trait SrtConnection: Send + fmt::Debug {
    /// At least one message, with those already received behind it up to
    /// about `max` bytes; `None` once the peer closed.
    fn recv(&mut self, max: usize) -> BoxFuture<'_, io::Result<Option<Bytes>>>;
}

/// A bound listener's callers, one at a time.
pub trait SrtIncoming: Send + fmt::Debug {
    /// The next caller asking to connect; `None` once the listener stopped.
    fn next(&mut self) -> BoxFuture<'_, Option<Box<dyn SrtRequest>>>;
}

/// Why a caller is turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No stream on the port takes its stream id.
    UnknownStream,
    /// It encrypts and the stream does not, or the other way round.
    BadSecret,
}

/// A caller waiting for its answer.
pub trait SrtRequest: Send + fmt::Debug {
    /// The stream id it sent.
    fn stream_id(&self) -> Option<&str>;
    /// Where it calls from.
    fn peer(&self) -> SocketAddr;
    /// Whether it asks for an encrypted connection.
    fn encrypted(&self) -> bool;
    /// Accepts it with `passphrase` (`None`: unencrypted). Fails when the
    /// handshake does not complete, a wrong passphrase included.
    fn accept(self: Box<Self>, passphrase: Option<String>) -> Connecting;
    /// Turns it away.
    fn reject(self: Box<Self>, reason: Rejection) -> BoxFuture<'static, ()>;
}
