//! The one function the fuzzer drives, shared with the corpus replay test so
//! `make test` runs every input the fuzzer ever kept.

use std::sync::Arc;

use dvr_common::{SimulatedClock, UtcMs};

use crate::demux::Demuxer;
use crate::fmp4::{Fragments, SegmentTiming};
use crate::segment::Segment;
use crate::segmenter::{Segmenter, SegmenterConfig};
use crate::ts::PACKET_SIZE;

/// Feeds `data` to a segmenter (in pieces whose sizes the first byte picks,
/// with the simulated clock advancing between them), writes every segment
/// it cuts as fMP4, feeds `data` to a demuxer, and checks the invariants
/// that must hold for any input.
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
    let mut run_start = None;
    let mut check = |segment: &Segment| {
        assert_eq!(
            segment.payload.len() % PACKET_SIZE,
            0,
            "a segment is whole packets"
        );
        assert!(
            last_seq.is_none_or(|last| segment.seq > last),
            "seq only grows"
        );
        last_seq = Some(segment.seq);
        if segment.flags.discontinuity || run_start.is_none() {
            run_start = Some(segment.meta());
        }
        let start = run_start.unwrap_or_else(|| segment.meta());
        let timing = SegmentTiming::new(&start, &segment.meta());
        if let Ok(fragments) = Fragments::from_ts(&segment.payload, &timing, None) {
            for track in fragments.tracks() {
                let media = track.media();
                assert!(
                    media.len() >= track.payload_bytes(),
                    "the samples are all there"
                );
            }
            let _ = fragments.combined();
            // The MP4 export trusts a segment's sample table to describe
            // its converted bytes exactly, and its stored form to round-trip.
            let meta = segment.meta();
            if let Ok(table) =
                crate::mp4::SampleTable::from_ts(&segment.payload, meta.pts_start, meta.duration)
            {
                for track in &table.tracks {
                    let data = fragments
                        .track(usize::from(track.number))
                        .map(|t| t.data().len());
                    assert_eq!(
                        data,
                        Some(track.data_len() as usize),
                        "table sizes match the data"
                    );
                }
                let bytes = table.encode();
                assert_eq!(crate::mp4::SampleTable::decode(&bytes).as_ref(), Ok(&table));
            }
        }
    };
    for chunk in data.chunks(piece) {
        for segment in segmenter.push(chunk) {
            check(&segment);
        }
        clock.advance_ms(i64::from(shape & 0x0f) * 100);
        for segment in segmenter.check_signal() {
            check(&segment);
        }
    }
    for segment in segmenter.finish() {
        check(&segment);
    }
    let mut demuxer = Demuxer::new(None);
    demuxer.push(data, |_| {});
    demuxer.finish(|_| {});
    // Stored tables are read back from storage: any bytes are an answer.
    let _ = crate::mp4::SampleTable::decode(data);
    let _ = crate::mp4::decode_chunk_tables(data);
}

/// Runs `data`, cut into packets, through the loop retimer: shifting by an
/// offset the first bytes pick and back is the identity, the renumbered
/// counters never break continuity, and nothing panics.
pub fn exercise_retime(data: &[u8]) {
    use crate::retime::{pacing_stamp, shift_timestamps, PassSpan, Retimer};
    use crate::ts::{self, ContinuityTracker, SYNC_BYTE};

    let Some((head, data)) = data.split_first_chunk::<8>() else {
        return;
    };
    let offset = i64::from_le_bytes(*head);
    let mut span = PassSpan::default();
    let mut retimer = Retimer::new();
    let mut continuity = ContinuityTracker::default();
    for _pass in 0..2 {
        for chunk in data.chunks_exact(PACKET_SIZE) {
            let mut packet = chunk.to_vec();
            packet[0] = SYNC_BYTE;
            let original = packet.clone();
            shift_timestamps(&mut packet, offset);
            let _ = pacing_stamp(&packet);
            shift_timestamps(&mut packet, offset.wrapping_neg());
            assert_eq!(packet, original, "shifting back restores the packet");
            span.observe(&packet);
            retimer.apply(&mut packet);
            if ts::pid(&packet) != ts::NULL_PID {
                assert!(
                    continuity.check(&packet),
                    "renumbered counters are continuous"
                );
            }
        }
        retimer.next_pass(span.duration().unwrap_or_default());
    }
}
