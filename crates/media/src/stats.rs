//! Counters of what the demuxer saw go wrong. Bad input is counted and
//! survived, never fatal: an operator reads these to judge a source.

use serde::Serialize;

/// Running totals for one input stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DemuxStats {
    /// Bytes fed in.
    pub bytes_in: u64,
    /// 188-byte packets seen in sync.
    pub packets: u64,
    /// Times the 0x47 sync byte was not where it should be.
    pub sync_losses: u64,
    /// Bytes thrown away while searching for sync.
    pub bytes_skipped: u64,
    /// Packets whose continuity counter skipped (lost or reordered packets).
    pub cc_errors: u64,
    /// Packets flagged with the transport error indicator.
    pub transport_errors: u64,
    /// PSI sections with a bad CRC or a malformed body.
    pub psi_errors: u64,
    /// PES headers that could not be parsed.
    pub pes_errors: u64,
    /// Times the chosen program's PMT changed version or content.
    pub pmt_changes: u64,
    /// Packets dropped because no PAT/PMT had been seen yet.
    pub dropped_before_program: u64,
    /// Packets of PIDs outside the chosen program (other programs, SI, null).
    pub filtered_packets: u64,
    /// Packets dropped while waiting for the first random-access point.
    pub dropped_before_keyframe: u64,
    /// Segments cut without a keyframe (maximum duration or size reached).
    pub forced_cuts: u64,
    /// Timeline discontinuities (PTS jumps, backward steps, signal loss).
    pub discontinuities: u64,
}
