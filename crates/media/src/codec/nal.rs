//! Annex B NAL unit scanning shared by H.264 and H.265.
//!
//! The segmenter must decide whether a video PES starts with a random-access
//! point while looking at as few bytes as possible: it scans only until the
//! first slice (VCL NAL unit) of the access unit, which is usually within the
//! first TS packet and, behind large SEI messages, within the first few.
//! The decision reads the slice's first bytes, never its end ([`UnitHeads`]):
//! finding where a slice ends means searching the whole picture for the next
//! start code, which the demuxer would otherwise do for every access unit
//! before the fMP4 writer searches it once more to reframe it.

/// An iterator over the NAL units of an Annex B byte stream. Each item is the
/// NAL unit without its start code; trailing zero bytes belong to the next
/// start code and are trimmed. The last unit may be incomplete when the input
/// is a prefix of an access unit.
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> NalUnits<'a> {
    /// Scans `data` for NAL units; bytes before the first start code are skipped.
    pub fn new(data: &'a [u8]) -> Self {
        let pos = find_start_code(data, 0).map_or(data.len(), |(_, payload)| payload);
        Self { data, pos }
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.data.len() {
            return None;
        }
        let start = self.pos;
        let (end, next) = match find_start_code(self.data, start) {
            Some((code_at, payload_at)) => (code_at, payload_at),
            None => (self.data.len(), self.data.len()),
        };
        self.pos = next;
        let mut unit = &self.data[start..end];
        while let [rest @ .., 0] = unit {
            unit = rest;
        }
        Some(unit)
    }
}

/// The NAL units of an Annex B byte stream by their first bytes: each item
/// is the rest of the stream from a unit's first byte on, and the end of a
/// unit is searched for only when the next one is asked for. The units are
/// those of [`NalUnits`] without the empty ones (a unit's bytes start each
/// item), so a scan that stops at a unit's header reads what [`NalUnits`]
/// would have given it without searching that unit for its end.
#[derive(Debug, Clone)]
struct UnitHeads<'a> {
    data: &'a [u8],
    /// Where the next unit starts, once the last one's end was searched.
    pos: usize,
    /// The start of the unit handed out last, whose end is not yet known.
    current: Option<usize>,
}

impl<'a> UnitHeads<'a> {
    fn new(data: &'a [u8]) -> Self {
        let pos = find_start_code(data, 0).map_or(data.len(), |(_, payload)| payload);
        Self {
            data,
            pos,
            current: None,
        }
    }

    /// The whole unit last handed out, as [`NalUnits`] gives it (up to the
    /// next start code, trailing zeros trimmed): this searches for its end.
    fn bounded(&self) -> &'a [u8] {
        let start = self.current.unwrap_or(self.pos);
        NalUnits {
            data: self.data,
            pos: start,
        }
        .next()
        .unwrap_or_default()
    }
}

impl<'a> Iterator for UnitHeads<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if let Some(start) = self.current.take() {
                self.pos = find_start_code(self.data, start)
                    .map_or(self.data.len(), |(_, payload)| payload);
            }
            if self.pos >= self.data.len() {
                return None;
            }
            self.current = Some(self.pos);
            if !is_empty_unit(self.data, self.pos) {
                return Some(&self.data[self.pos..]);
            }
        }
    }
}

/// Whether the unit starting at `start` is empty once [`NalUnits`] trims
/// the zeros before the next start code, decided from its first bytes: it
/// is when zeros run to the end of `data`, or when two or more zeros run
/// into a `01` (a start code follows at once). Otherwise a non-zero byte
/// comes before any start code (one needs two zeros before its `01`).
fn is_empty_unit(data: &[u8], start: usize) -> bool {
    let zeros = data[start..].iter().take_while(|&&b| b == 0).count();
    match data.get(start + zeros) {
        None => true,
        Some(1) => zeros >= 2,
        Some(_) => false,
    }
}

