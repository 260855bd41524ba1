//! The keyframe segmenter: transport stream in, self-contained segments out.
//!
//! It works on whole TS packets and never reassembles elementary streams: for
//! most packets it reads four header bytes, looks the PID up in one array and
//! moves on; runs of packets are copied into the segment buffer with one
//! `memcpy`. Only the first packets of each PES of the *primary* stream (the
//! first video stream, or the first audio stream when there is no video) are
//! looked into, up to the first slice header, to learn whether the access
//! unit is a random-access point.
//!
//! A cut happens at the TS packet where a random-access PES starts, once the
//! segment is at least the target duration long; at the maximum duration (or
//! size) it happens at the next PES start even without a keyframe, and the
//! new segment is flagged not independent. Because the decision can need a
//! few packets after the PES start, the bytes since that packet stay in the
//! open segment's buffer and move to the next segment's buffer at the cut,
//! behind a freshly written PAT and PMT.
//!
//! Time: PTS are unwrapped from 33 bits; a jump of the primary stream's
//! decoding time (forward beyond `jump_threshold`, or backward) is a
//! discontinuity, which ends the segment and re-anchors the wall clock. No
//! data for `signal_loss_after` ends the open segment too (see
//! [`Segmenter::check_signal`]); the next segment carries the discontinuity.
//!
//! A source that knows the UTC of what it sends (HLS with
//! `EXT-X-PROGRAM-DATE-TIME`) hands it over with [`Segmenter::hint_utc`]
//! before the bytes: the hint is bound to the next PES of the primary stream,
//! and a run is then anchored on it instead of on the arrival time. Within a
//! run the hints only re-anchor when they drift more than a second from the
//! stream's own clock, so a jittery origin does not make the tape jitter.

use std::sync::Arc;

use bytes::BytesMut;
use dvr_common::{Clock, Ticks, UtcMs};

use crate::codec::nal::{self, RandomAccess};
use crate::codec::{self, Codec, CodecSummary, TrackInfo, TrackKind};
use crate::psi::{PidRole, Program, ProgramTracker, PsiEvent};
use crate::segment::{Segment, SegmentFlags};
use crate::stats::DemuxStats;
use crate::timestamp::{parse_pes_header, Unwrapper};
use crate::ts::{self, ContinuityTracker, PacketSync, PACKET_SIZE};
use crate::wallclock::{Anchor, WallClock};

/// How far a UTC hint may drift from the running anchor before the next
/// segment is anchored on it again.
const MAX_HINT_DRIFT_MS: i64 = 1000;

/// How much of a PES the random-access scan may look at before giving up.
const MAX_SCAN_BYTES: usize = 64 * 1024;
/// Backward steps of the decoding time up to this are jitter, not a jump.
const BACKSTEP_TOLERANCE: Ticks = Ticks::from_ms(100);

/// How segments are cut.
#[derive(Clone, Debug)]
pub struct SegmenterConfig {
    /// Cut at the first keyframe after this (default 2 s).
    pub target_duration: Ticks,
    /// Cut even without a keyframe after this (default 10 s).
    pub max_duration: Ticks,
    /// Cut even without a keyframe at this size (default 32 MiB), so memory
    /// stays bounded whatever the source sends.
    pub max_segment_bytes: usize,
    /// The program to record; the first in the PAT when `None`.
    pub program: Option<u16>,
    /// A forward jump of the primary stream's decoding time larger than this
    /// is a discontinuity (default 5 s).
    pub jump_threshold: Ticks,
    /// No data for this long ends the open segment (default twice the target).
    pub signal_loss_after_ms: i64,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self::with_target(Ticks::from_secs(2))
    }
}

impl SegmenterConfig {
    /// Defaults around a target duration.
    pub fn with_target(target_duration: Ticks) -> Self {
        Self {
            target_duration,
            max_duration: Ticks::from_secs(10).max(target_duration),
            max_segment_bytes: 32 << 20,
            program: None,
            jump_threshold: Ticks::from_secs(5),
            signal_loss_after_ms: 2 * target_duration.as_ms(),
        }
    }
}

/// Where the segmenter resumes a tape that already has segments.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resume {
    /// The `seq` of the first segment to produce.
    pub next_seq: u64,
    /// The end of the tape so far; new segments start no earlier.
    pub tape_end: Option<UtcMs>,
    /// Whether the first segment is a discontinuity (true after a restart).
    pub discontinuity: bool,
}

/// The segment being filled.
#[derive(Clone, Copy, Debug)]
struct OpenSegment {
    seq: u64,
    pts_start: Ticks,
    utc_start: UtcMs,
    flags: SegmentFlags,
}

/// A PES start of the primary stream: a possible cut point.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// Offset in the buffer of the packet where the PES starts.
    offset: usize,
    pts: Ticks,
    /// The decoding timeline jumped at this PES.
    discontinuity: bool,
    /// Where the previous run's presentation ended, for a discontinuity.
    previous_end: Option<Ticks>,
}

/// Frame timing of the primary stream within the current run.
#[derive(Clone, Copy, Debug, Default)]
struct Timing {
    last_decode: Option<Ticks>,
    frame: Ticks,
    end: Option<Ticks>,
}

impl Timing {
    fn observe(&mut self, pts: Ticks, decode: Ticks) {
        if let Some(last) = self.last_decode {
            if decode > last {
                self.frame = decode - last;
            }
        }
        self.last_decode = Some(decode);
        let end = pts + self.frame;
        self.end = Some(self.end.map_or(end, |e| e.max(end)));
    }
}

/// Whether an audio or subtitle stream is inside a PES packet.
#[derive(Clone, Copy, Debug, Default)]
struct SideStream {
    /// Audio and subtitle PES must not be split across segments.
    kept_whole: bool,
    /// A PES has started and has not been seen to end.
    open: bool,
    /// Bytes still due of the open PES, when its header declared a length.
    remaining: Option<usize>,
}

/// A segment cut at a keyframe while audio PES packets that began before the
/// keyframe were still arriving: it keeps their remaining packets, so no
/// segment ends in half an audio frame, and is emitted once they are in.
#[derive(Debug)]
struct Holdover {
    segment: Segment,
    bytes: BytesMut,
    /// Streams whose PES is still open.
    waiting: Vec<usize>,
    /// Primary PTS at the cut; the holdover ends a second later at most.
    cut_pts: Ticks,
}

