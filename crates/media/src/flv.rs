//! FLV tag bodies (what RTMP audio and video messages carry) read with
//! bounds checks, and turned into transport stream with [`crate::ts_mux`].
//!
//! Only what an encoder publishing H.264 and AAC sends is understood: the
//! AVC sequence header (an `avcC` record), AVC NAL units with their
//! composition time, the AAC sequence header (an AudioSpecificConfig) and
//! raw AAC frames. Anything else is named, not guessed at: another codec
//! (Enhanced RTMP's `hvc1`, VP6, MP3 …) is [`FlvError::UnsupportedVideo`] or
//! [`FlvError::UnsupportedAudio`], so the caller can refuse the publish with
//! a line that says why. Video info/command frames and the end-of-sequence
//! marker carry no picture and are skipped.
//!
//! RTMP timestamps are 32-bit milliseconds; [`FlvToTs`] extends them past
//! the wrap (about 49.7 days) and maps them to 90 kHz ticks starting at
//! [`TS_OFFSET`], so the PCR that runs behind the first DTS and a negative
//! composition time stay positive. Pure: no I/O.

use bytes::BytesMut;
use dvr_common::Ticks;

use crate::timestamp::Unwrapper;
use crate::ts_mux::{MuxError, TsMuxer};

/// Where RTMP time 0 lands on the 90 kHz timeline (one second).
pub const TS_OFFSET: Ticks = Ticks(90_000);
/// RTMP timestamps wrap at 2^32 milliseconds.
const RTMP_WRAP: i64 = 1 << 32;

/// What a video tag body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoTag<'a> {
    /// An AVC sequence header: an AVCDecoderConfigurationRecord.
    AvcConfig(&'a [u8]),
    /// AVC NAL units, length-prefixed, shown `composition_ms` after their
    /// decoding time.
    AvcFrame {
        /// FLV frame type 1: a keyframe.
        keyframe: bool,
        /// The signed 24-bit composition time offset in milliseconds.
        composition_ms: i32,
        /// The length-prefixed NAL units.
        data: &'a [u8],
    },
    /// Nothing to record: an end-of-sequence marker, a video info or
    /// command frame, an empty body.
    Skip,
}

