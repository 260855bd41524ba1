//! One pass over a stored segment: access units in, each track's samples
//! and sample entry out.
//!
//! Bytes are copied twice on the way, from TS payloads into the demuxer's
//! PES buffer and from there, reframed, into the track's sample data; the
//! media segment copies them once more behind its headers. Nothing is
//! allocated per sample: each track has one data buffer and one table of
//! stamps, grown as needed. The data buffers may come from a caller's
//! spares ([`Fragments::from_ts_reusing`]): a buffer written before is
//! already mapped, where a fresh one costs a page fault per 4 KiB.

use std::sync::Arc;

use dvr_common::Ticks;

use crate::codec::aac::{self, AdtsHeader};
use crate::codec::ac3::{self, SyncFrame};
use crate::codec::nal::NalUnits;
use crate::codec::{h264, h265, AudioParams, Codec, TrackKind, VideoParams};
use crate::demux::{AccessUnit, DemuxEvent, Demuxer};
use crate::psi::Program;
use crate::timestamp::WRAP;

use super::boxes::{self, TrakSpec, TrunSample};
use super::timing::{self, to_timescale, SegmentTiming, TimingError, VideoStamp};
use super::{track_init, Fmp4Error, Fragments, InitId, LeftOut, Track};

/// At most this many distinct parameter sets of one kind go into a sample
/// entry; a stream that sends more is broken, and the rest stay in-band.
const MAX_PARAMETER_SETS: usize = 16;

/// 90 kHz ticks of a video frame when neither the samples nor the SPS say.
const DEFAULT_FRAME_TICKS: i64 = 3600;

/// Reads `ts` and returns its tracks, timed by `timing`.
pub(super) fn collect(
    ts: &[u8],
    timing: &SegmentTiming,
    select: Option<&[usize]>,
    spare: &mut Vec<Vec<u8>>,
) -> Result<Fragments, Fmp4Error> {
    // Box sizes are 32-bit; a stored segment is a few MiB at most.
    if ts.len() > (u32::MAX / 2) as usize {
        return Err(Fmp4Error::TooLarge { bytes: ts.len() });
    }
    // Track numbers are PMT positions, so the demuxer can skip the other
    // streams from the first packet on, before the PMT is read.
    let wanted: Option<Vec<usize>> =
        select.map(|numbers| numbers.iter().map(|n| n.wrapping_sub(1)).collect());
    let mut demuxer = Demuxer::new(None);
    if let Some(wanted) = &wanted {
        demuxer = demuxer.only_streams(wanted);
    }
    let mut collector = Collector {
        timing,
        select,
        shift: None,
        size_hint: ts.len(),
        spare,
        program: None,
        error: None,
        slots: Vec::new(),
        builders: Vec::new(),
    };
    let mut on_event = |event: DemuxEvent<'_>| match event {
        DemuxEvent::Program(p) => collector.program(&p),
        DemuxEvent::AccessUnit(au) => collector.access_unit(&au),
        DemuxEvent::Pcr(_) => {}
    };
    demuxer.push(ts, &mut on_event);
    demuxer.finish(&mut on_event);
    collector.finish()
}

/// State of the pass.
struct Collector<'t> {
    timing: &'t SegmentTiming,
    /// The track numbers asked for; all when `None`.
    select: Option<&'t [usize]>,
    /// Demuxed ticks to tape ticks: the 2^33 periods the demuxer could not
    /// know (it starts afresh on each segment) plus the clock's offset.
    shift: Option<i64>,
    size_hint: usize,
    /// Emptied buffers to hold the tracks' data, taken before allocating.
    spare: &'t mut Vec<Vec<u8>>,
    /// The segment's (first) program.
    program: Option<Arc<Program>>,
    /// A track number asked for that the program does not have.
    error: Option<Fmp4Error>,
    /// Builder index of each stream of the current program.
    slots: Vec<Option<usize>>,
    builders: Vec<Builder>,
}

