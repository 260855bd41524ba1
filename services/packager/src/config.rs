//! The packager's limits: what one request may ask for, how many paced
//! streams it keeps open, and what an answer needs from its request.

use dvr_edge::ClientAddr;

/// Limits of what a request may ask for.
#[derive(Clone, Debug)]
pub struct PackagerConfig {
    /// Segments in a live playlist's sliding window.
    pub live_window: usize,
    /// The longest range one request may ask for, in seconds.
    pub max_range_secs: u32,
    /// The most entries a range playlist lists; longer ranges list runs of
    /// consecutive segments as one entry.
    pub max_entries: usize,
    /// Endless paced MPEG-TS answers open at once.
    pub max_paced_streams: usize,
    /// The same per client address.
    pub max_paced_streams_per_client: usize,
    /// How JPEG previews are made ([`crate::preview`]).
    pub previews: PreviewConfig,
    /// Segment feeds to other origins open at once ([`crate::feed`]).
    pub max_feeds: usize,
}

/// The JPEG previews' decoder: `dvr-preview-decoder` processes, a bounded
/// number at once.
#[derive(Clone, Debug)]
pub struct PreviewConfig {
    /// The `dvr-preview-decoder` program: a path, or a name looked for
    /// next to the running executable and then on `PATH`.
    pub decoder: std::path::PathBuf,
    /// Decoder processes running at once.
    pub workers: usize,
    /// Requests waiting for a worker; past it `503` with `Retry-After`.
    pub queue: usize,
    /// A picture not made within this kills its process (`504`).
    pub timeout: std::time::Duration,
}

impl Default for PreviewConfig {
    fn default() -> Self {
        let settings = dvr_common::config::PackagerSettings::default();
        Self {
            decoder: settings.preview_decoder.into(),
            workers: settings.preview_workers,
            queue: settings.preview_queue,
            timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl Default for PackagerConfig {
    fn default() -> Self {
        let settings = dvr_common::config::PackagerSettings::default();
        Self {
            live_window: 6,
            max_range_secs: 24 * 3600,
            max_entries: 7200,
            max_paced_streams: settings.max_paced_streams,
            max_paced_streams_per_client: settings.max_paced_streams_per_client,
            previews: PreviewConfig::default(),
            max_feeds: 256,
        }
    }
}

/// What an answer needs from the request besides its URL.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Who asks (paced streams are counted per client).
    pub client: Option<ClientAddr>,
    /// `scheme://host` the client addressed, from its `Host` header.
    pub origin: Option<String>,
    /// Metadata an MP4 export writes into its `udta` (name, value): set by
    /// the saved-export runner from its job, never from a request.
    pub mp4_tags: Vec<(String, String)>,
}
