//! AC-3 and E-AC-3 sync frame header → [`AudioParams`].
//!
//! Both start with the sync word `0B 77` and are told apart by `bsid`, five
//! bits at the same place in both headers: up to 8 is AC-3 (A/52 main
//! text), 11 to 16 is E-AC-3 (A/52 Annex E). The two headers are otherwise
//! laid out differently, E-AC-3 adding `fscod2` for its reduced sampling
//! rates. `bsid` 9 and 10 (half and quarter sample rate AC-3, which some
//! decoders accept but A/52 does not define) are rejected.
//!
//! For E-AC-3 the channels are those of the independent substream whose
//! frame comes first; layouts beyond 5.1 (7.1 in a dependent substream) are
//! reported as their 5.1 core.

use super::nal::BitReader;
use super::AudioParams;

/// Full-bandwidth channels by `acmod` (A/52 Table 5.8): 1+1 (dual mono),
/// 1/0, 2/0, 3/0, 2/1, 3/1, 2/2, 3/2.
const ACMOD_CHANNELS: [u8; 8] = [2, 1, 2, 3, 3, 4, 4, 5];

/// Sampling rates by `fscod`; 3 is reserved in AC-3 and means "see
/// `fscod2`" in E-AC-3.
const SAMPLE_RATES: [u32; 3] = [48000, 44100, 32000];

/// E-AC-3 reduced sampling rates by `fscod2`; 3 is reserved.
const REDUCED_SAMPLE_RATES: [u32; 3] = [24000, 22050, 16000];

/// Highest valid `frmsizecod` (A/52 Table 5.18 has 38 entries).
const MAX_FRMSIZECOD: u8 = 37;

/// AC-3 bit rates in kbit/s by `frmsizecod / 2` (A/52 Table 5.18).
const AC3_BIT_RATES: [u32; 19] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640,
];

/// Audio blocks of 256 samples per E-AC-3 frame by `numblkscod`.
const EAC3_BLOCKS: [u8; 4] = [1, 2, 3, 6];

/// What a sync frame header says: enough to split a PES into frames and to
/// write an MP4 `dac3` or `dec3` box (ETSI TS 102 366 Annex F).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncFrame {
    /// E-AC-3 (`bsid` 11 to 16) rather than AC-3.
    pub enhanced: bool,
    /// The frame's length in bytes.
    pub frame_length: usize,
    /// Samples per second.
    pub sample_rate: u32,
    /// `fscod`.
    pub fscod: u8,
    /// `bsid`.
    pub bsid: u8,
    /// `bsmod` (AC-3; 0, complete main, for E-AC-3, where it sits deep in
    /// the informational metadata).
    pub bsmod: u8,
    /// `acmod`: the full-bandwidth channel layout.
    pub acmod: u8,
    /// `lfeon`.
    pub lfeon: u8,
    /// AC-3 `frmsizecod / 2`, the `dac3` bit rate code.
    pub bit_rate_code: u8,
    /// E-AC-3 `strmtyp`: 0 independent, 1 dependent, 2 AC-3 converted.
    pub stream_type: u8,
    /// E-AC-3 `substreamid`.
    pub substream_id: u8,
    /// Audio blocks of 256 samples in the frame (always 6 for AC-3).
    pub blocks: u8,
    /// Bit rate in kbit/s.
    pub kbps: u32,
}

impl SyncFrame {
    /// The track parameters this frame announces.
    pub fn params(&self) -> Option<AudioParams> {
        Some(AudioParams {
            codec_string: if self.enhanced { "ec-3" } else { "ac-3" }.into(),
            sample_rate: self.sample_rate,
            channels: channels(u32::from(self.acmod), self.lfeon)?,
        })
    }
}

/// Parses the AC-3 or E-AC-3 sync frame header at the start of `data`;
/// `None` without a sync word, for an unknown `bsid` or for reserved values.
/// The codec string is `ac-3` or `ec-3` according to `bsid`.
pub fn parse_sync_frame(data: &[u8]) -> Option<AudioParams> {
    parse_frame(data)?.params()
}

/// Reads the sync frame header at the start of `data`, AC-3 or E-AC-3 by
/// `bsid`.
pub fn parse_frame(data: &[u8]) -> Option<SyncFrame> {
    let header: &[u8; 7] = data.get(..7)?.try_into().ok()?;
    if header[0] != 0x0b || header[1] != 0x77 {
        return None;
    }
    match header[5] >> 3 {
        0..=8 => parse_ac3(header),
        11..=16 => parse_eac3(header),
        _ => None,
    }
}

