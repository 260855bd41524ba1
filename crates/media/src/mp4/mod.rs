//! Progressive MP4 (`moov` first) of a range of the tape, laid out from
//! sample tables before any media is read.
//!
//! An export (`archive-FROM-DUR.mp4`) must answer an exact
//! `Content-Length`, serve `Range` requests by reading only the segments a
//! range touches, and put `moov` first so a player can start before the
//! download ends. All three need the file's layout up front, and a `moov`
//! lists every sample: so each stored segment has a [`SampleTable`] (sizes,
//! durations, composition offsets, sync flags, sample entries), and
//! [`Layout::new`] turns the tables of consecutive segments into the
//! `ftyp`, the `moov`, the `mdat` header, and a map from every byte of the
//! file onto (segment, track, bytes of that track's converted sample data)
//! — the same conversion as fMP4's `mdat` ([`crate::fmp4::Track::data`]).
//!
//! **Layout.** One chunk per track per segment, in segment order, each
//! segment's tracks in track-number order. Offsets go into `stco`, or `co64`
//! when a chunk starts past 4 GiB; the `mdat` gets a 64-bit size when its
//! body passes 4 GiB; `mvhd`, `tkhd`, `mdhd` switch to version 1 when a
//! duration needs it.
//!
//! **Time** comes from the samples: durations within a segment are the
//! table's; segments are placed on the tape by the index's `tape_start`, and
//! where a track's next sample starts later (or earlier) than its previous
//! sample ends, the previous sample's duration absorbs the difference, so
//! tracks stay in sync across gaps and lost segments. The export starts at
//! the keyframe at or before the window's start (video) and ends before the
//! first sample decoded at or after its end; audio keeps the frames
//! presented inside that span. Each track's `elst` places its first
//! presented sample at its tape time relative to the earliest track's (an
//! empty edit for the difference) and hides leading composition delay.
//! Nothing depends on the clock: the same tables give the same bytes on
//! every replica.

mod stills;
mod table;
mod tags;

use std::ops::Range;

use dvr_common::{ErrorKind, HasErrorKind, Ticks};

use crate::codec::TrackKind;
use crate::fmp4::boxes::{self, close, open, open_full, Put, Timed, TrakSpec};
use crate::fmp4::to_timescale;

pub use stills::{first_video, keyframes, Keyframe, Pace, MAX_STILLS};
pub use table::{
    decode_chunk_tables, encode_chunk_tables, Sample, SampleTable, TableError, TableTrack,
    TABLE_VERSION,
};
pub use tags::udta;

/// `mvhd` timescale: the tape's 90 kHz, so edits are exact for video.
const MOVIE_TIMESCALE: u32 = 90_000;

/// Why an export cannot be laid out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    /// No sample of any asked track falls in the range.
    #[error("no samples in the requested range")]
    Empty,
    /// A track number that no segment of the range has.
    #[error("there is no track {0} in this range")]
    NoSuchTrack(usize),
}

impl HasErrorKind for Mp4Error {
    fn error_kind(&self) -> ErrorKind {
        ErrorKind::NotFound
    }
}

/// One segment of an export: its table and where it starts on the tape
/// (90 kHz ticks, from the index).
#[derive(Clone, Copy, Debug)]
pub struct SegmentTables<'a> {
    /// The segment's sample table.
    pub table: &'a SampleTable,
    /// Tape time of the segment's `pts_start`.
    pub tape_start: Ticks,
}

/// Where bytes of the file come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Span {
    /// Bytes of [`Layout::head`].
    Head(Range<usize>),
    /// Bytes of track `track`'s converted data ([`crate::fmp4::Track::data`])
    /// in segment `segment` (an index into the segments given to
    /// [`Layout::new`]).
    Media {
        /// Segment index.
        segment: usize,
        /// Track number.
        track: usize,
        /// Byte range in that track's data.
        data: Range<u64>,
    },
}

/// One chunk: a track's samples of one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Piece {
    segment: usize,
    track: usize,
    data: Range<u64>,
    /// Offset in the mdat body.
    at: u64,
}

