//! The embedded live log: one stream's recent segments in append-only files.
//!
//! Ingest appends every segment here the moment it is cut; the packager
//! serves live and not-yet-archived time from it, and the recorder copies it
//! to the archive once per copy interval. It must survive a restart, even a
//! `kill -9`: each record carries its own length and CRC, and on open the log
//! is scanned and a torn last record is cut off, so nothing that was fully
//! written is lost and nothing half-written is served.
//!
//! Layout: `{dir}/{first_seq:020}.log`, a new file every `max_file_bytes`, so
//! trimming old time deletes whole files. A record is
//! `"DVRS" | version u8 | 3 reserved | meta_len u32 | payload_len u32 | crc32 u32 | meta (JSON) | payload`,
//! integers little-endian, the CRC over meta and payload. The meta is JSON
//! because it is small next to the payload and readable with `strings`.
//!
//! The index of every record and the last few segments' bytes are kept in
//! memory, so live playlists and live segments never touch the disk.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use dvr_common::UtcMs;
use dvr_media::{CodecSummary, Segment, SegmentMeta};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::BusError;
use crate::metrics::Backend;

const MAGIC: &[u8; 4] = b"DVRS";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 20;
/// Largest record accepted when reading back (segments are capped well below).
const MAX_RECORD: usize = 256 << 20;

/// Tuning of a segment log.
#[derive(Clone, Debug)]
pub struct SegmentLogOptions {
    /// Start a new file once the current one is this large.
    pub max_file_bytes: u64,
    /// How many of the newest segments to keep in memory.
    pub cached_segments: usize,
    /// Flush each record to stable storage (survives power loss, not only a
    /// process crash).
    pub sync_writes: bool,
}

impl Default for SegmentLogOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: 64 << 20,
            cached_segments: 8,
            sync_writes: false,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RecordMeta {
    #[serde(flatten)]
    meta: SegmentMeta,
    codecs: Arc<CodecSummary>,
}

#[derive(Clone, Debug)]
struct Entry {
    meta: SegmentMeta,
    codecs: Arc<CodecSummary>,
    /// The file holding it, by the file's first seq.
    file: u64,
    /// Offset of the payload in the file.
    offset: u64,
}

#[derive(Debug)]
struct LogFile {
    first_seq: u64,
    path: PathBuf,
    len: u64,
}

#[derive(Debug)]
struct Inner {
    files: VecDeque<LogFile>,
    entries: VecDeque<Entry>,
    writer: Option<File>,
    cache: VecDeque<Segment>,
}

