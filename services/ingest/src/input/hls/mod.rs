//! HLS pull (`hls://`, `hlss://`, `http(s)://….m3u8`): a live playlist read
//! as one transport stream.
//!
//! The source reloads the media playlist (at the target duration after a
//! change, at half of it when nothing changed, as RFC 8216 asks of clients),
//! fetches each new segment once, in media-sequence order ([`live`]), and
//! yields the segments' bytes back to back, so the segmenter sees one
//! stream; a playlist reset or `EXT-X-DISCONTINUITY` shows up there as a
//! timestamp jump, which it already handles. A master playlist is read once
//! per connection to pick the variant (`?bandwidth=`). When the variant's
//! audio comes from its own rendition playlist, both playlists are followed
//! and each video segment is muxed with the audio up to its time ([`mux`]);
//! segments are then fetched whole rather than streamed.
//!
//! Time: a segment's `EXT-X-PROGRAM-DATE-TIME` goes out with its first bytes
//! as a UTC hint (`?pdt=`: `keep` always, `wall` never, `auto` when within a
//! minute of the wall clock); the segmenter anchors each run on it.
//!
//! AES-128 segments are fetched whole and decrypted ([`decrypt`]) with the
//! key their playlist names (fetched once, kept by URL).
//!
//! Failures: an unreachable, malformed or refused playlist (fMP4, SAMPLE-AES
//! or a DRM key format, byte ranges) is an error of the input, so a
//! backup takes over; a segment that cannot be fetched is skipped with a
//! warning, and only three in a row make an error.

mod decrypt;
mod live;
mod mux;
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

use self::decrypt::KeyCache;
use self::live::LiveWindow;
use self::mux::RenditionMux;
use self::playlist::{MasterPlaylist, MediaPlaylist, Playlist, SegmentKey, Variant};
use super::http::{backoff_delay, build_client, request_error};
use super::{mask_credentials, BoxFuture, HttpOptions, InputUrl, Source, SourceChunk};
use crate::error::IngestError;

/// Time allowed for a whole playlist response.
const PLAYLIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest segment accepted; the rest of a larger one is dropped.
const MAX_SEGMENT_BYTES: u64 = 256 << 20;
/// Largest segment fetched whole (to mux an audio rendition in).
const MAX_MUXED_SEGMENT_BYTES: usize = 64 << 20;
/// Largest key response read: a key is 16 bytes.
const MAX_KEY_BYTES: usize = 64;
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
    key: Option<SegmentKey>,
}

/// The HTTP side, apart from the source's state so that requests borrow
/// only it (the segment body being read is not `Sync`).
#[derive(Debug)]
struct Fetcher {
    url: InputUrl,
    client: reqwest::Client,
    keys: KeyCache,
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
        // reqwest sends the URL's credentials as basic auth and leaves them
        // out of the final URL; relative URIs on the same origin need them.
        let mut base = response.url().clone();
        if base.origin() == url.origin() && base.username().is_empty() {
            let _ = base.set_username(url.username());
            let _ = base.set_password(url.password());
        }
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

    /// Refuses what ingest cannot record.
    fn check_media(&self, url: &reqwest::Url, media: &MediaPlaylist) -> Result<(), IngestError> {
        let refuse = |what: &str| {
            Err(self.error(format!(
                "playlist {} {what}; only MPEG-TS segments, in the clear or AES-128, are supported",
                mask_credentials(url.as_str())
            )))
        };
        if media.init_section {
            return refuse("has fMP4 segments (EXT-X-MAP)");
        }
        if let Some(method) = &media.encryption {
            return refuse(&format!(
                "is encrypted in a way ingest cannot decrypt (EXT-X-KEY {method})"
            ));
        }
        if media.byte_ranges {
            return refuse("uses byte ranges (EXT-X-BYTERANGE)");
        }
        Ok(())
    }