impl Collector<'_> {
    /// The first program sets up a builder per asked track. A new PMT
    /// inside the segment keeps each stream's builder by PID; streams that
    /// were not in the first PMT are not written.
    fn program(&mut self, program: &Arc<Program>) {
        if let Some(first) = &self.program {
            if **program != **first {
                self.slots = program
                    .streams
                    .iter()
                    .map(|s| {
                        self.builders
                            .iter()
                            .position(|b| b.pid == s.pid && b.codec == s.codec)
                    })
                    .collect();
            }
            return;
        }
        self.program = Some(Arc::clone(program));
        let count = program.streams.len();
        if let Some(&asked) = self
            .select
            .and_then(|numbers| numbers.iter().find(|&&n| n == 0 || n > count))
        {
            self.error = Some(Fmp4Error::NoSuchTrack { asked, count });
            return;
        }
        let video_share = self.size_hint;
        let audio_share = self.size_hint / 4;
        for (index, stream) in program.streams.iter().enumerate() {
            if self
                .select
                .is_some_and(|numbers| !numbers.contains(&(index + 1)))
            {
                self.slots.push(None);
                continue;
            }
            let mut buffer = |capacity: usize| {
                let mut buffer = self.spare.pop().unwrap_or_default();
                buffer.clear();
                buffer.reserve(capacity);
                buffer
            };
            let kind = match stream.codec {
                codec if !super::carries(codec) => Kind::Unsupported,
                Codec::H264 | Codec::H265 => {
                    Kind::Video(VideoBuilder::new(stream.codec, buffer(video_share)))
                }
                Codec::Aac => Kind::Audio(AudioBuilder::new(Family::Aac, buffer(audio_share))),
                Codec::Ac3 | Codec::Eac3 => {
                    Kind::Audio(AudioBuilder::new(Family::Dolby, buffer(audio_share)))
                }
                _ => Kind::Unsupported,
            };
            self.slots.push(Some(self.builders.len()));
            self.builders.push(Builder {
                number: index + 1,
                pid: stream.pid,
                codec: stream.codec,
                language: stream.language.clone(),
                primary: program.primary_stream() == Some(index),
                kind,
            });
        }
    }

    fn access_unit(&mut self, au: &AccessUnit<'_>) {
        let Some(&Some(slot)) = self.slots.get(au.stream) else {
            return;
        };
        let shift = match (self.shift, au.dts.or(au.pts)) {
            (Some(shift), _) => shift,
            (None, Some(first)) => {
                // The demuxer unwrapped from this segment's first timestamp;
                // the index unwrapped from the tape's. Both are within
                // seconds of pts_start, so the difference rounds to a whole
                // number of 2^33 periods.
                let periods = (self.timing.pts_start.0 - first.0 + WRAP / 2).div_euclid(WRAP);
                let shift = periods * WRAP + self.timing.clock.offset();
                self.shift = Some(shift);
                shift
            }
            (None, None) => return, // nothing can be placed before a timestamp
        };
        let builder = &mut self.builders[slot];
        match &mut builder.kind {
            Kind::Video(video) => video.push(au, shift),
            Kind::Audio(audio) => audio.push(au, shift),
            Kind::Unsupported => {}
        }
    }

    fn finish(self) -> Result<Fragments, Fmp4Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let program = self.program.ok_or(Fmp4Error::NoProgram)?;
        let end = self.timing.tape_end().0;
        let sequence_number = self.timing.sequence_number();
        let mut tracks = Vec::new();
        let mut left_out = Vec::new();
        for builder in self.builders {
            let (number, pid) = (builder.number, builder.pid);
            let codec = program
                .streams
                .get(number - 1)
                .map_or(builder.codec, |s| s.codec);
            match builder.finish(end, sequence_number) {
                Ok(track) => tracks.push(track),
                Err(reason) => left_out.push(LeftOut {
                    number,
                    pid,
                    codec,
                    reason,
                }),
            }
        }
        Ok(Fragments {
            tracks,
            left_out,
            sequence_number,
        })
    }
}

/// One track being gathered.
struct Builder {
    number: usize,
    pid: u16,
    codec: Codec,
    language: Option<String>,
    /// The stream the segmenter cut at: its last sample ends at the
    /// segment's end.
    primary: bool,
    kind: Kind,
}

enum Kind {
    Video(VideoBuilder),
    Audio(AudioBuilder),
    Unsupported,
}

