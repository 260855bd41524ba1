//! The playback URL grammar: every Flussonic-style form a player or IPTV
//! middleware generates (ARCHITECTURE section 7), parsed into one enum.
//!
//! Stream names may contain `/` (`live/ort`), so a path is read from the
//! right: the trailing components name the form and whatever precedes them
//! is the stream. Parsing is pure and total: every path is either a
//! [`Playback`] or a [`UrlError`] that says, in one line, what is wrong.
//!
//! Per-track playlists follow the seeds' Flussonic naming: a `tracks-1,2/`
//! directory before any playlist or segment name selects tracks by number
//! (1-based, in PMT order), and `videoN` is the flavor "N-th video track with
//! every audio track".

use std::fmt;

/// Which tracks a playlist carries and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// `index`: a master playlist over the tracks (one variant when there is
    /// one video and one audio).
    Index,
    /// `archive`: the same as `index`, the name middleware uses for ranges.
    Archive,
    /// `mono`: every track in one transport stream (the set-top-box form).
    Mono,
    /// `video`: a variant playlist of `videoN` playlists (one per video
    /// track), for set-top boxes that know no `EXT-X-MEDIA`.
    Video,
    /// `videoN`: the N-th video track (1-based) and every audio track in one
    /// transport stream.
    VideoTrack(u8),
}

impl Flavor {
    fn parse(s: &str) -> Option<Flavor> {
        match s {
            "index" => Some(Flavor::Index),
            "archive" => Some(Flavor::Archive),
            "mono" => Some(Flavor::Mono),
            "video" => Some(Flavor::Video),
            _ => s
                .strip_prefix("video")
                .filter(|n| !n.starts_with('0'))
                .and_then(|n| n.parse::<u8>().ok())
                .map(Flavor::VideoTrack),
        }
    }
}

/// Tracks picked by a `tracks-1,2/` directory: numbers 1 to 32, in PMT
/// order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrackSet(u32);

impl TrackSet {
    /// The largest track number a URL may name.
    pub const MAX_TRACK: usize = 32;

    /// The set of `numbers` (each 1..=32).
    pub fn of(numbers: &[usize]) -> Option<TrackSet> {
        let mut bits = 0u32;
        for &n in numbers {
            if n == 0 || n > Self::MAX_TRACK {
                return None;
            }
            bits |= 1 << (n - 1);
        }
        (bits != 0).then_some(TrackSet(bits))
    }

    fn parse(list: &str) -> Result<TrackSet, UrlError> {
        let bad = || {
            UrlError::Invalid(format!(
                "tracks-{list}: expected track numbers 1 to {} separated by commas",
                Self::MAX_TRACK
            ))
        };
        let numbers = list
            .split(',')
            .map(|n| {
                n.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| n.parse::<usize>().ok())
                    .flatten()
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<_>, _>>()?;
        TrackSet::of(&numbers).ok_or_else(bad)
    }

    /// The track numbers, ascending.
    pub fn numbers(self) -> Vec<usize> {
        (1..=Self::MAX_TRACK)
            .filter(|n| self.0 & (1 << (n - 1)) != 0)
            .collect()
    }

    /// The directory name, `tracks-1,2`.
    pub fn dir(self) -> String {
        let numbers: Vec<String> = self.numbers().iter().map(ToString::to_string).collect();
        format!("tracks-{}", numbers.join(","))
    }
}

/// The end of a requested range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeEnd {
    /// `DUR` seconds after `FROM`.
    Duration(u32),
    /// `now`: the range grows with live (start-over).
    Now,
}

/// How the media of a playlist form is packaged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Packaging {
    /// MPEG-TS segments (`.m3u8`, `.ts`).
    #[default]
    Ts,
    /// Fragmented MP4 (CMAF) made from the stored TS on request:
    /// `.fmp4.m3u8` playlists, DASH manifests, `init-…mp4` and `frag-…m4s`.
    Fmp4,
}

