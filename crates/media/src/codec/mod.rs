//! What is inside each elementary stream, as players need to be told.
//!
//! The PMT says which codec a PID carries ([`Codec::from_pmt`]); the first
//! access units say its parameters ([`probe_video`], [`probe_audio`]): size
//! and frame rate from the H.264/H.265 SPS, sample rate and channels from the
//! ADTS, MPEG audio or AC-3 frame header. Together they give the RFC 6381
//! codec strings (`avc1.64001f`, `hvc1.1.6.L93.B0`, `mp4a.40.2`) that master
//! playlists and DASH manifests carry.

pub mod aac;
pub mod ac3;
pub mod h264;
pub mod h265;
pub mod mpa;
pub mod nal;

use serde::{Deserialize, Serialize};

/// A codec the DVR understands, or the stream type of one it passes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// H.264 / AVC (stream type 0x1b).
    H264,
    /// H.265 / HEVC (stream type 0x24).
    H265,
    /// AAC in ADTS (stream type 0x0f).
    Aac,
    /// AAC in LATM (stream type 0x11); passed through, not probed.
    AacLatm,
    /// MPEG-1/2 audio layers I to III (stream types 0x03, 0x04).
    MpegAudio,
    /// AC-3 (stream type 0x81, or 0x06 with an AC-3 descriptor).
    Ac3,
    /// E-AC-3 (stream type 0x87, or 0x06 with an enhanced AC-3 descriptor).
    Eac3,
    /// MPEG-2 video (stream type 0x02); passed through, random access unknown.
    Mpeg2Video,
    /// DVB teletext (0x06 with a teletext descriptor).
    Teletext,
    /// DVB subtitles (0x06 with a subtitling descriptor).
    DvbSubtitle,
    /// SCTE-35 splice information (stream type 0x86).
    Scte35,
    /// ID3 timed metadata (stream type 0x15).
    Id3,
    /// Anything else, by stream type; carried untouched.
    Other(u8),
}

/// The broad class of a track.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
    /// Teletext or subtitles.
    Subtitle,
    /// Metadata and signalling (SCTE-35, ID3, private data).
    Data,
}

/// A descriptor from a PMT elementary-stream loop.
#[derive(Clone, Copy, Debug)]
pub struct Descriptor<'a> {
    /// The descriptor tag.
    pub tag: u8,
    /// The descriptor body, without tag and length.
    pub data: &'a [u8],
}

impl Codec {
    /// Identifies the codec of a PMT entry from its stream type and descriptors.
    pub fn from_pmt(stream_type: u8, descriptors: &[Descriptor<'_>]) -> Codec {
        let has_tag = |tag: u8| descriptors.iter().any(|d| d.tag == tag);
        let registration = descriptors.iter().find(|d| d.tag == 0x05).map(|d| d.data);
        match stream_type {
            0x02 => Codec::Mpeg2Video,
            0x03 | 0x04 => Codec::MpegAudio,
            0x0f => Codec::Aac,
            0x11 => Codec::AacLatm,
            0x15 => Codec::Id3,
            0x1b => Codec::H264,
            0x24 => Codec::H265,
            0x81 => Codec::Ac3,
            0x87 => Codec::Eac3,
            0x86 => Codec::Scte35,
            0x06 if has_tag(0x6a) => Codec::Ac3,
            0x06 if has_tag(0x7a) => Codec::Eac3,
            0x06 if has_tag(0x56) => Codec::Teletext,
            0x06 if has_tag(0x59) => Codec::DvbSubtitle,
            0x06 if registration == Some(b"AC-3") => Codec::Ac3,
            0x06 if registration == Some(b"EAC3") => Codec::Eac3,
            0x06 if registration == Some(b"HEVC") => Codec::H265,
            other => Codec::Other(other),
        }
    }

    /// The broad class of this codec.
    pub fn kind(self) -> TrackKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Mpeg2Video => TrackKind::Video,
            Codec::Aac | Codec::AacLatm | Codec::MpegAudio | Codec::Ac3 | Codec::Eac3 => {
                TrackKind::Audio
            }
            Codec::Teletext | Codec::DvbSubtitle => TrackKind::Subtitle,
            Codec::Scte35 | Codec::Id3 | Codec::Other(_) => TrackKind::Data,
        }
    }
}

