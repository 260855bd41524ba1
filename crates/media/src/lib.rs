//! The media core: everything the DVR knows about MPEG-TS and its codecs.
//!
//! Bytes go in, [`Segment`]s come out; nothing here does I/O, so it is fast
//! to test and safe to fuzz. The pieces, bottom up:
//!
//! - [`codec`]: codec identification, random-access detection, parameters
//!   and RFC 6381 strings.
//! - [`segment`]: the segment value every later stage stores and serves.

pub mod codec;
pub mod segment;

pub use codec::{CodecSummary, TrackInfo};
pub use segment::{Segment, SegmentFlags};