/// What a playback URL asks for. Times are UTC epoch seconds, except the
/// tape times of fMP4 pieces, which are 90 kHz ticks since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    /// `index.m3u8`, `mono.m3u8`, `video.m3u8`: live.
    LivePlaylist(Flavor),
    /// `mpegts`: live as one endless transport stream.
    LiveMpegts,
    /// `index.mpd`: live DASH.
    LiveDash,
    /// `rewind-N.mpd`: live DASH with an N-second window.
    RewindDash { window: u32 },
    /// `rewind-N.m3u8`: live with an N-second window.
    Rewind { flavor: Flavor, window: u32 },
    /// `{flavor}-FROM-DUR.m3u8` and `{flavor}-FROM-now.m3u8`.
    RangePlaylist {
        flavor: Flavor,
        from: i64,
        end: RangeEnd,
    },
    /// `archive-FROM-DUR.ts` and `archive/FROM/DUR/mpegts`.
    RangeMpegts { from: i64, duration: u32 },
    /// `archive-FROM-DUR.mpd` and `archive-FROM-now.mpd`.
    RangeDash { from: i64, end: RangeEnd },
    /// `archive-FROM-DUR.mp4`.
    RangeMp4 { from: i64, duration: u32 },
    /// `timeshift_abs-T.m3u8` (and `mono-`, `video-`, `_mono` spellings).
    TimeshiftAbsPlaylist { flavor: Flavor, at: i64 },
    /// `timeshift_abs-T.ts` and `timeshift_abs/T`; `videoN-timeshift_abs-T.ts`
    /// keeps the N-th video track and every audio track.
    TimeshiftAbsMpegts { flavor: Flavor, at: i64 },
    /// `timeshift_rel-N.m3u8`.
    TimeshiftRelPlaylist { flavor: Flavor, behind: u32 },
    /// `timeshift_rel/N`.
    TimeshiftRelMpegts { behind: u32 },
    /// `recording_status.json`.
    RecordingStatus,
    /// `YYYY/MM/DD/HH/MM/SS-DDDDD.ts`: one stored segment, by the UTC second
    /// it starts in and its duration in milliseconds.
    Segment { start_second: i64, duration_ms: u32 },
    /// `embed.html`: the player page.
    Embed,
    /// `init-T-ID.mp4`: the fMP4 init segment named `ID` (16 hex digits,
    /// an [`InitId`](dvr_media::fmp4::InitId)) of the stored segment that
    /// starts at tape time `T` (90 kHz ticks since the epoch).
    Fmp4Init { at: i64, id: [u8; 8] },
    /// `frag-T.m4s`: the stored segment that starts at tape time `T` as an
    /// fMP4 media segment (the DASH `$Time$`); `frag-T-MS.m4s`: the run of
    /// consecutive segments from there lasting `MS` milliseconds (a
    /// coalesced playlist entry).
    Fmp4Fragment { at: i64, duration_ms: Option<u32> },
    /// `YYYY/MM/DD/HH/MM/SS-preview.mp4` and `…-preview.jpg`: the last
    /// keyframe presented before the end of that UTC second, as a
    /// one-frame MP4 or a JPEG.
    Preview { second: i64, picture: Picture },
    /// `YYYY/MM/DD/HH/MM/SS.jpg`: a redirect to the `-preview.jpg` of the
    /// keyframe nearest that second.
    Thumbnail { second: i64 },
    /// `preview.jpg`: the newest keyframe as a JPEG.
    LivePreview,
}

impl Form {
    /// Whether it follows the live edge (a window ending now), the forms
    /// an on-demand stream's first viewer waits on while it starts.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Form::LivePlaylist(_)
                | Form::LiveMpegts
                | Form::LiveDash
                | Form::RewindDash { .. }
                | Form::Rewind { .. }
                | Form::LivePreview
        )
    }
}

/// What a preview is made into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Picture {
    /// A one-frame MP4 (the keyframe's bytes, not decoded).
    Mp4,
    /// The keyframe decoded and encoded as JPEG.
    Jpeg,
}

/// A parsed playback path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Playback<'a> {
    /// The stream name as written (validated by the caller).
    pub stream: &'a str,
    /// What is asked for.
    pub form: Form,
    /// Tracks picked by a `tracks-…/` directory; `None` for all of them.
    pub tracks: Option<TrackSet>,
    /// TS, or fMP4 (`.fmp4.m3u8`, `.mpd`, `.mp4` init and `.m4s` pieces).
    pub packaging: Packaging,
}

