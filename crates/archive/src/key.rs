//! Object keys, and where the recorder cuts chunks.
//!
//! ARCHITECTURE section 5: `{stream}/{YYYY}/{MM}/{DD}/{HH}/{first_seq:020}.ts`
//! and `.idx` beside it, `{stream}/locks.json` for locks. A third object,
//! `.smp`, holds the chunk's per-segment sample tables (what an MP4
//! export's `moov` is made of, `dvr_media::mp4`); it is optional: a chunk
//! exists by its `.ts` and `.idx`, and readers compute the tables from the
//! `.ts` when the `.smp` is missing (chunks written before it existed, or a
//! failed write). Keys are a pure
//! function of (stream, hour of the first segment, first seq), so a
//! recorder replaying an interval after a crash rewrites the same objects,
//! and a listing is enough to rebuild the catalog. The seq is zero-padded so
//! a lexicographic listing is in tape order within an hour.
//!
//! A segment belongs to the copy window holding its `utc_start`; windows
//! divide the hour (the config enforces it), so a chunk never spans an
//! hour boundary. Segments are never re-cut: one starting at 13:59:59 with
//! 2 s of media stays whole in the 13:00 chunk.

use std::fmt;

use dvr_common::{CivilTime, StreamName, UtcMs};
use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;

const HOUR_MS: i64 = 3_600_000;

/// Which object of a chunk a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `.ts`: the segments concatenated.
    Chunk,
    /// `.idx`: the chunk index.
    Index,
    /// `.smp`: the segments' sample tables (optional).
    SampleTables,
}

/// The identity of a chunk: everything its object keys are made of.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkKey {
    /// The stream.
    pub stream: StreamName,
    /// Start of the UTC hour of the first segment's `utc_start`.
    pub hour: UtcMs,
    /// The first segment's seq.
    pub first_seq: u64,
}

impl ChunkKey {
    /// The key of a chunk whose first segment starts at `first_utc_start`.
    pub fn new(stream: StreamName, first_utc_start: UtcMs, first_seq: u64) -> ChunkKey {
        ChunkKey {
            stream,
            hour: first_utc_start.floor_hour(),
            first_seq,
        }
    }

    /// The hour directory, `{stream}/{YYYY}/{MM}/{DD}/{HH}/`.
    pub fn hour_prefix(&self) -> String {
        hour_prefix(&self.stream, self.hour)
    }

    /// The object key of one of the chunk's two objects.
    pub fn object_key(&self, kind: ObjectKind) -> String {
        let ext = match kind {
            ObjectKind::Chunk => "ts",
            ObjectKind::Index => "idx",
            ObjectKind::SampleTables => "smp",
        };
        format!("{}{:020}.{ext}", self.hour_prefix(), self.first_seq)
    }

    /// The `.ts` key.
    pub fn ts_key(&self) -> String {
        self.object_key(ObjectKind::Chunk)
    }

    /// The `.idx` key.
    pub fn idx_key(&self) -> String {
        self.object_key(ObjectKind::Index)
    }

    /// The `.smp` key.
    pub fn smp_key(&self) -> String {
        self.object_key(ObjectKind::SampleTables)
    }

    /// The end (exclusive) of the hour every segment start of this chunk lies in.
    pub fn hour_end(&self) -> UtcMs {
        UtcMs(self.hour.0.saturating_add(HOUR_MS))
    }

    /// Parses a key relative to the archive root, e.g. from a listing.
    pub fn parse(key: &str) -> Result<(ChunkKey, ObjectKind), ArchiveError> {
        let err = |reason: &str| ArchiveError::InvalidKey {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = key.rsplitn(6, '/');
        let (Some(file), Some(hh), Some(dd), Some(mm), Some(yyyy), Some(stream)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(err("expected STREAM/YYYY/MM/DD/HH/SEQ.ts|idx|smp"));
        };
        let stream = StreamName::new(stream).map_err(|e| err(&e.to_string()))?;
        let (seq, kind) = if let Some(s) = file.strip_suffix(".ts") {
            (s, ObjectKind::Chunk)
        } else if let Some(s) = file.strip_suffix(".idx") {
            (s, ObjectKind::Index)
        } else if let Some(s) = file.strip_suffix(".smp") {
            (s, ObjectKind::SampleTables)
        } else {
            return Err(err("file is neither .ts, .idx nor .smp"));
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(seq, 20) {
            return Err(err("first seq is not 20 digits"));
        }
        if !(digits(yyyy, 4) && digits(mm, 2) && digits(dd, 2) && digits(hh, 2)) {
            return Err(err("date is not YYYY/MM/DD/HH"));
        }
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| err("date is not YYYY/MM/DD/HH"))
        };
        let civil = CivilTime {
            year: i64::from(num(yyyy)?),
            month: num(mm)?,
            day: num(dd)?,
            hour: num(hh)?,
            minute: 0,
            second: 0,
            millis: 0,
        };
        let hour = civil.to_utc().ok_or_else(|| err("no such date or hour"))?;
        let first_seq = seq
            .parse()
            .map_err(|_| err("first seq does not fit in 64 bits"))?;
        Ok((
            ChunkKey {
                stream,
                hour,
                first_seq,
            },
            kind,
        ))
    }
}

impl fmt::Display for ChunkKey {
    /// The `.ts` key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ts_key())
    }
}

