//! The ISO BMFF boxes of fragmented MP4, written by hand into one buffer.
//!
//! An fMP4 writer needs about thirty fixed-layout boxes (ISO/IEC 14496-12,
//! the sample entries of 14496-15 and 14496-14, ETSI TS 102 366 Annex F).
//! They are written here directly rather than through a box crate such as
//! `mp4-atom`: its current release needs Rust 1.88 (the workspace builds on
//! 1.85), it brings `derive_more`, `num` and a second `thiserror` major into
//! the build, and its `Mdat` owns a copy of the payload. What we write is
//! small and fixed, and every byte of it is pinned by golden tests and read
//! back by ffprobe in `tests/fmp4.rs`.
//!
//! Every box is written in place: [`open`] leaves a size placeholder that
//! [`close`] fills, so nothing is built twice. Nothing here depends on the
//! clock or on the order of a hash map: the same arguments give the same
//! bytes, which is what lets every replica answer the same init segment.

use crate::codec::aac::AdtsHeader;
use crate::codec::ac3::SyncFrame;
use crate::codec::{h264, h265};

/// Sample flags of a sync sample: depends on no other (ISO/IEC 14496-12
/// 8.8.3.1, `sample_depends_on` = 2).
pub(crate) const SYNC_SAMPLE: u32 = 0x0200_0000;
/// Sample flags of a sample that is not a sync sample: depends on others,
/// `sample_is_non_sync_sample` set.
pub(crate) const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// Big-endian integers appended to a buffer.
pub(crate) trait Put {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn u64(&mut self, v: u64);
}

impl Put for Vec<u8> {
    #[inline]
    fn u8(&mut self, v: u8) {
        self.push(v);
    }
    #[inline]
    fn u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    #[inline]
    fn u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    #[inline]
    fn u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
}

/// Starts a box: a size placeholder and the type. Returns where it starts.
pub(crate) fn open(out: &mut Vec<u8>, kind: &[u8; 4]) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    at
}

/// Starts a full box: [`open`] plus version and 24 bits of flags.
pub(crate) fn open_full(out: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32) -> usize {
    let at = open(out, kind);
    out.u32(u32::from(version) << 24 | (flags & 0x00ff_ffff));
    at
}

/// Ends the box that starts at `at`, writing its size. Callers keep every
/// box far below 4 GiB (the writer refuses larger input).
pub(crate) fn close(out: &mut [u8], at: usize) {
    let size = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// The unity matrix of `mvhd` and `tkhd`.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// `ftyp`: the brands a player may rely on.
pub(crate) fn ftyp(out: &mut Vec<u8>, major: &[u8; 4], compatible: &[&[u8; 4]]) {
    brands(out, b"ftyp", major, compatible);
}

/// `styp`: a media segment's brands.
pub(crate) fn styp(out: &mut Vec<u8>, major: &[u8; 4], compatible: &[&[u8; 4]]) {
    brands(out, b"styp", major, compatible);
}

fn brands(out: &mut Vec<u8>, kind: &[u8; 4], major: &[u8; 4], compatible: &[&[u8; 4]]) {
    let at = open(out, kind);
    out.extend_from_slice(major);
    out.u32(0); // minor_version
    for brand in compatible {
        out.extend_from_slice(*brand);
    }
    close(out, at);
}

/// What a track's `trak` box says, besides its sample entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrakSpec<'a> {
    pub track_id: u32,
    pub timescale: u32,
    /// Display size for video; `None` for audio.
    pub video_size: Option<(u32, u32)>,
    /// ISO 639-2/T code, lowercase.
    pub language: [u8; 3],
    /// The complete sample entry box (`avc1`, `hvc1`, `mp4a`, `ac-3`, `ec-3`).
    pub sample_entry: &'a [u8],
}