/// What an audio tag body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioTag<'a> {
    /// An AAC sequence header: an AudioSpecificConfig.
    AacConfig(&'a [u8]),
    /// One raw AAC frame.
    AacFrame(&'a [u8]),
    /// An empty body.
    Skip,
}

/// Why a tag body cannot be recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The body ends inside its own header.
    #[error("{0} tag body truncated")]
    Truncated(&'static str),
    /// A video codec other than H.264.
    #[error("video codec {0} is not supported (H.264 only)")]
    UnsupportedVideo(String),
    /// An audio codec other than AAC.
    #[error("audio codec {0} is not supported (AAC only)")]
    UnsupportedAudio(String),
    /// An AVC or AAC packet type that does not exist.
    #[error("unknown {0} packet type {1}")]
    PacketType(&'static str, u8),
    /// The frame or configuration does not mux.
    #[error(transparent)]
    Mux(#[from] MuxError),
}

/// Names of the legacy FLV video codec ids, for the refusal.
fn video_codec_name(id: u8) -> String {
    match id {
        2 => "Sorenson H.263".to_owned(),
        3 => "Screen video".to_owned(),
        4 => "VP6".to_owned(),
        5 => "VP6 with alpha".to_owned(),
        6 => "Screen video 2".to_owned(),
        12 => "H.265 (legacy id 12)".to_owned(),
        n => format!("id {n}"),
    }
}

/// Names of the FLV sound formats, for the refusal.
fn audio_codec_name(id: u8) -> String {
    match id {
        0..=1 | 3 => "PCM/ADPCM".to_owned(),
        2 | 14 => "MP3".to_owned(),
        4..=6 => "Nellymoser".to_owned(),
        7 | 8 => "G.711".to_owned(),
        9 => "Enhanced RTMP audio".to_owned(),
        11 => "Speex".to_owned(),
        n => format!("id {n}"),
    }
}

/// Checks the codec ids a publisher's `onMetaData` declares
/// (`videocodecid`, `audiocodecid`; Enhanced RTMP writes a FourCC there as a
/// number), so a stream in a codec that cannot be recorded is refused
/// before any of its media, not at its first video tag after some audio.
pub fn check_declared_codecs(video: Option<u32>, audio: Option<u32>) -> Result<(), FlvError> {
    match video {
        None | Some(7) => {}
        Some(id) if id > 0xff => {
            let fourcc = String::from_utf8_lossy(&id.to_be_bytes()).into_owned();
            return Err(FlvError::UnsupportedVideo(format!(
                "{fourcc} (Enhanced RTMP)"
            )));
        }
        Some(id) => return Err(FlvError::UnsupportedVideo(video_codec_name(id as u8))),
    }
    match audio {
        None | Some(10) => Ok(()),
        Some(id) if id > 0xff => {
            let fourcc = String::from_utf8_lossy(&id.to_be_bytes()).into_owned();
            Err(FlvError::UnsupportedAudio(format!(
                "{fourcc} (Enhanced RTMP)"
            )))
        }
        Some(id) => Err(FlvError::UnsupportedAudio(audio_codec_name(id as u8))),
    }
}

/// Reads a video tag body.
pub fn parse_video(body: &[u8]) -> Result<VideoTag<'_>, FlvError> {
    let Some(&first) = body.first() else {
        return Ok(VideoTag::Skip);
    };
    if first & 0x80 != 0 {
        // Enhanced RTMP: IsExHeader, then a FourCC.
        let fourcc = body.get(1..5).ok_or(FlvError::Truncated("video"))?;
        let name = String::from_utf8_lossy(fourcc).into_owned();
        return Err(FlvError::UnsupportedVideo(format!(
            "{name} (Enhanced RTMP)"
        )));
    }
    let frame_type = first >> 4;
    let codec = first & 0x0f;
    if frame_type == 5 {
        return Ok(VideoTag::Skip);
    }
    if codec != 7 {
        return Err(FlvError::UnsupportedVideo(video_codec_name(codec)));
    }
    let header = body.get(1..5).ok_or(FlvError::Truncated("video"))?;
    let data = &body[5..];
    // SI24, sign-extended.
    let composition_ms = i32::from_be_bytes([header[1], header[2], header[3], 0]) >> 8;
    match header[0] {
        0 => Ok(VideoTag::AvcConfig(data)),
        1 if data.is_empty() => Ok(VideoTag::Skip),
        1 => Ok(VideoTag::AvcFrame {
            keyframe: frame_type == 1,
            composition_ms,
            data,
        }),
        2 => Ok(VideoTag::Skip),
        n => Err(FlvError::PacketType("AVC", n)),
    }
}

/// Reads an audio tag body.
pub fn parse_audio(body: &[u8]) -> Result<AudioTag<'_>, FlvError> {
    let Some(&first) = body.first() else {
        return Ok(AudioTag::Skip);
    };
    let format = first >> 4;
    if format != 10 {
        return Err(FlvError::UnsupportedAudio(audio_codec_name(format)));
    }
    let packet_type = *body.get(1).ok_or(FlvError::Truncated("audio"))?;
    let data = &body[2..];
    match packet_type {
        0 => Ok(AudioTag::AacConfig(data)),
        1 if data.is_empty() => Ok(AudioTag::Skip),
        1 => Ok(AudioTag::AacFrame(data)),
        n => Err(FlvError::PacketType("AAC", n)),
    }
}

/// One publish's FLV tags in, transport stream out.
#[derive(Debug, Default)]
pub struct FlvToTs {
    mux: TsMuxer,
    video_clock: Unwrapper,
    audio_clock: Unwrapper,
    /// Media frames muxed (not sequence headers).
    pub frames: u64,
}

impl FlvToTs {
    /// A converter for a new publish.
    pub fn new() -> Self {
        FlvToTs {
            mux: TsMuxer::new(),
            ..FlvToTs::default()
        }
    }

    /// The 90 kHz time of RTMP millisecond timestamp `ms` on `clock`.
    fn ticks(clock: &mut Unwrapper, ms: u32) -> i64 {
        clock.unwrap_period(u64::from(ms), RTMP_WRAP) * 90 + TS_OFFSET.0
    }

    /// Takes a video message stamped `timestamp_ms`; appends what it muxes
    /// to `out`. Returns whether it was a media frame.
    pub fn push_video(
        &mut self,
        timestamp_ms: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<bool, FlvError> {
        match parse_video(body)? {
            VideoTag::AvcConfig(record) => {
                self.mux.set_video_config(record)?;
                Ok(false)
            }
            VideoTag::AvcFrame {
                keyframe,
                composition_ms,
                data,
            } => {
                let dts = Self::ticks(&mut self.video_clock, timestamp_ms);
                let pts = dts + i64::from(composition_ms) * 90;
                self.mux
                    .write_video(Ticks(dts), Ticks(pts), keyframe, data, out)?;
                self.frames += 1;
                Ok(true)
            }
            VideoTag::Skip => Ok(false),
        }
    }

    /// Takes an audio message stamped `timestamp_ms`; appends what it muxes
    /// to `out`. Returns whether it was a media frame.
    pub fn push_audio(
        &mut self,
        timestamp_ms: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<bool, FlvError> {
        match parse_audio(body)? {
            AudioTag::AacConfig(asc) => {
                self.mux.set_audio_config(asc)?;
                Ok(false)
            }
            AudioTag::AacFrame(frame) => {
                let pts = Self::ticks(&mut self.audio_clock, timestamp_ms);
                self.mux.write_audio(Ticks(pts), frame, out)?;
                self.frames += 1;
                Ok(true)
            }
            AudioTag::Skip => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demux::{DemuxEvent, Demuxer};

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn avc_sequence_header() -> Vec<u8> {
        let mut b = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
        b.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        b.extend_from_slice(SPS);
        b.push(1);
        b.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        b.extend_from_slice(PPS);
        b
    }

    fn avc_frame(key: bool, composition_ms: i32) -> Vec<u8> {
        let cts = composition_ms.to_be_bytes();
        let mut b = vec![if key { 0x17 } else { 0x27 }, 1, cts[1], cts[2], cts[3]];
        let nal = [if key { 0x65 } else { 0x41 }, 0x88, 0x80, 0x40];
        b.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        b.extend_from_slice(&nal);
        b
    }

    #[test]
    fn tag_bodies_parse_with_bounds_checks() {
        assert_eq!(
            parse_video(&avc_frame(false, -40)),
            Ok(VideoTag::AvcFrame {
                keyframe: false,
                composition_ms: -40,
                data: &[0, 0, 0, 4, 0x41, 0x88, 0x80, 0x40]
            })
        );
        assert!(matches!(
            parse_video(&avc_sequence_header()),
            Ok(VideoTag::AvcConfig(_))
        ));
        assert_eq!(parse_video(&[]), Ok(VideoTag::Skip));
        assert_eq!(parse_video(&[0x52, 0]), Ok(VideoTag::Skip), "command frame");
        assert_eq!(
            parse_video(&[0x17, 1, 0]),
            Err(FlvError::Truncated("video"))
        );
        assert_eq!(
            parse_video(&[0x17, 9, 0, 0, 0]),
            Err(FlvError::PacketType("AVC", 9))
        );
        let e = parse_video(&[0x90, b'h', b'v', b'c', b'1', 0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "video codec hvc1 (Enhanced RTMP) is not supported (H.264 only)"
        );
        assert_eq!(
            parse_video(&[0x90, b'h']),
            Err(FlvError::Truncated("video"))
        );
        assert!(matches!(
            parse_video(&[0x14, 0]),
            Err(FlvError::UnsupportedVideo(_))
        ));
        assert_eq!(
            parse_audio(&[0xaf, 0, 0x11, 0x90]),
            Ok(AudioTag::AacConfig(&[0x11, 0x90]))
        );
        assert_eq!(parse_audio(&[0xaf, 1, 7]), Ok(AudioTag::AacFrame(&[7])));
        assert_eq!(parse_audio(&[0xaf]), Err(FlvError::Truncated("audio")));
        assert_eq!(
            parse_audio(&[0x2f, 1]).unwrap_err().to_string(),
            "audio codec MP3 is not supported (AAC only)"
        );
    }

    #[test]
    fn declared_codecs_other_than_h264_and_aac_are_refused() {
        assert_eq!(check_declared_codecs(Some(7), Some(10)), Ok(()));
        assert_eq!(check_declared_codecs(None, Some(10)), Ok(()));
        assert_eq!(
            check_declared_codecs(Some(2), Some(10))
                .unwrap_err()
                .to_string(),
            "video codec Sorenson H.263 is not supported (H.264 only)"
        );
        let hvc1 = u32::from_be_bytes(*b"hvc1");
        assert_eq!(
            check_declared_codecs(Some(hvc1), None)
                .unwrap_err()
                .to_string(),
            "video codec hvc1 (Enhanced RTMP) is not supported (H.264 only)"
        );
        assert!(check_declared_codecs(Some(7), Some(2)).is_err());
    }

    #[test]
    fn timestamps_extend_past_32_bits_and_frames_read_back() {
        let mut conv = FlvToTs::new();
        let mut out = BytesMut::new();
        assert!(!conv
            .push_video(0, &avc_sequence_header(), &mut out)
            .unwrap());
        assert!(!conv
            .push_audio(0, &[0xaf, 0, 0x11, 0x90], &mut out)
            .unwrap());
        assert!(out.is_empty(), "configurations alone write nothing");
        // Start 200 ms before the 32-bit millisecond wrap.
        let start = u32::MAX - 199;
        for i in 0..20u32 {
            let ms = start.wrapping_add(i * 40);
            conv.push_audio(ms, &[0xaf, 1, 0x21, 0x10], &mut out)
                .unwrap();
            conv.push_video(ms, &avc_frame(i % 10 == 0, 80), &mut out)
                .unwrap();
        }
        assert_eq!(conv.frames, 40);
        let mut video = Vec::new();
        let mut audio = 0;
        let mut d = Demuxer::new(None);
        let mut on = |e: DemuxEvent<'_>| {
            if let DemuxEvent::AccessUnit(au) = e {
                if au.pid == crate::ts_mux::VIDEO_PID {
                    video.push((au.dts.map(|t| t.0), au.pts.map(|t| t.0), au.random_access));
                } else {
                    audio += 1;
                }
            }
        };
        d.push(&out, &mut on);
        d.finish(&mut on);
        assert_eq!(audio, 20);
        assert_eq!(video.len(), 20);
        let first = (i64::from(start) * 90 + TS_OFFSET.0) % crate::timestamp::WRAP;
        for (i, (dts, pts, key)) in video.into_iter().enumerate() {
            let want = first + i as i64 * 3600;
            assert_eq!(dts, Some(want), "{i}");
            assert_eq!(pts, Some(want + 7200), "{i}");
            assert_eq!(key, i % 10 == 0, "{i}");
        }
    }

    #[test]
    fn a_frame_before_its_sequence_header_is_an_error() {
        let mut conv = FlvToTs::new();
        let mut out = BytesMut::new();
        assert_eq!(
            conv.push_video(0, &avc_frame(true, 0), &mut out),
            Err(FlvError::Mux(MuxError::NoConfig("video")))
        );
        assert_eq!(
            conv.push_audio(0, &[0xaf, 1, 1], &mut out),
            Err(FlvError::Mux(MuxError::NoConfig("audio")))
        );
    }

    proptest::proptest! {
        /// Any tag bodies, after real sequence headers or not: no panic,
        /// whole packets out, nothing written for a refused tag.
        #[test]
        fn any_tags_mux_to_whole_packets_or_are_refused(
            configs in proptest::bool::ANY,
            tags in proptest::collection::vec(
                (proptest::bool::ANY, proptest::num::u32::ANY,
                 proptest::collection::vec(proptest::num::u8::ANY, 0..300)),
                0..40,
            ),
        ) {
            let mut conv = FlvToTs::new();
            let mut out = BytesMut::new();
            if configs {
                conv.push_video(0, &avc_sequence_header(), &mut out).unwrap();
                conv.push_audio(0, &[0xaf, 0, 0x11, 0x90], &mut out).unwrap();
            }
            for (video, ms, mut body) in tags {
                // Steer half the bodies to the H.264/AAC paths.
                if let Some(first) = body.first_mut() {
                    if ms % 2 == 0 {
                        *first = if video { 0x17 | (*first & 0x20) } else { 0xaf };
                    }
                }
                let before = out.len();
                let pushed = if video {
                    conv.push_video(ms, &body, &mut out)
                } else {
                    conv.push_audio(ms, &body, &mut out)
                };
                proptest::prop_assert_eq!(out.len() % crate::ts::PACKET_SIZE, 0);
                if pushed.is_err() {
                    proptest::prop_assert_eq!(out.len(), before);
                }
            }
        }
    }
}