/// The hour directory of `stream` holding instant `t`.
pub fn hour_prefix(stream: &StreamName, t: UtcMs) -> String {
    let c = t.civil();
    format!(
        "{stream}/{:04}/{:02}/{:02}/{:02}/",
        c.year, c.month, c.day, c.hour
    )
}

/// The key of a stream's locks.
pub fn locks_key(stream: &StreamName) -> String {
    format!("{stream}/locks.json")
}

/// The copy window `[start, end)` holding `t`, for a copy interval that
/// divides the hour (1 min to 1 h). Segments whose `utc_start` falls in one
/// window go to one chunk; `end` is when the recorder writes it.
pub fn copy_window(t: UtcMs, copy_interval_ms: i64) -> (UtcMs, UtcMs) {
    let interval = copy_interval_ms.clamp(1, HOUR_MS);
    // Windows are counted from the hour, so an interval that does not
    // divide it still never crosses it (the last window is shorter).
    let hour = t.floor_hour().0;
    let start = t.0 - (t.0 - hour) % interval;
    let end = (start + interval).min(hour + HOUR_MS);
    (UtcMs(start), UtcMs(end))
}

/// Whether a segment starting at `next_start` must open a new chunk after
/// one holding a segment that started at `prev_start`: true when they fall
/// in different copy windows (and so, always, across an hour boundary).
pub fn starts_new_chunk(prev_start: UtcMs, next_start: UtcMs, copy_interval_ms: i64) -> bool {
    copy_window(prev_start, copy_interval_ms) != copy_window(next_start, copy_interval_ms)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn stream(s: &str) -> StreamName {
        s.parse().unwrap()
    }

    // 2026-11-21T14:05:32.040Z
    const T: UtcMs = UtcMs(1_795_269_932_040);

    #[test]
    fn keys_follow_the_layout() {
        let k = ChunkKey::new(stream("ort"), T, 42);
        assert_eq!(k.ts_key(), "ort/2026/11/21/14/00000000000000000042.ts");
        assert_eq!(k.idx_key(), "ort/2026/11/21/14/00000000000000000042.idx");
        assert_eq!(k.hour, T.floor_hour());
        assert_eq!(k.hour_end().0 - k.hour.0, HOUR_MS);
        assert_eq!(locks_key(&stream("news/hd")), "news/hd/locks.json");
        assert_eq!(
            ChunkKey::parse(&k.ts_key()),
            Ok((k.clone(), ObjectKind::Chunk))
        );
        assert_eq!(
            ChunkKey::parse(&k.idx_key()),
            Ok((k.clone(), ObjectKind::Index))
        );
        assert_eq!(k.smp_key(), "ort/2026/11/21/14/00000000000000000042.smp");
        assert_eq!(
            ChunkKey::parse(&k.smp_key()),
            Ok((k, ObjectKind::SampleTables))
        );
        let nested = ChunkKey::new(stream("news/hd"), T, u64::MAX);
        assert_eq!(ChunkKey::parse(&nested.ts_key()).unwrap().0, nested);
    }

    #[test]
    fn foreign_keys_are_refused() {
        for bad in [
            "ort/locks.json",
            "ort/2026/11/21/14/42.ts",
            "ort/2026/11/21/14/00000000000000000042.mp4",
            "ort/2026/13/21/14/00000000000000000042.ts",
            "ort/2026/02/30/14/00000000000000000042.ts",
            "ort/2026/11/21/24/00000000000000000042.ts",
            "2026/11/21/14/00000000000000000042.ts",
            "../2026/11/21/14/00000000000000000042.ts",
            "ort/2026/11/21/14/99999999999999999999.ts",
        ] {
            assert!(ChunkKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_never_cross_the_hour() {
        let hour = T.floor_hour();
        assert_eq!(copy_window(T, HOUR_MS), (hour, UtcMs(hour.0 + HOUR_MS)));
        assert_eq!(
            copy_window(T, 600_000),
            (UtcMs(hour.0), UtcMs(hour.0 + 600_000))
        );
        assert!(!starts_new_chunk(
            hour,
            UtcMs(hour.0 + HOUR_MS - 1),
            HOUR_MS
        ));
        assert!(starts_new_chunk(
            UtcMs(hour.0 + HOUR_MS - 1),
            UtcMs(hour.0 + HOUR_MS),
            HOUR_MS
        ));
        assert!(starts_new_chunk(
            UtcMs(hour.0 + 599_999),
            UtcMs(hour.0 + 600_000),
            600_000
        ));
    }

    proptest! {
        #[test]
        fn keys_round_trip(ms in 0i64..4_102_444_800_000, seq: u64) {
            let k = ChunkKey::new(stream("a/b"), UtcMs(ms), seq);
            prop_assert_eq!(ChunkKey::parse(&k.ts_key()).unwrap().0, k);
        }

        #[test]
        fn parse_never_panics(key in "[a-z0-9/._]{0,60}") {
            let _ = ChunkKey::parse(&key);
        }

        #[test]
        fn window_holds_t_and_stays_in_its_hour(ms in -10_000_000_000i64..10_000_000_000, i in 1i64..=60) {
            let interval = i * 60_000;
            let t = UtcMs(ms);
            let (s, e) = copy_window(t, interval);
            prop_assert!(s <= t && t < e);
            prop_assert_eq!(s.floor_hour(), t.floor_hour());
            prop_assert!(e.0 <= t.floor_hour().0 + HOUR_MS);
        }
    }
}