/// `syncinfo()` and the start of `bsi()` of an AC-3 frame (A/52 5.3).
fn parse_ac3(header: &[u8; 7]) -> Option<SyncFrame> {
    let fscod = header[4] >> 6;
    let frmsizecod = header[4] & 0x3f;
    if frmsizecod > MAX_FRMSIZECOD {
        return None;
    }
    let sample_rate = *SAMPLE_RATES.get(usize::from(fscod))?;
    let kbps = AC3_BIT_RATES[usize::from(frmsizecod >> 1)];
    // Words of 16 bits per 1536-sample frame: bit rate × 1536 / rate / 16;
    // at 44.1 kHz that is not whole and odd codes add the padding word.
    let words = match fscod {
        0 => 2 * kbps,
        1 => kbps * 320 / 147 + u32::from(frmsizecod & 1),
        _ => 3 * kbps,
    };
    // bsi() from byte 6: acmod, then mix levels that depend on it, then lfeon.
    let mut bits = BitReader::new(header.get(6..)?);
    let acmod = bits.read_bits(3)?;
    if acmod & 0x01 != 0 && acmod != 1 {
        bits.skip(2)?; // cmixlev: three front channels
    }
    if acmod & 0x04 != 0 {
        bits.skip(2)?; // surmixlev: a surround channel
    }
    if acmod == 2 {
        bits.skip(2)?; // dsurmod
    }
    let lfeon = u8::try_from(bits.read_bit()?).ok()?;
    Some(SyncFrame {
        enhanced: false,
        frame_length: usize::try_from(words * 2).ok()?,
        sample_rate,
        fscod,
        bsid: header[5] >> 3,
        bsmod: header[5] & 0x07,
        acmod: u8::try_from(acmod).ok()?,
        lfeon,
        bit_rate_code: frmsizecod >> 1,
        stream_type: 0,
        substream_id: 0,
        blocks: 6,
        kbps,
    })
}

/// The start of an E-AC-3 `syncinfo()`/`bsi()` (A/52 E.1.2).
fn parse_eac3(header: &[u8; 7]) -> Option<SyncFrame> {
    let stream_type = header[2] >> 6;
    if stream_type == 3 {
        return None; // reserved
    }
    let frmsiz = (usize::from(header[2] & 0x07) << 8) | usize::from(header[3]);
    let fscod = header[4] >> 6;
    let fscod2 = (header[4] >> 4) & 0x03;
    let (sample_rate, blocks) = if fscod == 3 {
        (*REDUCED_SAMPLE_RATES.get(usize::from(fscod2))?, 6)
    } else {
        (
            *SAMPLE_RATES.get(usize::from(fscod))?,
            EAC3_BLOCKS[usize::from(fscod2)],
        )
    };
    let frame_length = 2 * (frmsiz + 1);
    // Bits per frame over the frame's duration (blocks of 256 samples).
    let kbps = u64::try_from(frame_length).ok()? * 8 * u64::from(sample_rate)
        / (u64::from(blocks) * 256 * 1000);
    Some(SyncFrame {
        enhanced: true,
        frame_length,
        sample_rate,
        fscod,
        bsid: header[5] >> 3,
        bsmod: 0,
        acmod: (header[4] >> 1) & 0x07,
        lfeon: header[4] & 0x01,
        bit_rate_code: 0,
        stream_type,
        substream_id: (header[2] >> 3) & 0x07,
        blocks,
        kbps: u32::try_from(kbps).ok()?,
    })
}

