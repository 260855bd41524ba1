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

/// Parses the ADTS header at the start of `data`; `None` if there is no
/// sync word, a reserved value, or a frame length shorter than its header.
/// `channel_configuration` 0 (layout in a program config element inside the
/// frame) is not resolved and gives `None`.
pub fn parse_adts_header(data: &[u8]) -> Option<AudioParams> {
    let header: &[u8; HEADER_LEN] = data.get(..HEADER_LEN)?.try_into().ok()?;
    // syncword (12) | ID (1) | layer (2), which is always 0
    if header[0] != 0xff || header[1] & 0xf6 != 0xf0 {
        return None;
    }
    let profile = header[2] >> 6;
    let sf_index = usize::from((header[2] >> 2) & 0x0f);
    let channel_config = ((header[2] & 0x01) << 2) | (header[3] >> 6);
    let frame_length = (u32::from(header[3] & 0x03) << 11)
        | (u32::from(header[4]) << 3)
        | u32::from(header[5] >> 5);
    if frame_length < HEADER_LEN as u32 {
        return None;
    }
    let sample_rate = *SAMPLE_RATES.get(sf_index)?;
    let channels = match channel_config {
        0 => return None,
        7 => 8,
        n => n,
    };
    // ADTS profile is the MPEG-4 audio object type minus one (1 = AAC LC).
    let object_type = profile + 1;
    Some(AudioParams {
        codec_string: format!("mp4a.40.{object_type}"),
        sample_rate,
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
    fn probe_skips_a_few_leading_bytes() {
        let mut payload = vec![0x00, 0x12, 0x34];
        payload.extend_from_slice(&LC_STEREO_48K);
        let params = crate::codec::probe_audio(crate::codec::Codec::Aac, &payload);
        assert_eq!(params.map(|p| p.sample_rate), Some(48000));
    }
}