/// `moov` for fragments: `mvhd`, a `trak` per track with empty sample
/// tables, and `mvex` with a `trex` per track. Durations and times are zero
/// (the movie is fragmented and open-ended), so only codec configuration
/// and track identity reach the bytes.
pub(crate) fn moov(out: &mut Vec<u8>, tracks: &[TrakSpec<'_>]) {
    let moov = open(out, b"moov");
    let next = tracks.iter().map(|t| t.track_id).max().unwrap_or(0);
    mvhd(out, 1000, 0, next.saturating_add(1));
    for track in tracks {
        trak(out, track, None);
    }
    let mvex = open(out, b"mvex");
    for track in tracks {
        let trex = open_full(out, b"trex", 0, 0);
        out.u32(track.track_id);
        out.u32(1); // default_sample_description_index
        out.u32(0); // default_sample_duration
        out.u32(0); // default_sample_size
        out.u32(0); // default_sample_flags
        close(out, trex);
    }
    close(out, mvex);
    close(out, moov);
}

/// `mvhd`: version 1 (64-bit times) when `duration` needs it. Creation and
/// modification times are 0: the bytes depend on the media only.
pub(crate) fn mvhd(out: &mut Vec<u8>, timescale: u32, duration: u64, next_track_id: u32) {
    let wide = duration > u64::from(u32::MAX);
    let mvhd = open_full(out, b"mvhd", u8::from(wide), 0);
    times(out, wide, 0);
    out.u32(timescale);
    times_tail(out, wide, duration);
    out.u32(0x0001_0000); // rate 1.0
    out.u16(0x0100); // volume 1.0
    out.extend_from_slice(&[0; 10]); // reserved
    for m in MATRIX {
        out.u32(m);
    }
    out.extend_from_slice(&[0; 24]); // pre_defined
    out.u32(next_track_id);
    close(out, mvhd);
}

/// Creation and modification time (0), 32 or 64 bits each.
fn times(out: &mut Vec<u8>, wide: bool, value: u64) {
    for _ in 0..2 {
        times_tail(out, wide, value);
    }
}

/// A duration field of a version 0 (32-bit) or 1 (64-bit) box.
fn times_tail(out: &mut Vec<u8>, wide: bool, value: u64) {
    if wide {
        out.u64(value);
    } else {
        out.u32(u32::try_from(value).unwrap_or(u32::MAX));
    }
}

/// What a `trak` of a progressive (not fragmented) MP4 adds: durations, an
/// edit list and the sample tables.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timed<'a> {
    /// The track's presented duration, in the movie timescale (`tkhd`).
    pub movie_duration: u64,
    /// The sum of its sample durations, in its own timescale (`mdhd`).
    pub media_duration: u64,
    /// `elst` entries: (segment_duration in the movie timescale,
    /// media_time in the track's; -1 for an empty edit).
    pub edits: &'a [(u64, i64)],
    /// Every sample entry (the first is [`TrakSpec::sample_entry`]'s
    /// place), back to back, and how many there are.
    pub sample_entries: &'a [u8],
    pub entry_count: u32,
    /// The `stbl` boxes after `stsd`: `stts`, `ctts`, `stss`, `stsz`,
    /// `stsc`, `stco`/`co64`, already written.
    pub tables: &'a [u8],
}