/// Why a path is not a playback URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// No form matches the path at all.
    Unknown,
    /// A form matched but a field is wrong.
    Invalid(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Unknown => f.write_str("not a playback URL"),
            UrlError::Invalid(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for UrlError {}

/// Parses a request path (without query string), e.g. `/ort/index-1700000000-3600.m3u8`.
pub fn parse(path: &str) -> Result<Playback<'_>, UrlError> {
    let mut playback = parse_form(path)?;
    let Some((stream, dir)) = playback.stream.rsplit_once('/') else {
        return Ok(playback);
    };
    let Some(list) = dir.strip_prefix("tracks-") else {
        return Ok(playback);
    };
    let tracks = TrackSet::parse(list)?;
    match playback.form {
        Form::LivePlaylist(_)
        | Form::Rewind { .. }
        | Form::RangePlaylist { .. }
        | Form::TimeshiftAbsPlaylist { .. }
        | Form::TimeshiftRelPlaylist { .. }
        | Form::Segment { .. }
        | Form::LiveMpegts
        | Form::RangeMpegts { .. }
        | Form::RangeMp4 { .. }
        | Form::TimeshiftAbsMpegts {
            flavor: Flavor::Index | Flavor::Archive | Flavor::Mono,
            ..
        }
        | Form::TimeshiftRelMpegts { .. }
        | Form::LiveDash
        | Form::RewindDash { .. }
        | Form::RangeDash { .. }
        | Form::Fmp4Init { .. }
        | Form::Fmp4Fragment { .. }
        | Form::Preview { .. }
        | Form::LivePreview => {}
        Form::TimeshiftAbsMpegts { .. } => {
            return Err(UrlError::Invalid(format!(
                "{dir}/ and a videoN- prefix both pick tracks: use one"
            )))
        }
        _ => {
            return Err(UrlError::Invalid(format!(
            "{dir}/ picks tracks of HLS and DASH playlists, segments, MPEG-TS, MP4 exports and previews only"
        )))
        }
    }
    playback.stream = stream;
    playback.tracks = Some(tracks);
    Ok(playback)
}

fn parse_form(path: &str) -> Result<Playback<'_>, UrlError> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    let stream_of = |trailing: usize| -> Result<&str, UrlError> {
        if n <= trailing {
            return Err(UrlError::Invalid("no stream name in the URL".into()));
        }
        let end = parts[..n - trailing]
            .iter()
            .map(|p| p.len() + 1)
            .sum::<usize>()
            - 1;
        Ok(&path[..end])
    };
    // Six trailing components: a segment, a preview or a thumbnail.
    if n > 6
        && [".ts", ".jpg", ".mp4"]
            .iter()
            .any(|e| parts[n - 1].ends_with(e))
    {
        if let Some(form) = dated_form(&parts[n - 6..])? {
            return Ok(Playback {
                stream: stream_of(6)?,
                form,
                tracks: None,
                packaging: Packaging::Ts,
            });
        }
    }
    // archive/FROM/DUR/mpegts
    if n > 4 && parts[n - 4] == "archive" && parts[n - 1] == "mpegts" {
        let from = epoch(parts[n - 3])?;
        let duration = seconds(parts[n - 2])?;
        return Ok(Playback {
            stream: stream_of(4)?,
            form: Form::RangeMpegts { from, duration },
            tracks: None,
            packaging: Packaging::Ts,
        });
    }
    // timeshift_abs/T and timeshift_rel/N
    if n > 2 {
        let form = match parts[n - 2] {
            "timeshift_abs" => Some(Form::TimeshiftAbsMpegts {
                flavor: Flavor::Index,
                at: epoch(parts[n - 1])?,
            }),
            "timeshift_rel" => Some(Form::TimeshiftRelMpegts {
                behind: seconds(parts[n - 1])?,
            }),
            _ => None,
        };
        if let Some(form) = form {
            return Ok(Playback {
                stream: stream_of(2)?,
                form,
                tracks: None,
                packaging: Packaging::Ts,
            });
        }
    }
    let last = parts[n - 1];
    let (form, packaging) = match last.strip_suffix(".fmp4.m3u8") {
        // Every HLS playlist form, as CMAF: the same name with `.fmp4`.
        Some(stem) => match last_component_form(&format!("{stem}.m3u8"))? {
            Some(
                form @ (Form::LivePlaylist(_)
                | Form::Rewind { .. }
                | Form::RangePlaylist { .. }
                | Form::TimeshiftAbsPlaylist { .. }
                | Form::TimeshiftRelPlaylist { .. }),
            ) => (form, Packaging::Fmp4),
            _ => return Err(UrlError::Unknown),
        },
        None => {
            let form = last_component_form(last)?.ok_or(UrlError::Unknown)?;
            let packaging = match form {
                Form::LiveDash
                | Form::RewindDash { .. }
                | Form::RangeDash { .. }
                | Form::Fmp4Init { .. }
                | Form::Fmp4Fragment { .. } => Packaging::Fmp4,
                _ => Packaging::Ts,
            };
            (form, packaging)
        }
    };
    Ok(Playback {
        stream: stream_of(1)?,
        form,
        tracks: None,
        packaging,
    })
}

