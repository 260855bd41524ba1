//! ADTS header → [`AudioParams`].
//!
//! AAC in MPEG-TS (stream type 0x0f) is framed with ADTS: a 7- or 9-byte
//! header before every raw frame, which says everything a playlist needs
//! (object type, sample rate, channel layout), so no AudioSpecificConfig
//! has to be parsed. HE-AAC is signalled implicitly inside the frames, so an
//! HE-AAC stream reports its core (`mp4a.40.2`) and core sample rate; players
//! that support HE-AAC detect SBR themselves, and `mp4a.40.2` is what
//! `mp4a.40.5`-capable players accept too.

use super::AudioParams;

/// Sampling rates by `sampling_frequency_index` (ISO/IEC 14496-3 Table 1.18);
/// indices 13 and 14 are reserved, 15 means "explicit" and cannot occur in ADTS.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Length of an ADTS header without CRC.
const HEADER_LEN: usize = 7;

/// The fields of an ADTS header: what the fMP4 writer needs to split a PES
/// into raw AAC frames and to write their AudioSpecificConfig.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdtsHeader {
    /// MPEG-4 audio object type (the ADTS profile plus one; 2 is AAC LC).
    pub object_type: u8,
    /// `sampling_frequency_index`, 0 to 12.
    pub sample_rate_index: u8,
    /// Samples per second.
    pub sample_rate: u32,
    /// `channel_configuration`; 0 means a program config element inside
    /// the frame says the layout.
    pub channel_config: u8,
    /// The whole frame's length, header included.
    pub frame_length: usize,
    /// 7, or 9 when a CRC follows the fixed header.
    pub header_length: usize,
    /// `number_of_raw_data_blocks_in_frame` plus one (each is 1024 samples).
    pub raw_blocks: u8,
}

/// Reads the ADTS header at the start of `data`; `None` without a sync
/// word, for a reserved sampling rate, or for a frame length shorter than
/// its header.
pub fn parse_adts(data: &[u8]) -> Option<AdtsHeader> {
    let header: &[u8; HEADER_LEN] = data.get(..HEADER_LEN)?.try_into().ok()?;
    // syncword (12) | ID (1) | layer (2), which is always 0
    if header[0] != 0xff || header[1] & 0xf6 != 0xf0 {
        return None;
    }
    let protection_absent = header[1] & 0x01 == 1;
    let profile = header[2] >> 6;
    let sample_rate_index = (header[2] >> 2) & 0x0f;
    let sample_rate = *SAMPLE_RATES.get(usize::from(sample_rate_index))?;
    let channel_config = ((header[2] & 0x01) << 2) | (header[3] >> 6);
    let frame_length = (usize::from(header[3] & 0x03) << 11)
        | (usize::from(header[4]) << 3)
        | usize::from(header[5] >> 5);
    let header_length = if protection_absent { 7 } else { 9 };
    if frame_length < header_length {
        return None;
    }
    Some(AdtsHeader {
        // ADTS profile is the MPEG-4 audio object type minus one (1 = AAC LC).
        object_type: profile + 1,
        sample_rate_index,
        sample_rate,
        channel_config,
        frame_length,
        header_length,
        raw_blocks: (header[6] & 0x03) + 1,
    })
}

/// Parses the ADTS header at the start of `data`; `None` if there is no
/// sync word, a reserved value, or a frame length shorter than its header.
/// `channel_configuration` 0 (layout in a program config element inside the
/// frame) is not resolved and gives `None`.
pub fn parse_adts_header(data: &[u8]) -> Option<AudioParams> {
    let header = parse_adts(data)?;
    let channels = match header.channel_config {
        0 => return None,
        7 => 8,
        n => n,
    };
    Some(AudioParams {
        codec_string: format!("mp4a.40.{}", header.object_type),
        sample_rate: header.sample_rate,
        channels,
    })
}

/// The length of the ADTS frame whose header starts `data` (header
/// included), if it is one. The segmenter walks frames with it to know how
/// long the last audio PES of a stream lasts.
pub fn adts_frame_length(data: &[u8]) -> Option<usize> {
    let header: &[u8; HEADER_LEN] = data.get(..HEADER_LEN)?.try_into().ok()?;
    if header[0] != 0xff || header[1] & 0xf6 != 0xf0 {
        return None;
    }
    let length = (usize::from(header[3] & 0x03) << 11)
        | (usize::from(header[4]) << 3)
        | usize::from(header[5] >> 5);
    (length >= HEADER_LEN).then_some(length)
}