/// Finds the next `00 00 01` at or after `from`; returns where the start code
/// begins and where the NAL unit after it begins.
///
/// The fMP4 writer runs this over every byte of video, so it searches for
/// the three bytes at once with `memmem` (vectorised, testing two of them
/// per position): a search for the `01` alone stops every few hundred bytes
/// of a coded slice on a `01` that no zeros precede.
fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    static START_CODE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(&[0, 0, 1]));
    let at = from + START_CODE.find(data.get(from..)?)?;
    Some((at, at + 3))
}

/// What the first bytes of an access unit say about random access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RandomAccess {
    /// The access unit is a random-access point (IDR, or IRAP for H.265, or
    /// an I slice behind a recovery-point SEI for open-GOP H.264).
    Yes,
    /// The first slice is not a random-access point.
    No,
    /// No slice header yet; more bytes are needed.
    Undecided,
}

/// Scans the start of an H.264 access unit.
pub fn h264_random_access(es: &[u8]) -> RandomAccess {
    let mut recovery_point = false;
    let mut units = UnitHeads::new(es);
    while let Some(nal) = units.next() {
        let header = nal[0];
        match header & 0x1f {
            5 => return RandomAccess::Yes,
            1 => {
                // A non-IDR slice: random access only for an I slice that a
                // recovery-point SEI announces (open GOP, common in broadcast).
                if !recovery_point {
                    return RandomAccess::No;
                }
                // The slice header is read from the unit alone, as far
                // as it goes.
                return match h264_slice_is_intra(&units.bounded()[1..]) {
                    Some(true) => RandomAccess::Yes,
                    Some(false) => RandomAccess::No,
                    None => RandomAccess::Undecided,
                };
            }
            2..=4 => return RandomAccess::No,
            6 if nal.get(1) == Some(&6) => recovery_point = true,
            _ => {}
        }
    }
    RandomAccess::Undecided
}

/// Reads `first_mb_in_slice` and `slice_type` from a slice header; `None` if
/// the bytes end first. Emulation prevention bytes cannot occur this early in
/// a header in practice (they need two zero bytes), so none are removed.
fn h264_slice_is_intra(rbsp: &[u8]) -> Option<bool> {
    let mut bits = BitReader::new(rbsp);
    bits.read_ue()?;
    let slice_type = bits.read_ue()?;
    Some(matches!(slice_type % 5, 2 | 4))
}

/// Scans the start of an H.265 access unit: IRAP pictures (BLA, IDR, CRA,
/// NAL unit types 16 to 23) are random-access points.
pub fn h265_random_access(es: &[u8]) -> RandomAccess {
    for nal in UnitHeads::new(es) {
        let nal_type = (nal[0] >> 1) & 0x3f;
        match nal_type {
            16..=23 => return RandomAccess::Yes,
            0..=15 => return RandomAccess::No,
            _ => {}
        }
    }
    RandomAccess::Undecided
}

/// Scans the start of an MPEG-2 video access unit: a sequence header before
/// the first picture makes it a random-access point.
pub fn mpeg2_random_access(es: &[u8]) -> RandomAccess {
    for unit in UnitHeads::new(es) {
        match unit[0] {
            0xb3 => return RandomAccess::Yes,
            0x00 => return RandomAccess::No,
            _ => {}
        }
    }
    RandomAccess::Undecided
}