/// A `trak`: with empty sample tables for fragments (`timed` is `None`),
/// or with durations, an edit list and the given tables.
pub(crate) fn trak(out: &mut Vec<u8>, track: &TrakSpec<'_>, timed: Option<&Timed<'_>>) {
    let trak = open(out, b"trak");
    // tkhd: track enabled and in the movie.
    let movie_duration = timed.map_or(0, |t| t.movie_duration);
    let media_duration = timed.map_or(0, |t| t.media_duration);
    let wide = movie_duration > u64::from(u32::MAX);
    let tkhd = open_full(out, b"tkhd", u8::from(wide), 0x000003);
    times(out, wide, 0);
    out.u32(track.track_id);
    out.u32(0); // reserved
    times_tail(out, wide, movie_duration);
    out.extend_from_slice(&[0; 8]); // reserved
    out.u16(0); // layer
    out.u16(0); // alternate_group
    out.u16(if track.video_size.is_some() {
        0
    } else {
        0x0100
    }); // volume
    out.u16(0); // reserved
    for m in MATRIX {
        out.u32(m);
    }
    let (width, height) = track.video_size.unwrap_or((0, 0));
    out.u32(width << 16); // 16.16 fixed point
    out.u32(height << 16);
    close(out, tkhd);

    if let Some(timed) = timed.filter(|t| !t.edits.is_empty()) {
        let edts = open(out, b"edts");
        let elst = open_full(out, b"elst", 1, 0);
        out.u32(timed.edits.len() as u32);
        for &(duration, media_time) in timed.edits {
            out.u64(duration);
            out.u64(media_time as u64);
            out.u32(0x0001_0000); // media_rate 1.0
        }
        close(out, elst);
        close(out, edts);
    }

    let mdia = open(out, b"mdia");
    let wide = media_duration > u64::from(u32::MAX);
    let mdhd = open_full(out, b"mdhd", u8::from(wide), 0);
    times(out, wide, 0);
    out.u32(track.timescale);
    times_tail(out, wide, media_duration);
    let [a, b, c] = track
        .language
        .map(|ch| u16::from(ch.wrapping_sub(0x60) & 0x1f));
    out.u16(a << 10 | b << 5 | c);
    out.u16(0); // pre_defined
    close(out, mdhd);
    let hdlr = open_full(out, b"hdlr", 0, 0);
    out.u32(0); // pre_defined
    let (handler, name): (&[u8; 4], &[u8]) = if track.video_size.is_some() {
        (b"vide", b"VideoHandler\0")
    } else {
        (b"soun", b"SoundHandler\0")
    };
    out.extend_from_slice(handler);
    out.extend_from_slice(&[0; 12]); // reserved
    out.extend_from_slice(name);
    close(out, hdlr);

    let minf = open(out, b"minf");
    if track.video_size.is_some() {
        let vmhd = open_full(out, b"vmhd", 0, 1);
        out.extend_from_slice(&[0; 8]); // graphicsmode, opcolor
        close(out, vmhd);
    } else {
        let smhd = open_full(out, b"smhd", 0, 0);
        out.u32(0); // balance, reserved
        close(out, smhd);
    }
    let dinf = open(out, b"dinf");
    let dref = open_full(out, b"dref", 0, 0);
    out.u32(1); // entry_count
    let url = open_full(out, b"url ", 0, 1); // media in this file
    close(out, url);
    close(out, dref);
    close(out, dinf);
    let stbl = open(out, b"stbl");
    let stsd = open_full(out, b"stsd", 0, 0);
    match timed {
        Some(timed) => {
            out.u32(timed.entry_count);
            out.extend_from_slice(timed.sample_entries);
        }
        None => {
            out.u32(1); // entry_count
            out.extend_from_slice(track.sample_entry);
        }
    }
    close(out, stsd);
    if let Some(timed) = timed {
        out.extend_from_slice(timed.tables);
    } else {
        // Empty sample tables: every sample is in a fragment.
        for kind in [b"stts", b"stsc", b"stco"] {
            let at = open_full(out, kind, 0, 0);
            out.u32(0); // entry_count
            close(out, at);
        }
        let stsz = open_full(out, b"stsz", 0, 0);
        out.u32(0); // sample_size
        out.u32(0); // sample_count
        close(out, stsz);
    }
    close(out, stbl);
    close(out, minf);
    close(out, mdia);
    close(out, trak);
}

/// The start of a `VisualSampleEntry` (14496-12 12.1.3) of `kind`.
fn visual_entry(out: &mut Vec<u8>, kind: &[u8; 4], width: u32, height: u32) -> usize {
    let at = open(out, kind);
    out.extend_from_slice(&[0; 6]); // reserved
    out.u16(1); // data_reference_index
    out.extend_from_slice(&[0; 16]); // pre_defined, reserved
    out.u16(u16::try_from(width).unwrap_or(u16::MAX));
    out.u16(u16::try_from(height).unwrap_or(u16::MAX));
    out.u32(0x0048_0000); // 72 dpi
    out.u32(0x0048_0000);
    out.u32(0); // reserved
    out.u16(1); // frame_count
    out.extend_from_slice(&[0; 32]); // compressorname: empty
    out.u16(0x0018); // depth
    out.u16(0xffff); // pre_defined = -1
    at
}

/// The start of an `AudioSampleEntry` (14496-12 12.2.3) of `kind`. A rate
/// above 65535 Hz does not fit the 16.16 field and is written as 0; the
/// media timescale carries it.
fn audio_entry(out: &mut Vec<u8>, kind: &[u8; 4], channels: u8, sample_rate: u32) -> usize {
    let at = open(out, kind);
    out.extend_from_slice(&[0; 6]); // reserved
    out.u16(1); // data_reference_index
    out.extend_from_slice(&[0; 8]); // reserved
    out.u16(u16::from(channels));
    out.u16(16); // samplesize
    out.u32(0); // pre_defined, reserved
    out.u32(if sample_rate <= 0xffff {
        sample_rate << 16
    } else {
        0
    });
    at
}