/// The two-byte AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) an `esds`
/// carries for an ADTS stream: object type, sampling frequency index and
/// channel configuration, then a GASpecificConfig of three zero bits
/// (1024-sample frames, no core coder, no extension).
pub fn audio_specific_config(header: &AdtsHeader) -> [u8; 2] {
    let bits = (u16::from(header.object_type & 0x1f) << 11)
        | (u16::from(header.sample_rate_index & 0x0f) << 7)
        | (u16::from(header.channel_config & 0x0f) << 3);
    bits.to_be_bytes()
}

/// The fields of an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) that an
/// ADTS header carries, from the config an FLV or MP4 track gives once:
/// how an input without ADTS framing (RTMP) gets it back. HE-AAC (object
/// types 5 and 29, explicit SBR/PS signalling) is described by its core
/// object type and core sampling rate, as ADTS has no room for the rest;
/// decoders find SBR in the frames. `None` for an explicit sampling rate
/// (index 15, which ADTS cannot say), a reserved index, an object type ADTS
/// cannot carry (only 1 to 4 fit its two bits), or a config too short.
pub fn parse_audio_specific_config(asc: &[u8]) -> Option<AdtsHeader> {
    let mut bits = super::nal::BitReader::new(asc);
    let mut object_type = bits.read_bits(5)? as u8;
    if object_type == 31 {
        object_type = 32 + bits.read_bits(6)? as u8;
    }
    let sample_rate_index = bits.read_bits(4)? as u8;
    let sample_rate = *SAMPLE_RATES.get(usize::from(sample_rate_index))?;
    let channel_config = bits.read_bits(4)? as u8;
    if object_type == 5 || object_type == 29 {
        // extensionSamplingFrequencyIndex, then the core's object type.
        if bits.read_bits(4)? == 15 {
            bits.skip(24)?;
        }
        object_type = bits.read_bits(5)? as u8;
    }
    if !(1..=4).contains(&object_type) {
        return None;
    }
    Some(AdtsHeader {
        object_type,
        sample_rate_index,
        sample_rate,
        channel_config,
        frame_length: HEADER_LEN,
        header_length: HEADER_LEN,
        raw_blocks: 1,
    })
}

