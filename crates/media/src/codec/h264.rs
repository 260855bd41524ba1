//! H.264 sequence parameter set → [`VideoParams`].
//!
//! Players choose a variant from its `CODECS` string and size before they
//! fetch a byte of it, so both must come from the bitstream, not from
//! configuration. The SPS itself is parsed by h264-reader (emulation
//! prevention, scaling lists, VUI and HRD are fiddly and already tested
//! there); this module only turns its fields into what playlists carry, with
//! integer arithmetic throughout (h264-reader's own `fps()` is a float).

use h264_reader::nal::sps::{ChromaFormat, SeqParameterSet};
use h264_reader::rbsp::{BitReader, ByteReader};

use super::nal::NalUnits;
use super::{FrameRate, VideoParams};

/// NAL unit type of a sequence parameter set.
const NAL_SPS: u8 = 7;

/// Finds the first SPS in the Annex B bytes `es` that parses and describes
/// it. Scanning stops at the first slice: an SPS is only valid before the
/// VCL units of its access unit, and looking further costs time.
pub fn probe(es: &[u8]) -> Option<VideoParams> {
    for nal in NalUnits::new(es) {
        let Some(&header) = nal.first() else { continue };
        match header & 0x1f {
            NAL_SPS => {
                if let Some(params) = parse_sps(nal) {
                    return Some(params);
                }
            }
            1..=5 => return None,
            _ => {}
        }
    }
    None
}

/// Describes one SPS NAL unit, header byte included; `None` if it does not
/// parse (truncated, corrupt, or sizes the level does not allow).
pub fn parse_sps(nal: &[u8]) -> Option<VideoParams> {
    parse_sps_format(nal).map(|(params, _)| params)
}

/// The SPS fields an `avcC` box carries beyond the SPS bytes themselves
/// (ISO/IEC 14496-15 5.3.3.1): the chroma format and bit depths that the
/// High profiles must repeat there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsFormat {
    /// `profile_idc`.
    pub profile_idc: u8,
    /// `chroma_format_idc`, 0 to 3.
    pub chroma_format_idc: u8,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u8,
}

/// [`parse_sps`] and the [`SpsFormat`] of the same SPS.
pub fn parse_sps_format(nal: &[u8]) -> Option<(VideoParams, SpsFormat)> {
    let reader = BitReader::new(ByteReader::skipping_h264_header(nal));
    let sps = SeqParameterSet::from_bits(reader).ok()?;
    let chroma = &sps.chroma_info;
    let format = SpsFormat {
        profile_idc: sps.profile_idc.into(),
        chroma_format_idc: match chroma.chroma_format {
            ChromaFormat::Monochrome => 0,
            ChromaFormat::YUV420 => 1,
            ChromaFormat::YUV422 => 2,
            ChromaFormat::YUV444 => 3,
            ChromaFormat::Invalid(_) => return None,
        },
        bit_depth_luma_minus8: chroma.bit_depth_luma_minus8,
        bit_depth_chroma_minus8: chroma.bit_depth_chroma_minus8,
    };
    let (width, height) = sps.pixel_dimensions().ok()?;
    let frame_rate = sps
        .vui_parameters
        .as_ref()
        .and_then(|vui| vui.timing_info.as_ref())
        // H.264 ticks are fields: a frame lasts two (E.2.1, equation C-1).
        .and_then(|t| {
            FrameRate::reduced(u64::from(t.time_scale), 2 * u64::from(t.num_units_in_tick))
        });
    let params = VideoParams {
        codec_string: codec_string(
            sps.profile_idc.into(),
            sps.constraint_flags.into(),
            sps.level_idc,
        ),
        width,
        height,
        frame_rate,
    };
    Some((params, format))
}

/// The RFC 6381 string `avc1.PPCCLL`: profile_idc, the constraint flags
/// byte and level_idc as two lowercase hex digits each.
pub fn codec_string(profile_idc: u8, constraint_flags: u8, level_idc: u8) -> String {
    format!("avc1.{profile_idc:02x}{constraint_flags:02x}{level_idc:02x}")
}

/// An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1, the `avcC`
/// body an FLV sequence header carries): the NAL length prefix size and the
/// parameter sets, which length-prefixed frames do not repeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    /// Bytes of each NAL unit's length prefix: 1, 2, 3 or 4.
    pub nal_length_size: usize,
    /// Sequence parameter sets, header byte included.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets, header byte included.
    pub pps: Vec<Vec<u8>>,
}

