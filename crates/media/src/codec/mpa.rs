//! MPEG-1/2/2.5 audio frame header → [`AudioParams`].
//!
//! Broadcast still carries MPEG-1 Layer II (DVB radio and many TV audio
//! tracks), and MP3 shows up in IPTV sources; both are described by their
//! 4-byte frame header alone.
//!
//! Codec strings, as there is no single authority for MPEG audio in
//! `CODECS`: Layer III is `mp4a.40.34` (MPEG-4 audio object type 34,
//! "Layer-3"), the form the Apple HLS authoring specification lists for MP3
//! and that browsers' `isTypeSupported` accepts. Layers I and II use the
//! MP4 object type indication of the whole standard, as registered with
//! MP4RA and used by RFC 6381 `mp4a.XX` strings: `mp4a.6B` for MPEG-1
//! (ISO/IEC 11172-3) and `mp4a.69` for MPEG-2 (ISO/IEC 13818-3), the
//! unofficial MPEG-2.5 being reported as MPEG-2.

use super::AudioParams;

/// Sampling rates of MPEG-1 by `sampling_frequency`; MPEG-2 halves and
/// MPEG-2.5 quarters them. Index 3 is reserved.
const MPEG1_SAMPLE_RATES: [u32; 3] = [44100, 48000, 32000];

/// Parses the MPEG audio frame header at the start of `data`; `None` if
/// there is no 11-bit sync word or a field holds a reserved value (version
/// 01, layer 00, bitrate index 15, sampling frequency 3). Free-format
/// bitrate (index 0) is accepted: it does not change the parameters.
pub fn parse_frame_header(data: &[u8]) -> Option<AudioParams> {
    let header: &[u8; 4] = data.get(..4)?.try_into().ok()?;
    if header[0] != 0xff || header[1] & 0xe0 != 0xe0 {
        return None;
    }
    let version = (header[1] >> 3) & 0x03;
    let layer = (header[1] >> 1) & 0x03;
    let bitrate_index = header[2] >> 4;
    let sf_index = usize::from((header[2] >> 2) & 0x03);
    let mode = header[3] >> 6;
    if version == 0b01 || layer == 0b00 || bitrate_index == 0x0f {
        return None;
    }
    let base_rate = *MPEG1_SAMPLE_RATES.get(sf_index)?;
    let (sample_rate, mpeg1) = match version {
        0b11 => (base_rate, true),
        0b10 => (base_rate / 2, false),
        _ => (base_rate / 4, false),
    };
    let codec_string = match (layer, mpeg1) {
        (0b01, _) => "mp4a.40.34",
        (_, true) => "mp4a.6B",
        (_, false) => "mp4a.69",
    };
    Some(AudioParams {
        codec_string: codec_string.into(),
        sample_rate,
        // mode 3 is single channel; stereo, joint stereo and dual channel are two.
        channels: if mode == 0b11 { 1 } else { 2 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(codec: &str, sample_rate: u32, channels: u8) -> Option<AudioParams> {
        Some(AudioParams {
            codec_string: codec.into(),
            sample_rate,
            channels,
        })
    }

    #[test]
    fn mp3_mpeg1_joint_stereo_44k() {
        // `-c:a libmp3lame -ac 2 -ar 44100 -f mp3`; ffprobe: mp3, 44100 Hz, stereo.
        let header = [0xff, 0xfb, 0x90, 0x64];
        assert_eq!(parse_frame_header(&header), params("mp4a.40.34", 44100, 2));
    }

    #[test]
    fn mp3_mpeg2_mono_24k() {
        // `-c:a libmp3lame -ac 1 -ar 24000 -f mp3`; ffprobe: mp3, 24000 Hz, mono.
        let header = [0xff, 0xf3, 0x44, 0xc4];
        assert_eq!(parse_frame_header(&header), params("mp4a.40.34", 24000, 1));
    }

    #[test]
    fn mp2_mpeg1_stereo_48k() {
        // `-c:a mp2 -ac 2 -ar 48000 -f mp2`; ffprobe: mp2, 48000 Hz, stereo.
        let header = [0xff, 0xfd, 0xe4, 0x04];
        assert_eq!(parse_frame_header(&header), params("mp4a.6B", 48000, 2));
    }

    #[test]
    fn mp2_mpeg2_mono_24k() {
        // `-c:a mp2 -ac 1 -ar 24000 -f mp2`; ffprobe: mp2, 24000 Hz, mono.
        let header = [0xff, 0xf5, 0xe4, 0xc4];
        assert_eq!(parse_frame_header(&header), params("mp4a.69", 24000, 1));
    }

    #[test]
    fn mpeg25_quarters_the_rate() {
        let header = [0xff, 0xe3, 0x44, 0xc4]; // version 00, layer III, index 1
        assert_eq!(parse_frame_header(&header), params("mp4a.40.34", 12000, 1));
    }

    #[test]
    fn reserved_values_and_adts_are_rejected() {
        assert_eq!(parse_frame_header(&[0xff, 0xeb, 0x90, 0x64]), None); // version 01
        assert_eq!(parse_frame_header(&[0xff, 0xf9, 0x90, 0x64]), None); // layer 00
        assert_eq!(parse_frame_header(&[0xff, 0xfb, 0xf0, 0x64]), None); // bitrate 15
        assert_eq!(parse_frame_header(&[0xff, 0xfb, 0x9c, 0x64]), None); // rate 3
        assert_eq!(parse_frame_header(&[0xff, 0xf1, 0x50, 0x40]), None); // ADTS
        assert_eq!(parse_frame_header(&[0xff, 0xfb, 0x90]), None);
    }
}