/// `YYYY/MM/DD/HH/MM/` and a last component naming a second:
/// `SS-DDDDD.ts` (a segment), `SS-preview.mp4`, `SS-preview.jpg`, `SS.jpg`.
fn dated_form(p: &[&str]) -> Result<Option<Form>, UrlError> {
    let last = p[5];
    let (seconds_part, rest) = match last.split_once(['-', '.']) {
        Some((seconds, _)) => (seconds, &last[seconds.len()..]),
        None => return Ok(None),
    };
    enum Named<'a> {
        Segment(&'a str),
        Preview(Picture),
        Thumbnail,
    }
    let named = match rest {
        "-preview.mp4" => Named::Preview(Picture::Mp4),
        "-preview.jpg" => Named::Preview(Picture::Jpeg),
        ".jpg" => Named::Thumbnail,
        _ => match rest.strip_prefix('-').and_then(|r| r.strip_suffix(".ts")) {
            Some(duration) => Named::Segment(duration),
            None => return Ok(None),
        },
    };
    let fields = [p[0], p[1], p[2], p[3], p[4], seconds_part];
    if !fields
        .iter()
        .all(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Ok(None);
    }
    let num = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| UrlError::Invalid(format!("bad number {s:?} in a dated URL")))
    };
    let civil = dvr_common::CivilTime {
        year: i64::from(num(p[0])?),
        month: num(p[1])?,
        day: num(p[2])?,
        hour: num(p[3])?,
        minute: num(p[4])?,
        second: num(seconds_part)?,
        millis: 0,
    };
    let start = civil.to_utc().ok_or_else(|| {
        UrlError::Invalid(format!("URL names an impossible time {}", p.join("/")))
    })?;
    let second = start.as_secs();
    Ok(Some(match named {
        Named::Segment(duration_part) => Form::Segment {
            start_second: second,
            duration_ms: duration_part
                .parse::<u32>()
                .ok()
                .filter(|d| *d > 0)
                .ok_or_else(|| {
                    UrlError::Invalid(format!("bad segment duration {duration_part:?}"))
                })?,
        },
        Named::Preview(picture) => Form::Preview { second, picture },
        Named::Thumbnail => Form::Thumbnail { second },
    }))
}

