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

/// Parses the AC-3 or E-AC-3 sync frame header at the start of `data`;
/// `None` without a sync word, for an unknown `bsid` or for reserved values.
/// The codec string is `ac-3` or `ec-3` according to `bsid`.
pub fn parse_sync_frame(data: &[u8]) -> Option<AudioParams> {
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
fn parse_ac3(header: &[u8; 7]) -> Option<AudioParams> {
    let fscod = usize::from(header[4] >> 6);
    let frmsizecod = header[4] & 0x3f;
    if frmsizecod > MAX_FRMSIZECOD {
        return None;
    }
    let sample_rate = *SAMPLE_RATES.get(fscod)?;
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
    Some(AudioParams {
        codec_string: "ac-3".into(),
        sample_rate,
        channels: channels(acmod, lfeon)?,
    })
}

/// The start of an E-AC-3 `syncinfo()`/`bsi()` (A/52 E.1.2).
fn parse_eac3(header: &[u8; 7]) -> Option<AudioParams> {
    let strmtyp = header[2] >> 6;
    if strmtyp == 3 {
        return None; // reserved
    }
    let fscod = usize::from(header[4] >> 6);
    let fscod2 = usize::from((header[4] >> 4) & 0x03);
    let sample_rate = if fscod == 3 {
        *REDUCED_SAMPLE_RATES.get(fscod2)?
    } else {
        *SAMPLE_RATES.get(fscod)?
    };
    let acmod = u32::from((header[4] >> 1) & 0x07);
    let lfeon = header[4] & 0x01;
    Some(AudioParams {
        codec_string: "ec-3".into(),
        sample_rate,
        channels: channels(acmod, lfeon)?,
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
