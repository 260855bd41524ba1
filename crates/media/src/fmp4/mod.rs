//! Fragmented MP4 (CMAF) from a stored TS segment: an init segment and a
//! media segment per track, written on the fly.
//!
//! The archive keeps one copy of a recording, as MPEG-TS; DASH and CMAF HLS
//! are views of it. [`Fragments::from_ts`] reads one stored segment in one
//! pass over its packets (the [`Demuxer`](crate::demux::Demuxer) reassembles
//! every kept track's PES at once) and gathers each track's samples: H.264
//! and H.265 access units with their Annex B start codes turned into 4-byte
//! lengths, AAC frames with their ADTS headers stripped, AC-3 sync frames,
//! E-AC-3 frames grouped into 1536-sample units. Then any track can be
//! written as an init segment (`ftyp`, `moov` with `mvex`) and a media
//! segment (`styp`, `moof`, `mdat`), or all of them together in one
//! `moov`/`moof` ([`Fragments::combined`]) for consumers that want muxed MP4.
//!
//! **The same bytes on every replica.** The output depends only on the TS
//! bytes and on [`SegmentTiming`], which the segment index holds: no clock,
//! no hash-map order, no bit rate of the moment in the init segment. An init
//! segment is named by an [`InitId`], a hash of its bytes, so a change of
//! parameter sets (a new SPS, another sample rate) gives a new init segment
//! (a new DASH Period, an `EXT-X-MAP` after a discontinuity in HLS) and
//! identical configurations share one.
//!
//! **Time** is the tape's, in integers; [`timing`] says how `tfdt`, sample
//! durations and composition offsets are derived. In short: video at
//! 90 kHz with `tfdt` = the tape time of the first sample's PTS; audio at its
//! sample rate; each track timed from its own samples.
//!
//! **Parameter sets.** The sample entry (`avcC`, `hvcC`) holds the
//! parameter sets of the first access unit that carries them; copies of
//! those inside later access units are dropped from the samples, as are
//! access unit delimiters and filler data. A parameter set that differs from
//! the sample entry's (a change inside a segment) stays in-band so the
//! pictures after it still decode.
//!
//! **Left out** are tracks of other codecs (MPEG audio, teletext, SCTE-35,
//! …), tracks without samples in the segment and tracks whose stream cannot
//! be described (no SPS, AAC without a channel configuration): each comes
//! back in [`Fragments::left_out`] with the reason.

pub(crate) mod boxes;
mod collect;
pub mod timing;

use std::fmt;

use bytes::Bytes;
use dvr_common::{ErrorKind, HasErrorKind};

use crate::codec::{AudioParams, Codec, TrackKind, VideoParams};

pub use timing::{to_timescale, SegmentTiming, TapeClock};

use boxes::{TrafSpec, TrakSpec, TrunSample};

/// The name of an init segment: the first 8 bytes of the BLAKE3 hash of its
/// bytes, shown as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InitId(pub [u8; 8]);

impl InitId {
    /// The id of these init segment bytes.
    pub fn of(init: &[u8]) -> Self {
        let hash = blake3::hash(init);
        let mut id = [0u8; 8];
        id.copy_from_slice(&hash.as_bytes()[..8]);
        InitId(id)
    }
}

impl fmt::Display for InitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a segment, or one of its tracks, cannot be written as fMP4.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fmp4Error {
    /// The bytes hold no PAT and PMT.
    #[error("the segment has no program tables")]
    NoProgram,
    /// The segment is beyond what 32-bit box sizes can hold.
    #[error("the segment is too large for fMP4 ({bytes} bytes)")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// A track number beyond the program's tracks.
    #[error("there is no track {asked}: the stream has {count} tracks here")]
    NoSuchTrack {
        /// The number asked for (1-based).
        asked: usize,
        /// How many tracks the segment's program has.
        count: usize,
    },
    /// The track's codec has no fMP4 form here.
    #[error("track {track} (PID {pid}) is {}, which fMP4 output does not carry", codec_name(*.codec))]
    UnsupportedCodec {
        /// Track number (1-based, PMT order).
        track: usize,
        /// Its PID.
        pid: u16,
        /// Its codec.
        codec: Codec,
    },
    /// A video track whose parameter sets never came.
    #[error("track {track} (PID {pid}, {}): no {what} in this segment", codec_name(*.codec))]
    NoParameterSets {
        /// Track number (1-based, PMT order).
        track: usize,
        /// Its PID.
        pid: u16,
        /// Its codec.
        codec: Codec,
        /// Which sets were missing, e.g. "SPS and PPS".
        what: &'static str,
    },
    /// The track's bitstream cannot be described or split into samples.
    #[error("track {track} (PID {pid}, {}): {what}", codec_name(*.codec))]
    BadStream {
        /// Track number (1-based, PMT order).
        track: usize,
        /// Its PID.
        pid: u16,
        /// Its codec.
        codec: Codec,
        /// What is wrong, in a few words.
        what: &'static str,
    },
    /// The track has no complete sample in this segment.
    #[error("track {track} (PID {pid}, {}) has no samples in this segment", codec_name(*.codec))]
    NoSamples {
        /// Track number (1-based, PMT order).
        track: usize,
        /// Its PID.
        pid: u16,
        /// Its codec.
        codec: Codec,
    },
}

