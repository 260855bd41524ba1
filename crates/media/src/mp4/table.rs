//! The sample table of one stored segment: what a progressive MP4's `moov`
//! needs to know about it, without its media.
//!
//! A `moov` lists every sample's size, duration, composition offset and
//! sync flag, and its tracks' sample entries. The recorder derives these
//! once, when it writes a chunk, with the same one-pass collector as fMP4
//! ([`Fragments::from_ts`]), and stores them beside the chunk (about 13
//! bytes a sample), so an export can answer its `moov` and exact length
//! before reading a byte of media.
//!
//! **Independent of the run's clock.** Times are kept relative to the
//! segment's own `pts_start`: each track's first decode time and earliest
//! presentation time as offsets from it, then per-sample durations. The
//! export places the segment on the tape with the index's timing, so a
//! table stays right whatever run the segment is later read as part of.
//!
//! **Encoding** (big-endian, version 1): `DSMP`, version byte, track count
//! (u8), then per track: number (u16), kind (0 video, 1 audio), timescale
//! (u32), first decode and earliest presentation offsets (i64 each), width
//! and height (u32 each), language (3 bytes), sample entry length (u32) and
//! bytes, sample count (u32), then per sample size (u32), duration (u32),
//! composition offset (i32) and flags (u8, bit 0 = sync). Decoding checks
//! every length against the bytes left and refuses trailing bytes.
//!
//! **A chunk's tables** (the archive's `.smp` object beside each `.ts`):
//! `DSMC`, version byte, count (u32), then per segment its seq (u64), the
//! table's length (u32) and the table. A segment whose table could not be
//! made is absent; readers compute it from the segment's bytes.

use dvr_common::Ticks;

use crate::codec::TrackKind;
use crate::fmp4::boxes::SYNC_SAMPLE;
use crate::fmp4::{mp4_language, to_timescale, Fmp4Error, Fragments, SegmentTiming, TapeClock};

/// The table format this build writes and reads. Tables describe the bytes
/// the fMP4 collector converts a segment to: a change of that conversion
/// that changes sample sizes (dropping other NAL units, say) must bump this,
/// so stored tables of the old form are recomputed instead of trusted.
pub const TABLE_VERSION: u8 = 1;
const MAGIC: &[u8; 4] = b"DSMP";
const CHUNK_MAGIC: &[u8; 4] = b"DSMC";
/// Bytes of one sample in the encoding.
const SAMPLE_BYTES: usize = 13;

/// One sample of a track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Bytes, after conversion (length prefixes, no ADTS header).
    pub size: u32,
    /// Until the next sample's decode time, in the track's timescale.
    pub duration: u32,
    /// Presentation minus decode time, in the track's timescale.
    pub composition_offset: i32,
    /// A sync sample (a keyframe; every audio frame).
    pub sync: bool,
}

/// One track of a segment's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableTrack {
    /// Track number: 1-based, PMT order (as in `tracks-N`).
    pub number: u16,
    /// Video or audio.
    pub kind: TrackKind,
    /// Units per second of the times: 90000 for video, the sample rate for
    /// audio.
    pub timescale: u32,
    /// The first sample's decode time minus the segment's `pts_start`
    /// (in `timescale`).
    pub first_decode: i64,
    /// The earliest presentation time minus the segment's `pts_start`.
    pub earliest_presentation: i64,
    /// Display size (video), 0 for audio.
    pub width: u32,
    /// Display height (video), 0 for audio.
    pub height: u32,
    /// ISO 639-2/T language or `und`.
    pub language: [u8; 3],
    /// The sample entry box.
    pub sample_entry: Vec<u8>,
    /// The samples in decode order.
    pub samples: Vec<Sample>,
}

impl TableTrack {
    /// Bytes of converted sample data.
    pub fn data_len(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.size)).sum()
    }
}

/// The sample table of one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SampleTable {
    /// Tracks that fMP4/MP4 can carry, in PMT order.
    pub tracks: Vec<TableTrack>,
}

/// Why a stored table cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Not a sample table, or a version this build does not read.
    #[error("not a sample table of version {TABLE_VERSION}")]
    Version,
    /// Shorter than its lengths say, or with bytes after its end.
    #[error("the sample table is truncated or has trailing bytes")]
    Truncated,
    /// A field out of its range.
    #[error("the sample table is malformed: {0}")]
    Malformed(&'static str),
}

/// Unwrapped PTS are placed this far from 0 while the table is collected,
/// so no timestamp is negative; the table keeps offsets only.
const BIAS: i64 = 1 << 34;