fn last_component_form(last: &str) -> Result<Option<Form>, UrlError> {
    match last {
        "index.m3u8" => return Ok(Some(Form::LivePlaylist(Flavor::Index))),
        "mono.m3u8" => return Ok(Some(Form::LivePlaylist(Flavor::Mono))),
        "video.m3u8" => return Ok(Some(Form::LivePlaylist(Flavor::Video))),
        "mpegts" => return Ok(Some(Form::LiveMpegts)),
        "index.mpd" => return Ok(Some(Form::LiveDash)),
        "recording_status.json" => return Ok(Some(Form::RecordingStatus)),
        "embed.html" => return Ok(Some(Form::Embed)),
        "preview.jpg" => return Ok(Some(Form::LivePreview)),
        _ => {}
    }
    let Some((stem, ext)) = last.rsplit_once('.') else {
        return Ok(None);
    };
    if let (Some(flavor @ Flavor::VideoTrack(_)), "m3u8") = (Flavor::parse(stem), ext) {
        return Ok(Some(Form::LivePlaylist(flavor)));
    }
    let fields: Vec<&str> = stem.split('-').collect();
    match (&fields[..], ext) {
        (["init", t, id], "mp4") => {
            return Ok(Some(Form::Fmp4Init {
                at: tape_time(t)?,
                id: init_id(id)?,
            }))
        }
        (["frag", t], "m4s") => {
            return Ok(Some(Form::Fmp4Fragment {
                at: tape_time(t)?,
                duration_ms: None,
            }))
        }
        (["frag", t, ms], "m4s") => {
            return Ok(Some(Form::Fmp4Fragment {
                at: tape_time(t)?,
                duration_ms: Some(seconds(ms).map_err(|_| {
                    UrlError::Invalid(format!(
                        "frag duration {ms:?} is not a positive number of milliseconds"
                    ))
                })?),
            }))
        }
        _ => {}
    }
    let known = Flavor::parse(fields[0]).is_some()
        || fields[0].starts_with("timeshift_")
        || fields[0] == "rewind";
    if known && fields.iter().any(|f| f.is_empty()) {
        return Err(UrlError::Invalid(format!(
            "{last:?}: a time or duration is negative or empty"
        )));
    }
    // Flavor prefix: `mono-timeshift_abs-T`, `video-rewind-N`, ...
    let (flavor, rest) = match Flavor::parse(fields[0]) {
        Some(f)
            if fields.len() > 1
                && (fields[1].starts_with("timeshift_") || fields[1] == "rewind") =>
        {
            (Some(f), &fields[1..])
        }
        _ => (None, &fields[..]),
    };
    let form = match (rest, ext) {
        ([kind, t], "m3u8") if kind.starts_with("timeshift_abs") => Form::TimeshiftAbsPlaylist {
            flavor: suffix_flavor(kind, "timeshift_abs", flavor)?,
            at: epoch(t)?,
        },
        ([kind, n], "m3u8") if kind.starts_with("timeshift_rel") => Form::TimeshiftRelPlaylist {
            flavor: suffix_flavor(kind, "timeshift_rel", flavor)?,
            behind: seconds(n)?,
        },
        (["timeshift_abs", t], "ts") => Form::TimeshiftAbsMpegts {
            flavor: match flavor {
                // One transport stream has one set of tracks: `video-`
                // (a variant playlist of them) has no TS form.
                Some(Flavor::Video) => {
                    return Err(UrlError::Invalid(format!(
                        "{last:?}: video- is a variant playlist; a transport stream takes videoN- or tracks-N/"
                    )))
                }
                other => other.unwrap_or(Flavor::Index),
            },
            at: epoch(t)?,
        },
        (["rewind", n], "m3u8") => Form::Rewind {
            flavor: flavor.unwrap_or(Flavor::Index),
            window: seconds(n)?,
        },
        (["rewind", n], "mpd") if flavor.is_none() => Form::RewindDash {
            window: seconds(n)?,
        },
        ([name, from, end], ext) if flavor.is_none() => {
            let Some(flavor) = Flavor::parse(name) else {
                return Ok(None);
            };
            let from = epoch(from)?;
            let end = range_end(end)?;
            match (ext, end) {
                ("m3u8", end) => Form::RangePlaylist { flavor, from, end },
                ("mpd", end) if flavor == Flavor::Archive || flavor == Flavor::Index => {
                    Form::RangeDash { from, end }
                }
                ("ts", RangeEnd::Duration(duration)) if flavor == Flavor::Archive => {
                    Form::RangeMpegts { from, duration }
                }
                ("mp4", RangeEnd::Duration(duration)) if flavor == Flavor::Archive => {
                    Form::RangeMp4 { from, duration }
                }
                ("ts" | "mp4", RangeEnd::Now) => {
                    return Err(UrlError::Invalid(format!(
                        "a .{ext} download needs a duration, not \"now\""
                    )))
                }
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(form))
}

/// `timeshift_abs_mono` is the same as `mono-timeshift_abs`.
fn suffix_flavor(kind: &str, base: &str, prefix: Option<Flavor>) -> Result<Flavor, UrlError> {
    match kind.strip_prefix(base) {
        Some("") => Ok(prefix.unwrap_or(Flavor::Index)),
        Some(suffix) => suffix
            .strip_prefix('_')
            .and_then(Flavor::parse)
            .filter(|_| prefix.is_none())
            .ok_or_else(|| UrlError::Invalid(format!("unknown form {kind:?}"))),
        None => Err(UrlError::Unknown),
    }
}

/// A UTC epoch second: digits only, so a negative or fractional time is a
/// 400, and no later than [`UtcMs::LAST_SECOND`](dvr_common::UtcMs::LAST_SECOND),
/// so arithmetic on it cannot overflow.
pub fn epoch(s: &str) -> Result<i64, UrlError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::Invalid(format!(
            "time {s:?} is not a UTC epoch second"
        )));
    }
    s.parse()
        .ok()
        .filter(|t| *t <= dvr_common::UtcMs::LAST_SECOND)
        .ok_or_else(|| {
            UrlError::Invalid(format!(
                "time {s:?} is past the year 9999: give UTC epoch seconds, not milliseconds"
            ))
        })
}

/// A tape time: 90 kHz ticks since the epoch, digits only, no later than
/// the last second a URL may name.
pub fn tape_time(s: &str) -> Result<i64, UrlError> {
    let bad = || {
        UrlError::Invalid(format!(
            "tape time {s:?} is not a count of 90 kHz ticks since the epoch"
        ))
    };
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<i64>()
        .ok()
        .filter(|t| *t <= dvr_common::UtcMs::LAST_SECOND * dvr_common::time::TICKS_PER_SEC)
        .ok_or_else(bad)
}

/// An init segment's name: 16 lowercase hex digits.
fn init_id(s: &str) -> Result<[u8; 8], UrlError> {
    let bad = || UrlError::Invalid(format!("init id {s:?} is not 16 lowercase hex digits"));
    if s.len() != 16
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    u64::from_str_radix(s, 16)
        .map(u64::to_be_bytes)
        .map_err(|_| bad())
}

