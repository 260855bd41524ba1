use super::*;

/// A video track of `count` samples of `size` bytes, 40 ms each, a
/// keyframe every `gop`.
fn video(count: usize, size: u32, gop: usize) -> TableTrack {
    TableTrack {
        number: 1,
        kind: TrackKind::Video,
        timescale: 90_000,
        first_decode: 0,
        earliest_presentation: 0,
        width: 1280,
        height: 720,
        language: *b"und",
        sample_entry: b"\0\0\0\x08avc1".to_vec(),
        samples: (0..count)
            .map(|i| Sample {
                size,
                duration: 3600,
                composition_offset: 0,
                sync: i % gop == 0,
            })
            .collect(),
    }
}

/// An AAC-like track at 48 kHz, 1024 samples a frame.
fn audio(count: usize, size: u32) -> TableTrack {
    TableTrack {
        number: 2,
        kind: TrackKind::Audio,
        timescale: 48_000,
        first_decode: 0,
        earliest_presentation: 0,
        width: 0,
        height: 0,
        language: *b"eng",
        sample_entry: b"\0\0\0\x08mp4a".to_vec(),
        samples: (0..count)
            .map(|_| Sample {
                size,
                duration: 1024,
                composition_offset: 0,
                sync: true,
            })
            .collect(),
    }
}

fn find(bytes: &[u8], kind: &[u8; 4]) -> Option<usize> {
    bytes.windows(4).position(|w| w == kind).map(|at| at - 4)
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Two 2 s segments, 50 frames each (keyframes every 25) and 93 audio
/// frames (1.984 s: the last is lengthened to the next segment).
fn two_segments() -> Vec<SampleTable> {
    (0..2)
        .map(|_| SampleTable {
            tracks: vec![video(50, 1000, 25), audio(93, 100)],
        })
        .collect()
}

fn at(tables: &[SampleTable]) -> Vec<SegmentTables<'_>> {
    tables
        .iter()
        .enumerate()
        .map(|(i, table)| SegmentTables {
            table,
            tape_start: Ticks(1_000_000 + i as i64 * 180_000),
        })
        .collect()
}

#[test]
fn whole_segments_lay_out_to_their_exact_size() {
    let tables = two_segments();
    let layout = Layout::new(&at(&tables), None, Ticks(1_000_000)..Ticks(1_360_000)).unwrap();
    let payload = 2 * (50 * 1000 + 93 * 100);
    assert_eq!(layout.len(), layout.head().len() as u64 + payload);
    let head = layout.head();
    // moov before mdat, the mdat header last in the head and sized right.
    assert!(find(head, b"moov").unwrap() < find(head, b"mdat").unwrap());
    let mdat = find(head, b"mdat").unwrap();
    assert_eq!(mdat + 8, head.len());
    assert_eq!(u64::from(be32(head, mdat)), payload + 8);
    assert!(find(head, b"co64").is_none());
    assert_eq!(layout.start(), Ticks(1_000_000));
    assert_eq!(layout.duration(), Ticks(360_000));
    // stco: chunks of segment 0 (video, audio), then segment 1.
    let stco = find(head, b"stco").unwrap();
    assert_eq!(be32(head, stco + 12), 2);
    assert_eq!(be32(head, stco + 16) as usize, head.len());
    assert_eq!(be32(head, stco + 20) as usize, head.len() + 50_000 + 9_300);
}

#[test]
fn spans_cover_a_range_without_the_bytes_before_it() {
    let tables = two_segments();
    let layout = Layout::new(&at(&tables), None, Ticks(1_000_000)..Ticks(1_360_000)).unwrap();
    let h = layout.head().len() as u64;
    assert_eq!(
        layout.spans(10..h + 5),
        vec![
            Span::Head(10..h as usize),
            Span::Media {
                segment: 0,
                track: 1,
                data: 0..5
            }
        ]
    );
    // Inside the second segment's audio only.
    let audio = h + 2 * 50_000 + 9_300;
    assert_eq!(
        layout.spans(audio + 10..audio + 20),
        vec![Span::Media {
            segment: 1,
            track: 2,
            data: 10..20
        }]
    );
    // Spanning a chunk boundary; past the end is clipped.
    let spans = layout.spans(audio - 3..layout.len() + 100);
    assert_eq!(
        spans,
        vec![
            Span::Media {
                segment: 1,
                track: 1,
                data: 49_997..50_000
            },
            Span::Media {
                segment: 1,
                track: 2,
                data: 0..9_300
            }
        ]
    );
    assert!(layout.spans(layout.len()..layout.len() + 1).is_empty());
}