impl HasErrorKind for Fmp4Error {
    fn error_kind(&self) -> ErrorKind {
        match self {
            Fmp4Error::NoSuchTrack { .. }
            | Fmp4Error::UnsupportedCodec { .. }
            | Fmp4Error::NoSamples { .. } => ErrorKind::NotFound,
            Fmp4Error::NoProgram
            | Fmp4Error::TooLarge { .. }
            | Fmp4Error::NoParameterSets { .. }
            | Fmp4Error::BadStream { .. } => ErrorKind::InvalidData,
        }
    }
}

/// The name of a codec in messages and docs.
pub fn codec_name(codec: Codec) -> String {
    match codec {
        Codec::H264 => "H.264".into(),
        Codec::H265 => "H.265".into(),
        Codec::Aac => "AAC".into(),
        Codec::AacLatm => "AAC in LATM".into(),
        Codec::MpegAudio => "MPEG audio".into(),
        Codec::Ac3 => "AC-3".into(),
        Codec::Eac3 => "E-AC-3".into(),
        Codec::Mpeg2Video => "MPEG-2 video".into(),
        Codec::Teletext => "teletext".into(),
        Codec::DvbSubtitle => "DVB subtitles".into(),
        Codec::Scte35 => "SCTE-35".into(),
        Codec::Id3 => "ID3".into(),
        Codec::Other(stream_type) => format!("stream type 0x{stream_type:02x}"),
    }
}

/// Whether fMP4 output carries tracks of `codec`: H.264, H.265, AAC (in
/// ADTS), AC-3 and E-AC-3. Others come back in [`Fragments::left_out`].
pub fn carries(codec: Codec) -> bool {
    matches!(
        codec,
        Codec::H264 | Codec::H265 | Codec::Aac | Codec::Ac3 | Codec::Eac3
    )
}

/// One track of a segment, ready to be written as fMP4.
#[derive(Clone, Debug)]
pub struct Track {
    /// Track number: 1-based, in PMT order (as in `tracks-N` URLs); also
    /// the MP4 `track_ID`.
    pub number: usize,
    /// The PID it came on.
    pub pid: u16,
    /// Its codec. For AC-3 and E-AC-3 this is what the bitstream says,
    /// whatever the PMT claimed.
    pub codec: Codec,
    /// Video or audio.
    pub kind: TrackKind,
    /// ISO 639 language from the PMT, if any.
    pub language: Option<String>,
    /// RFC 6381 codec string from the stream's own parameters.
    pub codec_string: String,
    /// Size and frame rate, for video.
    pub video: Option<VideoParams>,
    /// Sample rate and channels, for audio.
    pub audio: Option<AudioParams>,
    /// Units per second of the times below: 90000 for video, the sample
    /// rate for audio.
    pub timescale: u32,
    /// The first sample's decode time on the tape (`tfdt`), in `timescale`.
    /// For a track that starts with a sync sample (every segment's primary
    /// video, audio always) it is also the first sample's presentation
    /// time: the DASH `SegmentTimeline` `@t`.
    pub base_decode_time: u64,
    /// The earliest presentation time of any sample, in `timescale`.
    /// Below `base_decode_time` only for leading pictures of an open GOP
    /// (which belong to the previous segment's span) or a track that does
    /// not start with a sync sample.
    pub earliest_presentation_time: u64,
    /// The sum of the sample durations, in `timescale`; for continuous tape
    /// `base_decode_time + duration` is the next segment's `base_decode_time`.
    pub duration: u64,
    /// How many samples (frames) the media segment holds.
    pub sample_count: usize,
    /// The DASH stream access point type the segment starts with: 1 (all
    /// samples present from the first on), 3 (an open-GOP start whose
    /// leading pictures present earlier), or 0 (no sync sample first).
    pub sap_type: u8,
    /// The name of [`Track::init`].
    pub init_id: InitId,
    init: Bytes,
    sample_entry: Vec<u8>,
    trun: Vec<TrunSample>,
    data: Vec<u8>,
    sequence_number: u32,
}