/// A positive number of seconds.
fn seconds(s: &str) -> Result<u32, UrlError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::Invalid(format!(
            "duration {s:?} is not a whole number of seconds"
        )));
    }
    match s.parse::<u32>() {
        Ok(0) => Err(UrlError::Invalid("duration must be positive".into())),
        Ok(n) => Ok(n),
        Err(_) => Err(UrlError::Invalid(format!("duration {s:?} is out of range"))),
    }
}

fn range_end(s: &str) -> Result<RangeEnd, UrlError> {
    if s == "now" {
        Ok(RangeEnd::Now)
    } else {
        seconds(s).map(RangeEnd::Duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(path: &str) -> Form {
        parse(path).unwrap_or_else(|e| panic!("{path}: {e}")).form
    }

    #[test]
    fn live_and_range_forms() {
        assert_eq!(form("/ort/index.m3u8"), Form::LivePlaylist(Flavor::Index));
        assert_eq!(form("/ort/mpegts"), Form::LiveMpegts);
        assert_eq!(
            form("/ort/archive-1700000000-3600.m3u8"),
            Form::RangePlaylist {
                flavor: Flavor::Archive,
                from: 1_700_000_000,
                end: RangeEnd::Duration(3600)
            }
        );
        assert_eq!(
            form("/ort/index-1700000000-now.m3u8"),
            Form::RangePlaylist {
                flavor: Flavor::Index,
                from: 1_700_000_000,
                end: RangeEnd::Now
            }
        );
        assert_eq!(
            form("/ort/archive-1700000000-60.ts"),
            Form::RangeMpegts {
                from: 1_700_000_000,
                duration: 60
            }
        );
        assert_eq!(
            form("/ort/archive/1700000000/60/mpegts"),
            Form::RangeMpegts {
                from: 1_700_000_000,
                duration: 60
            }
        );
        assert_eq!(
            form("/ort/archive-1700000000-60.mp4"),
            Form::RangeMp4 {
                from: 1_700_000_000,
                duration: 60
            }
        );
        assert_eq!(
            form("/ort/archive-1700000000-now.mpd"),
            Form::RangeDash {
                from: 1_700_000_000,
                end: RangeEnd::Now
            }
        );
        assert_eq!(form("/ort/recording_status.json"), Form::RecordingStatus);
        assert_eq!(
            form("/ort/rewind-7200.m3u8"),
            Form::Rewind {
                flavor: Flavor::Index,
                window: 7200
            }
        );
    }

    #[test]
    fn timeshift_spellings() {
        let abs = Form::TimeshiftAbsPlaylist {
            flavor: Flavor::Mono,
            at: 1_508_403_742,
        };
        assert_eq!(form("/ort/mono-timeshift_abs-1508403742.m3u8"), abs);
        assert_eq!(form("/ort/timeshift_abs_mono-1508403742.m3u8"), abs);
        let ts = Form::TimeshiftAbsMpegts {
            flavor: Flavor::Index,
            at: 1_508_403_742,
        };
        assert_eq!(form("/ort/timeshift_abs-1508403742.ts"), ts);
        assert_eq!(form("/ort/timeshift_abs/1508403742"), ts);
        assert_eq!(
            form("/ort/video2-timeshift_abs-1508403742.ts"),
            Form::TimeshiftAbsMpegts {
                flavor: Flavor::VideoTrack(2),
                at: 1_508_403_742
            }
        );
        assert!(matches!(
            parse("/ort/video-timeshift_abs-1508403742.ts"),
            Err(UrlError::Invalid(_))
        ));
        assert_eq!(
            form("/ort/timeshift_rel/3600"),
            Form::TimeshiftRelMpegts { behind: 3600 }
        );
        assert_eq!(
            form("/ort/video-timeshift_rel-360.m3u8"),
            Form::TimeshiftRelPlaylist {
                flavor: Flavor::Video,
                behind: 360
            }
        );
    }

    #[test]
    fn stream_names_with_slashes_and_segments() {
        let p = parse("/live/ort/2026/11/21/14/05/32-02000.ts").unwrap();
        assert_eq!(p.stream, "live/ort");
        let start = dvr_common::CivilTime {
            year: 2026,
            month: 11,
            day: 21,
            hour: 14,
            minute: 5,
            second: 32,
            millis: 0,
        };
        assert_eq!(
            p.form,
            Form::Segment {
                start_second: start.to_utc().unwrap().as_secs(),
                duration_ms: 2000
            }
        );
        assert_eq!(parse("/live/ort/index.m3u8").unwrap().stream, "live/ort");
    }

    #[test]
    fn track_directories_and_video_n() {
        let p = parse("/live/ort/tracks-1,3/index-1700000000-60.m3u8").unwrap();
        assert_eq!(p.stream, "live/ort");
        assert_eq!(p.tracks.unwrap().numbers(), [1, 3]);
        assert_eq!(p.tracks.unwrap().dir(), "tracks-1,3");
        let p = parse("/ort/tracks-2/2026/11/21/14/05/32-02000.ts").unwrap();
        assert_eq!((p.stream, p.tracks.unwrap().numbers()), ("ort", vec![2]));
        assert!(matches!(p.form, Form::Segment { .. }));
        assert_eq!(
            parse("/ort/tracks-1/timeshift_rel-360.m3u8")
                .unwrap()
                .tracks,
            TrackSet::of(&[1])
        );
        assert!(matches!(
            parse("/ort/tracks-0/index.m3u8"),
            Err(UrlError::Invalid(_))
        ));
        assert!(matches!(
            parse("/ort/tracks-1,x/index.m3u8"),
            Err(UrlError::Invalid(_))
        ));
        // Transport streams are cut by PID too.
        for path in [
            "/ort/tracks-1/archive-1700000000-60.ts",
            "/ort/tracks-1/archive/1700000000/60/mpegts",
            "/ort/tracks-1/timeshift_abs-1700000000.ts",
            "/ort/tracks-1/timeshift_abs/1700000000",
            "/ort/tracks-1/timeshift_rel/60",
            "/ort/tracks-1/mpegts",
            "/ort/tracks-1/archive-1700000000-60.mp4",
        ] {
            let p = parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!((p.stream, p.tracks), ("ort", TrackSet::of(&[1])), "{path}");
        }
        for path in [
            "/ort/tracks-1/video2-timeshift_abs-1700000000.ts",
            "/ort/tracks-1/recording_status.json",
        ] {
            assert!(matches!(parse(path), Err(UrlError::Invalid(_))), "{path}");
        }
        assert_eq!(
            form("/ort/video2.m3u8"),
            Form::LivePlaylist(Flavor::VideoTrack(2))
        );
        assert_eq!(
            form("/ort/video1-1362504585-3600.m3u8"),
            Form::RangePlaylist {
                flavor: Flavor::VideoTrack(1),
                from: 1_362_504_585,
                end: RangeEnd::Duration(3600)
            }
        );
        assert_eq!(
            form("/ort/video1-timeshift_abs-1508403742.m3u8"),
            Form::TimeshiftAbsPlaylist {
                flavor: Flavor::VideoTrack(1),
                at: 1_508_403_742
            }
        );
        assert_eq!(parse("/ort/video0.m3u8"), Err(UrlError::Unknown));
    }

    #[test]
    fn dash_and_fmp4_forms() {
        assert_eq!(form("/ort/index.mpd"), Form::LiveDash);
        assert_eq!(
            form("/ort/rewind-600.mpd"),
            Form::RewindDash { window: 600 }
        );
        let p = parse("/live/ort/tracks-2/init-161578464000000-00ff00ff00ff00ff.mp4").unwrap();
        assert_eq!((p.stream, p.tracks), ("live/ort", TrackSet::of(&[2])));
        assert_eq!(p.packaging, Packaging::Fmp4);
        assert_eq!(
            p.form,
            Form::Fmp4Init {
                at: 161_578_464_000_000,
                id: [0, 0xff, 0, 0xff, 0, 0xff, 0, 0xff]
            }
        );
        assert_eq!(
            form("/ort/tracks-1/frag-161578464000000.m4s"),
            Form::Fmp4Fragment {
                at: 161_578_464_000_000,
                duration_ms: None
            }
        );
        assert_eq!(
            form("/ort/frag-161578464000000-4000.m4s"),
            Form::Fmp4Fragment {
                at: 161_578_464_000_000,
                duration_ms: Some(4000)
            }
        );
        // Every HLS playlist form as CMAF.
        for (path, expected) in [
            ("/ort/index.fmp4.m3u8", Form::LivePlaylist(Flavor::Index)),
            (
                "/ort/video2.fmp4.m3u8",
                Form::LivePlaylist(Flavor::VideoTrack(2)),
            ),
            (
                "/ort/rewind-60.fmp4.m3u8",
                Form::Rewind {
                    flavor: Flavor::Index,
                    window: 60,
                },
            ),
            (
                "/ort/archive-1700000000-now.fmp4.m3u8",
                Form::RangePlaylist {
                    flavor: Flavor::Archive,
                    from: 1_700_000_000,
                    end: RangeEnd::Now,
                },
            ),
            (
                "/ort/timeshift_abs-1700000000.fmp4.m3u8",
                Form::TimeshiftAbsPlaylist {
                    flavor: Flavor::Index,
                    at: 1_700_000_000,
                },
            ),
        ] {
            let p = parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!((p.form, p.packaging), (expected, Packaging::Fmp4), "{path}");
        }
        assert_eq!(parse("/ort/index.m3u8").unwrap().packaging, Packaging::Ts);
        assert_eq!(
            parse("/ort/archive-1700000000-60.fmp4.m3u8")
                .unwrap()
                .stream,
            "ort"
        );
        assert_eq!(parse("/ort/mpegts.fmp4.m3u8"), Err(UrlError::Unknown));
        for path in [
            "/ort/init-1-00ff.mp4",
            "/ort/init-1-00FF00FF00FF00FF.mp4",
            "/ort/init-x-00ff00ff00ff00ff.mp4",
            "/ort/frag-99999999999999999999.m4s",
            "/ort/frag-1-0.m4s",
            "/ort/frag--1.m4s",
        ] {
            assert!(matches!(parse(path), Err(UrlError::Invalid(_))), "{path}");
        }
    }

    #[test]
    fn preview_and_thumbnail_forms() {
        let second = dvr_common::CivilTime {
            year: 2026,
            month: 11,
            day: 21,
            hour: 14,
            minute: 5,
            second: 32,
            millis: 0,
        }
        .to_utc()
        .unwrap()
        .as_secs();
        let p = parse("/live/ort/2026/11/21/14/05/32-preview.mp4").unwrap();
        assert_eq!(p.stream, "live/ort");
        assert_eq!(
            p.form,
            Form::Preview {
                second,
                picture: Picture::Mp4
            }
        );
        assert_eq!(
            form("/ort/2026/11/21/14/05/32-preview.jpg"),
            Form::Preview {
                second,
                picture: Picture::Jpeg
            }
        );
        assert_eq!(
            form("/ort/2026/11/21/14/05/32.jpg"),
            Form::Thumbnail { second }
        );
        assert_eq!(form("/ort/preview.jpg"), Form::LivePreview);
        let p = parse("/ort/tracks-2/2026/11/21/14/05/32-preview.jpg").unwrap();
        assert_eq!((p.stream, p.tracks), ("ort", TrackSet::of(&[2])));
        assert!(matches!(
            parse("/ort/tracks-1/2026/11/21/14/05/32.jpg"),
            Err(UrlError::Invalid(_))
        ));
        for path in [
            "/ort/2026/02/30/14/05/32-preview.jpg",
            "/ort/2026/11/21/14/05/61.jpg",
            "/ort/2026/11/21/25/05/32-preview.mp4",
        ] {
            assert!(matches!(parse(path), Err(UrlError::Invalid(_))), "{path}");
        }
        for path in [
            "/ort/2026/11/21/14/05/32-thumb.jpg",
            "/ort/2026/11/21/14/05/32-preview.png",
            "/ort/2026/11/21/14/05/32.mp4",
        ] {
            assert_eq!(parse(path), Err(UrlError::Unknown), "{path}");
        }
    }

    #[test]
    fn bad_urls_say_why() {
        assert_eq!(parse("/ort/favicon.ico"), Err(UrlError::Unknown));
        assert!(matches!(parse("/index.m3u8"), Err(UrlError::Invalid(_))));
        assert_eq!(
            parse("/ort/archive-1700000000-0.m3u8"),
            Err(UrlError::Invalid("duration must be positive".into()))
        );
        assert!(matches!(
            parse("/ort/archive--5-60.m3u8"),
            Err(UrlError::Invalid(_))
        ));
        assert!(matches!(
            parse("/ort/archive-17x-60.m3u8"),
            Err(UrlError::Invalid(_))
        ));
        assert!(matches!(
            parse("/ort/2026/02/30/14/05/32-02000.ts"),
            Err(UrlError::Invalid(_))
        ));
        assert!(matches!(
            parse("/ort/archive-1700000000-now.ts"),
            Err(UrlError::Invalid(_))
        ));
        // Numbers that would overflow milliseconds are refused, not wrapped.
        for path in [
            "/ort/timeshift_abs/9223372036854775807",
            "/ort/timeshift_abs-253402300800.m3u8",
            "/ort/archive-99999999999999999999-60.ts",
            "/ort/timeshift_rel/4294967296",
        ] {
            assert!(matches!(parse(path), Err(UrlError::Invalid(_))), "{path}");
        }
        assert!(parse("/ort/timeshift_abs/253402300799").is_ok());
    }
}
