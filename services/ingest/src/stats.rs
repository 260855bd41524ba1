//! Counters of one stream's ingest, as a plain snapshot. The metrics module
//! (later) exports them; tests and `dvr` status read them directly.

use dvr_media::DemuxStats;

/// A snapshot of a stream's ingest counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Bytes fed to the segmenter (from the playing input only).
    pub bytes: u64,
    /// TS packets the segmenter saw.
    pub packets: u64,
    /// Continuity-counter errors (lost or reordered packets).
    pub cc_errors: u64,
    /// Changes of the playing input.
    pub switches: u64,
    /// Times the stream had no signal: every input lost, or the segmenter's
    /// signal-loss timer closed a segment.
    pub signal_losses: u64,
    /// Segments delivered to the sink.
    pub segments: u64,
    /// The input playing now (index in the configured list).
    pub active_input: Option<usize>,
    /// The last failure of an input, as `URL: reason` (credentials
    /// masked): a source that refuses or drops the stream, kept while a
    /// backup plays so the operator sees why.
    pub last_error: Option<String>,
    /// Everything the segmenter counted.
    pub demux: DemuxStats,
}
