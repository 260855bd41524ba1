//! HLS pull (`hls://`, `hlss://`, `http(s)://….m3u8`): a live playlist read
//! as one transport stream.
//!
//! The source reloads the media playlist (at the target duration after a
//! change, at half of it when nothing changed, as RFC 8216 asks of clients),
//! fetches each new segment once, in media-sequence order ([`live`]), and
//! yields the segments' bytes back to back, so the segmenter sees one
//! stream; a playlist reset or `EXT-X-DISCONTINUITY` shows up there as a
//! timestamp jump, which it already handles. A master playlist is read once
//! per connection to pick the variant (`?bandwidth=`).
//!
//! Time: a segment's `EXT-X-PROGRAM-DATE-TIME` goes out with its first bytes
//! as a UTC hint (`?pdt=`: `keep` always, `wall` never, `auto` when within a
//! minute of the wall clock); the segmenter anchors each run on it.
//!
//! Failures: an unreachable, malformed or refused playlist (fMP4, encrypted,
//! byte ranges, audio in its own rendition) is an error of the input, so a
//! backup takes over; a segment that cannot be fetched is skipped with a
//! warning, and only three in a row make an error.

mod live;
pub mod playlist;

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dvr_common::config::{HlsBandwidth, PdtMode};
use dvr_common::{Clock, UtcMs};
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use self::live::LiveWindow;
use self::playlist::{MasterPlaylist, MediaPlaylist, Playlist, Variant};
use super::http::{backoff_delay, build_client, request_error};
use super::{mask_credentials, BoxFuture, HttpOptions, InputUrl, Source, SourceChunk};
use crate::error::IngestError;

/// Time allowed for a whole playlist response.
const PLAYLIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest segment accepted; the rest of a larger one is dropped.
const MAX_SEGMENT_BYTES: u64 = 256 << 20;
/// Segments failing in a row before the input counts as lost.
const MAX_SEGMENT_FAILURES: u32 = 3;

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The segment being read.
struct Reading {
    body: Body,
    msn: u64,
    /// Its URI as the playlist names it, credentials masked, for logs.
    uri: String,
    /// Bytes read so far.
    read: u64,
}

/// A segment waiting to be fetched.
#[derive(Debug)]
struct Queued {
    msn: u64,
    uri: String,
    program_date_time: Option<UtcMs>,
}

/// The HTTP side, apart from the source's state so that requests borrow
/// only it (the segment body being read is not `Sync`).
#[derive(Debug)]
struct Fetcher {
    url: InputUrl,
    client: reqwest::Client,
}

impl Fetcher {
    fn error(&self, reason: String) -> IngestError {
        IngestError::Hls {
            url: self.url.to_string(),
            reason,
        }
    }

    /// GETs `url`: the response, or an error naming the input.
    async fn get(
        &self,
        url: &reqwest::Url,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, IngestError> {
        let mut request = self.client.get(url.clone());
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|e| request_error(&self.url, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(IngestError::HttpStatus {
                url: format!("{} ({})", self.url, mask_credentials(url.as_str())),
                status: status.as_u16(),
            });
        }
        Ok(response)
    }

    /// Fetches and parses a playlist, reading at most
    /// [`playlist::MAX_PLAYLIST_BYTES`]. Returns the URL it was served from
    /// after redirects, which its relative URIs are resolved against.
    async fn fetch_playlist(
        &self,
        url: &reqwest::Url,
    ) -> Result<(reqwest::Url, Playlist), IngestError> {
        let too_big = || {
            self.error(format!(
                "playlist {} is larger than {} bytes",
                mask_credentials(url.as_str()),
                playlist::MAX_PLAYLIST_BYTES
            ))
        };
        let mut response = self.get(url, Some(PLAYLIST_TIMEOUT)).await?;
        let base = response.url().clone();
        let cap = playlist::MAX_PLAYLIST_BYTES;
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_big());
        }
        let mut text = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| request_error(&self.url, e))?
        {
            if text.len() + chunk.len() > cap {
                return Err(too_big());
            }
            text.extend_from_slice(&chunk);
        }
        let parsed = playlist::parse(&text)
            .map_err(|e| self.error(format!("playlist {}: {e}", mask_credentials(url.as_str()))))?;
        Ok((base, parsed))
    }

    /// Fetches a playlist that must be a media playlist (a variant's).
    async fn fetch_media(
        &self,
        url: &reqwest::Url,
    ) -> Result<(reqwest::Url, MediaPlaylist), IngestError> {
        match self.fetch_playlist(url).await? {
            (base, Playlist::Media(media)) => Ok((base, media)),
            (_, Playlist::Master(_)) => Err(self.error(format!(
                "variant playlist {} is a master playlist",
                mask_credentials(url.as_str())
            ))),
        }
    }
}