/// `count` parameter sets after the count byte at `*at`, each with a
/// 16-bit length; `*at` moves past them.
fn parameter_sets(record: &[u8], at: &mut usize, count: usize) -> Option<Vec<Vec<u8>>> {
    *at += 1;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes(
            record.get(*at..*at + 2)?.try_into().ok()?,
        ));
        out.push(record.get(*at + 2..*at + 2 + len)?.to_vec());
        *at += 2 + len;
    }
    Some(out)
}

/// Reads an AVCDecoderConfigurationRecord; `None` when it is not version 1,
/// lists no SPS, or a parameter set runs past its end.
pub fn parse_avc_decoder_config(record: &[u8]) -> Option<AvcDecoderConfig> {
    let (&version, rest) = record.split_first()?;
    if version != 1 {
        return None;
    }
    let nal_length_size = usize::from(rest.get(3)? & 0x03) + 1;
    let mut at = 5;
    let sps_count = usize::from(record.get(at)? & 0x1f);
    let sps = parameter_sets(record, &mut at, sps_count)?;
    // The PPS count may be missing from a record that lists only SPS.
    let pps = match record.get(at) {
        Some(&n) => parameter_sets(record, &mut at, usize::from(n))?,
        None => Vec::new(),
    };
    if sps.is_empty() || sps.iter().chain(&pps).any(Vec::is_empty) {
        return None;
    }
    Some(AvcDecoderConfig {
        nal_length_size,
        sps,
        pps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ffmpeg -f lavfi -i testsrc=size=1280x720:rate=25 -pix_fmt yuv420p
    /// -c:v libx264 -profile:v high -f h264`: AUD-less stream, first two NAL
    /// units (SPS with two emulation prevention bytes, PPS), then the start
    /// of the SEI. ffprobe: High, level 31, 1280x720, 25/1.
    const HIGH_720P25: &[u8] = &[
        0x00, 0x00, 0x00, 0x01, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01,
        0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
        0x00, 0x00, 0x00, 0x01, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0x00, 0x00, 0x01, 0x06, 0x05,
        0xff,
    ];

    /// The same with `size=1920x1080:rate=30000/1001 -profile:v main`: coded
    /// as 1088 lines and cropped by 8. ffprobe: Main, level 40, 1920x1080,
    /// 30000/1001.
    const MAIN_1080P2997: &[u8] = &[
        0x00, 0x00, 0x00, 0x01, 0x67, 0x4d, 0x40, 0x28, 0xec, 0xa0, 0x3c, 0x01, 0x13, 0xf2, 0xe0,
        0x22, 0x00, 0x00, 0x07, 0xd2, 0x00, 0x01, 0xd4, 0xc0, 0x1e, 0x30, 0x63, 0x2c, 0x00, 0x00,
        0x00, 0x01, 0x68, 0xeb, 0xe3, 0xcb, 0x20,
    ];

    /// `size=1920x1080:rate=25 -flags +ildct+ilme`: SPS only. Field coding
    /// (frame_mbs_only_flag 0) doubles the vertical crop unit: 34 map units
    /// of 32 lines, bottom offset 2 × 4. ffprobe: High, level 40, 1920x1080, 25/1.
    const INTERLACED_1080I25_SPS: &[u8] = &[
        0x00, 0x00, 0x01, 0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x04, 0x4f, 0xde, 0x02,
        0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x06, 0x43, 0xe2, 0xc5, 0xb2, 0xc0,
    ];

    /// `size=642x362:rate=30 -pix_fmt yuv444p`: SPS only. 4:4:4 crops in luma
    /// samples (656x368 coded). ffprobe: High 4:4:4 Predictive, level 30,
    /// 642x362, 30/1.
    const HIGH444_642X362_SPS: &[u8] = &[
        0x00, 0x00, 0x01, 0x67, 0xf4, 0x00, 0x1e, 0x91, 0x9b, 0x28, 0x14, 0x85, 0xfc, 0x7c, 0xf8,
        0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8b, 0x16, 0xcb,
    ];

    #[test]
    fn interlaced_1080i_crop_counts_field_pairs() {
        assert_eq!(
            probe(INTERLACED_1080I25_SPS),
            Some(VideoParams {
                codec_string: "avc1.640028".into(),
                width: 1920,
                height: 1080,
                frame_rate: Some(FrameRate { num: 25, den: 1 }),
            })
        );
    }

    #[test]
    fn high444_crops_luma_samples() {
        assert_eq!(
            probe(HIGH444_642X362_SPS),
            Some(VideoParams {
                codec_string: "avc1.f4001e".into(),
                width: 642,
                height: 362,
                frame_rate: Some(FrameRate { num: 30, den: 1 }),
            })
        );
    }

    #[test]
    fn high_profile_720p25() {
        let params = probe(HIGH_720P25).unwrap();
        assert_eq!(
            params,
            VideoParams {
                codec_string: "avc1.64001f".into(),
                width: 1280,
                height: 720,
                frame_rate: Some(FrameRate { num: 25, den: 1 }),
            }
        );
    }

    #[test]
    fn format_fields_for_avcc() {
        let sps = &HIGH_720P25[4..30];
        let (_, format) = parse_sps_format(sps).unwrap();
        assert_eq!(
            format,
            SpsFormat {
                profile_idc: 100,
                chroma_format_idc: 1,
                bit_depth_luma_minus8: 0,
                bit_depth_chroma_minus8: 0,
            }
        );
        let sps444 = &HIGH444_642X362_SPS[3..];
        assert_eq!(parse_sps_format(sps444).unwrap().1.chroma_format_idc, 3);
    }

    #[test]
    fn main_profile_1080p_is_cropped_from_1088_and_ntsc_rate() {
        let params = probe(MAIN_1080P2997).unwrap();
        assert_eq!(params.codec_string, "avc1.4d4028");
        assert_eq!((params.width, params.height), (1920, 1080));
        assert_eq!(
            params.frame_rate,
            Some(FrameRate {
                num: 30000,
                den: 1001
            })
        );
    }

    #[test]
    fn sps_behind_aud_is_found_and_slices_end_the_search() {
        let mut au = vec![0, 0, 0, 1, 0x09, 0xf0];
        au.extend_from_slice(MAIN_1080P2997);
        assert_eq!(probe(&au).unwrap().height, 1080);
        // A slice before the SPS: the SPS belongs to a later access unit.
        let mut late = vec![0, 0, 1, 0x41, 0x9a, 0x24];
        late.extend_from_slice(MAIN_1080P2997);
        assert_eq!(probe(&late), None);
    }

    #[test]
    fn truncated_or_missing_sps_is_none() {
        // Cut inside the SPS: the unit ends early and its trailing bits are wrong.
        assert_eq!(probe(&MAIN_1080P2997[..20]), None);
        assert_eq!(probe(&[0, 0, 1, 0x68, 0xeb, 0xe3]), None);
        assert_eq!(probe(&[]), None);
    }

    #[test]
    fn codec_string_is_lowercase_two_digit_hex() {
        assert_eq!(codec_string(0x42, 0xc0, 0x1e), "avc1.42c01e");
        assert_eq!(codec_string(100, 0, 9), "avc1.640009");
    }

    proptest::proptest! {
        /// A real SPS with a few bytes overwritten reaches deep into the
        /// parser with values it has not seen; it must only ever say `None`.
        #[test]
        fn corrupted_sps_never_panics(
            edits in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 1..6),
            cut in 0usize..64,
        ) {
            let mut bytes = MAIN_1080P2997.to_vec();
            for (at, value) in edits {
                if let Some(b) = bytes.get_mut(at) {
                    *b = value;
                }
            }
            bytes.truncate(bytes.len().saturating_sub(cut % 8));
            let _ = probe(&bytes);
        }
    }

    #[test]
    fn avc_decoder_config_record() {
        // ffmpeg's FLV sequence header body for the HIGH_720P25 parameter sets.
        let sps = &HIGH_720P25[4..30];
        let pps = &HIGH_720P25[34..40];
        let mut record = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
        record.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        record.extend_from_slice(sps);
        record.push(1);
        record.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        record.extend_from_slice(pps);
        let config = parse_avc_decoder_config(&record).unwrap();
        assert_eq!(config.nal_length_size, 4);
        assert_eq!(config.sps, vec![sps.to_vec()]);
        assert_eq!(config.pps, vec![pps.to_vec()]);
        assert_eq!(parse_sps(&config.sps[0]).map(|p| p.width), Some(1280));
        for cut in 0..record.len() - pps.len() - 3 {
            assert_eq!(parse_avc_decoder_config(&record[..cut]), None, "{cut}");
        }
        record[0] = 2;
        assert_eq!(parse_avc_decoder_config(&record), None);
    }
}
