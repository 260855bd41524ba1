//! An MPEG-TS muxer for elementary-stream frames: how an input that does not
//! carry transport stream (RTMP's FLV) becomes the packets the segmenter and
//! everything after it read.
//!
//! One program: H.264 video on [`VIDEO_PID`] (carrying the PCR) and AAC
//! audio on [`AUDIO_PID`] (the PCR moves to it when there is no video).
//! Frames come as the MP4 family stores them: H.264 as length-prefixed NAL
//! units with the parameter sets in a separate decoder configuration, AAC as
//! raw frames with an AudioSpecificConfig. They leave as TS wants them:
//! Annex B with an access unit delimiter and the SPS/PPS before each
//! keyframe (so every segment decodes on its own), AAC with an ADTS header
//! per frame. The PAT and PMT are written before each keyframe (with no
//! video, every [`AUDIO_PSI_INTERVAL`] of audio). Timestamps are the
//! caller's continuous 90 kHz [`Ticks`]; they are written modulo 2^33, so
//! the 33-bit wrap is crossed like any broadcast crosses it. Pure: no I/O.

use bytes::{BufMut, BytesMut};
use dvr_common::Ticks;

use crate::codec::aac::{parse_audio_specific_config, write_adts_header, AdtsHeader};
use crate::codec::h264::{parse_avc_decoder_config, AvcDecoderConfig};
use crate::psi::{finish_section, write_section};
use crate::timestamp::{encode_pes_timestamp, WRAP};
use crate::ts::{PACKET_SIZE, PAT_PID, SYNC_BYTE};

/// The PID of the program's PMT.
pub const PMT_PID: u16 = 0x1000;
/// The PID of the H.264 stream.
pub const VIDEO_PID: u16 = 0x100;
/// The PID of the AAC stream.
pub const AUDIO_PID: u16 = 0x101;
/// The program number in the PAT.
const PROGRAM: u16 = 1;
/// How far the PCR runs behind the DTS it is written with (100 ms): a
/// decoder must have the frame before it is due.
const PCR_LEAD: i64 = 9_000;
/// How often the PAT and PMT are repeated in an audio-only stream.
pub const AUDIO_PSI_INTERVAL: Ticks = Ticks(45_000);
/// An access unit delimiter (primary_pic_type 7: any slice type).
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Why a frame or a configuration could not be muxed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    /// The AVC sequence header does not parse.
    #[error("invalid AVC decoder configuration record")]
    AvcConfig,
    /// The AAC sequence header does not parse or names what ADTS cannot carry.
    #[error("invalid or unsupported AAC AudioSpecificConfig")]
    AacConfig,
    /// A frame came before its track's sequence header.
    #[error("{0} frame before its sequence header")]
    NoConfig(&'static str),
    /// A NAL unit's length prefix runs past the frame.
    #[error("a NAL unit length runs past the end of the frame")]
    NalLength,
    /// An AAC frame longer than ADTS can say (8 KiB).
    #[error("AAC frame of {0} bytes is too long for ADTS")]
    AacFrameTooLong(usize),
}

/// The muxer's state: the tracks' configurations and the continuity
/// counters.
#[derive(Debug, Default)]
pub struct TsMuxer {
    video: Option<AvcDecoderConfig>,
    audio: Option<AdtsHeader>,
    pmt_version: u8,
    /// The track set changed: PSI goes out before the next frame.
    psi_due: bool,
    last_psi: Option<Ticks>,
    pat_cc: u8,
    pmt_cc: u8,
    video_cc: u8,
    audio_cc: u8,
    /// The elementary stream being built, kept to reuse its allocation.
    es: Vec<u8>,
}

impl TsMuxer {
    /// A muxer with no track yet.
    pub fn new() -> Self {
        TsMuxer {
            psi_due: true,
            ..TsMuxer::default()
        }
    }

    /// Whether a video track is configured.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Whether an audio track is configured.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Takes an AVCDecoderConfigurationRecord: the video track starts, or
    /// its parameter sets change (sent before the next keyframe).
    pub fn set_video_config(&mut self, record: &[u8]) -> Result<(), MuxError> {
        let config = parse_avc_decoder_config(record).ok_or(MuxError::AvcConfig)?;
        if self.video.replace(config).is_none() {
            self.tracks_changed();
        }
        Ok(())
    }