impl Track {
    /// The init segment: `ftyp` and a `moov` with this track alone.
    pub fn init(&self) -> Bytes {
        self.init.clone()
    }

    /// The media segment: `styp`, `moof`, `mdat`.
    pub fn media(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.media_len_estimate());
        boxes::styp(&mut out, b"msdh", &[b"msdh", b"cmfs"]);
        boxes::moof_and_mdat_header(
            &mut out,
            self.sequence_number,
            &[self.traf(0)],
            self.data.len(),
        );
        out.extend_from_slice(&self.data);
        Bytes::from(out)
    }

    /// Bytes of sample data (the `mdat` payload), for bit rates.
    pub fn payload_bytes(&self) -> usize {
        self.data.len()
    }

    /// The samples, converted (length-prefixed NAL units, AAC without
    /// ADTS), back to back in decode order: the `mdat` payload of this
    /// track, which a progressive MP4 ([`crate::mp4`]) also carries.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Each sample's duration, size, flags and composition offset.
    pub(crate) fn samples(&self) -> &[TrunSample] {
        &self.trun
    }

    /// The sample entry box (`avc1`, `hvc1`, `mp4a`, `ac-3`, `ec-3`).
    pub(crate) fn sample_entry(&self) -> &[u8] {
        &self.sample_entry
    }

    fn media_len_estimate(&self) -> usize {
        256 + self.trun.len() * 16 + self.data.len()
    }

    fn trak(&self) -> TrakSpec<'_> {
        TrakSpec {
            track_id: self.track_id(),
            timescale: self.timescale,
            video_size: self.video.as_ref().map(|v| (v.width, v.height)),
            language: mp4_language(self.language.as_deref()),
            sample_entry: &self.sample_entry,
        }
    }

    fn traf(&self, data_start: usize) -> TrafSpec<'_> {
        TrafSpec {
            track_id: self.track_id(),
            base_decode_time: self.base_decode_time,
            samples: &self.trun,
            video: self.kind == TrackKind::Video,
            data_start,
        }
    }

    fn track_id(&self) -> u32 {
        u32::try_from(self.number).unwrap_or(u32::MAX)
    }
}

/// A track of the segment that has no fMP4 form, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    /// Track number: 1-based, in PMT order.
    pub number: usize,
    /// Its PID.
    pub pid: u16,
    /// Its codec, as the PMT says.
    pub codec: Codec,
    /// Why it was left out.
    pub reason: Fmp4Error,
}

/// Init segment bytes and their name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitSegment {
    /// The name: a hash of `bytes`.
    pub id: InitId,
    /// `ftyp` and `moov`.
    pub bytes: Bytes,
}

/// The tracks of one stored segment, read and timed, ready to be written.
#[derive(Clone, Debug)]
pub struct Fragments {
    tracks: Vec<Track>,
    left_out: Vec<LeftOut>,
    sequence_number: u32,
}

impl Fragments {
    /// Reads a stored TS segment: every track, or only `tracks` (1-based
    /// numbers in PMT order), in one pass. Tracks that cannot be written
    /// are in [`Fragments::left_out`]; the error is for the segment as a
    /// whole (no program tables, a track number beyond the program).
    pub fn from_ts(
        ts: &[u8],
        timing: &SegmentTiming,
        tracks: Option<&[usize]>,
    ) -> Result<Fragments, Fmp4Error> {
        collect::collect(ts, timing, tracks, &mut Vec::new())
    }