/// Parameters of a video track, from its sequence parameter set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoParams {
    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub codec_string: String,
    /// Display width in pixels, after cropping.
    pub width: u32,
    /// Display height in pixels, after cropping.
    pub height: u32,
    /// Frames per second as a fraction, when the SPS carries timing info.
    pub frame_rate: Option<FrameRate>,
}

/// A frame rate as a fraction, e.g. 30000/1001.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRate {
    /// Numerator.
    pub num: u32,
    /// Denominator.
    pub den: u32,
}

impl FrameRate {
    /// `num / den` in lowest terms; `None` if either is zero or the reduced
    /// fraction does not fit in `u32`. Takes `u64` because SPS timing fields
    /// are 32-bit and the formulas double them.
    pub(crate) fn reduced(num: u64, den: u64) -> Option<FrameRate> {
        if num == 0 || den == 0 {
            return None;
        }
        let (mut a, mut b) = (num, den);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        Some(FrameRate {
            num: u32::try_from(num / a).ok()?,
            den: u32::try_from(den / a).ok()?,
        })
    }
}

/// How far into a PES payload [`probe_audio`] looks for a frame header. The
/// payload normally starts with one; a few stray bytes are tolerated, but a
/// long search would only find false sync words in garbage.
const AUDIO_SYNC_SEARCH: usize = 64;

/// Video parameters from bytes at the start of an access unit (Annex B, typically AUD, SPS, PPS, ... ). None if no parseable SPS is present.
pub fn probe_video(codec: Codec, es: &[u8]) -> Option<VideoParams> {
    match codec {
        Codec::H264 => h264::probe(es),
        Codec::H265 => h265::probe(es),
        _ => None,
    }
}

/// Audio parameters from the start of a PES payload. Searches the first bytes for a sync word (the payload normally starts at one, but be tolerant of a few leading bytes). None if nothing parseable.
///
/// AC-3 and E-AC-3 share a sync word and are told apart by `bsid`, so either
/// codec accepts either kind of frame and the codec string follows the
/// bitstream: a PMT that mislabels E-AC-3 as AC-3 still yields `ec-3`.
pub fn probe_audio(codec: Codec, es: &[u8]) -> Option<AudioParams> {
    let parse: fn(&[u8]) -> Option<AudioParams> = match codec {
        Codec::Aac => aac::parse_adts_header,
        Codec::MpegAudio => mpa::parse_frame_header,
        Codec::Ac3 | Codec::Eac3 => ac3::parse_sync_frame,
        _ => return None,
    };
    let search = es.len().min(AUDIO_SYNC_SEARCH);
    (0..search).find_map(|at| es.get(at..).and_then(parse))
}

/// Parameters of an audio track, from a frame header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioParams {
    /// RFC 6381 codec string, e.g. `mp4a.40.2`, `ac-3`, `ec-3`, `mp4a.40.34`.
    pub codec_string: String,
    /// Samples per second.
    pub sample_rate: u32,
    /// Number of channels (for AC-3, full-bandwidth channels plus LFE).
    pub channels: u8,
}

/// One elementary stream of the program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// The PID carrying it.
    pub pid: u16,
    /// The PMT stream type.
    pub stream_type: u8,
    /// The codec.
    pub codec: Codec,
    /// Video, audio, subtitle or data.
    pub kind: TrackKind,
    /// ISO 639 language from the PMT, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Video parameters, once an SPS has been seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoParams>,
    /// Audio parameters, once a frame header has been seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioParams>,
}

