//! File input: a TS file played as if it were live, once or in a loop.
//!
//! Pacing follows the file's own clock: each chunk is released when the
//! wall clock has advanced as far as the chunk's last PCR (or PTS, for files
//! without PCR) since the first one. The waiting is done with tokio's timer,
//! so a test with tokio's clock paused runs a minute of file in
//! milliseconds, and `pace=false` reads as fast as the consumer takes it.
//!
//! Looping shifts each pass by the length of the passes before it and
//! renumbers continuity counters ([`dvr_media::retime`]), so the loop point
//! is not a discontinuity for the segmenter or for players.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use dvr_common::Ticks;
use dvr_media::retime::{pacing_stamp, PacingStamp, PassSpan, Retimer};
use dvr_media::timestamp::Unwrapper;
use dvr_media::ts::{PacketSync, PACKET_SIZE};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::time::Instant;

use super::{BoxFuture, InputUrl, Source, SourceChunk};
use crate::error::IngestError;

/// Bytes read (and released) at a time: 56 packets, about 10 KiB.
const READ_SIZE: usize = 56 * PACKET_SIZE;
/// Lagging further behind the file's clock than this re-anchors pacing
/// instead of bursting to catch up.
const MAX_LAG: Duration = Duration::from_secs(1);
/// A clock step larger than this inside the file re-anchors pacing.
const MAX_STEP: Ticks = Ticks::from_secs(10);

/// A file input's path and options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileTarget {
    /// The file (relative paths are relative to the working directory).
    pub path: PathBuf,
    /// How many passes to play: `loop=false` (the default) is one,
    /// `loop=true` is `None`, for ever, `loop=N` is N. Timestamps continue
    /// from pass to pass.
    pub passes: Option<u64>,
    /// `pace=false` turns real-time pacing off (tests, batch imports).
    pub paced: bool,
}

/// Real-time release of chunks by the stream's clock.
#[derive(Debug, Default)]
struct Pacer {
    unwrapper: Unwrapper,
    /// Whether the file has PCRs (they are preferred once seen).
    pcr: bool,
    origin: Option<(Instant, Ticks)>,
    last: Option<Ticks>,
}

impl Pacer {
    /// Notes a packet's stamp; returns its unwrapped value if pacing uses it.
    fn observe(&mut self, stamp: PacingStamp) -> Option<Ticks> {
        let raw = match stamp {
            PacingStamp::Pcr(v) => {
                if !self.pcr {
                    self.pcr = true;
                    self.origin = None;
                    self.unwrapper = Unwrapper::default();
                }
                v
            }
            PacingStamp::Pts(_) if self.pcr => return None,
            PacingStamp::Pts(v) => v,
        };
        Some(self.unwrapper.unwrap(raw))
    }

    /// When the chunk whose last stamp is `t` may be released.
    fn due(&mut self, t: Ticks) -> Instant {
        let now = Instant::now();
        let stepped = self
            .last
            .is_some_and(|last| t - last > MAX_STEP || t < last - MAX_STEP);
        self.last = Some(t);
        let (origin, origin_t) = match self.origin {
            Some(o) if !stepped => o,
            _ => *self.origin.insert((now, t)),
        };
        let ahead_ms = u64::try_from((t - origin_t).as_ms()).unwrap_or(0);
        let due = origin + Duration::from_millis(ahead_ms);
        if due + MAX_LAG < now {
            self.origin = Some((now, t));
            return now;
        }
        due
    }
}

/// Plays a TS file.
#[derive(Debug)]
pub struct FileSource {
    url: InputUrl,
    target: FileTarget,
    file: Option<tokio::fs::File>,
    sync: PacketSync,
    retimer: Retimer,
    span: PassSpan,
    /// Passes completed.
    passes: u64,
    pacer: Pacer,
    read_buf: Vec<u8>,
    ended: bool,
}

impl FileSource {
    /// A source for the file; it is opened at the first read.
    pub fn new(url: InputUrl, target: &FileTarget) -> Self {
        FileSource {
            url,
            target: target.clone(),
            file: None,
            sync: PacketSync::new(),
            retimer: Retimer::new(),
            span: PassSpan::default(),
            passes: 0,
            pacer: Pacer::default(),
            read_buf: vec![0; READ_SIZE],
            ended: false,
        }
    }

    /// Completed passes over the file.
    pub fn passes(&self) -> u64 {
        self.passes
    }

    fn io(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> IngestError {
        let url = self.url.to_string();
        move |source| IngestError::Io { what, url, source }
    }

    async fn read(&mut self) -> Result<Option<Bytes>, IngestError> {
        if self.ended {
            return Ok(None);
        }
        loop {
            if self.file.is_none() {
                let file = tokio::fs::File::open(&self.target.path)
                    .await
                    .map_err(self.io("open"))?;
                self.file = Some(file);
            }
            let io_read = self.io("read");
            let Some(file) = self.file.as_mut() else {
                continue;
            };
            let n = file.read(&mut self.read_buf).await.map_err(io_read)?;
            if n == 0 {
                self.end_of_pass().await?;
                if self.ended {
                    return Ok(None);
                }
                continue;
            }
            let mut out = Vec::with_capacity(n);
            self.sync
                .push(&self.read_buf[..n], |run| out.extend_from_slice(run));
            if out.is_empty() {
                continue;
            }
            let mut last_stamp = None;
            for packet in out.chunks_exact_mut(PACKET_SIZE) {
                if self.passes == 0 {
                    self.span.observe(packet);
                }
                self.retimer.apply(packet);
                if let Some(t) = pacing_stamp(packet).and_then(|s| self.pacer.observe(s)) {
                    last_stamp = Some(t);
                }
            }
            if self.target.paced {
                if let Some(t) = last_stamp {
                    tokio::time::sleep_until(self.pacer.due(t)).await;
                }
            } else {
                tokio::task::yield_now().await;
            }
            return Ok(Some(Bytes::from(out)));
        }
    }

    /// At the end of the file: stop, or rewind for the next pass.
    async fn end_of_pass(&mut self) -> Result<(), IngestError> {
        self.passes += 1;
        self.sync.reset();
        if self.target.passes.is_some_and(|n| self.passes >= n) {
            self.ended = true;
            return Ok(());
        }
        let Some(duration) = self.span.duration().filter(|d| *d > Ticks::ZERO) else {
            self.ended = true;
            return Err(IngestError::Io {
                what: "loop",
                url: self.url.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the file has no timestamps to continue across the loop",
                ),
            });
        };
        self.retimer.next_pass(duration);
        let seek = self.io("rewind");
        if let Some(file) = self.file.as_mut() {
            file.seek(SeekFrom::Start(0)).await.map_err(seek)?;
        }
        tracing::debug!(input = %self.url, pass = self.passes, offset = self.retimer.offset().0, "file looped");
        Ok(())
    }
}

impl Source for FileSource {
    fn url(&self) -> &InputUrl {
        &self.url
    }

    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<SourceChunk>, IngestError>> {
        Box::pin(async { Ok(self.read().await?.map(SourceChunk::from)) })
    }
}