/// What a finished builder hands to [`Track`].
struct Parts {
    codec: Codec,
    codec_string: String,
    video: Option<VideoParams>,
    audio: Option<AudioParams>,
    timescale: u32,
    sample_entry: Vec<u8>,
    trun: Vec<TrunSample>,
    times: timing::TrackTimes,
    sap_type: u8,
    data: Vec<u8>,
}

impl Builder {
    fn finish(self, end: i64, sequence_number: u32) -> Result<Track, Fmp4Error> {
        let (track, pid, codec) = (self.number, self.pid, self.codec);
        let bad = |what| Fmp4Error::BadStream {
            track,
            pid,
            codec,
            what,
        };
        let parts = match self.kind {
            Kind::Unsupported => {
                return Err(Fmp4Error::UnsupportedCodec { track, pid, codec });
            }
            Kind::Video(video) => video.finish(self.primary.then_some(end)),
            Kind::Audio(audio) => audio.finish(),
        }
        .map_err(|e| match e {
            Missing::Samples => Fmp4Error::NoSamples { track, pid, codec },
            Missing::ParameterSets(what) => Fmp4Error::NoParameterSets {
                track,
                pid,
                codec,
                what,
            },
            Missing::Bad(what) => bad(what),
        })?;
        let non_negative = |v: i64| u64::try_from(v).map_err(|_| bad("a timestamp before 1970"));
        let trak = TrakSpec {
            track_id: u32::try_from(track).unwrap_or(u32::MAX),
            timescale: parts.timescale,
            video_size: parts.video.as_ref().map(|v| (v.width, v.height)),
            language: super::mp4_language(self.language.as_deref()),
            sample_entry: &parts.sample_entry,
        };
        let init = track_init(&trak);
        Ok(Track {
            number: track,
            pid,
            codec: parts.codec,
            kind: if parts.video.is_some() {
                TrackKind::Video
            } else {
                TrackKind::Audio
            },
            language: self.language,
            codec_string: parts.codec_string,
            video: parts.video,
            audio: parts.audio,
            timescale: parts.timescale,
            base_decode_time: non_negative(parts.times.base_decode_time)?,
            earliest_presentation_time: non_negative(parts.times.earliest_presentation_time)?,
            duration: non_negative(parts.times.duration)?,
            sample_count: parts.trun.len(),
            sap_type: parts.sap_type,
            init_id: InitId::of(&init),
            init,
            sample_entry: parts.sample_entry,
            trun: parts.trun,
            data: parts.data,
            sequence_number,
        })
    }
}

