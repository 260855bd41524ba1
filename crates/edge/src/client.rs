//! Who the client is: the peer's address, or, when the peer is a proxy the
//! operator trusts, the address that proxy says it forwarded for.
//!
//! Behind an ingress every request arrives from the ingress, so limits and
//! play authorization need the viewer's address from `X-Forwarded-For`;
//! but a client talking to us directly can write any `X-Forwarded-For` it
//! likes. So the header is read only from peers in
//! `http.trusted_proxies`, right to left: each proxy appends the address
//! it received from, so the rightmost entry that is not itself a trusted
//! proxy is the client. An entry that does not parse ends the walk at the
//! proxy that wrote it, since nothing left of it can be believed.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use dvr_common::config::IpNet;

/// The client a request is authorized, limited and logged as. The edge
/// puts it in every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client of a request from `peer` carrying `headers`, believing
    /// `X-Forwarded-For` only from `trusted` proxies.
    pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ClientAddr {
        let peer = peer.to_canonical();
        let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
        if !is_trusted(peer) {
            return ClientAddr(peer);
        }
        let mut client = peer;
        // Several header lines are one list, in order.
        let lines: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        for entry in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
            let Some(ip) = parse_entry(entry) else {
                break;
            };
            client = ip;
            if !is_trusted(ip) {
                break;
            }
        }
        ClientAddr(client)
    }

    /// The client of a request as the edge resolved it, else its TCP
    /// peer (a router served without the edge, as in tests).
    pub fn of(extensions: &Extensions) -> Option<ClientAddr> {
        extensions.get::<ClientAddr>().copied().or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| ClientAddr(c.0.ip().to_canonical()))
        })
    }

    /// What per-client limits count by: the address, or for IPv6 its /64,
    /// the block one subscriber is given (counting single IPv6 addresses
    /// would let one client take 2^64 shares).
    pub fn limit_key(self) -> IpAddr {
        match self.0 {
            IpAddr::V4(_) => self.0,
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        }
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (some
/// proxies write `1.2.3.4:5678` or `[2001:db8::1]:80`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| IpNet::parse(n).unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            ClientAddr::resolve(ip("198.51.100.1"), &h, &[]).0,
            ip("198.51.100.1")
        );
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            ClientAddr::resolve(ip("198.51.100.1"), &h, &trusted).0,
            ip("198.51.100.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.1"]);
        // The client forged the first entry; the ingress (10.0.0.5) and a
        // CDN edge (192.0.2.1) are trusted.
        let h = headers(&["6.6.6.6, 203.0.113.9, 192.0.2.1"]);
        assert_eq!(
            ClientAddr::resolve(ip("10.0.0.5"), &h, &trusted).0,
            ip("203.0.113.9")
        );
        // Split over two header lines, the same.
        let h = headers(&["6.6.6.6, 203.0.113.9", "192.0.2.1"]);
        assert_eq!(
            ClientAddr::resolve(ip("10.0.0.5"), &h, &trusted).0,
            ip("203.0.113.9")
        );
        // Ports and IPv4-mapped IPv6 are read.
        let h = headers(&["203.0.113.9:4711"]);
        assert_eq!(
            ClientAddr::resolve(ip("10.0.0.5"), &h, &trusted).0,
            ip("203.0.113.9")
        );
        let h = headers(&["[2001:db8::7]:80"]);
        assert_eq!(
            ClientAddr::resolve(ip("::ffff:10.0.0.5"), &h, &trusted).0,
            ip("2001:db8::7")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_proxy_that_wrote_it() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&["203.0.113.9, not-an-address, 10.1.1.1"]);
        assert_eq!(
            ClientAddr::resolve(ip("10.0.0.5"), &h, &trusted).0,
            ip("10.1.1.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            ClientAddr::resolve(ip("10.0.0.5"), &HeaderMap::new(), &trusted).0,
            ip("10.0.0.5")
        );
        // Every entry trusted: the leftmost.
        let h = headers(&["10.9.9.9, 10.1.1.1"]);
        assert_eq!(
            ClientAddr::resolve(ip("10.0.0.5"), &h, &trusted).0,
            ip("10.9.9.9")
        );
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let a = ClientAddr(ip("2001:db8:1:2:aaaa::1")).limit_key();
        let b = ClientAddr(ip("2001:db8:1:2:bbbb::9")).limit_key();
        let c = ClientAddr(ip("2001:db8:1:3::1")).limit_key();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(ClientAddr(ip("192.0.2.7")).limit_key(), ip("192.0.2.7"));
    }
}
