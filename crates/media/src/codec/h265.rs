//! H.265 sequence parameter set → [`VideoParams`].
//!
//! Parsed here with [`BitReader`] rather than a crate: only a handful of SPS
//! fields matter, but the frame rate sits in the VUI at the very end, behind
//! every variable-length structure of the SPS (scaling lists, short-term
//! reference picture sets with inter-set prediction, long-term pictures), so
//! those are walked exactly as H.265 section 7.3.2.2 writes them. Any field
//! outside the range the spec allows ends the parse with `None` rather than
//! a guess; the segmenter calls this on untrusted bytes.
//!
//! The codec string follows ISO/IEC 14496-15 Annex E:
//! `hvc1.[A|B|C]<profile_idc>.<compat flags reversed, hex>.<L|H><level_idc>[.<constraint byte>]*`.

use super::nal::{rbsp, BitReader, NalUnits};
use super::{FrameRate, VideoParams};

/// NAL unit type of a sequence parameter set.
const NAL_SPS: u8 = 33;

/// An SPS is a few dozen bytes; scaling lists can make it a few hundred.
/// Decoding stops here so a corrupt "SPS" spanning a whole PES stays cheap.
const MAX_SPS_RBSP: usize = 4096;

/// Bound on the reference pictures in one short-term set: H.265 limits
/// `num_negative_pics + num_positive_pics` to `sps_max_dec_pic_buffering`,
/// at most 16.
const MAX_DPB: usize = 16;

/// Finds the first SPS in the Annex B bytes `es` that parses and describes
/// it. Scanning stops at the first slice (VCL NAL unit types 0 to 31).
pub fn probe(es: &[u8]) -> Option<VideoParams> {
    for nal in NalUnits::new(es) {
        let Some(&header) = nal.first() else { continue };
        match (header >> 1) & 0x3f {
            NAL_SPS => {
                if let Some(params) = parse_sps(nal) {
                    return Some(params);
                }
            }
            0..=31 => return None,
            _ => {}
        }
    }
    None
}

/// Describes one SPS NAL unit, two-byte header included; `None` if it is
/// truncated before the fields needed or carries out-of-range values.
pub fn parse_sps(nal: &[u8]) -> Option<VideoParams> {
    parse_sps_format(nal).map(|(params, _)| params)
}

/// The SPS fields an `hvcC` box repeats (ISO/IEC 14496-15 8.3.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsFormat {
    /// `general_profile_space` (2 bits), `general_tier_flag` (1) and
    /// `general_profile_idc` (5), packed as in the box.
    pub profile_byte: u8,
    /// The 32 `general_profile_compatibility_flag`s, as read.
    pub compatibility_flags: u32,
    /// The 48 bits of general constraint flags.
    pub constraint_bytes: [u8; 6],
    /// `general_level_idc`.
    pub level_idc: u8,
    /// `chroma_format_idc`, 0 to 3.
    pub chroma_format_idc: u8,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u8,
    /// `sps_max_sub_layers_minus1 + 1`.
    pub temporal_layers: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nested: bool,
}

/// [`parse_sps`] and the [`SpsFormat`] of the same SPS.
pub fn parse_sps_format(nal: &[u8]) -> Option<(VideoParams, SpsFormat)> {
    let data = rbsp(nal, 2, MAX_SPS_RBSP)?;
    let sps = Sps::read(&mut BitReader::new(&data))?;
    let params = VideoParams {
        codec_string: sps.ptl.codec_string(),
        width: sps.width,
        height: sps.height,
        frame_rate: sps.frame_rate,
    };
    let ptl = &sps.ptl;
    let format = SpsFormat {
        profile_byte: (ptl.profile_space << 6) | (u8::from(ptl.tier) << 5) | ptl.profile_idc,
        compatibility_flags: ptl.compatibility_flags,
        constraint_bytes: ptl.constraint_bytes,
        level_idc: ptl.level_idc,
        chroma_format_idc: sps.chroma_format_idc,
        bit_depth_luma_minus8: sps.bit_depth_luma_minus8,
        bit_depth_chroma_minus8: sps.bit_depth_chroma_minus8,
        temporal_layers: sps.max_sub_layers_minus1 + 1,
        temporal_id_nested: sps.temporal_id_nesting,
    };
    Some((params, format))
}

