//! Time in fMP4: every sample placed on the tape's clock, in integers.
//!
//! **The tape's clock** counts 90 kHz ticks since the Unix epoch. Within a
//! continuous run of a recording the segmenter stamps wall-clock time as
//! `utc = anchor_utc + (pts - anchor_pts) / 90` ([`crate::wallclock`]), so a
//! PTS is at tape time `anchor_utc × 90 + pts − anchor_pts`, exactly, with
//! no millisecond rounding: [`TapeClock`]. The anchor of a run is the first
//! segment of that run (its `utc_start` and `pts_start`); a caller that
//! anchors on each segment's own `utc_start` instead gets the same result to
//! within a millisecond, but consecutive segments then need not join to the
//! tick.
//!
//! **Timescales.** Video uses 90 kHz, the clock of its timestamps, so its
//! `tfdt` *is* the tape time. Audio uses its sample rate, so that every AAC
//! sample lasts exactly 1024 and every AC-3 sample 1536; its `tfdt` is the
//! tape time of its first frame converted with [`to_timescale`]
//! (`⌊tape × rate / 90000⌋`). The conversion is taken afresh from each
//! segment's own timestamps, so nothing accumulates: there is no drift. At
//! 48, 32, 24, 16 or 96 kHz an audio frame is a whole number of 90 kHz
//! ticks, and consecutive segments join exactly; at 44.1 kHz and its
//! multiples the multiplexer rounded each PTS to a tick, and a join can be
//! off by one sample (23 µs).
//!
//! **Decode times.** `trun` version 1 carries signed composition offsets, so
//! decode times can be shifted by a constant `K` per segment to make the
//! first sample's presentation time equal its decode time, i.e. `tfdt`:
//! `K` is `pts − dts` of the segment's first sync sample (a segment from the
//! segmenter starts with one). Decode time `i` is `dts_i + K`, kept strictly
//! increasing; each sample's composition offset is its `pts` minus that.
//! Presentation times are therefore exactly the stream's PTS on the tape.
//!
//! **Durations.** A sample lasts until the next one's decode time. The last
//! sample of the track that cut the segment (the primary video) lasts until
//! the segment's end, `pts_start + duration`, which is where the next
//! segment's `tfdt` is: so for that track `tfdt + duration` of one segment is
//! the next segment's `tfdt`, to the tick. Another video track's last sample
//! lasts as long as its previous one (its frame duration); an audio track's
//! last sample lasts one codec frame (1024 or 1536 samples), so audio kept
//! whole across a video cut starts and ends where its own frames do.

use dvr_common::time::TICKS_PER_SEC;
use dvr_common::{Ticks, UtcMs};

use crate::segment::SegmentMeta;

use super::boxes::{TrunSample, NON_SYNC_SAMPLE, SYNC_SAMPLE};

/// Maps a recording's PTS to the tape's clock (90 kHz ticks since the Unix
/// epoch): `anchor_utc × 90 + pts − anchor_pts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TapeClock {
    /// Wall-clock time of the run's anchor.
    pub anchor_utc: UtcMs,
    /// Unwrapped PTS at the anchor.
    pub anchor_pts: Ticks,
}

impl TapeClock {
    /// A clock anchored at `anchor_pts` = `anchor_utc`.
    pub fn new(anchor_utc: UtcMs, anchor_pts: Ticks) -> Self {
        Self {
            anchor_utc,
            anchor_pts,
        }
    }

    /// The clock of the continuous run that starts with `first` (the
    /// segmenter anchors a run at its first segment).
    pub fn of_run(first: &SegmentMeta) -> Self {
        Self::new(first.utc_start, first.pts_start)
    }

    /// Tape time of an unwrapped PTS.
    pub fn tape_time(&self, pts: Ticks) -> Ticks {
        Ticks(self.offset() + pts.0)
    }

    /// Tape time minus PTS.
    pub(crate) fn offset(&self) -> i64 {
        self.anchor_utc.0 * dvr_common::time::TICKS_PER_MS - self.anchor_pts.0
    }
}

/// What the fMP4 writer must know about a stored segment besides its bytes.
/// All of it comes from the tape (the segment index), so every replica
/// writes the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SegmentTiming {
    /// The run's clock.
    pub clock: TapeClock,
    /// The segment's `seq`; its low 32 bits are the `mfhd` sequence number.
    pub seq: u64,
    /// The segment's `pts_start` (unwrapped, as the index has it).
    pub pts_start: Ticks,
    /// The segment's duration: where it ends, and the next one begins.
    pub duration: Ticks,
}

impl SegmentTiming {
    /// The timing of `segment`, in the run that starts with `run_start`.
    pub fn new(run_start: &SegmentMeta, segment: &SegmentMeta) -> Self {
        Self {
            clock: TapeClock::of_run(run_start),
            seq: segment.seq,
            pts_start: segment.pts_start,
            duration: segment.duration,
        }
    }

    /// Tape time where the segment starts.
    pub fn tape_start(&self) -> Ticks {
        self.clock.tape_time(self.pts_start)
    }

