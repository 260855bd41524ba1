//! The chunk index: where each segment of a chunk is, in a compact binary file.
//!
//! The packager reads an index to turn a time range into ranged GETs, so it
//! must be small, quick to decode and impossible to misread. Layout, all
//! integers little-endian:
//!
//! ```text
//! header   magic "DVRI" | version u16 = 1 | reserved u16 = 0
//!          record_count u32 | chunk_length u64 | codecs_len u32
//!          codecs: codecs_len bytes of JSON (CodecSummary)
//! records  record_count × 48 bytes:
//!          seq u64 | utc_start i64 (ms) | duration i64 (ticks)
//!          pts_start i64 (ticks) | offset u64 | length u32 | flags u32
//! trailer  crc32 u32 (IEEE) of every byte before it
//! ```
//!
//! Flags: bit 0 discontinuity, bit 1 independent; other bits must be zero
//! (a new meaning gets a new version). `utc_start` must lie in years
//! 1970..10000 and `duration` in 0..=1 h, so arithmetic on decoded values
//! cannot overflow. Decoding checks that seqs increase,
//! that records tile the chunk (offset 0, each next offset = previous offset
//! + length) and that the lengths sum to `chunk_length`.

use dvr_common::{Ticks, UtcMs};
use dvr_media::{CodecSummary, SegmentFlags};

use crate::error::ArchiveError;

/// The index format version this build writes and reads.
pub const INDEX_VERSION: u16 = 1;
const MAGIC: [u8; 4] = *b"DVRI";
const HEADER_LEN: usize = 4 + 2 + 2 + 4 + 8 + 4;
/// Size of one encoded record.
pub const RECORD_LEN: usize = 48;
/// Latest `utc_start` accepted: year 10000, where four-digit key years end.
pub const MAX_UTC_START: UtcMs = UtcMs(253_402_300_800_000);
/// Longest segment accepted: one hour (the segmenter cuts at 10 s; this
/// only keeps arithmetic on decoded values from overflowing).
pub const MAX_SEGMENT_DURATION: Ticks = Ticks::from_secs(3600);
const FLAG_DISCONTINUITY: u32 = 1;
const FLAG_INDEPENDENT: u32 = 2;

/// Where one segment is in its chunk, and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IndexRecord {
    /// The segment's seq.
    pub seq: u64,
    /// Wall-clock start.
    pub utc_start: UtcMs,
    /// Presentation duration.
    pub duration: Ticks,
    /// Unwrapped PTS of its first access unit.
    pub pts_start: Ticks,
    /// Byte offset in the chunk object.
    pub offset: u64,
    /// Byte length.
    pub length: u32,
    /// Discontinuity and independence.
    pub flags: SegmentFlags,
}

impl IndexRecord {
    /// Wall-clock end (exclusive).
    pub fn utc_end(&self) -> UtcMs {
        self.utc_start.plus_ticks(self.duration)
    }

    /// The byte range in the chunk, end exclusive.
    pub fn byte_range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + u64::from(self.length)
    }
}

/// The decoded index of one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkIndex {
    /// The tracks of the chunk (its first segment's; a change of program
    /// starts a new chunk).
    pub codecs: CodecSummary,
    /// One record per segment, in seq order, tiling the chunk.
    pub records: Vec<IndexRecord>,
}

impl ChunkIndex {
    /// Total bytes of the chunk object the records describe.
    pub fn chunk_length(&self) -> u64 {
        self.records.iter().map(|r| u64::from(r.length)).sum()
    }

    /// Builds an index for segments laid end to end in `(seq, utc_start,
    /// duration, pts_start, length, flags)` order, computing offsets.
    pub fn from_segments(
        codecs: CodecSummary,
        segments: impl IntoIterator<Item = (u64, UtcMs, Ticks, Ticks, u32, SegmentFlags)>,
    ) -> ChunkIndex {
        let mut offset = 0u64;
        let records = segments
            .into_iter()
            .map(|(seq, utc_start, duration, pts_start, length, flags)| {
                let r = IndexRecord {
                    seq,
                    utc_start,
                    duration,
                    pts_start,
                    offset,
                    length,
                    flags,
                };
                offset += u64::from(length);
                r
            })
            .collect();
        ChunkIndex { codecs, records }
    }