/// Counts the ADTS frames of one PES as its packets go by, to know the
/// PES's duration (the last one of a stream has no successor to tell it).
#[derive(Clone, Debug, Default)]
struct AdtsCounter {
    skip: usize,
    header: [u8; 7],
    have: usize,
    frames: u32,
    broken: bool,
}

impl AdtsCounter {
    fn start(&mut self, es: &[u8]) {
        *self = AdtsCounter::default();
        self.feed(es);
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.broken {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (self.header.len() - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < self.header.len() {
                return;
            }
            self.have = 0;
            match codec::aac::adts_frame_length(&self.header) {
                Some(len) => {
                    self.frames += 1;
                    self.skip = len - self.header.len();
                }
                None => self.broken = true,
            }
        }
    }
}

/// Cuts one input's transport stream into segments.
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    clock: Arc<dyn Clock>,
    sync: PacketSync,
    continuity: ContinuityTracker,
    psi: ProgramTracker,
    stats: DemuxStats,
    unwrapper: Unwrapper,
    wall: WallClock,
    timing: Timing,
    next_seq: u64,
    /// Continuity counters of the PAT and PMT we write.
    psi_cc: (u8, u8),
    /// The open segment's bytes, or the bytes of a candidate before the first.
    buf: BytesMut,
    open: Option<OpenSegment>,
    candidate: Option<Candidate>,
    /// Elementary-stream bytes of the candidate, for the random-access scan.
    scratch: Vec<u8>,
    /// Whether the candidate's random-access scan is still running.
    scanning: bool,
    /// Where waiting for the first keyframe began, to give up after the max.
    waiting_since: Option<Ticks>,
    program: Option<Arc<Program>>,
    primary: Option<usize>,
    tracks: Vec<TrackInfo>,
    summary: Arc<CodecSummary>,
    /// The open segment's tracks when the program changed inside it.
    summary_before_change: Option<Arc<CodecSummary>>,
    /// The next segment starts a new timeline.
    pending_discontinuity: bool,
    /// Cut at the next keyframe even before the target (the program changed).
    cut_at_next_keyframe: bool,
    last_data_at: UtcMs,
    /// PES state of the audio and subtitle streams, by stream index.
    side: Vec<SideStream>,
    /// A cut segment still taking the tails of audio PES begun before its cut.
    holdover: Option<Holdover>,
    /// ADTS frames of the primary stream's current PES, when it is AAC.
    adts: Option<AdtsCounter>,
    /// PTS of the primary stream's current PES.
    last_pes_pts: Option<Ticks>,
    /// `clock.now()` of the current push.
    now: UtcMs,
    /// A UTC hint waiting for the next primary PES start.
    utc_hint: Option<UtcMs>,
    /// The last hint, bound to a PTS of the current run.
    hint_anchor: Option<Anchor>,
    expected_len: usize,
    out: Vec<Segment>,
}

/// The codecs a stored segment's own tables and first keyframe describe
/// (every segment starts with its PAT and PMT), as the ingest that cut it
/// read them: for a segment taken whole from another origin.
pub fn probe_codecs(payload: &[u8]) -> Arc<CodecSummary> {
    let clock = Arc::new(dvr_common::SimulatedClock::new(UtcMs(0)));
    let mut probe = Segmenter::new(SegmenterConfig::default(), clock);
    drop(probe.push(payload));
    Arc::clone(probe.codecs())
}

impl Segmenter {
    /// A segmenter for a new tape.
    pub fn new(config: SegmenterConfig, clock: Arc<dyn Clock>) -> Self {
        Self::resume(config, clock, Resume::default())
    }

    /// A segmenter continuing a tape.
    pub fn resume(config: SegmenterConfig, clock: Arc<dyn Clock>, resume: Resume) -> Self {
        let now = clock.now();
        Self {
            psi: ProgramTracker::new(config.program),
            config,
            clock,
            sync: PacketSync::new(),
            continuity: ContinuityTracker::default(),
            stats: DemuxStats::default(),
            unwrapper: Unwrapper::default(),
            wall: WallClock::resuming_after(resume.tape_end),
            timing: Timing::default(),
            next_seq: resume.next_seq,
            psi_cc: (0, 0),
            buf: BytesMut::new(),
            open: None,
            candidate: None,
            scratch: Vec::new(),
            scanning: false,
            waiting_since: None,
            program: None,
            primary: None,
            tracks: Vec::new(),
            summary: Arc::default(),
            summary_before_change: None,
            pending_discontinuity: resume.discontinuity,
            cut_at_next_keyframe: false,
            last_data_at: now,
            side: Vec::new(),
            holdover: None,
            adts: None,
            last_pes_pts: None,
            now,
            utc_hint: None,
            hint_anchor: None,
            expected_len: 256 * 1024,
            out: Vec::new(),
        }
    }

    /// What went wrong with the input so far.
    pub fn stats(&self) -> DemuxStats {
        let mut stats = self.stats.clone();
        self.sync.report(&mut stats);
        stats
    }

    /// The tracks of the program, as probed so far.
    pub fn codecs(&self) -> &Arc<CodecSummary> {
        &self.summary
    }