/// The general part of `profile_tier_level()`, which is all the codec
/// string needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProfileTierLevel {
    profile_space: u8,
    tier: bool,
    profile_idc: u8,
    /// `general_profile_compatibility_flag[j]` is bit `31 - j`, as read.
    compatibility_flags: u32,
    /// The 48 bits from `general_progressive_source_flag` on.
    constraint_bytes: [u8; 6],
    level_idc: u8,
}

impl ProfileTierLevel {
    /// `profile_tier_level(1, max_sub_layers_minus1)`, 7.3.3.
    fn read(r: &mut BitReader<'_>, max_sub_layers_minus1: u32) -> Option<Self> {
        let profile_space = u8::try_from(r.read_bits(2)?).ok()?;
        let tier = r.read_bit()? == 1;
        let profile_idc = u8::try_from(r.read_bits(5)?).ok()?;
        let compatibility_flags = r.read_bits(32)?;
        let mut constraint_bytes = [0u8; 6];
        for byte in &mut constraint_bytes {
            *byte = u8::try_from(r.read_bits(8)?).ok()?;
        }
        let level_idc = u8::try_from(r.read_bits(8)?).ok()?;
        let mut profile_present = [false; 8];
        let mut level_present = [false; 8];
        let sub_layers = usize::try_from(max_sub_layers_minus1).ok()?;
        for i in 0..sub_layers {
            *profile_present.get_mut(i)? = r.read_bit()? == 1;
            *level_present.get_mut(i)? = r.read_bit()? == 1;
        }
        if sub_layers > 0 {
            r.skip(2 * (8 - sub_layers))?; // reserved_zero_2bits
        }
        for i in 0..sub_layers {
            if *profile_present.get(i)? {
                r.skip(88)?; // sub-layer profile space .. compatibility and constraint flags
            }
            if *level_present.get(i)? {
                r.skip(8)?; // sub_layer_level_idc
            }
        }
        Some(Self {
            profile_space,
            tier,
            profile_idc,
            compatibility_flags,
            constraint_bytes,
            level_idc,
        })
    }

    /// The ISO/IEC 14496-15 Annex E codec string, e.g. `hvc1.1.6.L93.B0`.
    fn codec_string(&self) -> String {
        let space = match self.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let tier = if self.tier { 'H' } else { 'L' };
        let mut out = format!(
            "hvc1.{space}{}.{:X}.{tier}{}",
            self.profile_idc,
            self.compatibility_flags.reverse_bits(),
            self.level_idc
        );
        let used = self
            .constraint_bytes
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |last| last + 1);
        for byte in self.constraint_bytes.iter().take(used) {
            out.push_str(&format!(".{byte:X}"));
        }
        out
    }
}

/// The SPS fields this module reports.
#[derive(Debug)]
struct Sps {
    ptl: ProfileTierLevel,
    width: u32,
    height: u32,
    frame_rate: Option<FrameRate>,
    max_sub_layers_minus1: u8,
    temporal_id_nesting: bool,
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
}

impl Sps {
    /// `seq_parameter_set_rbsp()`, 7.3.2.2, up to the VUI timing info.
    fn read(r: &mut BitReader<'_>) -> Option<Self> {
        r.skip(4)?; // sps_video_parameter_set_id
        let max_sub_layers_minus1 = r.read_bits(3)?;
        if max_sub_layers_minus1 > 6 {
            return None;
        }
        let temporal_id_nesting = r.read_bit()? == 1;
        let ptl = ProfileTierLevel::read(r, max_sub_layers_minus1)?;
        if r.read_ue()? > 15 {
            return None; // sps_seq_parameter_set_id
        }
        let chroma_format_idc = r.read_ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        let separate_colour_plane = chroma_format_idc == 3 && r.read_bit()? == 1;
        let coded_width = r.read_ue()?;
        let coded_height = r.read_ue()?;
        if coded_width == 0 || coded_height == 0 {
            return None;
        }
        let (mut width, mut height) = (coded_width, coded_height);
        if r.read_bit()? == 1 {
            // Conformance window offsets count chroma samples (Table 6-1):
            // two luma columns for 4:2:0 and 4:2:2, two rows for 4:2:0 only.
            let chroma_array_type = if separate_colour_plane {
                0
            } else {
                chroma_format_idc
            };
            let sub_width = if matches!(chroma_array_type, 1 | 2) {
                2
            } else {
                1
            };
            let sub_height = if chroma_array_type == 1 { 2 } else { 1 };
            let left = u64::from(r.read_ue()?);
            let right = u64::from(r.read_ue()?);
            let top = u64::from(r.read_ue()?);
            let bottom = u64::from(r.read_ue()?);
            let crop_w = sub_width * (left + right);
            let crop_h = sub_height * (top + bottom);
            width = u32::try_from(u64::from(coded_width).checked_sub(crop_w)?).ok()?;
            height = u32::try_from(u64::from(coded_height).checked_sub(crop_h)?).ok()?;
            if width == 0 || height == 0 {
                return None;
            }
        }
        let bit_depth_luma_minus8 = u8::try_from(r.read_ue()?).ok().filter(|&d| d <= 8)?;
        let bit_depth_chroma_minus8 = u8::try_from(r.read_ue()?).ok().filter(|&d| d <= 8)?;
        let frame_rate = Self::read_after_bit_depths(r, max_sub_layers_minus1)?;
        Some(Self {
            ptl,
            width,
            height,
            frame_rate,
            max_sub_layers_minus1: u8::try_from(max_sub_layers_minus1).ok()?,
            temporal_id_nesting,
            chroma_format_idc: u8::try_from(chroma_format_idc).ok()?,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
        })
    }