/// A live HLS playlist, pulled.
pub struct HlsSource {
    url: InputUrl,
    /// What the input names: a master or a media playlist.
    playlist_url: String,
    bandwidth: HlsBandwidth,
    pdt: PdtMode,
    clock: Arc<dyn Clock>,
    fetcher: Fetcher,
    options: HttpOptions,
    /// The media playlist followed, once known.
    media_url: Option<reqwest::Url>,
    /// Where it was last served from (after redirects): segment URIs are
    /// relative to this.
    media_base: Option<reqwest::Url>,
    window: LiveWindow,
    queue: VecDeque<Queued>,
    /// The segment being read.
    body: Option<Reading>,
    /// The UTC hint for the first bytes of the segment being read.
    pending_hint: Option<UtcMs>,
    next_reload: Option<Instant>,
    /// Failed playlist loads since the last good one (for the backoff).
    failures: u32,
    /// Segments failed in a row.
    segment_failures: u32,
    /// Whether `auto` trusts the program date-time now (for logs).
    pdt_trusted: Option<bool>,
    random: RandomState,
}

impl std::fmt::Debug for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reading")
            .field("msn", &self.msn)
            .field("uri", &self.uri)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsSource")
            .field("url", &self.url)
            .field("queued", &self.queue.len())
            .field("reading", &self.body.is_some())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// The variant `bandwidth` picks.
fn pick_variant(variants: &[Variant], bandwidth: HlsBandwidth) -> Option<&Variant> {
    let lowest = variants.iter().min_by_key(|v| v.bandwidth);
    match bandwidth {
        HlsBandwidth::Max => variants.iter().max_by_key(|v| v.bandwidth),
        HlsBandwidth::Min => lowest,
        HlsBandwidth::AtMost(n) => variants
            .iter()
            .filter(|v| v.bandwidth <= n)
            .max_by_key(|v| v.bandwidth)
            .or(lowest),
    }
}

