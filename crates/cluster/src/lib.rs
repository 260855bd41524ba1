//! Origin to origin: what two DVR origins of one cluster need to trust each
//! other and to hand segments over unchanged (the seeds' `cluster_key`).
//!
//! - [`key`]: the cluster key, a secret shared by every origin, never sent,
//!   logged or shown.
//! - [`signature`]: a request signed with it: an HMAC over the method, the
//!   host, the path, the canonical query, a hash of the body, a timestamp
//!   and a nonce; checked within a short window, each nonce once.
//! - [`nonces`]: where the used nonces are kept, a KV bucket on the bus, so
//!   a request replayed to another replica is refused too.
//! - [`feed`]: the segment feed's wire format: framed records (metadata and
//!   the stored bytes), each carrying a MAC bound to the request, so bytes
//!   cannot be altered, dropped or reordered on the way unnoticed.
//! - [`client`]: the subscriber's side: a signed request and the frames
//!   read back, verified, as a stream; an origin's stream list.
//! - [`sources`]: `sources:`, other origins' streams kept in the streams
//!   bucket as restreamed streams.
//!
//! Why framed records on one long HTTP response rather than WebSocket or
//! long polling: the bytes go one way, HTTP/1.1 chunked bodies pass every
//! proxy and ingress the operators already run, TCP flow control is the
//! backpressure (the server reads the next segment only when the previous
//! one was taken), and resuming is a new request from the last seq.

pub mod client;
pub mod feed;
pub mod key;
pub mod nonces;
pub mod signature;
pub mod sources;

pub use client::{FeedClient, FeedError, FeedStart, FeedSubscription};
pub use feed::{FeedDecoder, FeedEncoder, FeedItem, FeedSegment, FrameError};
pub use key::ClusterKey;
pub use nonces::NonceGuard;
pub use signature::{
    ReceivedHeaders, RequestLine, SignatureError, SignedRequest, Verified, Verifier,
};
pub use sources::SourcesFollower;

/// The path every origin serves its segment feed on.
pub const FEED_PATH: &str = "/_dvr/cluster/v1/feed";