/// `avc1` with its `avcC` (14496-15 5.3.3.1). Parameter sets are written
/// as given, in order; the High profiles repeat chroma format and bit
/// depths, as the standard requires for them.
pub(crate) fn avc1(
    out: &mut Vec<u8>,
    size: (u32, u32),
    sps: &[&[u8]],
    pps: &[&[u8]],
    format: &h264::SpsFormat,
) {
    let entry = visual_entry(out, b"avc1", size.0, size.1);
    let avcc = open(out, b"avcC");
    let first = sps.first().copied().unwrap_or_default();
    out.u8(1); // configurationVersion
    out.u8(first.get(1).copied().unwrap_or(format.profile_idc)); // AVCProfileIndication
    out.u8(first.get(2).copied().unwrap_or(0)); // profile_compatibility
    out.u8(first.get(3).copied().unwrap_or(0)); // AVCLevelIndication
    out.u8(0xfc | 3); // lengthSizeMinusOne: 4-byte lengths
    out.u8(0xe0 | (sps.len().min(31) as u8));
    for set in sps.iter().take(31) {
        parameter_set(out, set);
    }
    out.u8(pps.len().min(255) as u8);
    for set in pps.iter().take(255) {
        parameter_set(out, set);
    }
    if !matches!(format.profile_idc, 66 | 77 | 88) {
        out.u8(0xfc | (format.chroma_format_idc & 0x03));
        out.u8(0xf8 | (format.bit_depth_luma_minus8 & 0x07));
        out.u8(0xf8 | (format.bit_depth_chroma_minus8 & 0x07));
        out.u8(0); // numOfSequenceParameterSetExt
    }
    close(out, avcc);
    close(out, entry);
}

/// `hvc1` with its `hvcC` (14496-15 8.3.3.1): arrays of VPS, SPS and PPS,
/// each marked complete, as `hvc1` (and Apple) require: the parameter sets
/// are all here, not in the samples.
pub(crate) fn hvc1(
    out: &mut Vec<u8>,
    size: (u32, u32),
    arrays: [(u8, &[&[u8]]); 3],
    format: &h265::SpsFormat,
) {
    let entry = visual_entry(out, b"hvc1", size.0, size.1);
    let hvcc = open(out, b"hvcC");
    out.u8(1); // configurationVersion
    out.u8(format.profile_byte);
    out.u32(format.compatibility_flags);
    out.extend_from_slice(&format.constraint_bytes);
    out.u8(format.level_idc);
    out.u16(0xf000); // min_spatial_segmentation_idc: unknown
    out.u8(0xfc); // parallelismType: unknown
    out.u8(0xfc | (format.chroma_format_idc & 0x03));
    out.u8(0xf8 | (format.bit_depth_luma_minus8 & 0x07));
    out.u8(0xf8 | (format.bit_depth_chroma_minus8 & 0x07));
    out.u16(0); // avgFrameRate: unspecified
                // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3.
    out.u8(((format.temporal_layers & 0x07) << 3) | (u8::from(format.temporal_id_nested) << 2) | 3);
    out.u8(arrays.iter().filter(|(_, sets)| !sets.is_empty()).count() as u8);
    for (nal_type, sets) in arrays {
        if sets.is_empty() {
            continue;
        }
        out.u8(0x80 | (nal_type & 0x3f)); // array_completeness
        out.u16(sets.len().min(0xffff) as u16);
        for set in sets.iter().take(0xffff) {
            parameter_set(out, set);
        }
    }
    close(out, hvcc);
    close(out, entry);
}

fn parameter_set(out: &mut Vec<u8>, set: &[u8]) {
    let len = set.len().min(0xffff);
    out.u16(len as u16);
    out.extend_from_slice(&set[..len]);
}

/// `mp4a` with an `esds` (14496-14 5.6, 14496-1 7.2.6): an ES descriptor
/// holding the decoder config (AAC, audio stream) and the two-byte
/// AudioSpecificConfig. Buffer size and bit rates are left 0 ("unknown")
/// so that the init segment depends on the codec configuration only, not on
/// the bit rate of the segment it was made from.
pub(crate) fn mp4a(out: &mut Vec<u8>, adts: &AdtsHeader, channels: u8) {
    let entry = audio_entry(out, b"mp4a", channels, adts.sample_rate);
    let esds = open_full(out, b"esds", 0, 0);
    let asc = crate::codec::aac::audio_specific_config(adts);
    // ES_Descriptor: ES_ID, flags, then the two descriptors below.
    let decoder_config_len = 13 + 2 + asc.len();
    out.u8(0x03);
    out.u8((3 + 2 + decoder_config_len + 3) as u8);
    out.u16(0); // ES_ID
    out.u8(0); // no dependency, URL or OCR stream
               // DecoderConfigDescriptor: MPEG-4 audio, an audio stream.
    out.u8(0x04);
    out.u8(decoder_config_len as u8);
    out.u8(0x40); // objectTypeIndication: ISO/IEC 14496-3
    out.u8(0x15); // streamType 5 (audio) << 2 | reserved 1
    out.extend_from_slice(&[0; 3]); // bufferSizeDB
    out.u32(0); // maxBitrate
    out.u32(0); // avgBitrate
                // DecoderSpecificInfo: the AudioSpecificConfig.
    out.u8(0x05);
    out.u8(asc.len() as u8);
    out.extend_from_slice(&asc);
    // SLConfigDescriptor: predefined 2 (MP4 files).
    out.extend_from_slice(&[0x06, 0x01, 0x02]);
    close(out, esds);
    close(out, entry);
}