#[test]
fn the_start_snaps_to_the_keyframe_before_and_the_end_cuts() {
    let tables = two_segments();
    // From 1.5 s into the first segment (keyframes at 0 and 1 s) to 3 s.
    let layout = Layout::new(
        &at(&tables),
        None,
        Ticks(1_000_000 + 135_000)..Ticks(1_000_000 + 270_000),
    )
    .unwrap();
    assert_eq!(layout.start(), Ticks(1_090_000));
    // Video 1.09 s to 1.27 s; audio from its first frame at or after the
    // start to its last one starting before the end: up to a frame more.
    let d = layout.duration().0;
    assert!((180_000..180_000 + 1920).contains(&d), "{d}");
    // Video from sample 25 of segment 0: the first chunk skips 25 frames.
    let h = layout.head().len() as u64;
    assert_eq!(
        layout.spans(h..h + 1),
        vec![Span::Media {
            segment: 0,
            track: 1,
            data: 25_000..25_001
        }]
    );
    // A track that asks for another number is refused.
    assert_eq!(
        Layout::new(&at(&tables), Some(&[3]), Ticks(0)..Ticks(i64::MAX / 4)).unwrap_err(),
        Mp4Error::NoSuchTrack(3)
    );
    // A window after the tape has nothing.
    assert_eq!(
        Layout::new(&at(&tables), None, Ticks(9_000_000)..Ticks(9_900_000)).unwrap_err(),
        Mp4Error::Empty
    );
}

#[test]
fn a_gap_between_segments_lengthens_the_last_sample_before_it() {
    let tables = two_segments();
    let mut segments = at(&tables);
    segments[1].tape_start = Ticks(1_000_000 + 270_000); // 1 s lost
    let layout = Layout::new(&segments, Some(&[1]), Ticks(1_000_000)..Ticks(1_450_000)).unwrap();
    assert_eq!(layout.duration(), Ticks(450_000));
    let head = layout.head();
    let stts = find(head, b"stts").unwrap();
    // 49 × 3600, one of 3600 + 90000, 50 × 3600.
    assert_eq!(be32(head, stts + 12), 3);
    assert_eq!((be32(head, stts + 16), be32(head, stts + 20)), (49, 3600));
    assert_eq!((be32(head, stts + 24), be32(head, stts + 28)), (1, 93_600));
}

#[test]
fn past_four_gibibytes_offsets_are_64_bit_and_the_mdat_is_large() {
    // 3 segments of 50 frames of 50 MB: 7.5 GB of media, no bytes of it.
    let tables: Vec<SampleTable> = (0..3)
        .map(|_| SampleTable {
            tracks: vec![video(50, 50_000_000, 25), audio(94, 500)],
        })
        .collect();
    let layout = Layout::new(&at(&tables), None, Ticks(1_000_000)..Ticks(1_540_000)).unwrap();
    let payload = 3 * (50 * 50_000_000u64 + 94 * 500);
    let head = layout.head();
    assert_eq!(layout.len(), head.len() as u64 + payload);
    assert!(find(head, b"stco").is_none());
    let co64 = find(head, b"co64").unwrap();
    assert_eq!(be32(head, co64 + 12), 3);
    let offset = |i: usize| u64::from_be_bytes(head[co64 + 16 + 8 * i..][..8].try_into().unwrap());
    assert_eq!(offset(0), head.len() as u64);
    assert_eq!(offset(2), head.len() as u64 + 2 * (2_500_000_000 + 47_000));
    assert!(offset(2) > u64::from(u32::MAX));
    // The mdat: size 1, then a 64-bit size.
    let mdat = head.len() - 16;
    assert_eq!(&head[mdat..mdat + 8], b"\0\0\0\x01mdat");
    assert_eq!(
        u64::from_be_bytes(head[mdat + 8..].try_into().unwrap()),
        payload + 16
    );
    // The last byte maps onto the last segment's audio.
    assert_eq!(
        layout.spans(layout.len() - 1..layout.len()),
        vec![Span::Media {
            segment: 2,
            track: 2,
            data: 46_999..47_000
        }]
    );
}