/// The RBSP of a NAL unit: the payload after its `header_len`-byte header
/// (1 for H.264, 2 for H.265) with emulation prevention bytes (`00 00 03`)
/// removed, so that [`BitReader`] sees the syntax elements as written.
/// At most `limit` bytes are returned: callers read parameter sets, which are
/// short, and must stay cheap on a large unit. `None` if the unit is shorter
/// than its header or contains a forbidden `00 00 0x` (x < 3) sequence.
///
/// This wraps h264-reader's RBSP decoder, which both codecs share (H.265
/// uses the same escaping with a two-byte header), rather than a second copy.
pub fn rbsp(nal: &[u8], header_len: usize, limit: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let skip = std::num::NonZeroUsize::new(header_len)?;
    if nal.len() < header_len {
        return None;
    }
    let reader = h264_reader::rbsp::ByteReader::skipping_bytes(nal, skip);
    let mut out = Vec::with_capacity(nal.len().min(limit));
    reader
        .take(u64::try_from(limit).ok()?)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// A reader of big-endian bit fields and Exp-Golomb codes.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    /// Reads from the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, bit: 0 }
    }

    /// One bit, or `None` past the end.
    pub fn read_bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.bit / 8)?;
        let value = (byte >> (7 - self.bit % 8)) & 1;
        self.bit += 1;
        Some(u32::from(value))
    }

    /// `n` bits (at most 32) as an unsigned integer.
    pub fn read_bits(&mut self, n: u32) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..n {
            value = (value << 1) | self.read_bit()?;
        }
        Some(value)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.bit += n;
        (self.bit <= self.data.len() * 8).then_some(())
    }

    /// An unsigned Exp-Golomb code, `ue(v)`.
    pub fn read_ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.read_bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.read_bits(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }

    /// A signed Exp-Golomb code, `se(v)`.
    pub fn read_se(&mut self) -> Option<i32> {
        let k = i64::from(self.read_ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_units_with_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x65, 9,
        ];
        let units: Vec<&[u8]> = NalUnits::new(&data).collect();
        assert_eq!(
            units,
            vec![&[0x09, 0xf0][..], &[0x67, 1, 2][..], &[0x65, 9][..]]
        );
    }

    #[test]
    fn h264_idr_behind_aud_sps_pps_sei_is_random_access() {
        let data = [
            0, 0, 1, 0x09, 0x10, 0, 0, 1, 0x67, 0x64, 0, 0, 1, 0x68, 0xee, 0, 0, 1, 0x06, 0x05,
            0x01, 0, 0, 1, 0x65, 0x88,
        ];
        assert_eq!(h264_random_access(&data), RandomAccess::Yes);
        assert_eq!(h264_random_access(&data[..20]), RandomAccess::Undecided);
    }

    #[test]
    fn h264_p_slice_is_not_random_access_and_open_gop_i_slice_is() {
        // first_mb_in_slice = 0 ("1"), slice_type = 0 (P, "1") -> 0b11.......
        assert_eq!(
            h264_random_access(&[0, 0, 1, 0x41, 0b1100_0000]),
            RandomAccess::No
        );
        // A recovery-point SEI (payload type 6), then slice_type 7 (I): ue(7) = 0001000.
        let open_gop = [
            0,
            0,
            1,
            0x06,
            0x06,
            0x01,
            0x80,
            0,
            0,
            1,
            0x41,
            0b1000_1000,
            0,
        ];
        assert_eq!(h264_random_access(&open_gop), RandomAccess::Yes);
        // The same I slice without the SEI is not a random-access point.
        assert_eq!(h264_random_access(&open_gop[7..]), RandomAccess::No);
    }

    #[test]
    fn h265_irap_types() {
        let vps_idr = [0, 0, 1, 0x40, 0x01, 0, 0, 1, 0x26, 0x01]; // VPS, IDR_W_RADL (19)
        assert_eq!(h265_random_access(&vps_idr), RandomAccess::Yes);
        let cra = [0, 0, 1, 0x2a, 0x01]; // type 21
        assert_eq!(h265_random_access(&cra), RandomAccess::Yes);
        let trail = [0, 0, 1, 0x02, 0x01]; // TRAIL_R (1)
        assert_eq!(h265_random_access(&trail), RandomAccess::No);
        assert_eq!(
            h265_random_access(&[0, 0, 1, 0x40, 0x01]),
            RandomAccess::Undecided
        );
    }

    /// Bytes where start codes, empty units, zero runs and the headers the
    /// random-access scans look at are common.
    fn annex_b_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                4 => Just(0u8),
                2 => Just(1u8),
                1 => Just(6u8),
                1 => Just(0x65u8),
                1 => Just(0x41u8),
                1 => Just(0x26u8),
                1 => Just(0x02u8),
                1 => Just(0xb3u8),
                1 => Just(0b1000_1000u8),
                1 => any::<u8>(),
            ],
            0..48,
        )
    }

    /// The scans as they were written over whole units ([`NalUnits`]),
    /// which [`UnitHeads`] must answer alike.
    fn h264_over_whole_units(es: &[u8]) -> RandomAccess {
        let mut recovery_point = false;
        for nal in NalUnits::new(es) {
            let Some(&header) = nal.first() else { continue };
            match header & 0x1f {
                5 => return RandomAccess::Yes,
                1 => {
                    if !recovery_point {
                        return RandomAccess::No;
                    }
                    return match h264_slice_is_intra(&nal[1..]) {
                        Some(true) => RandomAccess::Yes,
                        Some(false) => RandomAccess::No,
                        None => RandomAccess::Undecided,
                    };
                }
                2..=4 => return RandomAccess::No,
                6 if nal.get(1) == Some(&6) => recovery_point = true,
                _ => {}
            }
        }
        RandomAccess::Undecided
    }

    fn h265_over_whole_units(es: &[u8]) -> RandomAccess {
        for nal in NalUnits::new(es) {
            let Some(&header) = nal.first() else { continue };
            match (header >> 1) & 0x3f {
                16..=23 => return RandomAccess::Yes,
                0..=15 => return RandomAccess::No,
                _ => {}
            }
        }
        RandomAccess::Undecided
    }

    fn mpeg2_over_whole_units(es: &[u8]) -> RandomAccess {
        for unit in NalUnits::new(es) {
            match unit.first() {
                Some(0xb3) => return RandomAccess::Yes,
                Some(0x00) => return RandomAccess::No,
                _ => {}
            }
        }
        RandomAccess::Undecided
    }

    proptest::proptest! {
        #[test]
        fn unit_heads_start_the_non_empty_units(data in annex_b_like()) {
            let whole: Vec<&[u8]> = NalUnits::new(&data).filter(|u| !u.is_empty()).collect();
            let mut heads = UnitHeads::new(&data);
            let mut count = 0;
            while let Some(head) = heads.next() {
                proptest::prop_assert!(count < whole.len());
                proptest::prop_assert!(head.starts_with(whole[count]));
                proptest::prop_assert_eq!(heads.bounded(), whole[count]);
                proptest::prop_assert_eq!(
                    head.get(1) == Some(&6),
                    whole[count].get(1) == Some(&6)
                );
                count += 1;
            }
            proptest::prop_assert_eq!(count, whole.len());
        }

        #[test]
        fn start_codes_are_the_first_00_00_01_at_or_after_from(
            data in annex_b_like(),
            from in 0usize..50,
        ) {
            let expected = data
                .get(from..)
                .and_then(|rest| rest.windows(3).position(|w| w == [0, 0, 1]))
                .map(|at| (from + at, from + at + 3));
            proptest::prop_assert_eq!(find_start_code(&data, from), expected);
        }

        #[test]
        fn random_access_reads_heads_as_it_read_whole_units(data in annex_b_like()) {
            proptest::prop_assert_eq!(h264_random_access(&data), h264_over_whole_units(&data));
            proptest::prop_assert_eq!(h265_random_access(&data), h265_over_whole_units(&data));
            proptest::prop_assert_eq!(mpeg2_random_access(&data), mpeg2_over_whole_units(&data));
        }
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 -> 0, 1, 2, 3
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(r.read_ue(), Some(0));
        assert_eq!(r.read_ue(), Some(1));
        assert_eq!(r.read_ue(), Some(2));
        assert_eq!(r.read_ue(), Some(3));
        let mut r = BitReader::new(&[0b0100_1100]);
        assert_eq!(r.read_se(), Some(1));
        assert_eq!(r.read_se(), Some(-1));
    }

    #[test]
    fn rbsp_removes_emulation_prevention_bytes() {
        let nal = [0x42, 0x01, 0x12, 0, 0, 3, 0, 0x86, 0, 0, 3, 1];
        assert_eq!(rbsp(&nal, 2, 64), Some(vec![0x12, 0, 0, 0, 0x86, 0, 0, 1]));
        assert_eq!(rbsp(&nal, 2, 3), Some(vec![0x12, 0, 0]));
        assert_eq!(rbsp(&[0x67, 0, 0, 1], 1, 64), None);
        assert_eq!(rbsp(&[0x42], 2, 64), None);
        assert_eq!(rbsp(&[0x42, 0x01], 2, 64), Some(vec![]));
    }
}
