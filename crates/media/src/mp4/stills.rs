//! Keyframes alone: `archive-FROM-DUR.mp4?timelapse[=N]` and the one-frame
//! `…/SS-preview.mp4`.
//!
//! A keyframe decodes without any other picture, so a file of keyframes
//! only needs no decoding or re-encoding: each is a sample of its own
//! chunk, its bytes the same converted bytes a whole export carries
//! ([`crate::fmp4::Track::data`]), found from the sample tables before any
//! media is read. So a timelapse has the export's exact `Content-Length`
//! and `Range` mapping, and reads only the segments whose keyframes it
//! shows (and of those, only the keyframes' bytes go out).
//!
//! **Time** ([`Pace`]): `Recorded` shows each keyframe until the next one
//! (the last until the window's end), so the file lasts as long as the
//! range and a seek lands where the tape has that picture; `Fit(T)` gives
//! every keyframe the same share of `T` (integer ticks, spread so the
//! shares add up to `T` exactly). Every sample is a sync sample with no
//! composition offset: pictures are shown in the order they were recorded.
//! Only the video track is kept; audio would not match the pictures.

use std::ops::Range;

use dvr_common::Ticks;

use super::{
    for_each_sample, Build, Layout, Movie, Mp4Error, Piece, SegmentTables, MOVIE_TIMESCALE,
};
use crate::codec::TrackKind;

/// The most keyframes one file of stills holds: a moov entry is ~20 bytes,
/// so this caps the `moov` near 2 MB (a 3-hour range at one keyframe a
/// second is 10,800).
pub const MAX_STILLS: usize = 100_000;

/// A keyframe on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keyframe {
    /// Index into the segments it was found in.
    pub segment: usize,
    /// Its sample index in that segment's track.
    pub sample: usize,
    /// Tape time it is presented at (90 kHz ticks since the epoch).
    pub presentation: Ticks,
    /// How long its picture lasts in the stream (90 kHz).
    pub duration: Ticks,
}

/// How long each still is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Until the next keyframe; the last until the given tape time, or
    /// the end of the track's last picture when that is earlier.
    Recorded(Ticks),
    /// All of them within this total time, in equal shares.
    Fit(Ticks),
}

/// The first video track (90 kHz) of `segments` among `tracks` (all when
/// `None`).
pub fn first_video(segments: &[SegmentTables<'_>], tracks: Option<&[usize]>) -> Option<usize> {
    let mut numbers: Vec<usize> = segments
        .iter()
        .flat_map(|s| s.table.tracks.iter())
        .filter(|t| t.kind == TrackKind::Video && t.timescale == MOVIE_TIMESCALE)
        .map(|t| usize::from(t.number))
        .filter(|n| tracks.is_none_or(|asked| asked.contains(n)))
        .collect();
    numbers.sort_unstable();
    numbers.first().copied()
}

/// The keyframes of video track `number` presented in `window`, in decode
/// order.
pub fn keyframes(
    segments: &[SegmentTables<'_>],
    number: usize,
    window: Range<Ticks>,
) -> Vec<Keyframe> {
    let mut out = Vec::new();
    for_each_sample(segments, number, |segment, sample, presentation, s| {
        if s.sync && window.contains(&Ticks(presentation)) {
            out.push(Keyframe {
                segment,
                sample,
                presentation: Ticks(presentation),
                duration: Ticks(i64::from(s.duration)),
            });
        }
    });
    out
}

impl Layout {
    /// A file of `frames` (keyframes of video track `number`, from
    /// [`keyframes`]) alone, each shown as `pace` says. At most
    /// [`MAX_STILLS`] frames (the caller thins them).
    pub fn stills(
        segments: &[SegmentTables<'_>],
        number: usize,
        frames: &[Keyframe],
        pace: Pace,
    ) -> Result<Layout, Mp4Error> {
        let first = frames.first().ok_or(Mp4Error::Empty)?;
        let frames = &frames[..frames.len().min(MAX_STILLS)];
        let track = segments[first.segment]
            .table
            .track(number)
            .ok_or(Mp4Error::NoSuchTrack(number))?;
        let mut build = Build {
            number,
            kind: track.kind,
            timescale: track.timescale,
            size: (track.width, track.height),
            language: track.language,
            entries: Vec::new(),
            durations: Vec::with_capacity(frames.len()),
            sizes: Vec::with_capacity(frames.len()),
            offsets: Vec::with_capacity(frames.len()),
            syncs: Vec::with_capacity(frames.len()),
            chunks: Vec::with_capacity(frames.len()),
            first_decode: Some(first.presentation.0),
            first_presentation: first.presentation.0,
            next_decode: first.presentation.0,
        };
        // Recorded pace: the last keyframe lasts until the end, or until
        // the track's last picture ends when the tape stops first.
        let pace = match pace {
            Pace::Recorded(end) => {
                let mut track_end = first.presentation.0;
                for_each_sample(segments, number, |_, _, presentation, s| {
                    track_end = track_end.max(presentation + i64::from(s.duration));
                });
                Pace::Recorded(Ticks(end.0.min(track_end)))
            }
            fit => fit,
        };
        let mut pieces = Vec::with_capacity(frames.len());
        let count = frames.len() as i64;
        for (i, frame) in frames.iter().enumerate() {
            let Some(track) = segments[frame.segment].table.track(number) else {
                continue;
            };
            let Some(sample) = track.samples.get(frame.sample) else {
                continue;
            };
            let before: u64 = track.samples[..frame.sample]
                .iter()
                .map(|s| u64::from(s.size))
                .sum();
            let duration = match pace {
                Pace::Recorded(end) => {
                    let until = frames.get(i + 1).map_or(end.0, |next| next.presentation.0);
                    until - frame.presentation.0
                }
                Pace::Fit(total) => {
                    let share = |k: i64| i128::from(total.0) * i128::from(k) / i128::from(count);
                    (share(i as i64 + 1) - share(i as i64)) as i64
                }
            };
            let entry = match build.entries.iter().position(|e| *e == track.sample_entry) {
                Some(at) => at,
                None => {
                    build.entries.push(track.sample_entry.clone());
                    build.entries.len() - 1
                }
            };
            build
                .durations
                .push(u32::try_from(duration.max(1)).unwrap_or(u32::MAX));
            build.sizes.push(sample.size);
            build.offsets.push(0);
            build.syncs.push(build.sizes.len() as u32);
            build.chunks.push((pieces.len(), 1, entry as u32 + 1));
            pieces.push(Piece {
                segment: frame.segment,
                track: number,
                data: before..before + u64::from(sample.size),
                at: 0,
            });
        }
        if build.sizes.is_empty() {
            return Err(Mp4Error::Empty);
        }
        let total: u64 = build.durations.iter().map(|&d| u64::from(d)).sum();
        let movie = Movie {
            start: first.presentation.0,
            duration: total,
            edits: vec![vec![(total, 0)]],
            media: vec![total],
        };
        Ok(Self::finish(&[build], pieces, &movie, &[]))
    }
}