    /// [`Fragments::from_ts`], writing the tracks' sample data into buffers
    /// taken from `spare` (emptied first) before allocating any: a caller
    /// converting segment after segment hands back the buffers of one it
    /// has sent ([`Fragments::into_data`], then
    /// [`bytes::Bytes::try_into_mut`]), so the next one writes into memory
    /// already mapped. The bytes are the same either way.
    pub fn from_ts_reusing(
        ts: &[u8],
        timing: &SegmentTiming,
        tracks: Option<&[usize]>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<Fragments, Fmp4Error> {
        collect::collect(ts, timing, tracks, spare)
    }

    /// The tracks that can be written, in PMT order.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Track `number` (1-based, PMT order), if it can be written.
    pub fn track(&self, number: usize) -> Option<&Track> {
        self.tracks.iter().find(|t| t.number == number)
    }

    /// Each track's number and [`Track::data`], owned: what a progressive
    /// MP4 serves slices of without copying them.
    pub fn into_data(self) -> Vec<(usize, Bytes)> {
        self.tracks
            .into_iter()
            .map(|t| (t.number, Bytes::from(t.data)))
            .collect()
    }

    /// The tracks that were asked for (all, without a selection) and cannot
    /// be written, with the reason.
    pub fn left_out(&self) -> &[LeftOut] {
        &self.left_out
    }

    /// All tracks together: one init segment whose `moov` has a `trak` per
    /// track, and one media segment whose `moof` has a `traf` per track and
    /// whose `mdat` holds each track's samples in turn. `None` when no track
    /// can be written.
    pub fn combined(&self) -> Option<(InitSegment, Bytes)> {
        if self.tracks.is_empty() {
            return None;
        }
        let traks: Vec<TrakSpec<'_>> = self.tracks.iter().map(Track::trak).collect();
        let mut init = Vec::with_capacity(1024 * self.tracks.len());
        boxes::ftyp(&mut init, b"iso6", &[b"iso6", b"dash"]);
        boxes::moov(&mut init, &traks);
        let init = InitSegment {
            id: InitId::of(&init),
            bytes: Bytes::from(init),
        };
        let mut data_start = 0;
        let trafs: Vec<TrafSpec<'_>> = self
            .tracks
            .iter()
            .map(|t| {
                let traf = t.traf(data_start);
                data_start += t.data.len();
                traf
            })
            .collect();
        let estimate: usize = self.tracks.iter().map(Track::media_len_estimate).sum();
        let mut media = Vec::with_capacity(estimate);
        boxes::styp(&mut media, b"msdh", &[b"msdh"]);
        boxes::moof_and_mdat_header(&mut media, self.sequence_number, &trafs, data_start);
        for track in &self.tracks {
            media.extend_from_slice(&track.data);
        }
        Some((init, Bytes::from(media)))
    }
}

/// The `mdhd` language: an ISO 639-2/T code of three lowercase letters, or
/// `und`.
pub(crate) fn mp4_language(language: Option<&str>) -> [u8; 3] {
    match language.map(str::as_bytes) {
        Some(&[a, b, c]) if [a, b, c].iter().all(u8::is_ascii_lowercase) => [a, b, c],
        _ => *b"und",
    }
}

/// The init segment of one track: `ftyp` (CMAF brands) and its `moov`.
fn track_init(trak: &TrakSpec<'_>) -> Bytes {
    let mut out = Vec::with_capacity(768 + trak.sample_entry.len());
    boxes::ftyp(&mut out, b"iso6", &[b"iso6", b"cmfc", b"dash"]);
    boxes::moov(&mut out, std::slice::from_ref(trak));
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_id_is_sixteen_hex_digits_of_the_hash() {
        let id = InitId::of(b"");
        // BLAKE3 of the empty input starts af1349b9f5f9a1a6.
        assert_eq!(id.to_string(), "af1349b9f5f9a1a6");
        assert_ne!(InitId::of(b"a"), id);
    }

    #[test]
    fn languages_that_mdhd_cannot_hold_are_und() {
        assert_eq!(mp4_language(Some("eng")), *b"eng");
        assert_eq!(mp4_language(Some("ENG")), *b"und");
        assert_eq!(mp4_language(Some("en")), *b"und");
        assert_eq!(mp4_language(None), *b"und");
    }

    #[test]
    fn errors_name_the_track_and_map_to_statuses() {
        let e = Fmp4Error::UnsupportedCodec {
            track: 3,
            pid: 258,
            codec: Codec::MpegAudio,
        };
        assert_eq!(
            e.to_string(),
            "track 3 (PID 258) is MPEG audio, which fMP4 output does not carry"
        );
        assert_eq!(e.error_kind().http_status(), 404);
        let e = Fmp4Error::NoParameterSets {
            track: 1,
            pid: 256,
            codec: Codec::H264,
            what: "SPS and PPS",
        };
        assert_eq!(
            e.to_string(),
            "track 1 (PID 256, H.264): no SPS and PPS in this segment"
        );
        assert_eq!(e.error_kind().http_status(), 422);
    }
}
