//! The media core: everything the DVR knows about MPEG-TS and its codecs.
//!
//! Bytes go in, [`Segment`]s come out; nothing here does I/O, so it is fast
//! to test and safe to fuzz. The pieces, bottom up:
//!
//! - [`ts`]: finding 188-byte packets in a byte stream, reading headers,
//!   continuity counters.
//! - [`psi`]: PAT/PMT tracking, program choice, PAT/PMT re-insertion.
//! - [`timestamp`]: PES headers and 33-bit timestamp unwrapping.
//! - [`codec`]: codec identification, random-access detection, parameters
//!   and RFC 6381 strings.
//! - [`demux`]: elementary streams reassembled into access units, for the
//!   stages that need whole frames (probing, fMP4, export).
//! - [`fmp4`]: a stored segment as fragmented MP4 (CMAF), per track, for
//!   DASH and CMAF HLS.
//! - [`retime`]: shifting timestamps and renumbering continuity counters in
//!   place, so a looped file is one continuous stream.
//! - [`flv`]: FLV tag bodies (RTMP's audio and video) read and muxed to TS.
//! - [`ts_mux`]: elementary-stream frames (H.264, AAC) muxed into MPEG-TS,
//!   for inputs that do not carry TS (RTMP).
//! - [`wallclock`]: media time to UTC.
//! - [`segmenter`]: the keyframe segmenter the recorder stands on.
//! - [`segment`]: the segment value every later stage stores and serves.
//! - [`tracks`]: what a stored segment holds, and the segment cut down to
//!   some of its tracks by PID (for per-track HLS playlists).

pub mod codec;
pub mod demux;
pub mod flv;
pub mod fmp4;
#[doc(hidden)]
pub mod fuzzing;
pub mod mp4;
pub mod psi;
pub mod retime;
pub mod segment;
pub mod segmenter;
pub mod stats;
#[cfg(test)]
pub(crate) mod synth;
pub mod timestamp;
pub mod tracks;
pub mod ts;
pub mod ts_mux;
pub mod wallclock;

pub use codec::{CodecSummary, TrackInfo};
pub use segment::{
    breaks_timeline, leaves_gap, Segment, SegmentFlags, SegmentMeta, TIMELINE_GAP_TOLERANCE_MS,
};
pub use segmenter::{probe_codecs, Resume, Segmenter, SegmenterConfig};
pub use stats::DemuxStats;