/// Full-bandwidth channels of `acmod` plus the LFE channel if present.
fn channels(acmod: u32, lfeon: u8) -> Option<u8> {
    let full = *ACMOD_CHANNELS.get(usize::try_from(acmod).ok()?)?;
    Some(full + lfeon)
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
    fn ac3_5_1_48k() {
        // `-c:a ac3 -ac 6 -ar 48000 -f ac3`; ffprobe: ac3, 48000 Hz, 6 channels
        // (5.1(side)). bsid 8, acmod 7 (3/2) with cmixlev and surmixlev, lfeon.
        let header = [0x0b, 0x77, 0xb5, 0x0b, 0x1e, 0x40, 0xeb, 0xf8];
        assert_eq!(parse_sync_frame(&header), params("ac-3", 48000, 6));
    }

    #[test]
    fn ac3_stereo_has_dsurmod_before_lfeon() {
        // acmod 2 (2/0): dsurmod 2 bits, then lfeon 0: 010 00 0...
        let header = [0x0b, 0x77, 0, 0, 0x1e, 0x40, 0b0100_0000];
        assert_eq!(parse_sync_frame(&header), params("ac-3", 48000, 2));
        // With lfeon set: 010 00 1.. -> 2.1.
        let header = [0x0b, 0x77, 0, 0, 0x1e, 0x40, 0b0100_0100];
        assert_eq!(parse_sync_frame(&header), params("ac-3", 48000, 3));
        // fscod 1: 44.1 kHz.
        let header = [0x0b, 0x77, 0, 0, 0x5e, 0x40, 0b0100_0000];
        assert_eq!(parse_sync_frame(&header), params("ac-3", 44100, 2));
    }

    #[test]
    fn frame_lengths_follow_the_rate_tables() {
        // 192 kb/s at 48 kHz (the clip's AC-3): 384 words.
        let frame = parse_frame(&[0x0b, 0x77, 0xb5, 0x0b, 0x14, 0x40, 0xeb, 0xf8]).unwrap();
        assert_eq!(
            (frame.frame_length, frame.kbps, frame.bit_rate_code),
            (768, 192, 10)
        );
        assert_eq!(
            (frame.bsid, frame.bsmod, frame.acmod, frame.lfeon),
            (8, 0, 7, 1)
        );
        // 32 kb/s at 44.1 kHz: 69 words, 70 with the padding word.
        let even = parse_frame(&[0x0b, 0x77, 0, 0, 0x40, 0x40, 0x40]).unwrap();
        let odd = parse_frame(&[0x0b, 0x77, 0, 0, 0x41, 0x40, 0x40]).unwrap();
        assert_eq!((even.frame_length, odd.frame_length), (138, 140));
        // 640 kb/s at 32 kHz: 1920 words.
        let max = parse_frame(&[0x0b, 0x77, 0, 0, 0xa5, 0x40, 0x40]).unwrap();
        assert_eq!(max.frame_length, 3840);
        // E-AC-3: frmsiz 0x17f is 384 words; 6 blocks at 48 kHz is 192 kb/s.
        let eac3 = parse_frame(&[0x0b, 0x77, 0x01, 0x7f, 0x34, 0x87, 0xc0]).unwrap();
        assert_eq!((eac3.frame_length, eac3.blocks, eac3.kbps), (768, 6, 192));
        assert!(eac3.enhanced);
    }

    #[test]
    fn eac3_stereo_48k() {
        // `-c:a eac3 -ac 2 -ar 48000 -f eac3`; ffprobe: eac3, 48000 Hz, stereo.
        let header = [0x0b, 0x77, 0x01, 0x7f, 0x34, 0x87, 0xc0];
        assert_eq!(parse_sync_frame(&header), params("ec-3", 48000, 2));
    }

    #[test]
    fn eac3_5_1_48k() {
        // `-c:a eac3 -ac 6 -ar 48000 -f eac3`; ffprobe: eac3, 48000 Hz, 6 channels.
        let header = [0x0b, 0x77, 0x03, 0x7f, 0x3f, 0x87, 0xc0];
        assert_eq!(parse_sync_frame(&header), params("ec-3", 48000, 6));
    }

    #[test]
    fn eac3_stereo_32k() {
        // `-c:a eac3 -ac 2 -ar 32000 -f eac3`; ffprobe: eac3, 32000 Hz, stereo.
        let header = [0x0b, 0x77, 0x02, 0x3f, 0xb4, 0x87, 0xc0];
        assert_eq!(parse_sync_frame(&header), params("ec-3", 32000, 2));
    }

    #[test]
    fn eac3_reduced_rates_use_fscod2() {
        // fscod 3, fscod2 1 (22.05 kHz), acmod 2, no LFE.
        let header = [0x0b, 0x77, 0x01, 0x7f, 0b1101_0100, 0x87, 0xc0];
        assert_eq!(parse_sync_frame(&header), params("ec-3", 22050, 2));
        // fscod2 3 is reserved.
        let header = [0x0b, 0x77, 0x01, 0x7f, 0b1111_0100, 0x87, 0xc0];
        assert_eq!(parse_sync_frame(&header), None);
    }

    #[test]
    fn reserved_values_are_rejected() {
        // AC-3 fscod 3, frmsizecod 38, bsid 10, E-AC-3 strmtyp 3, no sync word.
        assert_eq!(
            parse_sync_frame(&[0x0b, 0x77, 0, 0, 0xde, 0x40, 0xeb]),
            None
        );
        assert_eq!(
            parse_sync_frame(&[0x0b, 0x77, 0, 0, 0x26, 0x40, 0xeb]),
            None
        );
        assert_eq!(
            parse_sync_frame(&[0x0b, 0x77, 0, 0, 0x1e, 0x50, 0xeb]),
            None
        );
        assert_eq!(
            parse_sync_frame(&[0x0b, 0x77, 0xc1, 0x7f, 0x34, 0x87, 0xc0]),
            None
        );
        assert_eq!(
            parse_sync_frame(&[0x0b, 0x78, 0, 0, 0x1e, 0x40, 0xeb]),
            None
        );
        assert_eq!(parse_sync_frame(&[0x0b, 0x77, 0, 0, 0x1e, 0x40]), None);
    }

    #[test]
    fn either_pmt_label_reports_what_the_bitstream_is() {
        use crate::codec::{probe_audio, Codec};
        let eac3 = [0x0b, 0x77, 0x01, 0x7f, 0x34, 0x87, 0xc0];
        assert_eq!(probe_audio(Codec::Ac3, &eac3).unwrap().codec_string, "ec-3");
        assert_eq!(
            probe_audio(Codec::Eac3, &eac3).unwrap().codec_string,
            "ec-3"
        );
    }
}