    /// The `seq` the next segment will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Feeds input bytes (any amount, any alignment); returns the segments
    /// this completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<Segment> {
        self.now = self.clock.now();
        if !data.is_empty() {
            self.last_data_at = self.now;
        }
        let mut sync = std::mem::take(&mut self.sync);
        sync.push(data, |run| self.process_run(run));
        self.sync = sync;
        std::mem::take(&mut self.out)
    }

    /// Tells the segmenter the UTC of the next bytes pushed: the next PES of
    /// the primary stream starts at `utc`. A new run is anchored on it; within
    /// a run it re-anchors the next segment only when it is more than a
    /// second away from the stream's clock. The tape never goes back.
    pub fn hint_utc(&mut self, utc: UtcMs) {
        self.utc_hint = Some(utc);
    }

    /// Ends the open segment if no data has arrived for the signal-loss time;
    /// the next segment will be a discontinuity. Call it periodically when
    /// reading a live source.
    pub fn check_signal(&mut self) -> Vec<Segment> {
        self.now = self.clock.now();
        if self.now.0 - self.last_data_at.0 <= self.config.signal_loss_after_ms {
            return Vec::new();
        }
        let segments = self.end_of_run();
        if !segments.is_empty() {
            self.stats.discontinuities += 1;
        }
        segments
    }

    /// Ends the input: returns the last segments (the partial one, and one
    /// held over for audio if any). More data may follow (a new run,
    /// flagged discontinuity).
    pub fn finish(&mut self) -> Vec<Segment> {
        self.now = self.clock.now();
        self.end_of_run()
    }

    /// Closes the open segment at the end of what was received and resets the
    /// stream state so the next data starts a new run.
    fn end_of_run(&mut self) -> Vec<Segment> {
        self.candidate = None;
        self.scanning = false;
        let end = match (&self.adts, self.last_pes_pts, self.primary_sample_rate()) {
            (Some(adts), Some(pts), Some(rate)) if !adts.broken && adts.frames > 0 => {
                Some(pts + Ticks(i64::from(adts.frames) * 1024 * 90_000 / i64::from(rate)))
            }
            _ => self.timing.end,
        };
        if self.open.is_some() {
            let len = self.buf.len();
            self.close_segment(len, end, false);
        }
        self.release_holdover();
        let segments = std::mem::take(&mut self.out);
        self.buf.clear();
        self.sync.reset();
        self.continuity.reset();
        self.timing = Timing::default();
        self.waiting_since = None;
        self.pending_discontinuity = true;
        self.last_pes_pts = None;
        self.hint_anchor = None;
        for side in &mut self.side {
            side.open = false;
            side.remaining = None;
        }
        segments
    }

    fn process_run(&mut self, run: &[u8]) {
        let mut copied = 0;
        let mut at = 0;
        while at < run.len() {
            let packet = &run[at..at + PACKET_SIZE];
            self.stats.packets += 1;
            match self.psi.role(ts::pid(packet)) {
                PidRole::Stream(index) => {
                    if !self.continuity.check(packet) {
                        self.stats.cc_errors += 1;
                    }
                    if ts::transport_error(packet) {
                        self.stats.transport_errors += 1;
                    }
                    let index = usize::from(index);
                    let pusi = ts::payload_unit_start(packet);
                    if Some(index) == self.primary {
                        if pusi || self.scanning {
                            self.copy_run(&run[copied..at]);
                            copied = at + PACKET_SIZE;
                            self.on_primary_packet(packet, pusi);
                        } else if let (Some(adts), Some(payload)) =
                            (&mut self.adts, ts::payload(packet))
                        {
                            adts.feed(payload);
                        }
                    } else {
                        if self.side.get(index).is_some_and(|s| s.kept_whole)
                            && self.track_side_packet(index, packet, pusi)
                        {
                            self.copy_run(&run[copied..at]);
                            copied = at + PACKET_SIZE;
                            self.hold_over(packet);
                        }
                        if pusi && self.tracks.get(index).is_some_and(needs_probe) {
                            self.probe_track(index, packet);
                        }
                    }
                }
                PidRole::Pcr => {
                    if !self.continuity.check(packet) {
                        self.stats.cc_errors += 1;
                    }
                }
                PidRole::Pat | PidRole::Pmt => {
                    self.copy_run(&run[copied..at]);
                    copied = at + PACKET_SIZE;
                    self.on_psi_packet(packet);
                }
                PidRole::Other => {
                    self.copy_run(&run[copied..at]);
                    copied = at + PACKET_SIZE;
                    if self.program.is_some() {
                        self.stats.filtered_packets += 1;
                    } else {
                        self.stats.dropped_before_program += 1;
                    }
                }
            }
            at += PACKET_SIZE;
        }
        self.copy_run(&run[copied..]);
    }

    /// Whether packets are being kept: inside a segment, or from a candidate
    /// PES start while waiting for the first keyframe.
    fn collecting(&self) -> bool {
        self.open.is_some() || self.candidate.is_some()
    }

    /// Appends packets that pass through unchanged.
    fn copy_run(&mut self, packets: &[u8]) {
        if packets.is_empty() {
            return;
        }
        if !self.collecting() {
            if self.program.is_some() {
                self.stats.dropped_before_keyframe += (packets.len() / PACKET_SIZE) as u64;
            }
            return;
        }
        self.buf.extend_from_slice(packets);
        if self.open.is_some() && self.buf.len() >= self.config.max_segment_bytes {
            self.cut_for_size();
        }
    }

    fn on_psi_packet(&mut self, packet: &[u8]) {
        match self.psi.push(packet, &mut self.stats) {
            PsiEvent::None => {}
            PsiEvent::Refreshed => self.write_psi(),
            PsiEvent::ProgramChanged => {
                self.on_program_changed();
                self.write_psi();
            }
        }
    }

    /// Repeats PAT and PMT inside the segment where the source repeated them.
    fn write_psi(&mut self) {
        if let (Some(program), true) = (&self.program, self.collecting()) {
            program.write_psi(&mut self.buf, &mut self.psi_cc.0, &mut self.psi_cc.1);
        }
    }

    fn on_program_changed(&mut self) {
        let Some(program) = self.psi.program().cloned() else {
            return;
        };
        let changed_streams = self
            .program
            .as_ref()
            .is_some_and(|old| !old.same_streams(&program));
        // Keep what was probed for streams that stayed.
        let tracks = program
            .streams
            .iter()
            .map(|s| {
                let old = self
                    .tracks
                    .iter()
                    .find(|t| t.pid == s.pid && t.codec == s.codec);
                let mut track = s.track_info();
                if let Some(old) = old {
                    track.video.clone_from(&old.video);
                    track.audio.clone_from(&old.audio);
                }
                track
            })
            .collect();
        let primary = program.primary_stream();
        if primary.map(|i| program.streams[i].pid)
            != self
                .primary
                .and_then(|i| self.program.as_ref().map(|p| p.streams[i].pid))
        {
            self.candidate = None;
            self.scanning = false;
            self.timing = Timing::default();
        }
        if changed_streams {
            if self.open.is_some() {
                self.summary_before_change
                    .get_or_insert_with(|| Arc::clone(&self.summary));
            }
            self.pending_discontinuity = true;
            self.cut_at_next_keyframe = true;
        }
        self.side = program
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| SideStream {
                kept_whole: Some(i) != primary
                    && matches!(s.codec.kind(), TrackKind::Audio | TrackKind::Subtitle),
                ..SideStream::default()
            })
            .collect();
        self.adts = primary
            .filter(|&i| program.streams[i].codec == Codec::Aac)
            .map(|_| AdtsCounter::default());
        self.tracks = tracks;
        self.primary = primary;
        self.program = Some(program);
        self.refresh_summary();
    }

    fn refresh_summary(&mut self) {
        let summary = CodecSummary {
            program_number: self.program.as_ref().map_or(0, |p| p.number),
            tracks: self.tracks.clone(),
        };
        if *self.summary != summary {
            self.summary = Arc::new(summary);
        }
    }

    fn probe_track(&mut self, index: usize, packet: &[u8]) {
        let Some(es) = ts::payload(packet)
            .and_then(|pes| parse_pes_header(pes).and_then(|h| pes.get(h.payload_offset..)))
        else {
            return;
        };
        let track = &mut self.tracks[index];
        let found = match track.kind {
            TrackKind::Audio => codec::probe_audio(track.codec, es).map(|a| track.audio = Some(a)),
            TrackKind::Video => codec::probe_video(track.codec, es).map(|v| track.video = Some(v)),
            TrackKind::Subtitle | TrackKind::Data => None,
        };
        if found.is_some() {
            self.refresh_summary();
        }
    }

    /// A packet of the primary stream that starts a PES or continues one being
    /// scanned.
    fn on_primary_packet(&mut self, packet: &[u8], pusi: bool) {
        if !pusi {
            if self.collecting() {
                self.buf.extend_from_slice(packet);
            }
            if let Some(payload) = ts::payload(packet) {
                self.scratch.extend_from_slice(payload);
            }
            self.scan();
            return;
        }
        if self.scanning {
            // The previous PES ended before its first slice: not a keyframe.
            self.resolve(false);
        }
        let header = ts::payload(packet).and_then(|pes| Some((pes, parse_pes_header(pes)?)));
        let Some((pes, header)) = header else {
            self.stats.pes_errors += 1;
            self.keep(packet);
            return;
        };
        let Some(raw_pts) = header.pts else {
            // A PES without a timestamp cannot be a cut point.
            self.keep(packet);
            return;
        };
        let dts = header.dts.map(|raw| self.unwrapper.unwrap(raw));
        let pts = self.unwrapper.unwrap(raw_pts);
        let decode = dts.unwrap_or(pts);
        let jumped = self.timing.last_decode.is_some_and(|last| {
            let step = decode - last;
            step > self.config.jump_threshold || step < Ticks::ZERO - BACKSTEP_TOLERANCE
        });
        let discontinuity = jumped || ts::discontinuity_indicator(packet);
        let previous_end = self.timing.end;
        if discontinuity {
            self.stats.discontinuities += 1;
            self.timing = Timing::default();
            self.hint_anchor = None;
        }
        if let Some(utc) = self.utc_hint.take() {
            self.hint_anchor = Some(Anchor { pts, utc });
        }
        self.timing.observe(pts, decode);
        self.last_pes_pts = Some(pts);
        if let Some(adts) = &mut self.adts {
            adts.start(pes.get(header.payload_offset..).unwrap_or_default());
        }
        let overdue = |h: &Holdover| pts - h.cut_pts > Ticks::from_secs(1);
        if discontinuity || self.holdover.as_ref().is_some_and(overdue) {
            self.release_holdover();
        }
        self.candidate = Some(Candidate {
            offset: self.buf.len(),
            pts,
            discontinuity,
            previous_end,
        });
        self.buf.extend_from_slice(packet);
        self.scratch.clear();
        self.scratch
            .extend_from_slice(pes.get(header.payload_offset..).unwrap_or_default());
        self.scanning = true;
        self.scan();
    }

    /// Keeps a packet in the buffer if packets are being kept.
    fn keep(&mut self, packet: &[u8]) {
        if self.collecting() {
            self.buf.extend_from_slice(packet);
        }
    }

    /// Runs the random-access scan over what the candidate has so far.
    fn scan(&mut self) {
        let Some(index) = self.primary else { return };
        let codec = self.tracks[index].codec;
        let verdict = match codec {
            Codec::H264 => nal::h264_random_access(&self.scratch),
            Codec::H265 => nal::h265_random_access(&self.scratch),
            Codec::Mpeg2Video => nal::mpeg2_random_access(&self.scratch),
            _ => RandomAccess::Yes, // audio: every PES starts on a frame
        };
        match verdict {
            RandomAccess::Yes => {
                if self.tracks[index].kind == TrackKind::Video {
                    if let Some(video) = codec::probe_video(codec, &self.scratch) {
                        if self.tracks[index].video.as_ref() != Some(&video) {
                            self.tracks[index].video = Some(video);
                            self.refresh_summary();
                        }
                    }
                } else if self.tracks[index].audio.is_none() {
                    if let Some(audio) = codec::probe_audio(codec, &self.scratch) {
                        self.tracks[index].audio = Some(audio);
                        self.refresh_summary();
                    }
                }
                self.resolve(true);
            }
            RandomAccess::No => self.resolve(false),
            RandomAccess::Undecided if self.scratch.len() > MAX_SCAN_BYTES => self.resolve(false),
            RandomAccess::Undecided => {}
        }
    }

    /// Decides what the candidate PES start means for the segment.
    fn resolve(&mut self, random_access: bool) {
        self.scanning = false;
        let Some(c) = self.candidate else { return };
        let Some(open) = self.open else {
            let waited = self.waiting_since.get_or_insert(c.pts);
            let gave_up = c.pts - *waited >= self.config.max_duration;
            if random_access || gave_up {
                self.stats.dropped_before_keyframe += (c.offset / PACKET_SIZE) as u64;
                self.start_segment(c, random_access);
            } else {
                self.stats.dropped_before_keyframe += (self.buf.len() / PACKET_SIZE) as u64;
                self.buf.clear();
                self.candidate = None;
            }
            return;
        };
        let elapsed = c.pts - open.pts_start;
        let cut = c.discontinuity
            || (random_access
                && (elapsed >= self.config.target_duration || self.cut_at_next_keyframe))
            || elapsed >= self.config.max_duration;
        if cut {
            if !random_access {
                self.stats.forced_cuts += 1;
            }
            let end = if c.discontinuity {
                c.previous_end
            } else {
                Some(c.pts)
            };
            self.close_segment(c.offset, end, !c.discontinuity);
            // What remains in the buffer starts at the candidate.
            self.start_segment(Candidate { offset: 0, ..c }, random_access);
        } else {
            self.candidate = None;
        }
    }

    /// Opens a segment at the candidate: the buffer from the candidate on
    /// moves behind a fresh PAT and PMT.
    fn start_segment(&mut self, c: Candidate, random_access: bool) {
        let discontinuity = c.discontinuity || self.pending_discontinuity;
        let hinted = self.hint_anchor.map(|h| h.utc.plus_ticks(c.pts - h.pts));
        let drifted = match (hinted, self.wall.utc_of(c.pts)) {
            (Some(hinted), Some(running)) => (hinted.0 - running.0).abs() > MAX_HINT_DRIFT_MS,
            _ => false,
        };
        if discontinuity || self.wall.current().is_none() || drifted {
            self.wall.anchor(c.pts, hinted.unwrap_or(self.now));
        }
        let utc_start = self.wall.utc_of(c.pts).unwrap_or(self.now);
        let mut next = BytesMut::with_capacity(self.expected_len);
        if let Some(program) = &self.program {
            program.write_psi(&mut next, &mut self.psi_cc.0, &mut self.psi_cc.1);
        }
        next.extend_from_slice(self.buf.get(c.offset..).unwrap_or_default());
        self.buf = next;
        self.open = Some(OpenSegment {
            seq: self.next_seq,
            pts_start: c.pts,
            utc_start,
            flags: SegmentFlags {
                discontinuity,
                independent: random_access,
            },
        });
        self.next_seq += 1;
        self.candidate = None;
        self.waiting_since = None;
        self.pending_discontinuity = false;
        self.cut_at_next_keyframe = false;
    }

    /// Ends the open segment with the first `len` bytes of the buffer. With
    /// `hold_over`, audio PES packets open at the cut keep flowing into it.
    fn close_segment(&mut self, len: usize, end: Option<Ticks>, hold_over: bool) {
        let Some(open) = self.open.take() else { return };
        self.release_holdover();
        let mut bytes = self.buf.split_to(len.min(self.buf.len()));
        let duration = end.map_or(Ticks::ZERO, |end| (end - open.pts_start).max(Ticks::ZERO));
        self.expected_len =
            (bytes.len() + bytes.len() / 8 + 64 * PACKET_SIZE).next_multiple_of(4096);
        let segment = Segment {
            seq: open.seq,
            pts_start: open.pts_start,
            duration,
            utc_start: open.utc_start,
            flags: open.flags,
            codecs: self
                .summary_before_change
                .take()
                .unwrap_or_else(|| Arc::clone(&self.summary)),
            payload: bytes::Bytes::new(),
        };
        self.wall.stamped_until(segment.utc_end());
        let waiting = if hold_over {
            self.split_open_pes(&mut bytes)
        } else {
            Vec::new()
        };
        if waiting.is_empty() {
            self.out.push(Segment {
                payload: bytes.freeze(),
                ..segment
            });
        } else {
            let cut_pts = end.unwrap_or(open.pts_start);
            self.holdover = Some(Holdover {
                segment,
                bytes,
                waiting,
                cut_pts,
            });
        }
    }

    /// At a cut: moves the packets between the cut and the decision that
    /// continue audio PES begun before the cut from the new segment's buffer
    /// to `closing`, and returns the streams whose PES is still open.
    fn split_open_pes(&mut self, closing: &mut BytesMut) -> Vec<usize> {
        let mut restarted = Vec::new();
        let mut moved = false;
        let mut kept = BytesMut::new();
        for packet in self.buf.chunks(PACKET_SIZE) {
            let whole = match self.psi.role(ts::pid(packet)) {
                PidRole::Stream(i)
                    if self.side.get(usize::from(i)).is_some_and(|s| s.kept_whole) =>
                {
                    Some(usize::from(i))
                }
                _ => None,
            };
            match whole {
                Some(i) if ts::payload_unit_start(packet) => {
                    restarted.push(i);
                    kept.extend_from_slice(packet);
                }
                Some(i) if !restarted.contains(&i) => {
                    closing.extend_from_slice(packet);
                    moved = true;
                }
                _ => kept.extend_from_slice(packet),
            }
        }
        if moved {
            self.buf = kept;
        }
        self.side
            .iter()
            .enumerate()
            .filter(|(i, s)| s.kept_whole && s.open && !restarted.contains(i))
            .map(|(i, _)| i)
            .collect()
    }

    /// Follows the PES of an audio or subtitle stream; returns whether this
    /// packet belongs to the held-over segment.
    fn track_side_packet(&mut self, index: usize, packet: &[u8], pusi: bool) -> bool {
        let payload = ts::payload(packet).unwrap_or_default();
        let side = &mut self.side[index];
        if pusi {
            let declared = payload
                .get(4..6)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            side.remaining = declared
                .filter(|&d| d > 0)
                .map(|d| (d + 6).saturating_sub(payload.len()));
        } else if let Some(remaining) = &mut side.remaining {
            *remaining = remaining.saturating_sub(payload.len());
        }
        side.open = side.remaining != Some(0);
        let ended = !side.open;
        let Some(holdover) = &mut self.holdover else {
            return false;
        };
        let Some(at) = holdover.waiting.iter().position(|&w| w == index) else {
            return false;
        };
        if pusi || ended {
            holdover.waiting.swap_remove(at);
        }
        // A new PES goes to the new segment; a continuation to the old one.
        if pusi && holdover.waiting.is_empty() {
            self.release_holdover();
        }
        !pusi
    }

    /// Adds a packet to the held-over segment and releases it when complete.
    fn hold_over(&mut self, packet: &[u8]) {
        if let Some(holdover) = &mut self.holdover {
            holdover.bytes.extend_from_slice(packet);
            if holdover.waiting.is_empty() {
                self.release_holdover();
            }
        }
    }

    /// Emits the held-over segment as it is.
    fn release_holdover(&mut self) {
        if let Some(h) = self.holdover.take() {
            self.out.push(Segment {
                payload: h.bytes.freeze(),
                ..h.segment
            });
        }
    }

    fn primary_sample_rate(&self) -> Option<u32> {
        self.tracks
            .get(self.primary?)?
            .audio
            .as_ref()
            .map(|a| a.sample_rate)
    }

    /// The segment reached the size limit without a cut point: close it here
    /// and go on in a segment that is not independent.
    fn cut_for_size(&mut self) {
        self.stats.forced_cuts += 1;
        let end = self.timing.end;
        let len = self.buf.len();
        self.close_segment(len, end, false);
        let pts = end.unwrap_or_default();
        let c = Candidate {
            offset: 0,
            pts,
            discontinuity: false,
            previous_end: None,
        };
        self.start_segment(c, false);
    }
}