/// Why a builder produced no track.
enum Missing {
    Samples,
    ParameterSets(&'static str),
    Bad(&'static str),
}

impl From<TimingError> for Missing {
    fn from(e: TimingError) -> Self {
        match e {
            TimingError::OutOfRange => {
                Missing::Bad("timestamps too far apart for an MP4 sample table")
            }
        }
    }
}

/// Parameter sets in first-seen order, without duplicates.
#[derive(Debug, Default)]
struct ParameterSets {
    vps: Vec<Vec<u8>>,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
}

impl ParameterSets {
    fn add(list: &mut Vec<Vec<u8>>, nal: &[u8]) {
        if list.len() < MAX_PARAMETER_SETS && !list.iter().any(|s| s == nal) {
            list.push(nal.to_vec());
        }
    }

    fn complete(&self, h265: bool) -> bool {
        !self.sps.is_empty() && !self.pps.is_empty() && (!h265 || !self.vps.is_empty())
    }

    fn holds(&self, nal: &[u8]) -> bool {
        [&self.vps, &self.sps, &self.pps]
            .iter()
            .any(|list| list.iter().any(|s| s == nal))
    }
}

/// What a NAL unit is to the writer.
enum NalRole {
    /// Access unit delimiter or filler data: not written.
    Drop,
    /// A parameter set: 0 VPS, 1 SPS, 2 PPS.
    ParameterSet(usize),
    /// Everything else: written as it is.
    Keep,
}

fn nal_role(h265: bool, nal: &[u8]) -> NalRole {
    let Some(&header) = nal.first() else {
        return NalRole::Drop;
    };
    if h265 {
        match (header >> 1) & 0x3f {
            32 => NalRole::ParameterSet(0),
            33 => NalRole::ParameterSet(1),
            34 => NalRole::ParameterSet(2),
            35 | 38 => NalRole::Drop,
            _ => NalRole::Keep,
        }
    } else {
        match header & 0x1f {
            7 => NalRole::ParameterSet(1),
            8 => NalRole::ParameterSet(2),
            9 | 12 => NalRole::Drop,
            _ => NalRole::Keep,
        }
    }
}

/// An H.264 or H.265 track.
struct VideoBuilder {
    h265: bool,
    data: Vec<u8>,
    stamps: Vec<VideoStamp>,
    sizes: Vec<u32>,
    /// Parameter sets seen while the sample entry's are not complete yet.
    pending: ParameterSets,
    /// The sample entry's parameter sets.
    params: Option<ParameterSets>,
}

impl VideoBuilder {
    /// A track writing its samples into `data` (empty).
    fn new(codec: Codec, data: Vec<u8>) -> Self {
        Self {
            h265: codec == Codec::H265,
            data,
            stamps: Vec::with_capacity(256),
            sizes: Vec::with_capacity(256),
            pending: ParameterSets::default(),
            params: None,
        }
    }

    fn push(&mut self, au: &AccessUnit<'_>, shift: i64) {
        let start = self.data.len();
        self.write_nal_units(au.data);
        if self.params.is_none() && self.pending.complete(self.h265) {
            self.params = Some(std::mem::take(&mut self.pending));
        }
        let size = self.data.len() - start;
        let Some(pts) = au.pts else {
            // A PES without a timestamp continues the access unit before it.
            match self.sizes.last_mut() {
                Some(last) => *last += u32::try_from(size).unwrap_or(0),
                None => self.data.truncate(start),
            }
            return;
        };
        if size == 0 {
            return;
        }
        let dts = au.dts.unwrap_or(pts);
        self.stamps.push(VideoStamp {
            dts: dts.0 + shift,
            pts: pts.0 + shift,
            sync: au.random_access,
        });
        self.sizes.push(u32::try_from(size).unwrap_or(u32::MAX));
    }

    /// Annex B to 4-byte length prefixes, dropping what the sample entry
    /// holds and what MP4 does not want.
    fn write_nal_units(&mut self, es: &[u8]) {
        for nal in NalUnits::new(es) {
            match nal_role(self.h265, nal) {
                NalRole::Drop => continue,
                NalRole::ParameterSet(kind) => match &self.params {
                    Some(params) if params.holds(nal) => continue,
                    Some(_) => {}
                    None => {
                        let list = match kind {
                            0 => &mut self.pending.vps,
                            1 => &mut self.pending.sps,
                            _ => &mut self.pending.pps,
                        };
                        ParameterSets::add(list, nal);
                        continue;
                    }
                },
                NalRole::Keep => {}
            }
            let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
            self.data.extend_from_slice(&len.to_be_bytes());
            self.data.extend_from_slice(nal);
        }
    }

    fn finish(self, end: Option<i64>) -> Result<Parts, Missing> {
        let what = if self.h265 {
            "VPS, SPS and PPS"
        } else {
            "SPS and PPS"
        };
        if self.stamps.is_empty() {
            return Err(Missing::Samples);
        }
        let params = self.params.ok_or(Missing::ParameterSets(what))?;
        let sps = params.sps[0].as_slice();
        let mut sample_entry = Vec::with_capacity(256);
        let video = if self.h265 {
            let (video, format) =
                h265::parse_sps_format(sps).ok_or(Missing::Bad("its SPS does not parse"))?;
            let (vps, sps, pps) = (
                slices(&params.vps),
                slices(&params.sps),
                slices(&params.pps),
            );
            boxes::hvc1(
                &mut sample_entry,
                (video.width, video.height),
                [(32, &vps), (33, &sps), (34, &pps)],
                &format,
            );
            video
        } else {
            let (video, format) =
                h264::parse_sps_format(sps).ok_or(Missing::Bad("its SPS does not parse"))?;
            let (sps, pps) = (slices(&params.sps), slices(&params.pps));
            boxes::avc1(
                &mut sample_entry,
                (video.width, video.height),
                &sps,
                &pps,
                &format,
            );
            video
        };
        let frame = video
            .frame_rate
            .and_then(|r| {
                let ticks = 90_000 * i64::from(r.den) / i64::from(r.num);
                (ticks > 0).then_some(ticks)
            })
            .unwrap_or(DEFAULT_FRAME_TICKS);
        let mut trun = samples_of(&self.sizes);
        let times = timing::video(&self.stamps, end, frame, &mut trun)?;
        let first = self.stamps[0];
        let sap_type = if !first.sync {
            0
        } else if self.stamps.iter().any(|s| s.pts < first.pts) {
            3
        } else {
            1
        };
        Ok(Parts {
            codec: if self.h265 { Codec::H265 } else { Codec::H264 },
            codec_string: video.codec_string.clone(),
            video: Some(video),
            audio: None,
            timescale: 90_000,
            sample_entry,
            trun,
            times,
            sap_type,
            data: self.data,
        })
    }
}

fn slices(sets: &[Vec<u8>]) -> Vec<&[u8]> {
    sets.iter().map(Vec::as_slice).collect()
}

/// How an audio track is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// AAC in ADTS.
    Aac,
    /// AC-3 or E-AC-3 sync frames.
    Dolby,
}

/// The first frame's header: the track's configuration.
#[derive(Clone, Copy, Debug)]
enum AudioConfig {
    Adts(AdtsHeader),
    Dolby(SyncFrame),
}

/// A frame header of either family.
#[derive(Clone, Copy, Debug)]
enum Header {
    Adts(AdtsHeader),
    Dolby(SyncFrame),
}

impl Header {
    fn frame_length(&self) -> usize {
        match self {
            Header::Adts(h) => h.frame_length,
            Header::Dolby(f) => f.frame_length,
        }
    }
}

/// Bytes a frame header needs before it can be read.
const AUDIO_HEADER_BYTES: usize = 7;

/// An AAC, AC-3 or E-AC-3 track.
struct AudioBuilder {
    family: Family,
    data: Vec<u8>,
    /// Each sample's start, in the track's timescale.
    positions: Vec<i64>,
    sizes: Vec<u32>,
    /// The start of a frame that continues in the next PES.
    carry: Vec<u8>,
    config: Option<AudioConfig>,
    /// Where the next frame starts if the stream runs on without a gap.
    next: Option<i64>,
    /// Audio blocks in the E-AC-3 sample being gathered.
    blocks: u8,
    error: Option<&'static str>,
}

impl AudioBuilder {
    /// A track writing its frames into `data` (empty).
    fn new(family: Family, data: Vec<u8>) -> Self {
        Self {
            family,
            data,
            positions: Vec::with_capacity(128),
            sizes: Vec::with_capacity(128),
            carry: Vec::new(),
            config: None,
            next: None,
            blocks: 0,
            error: None,
        }
    }