    /// Fetches a segment whole, at most [`MAX_MUXED_SEGMENT_BYTES`].
    async fn fetch_whole(&self, base: &reqwest::Url, uri: &str) -> Result<Vec<u8>, IngestError> {
        let url = base
            .join(uri)
            .map_err(|e| self.error(format!("segment URI {}: {e}", mask_credentials(uri))))?;
        let mut response = self.get(&url, None).await?;
        let mut data = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| request_error(&self.url, e))?
        {
            if data.len() + chunk.len() > MAX_MUXED_SEGMENT_BYTES {
                return Err(self.error(format!(
                    "segment {} is larger than {MAX_MUXED_SEGMENT_BYTES} bytes",
                    mask_credentials(uri)
                )));
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    }

    /// The AES-128 key at `uri` (relative to the playlist `base`):
    /// exactly 16 bytes, kept once fetched.
    async fn key(&self, base: &reqwest::Url, uri: &str) -> Result<[u8; 16], IngestError> {
        let masked = mask_credentials(uri);
        let url = base
            .join(uri)
            .map_err(|e| self.error(format!("key URI {masked}: {e}")))?;
        if let Some(key) = self.keys.get(url.as_str()) {
            return Ok(key);
        }
        let mut response = self.get(&url, Some(PLAYLIST_TIMEOUT)).await?;
        let mut data = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| request_error(&self.url, e))?
        {
            data.extend_from_slice(&chunk);
            if data.len() > MAX_KEY_BYTES {
                break;
            }
        }
        let key: [u8; 16] = data.as_slice().try_into().map_err(|_| {
            self.error(format!(
                "key {masked} is {}{} bytes, not 16",
                data.len(),
                if data.len() > MAX_KEY_BYTES { "+" } else { "" }
            ))
        })?;
        self.keys.insert(url.as_str(), key);
        Ok(key)
    }