fn needs_probe(track: &TrackInfo) -> bool {
    match track.kind {
        TrackKind::Audio => track.audio.is_none(),
        TrackKind::Video => track.video.is_none(),
        TrackKind::Subtitle | TrackKind::Data => false,
    }
}

#[cfg(test)]
mod tests {
    use dvr_common::SimulatedClock;
    use proptest::prelude::*;

    use super::*;
    use crate::synth::{av_stream, h264_access_unit, TsBuilder};

    const T0: UtcMs = UtcMs(1_795_000_000_000);

    fn segmenter(clock: &SimulatedClock) -> Segmenter {
        Segmenter::new(SegmenterConfig::default(), Arc::new(clock.clone()))
    }

    fn run_all(seg: &mut Segmenter, data: &[u8]) -> Vec<Segment> {
        let mut out = seg.push(data);
        out.extend(seg.finish());
        out
    }

    /// The PIDs of a segment's packets, in order.
    fn pids(segment: &Segment) -> Vec<u16> {
        segment.payload.chunks(PACKET_SIZE).map(ts::pid).collect()
    }

    #[test]
    fn cuts_at_the_first_keyframe_after_the_target() {
        let clock = SimulatedClock::new(T0);
        // 10 s at 25 fps, IDR every 1.2 s (30 frames): cuts at 2.4, 4.8, 7.2, 9.6 s.
        let segments = run_all(&mut segmenter(&clock), &av_stream(900_000, 250, 30));
        let durations: Vec<i64> = segments.iter().map(|s| s.duration.as_ms()).collect();
        assert_eq!(durations, vec![2400, 2400, 2400, 2400, 400]);
        let total: i64 = segments.iter().map(|s| s.duration.0).sum();
        assert_eq!(total, 250 * 3600, "durations tile the stream exactly");
        for (i, s) in segments.iter().enumerate() {
            assert_eq!(s.seq, i as u64);
            assert!(s.flags.independent && !s.flags.discontinuity);
            assert_eq!(
                &pids(s)[..3],
                &[0, 0x1000, 0x100],
                "PAT, PMT, then the keyframe"
            );
            assert!(ts::payload_unit_start(&s.payload[2 * PACKET_SIZE..]));
            assert_eq!(s.payload.len() % PACKET_SIZE, 0);
            assert_eq!(
                s.utc_start,
                T0.plus_ticks(s.pts_start - segments[0].pts_start)
            );
        }
        assert_eq!(segments[0].pts_start, Ticks(900_000 + 3600));
    }