/// A progressive MP4's bytes, laid out.
#[derive(Clone, Debug)]
pub struct Layout {
    head: Vec<u8>,
    len: u64,
    pieces: Vec<Piece>,
    start: Ticks,
    duration: Ticks,
}

/// A track while the layout is built.
struct Build {
    number: usize,
    kind: TrackKind,
    timescale: u32,
    size: (u32, u32),
    language: [u8; 3],
    entries: Vec<Vec<u8>>,
    durations: Vec<u32>,
    sizes: Vec<u32>,
    offsets: Vec<i32>,
    syncs: Vec<u32>,
    /// (piece index, sample count, sample description index).
    chunks: Vec<(usize, u32, u32)>,
    first_decode: Option<i64>,
    /// Earliest presentation among the first chunk's samples.
    first_presentation: i64,
    next_decode: i64,
}

impl Layout {
    /// Lays out the export of `window` (tape ticks) from `segments`, which
    /// are consecutive and cover the window; `tracks` selects track
    /// numbers (all when `None`). The file starts at the keyframe at or
    /// before the window's start.
    pub fn new(
        segments: &[SegmentTables<'_>],
        tracks: Option<&[usize]>,
        window: Range<Ticks>,
    ) -> Result<Layout, Mp4Error> {
        Self::build(segments, tracks, window, false, &[])
    }

    /// [`Layout::new`], presented from the window's start to its end to
    /// the frame (`?precise=true`), without re-encoding: every track keeps
    /// its samples from the keyframe at or before the start (the lead-in),
    /// and one edit per track, the same instant and duration on all of
    /// them, hides the lead-in and trims the end. Where the window starts
    /// before a track has samples, or ends after one stops, the edit
    /// starts (ends) where every track has media, so they stay together.
    pub fn precise(
        segments: &[SegmentTables<'_>],
        tracks: Option<&[usize]>,
        window: Range<Ticks>,
    ) -> Result<Layout, Mp4Error> {
        Self::build(segments, tracks, window, true, &[])
    }

    /// [`Layout::new`] (or [`Layout::precise`] when `precise`) with `tags`
    /// (name, value) in `moov/udta/meta/ilst` (see [`udta`]).
    pub fn tagged(
        segments: &[SegmentTables<'_>],
        tracks: Option<&[usize]>,
        window: Range<Ticks>,
        precise: bool,
        tags: &[(String, String)],
    ) -> Result<Layout, Mp4Error> {
        Self::build(segments, tracks, window, precise, &udta(tags))
    }

    fn build(
        segments: &[SegmentTables<'_>],
        tracks: Option<&[usize]>,
        window: Range<Ticks>,
        precise: bool,
        udta: &[u8],
    ) -> Result<Layout, Mp4Error> {
        let mut numbers: Vec<usize> = segments
            .iter()
            .flat_map(|s| s.table.tracks.iter().map(|t| usize::from(t.number)))
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        if let Some(asked) = tracks {
            if let Some(&missing) = asked.iter().find(|n| !numbers.contains(n)) {
                return Err(Mp4Error::NoSuchTrack(missing));
            }
            numbers.retain(|n| asked.contains(n));
        }
        let start = snapped_start(segments, &numbers, window.start);
        let mut builds: Vec<Build> = Vec::new();
        let mut pieces = Vec::new();
        for &number in &numbers {
            let Some(first) = segments.iter().find_map(|s| s.table.track(number)) else {
                continue;
            };
            builds.push(Build {
                number,
                kind: first.kind,
                timescale: first.timescale,
                size: (first.width, first.height),
                language: first.language,
                entries: Vec::new(),
                durations: Vec::new(),
                sizes: Vec::new(),
                offsets: Vec::new(),
                syncs: Vec::new(),
                chunks: Vec::new(),
                first_decode: None,
                first_presentation: 0,
                next_decode: 0,
            });
        }
        for build in &mut builds {
            let from = to_timescale(start, build.timescale);
            let to = to_timescale(window.end, build.timescale);
            // Video: from the keyframe at or before the start to the last
            // sample (in decode order) presented before the end, so every
            // picture shown has its references; the edit list hides what
            // those present past the end.
            let span = match build.kind {
                TrackKind::Video => video_span(segments, build.number, start, window.end),
                _ => None,
            };
            for (index, segment) in segments.iter().enumerate() {
                let Some(track) = segment.table.track(build.number) else {
                    continue;
                };
                if track.timescale != build.timescale || track.kind != build.kind {
                    continue; // another stream under the same number: not this track
                }
                let origin = to_timescale(segment.tape_start, track.timescale);
                let mut decode = origin + track.first_decode;
                let (mut first, mut last) = (None, None);
                let mut data_before = 0u64;
                let mut data_len = 0u64;
                for (i, sample) in track.samples.iter().enumerate() {
                    let presentation = decode + i64::from(sample.composition_offset);
                    let keep = match build.kind {
                        TrackKind::Video => {
                            span.as_ref().is_some_and(|span| span.contains(&(index, i)))
                        }
                        _ => presentation >= from && presentation < to,
                    };
                    if keep {
                        if first.is_none() {
                            first = Some(i);
                            if let Some(previous) = build.durations.last_mut() {
                                let joined = i64::from(*previous) + decode - build.next_decode;
                                *previous = u32::try_from(joined.max(1)).unwrap_or(u32::MAX);
                            } else {
                                build.first_decode = Some(decode);
                                build.first_presentation = presentation;
                            }
                        }
                        if build.chunks.is_empty() {
                            build.first_presentation = build.first_presentation.min(presentation);
                        }
                        last = Some(i);
                        build.durations.push(sample.duration);
                        build.sizes.push(sample.size);
                        build.offsets.push(sample.composition_offset);
                        if sample.sync {
                            build.syncs.push(build.sizes.len() as u32);
                        }
                        data_len += u64::from(sample.size);
                        build.next_decode = decode + i64::from(sample.duration);
                    } else if first.is_none() {
                        data_before += u64::from(sample.size);
                    }
                    decode += i64::from(sample.duration);
                }
                if let (Some(first), Some(last)) = (first, last) {
                    let entry = match build.entries.iter().position(|e| *e == track.sample_entry) {
                        Some(at) => at,
                        None => {
                            build.entries.push(track.sample_entry.clone());
                            build.entries.len() - 1
                        }
                    };
                    build
                        .chunks
                        .push((pieces.len(), (last + 1 - first) as u32, entry as u32 + 1));
                    pieces.push(Piece {
                        segment: index,
                        track: build.number,
                        data: data_before..data_before + data_len,
                        at: 0,
                    });
                }
            }
        }
        builds.retain(|b| !b.sizes.is_empty());
        // A window after the tape's end snaps back to its last keyframe:
        // nothing of it is there.
        let ends_after_start = builds
            .iter()
            .any(|b| rescale(b.next_decode, b.timescale, MOVIE_TIMESCALE) > window.start.0);
        if builds.is_empty() || !ends_after_start {
            return Err(Mp4Error::Empty);
        }
        let movie = if precise {
            precise_movie(&builds, &window)
        } else {
            movie(&builds, window.end)
        };
        Ok(Self::finish(&builds, pieces, &movie, udta))
    }

    /// The file of `builds` (their chunks in `pieces`) presented as
    /// `movie`: chunks in file order (by segment, track number, then bytes),
    /// `ftyp`, `moov` (64-bit offsets when needed, `udta` last) and the
    /// `mdat` header.
    fn finish(builds: &[Build], mut pieces: Vec<Piece>, movie: &Movie, udta: &[u8]) -> Layout {
        let mut payload = 0u64;
        let mut order: Vec<usize> = (0..pieces.len()).collect();
        order.sort_by_key(|&i| (pieces[i].segment, pieces[i].track, pieces[i].data.start));
        for &i in &order {
            pieces[i].at = payload;
            payload += pieces[i].data.end - pieces[i].data.start;
        }
        let mut ftyp = Vec::new();
        boxes::ftyp(&mut ftyp, b"isom", &[b"isom", b"iso2", b"avc1", b"mp41"]);
        let large_mdat = payload + 8 > u64::from(u32::MAX);
        let mdat_header = if large_mdat { 16 } else { 8 };
        let fixed = (ftyp.len() + mdat_header) as u64;
        let mut moov = write_moov(builds, &pieces, movie, 0, false, udta);
        let last_chunk = pieces.iter().map(|p| p.at).max().unwrap_or(0);
        let wide = fixed + moov.len() as u64 + last_chunk > u64::from(u32::MAX);
        if wide {
            moov = write_moov(builds, &pieces, movie, 0, true, udta);
        }
        let base = fixed + moov.len() as u64;
        let moov = write_moov(builds, &pieces, movie, base, wide, udta);
        let mut head = ftyp;
        head.extend_from_slice(&moov);
        if large_mdat {
            head.u32(1);
            head.extend_from_slice(b"mdat");
            head.u64(payload + 16);
        } else {
            head.u32((payload + 8) as u32);
            head.extend_from_slice(b"mdat");
        }
        for piece in &mut pieces {
            piece.at += base;
        }
        pieces.sort_by_key(|p| p.at);
        Layout {
            len: head.len() as u64 + payload,
            head,
            pieces,
            start: Ticks(movie.start),
            duration: Ticks(movie.duration as i64),
        }
    }

    /// The file's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty (never: a layout has samples).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `ftyp`, `moov` and the `mdat` header: the bytes before any media.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Tape time where the export starts (the earliest track's first
    /// presented sample: the keyframe the start snapped to, for video).
    pub fn start(&self) -> Ticks {
        self.start
    }

    /// The movie's duration, 90 kHz.
    pub fn duration(&self) -> Ticks {
        self.duration
    }

    /// Where the bytes `range` of the file come from, in file order. Only
    /// the segments returned need be read.
    pub fn spans(&self, range: Range<u64>) -> Vec<Span> {
        let end = range.end.min(self.len);
        let mut out = Vec::new();
        let head = self.head.len() as u64;
        if range.start < head && range.start < end {
            out.push(Span::Head(range.start as usize..end.min(head) as usize));
        }
        let first = self
            .pieces
            .partition_point(|p| p.at + (p.data.end - p.data.start) <= range.start);
        for piece in &self.pieces[first..] {
            if piece.at >= end {
                break;
            }
            let piece_end = piece.at + (piece.data.end - piece.data.start);
            let from = range.start.max(piece.at) - piece.at;
            let to = end.min(piece_end) - piece.at;
            if from < to {
                out.push(Span::Media {
                    segment: piece.segment,
                    track: piece.track,
                    data: piece.data.start + from..piece.data.start + to,
                });
            }
        }
        out
    }
}

/// The start the export snaps to: for the first video track, the
/// presentation time of the last keyframe at or before `from`, or of its
/// first keyframe when none is; `from` when no track is video.
fn snapped_start(segments: &[SegmentTables<'_>], numbers: &[usize], from: Ticks) -> Ticks {
    let Some(video) = first_video(segments, Some(numbers)) else {
        return from;
    };
    let mut first = None;
    let mut best = None;
    for_each_sample(segments, video, |_, _, presentation, sample| {
        if sample.sync {
            first.get_or_insert(presentation);
            if presentation <= from.0 {
                best = Some(presentation);
            }
        }
    });
    Ticks(best.or(first).unwrap_or(from.0))
}

/// The (segment, sample) positions of video track `number` to export:
/// from its last keyframe presented at or before `start` (or its first
/// keyframe) to its last sample presented before `end`.
fn video_span(
    segments: &[SegmentTables<'_>],
    number: usize,
    start: Ticks,
    end: Ticks,
) -> Option<std::ops::RangeInclusive<(usize, usize)>> {
    let mut first = None;
    let mut best = None;
    let mut last = None;
    for_each_sample(segments, number, |segment, i, presentation, sample| {
        if sample.sync {
            first.get_or_insert((segment, i));
            if presentation <= start.0 {
                best = Some((segment, i));
            }
        }
        if presentation < end.0 {
            last = Some((segment, i));
        }
    });
    let from = best.or(first)?;
    let to = last.filter(|&last| last >= from)?;
    Some(from..=to)
}

/// Calls `f(segment, index, presentation, sample)` for every sample of a
/// 90 kHz track `number`, with tape presentation times.
fn for_each_sample(
    segments: &[SegmentTables<'_>],
    number: usize,
    mut f: impl FnMut(usize, usize, i64, &Sample),
) {
    for (index, segment) in segments.iter().enumerate() {
        let Some(track) = segment.table.track(number) else {
            continue;
        };
        if track.timescale != MOVIE_TIMESCALE {
            continue;
        }
        let mut decode = segment.tape_start.0 + track.first_decode;
        for (i, sample) in track.samples.iter().enumerate() {
            f(
                index,
                i,
                decode + i64::from(sample.composition_offset),
                sample,
            );
            decode += i64::from(sample.duration);
        }
    }
}

/// The movie's start and duration (90 kHz) and each track's edits.
struct Movie {
    start: i64,
    duration: u64,
    edits: Vec<Vec<(u64, i64)>>,
    media: Vec<u64>,
}

fn rescale(value: i64, from: u32, to: u32) -> i64 {
    (i128::from(value) * i128::from(to)).div_euclid(i128::from(from)) as i64
}

/// [`rescale`] rounding up: back to 90 kHz, a time [`to_timescale`]
/// rounded down comes back to where it was.
fn rescale_up(value: i64, from: u32, to: u32) -> i64 {
    let from = i128::from(from);
    ((i128::from(value) * i128::from(to) + from - 1).div_euclid(from)) as i64
}

fn movie(builds: &[Build], end: Ticks) -> Movie {
    let starts: Vec<i64> = builds
        .iter()
        .map(|b| rescale_up(b.first_presentation, b.timescale, MOVIE_TIMESCALE))
        .collect();
    let start = starts.iter().copied().min().unwrap_or(0);
    let mut duration = 0u64;
    let mut edits = Vec::new();
    let mut media = Vec::new();
    for (build, &track_start) in builds.iter().zip(&starts) {
        let total: u64 = build.durations.iter().map(|&d| u64::from(d)).sum();
        let media_time = (build.first_presentation - build.first_decode.unwrap_or(0)).max(0);
        let shown = (total as i64 - media_time).max(0);
        let shown = rescale(shown, build.timescale, MOVIE_TIMESCALE);
        // Pictures kept as references past the end are not shown.
        let shown = shown.min(end.0 - track_start).max(0) as u64;
        let delay = (track_start - start) as u64;
        let mut list = Vec::new();
        if delay > 0 {
            list.push((delay, -1));
        }
        list.push((shown, media_time));
        duration = duration.max(delay + shown);
        edits.push(list);
        media.push(total);
    }
    Movie {
        start,
        duration,
        edits,
        media,
    }
}

/// The movie of [`Layout::precise`]: one edit per track from `F`, the
/// window's start or the latest track start, to `E`, the window's end or
/// the earliest track end.
fn precise_movie(builds: &[Build], window: &Range<Ticks>) -> Movie {
    let first = |b: &Build| b.first_decode.unwrap_or(0);
    let totals: Vec<u64> = builds
        .iter()
        .map(|b| b.durations.iter().map(|&d| u64::from(d)).sum())
        .collect();
    let latest_start = builds
        .iter()
        .map(|b| rescale_up(b.first_presentation, b.timescale, MOVIE_TIMESCALE))
        .max()
        .unwrap_or(0);
    let earliest_end = builds
        .iter()
        .zip(&totals)
        .map(|(b, &total)| rescale(first(b) + total as i64, b.timescale, MOVIE_TIMESCALE))
        .min()
        .unwrap_or(0);
    let start = window.start.0.max(latest_start);
    let end = window.end.0.min(earliest_end).max(start);
    let duration = (end - start) as u64;
    let edits = builds
        .iter()
        .map(|b| {
            let media_time = (to_timescale(Ticks(start), b.timescale) - first(b)).max(0);
            vec![(duration, media_time)]
        })
        .collect();
    Movie {
        start,
        duration,
        edits,
        media: totals,
    }
}

/// `moov` with chunk offsets counted from `base` (the mdat body's first
/// byte in the file), 64-bit when `wide`, ending with `udta` (a whole box,
/// or nothing).
fn write_moov(
    builds: &[Build],
    pieces: &[Piece],
    movie: &Movie,
    base: u64,
    wide: bool,
    udta: &[u8],
) -> Vec<u8> {
    let samples: usize = builds.iter().map(|b| b.sizes.len()).sum();
    let mut out = Vec::with_capacity(1024 + samples * 16);
    let moov = open(&mut out, b"moov");
    let next = builds.iter().map(|b| b.number).max().unwrap_or(0) as u32 + 1;
    boxes::mvhd(&mut out, MOVIE_TIMESCALE, movie.duration, next);
    for (i, build) in builds.iter().enumerate() {
        let tables = sample_tables(build, pieces, base, wide);
        let entries = build.entries.concat();
        let trak = TrakSpec {
            track_id: build.number as u32,
            timescale: build.timescale,
            video_size: (build.kind == TrackKind::Video).then_some(build.size),
            language: build.language,
            sample_entry: &build.entries[0],
        };
        let shown: u64 = movie.edits[i].iter().map(|e| e.0).sum();
        boxes::trak(
            &mut out,
            &trak,
            Some(&Timed {
                movie_duration: shown,
                media_duration: movie.media[i],
                edits: &movie.edits[i],
                sample_entries: &entries,
                entry_count: build.entries.len() as u32,
                tables: &tables,
            }),
        );
    }
    out.extend_from_slice(udta);
    close(&mut out, moov);
    out
}

/// `stts`, `ctts` (when any offset is not 0), `stss` (when not every sample
/// is a sync sample), `stsz`, `stsc`, `stco` or `co64`.
fn sample_tables(build: &Build, pieces: &[Piece], base: u64, wide: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(build.sizes.len() * 12 + 256);
    let stts = runs(&build.durations);
    let at = open_full(&mut out, b"stts", 0, 0);
    out.u32(stts.len() as u32);
    for (count, duration) in stts {
        out.u32(count);
        out.u32(duration);
    }
    close(&mut out, at);
    if build.offsets.iter().any(|&o| o != 0) {
        let negative = build.offsets.iter().any(|&o| o < 0);
        let at = open_full(&mut out, b"ctts", u8::from(negative), 0);
        let ctts = runs(&build.offsets);
        out.u32(ctts.len() as u32);
        for (count, offset) in ctts {
            out.u32(count);
            out.extend_from_slice(&offset.to_be_bytes());
        }
        close(&mut out, at);
    }
    if build.syncs.len() < build.sizes.len() {
        let at = open_full(&mut out, b"stss", 0, 0);
        out.u32(build.syncs.len() as u32);
        for &n in &build.syncs {
            out.u32(n);
        }
        close(&mut out, at);
    }
    let at = open_full(&mut out, b"stsz", 0, 0);
    out.u32(0); // sample_size: each given
    out.u32(build.sizes.len() as u32);
    for &size in &build.sizes {
        out.u32(size);
    }
    close(&mut out, at);
    let at = open_full(&mut out, b"stsc", 0, 0);
    let count_at = out.len();
    out.u32(0);
    let mut entries = 0u32;
    let mut previous = None;
    for (chunk, &(_, count, entry)) in build.chunks.iter().enumerate() {
        if previous != Some((count, entry)) {
            out.u32(chunk as u32 + 1);
            out.u32(count);
            out.u32(entry);
            entries += 1;
            previous = Some((count, entry));
        }
    }
    out[count_at..count_at + 4].copy_from_slice(&entries.to_be_bytes());
    close(&mut out, at);
    let at = open_full(&mut out, if wide { b"co64" } else { b"stco" }, 0, 0);
    out.u32(build.chunks.len() as u32);
    for &(piece, _, _) in &build.chunks {
        let offset = base + pieces[piece].at;
        if wide {
            out.u64(offset);
        } else {
            out.u32(offset as u32);
        }
    }
    close(&mut out, at);
    out
}

/// Run-length pairs (count, value).
fn runs<T: Copy + PartialEq>(values: &[T]) -> Vec<(u32, T)> {
    let mut out: Vec<(u32, T)> = Vec::new();
    for &v in values {
        match out.last_mut() {
            Some((count, last)) if *last == v => *count += 1,
            _ => out.push((1, v)),
        }
    }
    out
}

#[cfg(test)]
mod tests;
