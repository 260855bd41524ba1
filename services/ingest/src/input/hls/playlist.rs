//! The m3u8 text of an HLS input: master and media playlists (RFC 8216).
//!
//! The text comes from an origin we do not control, so parsing is pure (no
//! I/O, fuzzed in `fuzz/`) and bounded: the whole text, each line, the
//! number of segments and of variants have caps, and anything past them is an
//! error rather than more work. Only what ingest uses is kept; tags it does
//! not know are skipped, as the RFC asks of clients. What ingest cannot
//! record (fMP4 init sections, encryption other than AES-128, byte ranges)
//! is kept as a flag so
//! the source can refuse it with a message naming it.

use std::fmt;

use dvr_common::{CivilTime, Ticks, UtcMs};

/// Largest playlist accepted, in bytes.
pub const MAX_PLAYLIST_BYTES: usize = 2 << 20;
/// Longest line accepted, in bytes (signed CDN URLs run to a few KB).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most segments in one media playlist (a day of 6 s segments is 14 400).
pub const MAX_SEGMENTS: usize = 20_000;
/// Most variants plus renditions in one master playlist.
pub const MAX_VARIANTS: usize = 512;
/// Largest `EXT-X-TARGETDURATION` accepted, in seconds.
pub const MAX_TARGET_DURATION_SECS: i64 = 600;

/// A parsed playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Playlist {
    /// Lists variant streams (`EXT-X-STREAM-INF`).
    Master(MasterPlaylist),
    /// Lists segments.
    Media(MediaPlaylist),
}

/// A master playlist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MasterPlaylist {
    /// The variant streams, in playlist order.
    pub variants: Vec<Variant>,
    /// The alternative renditions (`EXT-X-MEDIA`).
    pub renditions: Vec<Rendition>,
}

/// One `EXT-X-STREAM-INF` and its URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Peak bits per second (`BANDWIDTH`).
    pub bandwidth: u64,
    /// The media playlist, relative to the master.
    pub uri: String,
    /// The `AUDIO` rendition group it plays with, if any.
    pub audio: Option<String>,
    /// Its `CODECS` are all audio codecs: a variant without pictures.
    pub audio_only: bool,
}

/// One `EXT-X-MEDIA`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendition {
    /// `TYPE`: `AUDIO`, `VIDEO`, `SUBTITLES` or `CLOSED-CAPTIONS`.
    pub kind: String,
    /// `GROUP-ID`.
    pub group: String,
    /// Its own media playlist; `None` when it is muxed into the variant.
    pub uri: Option<String>,
    /// `DEFAULT=YES`: the one to play without a choice.
    pub default: bool,
}

/// A media playlist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaPlaylist {
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: Ticks,
    /// Media sequence number of the first segment.
    pub media_sequence: u64,
    /// The segments, in order.
    pub segments: Vec<MediaSegment>,
    /// `EXT-X-ENDLIST`: no more segments will be added.
    pub ended: bool,
    /// `EXT-X-MAP` was seen: segments are fMP4.
    pub init_section: bool,
    /// An `EXT-X-KEY` ingest cannot decrypt: its method (`SAMPLE-AES`, …)
    /// or key format. `AES-128` with the identity key format is decrypted
    /// ([`MediaSegment::key`]).
    pub encryption: Option<String>,
    /// `EXT-X-BYTERANGE` was seen.
    pub byte_ranges: bool,
}

/// One segment of a media playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSegment {
    /// Media sequence number.
    pub msn: u64,
    /// The segment, relative to the playlist.
    pub uri: String,
    /// `EXTINF` duration.
    pub duration: Ticks,
    /// When its first sample was taken: `EXT-X-PROGRAM-DATE-TIME`, or the
    /// previous segment's plus its duration when no discontinuity lies
    /// between.
    pub program_date_time: Option<UtcMs>,
    /// `EXT-X-DISCONTINUITY` precedes it.
    pub discontinuity: bool,
    /// The `EXT-X-KEY` (`METHOD=AES-128`) that encrypts it, if any.
    pub key: Option<SegmentKey>,
}

/// How an `AES-128` segment is encrypted: AES-128-CBC with PKCS#7 padding,
/// under the 16-byte key at `uri`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentKey {
    /// The key's URI, relative to the playlist.
    pub uri: String,
    /// `IV=0x…`; without it the IV is the segment's media sequence number
    /// (RFC 8216, 5.2).
    pub iv: Option<[u8; 16]>,
}

impl SegmentKey {
    /// The IV of the segment with media sequence number `msn`.
    pub fn iv_for(&self, msn: u64) -> [u8; 16] {
        self.iv.unwrap_or_else(|| {
            let mut iv = [0; 16];
            iv[8..].copy_from_slice(&msn.to_be_bytes());
            iv
        })
    }
}