    #[test]
    fn utc_hints_anchor_the_run_and_re_anchor_only_past_a_second_of_drift() {
        // Two 10 s halves, one continuous timeline, IDR every second: 2 s
        // segments, one starting where the second half does.
        let first_half = av_stream(900_000, 250, 25);
        let second_half = av_stream(900_000 + 250 * 3600, 250, 25);
        let hls = UtcMs(T0.0 - 30_000);
        // Where the stream's own clock puts the second half.
        let running = hls.saturating_add_ms(10_000);
        for (drift_ms, re_anchored) in [(300, false), (-300, false), (2_500, true), (-2_500, false)]
        {
            let clock = SimulatedClock::new(T0);
            let mut seg = segmenter(&clock);
            seg.hint_utc(hls);
            let mut out = seg.push(&first_half);
            seg.hint_utc(running.saturating_add_ms(drift_ms));
            out.extend(seg.push(&second_half));
            out.extend(seg.finish());
            let listing: Vec<_> = out
                .iter()
                .map(|s| (s.utc_start.0 - hls.0, s.duration.as_ms()))
                .collect();
            assert_eq!(out[0].utc_start, hls, "anchored on the hint, not the clock");
            assert_eq!(out.len(), 10, "{listing:?}");
            let second = &out[5];
            assert_eq!(second.pts_start, Ticks(900_000 + 251 * 3600));
            let expected = if re_anchored {
                running.saturating_add_ms(drift_ms)
            } else {
                // Within a second, or backwards: the tape keeps its clock.
                running
            };
            assert_eq!(second.utc_start, expected, "drift {drift_ms}: {listing:?}");
            for pair in out.windows(2) {
                assert!(pair[1].utc_start >= pair[0].utc_end(), "{listing:?}");
            }
        }
    }

