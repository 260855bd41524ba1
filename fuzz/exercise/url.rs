//! The playback URL grammar (`dvr_packager::url::parse`) under any path a
//! client can send, and under every form written the way players write it.
//!
//! Shared by the `url` fuzz target and the packager's corpus replay test.
//! Two properties, not just "no panic": whatever parses is sane (the stream
//! is the path's leading components, times are bounded so later arithmetic
//! cannot overflow, durations are positive, track sets are 1..=32), and a
//! URL built from known parts parses back to exactly those parts.

use dvr_common::{Ticks, UtcMs};
use dvr_media::{SegmentFlags, SegmentMeta};
use dvr_packager::metrics::form_label;
use dvr_packager::playlist::segment_path;
use dvr_packager::url::{self, Flavor, Form, Picture, RangeEnd, TrackSet, UrlError};

#[path = "input.rs"]
mod input;
use input::Input;

/// Parses `data` as a path, then as the recipe of a URL to build.
pub fn exercise_url(data: &[u8]) {
    check_parsed(&String::from_utf8_lossy(data));
    check_built(data);
}

/// What holds of any path's parse.
fn check_parsed(path: &str) {
    let parsed = url::parse(path);
    let label = form_label(path);
    let playback = match parsed {
        Ok(playback) => playback,
        Err(UrlError::Unknown) => return assert_eq!(label, "unknown"),
        Err(UrlError::Invalid(reason)) => {
            assert_eq!(label, "invalid");
            assert!(!reason.is_empty(), "{path:?}: an empty reason");
            if !path.contains(['\n', '\r']) {
                assert!(
                    !reason.contains('\n'),
                    "{path:?}: {reason:?} is not one line"
                );
            }
            return;
        }
    };
    assert!(
        label != "unknown" && label != "invalid",
        "{path:?}: {label}"
    );
    // The stream is the path's leading components, the form what follows.
    let rest = path.strip_prefix('/').unwrap_or(path);
    let after = rest.strip_prefix(playback.stream);
    assert!(
        after.is_some_and(|tail| tail.starts_with('/')),
        "{path:?}: stream {:?} is not its leading components",
        playback.stream
    );
    if let Some(tracks) = playback.tracks {
        let numbers = tracks.numbers();
        assert!(!numbers.is_empty(), "{path:?}: no tracks");
        assert!(numbers
            .iter()
            .all(|n| (1..=TrackSet::MAX_TRACK).contains(n)));
        assert_eq!(TrackSet::of(&numbers), Some(tracks));
    }
    check_form(path, playback.form);
}

/// Times no later than the year 9999, positive durations.
fn check_form(path: &str, form: Form) {
    let time = |t: i64| {
        assert!(
            (0..=UtcMs::LAST_SECOND).contains(&t),
            "{path:?}: time {t} out of bounds"
        );
    };
    let positive = |n: u32| assert!(n > 0, "{path:?}: a zero duration");
    let flavor = |f: Flavor| {
        if let Flavor::VideoTrack(n) = f {
            assert!(n > 0, "{path:?}: video0");
        }
    };
    match form {
        Form::LivePlaylist(f) => flavor(f),
        Form::Rewind { flavor: f, window } => {
            flavor(f);
            positive(window);
        }
        Form::RangePlaylist {
            flavor: f,
            from,
            end,
        } => {
            flavor(f);
            time(from);
            if let RangeEnd::Duration(d) = end {
                positive(d);
            }
        }
        Form::RangeMpegts { from, duration } | Form::RangeMp4 { from, duration } => {
            time(from);
            positive(duration);
        }
        Form::RangeDash { from, end } => {
            time(from);
            if let RangeEnd::Duration(d) = end {
                positive(d);
            }
        }
        Form::TimeshiftAbsPlaylist { flavor: f, at }
        | Form::TimeshiftAbsMpegts { flavor: f, at } => {
            flavor(f);
            time(at);
        }
        Form::TimeshiftRelPlaylist { flavor: f, behind } => {
            flavor(f);
            positive(behind);
        }
        Form::TimeshiftRelMpegts { behind } => positive(behind),
        Form::Segment {
            start_second,
            duration_ms,
        } => {
            // The service turns the second into milliseconds unchecked.
            assert!(
                start_second.checked_mul(1000).is_some(),
                "{path:?}: segment second {start_second} overflows milliseconds"
            );
            positive(duration_ms);
        }
        Form::Preview { second, .. } | Form::Thumbnail { second } => {
            // The service adds a second and turns it into milliseconds.
            assert!(
                second
                    .checked_add(1)
                    .and_then(|s| s.checked_mul(1000))
                    .is_some(),
                "{path:?}: second {second} overflows milliseconds"
            );
        }
        Form::LivePreview => {}
        Form::RewindDash { window } => positive(window),
        Form::Fmp4Init { at, .. } | Form::Fmp4Fragment { at, .. } => {
            // Tape times are 90 kHz ticks, bounded like epoch seconds.
            assert!(
                (0..=UtcMs::LAST_SECOND * 90_000).contains(&at),
                "{path:?}: tape time {at} out of bounds"
            );
            if let Form::Fmp4Fragment {
                duration_ms: Some(ms),
                ..
            } = form
            {
                positive(ms);
            }
        }
        Form::LiveMpegts | Form::LiveDash | Form::RecordingStatus | Form::Embed => {}
    }
}