/// The 7-byte ADTS header (no CRC, one raw data block) for a raw frame of
/// `payload_len` bytes described by `config`; `None` when the frame is too
/// long for the 13-bit frame length.
pub fn write_adts_header(config: &AdtsHeader, payload_len: usize) -> Option<[u8; HEADER_LEN]> {
    let length = payload_len + HEADER_LEN;
    if length >= 1 << 13 {
        return None;
    }
    let profile = config.object_type.saturating_sub(1) & 0x03;
    Some([
        0xff,
        0xf1, // MPEG-4, layer 0, protection absent
        profile << 6 | (config.sample_rate_index & 0x0f) << 2 | (config.channel_config >> 2) & 0x01,
        (config.channel_config & 0x03) << 6 | (length >> 11) as u8 & 0x03,
        (length >> 3) as u8,
        ((length as u8) & 0x07) << 5 | 0x1f, // buffer fullness 0x7ff: VBR
        0xfc,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ffmpeg -f lavfi -i sine=sample_rate=44100 -ac 1 -c:a aac -f adts`,
    /// first header; ffprobe: LC, 44100 Hz, mono.
    const LC_MONO_44K: [u8; 7] = [0xff, 0xf1, 0x50, 0x40, 0x21, 0x3f, 0xfc];
    /// The same at 48000 Hz, `-ac 2`; ffprobe: LC, 48000 Hz, stereo.
    const LC_STEREO_48K: [u8; 7] = [0xff, 0xf1, 0x4c, 0x80, 0x24, 0xff, 0xfc];

    #[test]
    fn mono_44k() {
        assert_eq!(
            parse_adts_header(&LC_MONO_44K),
            Some(AudioParams {
                codec_string: "mp4a.40.2".into(),
                sample_rate: 44100,
                channels: 1
            })
        );
    }

    #[test]
    fn stereo_48k() {
        assert_eq!(
            parse_adts_header(&LC_STEREO_48K),
            Some(AudioParams {
                codec_string: "mp4a.40.2".into(),
                sample_rate: 48000,
                channels: 2
            })
        );
    }

    #[test]
    fn channel_configuration_7_is_eight_channels_and_0_is_unknown() {
        let mut h = LC_STEREO_48K;
        h[2] |= 0x01; // channel_configuration = 0b110 | high bit -> 6
        assert_eq!(parse_adts_header(&h).map(|p| p.channels), Some(6));
        h[3] |= 0x40; // -> 7
        assert_eq!(parse_adts_header(&h).map(|p| p.channels), Some(8));
        let mut pce = LC_STEREO_48K;
        pce[3] &= 0x3f; // -> 0
        assert_eq!(parse_adts_header(&pce), None);
    }

    #[test]
    fn object_type_and_reserved_fields() {
        let mut main = LC_MONO_44K;
        main[2] &= 0x3f; // profile 0: AAC Main, object type 1
        assert_eq!(parse_adts_header(&main).unwrap().codec_string, "mp4a.40.1");
        let mut reserved_rate = LC_MONO_44K;
        reserved_rate[2] |= 0x3c; // sampling_frequency_index 15
        assert_eq!(parse_adts_header(&reserved_rate), None);
        let mut layer = LC_MONO_44K;
        layer[1] |= 0x02; // layer != 0: MPEG audio, not ADTS
        assert_eq!(parse_adts_header(&layer), None);
        assert_eq!(parse_adts_header(&LC_MONO_44K[..6]), None);
    }

    #[test]
    fn audio_specific_config_of_lc_stereo_48k() {
        let header = parse_adts(&LC_STEREO_48K).unwrap();
        assert_eq!(header.header_length, 7);
        assert_eq!(header.raw_blocks, 1);
        // ffmpeg's esds for the same stream: 11 90 (LC, index 3, 2 channels).
        assert_eq!(audio_specific_config(&header), [0x11, 0x90]);
        let mut crc = LC_STEREO_48K;
        crc[1] &= 0xfe; // protection_absent 0: a CRC follows the header
        assert_eq!(parse_adts(&crc).map(|h| h.header_length), Some(9));
    }

    #[test]
    fn probe_skips_a_few_leading_bytes() {
        let mut payload = vec![0x00, 0x12, 0x34];
        payload.extend_from_slice(&LC_STEREO_48K);
        let params = crate::codec::probe_audio(crate::codec::Codec::Aac, &payload);
        assert_eq!(params.map(|p| p.sample_rate), Some(48000));
    }

    #[test]
    fn adts_header_from_an_audio_specific_config_matches_ffmpegs() {
        // ffmpeg's esds for LC stereo 48 kHz is 11 90; its ADTS header for a
        // frame of 0x127 bytes is LC_STEREO_48K.
        let config = parse_audio_specific_config(&[0x11, 0x90]).unwrap();
        assert_eq!(
            (
                config.object_type,
                config.sample_rate,
                config.channel_config
            ),
            (2, 48000, 2)
        );
        let header = write_adts_header(&config, 0x127 - 7).unwrap();
        assert_eq!(header, LC_STEREO_48K);
        assert_eq!(parse_adts(&header).map(|h| h.frame_length), Some(0x127));
        let mono = parse_audio_specific_config(&[0x12, 0x08]).unwrap();
        assert_eq!(write_adts_header(&mono, 0x109 - 7), Some(LC_MONO_44K));
        // HE-AAC v1 with explicit SBR: 5, 24 kHz core index 6, stereo, ext 3, LC.
        let he = parse_audio_specific_config(&[0x2b, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!((he.object_type, he.sample_rate_index), (2, 6));
        assert_eq!(
            parse_audio_specific_config(&[0x17, 0x80]),
            None,
            "explicit rate"
        );
        assert_eq!(parse_audio_specific_config(&[0x11]), None, "too short");
        assert_eq!(write_adts_header(&config, 8192), None);
    }
}