    #[test]
    fn concatenated_segments_have_continuous_counters() {
        let clock = SimulatedClock::new(T0);
        let segments = run_all(&mut segmenter(&clock), &av_stream(0, 200, 25));
        let mut cc = ContinuityTracker::default();
        let errors = segments
            .iter()
            .flat_map(|s| s.payload.chunks(PACKET_SIZE).collect::<Vec<_>>())
            .filter(|p| !cc.check(p))
            .count();
        assert_eq!(errors, 0);
    }

    #[test]
    fn drops_what_precedes_the_first_keyframe() {
        let clock = SimulatedClock::new(T0);
        let mut b = TsBuilder::default();
        b.pat(1, 0x1000);
        b.pmt(1, 0x1000, &[(0x1b, 0x100)]);
        for i in 0..100u64 {
            b.pes(
                0x100,
                0xe0,
                i * 3600,
                None,
                &h264_access_unit(i % 50 == 20, 400),
            );
        }
        let mut seg = segmenter(&clock);
        let segments = run_all(&mut seg, &b.out);
        assert_eq!(segments[0].pts_start, Ticks(20 * 3600));
        assert!(seg.stats().dropped_before_keyframe > 0);
    }

    #[test]
    fn forces_a_cut_at_the_maximum_without_keyframes() {
        let clock = SimulatedClock::new(T0);
        // Only the first frame is a keyframe; 30 s of video.
        let segments = run_all(&mut segmenter(&clock), &av_stream(0, 750, 100_000));
        assert_eq!(segments[0].duration, Ticks::from_secs(10));
        assert!(segments[0].flags.independent);
        assert!(!segments[1].flags.independent, "cut without a keyframe");
        assert_eq!(segments.len(), 3);
    }