impl TrackInfo {
    /// The RFC 6381 codec string, once known.
    pub fn codec_string(&self) -> Option<&str> {
        self.video
            .as_ref()
            .map(|v| v.codec_string.as_str())
            .or_else(|| self.audio.as_ref().map(|a| a.codec_string.as_str()))
    }
}

/// Every track of the recorded program.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecSummary {
    /// The program number chosen from the PAT.
    pub program_number: u16,
    /// The tracks, in PMT order.
    pub tracks: Vec<TrackInfo>,
}

impl CodecSummary {
    /// The RFC 6381 `CODECS` attribute value for an HLS variant: the known
    /// codec strings of video and audio tracks, comma-separated, deduplicated.
    pub fn codecs_attribute(&self) -> String {
        let mut out: Vec<&str> = Vec::new();
        for track in &self.tracks {
            if let Some(s) = track.codec_string() {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Every codec, including those without a probe.
    const ALL: [Codec; 13] = [
        Codec::H264,
        Codec::H265,
        Codec::Aac,
        Codec::AacLatm,
        Codec::MpegAudio,
        Codec::Ac3,
        Codec::Eac3,
        Codec::Mpeg2Video,
        Codec::Teletext,
        Codec::DvbSubtitle,
        Codec::Scte35,
        Codec::Id3,
        Codec::Other(0x06),
    ];

    fn probe_all(bytes: &[u8]) {
        for codec in ALL {
            let _ = probe_video(codec, bytes);
            let _ = probe_audio(codec, bytes);
        }
    }

    #[test]
    fn frame_rate_is_reduced() {
        assert_eq!(
            FrameRate::reduced(50, 2),
            Some(FrameRate { num: 25, den: 1 })
        );
        assert_eq!(
            FrameRate::reduced(60000, 2002),
            Some(FrameRate {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(FrameRate::reduced(0, 2), None);
        assert_eq!(FrameRate::reduced(25, 0), None);
        assert_eq!(FrameRate::reduced(u64::from(u32::MAX) + 2, 3), None);
    }

    #[test]
    fn codecs_without_a_probe_give_none() {
        let adts = [0xff, 0xf1, 0x50, 0x40, 0x21, 0x3f, 0xfc];
        assert_eq!(probe_audio(Codec::AacLatm, &adts), None);
        assert_eq!(probe_audio(Codec::H264, &adts), None);
        assert_eq!(probe_video(Codec::Mpeg2Video, &[0, 0, 1, 0xb3, 0x14]), None);
        assert_eq!(probe_video(Codec::Aac, &[0, 0, 1, 0x67, 0x64]), None);
    }

    #[test]
    fn audio_sync_is_searched_only_near_the_start() {
        let adts = [0xff, 0xf1, 0x50, 0x40, 0x21, 0x3f, 0xfc];
        let mut late = vec![0u8; AUDIO_SYNC_SEARCH];
        late.extend_from_slice(&adts);
        assert_eq!(probe_audio(Codec::Aac, &late), None);
        assert!(probe_audio(Codec::Aac, &late[1..]).is_some());
    }

    proptest! {
        #[test]
        fn probes_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..600)) {
            probe_all(&bytes);
        }

        /// Arbitrary bytes behind a real NAL header or sync word, so the
        /// parsers get past their first check and into the variable-length
        /// fields.
        #[test]
        fn probes_never_panic_behind_a_valid_prefix(
            prefix in prop::sample::select(vec![
                &[0u8, 0, 1, 0x67][..],
                &[0, 0, 1, 0x67, 0x64, 0x00, 0x1f][..],
                &[0, 0, 1, 0x42, 0x01][..],
                &[0, 0, 1, 0x42, 0x01, 0x01, 0x01, 0x60][..],
                &[0xff, 0xf1][..],
                &[0xff, 0xfb][..],
                &[0x0b, 0x77][..],
            ]),
            tail in vec(any::<u8>(), 0..400),
        ) {
            let mut bytes = prefix.to_vec();
            bytes.extend_from_slice(&tail);
            probe_all(&bytes);
        }
    }
}
