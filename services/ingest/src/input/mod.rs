//! Inputs: every kind of source behind one trait, [`Source`], that yields
//! chunks of transport stream, and the URL syntax that picks one.
//!
//! A source only moves bytes; it knows nothing of packets beyond what pacing
//! needs, and nothing of segments. Live sources (UDP, HTTP) never end on their
//! own: a failure is returned as an error and the next call tries again, so
//! the failover logic above sees every loss and every recovery.
//!
//! A source may know the UTC of what it sends (HLS's program date-time): it
//! says so with [`SourceChunk::utc_hint`], which the service hands to the
//! segmenter before the bytes.

mod file;
mod hls;
mod http;
pub mod publish;
pub mod srt;
mod udp;

use bytes::Bytes;
use dvr_common::{Clock, UtcMs};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use dvr_common::config::{mask_credentials, InputUrl};

pub use file::{FileSource, FileTarget};
pub use hls::playlist;
pub use hls::HlsSource;
pub use http::{HttpOptions, HttpSource};
pub use publish::{PublishHub, PublishSource};
pub use srt::SrtSource;
pub use udp::{UdpSource, UdpTarget};

use crate::error::IngestError;

/// A boxed, sendable future, so [`Source`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Bytes a source read, and the UTC of their start if the source knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceChunk {
    /// Transport-stream bytes, any size, any alignment.
    pub data: Bytes,
    /// The UTC of the next PES start of the stream in `data` (an HLS
    /// segment's program date-time); `None` lets arrival time anchor.
    pub utc_hint: Option<UtcMs>,
}

impl From<Bytes> for SourceChunk {
    fn from(data: Bytes) -> Self {
        SourceChunk {
            data,
            utc_hint: None,
        }
    }
}

/// An async source of transport-stream bytes.
pub trait Source: Send + fmt::Debug {
    /// The input this reads, for logs (credentials masked by its `Display`).
    fn url(&self) -> &InputUrl;

    /// The next chunk of bytes. `Ok(None)` means the source has ended for
    /// good (a file without `loop`); an error means it is lost for now, and
    /// calling again retries.
    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<SourceChunk>, IngestError>>;
}

/// Opens the source an input URL names. Nothing is connected yet for HTTP
/// and HLS (the first [`Source::next_chunk`] connects); UDP sockets are bound
/// here. A `timeshift://` input reads another stream's tape, not the network,
/// and is refused here. `clock` is the wall clock HLS weighs program
/// date-times against. A `publish://` input of stream `stream` attaches to
/// `publish`, the process's hub (refused without one).
pub async fn open_source(
    url: &InputUrl,
    http: &HttpOptions,
    clock: Arc<dyn Clock>,
    stream: &str,
    publish: Option<&Arc<PublishHub>>,
) -> Result<Box<dyn Source>, IngestError> {
    Ok(match url {
        InputUrl::Udp {
            interface,
            host,
            port,
        } => {
            let target = UdpTarget {
                iface: interface.clone(),
                host: host.clone(),
                port: *port,
            };
            Box::new(UdpSource::bind(url.clone(), &target).await?)
        }
        InputUrl::Http { .. } | InputUrl::TsHttp { .. } => {
            let target = url.fetch_url().unwrap_or_default();
            Box::new(HttpSource::new(url.clone(), &target, http)?)
        }
        InputUrl::Hls { .. } => Box::new(HlsSource::new(url.clone(), http, clock)?),
        InputUrl::File {
            path,
            passes,
            paced,
        } => {
            let target = FileTarget {
                path: path.into(),
                passes: *passes,
                paced: *paced,
            };
            Box::new(FileSource::new(url.clone(), &target))
        }
        InputUrl::Publish => match publish {
            Some(hub) => Box::new(PublishSource::attach(url.clone(), stream, hub)),
            None => {
                return Err(IngestError::InvalidUrl {
                    url: url.to_string(),
                    reason: "publish:// needs the RTMP listener (rtmp.listen)".to_owned(),
                })
            }
        },
        InputUrl::Srt(input) => {
            let listeners = srt::listeners();
            Box::new(SrtSource::new(
                url.clone(),
                input.clone(),
                stream,
                Arc::new(srt::engine::SrtEngine),
                Arc::clone(listeners),
            ))
        }
        InputUrl::M4f { .. } => {
            return Err(IngestError::InvalidUrl {
                url: url.to_string(),
                reason: "m4f:// carries segments, not a transport stream: a stream of m4f:// inputs is restreamed as a whole".to_owned(),
            })
        }
        InputUrl::Timeshift { .. } => {
            return Err(IngestError::InvalidUrl {
                url: url.to_string(),
                reason: "a delayed channel reads the archive, not a network source".to_owned(),
            })
        }
    })
}