/// One stream's live log.
#[derive(Debug)]
pub struct SegmentLog {
    dir: PathBuf,
    options: SegmentLogOptions,
    inner: Mutex<Inner>,
    appended: watch::Sender<Option<SegmentMeta>>,
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir`, recovering what a crash
    /// left: a torn last record is truncated away.
    pub fn open(dir: impl Into<PathBuf>, options: SegmentLogOptions) -> Result<Self, BusError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| io("create directory", &dir, source))?;
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(&dir)
            .map_err(|source| io("list directory", &dir, source))?
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let seq = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()?;
                Some((seq, path))
            })
            .collect();
        names.sort();
        let mut files = VecDeque::new();
        let mut entries = VecDeque::new();
        for (first_seq, path) in names {
            let len = recover_file(&path, first_seq, &mut entries)?;
            if len == 0 {
                fs::remove_file(&path).map_err(|source| io("remove empty file", &path, source))?;
                continue;
            }
            files.push_back(LogFile {
                first_seq,
                path,
                len,
            });
        }
        let last = entries.back().map(|e: &Entry| e.meta);
        let inner = Inner {
            files,
            entries,
            writer: None,
            cache: VecDeque::new(),
        };
        let (appended, _) = watch::channel(last);
        Ok(Self {
            dir,
            options,
            inner: Mutex::new(inner),
            appended,
        })
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a segment; its `seq` must be greater than the last one's.
    /// Timed as `dvr_bus_publish_seconds{op="live_log_append"}`.
    pub fn append(&self, segment: &Segment) -> Result<(), BusError> {
        let started = tokio::time::Instant::now();
        let appended = self.append_untimed(segment);
        crate::metrics::published("live_log_append", Backend::Embedded, started);
        appended
    }

    fn append_untimed(&self, segment: &Segment) -> Result<(), BusError> {
        let mut inner = self.lock();
        if let Some(last) = inner.entries.back() {
            if segment.seq <= last.meta.seq {
                return Err(BusError::OutOfOrder {
                    path: self.dir.clone(),
                    seq: segment.seq,
                    last: last.meta.seq,
                });
            }
        }
        let needs_new_file = match inner.files.back() {
            None => true,
            Some(f) => inner.writer.is_none() || f.len >= self.options.max_file_bytes,
        };
        if needs_new_file {
            let path = self.dir.join(format!("{:020}.log", segment.seq));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| io("create file", &path, source))?;
            let len = file
                .metadata()
                .map_err(|source| io("stat", &path, source))?
                .len();
            inner.files.push_back(LogFile {
                first_seq: segment.seq,
                path,
                len,
            });
            inner.writer = Some(file);
        }
        let meta = segment.meta();
        let record_meta = RecordMeta {
            meta,
            codecs: Arc::clone(&segment.codecs),
        };
        let meta_json = serde_json::to_vec(&record_meta).unwrap_or_default();
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4] = VERSION;
        header[8..12].copy_from_slice(&(meta_json.len() as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(segment.payload.len() as u32).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&meta_json);
        crc.update(&segment.payload);
        header[16..20].copy_from_slice(&crc.finalize().to_le_bytes());

        let Inner { files, writer, .. } = &mut *inner;
        let (Some(file), Some(writer)) = (files.back_mut(), writer.as_mut()) else {
            return Err(io(
                "append",
                &self.dir,
                std::io::Error::other("no open file"),
            ));
        };
        let payload_offset = file.len + (HEADER_LEN + meta_json.len()) as u64;
        let write = writer
            .write_all(&header)
            .and_then(|()| writer.write_all(&meta_json))
            .and_then(|()| writer.write_all(&segment.payload))
            .and_then(|()| {
                if self.options.sync_writes {
                    writer.sync_data()
                } else {
                    Ok(())
                }
            });
        if let Err(source) = write {
            // Leave no half record behind for readers: start a new file next time.
            let path = file.path.clone();
            let _ = writer.set_len(file.len);
            inner.writer = None;
            return Err(io("append", &path, source));
        }
        file.len = payload_offset + segment.payload.len() as u64;
        let file_first_seq = file.first_seq;
        inner.entries.push_back(Entry {
            meta,
            codecs: Arc::clone(&segment.codecs),
            file: file_first_seq,
            offset: payload_offset,
        });
        inner.cache.push_back(segment.clone());
        while inner.cache.len() > self.options.cached_segments {
            inner.cache.pop_front();
        }
        drop(inner);
        self.appended.send_replace(Some(meta));
        Ok(())
    }

    /// Metadata of every segment in the log, oldest first.
    pub fn segments(&self) -> Vec<SegmentMeta> {
        self.lock().entries.iter().map(|e| e.meta).collect()
    }

    /// Metadata of the segments with `seq` greater than `after` (all of them
    /// for `None`), oldest first.
    pub fn segments_after(&self, after: Option<u64>) -> Vec<SegmentMeta> {
        let inner = self.lock();
        let start = after.map_or(0, |a| inner.entries.partition_point(|e| e.meta.seq <= a));
        inner.entries.range(start..).map(|e| e.meta).collect()
    }

    /// Metadata of the segments overlapping `[from, to)`, oldest first.
    pub fn segments_between(&self, from: UtcMs, to: UtcMs) -> Vec<SegmentMeta> {
        let inner = self.lock();
        let start = inner.entries.partition_point(|e| e.meta.utc_end() <= from);
        inner
            .entries
            .range(start..)
            .take_while(|e| e.meta.utc_start < to)
            .map(|e| e.meta)
            .collect()
    }

    /// The newest `n` segments' metadata, oldest first.
    pub fn last(&self, n: usize) -> Vec<SegmentMeta> {
        let inner = self.lock();
        let skip = inner.entries.len().saturating_sub(n);
        inner.entries.iter().skip(skip).map(|e| e.meta).collect()
    }

    /// The newest segment's metadata.
    pub fn newest(&self) -> Option<SegmentMeta> {
        self.lock().entries.back().map(|e| e.meta)
    }

    /// The oldest segment's metadata.
    pub fn oldest(&self) -> Option<SegmentMeta> {
        self.lock().entries.front().map(|e| e.meta)
    }

    /// A segment with its bytes, from memory if recent, else from disk.
    pub fn get(&self, seq: u64) -> Result<Option<Segment>, BusError> {
        let inner = self.lock();
        if let Some(s) = inner.cache.iter().find(|s| s.seq == seq) {
            return Ok(Some(s.clone()));
        }
        let Ok(i) = inner.entries.binary_search_by_key(&seq, |e| e.meta.seq) else {
            return Ok(None);
        };
        let entry = inner.entries[i].clone();
        let Ok(f) = inner
            .files
            .binary_search_by_key(&entry.file, |f| f.first_seq)
        else {
            return Ok(None);
        };
        let file = &inner.files[f];
        let path = file.path.clone();
        drop(inner);
        let mut f = File::open(&path).map_err(|source| io("open", &path, source))?;
        f.seek(SeekFrom::Start(entry.offset))
            .map_err(|source| io("seek", &path, source))?;
        let mut payload = vec![0u8; entry.meta.bytes as usize];
        f.read_exact(&mut payload)
            .map_err(|source| io("read", &path, source))?;
        Ok(Some(Segment {
            seq: entry.meta.seq,
            pts_start: entry.meta.pts_start,
            duration: entry.meta.duration,
            utc_start: entry.meta.utc_start,
            flags: entry.meta.flags,
            codecs: entry.codecs,
            payload: Bytes::from(payload),
        }))
    }

    /// The codec summary of a segment still in the log.
    pub fn codecs(&self, seq: u64) -> Option<Arc<CodecSummary>> {
        let inner = self.lock();
        let i = inner
            .entries
            .binary_search_by_key(&seq, |e| e.meta.seq)
            .ok()?;
        Some(Arc::clone(&inner.entries[i].codecs))
    }

    /// Deletes whole files whose segments all end at or before `before` and
    /// have `seq < keep_from_seq` (never what the recorder has not copied).
    /// Returns how many segments were dropped.
    pub fn trim(&self, before: UtcMs, keep_from_seq: u64) -> Result<usize, BusError> {
        let mut inner = self.lock();
        let mut dropped = 0;
        // Never delete the file being written.
        while inner.files.len() > 1 {
            let next_first = inner.files[1].first_seq;
            let expendable = inner
                .entries
                .iter()
                .take_while(|e| e.meta.seq < next_first)
                .all(|e| e.meta.utc_end() <= before && e.meta.seq < keep_from_seq);
            if !expendable {
                break;
            }
            let Some(file) = inner.files.pop_front() else {
                break;
            };
            fs::remove_file(&file.path).map_err(|source| io("remove file", &file.path, source))?;
            while inner
                .entries
                .front()
                .is_some_and(|e| e.meta.seq < next_first)
            {
                inner.entries.pop_front();
                dropped += 1;
            }
            inner.cache.retain(|s| s.seq >= next_first);
        }
        Ok(dropped)
    }

    /// Watches appends: the receiver sees the newest segment's metadata.
    pub fn subscribe(&self) -> watch::Receiver<Option<SegmentMeta>> {
        self.appended.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // mutation completes before the index changes), so poisoning is moot.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Scans one file, appending its valid records to `entries`; truncates a
/// torn or corrupt tail. Returns the valid length.
fn recover_file(
    path: &Path,
    file_first_seq: u64,
    entries: &mut VecDeque<Entry>,
) -> Result<u64, BusError> {
    let data = fs::read(path).map_err(|source| io("read", path, source))?;
    let mut at = 0usize;
    while at + HEADER_LEN <= data.len() {
        let header = &data[at..at + HEADER_LEN];
        let le = |r: std::ops::Range<usize>| {
            u32::from_le_bytes([
                header[r.start],
                header[r.start + 1],
                header[r.start + 2],
                header[r.start + 3],
            ])
        };
        if &header[..4] != MAGIC || header[4] != VERSION {
            break;
        }
        let meta_len = le(8..12) as usize;
        let payload_len = le(12..16) as usize;
        let crc = le(16..20);
        let end = at + HEADER_LEN + meta_len + payload_len;
        if meta_len + payload_len > MAX_RECORD || end > data.len() {
            break;
        }
        let meta_bytes = &data[at + HEADER_LEN..at + HEADER_LEN + meta_len];
        let payload = &data[at + HEADER_LEN + meta_len..end];
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(meta_bytes);
        hasher.update(payload);
        if hasher.finalize() != crc {
            break;
        }
        let Ok(record) = serde_json::from_slice::<RecordMeta>(meta_bytes) else {
            break;
        };
        if entries
            .back()
            .is_some_and(|e: &Entry| e.meta.seq >= record.meta.seq)
        {
            break;
        }
        let codecs = match entries.back() {
            Some(prev) if *prev.codecs == *record.codecs => Arc::clone(&prev.codecs),
            _ => record.codecs,
        };
        entries.push_back(Entry {
            meta: record.meta,
            codecs,
            file: file_first_seq,
            offset: (at + HEADER_LEN + meta_len) as u64,
        });
        at = end;
    }
    if at < data.len() {
        tracing::warn!(path = %path.display(), valid = at, len = data.len(), "live log: cutting off a torn or corrupt tail");
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| io("open", path, source))?;
        file.set_len(at as u64)
            .map_err(|source| io("truncate", path, source))?;
    }
    Ok(at as u64)
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> BusError {
    BusError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(seq: u64, len: usize) -> Segment {
        dvr_testkit::fixtures::segment(seq)
            .on_tape_from(1_000_000)
            .discontinuity(seq == 0)
            .program_number(1)
            .seq_bytes(len)
            .build()
    }

    fn small_files() -> SegmentLogOptions {
        SegmentLogOptions {
            max_file_bytes: 1000,
            cached_segments: 2,
            sync_writes: false,
        }
    }

    #[test]
    fn appends_reads_back_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), small_files()).unwrap();
        for seq in 0..10 {
            log.append(&segment(seq, 376)).unwrap();
        }
        assert_eq!(
            log.get(9).unwrap().unwrap().payload,
            segment(9, 376).payload,
            "from memory"
        );
        assert_eq!(
            log.get(1).unwrap().unwrap().payload,
            segment(1, 376).payload,
            "from disk"
        );
        assert!(log.append(&segment(5, 10)).is_err(), "seq must grow");
        drop(log);
        let log = SegmentLog::open(dir.path(), small_files()).unwrap();
        assert_eq!(log.segments().len(), 10);
        let again = log.get(3).unwrap().unwrap();
        assert_eq!(again.meta(), segment(3, 376).meta());
        assert_eq!(again.payload, segment(3, 376).payload);
        log.append(&segment(10, 376)).unwrap();
        assert_eq!(log.newest().unwrap().seq, 10);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), SegmentLogOptions::default()).unwrap();
        for seq in 0..3 {
            log.append(&segment(seq, 1000)).unwrap();
        }
        drop(log);
        let file = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let len = fs::metadata(&file).unwrap().len();
        // A crash in the middle of the third record.
        OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(len - 500)
            .unwrap();
        let log = SegmentLog::open(dir.path(), SegmentLogOptions::default()).unwrap();
        assert_eq!(
            log.segments().iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![0, 1]
        );
        log.append(&segment(2, 1000)).unwrap();
        drop(log);
        let log = SegmentLog::open(dir.path(), SegmentLogOptions::default()).unwrap();
        assert_eq!(log.segments().len(), 3);
        assert_eq!(
            log.get(2).unwrap().unwrap().payload,
            segment(2, 1000).payload
        );
    }

    #[test]
    fn time_queries_and_trim() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), small_files()).unwrap();
        for seq in 0..12 {
            log.append(&segment(seq, 400)).unwrap();
        }
        let between = log.segments_between(UtcMs(1_003_000), UtcMs(1_007_000));
        assert_eq!(
            between.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            log.last(2).iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![10, 11]
        );
        // Files hold 3 segments each (1000-byte limit); the recorder copied up to seq 7.
        let dropped = log.trim(UtcMs(1_020_000), 7).unwrap();
        assert_eq!(dropped, 6);
        assert_eq!(log.oldest().unwrap().seq, 6);
        assert!(log.get(2).unwrap().is_none());
        assert_eq!(
            log.get(6).unwrap().unwrap().payload,
            segment(6, 400).payload
        );
    }

    #[tokio::test]
    async fn subscribers_see_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), small_files()).unwrap();
        let mut rx = log.subscribe();
        log.append(&segment(0, 188)).unwrap();
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow().unwrap().seq, 0);
    }
}