    /// Tape time where the segment ends.
    pub fn tape_end(&self) -> Ticks {
        self.tape_start() + self.duration
    }

    /// The `mfhd` sequence number: the low 32 bits of `seq`.
    pub(crate) fn sequence_number(&self) -> u32 {
        (self.seq & 0xffff_ffff) as u32
    }
}

/// A tape time (90 kHz) in units of `timescale`, rounded down. Video tracks
/// use 90 kHz, where this is the identity; audio tracks use their sample
/// rate. The DASH `SegmentTimeline` of an audio track counts in these units.
pub fn to_timescale(tape: Ticks, timescale: u32) -> i64 {
    let scaled = i128::from(tape.0) * i128::from(timescale);
    i64::try_from(scaled.div_euclid(i128::from(TICKS_PER_SEC))).unwrap_or(i64::MAX)
}

/// A track's place on the tape, in its timescale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TrackTimes {
    /// The first sample's decode time (`tfdt`).
    pub base_decode_time: i64,
    /// The earliest presentation time of any sample.
    pub earliest_presentation_time: i64,
    /// The sum of the sample durations.
    pub duration: i64,
}

/// Decode and presentation time of a video sample on the tape, 90 kHz.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VideoStamp {
    pub dts: i64,
    pub pts: i64,
    pub sync: bool,
}

/// Why samples cannot be timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimingError {
    /// A duration beyond `u32` or a composition offset beyond `i32`.
    OutOfRange,
}

/// Fills durations, flags and composition offsets of `trun` (one per stamp)
/// by the rules in the module doc. `end` is the segment's end for the
/// track that cut it; `frame` the duration to assume when nothing else says.
pub(crate) fn video(
    stamps: &[VideoStamp],
    end: Option<i64>,
    frame: i64,
    trun: &mut [TrunSample],
) -> Result<TrackTimes, TimingError> {
    let Some(first) = stamps.first() else {
        return Ok(TrackTimes {
            base_decode_time: 0,
            earliest_presentation_time: 0,
            duration: 0,
        });
    };
    let key = stamps.iter().find(|s| s.sync).unwrap_or(first);
    let shift = key.pts - key.dts;
    let base = first.dts + shift;
    let mut decode = base;
    let mut earliest = first.pts;
    let mut last_step = frame.max(1);
    for (i, stamp) in stamps.iter().enumerate() {
        earliest = earliest.min(stamp.pts);
        let next = match stamps.get(i + 1) {
            Some(next) => (next.dts + shift).max(decode + 1),
            None => end
                .filter(|&end| end > decode)
                .unwrap_or(decode + last_step),
        };
        let duration = next - decode;
        if i + 1 < stamps.len() {
            last_step = duration;
        }
        trun[i] = TrunSample {
            duration: u32::try_from(duration).map_err(|_| TimingError::OutOfRange)?,
            size: trun[i].size,
            flags: if stamp.sync {
                SYNC_SAMPLE
            } else {
                NON_SYNC_SAMPLE
            },
            composition_offset: i32::try_from(stamp.pts - decode)
                .map_err(|_| TimingError::OutOfRange)?,
        };
        decode = next;
    }
    Ok(TrackTimes {
        base_decode_time: base,
        earliest_presentation_time: earliest,
        duration: decode - base,
    })
}