    /// From `log2_max_pic_order_cnt_lsb_minus4` to the VUI timing info. The
    /// outer `Option` is a parse failure; the inner one is "no timing info".
    fn read_after_bit_depths(
        r: &mut BitReader<'_>,
        max_sub_layers_minus1: u32,
    ) -> Option<Option<FrameRate>> {
        let log2_max_poc_lsb_minus4 = r.read_ue()?;
        if log2_max_poc_lsb_minus4 > 12 {
            return None;
        }
        let ordering_info_for_all = r.read_bit()? == 1;
        let first = if ordering_info_for_all {
            0
        } else {
            max_sub_layers_minus1
        };
        for _ in first..=max_sub_layers_minus1 {
            // max_dec_pic_buffering_minus1, max_num_reorder_pics, max_latency_increase_plus1
            r.read_ue()?;
            r.read_ue()?;
            r.read_ue()?;
        }
        for _ in 0..6 {
            // log2_min_luma_coding_block_size_minus3 .. max_transform_hierarchy_depth_intra
            r.read_ue()?;
        }
        if r.read_bit()? == 1 && r.read_bit()? == 1 {
            // scaling_list_enabled_flag, sps_scaling_list_data_present_flag
            skip_scaling_list_data(r)?;
        }
        r.skip(2)?; // amp_enabled_flag, sample_adaptive_offset_enabled_flag
        if r.read_bit()? == 1 {
            // pcm_enabled_flag: two 4-bit depths, two sizes, loop filter flag
            r.skip(8)?;
            r.read_ue()?;
            r.read_ue()?;
            r.skip(1)?;
        }
        skip_short_term_ref_pic_sets(r)?;
        if r.read_bit()? == 1 {
            // long_term_ref_pics_present_flag
            let count = r.read_ue()?;
            if count > 32 {
                return None;
            }
            let lsb_bits = usize::try_from(log2_max_poc_lsb_minus4 + 4).ok()?;
            for _ in 0..count {
                r.skip(lsb_bits + 1)?; // lt_ref_pic_poc_lsb_sps, used_by_curr_pic_lt_sps_flag
            }
        }
        r.skip(2)?; // sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
        if r.read_bit()? == 0 {
            return Some(None); // vui_parameters_present_flag
        }
        read_vui_frame_rate(r)
    }
}

/// Skips `scaling_list_data()`, 7.3.4.
fn skip_scaling_list_data(r: &mut BitReader<'_>) -> Option<()> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _ in (0..6).step_by(step) {
            if r.read_bit()? == 0 {
                r.read_ue()?; // scaling_list_pred_matrix_id_delta
            } else {
                let coefs = 64.min(1u32 << (4 + (size_id << 1)));
                if size_id > 1 {
                    r.read_se()?; // scaling_list_dc_coef_minus8
                }
                for _ in 0..coefs {
                    r.read_se()?; // scaling_list_delta_coef
                }
            }
        }
    }
    Some(())
}

/// One short-term reference picture set: the POC deltas of its negative
/// (`S0`, closest first) and positive (`S1`) pictures. Only their number is
/// needed to skip the syntax, but a set predicted from another one keeps a
/// picture only if its delta stays non-zero, so the values are tracked too.
#[derive(Debug, Default, Clone)]
struct RefPicSet {
    negative: Vec<i32>,
    positive: Vec<i32>,
}