    /// Takes an AudioSpecificConfig: the audio track starts or changes.
    pub fn set_audio_config(&mut self, asc: &[u8]) -> Result<(), MuxError> {
        let config = parse_audio_specific_config(asc).ok_or(MuxError::AacConfig)?;
        if self.audio.replace(config).is_none() {
            self.tracks_changed();
        }
        Ok(())
    }

    fn tracks_changed(&mut self) {
        self.pmt_version = (self.pmt_version + 1) & 0x1f;
        self.psi_due = true;
    }

    /// Muxes one video frame of length-prefixed NAL units (AVC, the FLV and
    /// MP4 form) decoded at `dts` and shown at `pts`, appending packets to
    /// `out`.
    pub fn write_video(
        &mut self,
        dts: Ticks,
        pts: Ticks,
        keyframe: bool,
        frame: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), MuxError> {
        let config = self.video.as_ref().ok_or(MuxError::NoConfig("video"))?;
        let mut es = std::mem::take(&mut self.es);
        es.clear();
        let built = annex_b(config, keyframe, frame, &mut es);
        if let Err(e) = built {
            self.es = es;
            return Err(e);
        }
        if keyframe || self.psi_due {
            self.write_psi(dts, out);
        }
        let header = pes_header(0xe0, pts, Some(dts), 0);
        let mut cc = self.video_cc;
        write_pes(out, VIDEO_PID, &mut cc, &header, &es, Some(dts), keyframe);
        self.video_cc = cc;
        self.es = es;
        Ok(())
    }

    /// Muxes one raw AAC frame shown at `pts`, appending packets to `out`.
    pub fn write_audio(
        &mut self,
        pts: Ticks,
        frame: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), MuxError> {
        let config = self.audio.as_ref().ok_or(MuxError::NoConfig("audio"))?;
        let adts =
            write_adts_header(config, frame.len()).ok_or(MuxError::AacFrameTooLong(frame.len()))?;
        let audio_only = self.video.is_none();
        let psi_due = self.psi_due
            || (audio_only
                && self
                    .last_psi
                    .is_none_or(|t| (pts.0 - t.0).abs() >= AUDIO_PSI_INTERVAL.0));
        if psi_due {
            self.write_psi(pts, out);
        }
        let mut es = std::mem::take(&mut self.es);
        es.clear();
        es.extend_from_slice(&adts);
        es.extend_from_slice(frame);
        let header = pes_header(0xc0, pts, None, es.len());
        let mut cc = self.audio_cc;
        let pcr = audio_only.then_some(pts);
        write_pes(out, AUDIO_PID, &mut cc, &header, &es, pcr, audio_only);
        self.audio_cc = cc;
        self.es = es;
        Ok(())
    }