    fn push(&mut self, au: &AccessUnit<'_>, shift: i64) {
        if self.error.is_some() {
            return;
        }
        let stamp = au.pts.map(|p| Ticks(p.0 + shift));
        if self.carry.is_empty() {
            self.frames(au.data, 0, stamp);
        } else {
            let mut buffer = std::mem::take(&mut self.carry);
            let own = buffer.len();
            buffer.extend_from_slice(au.data);
            self.frames(&buffer, own, stamp);
        }
    }

    /// Splits `buf` into frames; the PES's timestamp belongs to the first
    /// frame that starts at or after `own` (ISO/IEC 13818-1 2.4.3.7).
    fn frames(&mut self, buf: &[u8], own: usize, mut stamp: Option<Ticks>) {
        let mut at = 0;
        while at < buf.len() && self.error.is_none() {
            let rest = &buf[at..];
            if rest.len() < AUDIO_HEADER_BYTES {
                self.carry.extend_from_slice(rest);
                return;
            }
            let Some(header) = self.header(rest) else {
                at += 1 + self.sync_search(&rest[1..]);
                continue;
            };
            let len = header.frame_length();
            if len > rest.len() {
                self.carry.extend_from_slice(rest);
                return;
            }
            let frame_stamp = if at >= own { stamp.take() } else { None };
            self.frame(&rest[..len], header, frame_stamp);
            at += len;
        }
    }

    fn header(&self, bytes: &[u8]) -> Option<Header> {
        match self.family {
            Family::Aac => aac::parse_adts(bytes).map(Header::Adts),
            Family::Dolby => ac3::parse_frame(bytes).map(Header::Dolby),
        }
    }

