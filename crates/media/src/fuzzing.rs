//! The one function the fuzzer drives, shared with the corpus replay test so
//! `make test` runs every input the fuzzer ever kept.

use std::sync::Arc;

use dvr_common::{SimulatedClock, UtcMs};

use crate::demux::Demuxer;
use crate::segmenter::{Segmenter, SegmenterConfig};
use crate::ts::PACKET_SIZE;

/// Feeds `data` to a segmenter (in pieces whose sizes the first byte picks,
/// with the simulated clock advancing between them) and to a demuxer, and
/// checks the invariants that must hold for any input.
pub fn exercise(data: &[u8]) {
    let Some((&shape, data)) = data.split_first() else {
        return;
    };
    let piece = 1 + usize::from(shape) * 7;
    let clock = SimulatedClock::new(UtcMs(1_800_000_000_000));
    let config = SegmenterConfig {
        max_segment_bytes: 1 << 20,
        ..SegmenterConfig::default()
    };
    let mut segmenter = Segmenter::new(config, Arc::new(clock.clone()));
    let mut last_seq = None;
    let mut check = |seq: u64, len: usize| {
        assert_eq!(len % PACKET_SIZE, 0, "a segment is whole packets");
        assert!(last_seq.is_none_or(|last| seq > last), "seq only grows");
        last_seq = Some(seq);
    };
    for chunk in data.chunks(piece) {
        for segment in segmenter.push(chunk) {
            check(segment.seq, segment.payload.len());
        }
        clock.advance_ms(i64::from(shape & 0x0f) * 100);
        if let Some(segment) = segmenter.check_signal() {
            check(segment.seq, segment.payload.len());
        }
    }
    if let Some(segment) = segmenter.finish() {
        check(segment.seq, segment.payload.len());
    }
    let mut demuxer = Demuxer::new(None);
    demuxer.push(data, |_| {});
    demuxer.finish(|_| {});
}