/// An `IV` attribute: `0x` and 32 hex digits.
fn parse_iv(text: &str) -> Option<[u8; 16]> {
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    if hex.len() != 32 {
        return None;
    }
    let mut iv = [0; 16];
    for (i, byte) in iv.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(iv)
}

/// Why a playlist was refused: the line (1-based, 0 for the whole text) and
/// what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaylistError {
    /// The line, or 0.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for PlaylistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.reason)
        } else {
            write!(f, "line {}: {}", self.line, self.reason)
        }
    }
}

impl std::error::Error for PlaylistError {}

/// What the next URI line is for.
enum Pending {
    None,
    Variant {
        bandwidth: u64,
        audio: Option<String>,
        audio_only: bool,
    },
    Segment {
        duration: Ticks,
    },
}

/// Parses a playlist.
pub fn parse(text: &[u8]) -> Result<Playlist, PlaylistError> {
    let whole = |reason: &str| PlaylistError {
        line: 0,
        reason: reason.to_owned(),
    };
    if text.len() > MAX_PLAYLIST_BYTES {
        return Err(whole(&format!(
            "playlist larger than {MAX_PLAYLIST_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(text).map_err(|_| whole("playlist is not UTF-8"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
    match lines.next() {
        Some((_, first)) if first.trim_end() == "#EXTM3U" => {}
        _ => return Err(whole("not a playlist: the first line is not #EXTM3U")),
    }
    let mut master = MasterPlaylist::default();
    let mut media = MediaPlaylist::default();
    let mut target = None;
    let mut pending = Pending::None;
    let mut discontinuity = false;
    let mut next_pdt: Option<UtcMs> = None;
    let mut explicit_pdt = false;
    let mut key: Option<SegmentKey> = None;
    for (number, line) in lines {
        let err = |reason: String| PlaylistError {
            line: number,
            reason,
        };
        if line.len() > MAX_LINE_BYTES {
            return Err(err(format!("line longer than {MAX_LINE_BYTES} bytes")));
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            match std::mem::replace(&mut pending, Pending::None) {
                Pending::None => {
                    return Err(err("URI without #EXTINF or #EXT-X-STREAM-INF".into()))
                }
                Pending::Variant {
                    bandwidth,
                    audio,
                    audio_only,
                } => {
                    if master.variants.len() + master.renditions.len() >= MAX_VARIANTS {
                        return Err(err(format!("more than {MAX_VARIANTS} variants")));
                    }
                    master.variants.push(Variant {
                        bandwidth,
                        uri: line.to_owned(),
                        audio,
                        audio_only,
                    });
                }
                Pending::Segment { duration } => {
                    if media.segments.len() >= MAX_SEGMENTS {
                        return Err(err(format!("more than {MAX_SEGMENTS} segments")));
                    }
                    let index = u64::try_from(media.segments.len()).unwrap_or(u64::MAX);
                    let msn = media
                        .media_sequence
                        .checked_add(index)
                        .ok_or_else(|| err("media sequence overflows".into()))?;
                    let program_date_time = if explicit_pdt || !discontinuity {
                        next_pdt
                    } else {
                        None
                    };
                    media.segments.push(MediaSegment {
                        msn,
                        uri: line.to_owned(),
                        duration,
                        program_date_time,
                        discontinuity,
                        key: key.clone(),
                    });
                    next_pdt = program_date_time.map(|t| t.plus_ticks(duration));
                    discontinuity = false;
                    explicit_pdt = false;
                }
            }
            continue;
        }
        let (tag, value) = line.split_once(':').unwrap_or((line, ""));
        match tag {
            "#EXTINF" => {
                let secs = value.split(',').next().unwrap_or_default();
                let duration = parse_seconds(secs)
                    .ok_or_else(|| err(format!("#EXTINF duration {secs:?} is not a number")))?;
                pending = Pending::Segment { duration };
            }
            "#EXT-X-TARGETDURATION" => {
                let secs = value
                    .parse::<i64>()
                    .ok()
                    .filter(|s| (1..=MAX_TARGET_DURATION_SECS).contains(s))
                    .ok_or_else(|| {
                        err(format!(
                            "target duration {value:?} is not 1 to {MAX_TARGET_DURATION_SECS} seconds"
                        ))
                    })?;
                target = Some(Ticks::from_secs(secs));
            }
            "#EXT-X-MEDIA-SEQUENCE" => {
                if !media.segments.is_empty() {
                    return Err(err("#EXT-X-MEDIA-SEQUENCE after the first segment".into()));
                }
                media.media_sequence = value
                    .parse()
                    .map_err(|_| err(format!("media sequence {value:?} is not a number")))?;
            }
            "#EXT-X-DISCONTINUITY" => discontinuity = true,
            "#EXT-X-PROGRAM-DATE-TIME" => {
                let t = parse_date_time(value)
                    .ok_or_else(|| err(format!("program date-time {value:?} is not ISO 8601")))?;
                next_pdt = Some(t);
                explicit_pdt = true;
            }
            "#EXT-X-ENDLIST" => media.ended = true,
            "#EXT-X-MAP" => media.init_section = true,
            "#EXT-X-BYTERANGE" => media.byte_ranges = true,
            "#EXT-X-KEY" => {
                let method = attribute(value, "METHOD").unwrap_or_default();
                let format = attribute(value, "KEYFORMAT").unwrap_or("identity");
                key = None;
                if method == "NONE" {
                    continue;
                }
                if method != "AES-128" || format != "identity" {
                    if media.encryption.is_none() {
                        media.encryption = Some(if format == "identity" {
                            format!("METHOD={method}")
                        } else {
                            format!("METHOD={method}, KEYFORMAT={format}")
                        });
                    }
                    continue;
                }
                let uri = attribute(value, "URI")
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| err("#EXT-X-KEY METHOD=AES-128 without a URI".into()))?;
                let iv = match attribute(value, "IV") {
                    None => None,
                    Some(text) => Some(parse_iv(text).ok_or_else(|| {
                        err(format!(
                            "#EXT-X-KEY IV {text:?} is not 0x and 32 hex digits"
                        ))
                    })?),
                };
                key = Some(SegmentKey {
                    uri: uri.to_owned(),
                    iv,
                });
            }
            "#EXT-X-STREAM-INF" => {
                let bandwidth = attribute(value, "BANDWIDTH")
                    .and_then(|b| b.parse().ok())
                    .ok_or_else(|| err("#EXT-X-STREAM-INF without a numeric BANDWIDTH".into()))?;
                pending = Pending::Variant {
                    bandwidth,
                    audio: attribute(value, "AUDIO").map(str::to_owned),
                    audio_only: attribute(value, "CODECS")
                        .is_some_and(|c| c.split(',').all(|c| is_audio_codec(c.trim()))),
                };
            }
            "#EXT-X-MEDIA" => {
                if master.variants.len() + master.renditions.len() >= MAX_VARIANTS {
                    return Err(err(format!("more than {MAX_VARIANTS} renditions")));
                }
                let field = |name: &str| {
                    attribute(value, name)
                        .map(str::to_owned)
                        .ok_or_else(|| err(format!("#EXT-X-MEDIA without {name}")))
                };
                master.renditions.push(Rendition {
                    kind: field("TYPE")?,
                    group: field("GROUP-ID")?,
                    uri: attribute(value, "URI").map(str::to_owned),
                    default: attribute(value, "DEFAULT") == Some("YES"),
                });
            }
            _ => {} // comments and tags ingest does not use
        }
    }
    let is_master = !master.variants.is_empty();
    if is_master && !media.segments.is_empty() {
        return Err(whole("playlist has both variants and segments"));
    }
    if is_master {
        return Ok(Playlist::Master(master));
    }
    media.target_duration =
        target.ok_or_else(|| whole("media playlist without #EXT-X-TARGETDURATION"))?;
    Ok(Playlist::Media(media))
}

/// Whether an RFC 6381 codec string names an audio codec.
fn is_audio_codec(codec: &str) -> bool {
    [
        "mp4a", "ac-3", "ec-3", "opus", "mp3", "flac", "fLaC", "alac",
    ]
    .iter()
    .any(|prefix| codec.starts_with(prefix))
}

/// The value of attribute `name` in an attribute list (`A=1,B="x,y"`),
/// quotes removed.
pub fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            let next = quoted[end + 1..].trim_start_matches(',');
            (&quoted[..end], next)
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// A decimal number of seconds (`6`, `5.005`, `4.0000000`), to the tick.
fn parse_seconds(text: &str) -> Option<Ticks> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || whole.len() > 6 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    // Microseconds from the first six fraction digits; the rest is below a tick.
    let mut micros = 0i64;
    for i in 0..6 {
        let digit = fraction
            .as_bytes()
            .get(i)
            .map_or(0, |b| i64::from(b - b'0'));
        micros = micros * 10 + digit;
    }
    Some(Ticks(whole * 90_000 + micros * 9 / 100))
}

/// An ISO 8601 date-time as HLS writes it: `2026-12-05T05:01:41.123Z`, or
/// with `+01:00`, `+0100`, `+01` instead of `Z`; fractions past milliseconds
/// are cut.
pub fn parse_date_time(text: &str) -> Option<UtcMs> {
    let text = text.trim();
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let s = text.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let mut rest = text.get(19..)?;
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for i in 0..3 {
            millis = millis * 10
                + frac
                    .as_bytes()
                    .get(i)
                    .filter(|_| i < digits)
                    .map_or(0, |d| u32::from(d - b'0'));
        }
        rest = &frac[digits..];
    }
    let offset_min: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = rest[1..].chars().filter(|&c| c != ':').collect();
            if !(digits.len() == 2 || digits.len() == 4)
                || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            let hours: i64 = digits[..2].parse().ok()?;
            let minutes: i64 = digits
                .get(2..)
                .filter(|m| !m.is_empty())
                .map_or(Some(0), |m| m.parse().ok())?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 60 + minutes)
        }
    };
    let civil = CivilTime {
        year: i64::from(num(0..4)?),
        month: num(5..7)?,
        day: num(8..10)?,
        hour: num(11..13)?,
        minute: num(14..16)?,
        second: num(17..19)?,
        millis,
    };
    Some(UtcMs(civil.to_utc()?.0 - offset_min * 60_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(text: &str) -> MediaPlaylist {
        match parse(text.as_bytes()) {
            Ok(Playlist::Media(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_a_live_media_playlist_with_program_date_times() {
        let m = media(
            "#EXTM3U\r\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-12-05T05:00:00.000+00:00\n#EXTINF:2.000000,\nseg41.ts\n\
             #EXTINF:1.96,title\nseg42.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\nseg43.ts\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-12-05T06:00:00.5Z\n#EXTINF:2,\nseg44.ts\n",
        );
        assert_eq!(m.target_duration, Ticks::from_secs(2));
        let t0 = parse_date_time("2026-12-05T05:00:00Z").unwrap();
        let got: Vec<_> = m
            .segments
            .iter()
            .map(|s| {
                (
                    s.msn,
                    s.uri.as_str(),
                    s.duration.as_ms(),
                    s.program_date_time,
                    s.discontinuity,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (41, "seg41.ts", 2000, Some(t0), false),
                (
                    42,
                    "seg42.ts",
                    1960,
                    Some(t0.saturating_add_ms(2000)),
                    false
                ),
                // After a discontinuity a date-time is not carried over.
                (43, "seg43.ts", 2000, None, true),
                (
                    44,
                    "seg44.ts",
                    2000,
                    Some(t0.saturating_add_ms(3_600_500)),
                    true
                ),
            ]
        );
        assert!(!m.ended && !m.init_section && m.encryption.is_none());
    }

    #[test]
    fn reads_a_master_playlist_with_an_audio_group() {
        let text = "#EXTM3U\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English, main\",URI=\"audio/en.m3u8\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aac\"\nlow/index.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=2560000,RESOLUTION=1280x720\nhigh/index.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS=\"mp4a.40.2\",AUDIO=\"aac\"\naudio/en.m3u8\n";
        let Ok(Playlist::Master(m)) = parse(text.as_bytes()) else {
            panic!("master")
        };
        assert_eq!(
            m.variants,
            vec![
                Variant {
                    bandwidth: 1_280_000,
                    uri: "low/index.m3u8".into(),
                    audio: Some("aac".into()),
                    audio_only: false,
                },
                Variant {
                    bandwidth: 2_560_000,
                    uri: "high/index.m3u8".into(),
                    audio: None,
                    audio_only: false,
                },
                Variant {
                    bandwidth: 64_000,
                    uri: "audio/en.m3u8".into(),
                    audio: Some("aac".into()),
                    audio_only: true,
                },
            ]
        );
        assert_eq!(m.renditions[0].uri.as_deref(), Some("audio/en.m3u8"));
        assert_eq!(m.renditions[0].kind, "AUDIO");
        assert!(!m.renditions[0].default);
    }

    #[test]
    fn flags_what_ingest_cannot_record() {
        let m = media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init.mp4\"\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:4,\na.m4s\n#EXT-X-ENDLIST\n",
        );
        assert!(m.init_section && m.ended);
        assert_eq!(m.encryption, None, "AES-128 is decrypted");
        let m = media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"k\"\n#EXTINF:4,\na.ts\n",
        );
        assert_eq!(m.encryption.as_deref(), Some("METHOD=SAMPLE-AES"));
        let m = media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\",KEYFORMAT=\"com.apple.streamingkeydelivery\"\n#EXTINF:4,\na.ts\n",
        );
        assert_eq!(
            m.encryption.as_deref(),
            Some("METHOD=AES-128, KEYFORMAT=com.apple.streamingkeydelivery")
        );
        let m =
            media("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=NONE\n#EXTINF:4,\na.ts\n");
        assert_eq!(m.encryption, None);
    }

    #[test]
    fn aes_keys_apply_to_the_segments_after_them() {
        let m = media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:4,\nclear.ts\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"k1\"\n#EXTINF:4,\na.ts\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"k2\",IV=0x000102030405060708090A0B0C0D0E0F\n#EXTINF:4,\nb.ts\n\
             #EXT-X-KEY:METHOD=NONE\n#EXTINF:4,\nc.ts\n",
        );
        let keys: Vec<_> = m.segments.iter().map(|s| s.key.clone()).collect();
        assert_eq!(keys[0], None);
        let k1 = keys[1].clone().unwrap();
        assert_eq!((k1.uri.as_str(), k1.iv), ("k1", None));
        // Without IV: the media sequence number, big-endian.
        let mut iv = [0; 16];
        iv[15] = 8;
        assert_eq!(k1.iv_for(8), iv);
        let k2 = keys[2].clone().unwrap();
        assert_eq!(k2.uri, "k2");
        assert_eq!(k2.iv_for(9), std::array::from_fn(|i| i as u8));
        assert_eq!(keys[3], None);
        for (bad, why) in [
            ("#EXT-X-KEY:METHOD=AES-128", "without a URI"),
            (
                "#EXT-X-KEY:METHOD=AES-128,URI=\"k\",IV=0x12",
                "is not 0x and 32 hex digits",
            ),
        ] {
            let text = format!("#EXTM3U\n#EXT-X-TARGETDURATION:4\n{bad}\n#EXTINF:4,\na.ts\n");
            let e = parse(text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    #[test]
    fn refuses_malformed_and_oversized_playlists() {
        let long_line = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{}\n",
            "a".repeat(MAX_LINE_BYTES + 1)
        );
        let many = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n{}",
            "#EXTINF:2,\ns.ts\n".repeat(MAX_SEGMENTS + 1)
        );
        for (text, why) in [
            ("", "not a playlist"),
            ("<html>", "not a playlist"),
            ("#EXTM3U\n#EXTINF:2,\na.ts\n", "without #EXT-X-TARGETDURATION"),
            ("#EXTM3U\n#EXT-X-TARGETDURATION:2\na.ts\n", "line 3: URI without"),
            ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:two,\na.ts\n", "line 3: #EXTINF"),
            ("#EXTM3U\n#EXT-X-TARGETDURATION:0\n", "target duration"),
            ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:yesterday\n", "ISO 8601"),
            ("#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1\na.m3u8\n", "BANDWIDTH"),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:2,\na\n#EXTINF:2,\nb\n",
                "overflows",
            ),
            (long_line.as_str(), "line 4: line longer"),
            (many.as_str(), "more than 20000 segments"),
        ] {
            let e = parse(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(why), "{text:.80}: {e}");
        }
        assert!(parse(&vec![b'#'; MAX_PLAYLIST_BYTES + 1]).is_err());
    }

    #[test]
    fn reads_date_times_and_durations() {
        let t = parse_date_time("2026-12-05T05:01:41Z").unwrap();
        for (text, offset_ms) in [
            ("2026-12-05T05:01:41.123Z", 123),
            ("2026-12-05T05:01:41.1239+00:00", 123),
            ("2026-12-05T06:01:41.5+01:00", 500),
            ("2026-12-05T04:31:41-0030", 0),
            ("2026-12-05T07:01:41+02", 0),
        ] {
            assert_eq!(
                parse_date_time(text),
                Some(t.saturating_add_ms(offset_ms)),
                "{text}"
            );
        }
        for bad in [
            "2026-13-05T05:01:41Z",
            "2026-12-05T05:01:41",
            "2026-12-05T05:01:41.Z",
            "2026-12-05T05:01:41+2",
        ] {
            assert_eq!(parse_date_time(bad), None, "{bad}");
        }
        assert_eq!(parse_seconds("5.005"), Some(Ticks(450_450)));
        assert_eq!(parse_seconds("4.0000001"), Some(Ticks::from_secs(4)));
        assert_eq!(parse_seconds("-1"), None);
        assert_eq!(parse_seconds(".5"), None);
        assert_eq!(attribute("A=1,B=\"x,y\",C=z", "C"), Some("z"));
        assert_eq!(attribute("A=1,B=\"x,y\",C=z", "B"), Some("x,y"));
        assert_eq!(attribute("A=\"unterminated", "B"), None);
    }
}