/// Skips `num_short_term_ref_pic_sets` and every `st_ref_pic_set()`
/// (7.3.7), deriving each set as 7.4.8 does so that inter-predicted sets
/// read the right number of flags.
fn skip_short_term_ref_pic_sets(r: &mut BitReader<'_>) -> Option<()> {
    let count = r.read_ue()?;
    if count > 64 {
        return None;
    }
    let mut sets: Vec<RefPicSet> = Vec::new();
    for idx in 0..count {
        let predicted = idx != 0 && r.read_bit()? == 1;
        let set = if predicted {
            // In the SPS, delta_idx_minus1 is absent: the reference is the previous set.
            let reference = sets.last()?;
            read_predicted_set(r, reference)?
        } else {
            read_explicit_set(r)?
        };
        sets.push(set);
    }
    Some(())
}

/// An `st_ref_pic_set()` coded with `inter_ref_pic_set_prediction_flag`,
/// derived as equations 7-61 and 7-62.
fn read_predicted_set(r: &mut BitReader<'_>, reference: &RefPicSet) -> Option<RefPicSet> {
    let negative_sign = r.read_bit()? == 1;
    let abs_delta = r.read_ue()?.checked_add(1)?;
    if abs_delta > 1 << 15 {
        return None;
    }
    let magnitude = i32::try_from(abs_delta).ok()?;
    let delta_rps = if negative_sign { -magnitude } else { magnitude };
    let ref_count = reference.negative.len() + reference.positive.len();
    // use_delta_flag[j] for j in 0..=NumDeltaPocs[RefRpsIdx]: inferred 1
    // when used_by_curr_pic_flag is set.
    let mut use_delta = [false; MAX_DPB + 1];
    for flag in use_delta.iter_mut().take(ref_count + 1) {
        let used_by_curr = r.read_bit()? == 1;
        *flag = used_by_curr || r.read_bit()? == 1;
    }
    let uses = |j: usize| use_delta.get(j).copied().unwrap_or(false);
    let neg_count = reference.negative.len();
    let mut set = RefPicSet::default();
    for (j, &d) in reference.positive.iter().enumerate().rev() {
        let poc = d + delta_rps;
        if poc < 0 && uses(neg_count + j) {
            set.negative.push(poc);
        }
    }
    if delta_rps < 0 && uses(ref_count) {
        set.negative.push(delta_rps);
    }
    for (j, &d) in reference.negative.iter().enumerate() {
        let poc = d + delta_rps;
        if poc < 0 && uses(j) {
            set.negative.push(poc);
        }
    }
    for (j, &d) in reference.negative.iter().enumerate().rev() {
        let poc = d + delta_rps;
        if poc > 0 && uses(j) {
            set.positive.push(poc);
        }
    }
    if delta_rps > 0 && uses(ref_count) {
        set.positive.push(delta_rps);
    }
    for (j, &d) in reference.positive.iter().enumerate() {
        let poc = d + delta_rps;
        if poc > 0 && uses(neg_count + j) {
            set.positive.push(poc);
        }
    }
    (set.negative.len() + set.positive.len() <= MAX_DPB).then_some(set)
}

/// An `st_ref_pic_set()` coded explicitly: counts, then for each picture a
/// POC delta and a used-by-current flag.
fn read_explicit_set(r: &mut BitReader<'_>) -> Option<RefPicSet> {
    let negative_count = usize::try_from(r.read_ue()?).ok()?;
    let positive_count = usize::try_from(r.read_ue()?).ok()?;
    if negative_count + positive_count > MAX_DPB {
        return None;
    }
    let mut set = RefPicSet::default();
    let mut poc = 0i32;
    for _ in 0..negative_count {
        // Each delta_poc_s*_minus1 is at most 2^15 - 1 and there are at most
        // 16, so the running POC stays far inside i32.
        let delta = r.read_ue()?.checked_add(1)?;
        if delta > 1 << 15 {
            return None;
        }
        poc -= i32::try_from(delta).ok()?;
        set.negative.push(poc);
        r.skip(1)?; // used_by_curr_pic_s0_flag
    }
    poc = 0;
    for _ in 0..positive_count {
        let delta = r.read_ue()?.checked_add(1)?;
        if delta > 1 << 15 {
            return None;
        }
        poc += i32::try_from(delta).ok()?;
        set.positive.push(poc);
        r.skip(1)?; // used_by_curr_pic_s1_flag
    }
    Some(set)
}