/// Fills the durations of `trun` from audio sample positions (in the
/// track's timescale, strictly increasing); the last sample lasts `frame`.
pub(crate) fn audio(
    positions: &[i64],
    frame: u32,
    trun: &mut [TrunSample],
) -> Result<TrackTimes, TimingError> {
    let Some(&base) = positions.first() else {
        return Ok(TrackTimes {
            base_decode_time: 0,
            earliest_presentation_time: 0,
            duration: 0,
        });
    };
    let mut end = base;
    for (i, &at) in positions.iter().enumerate() {
        let next = positions
            .get(i + 1)
            .copied()
            .unwrap_or(at + i64::from(frame));
        trun[i].duration = u32::try_from(next - at).map_err(|_| TimingError::OutOfRange)?;
        trun[i].flags = SYNC_SAMPLE;
        end = next;
    }
    Ok(TrackTimes {
        base_decode_time: base,
        earliest_presentation_time: base,
        duration: end - base,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn stamp(dts: i64, pts: i64, sync: bool) -> VideoStamp {
        VideoStamp { dts, pts, sync }
    }

    #[test]
    fn tape_time_is_exact_where_utc_rounds() {
        let clock = TapeClock::new(UtcMs(1_000), Ticks(500));
        assert_eq!(clock.tape_time(Ticks(500)), Ticks(90_000));
        // 3003 ticks (one 29.97 fps frame) later: 33.3 ms, kept to the tick.
        assert_eq!(clock.tape_time(Ticks(3503)), Ticks(93_003));
    }

    #[test]
    fn audio_timescale_conversion_rounds_down() {
        assert_eq!(to_timescale(Ticks(90_000), 48_000), 48_000);
        assert_eq!(to_timescale(Ticks(1920), 48_000), 1024);
        assert_eq!(to_timescale(Ticks(1), 44_100), 0);
        assert_eq!(to_timescale(Ticks(-1), 48_000), -1);
        assert_eq!(
            to_timescale(Ticks(1_795_000_000_000 * 90), 96_000),
            1_795_000_000_000 * 96
        );
    }

    #[test]
    fn b_frames_present_at_their_pts_and_the_first_at_tfdt() {
        // I P B B at 25 fps with two frames of reordering delay.
        let stamps = [
            stamp(0, 7200, true),
            stamp(3600, 18000, false),
            stamp(7200, 10800, false),
            stamp(10800, 14400, false),
        ];
        let mut trun = [TrunSample::default(); 4];
        let times = video(&stamps, Some(7200 + 14400), 3600, &mut trun).unwrap();
        assert_eq!(times.base_decode_time, 7200, "tfdt = the keyframe's PTS");
        assert_eq!(times.earliest_presentation_time, 7200);
        assert_eq!(times.duration, 14400, "ends where the segment does");
        let mut decode = times.base_decode_time;
        for (s, t) in stamps.iter().zip(&trun) {
            assert_eq!(decode + i64::from(t.composition_offset), s.pts);
            decode += i64::from(t.duration);
        }
        assert_eq!(trun[0].composition_offset, 0);
        assert_eq!(trun[2].composition_offset, -3600, "signed offsets");
        assert_eq!(trun[0].flags, SYNC_SAMPLE);
        assert_eq!(trun[1].flags, NON_SYNC_SAMPLE);
    }

    #[test]
    fn last_sample_without_an_end_lasts_as_long_as_the_one_before() {
        let stamps = [stamp(0, 0, true), stamp(3003, 3003, false)];
        let mut trun = [TrunSample::default(); 2];
        let times = video(&stamps, None, 3600, &mut trun).unwrap();
        assert_eq!(times.duration, 6006);
        // An end before the last sample is not believed either.
        let times = video(&stamps, Some(3003), 3600, &mut trun).unwrap();
        assert_eq!(times.duration, 6006);
        let one = [stamp(0, 0, true)];
        let times = video(&one, None, 3600, &mut trun[..1]).unwrap();
        assert_eq!(
            times.duration, 3600,
            "one sample: the frame rate's duration"
        );
    }

    #[test]
    fn decode_times_only_grow() {
        let stamps = [
            stamp(0, 0, true),
            stamp(0, 3600, false),
            stamp(-100, 7200, false),
        ];
        let mut trun = [TrunSample::default(); 3];
        video(&stamps, None, 3600, &mut trun).unwrap();
        assert!(trun.iter().all(|t| t.duration >= 1));
    }

    #[test]
    fn audio_durations_follow_positions_and_the_last_is_one_frame() {
        let mut trun = [TrunSample::default(); 3];
        let times = audio(&[100, 1124, 3172], 1024, &mut trun).unwrap();
        let durations: Vec<u32> = trun.iter().map(|t| t.duration).collect();
        assert_eq!(durations, [1024, 2048, 1024]);
        assert_eq!((times.base_decode_time, times.duration), (100, 4096));
    }

    proptest! {
        /// Segments cut from one stream at its keyframes join exactly:
        /// each one's tfdt + duration is the next one's tfdt, and every
        /// sample is presented at its PTS.
        #[test]
        fn consecutive_segments_tile_the_tape(
            gops in proptest::collection::vec((1usize..30, 0i64..3), 1..6),
            start in 0i64..1 << 40,
        ) {
            // Each GOP: a keyframe and P frames, decoded `delay` frames
            // before they are shown (a constant reorder delay).
            let frame = 3600;
            let mut segments = Vec::new();
            let mut n = 0i64;
            for (len, delay) in &gops {
                let stamps: Vec<VideoStamp> = (0..*len as i64)
                    .map(|i| {
                        let pts = start + (n + i) * frame;
                        stamp(pts - delay * frame, pts, i == 0)
                    })
                    .collect();
                n += *len as i64;
                segments.push(stamps);
            }
            let mut previous_end = None;
            for (i, stamps) in segments.iter().enumerate() {
                let end = segments.get(i + 1).map(|next| next[0].pts);
                let mut trun = vec![TrunSample::default(); stamps.len()];
                let times = video(stamps, end, frame, &mut trun).unwrap();
                prop_assert_eq!(times.base_decode_time, stamps[0].pts);
                if let Some(previous_end) = previous_end {
                    prop_assert_eq!(times.base_decode_time, previous_end);
                }
                previous_end = Some(times.base_decode_time + times.duration);
                let mut decode = times.base_decode_time;
                for (s, t) in stamps.iter().zip(&trun) {
                    prop_assert_eq!(decode + i64::from(t.composition_offset), s.pts);
                    decode += i64::from(t.duration);
                }
            }
        }
    }
}