    /// Fetches a segment whole and decrypts it when its playlist says so.
    async fn fetch_segment(
        &self,
        base: &reqwest::Url,
        segment: &Queued,
    ) -> Result<Vec<u8>, IngestError> {
        let mut data = self.fetch_whole(base, &segment.uri).await?;
        if let Some(key) = &segment.key {
            let secret = self.key(base, &key.uri).await?;
            decrypt::decrypt(&mut data, &secret, &key.iv_for(segment.msn)).map_err(|why| {
                self.error(format!(
                    "segment {} {why} {}",
                    mask_credentials(&segment.uri),
                    mask_credentials(&key.uri)
                ))
            })?;
        }
        Ok(data)
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

/// One media playlist followed: the variant's, or its audio rendition's.
#[derive(Debug, Default)]
struct Track {
    /// The media playlist.
    url: Option<reqwest::Url>,
    /// Where it was last served from (after redirects): segment URIs are
    /// relative to this.
    base: Option<reqwest::Url>,
    window: LiveWindow,
    queue: VecDeque<Queued>,
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
    /// The variant's media playlist.
    video: Track,
    /// The audio rendition's, when it has its own, and the muxer for it.
    audio: Option<(Track, RenditionMux)>,
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
            .field("queued", &self.video.queue.len())
            .field("reading", &self.body.is_some())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// Reloads one media playlist and queues what is new in it. Returns whether
/// anything was, whether the playlist has ended, and its target duration.
async fn load_track(
    fetcher: &Fetcher,
    track: &mut Track,
    align: Option<UtcMs>,
) -> Result<(bool, bool, Duration), IngestError> {
    let Some(url) = track.url.clone() else {
        return Ok((false, false, Duration::from_secs(1)));
    };
    let (base, media) = fetcher.fetch_media(&url).await?;
    fetcher.check_media(&url, &media)?;
    let update = track.window.update(&media, align);
    let playlist = mask_credentials(url.as_str());
    if update.reset {
        tracing::warn!(input = %fetcher.url, %playlist, "hls media sequence restarted: following the new one");
    }
    if update.skipped > 0 {
        tracing::warn!(input = %fetcher.url, %playlist, skipped = update.skipped, "hls segments left the window before they were fetched");
    }
    let changed = !update.new.is_empty();
    track.queue.extend(update.new.into_iter().map(|s| Queued {
        msn: s.msn,
        uri: s.uri,
        program_date_time: s.program_date_time,
        key: s.key,
    }));
    track.base = Some(base);
    let target = u64::try_from(media.target_duration.as_ms()).unwrap_or(1000);
    Ok((changed, media.ended, Duration::from_millis(target)))
}

/// The variant `bandwidth` picks, among those with pictures unless every
/// variant is audio only.
fn pick_variant(variants: &[Variant], bandwidth: HlsBandwidth) -> Option<&Variant> {
    let has_video = variants.iter().any(|v| !v.audio_only);
    let candidates = || {
        variants
            .iter()
            .filter(move |v| !(has_video && v.audio_only))
    };
    let lowest = candidates().min_by_key(|v| v.bandwidth);
    match bandwidth {
        HlsBandwidth::Max => candidates().max_by_key(|v| v.bandwidth),
        HlsBandwidth::Min => lowest,
        HlsBandwidth::AtMost(n) => candidates()
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
            keys: KeyCache::default(),
        };
        Ok(HlsSource {
            url,
            playlist_url,
            bandwidth,
            pdt,
            clock,
            fetcher,
            options: options.clone(),
            video: Track::default(),
            audio: None,
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

    /// The media playlists to follow, from a master's variants: the
    /// variant's, and its audio rendition's when that has its own (the
    /// group's `DEFAULT=YES` one, else its first).
    fn choose_media(
        &self,
        base: &reqwest::Url,
        master: &MasterPlaylist,
    ) -> Result<(reqwest::Url, Option<reqwest::Url>), IngestError> {
        let variant = pick_variant(&master.variants, self.bandwidth)
            .ok_or_else(|| self.error("master playlist without variants".to_owned()))?;
        let join = |uri: &str| {
            base.join(uri)
                .map_err(|e| self.error(format!("URI {}: {e}", mask_credentials(uri))))
        };
        let audio = variant.audio.as_ref().and_then(|group| {
            let group: Vec<_> = master
                .renditions
                .iter()
                .filter(|r| r.kind == "AUDIO" && r.group == *group)
                .collect();
            let chosen = group.iter().find(|r| r.default).or(group.first())?;
            chosen.uri.as_deref()
        });
        let video = join(&variant.uri)?;
        // An audio-only variant names its own group: nothing to mux in.
        let audio = audio.map(join).transpose()?.filter(|a| *a != video);
        Ok((video, audio))
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
                // A master may have moved its variants: read it again (the
                // windows stay, so nothing is fetched twice).
                self.video.url = None;
                self.next_reload = None;
                Err(e)
            }
        }
    }

    async fn load(&mut self) -> Result<(), IngestError> {
        let started = Instant::now();
        if self.video.url.is_none() {
            let top = self.parse_url(&self.playlist_url)?;
            let (base, playlist) = self.fetcher.fetch_playlist(&top).await?;
            let audio = match playlist {
                Playlist::Media(_) => None,
                Playlist::Master(master) => {
                    let (video, audio) = self.choose_media(&base, &master)?;
                    tracing::info!(
                        input = %self.url,
                        variant = %mask_credentials(video.as_str()),
                        audio = audio.as_ref().map(|a| mask_credentials(a.as_str())),
                        "hls variant chosen"
                    );
                    self.video.url = Some(video);
                    audio
                }
            };
            // A media playlist is read again below: one request more, once.
            self.video.url.get_or_insert(top);
            let same_audio =
                self.audio.as_ref().map(|(t, _)| t.url.as_ref()) == Some(audio.as_ref());
            if !same_audio {
                self.audio = audio.map(|url| {
                    let track = Track {
                        url: Some(url),
                        ..Track::default()
                    };
                    (track, RenditionMux::default())
                });
            }
        }
        let (changed, ended, target) = load_track(&self.fetcher, &mut self.video, None).await?;
        if let Some((audio, _)) = &mut self.audio {
            // Audio starts with the video, not at its own live edge.
            let align = self.video.queue.front().and_then(|s| s.program_date_time);
            load_track(&self.fetcher, audio, align).await?;
        }
        self.next_reload = Some(started + if changed { target } else { target / 2 });
        if !changed && ended {
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
        let Some(base) = self.video.base.clone() else {
            return Ok(());
        };
        let masked = mask_credentials(&segment.uri);
        // An encrypted segment is whole before its first byte can go out.
        let opened: Result<Body, IngestError> = if segment.key.is_some() {
            self.fetcher
                .fetch_segment(&base, &segment)
                .await
                .map(|data| -> Body { Box::pin(futures_util::stream::iter([Ok(data.into())])) })
        } else {
            match base.join(&segment.uri) {
                Ok(url) => self
                    .fetcher
                    .get(&url, None)
                    .await
                    .map(|response| -> Body { Box::pin(response.bytes_stream()) }),
                Err(e) => Err(self.error(format!("segment URI {masked}: {e}"))),
            }
        };
        match opened {
            Ok(body) => {
                self.pending_hint = self.hint(segment.program_date_time);
                self.body = Some(Reading {
                    body,
                    msn: segment.msn,
                    uri: masked,
                    read: 0,
                });
                Ok(())
            }
            Err(e) => self.segment_failed(segment.msn, &masked, e),
        }
    }

    /// A video segment muxed with every audio segment queued so far; `None`
    /// when it was skipped.
    async fn muxed_segment(&mut self, segment: Queued) -> Result<Option<SourceChunk>, IngestError> {
        let Some((mut audio, mut mux)) = self.audio.take() else {
            return Ok(None);
        };
        let result = self.mux_into(segment, &mut audio, &mut mux).await;
        self.audio = Some((audio, mux));
        result
    }

    async fn mux_into(
        &mut self,
        segment: Queued,
        audio: &mut Track,
        mux: &mut RenditionMux,
    ) -> Result<Option<SourceChunk>, IngestError> {
        while let Some(part) = audio.queue.pop_front() {
            let Some(base) = audio.base.clone() else {
                break;
            };
            match self.fetcher.fetch_segment(&base, &part).await {
                Ok(data) => mux.push_audio(&data),
                Err(e) => self.segment_failed(part.msn, &mask_credentials(&part.uri), e)?,
            }
        }
        let Some(base) = self.video.base.clone() else {
            return Ok(None);
        };
        let data = match self.fetcher.fetch_segment(&base, &segment).await {
            Ok(data) => data,
            Err(e) => {
                self.segment_failed(segment.msn, &mask_credentials(&segment.uri), e)?;
                return Ok(None);
            }
        };
        self.segment_failures = 0;
        let mut out = Vec::with_capacity(data.len());
        mux.push_video(&data, &mut out);
        Ok(Some(SourceChunk {
            data: out.into(),
            utc_hint: self.hint(segment.program_date_time),
        }))
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
            if self.audio.is_some() {
                if let Some(segment) = self.video.queue.pop_front() {
                    if let Some(chunk) = self.muxed_segment(segment).await? {
                        return Ok(Some(chunk));
                    }
                    continue;
                }
            } else if let Some(segment) = self.video.queue.pop_front() {
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
    fn each_pdt_mode_decides_which_date_times_become_hints() {
        let now = UtcMs(1_800_000_000_000);
        let clock: Arc<dyn Clock> = Arc::new(dvr_common::SimulatedClock::new(now));
        let source = |mode: &str| {
            let url: InputUrl = format!("hls://origin.example/x.m3u8?pdt={mode}")
                .parse()
                .unwrap();
            HlsSource::new(url, &HttpOptions::default(), Arc::clone(&clock)).unwrap()
        };
        let near = Some(now.saturating_add_ms(-59_000));
        let far = Some(now.saturating_add_ms(-3_600_000));
        let (mut auto, mut keep, mut wall) = (source("auto"), source("keep"), source("wall"));
        assert_eq!(auto.hint(near), near);
        assert_eq!(auto.hint(far), None, "an hour off: the wall clock anchors");
        assert_eq!(auto.hint(near), near, "back within a minute");
        assert_eq!(keep.hint(far), far);
        assert_eq!(wall.hint(near), None);
        assert_eq!(auto.hint(None), None);
    }

    #[test]
    fn picks_the_variant_the_bandwidth_option_names() {
        let v = |bandwidth| Variant {
            bandwidth,
            uri: format!("{bandwidth}.m3u8"),
            audio: None,
            audio_only: bandwidth == 9_000_000,
        };
        let variants = [v(800_000), v(3_000_000), v(1_500_000), v(9_000_000)];
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
        let audio_only = [v(9_000_000)];
        assert_eq!(
            pick_variant(&audio_only, HlsBandwidth::Min).map(|v| v.bandwidth),
            Some(9_000_000)
        );
    }
}