impl SampleTable {
    /// Reads a stored TS segment (every track) in one pass. `pts_start`
    /// and `duration` are the segment's, as its index entry has them.
    pub fn from_ts(ts: &[u8], pts_start: Ticks, duration: Ticks) -> Result<Self, Fmp4Error> {
        let timing = SegmentTiming {
            clock: TapeClock::new(dvr_common::UtcMs(0), Ticks(-BIAS)),
            seq: 0,
            pts_start,
            duration,
        };
        let fragments = Fragments::from_ts(ts, &timing, None)?;
        Ok(Self::from_fragments(&fragments, &timing))
    }

    /// The table of segment fragments read with `timing`.
    pub fn from_fragments(fragments: &Fragments, timing: &SegmentTiming) -> Self {
        let start = timing.tape_start();
        let tracks = fragments
            .tracks()
            .iter()
            .map(|t| {
                let origin = to_timescale(start, t.timescale);
                let (width, height) = t.video.as_ref().map_or((0, 0), |v| (v.width, v.height));
                TableTrack {
                    number: u16::try_from(t.number).unwrap_or(u16::MAX),
                    kind: t.kind,
                    timescale: t.timescale,
                    first_decode: t.base_decode_time as i64 - origin,
                    earliest_presentation: t.earliest_presentation_time as i64 - origin,
                    width,
                    height,
                    language: mp4_language(t.language.as_deref()),
                    sample_entry: t.sample_entry().to_vec(),
                    samples: t
                        .samples()
                        .iter()
                        .map(|s| Sample {
                            size: s.size,
                            duration: s.duration,
                            composition_offset: s.composition_offset,
                            sync: t.kind == TrackKind::Audio || s.flags == SYNC_SAMPLE,
                        })
                        .collect(),
                }
            })
            .collect();
        SampleTable { tracks }
    }

    /// Track `number`, if the segment has it.
    pub fn track(&self, number: usize) -> Option<&TableTrack> {
        self.tracks.iter().find(|t| usize::from(t.number) == number)
    }

    /// The binary form (see the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let samples: usize = self.tracks.iter().map(|t| t.samples.len()).sum();
        let mut out = Vec::with_capacity(8 + self.tracks.len() * 256 + samples * SAMPLE_BYTES);
        out.extend_from_slice(MAGIC);
        out.push(TABLE_VERSION);
        out.push(self.tracks.len().min(255) as u8);
        for t in self.tracks.iter().take(255) {
            out.extend_from_slice(&t.number.to_be_bytes());
            out.push(u8::from(t.kind == TrackKind::Audio));
            out.extend_from_slice(&t.timescale.to_be_bytes());
            out.extend_from_slice(&t.first_decode.to_be_bytes());
            out.extend_from_slice(&t.earliest_presentation.to_be_bytes());
            out.extend_from_slice(&t.width.to_be_bytes());
            out.extend_from_slice(&t.height.to_be_bytes());
            out.extend_from_slice(&t.language);
            out.extend_from_slice(&(t.sample_entry.len() as u32).to_be_bytes());
            out.extend_from_slice(&t.sample_entry);
            out.extend_from_slice(&(t.samples.len() as u32).to_be_bytes());
            for s in &t.samples {
                out.extend_from_slice(&s.size.to_be_bytes());
                out.extend_from_slice(&s.duration.to_be_bytes());
                out.extend_from_slice(&s.composition_offset.to_be_bytes());
                out.push(u8::from(s.sync));
            }
        }
        out
    }

    /// Reads the binary form, checking every length.
    pub fn decode(bytes: &[u8]) -> Result<Self, TableError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC || r.u8()? != TABLE_VERSION {
            return Err(TableError::Version);
        }
        let count = r.u8()?;
        let mut tracks = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let number = u16::from_be_bytes(r.array()?);
            let kind = match r.u8()? {
                0 => TrackKind::Video,
                1 => TrackKind::Audio,
                _ => return Err(TableError::Malformed("unknown track kind")),
            };
            let timescale = r.u32()?;
            if timescale == 0 {
                return Err(TableError::Malformed("a zero timescale"));
            }
            let first_decode = i64::from_be_bytes(r.array()?);
            let earliest_presentation = i64::from_be_bytes(r.array()?);
            let width = r.u32()?;
            let height = r.u32()?;
            let language = r.array()?;
            let entry_len = r.u32()? as usize;
            let sample_entry = r.take(entry_len)?.to_vec();
            let sample_count = r.u32()? as usize;
            let body = r.take(
                sample_count
                    .checked_mul(SAMPLE_BYTES)
                    .ok_or(TableError::Truncated)?,
            )?;
            let samples = body
                .chunks_exact(SAMPLE_BYTES)
                .map(|s| Sample {
                    size: u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
                    duration: u32::from_be_bytes([s[4], s[5], s[6], s[7]]),
                    composition_offset: i32::from_be_bytes([s[8], s[9], s[10], s[11]]),
                    sync: s[12] & 1 != 0,
                })
                .collect();
            tracks.push(TableTrack {
                number,
                kind,
                timescale,
                first_decode,
                earliest_presentation,
                width,
                height,
                language,
                sample_entry,
                samples,
            });
        }
        if !r.0.is_empty() {
            return Err(TableError::Truncated);
        }
        Ok(SampleTable { tracks })
    }
}