    /// Bytes to skip to the next possible sync word.
    fn sync_search(&self, bytes: &[u8]) -> usize {
        let first = match self.family {
            Family::Aac => 0xff,
            Family::Dolby => 0x0b,
        };
        memchr::memchr(first, bytes).unwrap_or(bytes.len())
    }

    fn frame(&mut self, frame: &[u8], header: Header, stamp: Option<Ticks>) {
        let config = match self.config {
            Some(config) => config,
            None => {
                let config = match header {
                    Header::Adts(h) if h.channel_config == 0 => {
                        self.error = Some(
                            "AAC whose channel layout is in the frames (channel configuration 0)",
                        );
                        return;
                    }
                    Header::Adts(h) => AudioConfig::Adts(h),
                    Header::Dolby(f) => AudioConfig::Dolby(f),
                };
                self.config = Some(config);
                config
            }
        };
        let payload = match header {
            Header::Adts(h) if h.raw_blocks > 1 => {
                self.error = Some("ADTS frames holding several AAC frames");
                return;
            }
            Header::Adts(h) => &frame[h.header_length..],
            Header::Dolby(f) => {
                if f.enhanced && (f.stream_type == 1 || f.substream_id != 0) {
                    // A dependent or further substream belongs to the sample
                    // of the independent substream before it.
                    if let Some(size) = self.sizes.last_mut() {
                        self.data.extend_from_slice(frame);
                        *size += u32::try_from(frame.len()).unwrap_or(0);
                    }
                    return;
                }
                if f.enhanced && self.blocks > 0 && self.blocks < 6 {
                    // Frames of fewer than six blocks make one 1536-sample unit.
                    if let Some(size) = self.sizes.last_mut() {
                        self.data.extend_from_slice(frame);
                        *size += u32::try_from(frame.len()).unwrap_or(0);
                        self.blocks += f.blocks;
                        return;
                    }
                }
                self.blocks = f.blocks;
                frame
            }
        };
        let rate = config_rate(&config);
        let samples = i64::from(frame_samples(&config));
        let from_stamp = stamp.map(|t| to_timescale(t, rate));
        let position = match (self.next, from_stamp) {
            // Timestamps are rounded to 90 kHz ticks: within half a frame of
            // where the stream runs on, it runs on.
            (Some(next), Some(at)) if (at - next).abs() <= samples / 2 => next,
            (_, Some(at)) => at,
            (Some(next), None) => next,
            (None, None) => return, // no time to place it at yet
        };
        let position = match self.positions.last() {
            Some(&last) => position.max(last + 1),
            None => position,
        };
        self.data.extend_from_slice(payload);
        self.sizes
            .push(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        self.positions.push(position);
        self.next = Some(position + samples);
    }

    fn finish(self) -> Result<Parts, Missing> {
        if let Some(what) = self.error {
            return Err(Missing::Bad(what));
        }
        let Some(config) = self.config else {
            return Err(Missing::Samples);
        };
        if self.positions.is_empty() {
            return Err(Missing::Samples);
        }
        let mut sample_entry = Vec::with_capacity(64);
        let (codec, audio) = match config {
            AudioConfig::Adts(h) => {
                let channels = if h.channel_config == 7 {
                    8
                } else {
                    h.channel_config
                };
                boxes::mp4a(&mut sample_entry, &h, channels);
                let audio = AudioParams {
                    codec_string: format!("mp4a.40.{}", h.object_type),
                    sample_rate: h.sample_rate,
                    channels,
                };
                (Codec::Aac, audio)
            }
            AudioConfig::Dolby(f) => {
                if f.enhanced {
                    boxes::ec3(&mut sample_entry, &f);
                } else {
                    boxes::ac3(&mut sample_entry, &f);
                }
                let audio = f.params().ok_or(Missing::Bad("unknown channel layout"))?;
                (if f.enhanced { Codec::Eac3 } else { Codec::Ac3 }, audio)
            }
        };
        let mut trun = samples_of(&self.sizes);
        let times = timing::audio(&self.positions, frame_samples(&config), &mut trun)?;
        Ok(Parts {
            codec,
            codec_string: audio.codec_string.clone(),
            video: None,
            timescale: config_rate(&config),
            audio: Some(audio),
            sample_entry,
            trun,
            times,
            sap_type: 1,
            data: self.data,
        })
    }
}

fn config_rate(config: &AudioConfig) -> u32 {
    match config {
        AudioConfig::Adts(h) => h.sample_rate,
        AudioConfig::Dolby(f) => f.sample_rate,
    }
}

/// Samples per MP4 sample: an AAC frame is 1024, an AC-3 frame (and an
/// E-AC-3 unit) 1536.
fn frame_samples(config: &AudioConfig) -> u32 {
    match config {
        AudioConfig::Adts(_) => 1024,
        AudioConfig::Dolby(_) => 1536,
    }
}

/// A `trun` entry per sample of `sizes`, timing to be filled in.
fn samples_of(sizes: &[u32]) -> Vec<TrunSample> {
    sizes
        .iter()
        .map(|&size| TrunSample {
            size,
            ..TrunSample::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use dvr_common::UtcMs;

    use super::*;
    use crate::fmp4::TapeClock;
    use crate::synth::TsBuilder;

    /// PTS of the first access unit in these tests.
    const P: u64 = 900_000;

    /// Timing that puts PTS `P` at one second after the epoch.
    fn timing(duration: i64) -> SegmentTiming {
        SegmentTiming {
            clock: TapeClock::new(UtcMs(1000), Ticks(P as i64)),
            seq: 7,
            pts_start: Ticks(P as i64),
            duration: Ticks(duration),
        }
    }

    /// An ADTS frame (AAC LC, 48 kHz, stereo) of `len` bytes, header included.
    fn adts(len: usize, fill: u8) -> Vec<u8> {
        let mut frame = vec![
            0xff,
            0xf1,
            0x4c,
            0x80 | ((len >> 11) & 0x03) as u8,
            (len >> 3) as u8,
            ((len & 0x07) << 5) as u8 | 0x1f,
            0xfc,
        ];
        frame.resize(len, fill);
        frame
    }

    fn audio_ts(pes: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut b = TsBuilder::default();
        b.pat(1, 0x1000);
        b.pmt(1, 0x1000, &[(0x0f, 0x101)]);
        for (pts, es) in pes {
            b.pes(0x101, 0xc0, *pts, None, es);
        }
        b.out
    }

    #[test]
    fn adts_frames_split_across_pes_with_garbage_and_a_gap() {
        let (a, b, c, d) = (adts(100, 1), adts(120, 2), adts(90, 3), adts(100, 4));
        let frame = 1920; // 1024 samples at 48 kHz, in 90 kHz ticks
        let mut first = a.clone();
        first.extend_from_slice(&b[..40]);
        let mut second = b[40..].to_vec();
        second.extend_from_slice(&[0x00, 0x01, 0x02]); // not a frame
        second.extend_from_slice(&c);
        let ts = audio_ts(&[
            (P, first),
            (P + 2 * frame, second), // the PTS of C, the first frame it starts
            (P + 13 * frame, d.clone()), // ten frames missing
        ]);
        let fragments = Fragments::from_ts(&ts, &timing(0), None).unwrap();
        let track = fragments.track(1).unwrap();
        assert_eq!(track.timescale, 48_000);
        assert_eq!(track.base_decode_time, 48_000, "one second after the epoch");
        let sizes: Vec<u32> = track.trun.iter().map(|t| t.size).collect();
        assert_eq!(sizes, [93, 113, 83, 93], "ADTS headers stripped");
        let durations: Vec<u32> = track.trun.iter().map(|t| t.duration).collect();
        assert_eq!(durations, [1024, 1024, 11 * 1024, 1024]);
        assert_eq!(track.duration, 14 * 1024);
        let mut expected = a[7..].to_vec();
        expected.extend_from_slice(&b[7..]);
        expected.extend_from_slice(&c[7..]);
        expected.extend_from_slice(&d[7..]);
        assert_eq!(track.data, expected);
        assert_eq!(track.codec_string, "mp4a.40.2");
    }

    #[test]
    fn aac_without_a_channel_configuration_is_left_out_with_the_reason() {
        let mut frame = adts(100, 1);
        frame[2] &= 0xfe; // channel_configuration 0b010 -> 0b000
        frame[3] &= 0x3f;
        let fragments = Fragments::from_ts(&audio_ts(&[(P, frame)]), &timing(0), None).unwrap();
        assert!(fragments.tracks().is_empty());
        let reason = &fragments.left_out()[0].reason;
        assert!(matches!(reason, Fmp4Error::BadStream { track: 1, .. }));
        assert!(reason.to_string().contains("channel configuration 0"));
    }

    /// An SPS (High, 1280x720, 25 fps) and a PPS from x264.
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    /// Another SPS (Main, 1920x1080, 29.97 fps).
    const OTHER_SPS: &[u8] = &[
        0x67, 0x4d, 0x40, 0x28, 0xec, 0xa0, 0x3c, 0x01, 0x13, 0xf2, 0xe0, 0x22, 0x00, 0x00, 0x07,
        0xd2, 0x00, 0x01, 0xd4, 0xc0, 0x1e, 0x30, 0x63, 0x2c,
    ];

    fn annex_b(units: &[&[u8]]) -> Vec<u8> {
        units
            .iter()
            .flat_map(|u| [&[0, 0, 0, 1][..], u].concat())
            .collect()
    }

    fn length_prefixed(units: &[&[u8]]) -> Vec<u8> {
        units
            .iter()
            .flat_map(|u| [&(u.len() as u32).to_be_bytes()[..], u].concat())
            .collect()
    }

    #[test]
    fn parameter_sets_go_to_the_sample_entry_and_a_change_stays_in_band() {
        let aud: &[u8] = &[0x09, 0xf0];
        let idr: &[u8] = &[0x65, 0x88, 0x84, 0x21];
        let p: &[u8] = &[0x41, 0x9a, 0x02, 0x11];
        let filler: &[u8] = &[0x0c, 0xff, 0xff];
        let mut b = TsBuilder::default();
        b.pat(1, 0x1000);
        b.pmt(1, 0x1000, &[(0x1b, 0x100)]);
        let units: [&[&[u8]]; 3] = [
            &[aud, SPS, PPS, idr],
            &[aud, SPS, PPS, p, filler],
            &[aud, OTHER_SPS, PPS, p],
        ];
        for (i, au) in units.iter().enumerate() {
            b.pes(0x100, 0xe0, P + i as u64 * 3600, None, &annex_b(au));
        }
        let fragments = Fragments::from_ts(&b.out, &timing(3 * 3600), None).unwrap();
        let track = fragments.track(1).unwrap();
        let mut expected = length_prefixed(&[idr]);
        expected.extend(length_prefixed(&[p]));
        expected.extend(length_prefixed(&[OTHER_SPS, p]));
        assert_eq!(
            track.data, expected,
            "AUD, filler and repeated sets dropped"
        );
        assert_eq!(track.codec_string, "avc1.64001f");
        assert_eq!(track.video.as_ref().map(|v| v.width), Some(1280));
        let init = track.init();
        let count = |needle: &[u8]| init.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!((count(SPS), count(PPS), count(OTHER_SPS)), (1, 1, 0));
        assert_eq!(track.sap_type, 1);
        assert_eq!(
            track.duration,
            3 * 3600,
            "the last frame ends at the segment's end"
        );
        assert_eq!(track.base_decode_time, 90_000);
    }

    #[test]
    fn video_without_parameter_sets_is_left_out() {
        let mut b = TsBuilder::default();
        b.pat(1, 0x1000);
        b.pmt(1, 0x1000, &[(0x24, 0x100)]);
        b.pes(0x100, 0xe0, P, None, &annex_b(&[&[0x26, 0x01, 0xaf]]));
        let fragments = Fragments::from_ts(&b.out, &timing(3600), None).unwrap();
        assert_eq!(
            fragments.left_out()[0].reason,
            Fmp4Error::NoParameterSets {
                track: 1,
                pid: 0x100,
                codec: Codec::H265,
                what: "VPS, SPS and PPS",
            }
        );
    }

    #[test]
    fn bytes_without_a_program_are_an_error() {
        assert_eq!(
            Fragments::from_ts(&[0x47; 188 * 4], &timing(0), None).unwrap_err(),
            Fmp4Error::NoProgram
        );
    }
}