    /// The binary form.
    pub fn encode(&self) -> Vec<u8> {
        // CodecSummary is plain data: serializing it cannot fail.
        let codecs = serde_json::to_vec(&self.codecs).unwrap_or_default();
        let mut out =
            Vec::with_capacity(HEADER_LEN + codecs.len() + self.records.len() * RECORD_LEN + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        let count = u32::try_from(self.records.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&self.chunk_length().to_le_bytes());
        let codecs_len = u32::try_from(codecs.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&codecs_len.to_le_bytes());
        out.extend_from_slice(&codecs);
        for r in &self.records {
            out.extend_from_slice(&r.seq.to_le_bytes());
            out.extend_from_slice(&r.utc_start.0.to_le_bytes());
            out.extend_from_slice(&r.duration.0.to_le_bytes());
            out.extend_from_slice(&r.pts_start.0.to_le_bytes());
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.extend_from_slice(&r.length.to_le_bytes());
            let flags = u32::from(r.flags.discontinuity) * FLAG_DISCONTINUITY
                + u32::from(r.flags.independent) * FLAG_INDEPENDENT;
            out.extend_from_slice(&flags.to_le_bytes());
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the binary form, checking everything the module doc promises.
    pub fn decode(bytes: &[u8]) -> Result<ChunkIndex, ArchiveError> {
        let mut r = Reader { bytes, pos: 0 };
        let magic: [u8; 4] = r.array("magic")?;
        if magic != MAGIC {
            return Err(ArchiveError::IndexBadMagic { found: magic });
        }
        let version = u16::from_le_bytes(r.array("version")?);
        if version != INDEX_VERSION {
            return Err(ArchiveError::IndexUnknownVersion {
                found: version,
                supported: INDEX_VERSION,
            });
        }
        let _reserved: [u8; 2] = r.array("header")?;
        let count = u32::from_le_bytes(r.array("header")?);
        let chunk_length = u64::from_le_bytes(r.array("header")?);
        let codecs_len = u32::from_le_bytes(r.array("header")?);
        let codecs_bytes = r.take("codec summary", u64::from(codecs_len))?;
        let records_len = u64::from(count) * RECORD_LEN as u64;
        let records_bytes = r.take("records", records_len)?;
        let body_len = r.pos;
        let stored = u32::from_le_bytes(r.array("checksum")?);
        if r.pos != bytes.len() {
            return Err(inconsistent(format!(
                "{} bytes after the checksum",
                bytes.len() - r.pos
            )));
        }
        let computed = crc32(&bytes[..body_len]);
        if stored != computed {
            return Err(ArchiveError::IndexChecksum { stored, computed });
        }
        let codecs: CodecSummary = serde_json::from_slice(codecs_bytes)
            .map_err(|e| inconsistent(format!("codec summary: {e}")))?;
        let mut records = Vec::with_capacity(records_bytes.len() / RECORD_LEN);
        let mut expected_offset = 0u64;
        for (i, rec) in records_bytes.chunks_exact(RECORD_LEN).enumerate() {
            let mut f = Reader { bytes: rec, pos: 0 };
            let seq = u64::from_le_bytes(f.array("record")?);
            let utc_start = UtcMs(i64::from_le_bytes(f.array("record")?));
            let duration = Ticks(i64::from_le_bytes(f.array("record")?));
            let pts_start = Ticks(i64::from_le_bytes(f.array("record")?));
            let offset = u64::from_le_bytes(f.array("record")?);
            let length = u32::from_le_bytes(f.array("record")?);
            let flags = u32::from_le_bytes(f.array("record")?);
            if flags & !(FLAG_DISCONTINUITY | FLAG_INDEPENDENT) != 0 {
                return Err(inconsistent(format!(
                    "record {i} (seq {seq}): unknown flags {flags:#x}"
                )));
            }
            if duration.0 < 0 {
                return Err(inconsistent(format!(
                    "record {i} (seq {seq}): negative duration"
                )));
            }
            if let Some(prev) = records.last().map(|p: &IndexRecord| p.seq) {
                if seq <= prev {
                    return Err(inconsistent(format!("record {i}: seq {seq} after {prev}")));
                }
            }
            if offset != expected_offset {
                return Err(inconsistent(format!(
                    "record {i} (seq {seq}): offset {offset}, expected {expected_offset}"
                )));
            }
            expected_offset = offset
                .checked_add(u64::from(length))
                .ok_or_else(|| inconsistent(format!("record {i} (seq {seq}): offset overflows")))?;
            let flags = SegmentFlags {
                discontinuity: flags & FLAG_DISCONTINUITY != 0,
                independent: flags & FLAG_INDEPENDENT != 0,
            };
            records.push(IndexRecord {
                seq,
                utc_start,
                duration,
                pts_start,
                offset,
                length,
                flags,
            });
        }
        if expected_offset != chunk_length {
            return Err(inconsistent(format!(
                "segments add up to {expected_offset} bytes, header says {chunk_length}"
            )));
        }
        Ok(ChunkIndex { codecs, records })
    }
}

fn inconsistent(reason: String) -> ArchiveError {
    ArchiveError::IndexInconsistent(reason)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, what: &'static str, n: u64) -> Result<&'a [u8], ArchiveError> {
        let available = (self.bytes.len() - self.pos) as u64;
        if n > available {
            return Err(ArchiveError::IndexTruncated {
                what,
                needed: n,
                available,
            });
        }
        // n <= available, which is a usize.
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ArchiveError> {
        let s = self.take(what, N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

/// CRC-32 (IEEE 802.3, the zlib one) of `bytes`, as stored in the trailer.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use dvr_media::codec::{Codec, TrackInfo, TrackKind};
    use proptest::prelude::*;

    use super::*;

    fn summary() -> CodecSummary {
        CodecSummary {
            program_number: 1,
            tracks: vec![TrackInfo {
                pid: 256,
                stream_type: 0x1b,
                codec: Codec::H264,
                kind: TrackKind::Video,
                language: None,
                video: None,
                audio: None,
            }],
        }
    }

    fn sample() -> ChunkIndex {
        let f = SegmentFlags {
            discontinuity: false,
            independent: true,
        };
        ChunkIndex::from_segments(
            summary(),
            (0..3).map(|i| {
                (
                    10 + i,
                    UtcMs(1_000 + 2_000 * i as i64),
                    Ticks(180_000),
                    Ticks(900_000 + 180_000 * i as i64),
                    188 * 100,
                    f,
                )
            }),
        )
    }

    #[test]
    fn crc_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trips_and_checks_layout() {
        let idx = sample();
        let bytes = idx.encode();
        let codecs_len = serde_json::to_vec(&summary()).unwrap().len();
        assert_eq!(bytes.len(), HEADER_LEN + codecs_len + 3 * RECORD_LEN + 4);
        assert_eq!(ChunkIndex::decode(&bytes), Ok(idx.clone()));
        assert_eq!(idx.records[2].byte_range(), 37_600..56_400);
        assert_eq!(idx.chunk_length(), 56_400);
    }

    #[test]
    fn precise_errors() {
        let bytes = sample().encode();
        assert!(matches!(
            ChunkIndex::decode(&bytes[..10]),
            Err(ArchiveError::IndexTruncated { what: "header", .. })
        ));
        assert!(matches!(
            ChunkIndex::decode(&bytes[..bytes.len() - 1]),
            Err(ArchiveError::IndexTruncated {
                what: "checksum",
                needed: 4,
                available: 3
            })
        ));
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            ChunkIndex::decode(&bad),
            Err(ArchiveError::IndexBadMagic { .. })
        ));
        let mut bad = bytes.clone();
        bad[4] = 9;
        assert_eq!(
            ChunkIndex::decode(&bad),
            Err(ArchiveError::IndexUnknownVersion {
                found: 9,
                supported: 1
            })
        );
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 10] ^= 1;
        assert!(matches!(
            ChunkIndex::decode(&bad),
            Err(ArchiveError::IndexChecksum { .. })
        ));
        // A gap between records, with a valid checksum: caught as an offset error.
        let mut idx = sample();
        idx.records[1].offset += 1;
        assert_eq!(
            ChunkIndex::decode(&idx.encode()),
            Err(ArchiveError::IndexInconsistent(
                "record 1 (seq 11): offset 18801, expected 18800".into()
            ))
        );
        let mut bad = sample().encode();
        let n = bad.len();
        bad.push(0);
        bad.swap(n, n - 1);
        assert!(matches!(
            ChunkIndex::decode(&bad),
            Err(ArchiveError::IndexInconsistent(_))
        ));
    }

    #[test]
    fn a_header_length_that_lies_is_caught() {
        let mut bytes = sample().encode();
        bytes[12..20].copy_from_slice(&1u64.to_le_bytes());
        let n = bytes.len() - 4;
        let crc = crc32(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            ChunkIndex::decode(&bytes),
            Err(ArchiveError::IndexInconsistent(
                "segments add up to 56400 bytes, header says 1".into()
            ))
        );
    }

    fn arb_index() -> impl Strategy<Value = ChunkIndex> {
        let rec = (
            0..MAX_UTC_START.0,
            0..=MAX_SEGMENT_DURATION.0,
            any::<i64>(),
            any::<u32>(),
            any::<bool>(),
            any::<bool>(),
        );
        (any::<u64>(), proptest::collection::vec(rec, 0..50)).prop_map(|(seq0, recs)| {
            let n = recs.len() as u64;
            let seq0 = seq0.min(u64::MAX - n);
            ChunkIndex::from_segments(
                summary(),
                recs.into_iter()
                    .enumerate()
                    .map(|(i, (utc, dur, pts, len, d, ind))| {
                        let flags = SegmentFlags {
                            discontinuity: d,
                            independent: ind,
                        };
                        (
                            seq0 + i as u64,
                            UtcMs(utc),
                            Ticks(dur),
                            Ticks(pts),
                            len,
                            flags,
                        )
                    }),
            )
        })
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(idx in arb_index()) {
            prop_assert_eq!(ChunkIndex::decode(&idx.encode()), Ok(idx));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = ChunkIndex::decode(&bytes);
        }

        /// Corruption that passes the checksum (a writer bug, not a disk
        /// error) must still decode to an error or a value, never a panic.
        #[test]
        fn decode_never_panics_behind_a_valid_checksum(
            idx in arb_index(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = idx.encode();
            let body = bytes.len() - 4;
            for (pos, value) in edits {
                bytes[pos.index(body)] = value;
            }
            let crc = crc32(&bytes[..body]);
            bytes[body..].copy_from_slice(&crc.to_le_bytes());
            let _ = ChunkIndex::decode(&bytes);
        }

        #[test]
        fn any_flipped_bit_is_an_error(idx in arb_index(), pos: prop::sample::Index, bit in 0u8..8) {
            let mut bytes = idx.encode();
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(ChunkIndex::decode(&bytes).is_err());
        }
    }
}