/// Grammar words a stream component must not be, or the name would read
/// as part of the form (`x/archive` + `/1/2/mpegts`).
const KEYWORDS: [&str; 2] = ["archive", "mpegts"];

/// A valid stream name of one to three alphanumeric components.
fn stream_name(input: &mut Input<'_>) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let components = 1 + input.below(3);
    let mut parts = Vec::new();
    for _ in 0..components {
        let len = 1 + input.below(8);
        let mut part: String = (0..len)
            .map(|_| char::from(ALPHABET[usize::from(input.byte()) % ALPHABET.len()]))
            .collect();
        if KEYWORDS.contains(&part.as_str()) {
            part.push('x');
        }
        parts.push(part);
    }
    parts.join("/")
}

fn any_flavor(input: &mut Input<'_>) -> Flavor {
    match input.below(5) {
        0 => Flavor::Index,
        1 => Flavor::Archive,
        2 => Flavor::Mono,
        3 => Flavor::Video,
        _ => Flavor::VideoTrack(input.byte().max(1)),
    }
}

fn flavor_name(f: Flavor) -> String {
    match f {
        Flavor::Index => "index".into(),
        Flavor::Archive => "archive".into(),
        Flavor::Mono => "mono".into(),
        Flavor::Video => "video".into(),
        Flavor::VideoTrack(n) => format!("video{n}"),
    }
}

/// A time a URL may name.
fn epoch(input: &mut Input<'_>) -> i64 {
    input.up_to(UtcMs::LAST_SECOND)
}

/// A positive number of seconds.
fn seconds(input: &mut Input<'_>) -> u32 {
    u32::try_from(input.below(u64::from(u32::MAX))).unwrap_or(0) + 1
}

fn range_end(input: &mut Input<'_>) -> (RangeEnd, String) {
    if input.byte() % 4 == 0 {
        (RangeEnd::Now, "now".into())
    } else {
        let d = seconds(input);
        (RangeEnd::Duration(d), d.to_string())
    }
}

/// Builds a URL of a form picked by `data` and checks it parses back.
fn check_built(data: &[u8]) {
    let mut input = Input::new(data);
    let stream = stream_name(&mut input);
    let (tail, form) = built_form(&mut input);
    // A tracks directory, where the form takes one.
    let takes_tracks = matches!(
        form,
        Form::LivePlaylist(_)
            | Form::Rewind { .. }
            | Form::RangePlaylist { .. }
            | Form::TimeshiftAbsPlaylist { .. }
            | Form::TimeshiftRelPlaylist { .. }
            | Form::Segment { .. }
            | Form::LiveMpegts
            | Form::RangeMpegts { .. }
            | Form::TimeshiftAbsMpegts {
                flavor: Flavor::Index | Flavor::Archive | Flavor::Mono,
                ..
            }
            | Form::TimeshiftRelMpegts { .. }
            | Form::Preview { .. }
            | Form::LivePreview
    );
    let count = input.below(4);
    let numbers: Vec<usize> = (0..count)
        .map(|_| 1 + usize::from(input.byte()) % TrackSet::MAX_TRACK)
        .collect();
    let tracks = if takes_tracks {
        TrackSet::of(&numbers)
    } else {
        None
    };
    let path = match tracks {
        Some(_) => {
            let list: Vec<String> = numbers.iter().map(ToString::to_string).collect();
            format!("/{stream}/tracks-{}/{tail}", list.join(","))
        }
        None => format!("/{stream}/{tail}"),
    };
    let parsed = url::parse(&path).unwrap_or_else(|e| panic!("{path:?} does not parse: {e}"));
    assert_eq!(parsed.stream, stream, "{path:?}");
    assert_eq!(parsed.form, form, "{path:?}");
    assert_eq!(parsed.tracks, tracks, "{path:?}");
}