    #[test]
    fn crosses_the_pts_wrap_without_a_discontinuity() {
        let clock = SimulatedClock::new(T0);
        let start = (1u64 << 33) - 90_000 * 3;
        let segments = run_all(&mut segmenter(&clock), &av_stream(start, 250, 50));
        assert!(segments.iter().all(|s| !s.flags.discontinuity));
        let durations: Vec<i64> = segments.iter().map(|s| s.duration.as_ms()).collect();
        assert_eq!(durations, vec![2000; 5]);
        assert!(segments[4].pts_start.0 > 1 << 33, "unwrapped past 2^33");
    }

    #[test]
    fn a_timestamp_jump_is_a_discontinuity_and_the_tape_stays_contiguous() {
        let clock = SimulatedClock::new(T0);
        let mut data = av_stream(0, 125, 25);
        data.extend(av_stream(90_000 * 600, 125, 25));
        let segments = run_all(&mut segmenter(&clock), &data);
        let flagged: Vec<u64> = segments
            .iter()
            .filter(|s| s.flags.discontinuity)
            .map(|s| s.seq)
            .collect();
        assert_eq!(flagged, vec![3]);
        // Segment 2 ends where the first run ends, and the clock did not move,
        // so the new run starts right where the tape ended.
        assert_eq!(segments[2].duration.as_ms(), 1000);
        assert_eq!(segments[3].utc_start, segments[2].utc_end());
        assert_eq!(
            segments.iter().map(|s| s.duration.as_ms()).sum::<i64>(),
            10_000
        );
    }

    #[test]
    fn a_backward_step_is_a_discontinuity() {
        let clock = SimulatedClock::new(T0);
        let mut data = av_stream(90_000 * 100, 100, 25);
        data.extend(av_stream(0, 100, 25));
        let segments = run_all(&mut segmenter(&clock), &data);
        assert_eq!(segments.iter().filter(|s| s.flags.discontinuity).count(), 1);
        assert!(segments
            .windows(2)
            .all(|w| w[1].utc_start >= w[0].utc_end()));
    }

    #[test]
    fn signal_loss_ends_the_segment_and_the_next_run_is_anchored_anew() {
        let clock = SimulatedClock::new(T0);
        let mut seg = segmenter(&clock);
        let first = seg.push(&av_stream(0, 75, 25)); // 3 s
        assert_eq!(first.len(), 1);
        clock.advance_ms(3_000);
        assert!(
            seg.check_signal().is_empty(),
            "3 s of silence is within 2 x 2 s... of data time"
        );
        clock.advance_ms(2_000);
        let ended = seg.check_signal();
        assert_eq!(ended.len(), 1, "the open segment ends on signal loss");
        let ended = &ended[0];
        assert_eq!(ended.seq, 1);
        assert_eq!(ended.duration.as_ms(), 1000);
        // The source comes back 10 s later with timestamps that just continue.
        clock.advance_ms(10_000);
        let now = clock.now();
        let mut after = seg.push(&av_stream(75 * 3600, 100, 25));
        after.extend(seg.finish());
        assert!(after[0].flags.discontinuity);
        assert_eq!(after[0].seq, 2);
        assert_eq!(after[0].utc_start, now, "re-anchored at the arrival time");
        assert!(!after[1].flags.discontinuity);
    }

    #[test]
    fn resume_continues_seq_and_never_goes_before_the_tape_end() {
        let clock = SimulatedClock::new(T0);
        let resume = Resume {
            next_seq: 42,
            tape_end: Some(T0.saturating_add_ms(500)),
            discontinuity: true,
        };
        let mut seg =
            Segmenter::resume(SegmenterConfig::default(), Arc::new(clock.clone()), resume);
        let segments = run_all(&mut seg, &av_stream(0, 100, 25));
        assert_eq!(segments[0].seq, 42);
        assert!(segments[0].flags.discontinuity);
        assert_eq!(segments[0].utc_start, T0.saturating_add_ms(500));
        assert!(!segments[1].flags.discontinuity);
    }

    #[test]
    fn audio_only_streams_cut_on_frames() {
        let clock = SimulatedClock::new(T0);
        let mut b = TsBuilder::default();
        b.pat(1, 0x1000);
        b.pmt(1, 0x1000, &[(0x0f, 0x101)]);
        // A PES every 64 ms (3 AAC frames at 48 kHz) for 10 s.
        for i in 0..157u64 {
            // Three empty 7-byte ADTS frames (48 kHz stereo).
            let frame = [0xff, 0xf1, 0x4c, 0x80, 0x00, 0xff, 0xfc];
            b.pes(0x101, 0xc0, i * 5760, None, &frame.repeat(3));
        }
        let segments = run_all(&mut segmenter(&clock), &b.out);
        // 2 s is not a multiple of 64 ms: cut at the first frame at or after it.
        assert_eq!(segments[0].duration.as_ms(), 2048);
        assert!(segments.iter().all(|s| s.flags.independent));
        assert_eq!(
            segments.iter().map(|s| s.duration.0).sum::<i64>(),
            157 * 5760
        );
    }