/// The `.smp` form of a chunk's tables, by segment seq.
pub fn encode_chunk_tables(tables: &[(u64, SampleTable)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(CHUNK_MAGIC);
    out.push(TABLE_VERSION);
    out.extend_from_slice(&(tables.len() as u32).to_be_bytes());
    for (seq, table) in tables {
        let bytes = table.encode();
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Reads the `.smp` form, checking every length.
pub fn decode_chunk_tables(bytes: &[u8]) -> Result<Vec<(u64, SampleTable)>, TableError> {
    let mut r = Reader(bytes);
    if r.take(4)? != CHUNK_MAGIC || r.u8()? != TABLE_VERSION {
        return Err(TableError::Version);
    }
    let count = r.u32()? as usize;
    // Each entry takes at least 12 bytes: no allocation beyond the input.
    let mut out = Vec::with_capacity(count.min(r.0.len() / 12));
    for _ in 0..count {
        let seq = u64::from_be_bytes(r.array()?);
        let len = r.u32()? as usize;
        out.push((seq, SampleTable::decode(r.take(len)?)?));
    }
    if !r.0.is_empty() {
        return Err(TableError::Truncated);
    }
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TableError> {
        if n > self.0.len() {
            return Err(TableError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], TableError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, TableError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, TableError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_table() -> SampleTable {
        SampleTable {
            tracks: vec![TableTrack {
                number: 1,
                kind: TrackKind::Video,
                timescale: 90_000,
                first_decode: 0,
                earliest_presentation: 0,
                width: 1280,
                height: 720,
                language: *b"und",
                sample_entry: b"\0\0\0\x08avc1".to_vec(),
                samples: vec![
                    Sample {
                        size: 1000,
                        duration: 3600,
                        composition_offset: 0,
                        sync: true,
                    },
                    Sample {
                        size: 200,
                        duration: 3600,
                        composition_offset: -3600,
                        sync: false,
                    },
                ],
            }],
        }
    }

    #[test]
    fn encoding_round_trips_and_costs_thirteen_bytes_a_sample() {
        let table = sample_table();
        let bytes = table.encode();
        assert_eq!(SampleTable::decode(&bytes).unwrap(), table);
        let mut more = table.clone();
        let second = more.tracks[0].samples[1];
        more.tracks[0].samples.push(second);
        assert_eq!(more.encode().len() - bytes.len(), 13);
    }

    #[test]
    fn chunk_tables_round_trip_and_refuse_truncation() {
        let tables = vec![(7, sample_table()), (8, SampleTable::default())];
        let bytes = encode_chunk_tables(&tables);
        assert_eq!(decode_chunk_tables(&bytes).unwrap(), tables);
        for len in 0..bytes.len() {
            assert!(decode_chunk_tables(&bytes[..len]).is_err(), "{len} bytes");
        }
        assert_eq!(
            decode_chunk_tables(&sample_table().encode()),
            Err(TableError::Version)
        );
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_refused() {
        let bytes = sample_table().encode();
        for len in 0..bytes.len() {
            assert!(SampleTable::decode(&bytes[..len]).is_err(), "{len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(SampleTable::decode(&longer), Err(TableError::Truncated));
        let mut other = bytes;
        other[4] = 2;
        assert_eq!(SampleTable::decode(&other), Err(TableError::Version));
        // A sample count that would overflow the length check.
        let mut huge = sample_table();
        huge.tracks[0].samples.clear();
        let mut bytes = huge.encode();
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(SampleTable::decode(&bytes), Err(TableError::Truncated));
    }
}