#[test]
fn precise_exports_keep_the_lead_in_behind_one_identical_edit() {
    let tables = two_segments();
    let from = Ticks(1_000_000 + 135_000);
    let to = Ticks(1_000_000 + 270_000);
    let snapped = Layout::new(&at(&tables), None, from..to).unwrap();
    let precise = Layout::precise(&at(&tables), None, from..to).unwrap();
    // The same samples; only the edits and durations differ.
    assert_eq!(
        precise.len() - precise.head().len() as u64,
        snapped.len() - snapped.head().len() as u64
    );
    assert_eq!(precise.start(), from);
    assert_eq!(precise.duration(), Ticks(135_000));
    let head = precise.head();
    let elst: Vec<usize> = head
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"elst")
        .map(|(at, _)| at - 4)
        .collect();
    assert_eq!(elst.len(), 2);
    for &at in &elst {
        assert_eq!(be32(head, at + 12), 1, "one entry");
        let duration = u64::from_be_bytes(head[at + 16..at + 24].try_into().unwrap());
        assert_eq!(duration, 135_000);
    }
    // Video: media time 45_000 (0.5 s) past its keyframe at 1.09 s.
    let video_time = i64::from_be_bytes(head[elst[0] + 24..elst[0] + 32].try_into().unwrap());
    assert_eq!(video_time, 45_000);
}

#[test]
fn stills_carry_keyframes_only_paced_as_asked() {
    let tables = two_segments();
    let segments = at(&tables);
    let video = first_video(&segments, None).unwrap();
    assert_eq!(video, 1);
    assert_eq!(first_video(&segments, Some(&[2])), None);
    let all = Ticks(0)..Ticks(i64::MAX);
    let frames = keyframes(&segments, video, all);
    // Keyframes every 25 frames of 40 ms: 0, 1, 2 and 3 s into the tape.
    let times: Vec<i64> = frames.iter().map(|k| k.presentation.0).collect();
    assert_eq!(times, [1_000_000, 1_090_000, 1_180_000, 1_270_000]);
    assert_eq!(
        (frames[3].segment, frames[3].sample),
        (1, 25),
        "the second segment's second keyframe"
    );

    // Fit into 10 s: four stills of 2.5 s, only their 4 x 1000 bytes of media.
    let fit = Layout::stills(&segments, video, &frames, Pace::Fit(Ticks(900_000))).unwrap();
    assert_eq!(fit.len(), fit.head().len() as u64 + 4000);
    assert_eq!(fit.duration(), Ticks(900_000));
    let head = fit.head();
    let stts = find(head, b"stts").unwrap();
    assert_eq!(be32(head, stts + 12), 1, "one run of equal durations");
    assert_eq!((be32(head, stts + 16), be32(head, stts + 20)), (4, 225_000));
    assert!(
        find(head, b"stss").is_none(),
        "every sample is a sync sample"
    );
    assert!(find(head, b"mp4a").is_none(), "video only");
    let media: Vec<Span> = fit
        .spans(0..fit.len())
        .into_iter()
        .filter(|s| matches!(s, Span::Media { .. }))
        .collect();
    assert_eq!(
        media[3],
        Span::Media {
            segment: 1,
            track: 1,
            data: 25_000..26_000
        }
    );

    // Recorded: each until the next keyframe, the last until the end, or
    // the tape's end (4 s in) when the end is later.
    for (end, lasts) in [(1_300_000, 300_000), (9_000_000, 360_000)] {
        let recorded =
            Layout::stills(&segments, video, &frames, Pace::Recorded(Ticks(end))).unwrap();
        assert_eq!(recorded.duration(), Ticks(lasts), "to {end}");
        assert_eq!(recorded.start(), Ticks(1_000_000));
    }
    assert_eq!(
        Layout::stills(&segments, video, &[], Pace::Fit(Ticks(1))).unwrap_err(),
        Mp4Error::Empty
    );
}