/// `ac-3` with its `dac3` (ETSI TS 102 366 F.4). The sample entry's
/// channel count is 2, as F.3 asks: the real layout is in `dac3`.
pub(crate) fn ac3(out: &mut Vec<u8>, frame: &SyncFrame) {
    let entry = audio_entry(out, b"ac-3", 2, frame.sample_rate);
    let dac3 = open(out, b"dac3");
    let bits: u32 = u32::from(frame.fscod & 0x03) << 22
        | u32::from(frame.bsid & 0x1f) << 17
        | u32::from(frame.bsmod & 0x07) << 14
        | u32::from(frame.acmod & 0x07) << 11
        | u32::from(frame.lfeon & 0x01) << 10
        | u32::from(frame.bit_rate_code & 0x1f) << 5;
    out.extend_from_slice(&bits.to_be_bytes()[1..]);
    close(out, dac3);
    close(out, entry);
}

/// `ec-3` with its `dec3` (ETSI TS 102 366 F.6) describing the first
/// independent substream. Dependent substreams (7.1 layouts) are not
/// announced: the box describes the 5.1 core, as [`crate::codec::ac3`]
/// reports it. The sample entry's channel count is 2, as for `ac-3`.
pub(crate) fn ec3(out: &mut Vec<u8>, frame: &SyncFrame) {
    let entry = audio_entry(out, b"ec-3", 2, frame.sample_rate);
    let dec3 = open(out, b"dec3");
    // data_rate (13 bits, kbit/s), num_ind_sub (3 bits) = 0: one substream.
    out.u16((frame.kbps.min(0x1fff) as u16) << 3);
    // fscod 2, bsid 5, reserved 1, asvc 1, bsmod 3, acmod 3, lfeon 1,
    // reserved 3, num_dep_sub 4, reserved 1.
    let bits: u32 = u32::from(frame.fscod & 0x03) << 22
        | u32::from(frame.bsid & 0x1f) << 17
        | u32::from(frame.bsmod & 0x07) << 12
        | u32::from(frame.acmod & 0x07) << 9
        | u32::from(frame.lfeon & 0x01) << 8;
    out.extend_from_slice(&bits.to_be_bytes()[1..]);
    close(out, dec3);
    close(out, entry);
}

/// One sample of a `trun`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TrunSample {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    /// Composition offset: presentation minus decode time.
    pub composition_offset: i32,
}

/// What a `traf` says about one track's run of samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrafSpec<'a> {
    pub track_id: u32,
    pub base_decode_time: u64,
    pub samples: &'a [TrunSample],
    /// Per-sample flags and composition offsets (video); without them every
    /// sample is a sync sample presented at its decode time (audio).
    pub video: bool,
    /// Where this track's samples start within the `mdat` payload.
    pub data_start: usize,
}

