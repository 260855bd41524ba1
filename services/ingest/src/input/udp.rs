//! UDP input: unicast, or IPv4 multicast joined on a chosen interface.
//!
//! MPEG-TS over UDP arrives as datagrams of 7 × 188 bytes at a steady rate; a
//! short stall of this task must not lose packets, hence an 8 MiB receive
//! buffer. Datagrams already queued are coalesced into one chunk so a busy
//! stream does not cost one channel message per datagram.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::{Bytes, BytesMut};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::{BoxFuture, InputUrl, Source, SourceChunk};
use crate::error::IngestError;

/// Receive buffer asked of the kernel (it may grant less; see `rmem_max`).
const RECV_BUFFER: usize = 8 << 20;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;
/// Stop coalescing queued datagrams beyond this many bytes.
const MAX_CHUNK: usize = 64 * 1024;

/// Where a UDP input listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpTarget {
    /// The interface to join a multicast group on (`eth1@239.0.0.1:1234`).
    pub iface: Option<String>,
    /// The address to bind (unicast) or the group to join (multicast).
    pub host: String,
    /// The UDP port.
    pub port: u16,
}

impl UdpTarget {
    /// The IPv4 multicast group, if the host is one.
    pub fn multicast_group(&self) -> Option<Ipv4Addr> {
        self.host
            .parse::<Ipv4Addr>()
            .ok()
            .filter(Ipv4Addr::is_multicast)
    }
}

/// The index of a network interface, from sysfs (no `unsafe` libc call).
fn interface_index(name: &str) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))?;
    text.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A bound UDP socket.
#[derive(Debug)]
pub struct UdpSource {
    url: InputUrl,
    socket: UdpSocket,
    buf: BytesMut,
}

impl UdpSource {
    /// Binds the socket and joins the group if the host is a multicast address.
    pub async fn bind(url: InputUrl, target: &UdpTarget) -> Result<Self, IngestError> {
        let io = |what: &'static str| {
            let url = url.to_string();
            move |source| IngestError::Io { what, url, source }
        };
        let group = target.multicast_group();
        let bind_addr = match group {
            // Binding the group address (Linux) keeps other groups sent to the
            // same port out of this socket.
            Some(group) => SocketAddr::new(IpAddr::V4(group), target.port),
            None => tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(io("resolve"))?
                .next()
                .ok_or_else(|| IngestError::InvalidUrl {
                    url: url.to_string(),
                    reason: "host resolves to no address".into(),
                })?,
        };
        let domain = Domain::for_address(bind_addr);
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(io("socket"))?;
        socket.set_reuse_address(true).map_err(io("SO_REUSEADDR"))?;
        if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
            tracing::warn!(input = %url, error = %e, "cannot enlarge the receive buffer");
        }
        socket
            .set_nonblocking(true)
            .map_err(io("set non-blocking"))?;
        socket.bind(&bind_addr.into()).map_err(io("bind"))?;
        if let Some(group) = group {
            let interface = match &target.iface {
                Some(name) => InterfaceIndexOrAddress::Index(
                    interface_index(name).map_err(io("find interface"))?,
                ),
                None => InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
            };
            socket
                .join_multicast_v4_n(&group, &interface)
                .map_err(io("join multicast group"))?;
        } else if target.iface.is_some() {
            tracing::warn!(input = %url, "interface ignored: the address is not multicast");
        }
        let socket = UdpSocket::from_std(socket.into()).map_err(io("register socket"))?;
        Ok(UdpSource {
            url,
            socket,
            buf: BytesMut::new(),
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    async fn recv(&mut self) -> Result<Option<Bytes>, IngestError> {
        let err = |source| IngestError::Io {
            what: "receive",
            url: self.url.to_string(),
            source,
        };
        self.buf.clear();
        self.buf.reserve(MAX_CHUNK + MAX_DATAGRAM);
        self.socket.recv_buf(&mut self.buf).await.map_err(err)?;
        while self.buf.len() < MAX_CHUNK {
            match self.socket.try_recv_buf(&mut self.buf) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(err(e)),
            }
        }
        Ok(Some(self.buf.split().freeze()))
    }
}

impl Source for UdpSource {
    fn url(&self) -> &InputUrl {
        &self.url
    }

    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<SourceChunk>, IngestError>> {
        Box::pin(async { Ok(self.recv().await?.map(SourceChunk::from)) })
    }
}