/// The last components of a URL and the form they name.
fn built_form(input: &mut Input<'_>) -> (String, Form) {
    match input.below(16) {
        0 => {
            let f = any_flavor(input);
            if f == Flavor::Archive {
                return ("index.m3u8".into(), Form::LivePlaylist(Flavor::Index));
            }
            (format!("{}.m3u8", flavor_name(f)), Form::LivePlaylist(f))
        }
        1 => ("mpegts".into(), Form::LiveMpegts),
        2 => ("index.mpd".into(), Form::LiveDash),
        3 => {
            let window = seconds(input);
            let (prefix, flavor) = match input.byte() % 2 {
                0 => (String::new(), Flavor::Index),
                _ => {
                    let f = any_flavor(input);
                    (format!("{}-", flavor_name(f)), f)
                }
            };
            (
                format!("{prefix}rewind-{window}.m3u8"),
                Form::Rewind { flavor, window },
            )
        }
        4 => {
            let flavor = any_flavor(input);
            let from = epoch(input);
            let (end, end_text) = range_end(input);
            (
                format!("{}-{from}-{end_text}.m3u8", flavor_name(flavor)),
                Form::RangePlaylist { flavor, from, end },
            )
        }
        5 => {
            let from = epoch(input);
            let duration = seconds(input);
            let tail = if input.byte() % 2 == 0 {
                format!("archive-{from}-{duration}.ts")
            } else {
                format!("archive/{from}/{duration}/mpegts")
            };
            (tail, Form::RangeMpegts { from, duration })
        }
        6 => {
            let flavor = if input.byte() % 2 == 0 {
                Flavor::Archive
            } else {
                Flavor::Index
            };
            let from = epoch(input);
            let (end, end_text) = range_end(input);
            (
                format!("{}-{from}-{end_text}.mpd", flavor_name(flavor)),
                Form::RangeDash { from, end },
            )
        }
        7 => {
            let from = epoch(input);
            let duration = seconds(input);
            (
                format!("archive-{from}-{duration}.mp4"),
                Form::RangeMp4 { from, duration },
            )
        }
        8 => {
            let at = epoch(input);
            let flavor = any_flavor(input);
            let tail = match input.byte() % 3 {
                0 => {
                    return (
                        format!("timeshift_abs-{at}.m3u8"),
                        Form::TimeshiftAbsPlaylist {
                            flavor: Flavor::Index,
                            at,
                        },
                    )
                }
                1 => format!("{}-timeshift_abs-{at}.m3u8", flavor_name(flavor)),
                _ => format!("timeshift_abs_{}-{at}.m3u8", flavor_name(flavor)),
            };
            (tail, Form::TimeshiftAbsPlaylist { flavor, at })
        }
        9 => {
            let at = epoch(input);
            let flavor = match any_flavor(input) {
                Flavor::Video => Flavor::Mono,
                f => f,
            };
            let tail = match input.byte() % 3 {
                0 => format!("{}-timeshift_abs-{at}.ts", flavor_name(flavor)),
                choice => {
                    let tail = if choice == 1 {
                        format!("timeshift_abs-{at}.ts")
                    } else {
                        format!("timeshift_abs/{at}")
                    };
                    let flavor = Flavor::Index;
                    return (tail, Form::TimeshiftAbsMpegts { flavor, at });
                }
            };
            (tail, Form::TimeshiftAbsMpegts { flavor, at })
        }
        10 => {
            let behind = seconds(input);
            let flavor = any_flavor(input);
            let tail = match input.byte() % 3 {
                0 => {
                    return (
                        format!("timeshift_rel-{behind}.m3u8"),
                        Form::TimeshiftRelPlaylist {
                            flavor: Flavor::Index,
                            behind,
                        },
                    )
                }
                1 => format!("{}-timeshift_rel-{behind}.m3u8", flavor_name(flavor)),
                _ => format!("timeshift_rel_{}-{behind}.m3u8", flavor_name(flavor)),
            };
            (tail, Form::TimeshiftRelPlaylist { flavor, behind })
        }
        11 => {
            let behind = seconds(input);
            (
                format!("timeshift_rel/{behind}"),
                Form::TimeshiftRelMpegts { behind },
            )
        }
        12 => ("recording_status.json".into(), Form::RecordingStatus),
        13 => ("embed.html".into(), Form::Embed),
        14 => {
            // A picture of a second, as brief_thumbnails' seconds name it.
            let second = epoch(input);
            let c = dvr_common::CivilTime::from_utc(UtcMs::from_secs(second));
            let dated = format!(
                "{:04}/{:02}/{:02}/{:02}/{:02}/{:02}",
                c.year, c.month, c.day, c.hour, c.minute, c.second
            );
            match input.byte() % 4 {
                0 => (
                    format!("{dated}-preview.mp4"),
                    Form::Preview {
                        second,
                        picture: Picture::Mp4,
                    },
                ),
                1 => (
                    format!("{dated}-preview.jpg"),
                    Form::Preview {
                        second,
                        picture: Picture::Jpeg,
                    },
                ),
                2 => (format!("{dated}.jpg"), Form::Thumbnail { second }),
                _ => ("preview.jpg".into(), Form::LivePreview),
            }
        }
        _ => {
            // A segment as playlists name it.
            let utc = UtcMs(input.up_to(UtcMs::LAST_SECOND * 1000));
            let duration_ms = seconds(input);
            let meta = SegmentMeta {
                seq: input.u64(),
                utc_start: utc,
                duration: Ticks::from_ms(i64::from(duration_ms)),
                pts_start: Ticks::ZERO,
                bytes: 0,
                flags: SegmentFlags::default(),
            };
            (
                segment_path(&meta),
                Form::Segment {
                    start_second: utc.as_secs(),
                    duration_ms,
                },
            )
        }
    }
}