    #[test]
    fn a_changed_program_is_a_discontinuity_at_the_next_keyframe() {
        let clock = SimulatedClock::new(T0);
        let mut data = av_stream(0, 60, 25);
        let mut b = TsBuilder::default();
        for i in 60..160u64 {
            if i % 10 == 0 {
                b.pat(1, 0x1000);
                b.pmt(1, 0x1000, &[(0x1b, 0x100), (0x0f, 0x102)]);
            }
            b.pes(
                0x100,
                0xe0,
                i * 3600,
                None,
                &h264_access_unit(i % 25 == 0, 500),
            );
        }
        data.extend(b.out);
        let mut seg = segmenter(&clock);
        let segments = run_all(&mut seg, &data);
        let changed = segments
            .iter()
            .find(|s| s.codecs.tracks[1].pid == 0x102)
            .unwrap();
        assert!(changed.flags.discontinuity);
        assert_eq!(
            changed.pts_start,
            Ticks(75 * 3600),
            "the first keyframe after the change"
        );
        assert_eq!(seg.stats().pmt_changes, 1);
    }

    #[test]
    fn garbage_and_lost_packets_are_counted_and_survived() {
        let clock = SimulatedClock::new(T0);
        let mut data = av_stream(0, 100, 25);
        data.drain(20_000..20_100); // loses sync and part of a packet
        let at = 40_000 - 40_000 % PACKET_SIZE;
        data.drain(at..at + PACKET_SIZE); // a whole lost packet: cc error
        data.splice(60_000..60_000, [0x47u8; 500]); // junk that looks like sync
        let mut seg = segmenter(&clock);
        let segments = run_all(&mut seg, &data);
        let stats = seg.stats();
        assert!(stats.sync_losses >= 2, "{stats:?}");
        assert!(stats.cc_errors >= 1, "{stats:?}");
        assert_eq!(segments.len(), 2);
    }

    #[test]
    fn audio_pes_open_at_a_cut_stays_whole_in_the_closing_segment() {
        // Video and audio packets interleaved one by one, as broadcast
        // muxers send them: audio PES straddle every keyframe.
        let clock = SimulatedClock::new(T0);
        let mut video = TsBuilder::default();
        let mut audio = TsBuilder::default();
        let mut psi = TsBuilder::default();
        psi.pat(1, 0x1000);
        psi.pmt(1, 0x1000, &[(0x1b, 0x100), (0x0f, 0x101)]);
        for i in 0..150u64 {
            video.pes(
                0x100,
                0xe0,
                i * 3600,
                None,
                &h264_access_unit(i % 25 == 0, 1500),
            );
        }
        let frame = [0xff, 0xf1, 0x4c, 0x80, 0x00, 0xff, 0xfc];
        for i in 0..75u64 {
            // Length-declared audio PES of 4 packets, 80 ms each.
            let mut es = frame.repeat(3);
            es.resize(700, 0);
            audio.pes(0x101, 0xc0, i * 7200, None, &es);
        }
        let mut data = psi.out.clone();
        let (v, a) = (video.out.chunks(PACKET_SIZE), audio.out.chunks(PACKET_SIZE));
        let mut a = a.peekable();
        for (n, vp) in v.enumerate() {
            data.extend_from_slice(vp);
            if n * 2 % 9 < 2 {
                if let Some(ap) = a.next() {
                    data.extend_from_slice(ap);
                }
            }
        }
        let segments = run_all(&mut segmenter(&clock), &data);
        assert!(segments.len() >= 3);
        for s in &segments[1..] {
            let audio: Vec<&[u8]> = s
                .payload
                .chunks(PACKET_SIZE)
                .filter(|p| ts::pid(p) == 0x101)
                .collect();
            assert!(
                audio.first().is_none_or(|p| ts::payload_unit_start(p)),
                "segment {} starts mid audio PES",
                s.seq
            );
        }
        for s in &segments[..segments.len() - 1] {
            let audio = s
                .payload
                .chunks(PACKET_SIZE)
                .filter(|p| ts::pid(p) == 0x101)
                .count();
            assert_eq!(audio % 4, 0, "segment {} ends mid audio PES", s.seq);
        }
        assert!(segments.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    }

    proptest! {
        #[test]
        fn any_split_of_the_input_gives_the_same_segments(cuts in proptest::collection::vec(1usize..5000, 1..40)) {
            let data = av_stream(0, 120, 25);
            let clock = SimulatedClock::new(T0);
            let whole = run_all(&mut segmenter(&clock), &data);
            let mut seg = segmenter(&clock);
            let mut pieces = Vec::new();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at >= data.len() { break; }
                let end = (at + cut).min(data.len());
                pieces.extend(seg.push(&data[at..end]));
                at = end;
            }
            pieces.extend(seg.finish());
            prop_assert_eq!(whole.len(), pieces.len());
            for (a, b) in whole.iter().zip(&pieces) {
                prop_assert_eq!(&a.payload, &b.payload);
                prop_assert_eq!(a.duration, b.duration);
            }
        }

        #[test]
        fn corrupted_input_never_panics_and_stays_bounded(
            flips in proptest::collection::vec((0usize..60_000, any::<u8>()), 0..200),
            chunk in 1usize..3000,
        ) {
            let mut data = av_stream(0, 200, 50);
            for (at, byte) in flips {
                let at = at % data.len();
                data[at] = byte;
            }
            let clock = SimulatedClock::new(T0);
            let mut seg = segmenter(&clock);
            let mut seqs = Vec::new();
            for piece in data.chunks(chunk) {
                for s in seg.push(piece) {
                    prop_assert_eq!(s.payload.len() % PACKET_SIZE, 0);
                    seqs.push(s.seq);
                }
                prop_assert!(seg.buf.len() <= 2 * seg.config.max_segment_bytes);
            }
            seqs.extend(seg.finish().iter().map(|s| s.seq));
            prop_assert!(seqs.windows(2).all(|w| w[1] > w[0]));
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            let clock = SimulatedClock::new(T0);
            let mut seg = segmenter(&clock);
            let _ = seg.push(&data);
            let _ = seg.finish();
            let mut demux = crate::demux::Demuxer::new(None);
            demux.push(&data, |_| {});
            demux.finish(|_| {});
        }
    }
}
