//! The `http:` section: where the server listens, which proxies may name
//! the client, and the limits that keep one client (or a burst) from
//! exhausting the node.
//!
//! Every limit has a default safe for a node on the open internet; the
//! defaults and their reasons are listed in `docs/operations.md`.

use std::net::SocketAddr;

use super::auth::IpNet;

/// The HTTP server's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Address and port to listen on; default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Peers whose `X-Forwarded-For` is believed (an ingress, a CDN's
    /// edge, a local reverse proxy). The client is the rightmost address
    /// of the header that is not itself a trusted proxy; a request from any
    /// other peer is that peer, whatever it claims. Empty by default: the
    /// header is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Caps and timeouts.
    pub limits: HttpLimits,
}

/// What one node takes on at once, and how long it waits for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open TCP connections; a connection past it is answered `503` with
    /// `Retry-After` and closed. Default 10,000.
    pub max_connections: usize,
    /// Requests being answered at once (up to their response head: an
    /// endless MPEG-TS stream counts while it starts, then under
    /// `packager.max_paced_streams`); past it `503` with `Retry-After`.
    /// Default 1,024.
    pub max_requests: usize,
    /// The same per client address (after `trusted_proxies`; IPv6 by /64,
    /// what one subscriber is given). Default 128: a carrier-grade NAT
    /// puts many viewers behind one address.
    pub max_requests_per_client: usize,
    /// Time to receive a request's headers, counted from when the server
    /// waits for them (so also how long an idle keep-alive connection is
    /// kept), in milliseconds. Default 10 s.
    pub header_read_timeout_ms: u64,
    /// How long a response may wait for the client to take a byte before
    /// the connection is dropped, in milliseconds. Never a limit on a
    /// whole body: a paced stream or a long download lasts as long as the
    /// client reads. Default 60 s.
    pub write_stall_timeout_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 10_000,
            max_requests: 1024,
            max_requests_per_client: 128,
            header_read_timeout_ms: 10_000,
            write_stall_timeout_ms: 60_000,
        }
    }
}

/// Default HTTP listen address, `0.0.0.0:8080`.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            trusted_proxies: Vec::new(),
            limits: HttpLimits::default(),
        }
    }
}

/// A count limit from the config: at least 1, and small enough for a
/// `usize` on any platform.
pub(crate) fn count_limit(value: u64) -> Result<usize, String> {
    if value == 0 {
        return Err("must be at least 1".into());
    }
    usize::try_from(value).map_err(|_| format!("{value} is too large"))
}

/// A timeout from the config: between 100 ms and one hour.
pub(crate) fn timeout_ms(value: i64) -> Result<u64, String> {
    if !(100..=3_600_000).contains(&value) {
        return Err("must be between 100ms and 1h".into());
    }
    u64::try_from(value).map_err(|_| "must be positive".into())
}