impl HlsSource {
    /// A source for an `InputUrl::Hls`; connects lazily. `clock` is what
    /// `pdt=auto` compares program date-times with.
    pub fn new(
        url: InputUrl,
        options: &HttpOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IngestError> {
        let InputUrl::Hls {
            url: playlist_url,
            bandwidth,
            pdt,
        } = &url
        else {
            return Err(IngestError::InvalidUrl {
                url: url.to_string(),
                reason: "not an HLS input".to_owned(),
            });
        };
        let (playlist_url, bandwidth, pdt) = (playlist_url.clone(), *bandwidth, *pdt);
        let fetcher = Fetcher {
            url: url.clone(),
            client: build_client(&url, options)?,
        };
        Ok(HlsSource {
            url,
            playlist_url,
            bandwidth,
            pdt,
            clock,
            fetcher,
            options: options.clone(),
            media_url: None,
            media_base: None,
            window: LiveWindow::default(),
            queue: VecDeque::new(),
            body: None,
            pending_hint: None,
            next_reload: None,
            failures: 0,
            segment_failures: 0,
            pdt_trusted: None,
            random: RandomState::new(),
        })
    }

    fn error(&self, reason: String) -> IngestError {
        self.fetcher.error(reason)
    }

    fn parse_url(&self, text: &str) -> Result<reqwest::Url, IngestError> {
        reqwest::Url::parse(text)
            .map_err(|e| self.error(format!("{}: {e}", mask_credentials(text))))
    }

    /// The media playlist to follow, from a master's variants.
    fn choose_media(
        &self,
        base: &reqwest::Url,
        master: &MasterPlaylist,
    ) -> Result<reqwest::Url, IngestError> {
        let variant = pick_variant(&master.variants, self.bandwidth)
            .ok_or_else(|| self.error("master playlist without variants".to_owned()))?;
        if let Some(group) = &variant.audio {
            let separate = master
                .renditions
                .iter()
                .any(|r| r.kind == "AUDIO" && r.group == *group && r.uri.is_some());
            if separate {
                return Err(self.error(format!(
                    "the variant of {} b/s plays audio group {group:?} from its own playlist; \
                     separate audio renditions are not supported yet",
                    variant.bandwidth
                )));
            }
        }
        base.join(&variant.uri).map_err(|e| {
            self.error(format!(
                "variant URI {}: {e}",
                mask_credentials(&variant.uri)
            ))
        })
    }

    /// Refuses what ingest cannot record.
    fn check_media(&self, url: &reqwest::Url, media: &MediaPlaylist) -> Result<(), IngestError> {
        let refuse = |what: &str| {
            Err(self.error(format!(
                "playlist {} {what}; only MPEG-TS segments in the clear are supported",
                mask_credentials(url.as_str())
            )))
        };
        if media.init_section {
            return refuse("has fMP4 segments (EXT-X-MAP)");
        }
        if let Some(method) = &media.encryption {
            return refuse(&format!("is encrypted (EXT-X-KEY METHOD={method})"));
        }
        if media.byte_ranges {
            return refuse("uses byte ranges (EXT-X-BYTERANGE)");
        }
        Ok(())
    }

    /// Loads the media playlist (through the master the first time) and
    /// queues what is new. Errors leave the input lost until the next call.
    async fn reload(&mut self) -> Result<(), IngestError> {
        if self.failures > 0 {
            let random = self.random.hash_one(self.failures);
            tokio::time::sleep(backoff_delay(&self.options, self.failures, random)).await;
        }
        match self.load().await {
            Ok(()) => {
                self.failures = 0;
                Ok(())
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                // A master may have moved its variants: read it again.
                self.media_url = None;
                self.next_reload = None;
                Err(e)
            }
        }
    }

    async fn load(&mut self) -> Result<(), IngestError> {
        let started = Instant::now();
        let (url, base, media) = match self.media_url.clone() {
            Some(url) => {
                let (base, media) = self.fetcher.fetch_media(&url).await?;
                (url, base, media)
            }
            None => {
                let top = self.parse_url(&self.playlist_url)?;
                match self.fetcher.fetch_playlist(&top).await? {
                    (base, Playlist::Media(media)) => (top, base, media),
                    (base, Playlist::Master(master)) => {
                        let url = self.choose_media(&base, &master)?;
                        tracing::info!(input = %self.url, variant = %mask_credentials(url.as_str()), "hls variant chosen");
                        let (base, media) = self.fetcher.fetch_media(&url).await?;
                        (url, base, media)
                    }
                }
            }
        };
        self.check_media(&url, &media)?;
        let update = self.window.update(&media);
        if update.reset {
            tracing::warn!(input = %self.url, "hls media sequence restarted: following the new one");
        }
        if update.skipped > 0 {
            tracing::warn!(input = %self.url, skipped = update.skipped, "hls segments left the window before they were fetched");
        }
        let changed = !update.new.is_empty();
        self.queue.extend(update.new.into_iter().map(|s| Queued {
            msn: s.msn,
            uri: s.uri,
            program_date_time: s.program_date_time,
        }));
        self.media_url = Some(url);
        self.media_base = Some(base);
        let target =
            Duration::from_millis(u64::try_from(media.target_duration.as_ms()).unwrap_or(1000));
        self.next_reload = Some(started + if changed { target } else { target / 2 });
        if !changed && media.ended {
            return Err(IngestError::Ended {
                url: self.url.to_string(),
            });
        }
        Ok(())
    }

    /// The UTC hint for a segment with this program date-time.
    fn hint(&mut self, program_date_time: Option<UtcMs>) -> Option<UtcMs> {
        let pdt = program_date_time?;
        match self.pdt {
            PdtMode::Wall => None,
            PdtMode::Keep => Some(pdt),
            PdtMode::Auto => {
                let offset_ms = pdt.0 - self.clock.now().0;
                let trusted = offset_ms.abs() <= PdtMode::AUTO_TOLERANCE_MS;
                if self.pdt_trusted != Some(trusted) {
                    if trusted {
                        tracing::info!(input = %self.url, offset_ms, "hls program date-time stamps the tape");
                    } else {
                        tracing::warn!(
                            input = %self.url,
                            offset_ms,
                            "hls program date-time is more than 60 s from the wall clock: the wall clock stamps the tape (pdt=keep trusts it)"
                        );
                    }
                    self.pdt_trusted = Some(trusted);
                }
                trusted.then_some(pdt)
            }
        }
    }

    /// Starts fetching the next queued segment; a failure skips it.
    async fn open_segment(&mut self, segment: Queued) -> Result<(), IngestError> {
        let Some(base) = self.media_base.clone() else {
            return Ok(());
        };
        let masked = mask_credentials(&segment.uri);
        let opened = match base.join(&segment.uri) {
            Ok(url) => self.fetcher.get(&url, None).await,
            Err(e) => Err(self.error(format!("segment URI {masked}: {e}"))),
        };
        match opened {
            Ok(response) => {
                self.pending_hint = self.hint(segment.program_date_time);
                self.body = Some(Reading {
                    body: Box::pin(response.bytes_stream()),
                    msn: segment.msn,
                    uri: masked,
                    read: 0,
                });
                Ok(())
            }
            Err(e) => self.segment_failed(segment.msn, &masked, e),
        }
    }

    /// A segment could not be read: skipped, unless too many in a row failed.
    fn segment_failed(&mut self, msn: u64, uri: &str, e: IngestError) -> Result<(), IngestError> {
        self.segment_failures += 1;
        tracing::warn!(input = %self.url, segment = %uri, msn, error = %e, "hls segment skipped");
        if self.segment_failures >= MAX_SEGMENT_FAILURES {
            self.segment_failures = 0;
            return Err(e);
        }
        Ok(())
    }

    async fn read(&mut self) -> Result<Option<SourceChunk>, IngestError> {
        loop {
            if let Some(reading) = self.body.as_mut() {
                match reading.body.next().await {
                    Some(Ok(data)) if data.is_empty() => continue,
                    Some(Ok(data)) => {
                        reading.read += data.len() as u64;
                        if reading.read > MAX_SEGMENT_BYTES {
                            tracing::warn!(input = %self.url, segment = %reading.uri, "hls segment larger than 256 MiB: the rest is dropped");
                            self.body = None;
                            continue;
                        }
                        self.segment_failures = 0;
                        return Ok(Some(SourceChunk {
                            data,
                            utc_hint: self.pending_hint.take(),
                        }));
                    }
                    Some(Err(e)) => {
                        let (msn, uri) = (reading.msn, reading.uri.clone());
                        self.body = None;
                        let e = request_error(&self.url, e);
                        self.segment_failed(msn, &uri, e)?;
                    }
                    None => {
                        // A hint never goes to another segment's bytes.
                        self.pending_hint = None;
                        self.body = None;
                    }
                }
                continue;
            }
            if let Some(segment) = self.queue.pop_front() {
                self.open_segment(segment).await?;
                continue;
            }
            if let Some(at) = self.next_reload {
                tokio::time::sleep_until(at).await;
            }
            self.reload().await?;
        }
    }
}

impl Source for HlsSource {
    fn url(&self) -> &InputUrl {
        &self.url
    }

    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<SourceChunk>, IngestError>> {
        Box::pin(self.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_variant_the_bandwidth_option_names() {
        let v = |bandwidth| Variant {
            bandwidth,
            uri: format!("{bandwidth}.m3u8"),
            audio: None,
        };
        let variants = [v(800_000), v(3_000_000), v(1_500_000)];
        let pick = |b| pick_variant(&variants, b).map(|v| v.bandwidth);
        assert_eq!(pick(HlsBandwidth::Max), Some(3_000_000));
        assert_eq!(pick(HlsBandwidth::Min), Some(800_000));
        assert_eq!(pick(HlsBandwidth::AtMost(2_000_000)), Some(1_500_000));
        assert_eq!(pick(HlsBandwidth::AtMost(1_500_000)), Some(1_500_000));
        assert_eq!(
            pick(HlsBandwidth::AtMost(100)),
            Some(800_000),
            "none fits: the lowest"
        );
        assert_eq!(pick_variant(&[], HlsBandwidth::Max), None);
    }
}