/// Reads `vui_parameters()` (E.2.1) up to the timing info and returns the
/// frame rate, `vui_time_scale / vui_num_units_in_tick`. Unlike H.264, an
/// H.265 tick is a whole picture; with `field_seq_flag` the pictures are
/// fields, so a frame takes two. `Some(None)` without timing info (or with
/// a zero field); `None` if the bytes end first, so that a truncated SPS is
/// retried on a later access unit instead of losing its frame rate.
fn read_vui_frame_rate(r: &mut BitReader<'_>) -> Option<Option<FrameRate>> {
    if r.read_bit()? == 1 {
        // aspect_ratio_info_present_flag
        if r.read_bits(8)? == 255 {
            r.skip(32)?; // sar_width, sar_height
        }
    }
    if r.read_bit()? == 1 {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.read_bit()? == 1 {
        // video_signal_type_present_flag: video_format, video_full_range_flag
        r.skip(4)?;
        if r.read_bit()? == 1 {
            r.skip(24)?; // colour_primaries, transfer_characteristics, matrix_coeffs
        }
    }
    if r.read_bit()? == 1 {
        // chroma_loc_info_present_flag
        r.read_ue()?;
        r.read_ue()?;
    }
    r.skip(1)?; // neutral_chroma_indication_flag
    let field_seq = r.read_bit()? == 1;
    r.skip(1)?; // frame_field_info_present_flag
    if r.read_bit()? == 1 {
        // default_display_window_flag: four offsets
        for _ in 0..4 {
            r.read_ue()?;
        }
    }
    if r.read_bit()? == 0 {
        return Some(None); // vui_timing_info_present_flag
    }
    let num_units_in_tick = u64::from(r.read_bits(32)?);
    let time_scale = u64::from(r.read_bits(32)?);
    let ticks_per_frame = if field_seq { 2 } else { 1 };
    Some(FrameRate::reduced(
        time_scale,
        num_units_in_tick * ticks_per_frame,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ffmpeg -f lavfi -i testsrc=size=1920x1080:rate=25 -pix_fmt yuv420p
    /// -c:v libx265 -f hevc`: VPS, SPS, PPS. ffprobe: Main, level 120,
    /// 1920x1080, 25/1. 1080 is a multiple of the 8-line minimum coding
    /// block, so no conformance window.
    const MAIN_1080P25: &[u8] = &[
        0x00, 0x00, 0x00, 0x01, 0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03,
        0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x78, 0x95, 0x98, 0x09, 0x00, 0x00,
        0x00, 0x01, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03,
        0x00, 0x00, 0x03, 0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24,
        0xca, 0xf0, 0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84, 0x00,
        0x00, 0x00, 0x01, 0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40,
    ];

    /// `size=854x480:rate=30000/1001 -pix_fmt yuv420p10le`: SPS only. Coded
    /// 856 wide, the conformance window removes one chroma column (two luma
    /// columns). ffprobe: Main 10, level 90, 854x480, 30000/1001.
    const MAIN10_480P2997_SPS: &[u8] = &[
        0x00, 0x00, 0x01, 0x42, 0x01, 0x01, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x5a, 0xa0, 0x06, 0xb2, 0x01, 0xe1, 0xd6, 0xd9, 0x65, 0x66,
        0x92, 0x4c, 0xaf, 0x01, 0x68, 0x08, 0x00, 0x00, 0x1f, 0x48, 0x00, 0x03, 0xa9, 0x80, 0x40,
    ];

    /// `size=1278x718:rate=50 -pix_fmt yuv422p10le`: SPS only. 4:2:2 crops
    /// in units of two luma columns but single rows: coded 1280x720, window
    /// right 1, bottom 2. ffprobe: Rext, level 120, 1278x718, 50/1.
    const REXT_422_718P50_SPS: &[u8] = &[
        0x00, 0x00, 0x01, 0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9d, 0x08, 0x00,
        0x00, 0x03, 0x00, 0x00, 0x78, 0xb0, 0x02, 0x80, 0x80, 0x2d, 0x1d, 0x5b, 0x65, 0x95, 0x9a,
        0x49, 0x32, 0xbc, 0x05, 0xa0, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x06, 0x41,
    ];

    /// `size=854x478:rate=24000/1001 -pix_fmt yuv444p`: SPS only. 4:4:4
    /// crops in luma samples. ffprobe: Rext, level 90, 854x478, 24000/1001.
    const REXT_444_478P_SPS: &[u8] = &[
        0x00, 0x00, 0x01, 0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00,
        0x00, 0x03, 0x00, 0x00, 0x5a, 0x90, 0x00, 0xd6, 0x40, 0x3c, 0x3b, 0xbc, 0xb2, 0xb3, 0x49,
        0x26, 0x57, 0x80, 0xb4, 0x04, 0x00, 0x00, 0x0f, 0xa4, 0x00, 0x01, 0x77, 0x00, 0x20,
    ];

    /// `size=720x576:rate=25 -x265-params interlace=tff`: SPS only, with
    /// `field_seq_flag` set and 25 ticks a second. By the spec each picture
    /// is then a field, so this is 12.5 frames a second; ffprobe ignores the
    /// flag and says 25/1 (x265 here was fed whole frames by ffmpeg, so the
    /// stream itself is inconsistent; real field-coded HEVC has half-height
    /// pictures at twice the rate, and comes out right).
    const FIELD_SEQ_576_SPS: &[u8] = &[
        0x00, 0x00, 0x01, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x5a, 0xa0, 0x05, 0xa2, 0x00, 0x90, 0x59, 0x65, 0x66, 0x92,
        0x4c, 0xaf, 0x01, 0x68, 0x68, 0x00, 0x00, 0x03, 0x00, 0x08, 0x00, 0x00, 0x03, 0x00, 0xc8,
        0x40,
    ];

    #[test]
    fn rext_422_crops_whole_rows() {
        assert_eq!(
            probe(REXT_422_718P50_SPS),
            Some(VideoParams {
                codec_string: "hvc1.4.10.L120.9D.8".into(),
                width: 1278,
                height: 718,
                frame_rate: Some(FrameRate { num: 50, den: 1 }),
            })
        );
    }

    #[test]
    fn rext_444_crops_luma_samples() {
        assert_eq!(
            probe(REXT_444_478P_SPS),
            Some(VideoParams {
                codec_string: "hvc1.4.10.L90.9E.8".into(),
                width: 854,
                height: 478,
                frame_rate: Some(FrameRate {
                    num: 24000,
                    den: 1001
                }),
            })
        );
    }

    #[test]
    fn field_sequence_counts_two_pictures_a_frame() {
        let params = probe(FIELD_SEQ_576_SPS).unwrap();
        assert_eq!(params.codec_string, "hvc1.1.6.L90.40");
        assert_eq!((params.width, params.height), (720, 576));
        assert_eq!(params.frame_rate, Some(FrameRate { num: 25, den: 2 }));
    }

    #[test]
    fn main_1080p25() {
        assert_eq!(
            probe(MAIN_1080P25),
            Some(VideoParams {
                codec_string: "hvc1.1.6.L120.90".into(),
                width: 1920,
                height: 1080,
                frame_rate: Some(FrameRate { num: 25, den: 1 }),
            })
        );
    }

    #[test]
    fn format_fields_for_hvcc() {
        let sps = NalUnits::new(MAIN_1080P25).nth(1).unwrap();
        assert_eq!(sps[0], 0x42, "the SPS NAL header");
        let (_, format) = parse_sps_format(sps).unwrap();
        assert_eq!(
            format,
            SpsFormat {
                profile_byte: 0x01,
                compatibility_flags: 0x6000_0000,
                constraint_bytes: [0x90, 0, 0, 0, 0, 0],
                level_idc: 120,
                chroma_format_idc: 1,
                bit_depth_luma_minus8: 0,
                bit_depth_chroma_minus8: 0,
                temporal_layers: 1,
                temporal_id_nested: true,
            }
        );
        let (_, main10) = parse_sps_format(&MAIN10_480P2997_SPS[3..]).unwrap();
        assert_eq!((main10.profile_byte, main10.bit_depth_luma_minus8), (2, 2));
    }

    #[test]
    fn main10_conformance_window_in_chroma_units_and_ntsc_rate() {
        assert_eq!(
            probe(MAIN10_480P2997_SPS),
            Some(VideoParams {
                codec_string: "hvc1.2.4.L90.90".into(),
                width: 854,
                height: 480,
                frame_rate: Some(FrameRate {
                    num: 30000,
                    den: 1001
                }),
            })
        );
    }

    #[test]
    fn truncated_sps_is_none() {
        // Everything up to the end of the timing info is needed: a prefix
        // that ends earlier gives nothing rather than a size without a rate.
        // The timing info ends in the fifth byte from the end.
        // vui_time_scale ends in byte 44 of the fixture (start code, two
        // emulation prevention bytes and 38 bytes of RBSP); only the last
        // byte, with the rest of the VUI and the trailing bits, may go.
        let full = MAIN10_480P2997_SPS.len();
        assert_eq!(full, 45);
        for len in 0..44 {
            assert_eq!(probe(&MAIN10_480P2997_SPS[..len]), None, "prefix of {len}");
        }
        assert_eq!(
            probe(&MAIN10_480P2997_SPS[..44]),
            probe(MAIN10_480P2997_SPS)
        );
    }

    #[test]
    fn codec_string_examples_from_14496_15() {
        // Annex E examples: Main profile, level 3.1, progressive-only; and a
        // Main 10 high tier stream with profile space 1.
        let main = ProfileTierLevel {
            profile_space: 0,
            tier: false,
            profile_idc: 1,
            compatibility_flags: 0x6000_0000,
            constraint_bytes: [0xb0, 0, 0, 0, 0, 0],
            level_idc: 93,
        };
        assert_eq!(main.codec_string(), "hvc1.1.6.L93.B0");
        let other = ProfileTierLevel {
            profile_space: 1,
            tier: true,
            profile_idc: 2,
            compatibility_flags: 0x2000_0000,
            constraint_bytes: [0, 0, 0, 0, 0, 0],
            level_idc: 120,
        };
        assert_eq!(other.codec_string(), "hvc1.A2.4.H120");
        let middle_zero = ProfileTierLevel {
            constraint_bytes: [0x90, 0, 0x01, 0, 0, 0],
            ..main
        };
        assert_eq!(middle_zero.codec_string(), "hvc1.1.6.L93.90.0.1");
    }

    #[test]
    fn explicit_and_predicted_short_term_sets() {
        // Two sets: {-1, -2 | +1} explicitly, then predicted from it with
        // deltaRps = -1 and every picture kept: -2, -3 stay negative, +1 - 1
        // = 0 is dropped, and deltaRps itself becomes -1.
        let mut bits = String::new();
        bits.push_str("011"); // num_short_term_ref_pic_sets = 2
        bits.push_str("011"); // num_negative_pics = 2
        bits.push_str("010"); // num_positive_pics = 1
        bits.push_str("11"); // delta_poc_s0_minus1 = 0 (-1), used
        bits.push_str("11"); // delta_poc_s0_minus1 = 0 (-2), used
        bits.push_str("11"); // delta_poc_s1_minus1 = 0 (+1), used
        bits.push('1'); // inter_ref_pic_set_prediction_flag
        bits.push('1'); // delta_rps_sign: negative
        bits.push('1'); // abs_delta_rps_minus1 = 0
        bits.push_str("1111"); // used_by_curr_pic_flag for 3 pictures + deltaRps
        let bytes: Vec<u8> = bits
            .as_bytes()
            .chunks(8)
            .map(|c| {
                let mut b = 0u8;
                for (i, &bit) in c.iter().enumerate() {
                    b |= u8::from(bit == b'1') << (7 - i);
                }
                b
            })
            .collect();
        let mut r = BitReader::new(&bytes);
        assert_eq!(skip_short_term_ref_pic_sets(&mut r), Some(()));
        let mut r = BitReader::new(&bytes);
        r.skip(3 + 3 + 3 + 6).unwrap();
        let reference = RefPicSet {
            negative: vec![-1, -2],
            positive: vec![1],
        };
        r.skip(1).unwrap();
        let set = read_predicted_set(&mut r, &reference).unwrap();
        assert_eq!(set.negative, vec![-1, -2, -3]);
        assert_eq!(set.positive, Vec::<i32>::new());
    }

    proptest::proptest! {
        /// A real SPS with a few bytes overwritten reaches deep into the
        /// parser with values it has not seen; it must only ever say `None`.
        #[test]
        fn corrupted_sps_never_panics(
            edits in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 1..6),
            cut in 0usize..64,
        ) {
            let mut bytes = MAIN10_480P2997_SPS.to_vec();
            for (at, value) in edits {
                if let Some(b) = bytes.get_mut(at) {
                    *b = value;
                }
            }
            bytes.truncate(bytes.len().saturating_sub(cut % 8));
            let _ = probe(&bytes);
        }
    }
}