/// `moof` with `mfhd` and a `traf` per track (`tfhd` with
/// default-base-is-moof, `tfdt` version 1, `trun` version 1 with signed
/// composition offsets), then the `mdat` header for `payload` bytes. The
/// caller appends the payload. Each `trun`'s data offset points at its
/// track's bytes in that payload, counted from the start of the `moof`.
pub(crate) fn moof_and_mdat_header(
    out: &mut Vec<u8>,
    sequence_number: u32,
    trafs: &[TrafSpec<'_>],
    payload: usize,
) {
    let moof = open(out, b"moof");
    let mfhd = open_full(out, b"mfhd", 0, 0);
    out.u32(sequence_number);
    close(out, mfhd);
    // Where each trun's data_offset sits, to fill in once the moof's size is known.
    let mut offsets = Vec::with_capacity(trafs.len());
    for traf in trafs {
        let at = open(out, b"traf");
        let tfhd_flags = if traf.video { 0x02_0000 } else { 0x02_0020 };
        let tfhd = open_full(out, b"tfhd", 0, tfhd_flags);
        out.u32(traf.track_id);
        if !traf.video {
            out.u32(SYNC_SAMPLE); // default_sample_flags
        }
        close(out, tfhd);
        let tfdt = open_full(out, b"tfdt", 1, 0);
        out.u64(traf.base_decode_time);
        close(out, tfdt);
        // data-offset, sample duration and size; flags and composition offset for video.
        let trun_flags = if traf.video { 0x000f01 } else { 0x000301 };
        let trun = open_full(out, b"trun", 1, trun_flags);
        out.u32(traf.samples.len() as u32);
        offsets.push(out.len());
        out.u32(0); // data_offset, filled in below
        if traf.video {
            for s in traf.samples {
                out.u32(s.duration);
                out.u32(s.size);
                out.u32(s.flags);
                out.extend_from_slice(&s.composition_offset.to_be_bytes());
            }
        } else {
            for s in traf.samples {
                out.u32(s.duration);
                out.u32(s.size);
            }
        }
        close(out, trun);
        close(out, at);
    }
    close(out, moof);
    let moof_size = out.len() - moof;
    for (pos, traf) in offsets.into_iter().zip(trafs) {
        let offset = u32::try_from(moof_size + 8 + traf.data_start).unwrap_or(u32::MAX);
        out[pos..pos + 4].copy_from_slice(&offset.to_be_bytes());
    }
    out.u32(u32::try_from(8 + payload).unwrap_or(u32::MAX));
    out.extend_from_slice(b"mdat");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_carry_their_size() {
        let mut out = vec![0xaa];
        let outer = open(&mut out, b"moov");
        let inner = open_full(&mut out, b"mvhd", 1, 0x123456);
        out.u32(7);
        close(&mut out, inner);
        close(&mut out, outer);
        assert_eq!(
            out,
            [
                0xaa, 0, 0, 0, 24, b'm', b'o', b'o', b'v', 0, 0, 0, 16, b'm', b'v', b'h', b'd', 1,
                0x12, 0x34, 0x56, 0, 0, 0, 7
            ]
        );
    }

    #[test]
    fn dac3_of_the_clip_header() {
        // 5.1(side) 48 kHz 192 kb/s: fscod 0, bsid 8, bsmod 0, acmod 7,
        // lfeon 1, bit_rate_code 10 -> ffmpeg writes 10 3d 40.
        let frame =
            crate::codec::ac3::parse_frame(&[0x0b, 0x77, 0xb5, 0x0b, 0x14, 0x40, 0xeb, 0xf8])
                .unwrap();
        let mut out = Vec::new();
        ac3(&mut out, &frame);
        assert_eq!(&out[out.len() - 11..], b"\0\0\0\x0bdac3\x10\x3d\x40");
    }

    #[test]
    fn dec3_of_a_stereo_frame() {
        // 192 kb/s, fscod 0, bsid 16, acmod 2, no LFE: ffmpeg writes
        // 06 00 20 04 00.
        let frame =
            crate::codec::ac3::parse_frame(&[0x0b, 0x77, 0x01, 0x7f, 0x34, 0x87, 0xc0]).unwrap();
        let mut out = Vec::new();
        ec3(&mut out, &frame);
        assert_eq!(
            &out[out.len() - 13..],
            b"\0\0\0\x0ddec3\x06\x00\x20\x04\x00"
        );
    }

    #[test]
    fn trun_data_offsets_point_past_the_mdat_header() {
        let samples = [TrunSample {
            duration: 1024,
            size: 3,
            ..TrunSample::default()
        }];
        let traf = |track_id, data_start| TrafSpec {
            track_id,
            base_decode_time: 0,
            samples: &samples,
            video: false,
            data_start,
        };
        let mut out = Vec::new();
        moof_and_mdat_header(&mut out, 5, &[traf(1, 0), traf(2, 3)], 6);
        let moof_size = u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(out.len(), moof_size + 8);
        let offsets: Vec<u32> = out
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == b"trun")
            .map(|(at, _)| u32::from_be_bytes(out[at + 12..at + 16].try_into().unwrap()))
            .collect();
        assert_eq!(offsets, [moof_size as u32 + 8, moof_size as u32 + 11]);
    }
}
