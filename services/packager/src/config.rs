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
}