    /// The PCR PID: the video's, else the audio's.
    fn pcr_pid(&self) -> u16 {
        if self.video.is_some() {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    fn write_psi(&mut self, at: Ticks, out: &mut BytesMut) {
        write_section(out, PAT_PID, &pat_section(), &mut self.pat_cc);
        let pmt = self.pmt_section();
        write_section(out, PMT_PID, &pmt, &mut self.pmt_cc);
        self.psi_due = false;
        self.last_psi = Some(at);
    }

    /// The PMT listing the configured tracks (stream type 0x1b H.264, 0x0f
    /// AAC in ADTS).
    fn pmt_section(&self) -> Vec<u8> {
        let mut s = vec![0x02, 0xb0, 0];
        s.extend_from_slice(&PROGRAM.to_be_bytes());
        s.push(0xc1 | self.pmt_version << 1);
        s.extend_from_slice(&[0, 0]);
        s.extend_from_slice(&(0xe000 | self.pcr_pid()).to_be_bytes());
        s.extend_from_slice(&[0xf0, 0]);
        let tracks = [
            (self.video.is_some(), 0x1b, VIDEO_PID),
            (self.audio.is_some(), 0x0f, AUDIO_PID),
        ];
        for (_, stream_type, pid) in tracks.iter().filter(|t| t.0) {
            s.push(*stream_type);
            s.extend_from_slice(&(0xe000 | pid).to_be_bytes());
            s.extend_from_slice(&[0xf0, 0]);
        }
        finish_section(s)
    }
}

/// The PAT listing the one program.
fn pat_section() -> Vec<u8> {
    let mut s = vec![0x00, 0xb0, 0, 0, 1, 0xc1, 0, 0];
    s.extend_from_slice(&PROGRAM.to_be_bytes());
    s.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
    finish_section(s)
}

/// Appends the Annex B form of a length-prefixed frame to `es`: an AUD,
/// the parameter sets when it is a keyframe that does not carry its own,
/// then its NAL units (any AUD of its own dropped).
fn annex_b(
    config: &AvcDecoderConfig,
    keyframe: bool,
    frame: &[u8],
    es: &mut Vec<u8>,
) -> Result<(), MuxError> {
    let size = config.nal_length_size;
    let mut nals = Vec::new();
    let mut rest = frame;
    while !rest.is_empty() {
        let prefix = rest.get(..size).ok_or(MuxError::NalLength)?;
        let len = prefix
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        let nal = rest.get(size..size + len).ok_or(MuxError::NalLength)?;
        rest = &rest[size + len..];
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    let nal_type = |nal: &[u8]| nal[0] & 0x1f;
    es.reserve(frame.len() + 64);
    es.extend_from_slice(&AUD);
    let idr = keyframe || nals.iter().any(|n| nal_type(n) == 5);
    if idr && !nals.iter().any(|n| nal_type(n) == 7) {
        for set in config.sps.iter().chain(&config.pps) {
            es.extend_from_slice(&START_CODE);
            es.extend_from_slice(set);
        }
    }
    for nal in nals.into_iter().filter(|n| nal_type(n) != 9) {
        es.extend_from_slice(&START_CODE);
        es.extend_from_slice(nal);
    }
    Ok(())
}

/// A PES header for stream `stream_id` with `es_len` bytes after it (0 for
/// video: unbounded).
fn pes_header(stream_id: u8, pts: Ticks, dts: Option<Ticks>, es_len: usize) -> Vec<u8> {
    let wrap = |t: Ticks| t.0.rem_euclid(WRAP) as u64;
    let dts = dts.filter(|&d| d != pts);
    let header_data = if dts.is_some() { 10 } else { 5 };
    let length = if es_len == 0 {
        0
    } else {
        u16::try_from(es_len + 3 + header_data).unwrap_or(0)
    };
    let mut h = vec![0, 0, 1, stream_id];
    h.extend_from_slice(&length.to_be_bytes());
    // '10', not scrambled, data_alignment_indicator.
    h.push(0x84);
    match dts {
        Some(dts) => {
            h.extend_from_slice(&[0xc0, 10]);
            h.extend_from_slice(&encode_pes_timestamp(0b0011, wrap(pts)));
            h.extend_from_slice(&encode_pes_timestamp(0b0001, wrap(dts)));
        }
        None => {
            h.extend_from_slice(&[0x80, 5]);
            h.extend_from_slice(&encode_pes_timestamp(0b0010, wrap(pts)));
        }
    }
    h
}

/// Packetizes one PES (`header` then `es`) on `pid`. The first packet
/// carries the PCR (`pcr` minus [`PCR_LEAD`]) and the random access
/// indicator when asked; the last is filled up with adaptation-field
/// stuffing.
fn write_pes(
    out: &mut BytesMut,
    pid: u16,
    cc: &mut u8,
    header: &[u8],
    es: &[u8],
    pcr: Option<Ticks>,
    random_access: bool,
) {
    let total = header.len() + es.len();
    out.reserve((total / 170 + 2) * PACKET_SIZE);
    let mut written = 0;
    let mut first = true;
    while written < total {
        // The adaptation field's content after its length byte.
        let mut af = Vec::new();
        if first && (pcr.is_some() || random_access) {
            af.push(if random_access { 0x40 } else { 0 } | if pcr.is_some() { 0x10 } else { 0 });
            if let Some(pcr) = pcr {
                let base = (pcr.0 - PCR_LEAD).rem_euclid(WRAP) as u64;
                af.extend_from_slice(&[
                    (base >> 25) as u8,
                    (base >> 17) as u8,
                    (base >> 9) as u8,
                    (base >> 1) as u8,
                    ((base & 1) as u8) << 7 | 0x7e,
                    0,
                ]);
            }
        }
        let mut af_total = if af.is_empty() { 0 } else { 1 + af.len() };
        let left = total - written;
        if left < PACKET_SIZE - 4 - af_total {
            af_total = PACKET_SIZE - 4 - left;
        }
        let take = PACKET_SIZE - 4 - af_total;
        let pusi = if first { 0x40 } else { 0 };
        out.put_u8(SYNC_BYTE);
        out.put_u8(pusi | (pid >> 8) as u8 & 0x1f);
        out.put_u8(pid as u8);
        out.put_u8(if af_total > 0 { 0x30 } else { 0x10 } | *cc);
        *cc = (*cc + 1) & 0x0f;
        if af_total > 0 {
            out.put_u8((af_total - 1) as u8);
            if af_total > 1 {
                if af.is_empty() {
                    af.push(0);
                }
                out.put_slice(&af);
                out.put_bytes(0xff, af_total - 1 - af.len());
            }
        }
        let mut remaining = take;
        if written < header.len() {
            let n = (header.len() - written).min(remaining);
            out.put_slice(&header[written..written + n]);
            written += n;
            remaining -= n;
        }
        if remaining > 0 {
            let from = written - header.len();
            out.put_slice(&es[from..from + remaining]);
            written += remaining;
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demux::{DemuxEvent, Demuxer};
    use crate::segmenter::{Segmenter, SegmenterConfig};
    use dvr_common::{SimulatedClock, UtcMs};
    use std::sync::Arc;

    /// ffmpeg's libx264 parameter sets for 1280x720 High (see codec::h264).
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn avcc() -> Vec<u8> {
        let mut r = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
        r.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        r.extend_from_slice(SPS);
        r.push(1);
        r.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        r.extend_from_slice(PPS);
        r
    }

    /// A length-prefixed frame: an IDR or a P slice of `size` bytes.
    fn frame(idr: bool, size: usize) -> Vec<u8> {
        let mut nal = vec![if idr { 0x65 } else { 0x41 }, 0x88];
        nal.resize(size, 0x5a);
        let mut f = (nal.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&nal);
        f
    }

    struct Demuxed {
        video: Vec<(i64, i64, bool, Vec<u8>)>,
        audio: Vec<(i64, Vec<u8>)>,
    }

    fn demux(ts: &[u8]) -> Demuxed {
        let mut d = Demuxer::new(None);
        let mut got = Demuxed {
            video: Vec::new(),
            audio: Vec::new(),
        };
        let mut on = |e: DemuxEvent<'_>| {
            if let DemuxEvent::AccessUnit(au) = e {
                let pts = au.pts.map_or(-1, |t| t.0);
                if au.pid == VIDEO_PID {
                    let dts = au.dts.map_or(-1, |t| t.0);
                    got.video
                        .push((dts, pts, au.random_access, au.data.to_vec()));
                } else {
                    got.audio.push((pts, au.data.to_vec()));
                }
            }
        };
        d.push(ts, &mut on);
        d.finish(&mut on);
        got
    }

    /// 30 frames a second with B-frame style composition offsets, AAC at
    /// 48 kHz, starting `start` ticks in.
    fn mux_av(start: i64, seconds: i64) -> (BytesMut, Vec<(i64, i64, bool)>, Vec<i64>) {
        let mut mux = TsMuxer::new();
        mux.set_video_config(&avcc()).unwrap();
        mux.set_audio_config(&[0x11, 0x90]).unwrap();
        let mut out = BytesMut::new();
        let mut video = Vec::new();
        let mut audio = Vec::new();
        let mut next_audio = start;
        for i in 0..30 * seconds {
            let dts = start + i * 3000;
            let pts = dts + if i % 2 == 0 { 6000 } else { 3000 };
            let key = i % 30 == 0;
            while next_audio <= dts {
                let raw = vec![0x21; 300];
                mux.write_audio(Ticks(next_audio), &raw, &mut out).unwrap();
                audio.push(next_audio);
                next_audio += 1920; // 1024 samples at 48 kHz
            }
            mux.write_video(
                Ticks(dts),
                Ticks(pts),
                key,
                &frame(key, 900 + i as usize * 7),
                &mut out,
            )
            .unwrap();
            video.push((dts, pts, key));
        }
        (out, video, audio)
    }

    #[test]
    fn the_demuxer_reads_back_frames_timestamps_and_keyframes() {
        let (ts, video, audio) = mux_av(90_000, 2);
        assert_eq!(ts.len() % PACKET_SIZE, 0);
        let got = demux(&ts);
        assert_eq!(got.video.len(), video.len());
        for (i, ((dts, pts, key), (gdts, gpts, gkey, data))) in
            video.iter().zip(&got.video).enumerate()
        {
            assert_eq!((gdts, gpts, gkey), (dts, pts, key), "frame {i}");
            assert!(data.starts_with(&AUD), "frame {i} starts with an AUD");
            let slice = &data[data.len() - (900 + i * 7)..];
            assert_eq!(slice[0], if *key { 0x65 } else { 0x41 });
            let has_sps = data.windows(SPS.len()).any(|w| w == SPS);
            assert_eq!(has_sps, *key, "SPS before each keyframe only");
        }
        assert_eq!(got.audio.iter().map(|a| a.0).collect::<Vec<_>>(), audio);
        let adts = crate::codec::aac::parse_adts(&got.audio[0].1).unwrap();
        assert_eq!(
            (adts.sample_rate, adts.channel_config, adts.frame_length),
            (48000, 2, 307)
        );
    }

    #[test]
    fn the_segmenter_cuts_at_the_keyframes_and_probes_the_tracks() {
        let (ts, _, _) = mux_av(0, 4);
        let clock = SimulatedClock::new(UtcMs(1_800_000_000_000));
        let mut seg = Segmenter::new(
            SegmenterConfig::with_target(Ticks::from_secs(1)),
            Arc::new(clock),
        );
        let mut segments = seg.push(&ts);
        segments.extend(seg.finish());
        assert_eq!(segments.len(), 4, "one segment per one-second GOP");
        for (i, s) in segments.iter().enumerate() {
            assert_eq!(s.pts_start, Ticks(6000 + i as i64 * 90_000), "{i}");
            // The last segment ends with its last frame: its length is
            // known to within the frame the stream never finished.
            let last = i == segments.len() - 1;
            assert!(
                s.duration == Ticks(90_000) || (last && (87_000..=90_000).contains(&s.duration.0)),
                "{i}: {:?}",
                s.duration
            );
            let tracks = &s.codecs.tracks;
            assert_eq!(tracks.len(), 2);
            assert_eq!(
                tracks[0].video.as_ref().map(|v| (v.width, v.height)),
                Some((1280, 720))
            );
            assert_eq!(tracks[1].audio.as_ref().map(|a| a.sample_rate), Some(48000));
        }
    }

    #[test]
    fn timestamps_cross_the_33_bit_wrap() {
        let start = WRAP - 45_000;
        let (ts, video, _) = mux_av(start, 1);
        let got = demux(&ts);
        // The demuxer unwraps: the frames after the wrap keep counting up.
        let dts: Vec<i64> = got.video.iter().map(|v| v.0).collect();
        assert_eq!(dts, video.iter().map(|v| v.0).collect::<Vec<_>>());
        assert!(dts.last().is_some_and(|&d| d > WRAP));
    }

    #[test]
    fn audio_only_streams_carry_the_pcr_and_repeat_the_psi() {
        let mut mux = TsMuxer::new();
        mux.set_audio_config(&[0x11, 0x90]).unwrap();
        let mut out = BytesMut::new();
        for i in 0..100 {
            mux.write_audio(Ticks(i * 1920), &[1; 200], &mut out)
                .unwrap();
        }
        let pmts = out
            .chunks(PACKET_SIZE)
            .filter(|p| crate::ts::pid(p) == PMT_PID)
            .count();
        // 100 frames are 2.1 s: PSI at 0, 0.5, 1, 1.5 and 2 s.
        assert_eq!(pmts, 5);
        let pcrs: Vec<u64> = out
            .chunks(PACKET_SIZE)
            .filter_map(crate::ts::pcr_base)
            .collect();
        assert_eq!(pcrs.len(), 100);
        assert_eq!(demux(&out).audio.len(), 100);
    }

    #[test]
    fn bad_input_is_refused() {
        let mut mux = TsMuxer::new();
        let mut out = BytesMut::new();
        assert_eq!(
            mux.write_video(Ticks(0), Ticks(0), true, &frame(true, 10), &mut out),
            Err(MuxError::NoConfig("video"))
        );
        assert_eq!(mux.set_video_config(&[1, 2, 3]), Err(MuxError::AvcConfig));
        mux.set_video_config(&avcc()).unwrap();
        let mut truncated = frame(true, 10);
        truncated.pop();
        assert_eq!(
            mux.write_video(Ticks(0), Ticks(0), true, &truncated, &mut out),
            Err(MuxError::NalLength)
        );
        assert_eq!(
            mux.set_audio_config(&[0x17, 0x80]),
            Err(MuxError::AacConfig)
        );
        assert!(out.is_empty());
    }
}
