//! Track selection on the committed multi-track clips, with ffmpeg as the
//! judge: a cut holds exactly the asked tracks, decodes without an error,
//! keeps every kept packet's bytes and the program clock.

use std::path::{Path, PathBuf};
use std::process::Command;

use dvr_common::Ticks;
use dvr_media::codec::TrackKind;
use dvr_media::tracks::{probe, program_of, select, SelectError};
use dvr_media::ts;
use dvr_testkit::clips::read as clip;

/// `(codec_type, codec_name, language)` of each stream ffprobe finds.
fn ffprobe_streams(path: &Path) -> Vec<(String, String, String)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_entries"])
        .arg("stream=codec_type,codec_name:stream_tags=language")
        .arg(path)
        .output()
        .expect("ffprobe (make test-deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&s["codec_type"]),
                text(&s["codec_name"]),
                text(&s["tags"]["language"]),
            )
        })
        .collect()
}

/// ffmpeg's complaints while decoding every stream of `path`.
fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .expect("ffmpeg (make test-deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn packets_on(bytes: &[u8], pid: u16) -> Vec<&[u8]> {
    bytes
        .chunks_exact(188)
        .filter(|p| ts::pid(p) == pid)
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn probe_names_every_track_with_its_codec_and_rate() {
    let bytes = clip("two_audio_langs.ts");
    let found = probe(&bytes, Ticks::from_secs(8)).unwrap();
    let kinds: Vec<TrackKind> = found.tracks.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [TrackKind::Video, TrackKind::Audio, TrackKind::Audio]
    );
    assert_eq!(found.numbers_of(TrackKind::Audio), [2, 3]);
    assert!(found.needs_master());
    let languages: Vec<_> = found.tracks.iter().map(|t| t.language.as_deref()).collect();
    assert_eq!(languages, [None, Some("eng"), Some("deu")]);
    assert!(found.tracks[0]
        .codec_string()
        .unwrap()
        .starts_with("avc1.64"));
    assert_eq!(found.tracks[1].codec_string(), Some("mp4a.40.2"));
    // The clip's bytes, split among the tracks (tables and SDT aside).
    let total: u64 = found.bitrates.iter().sum();
    let clip_rate = bytes.len() as u64 * 8 / 8;
    // PAT, PMT and SDT every 0.1 s take about a sixth of this small clip.
    assert!(
        total <= clip_rate && total > clip_rate * 7 / 10,
        "{total} of {clip_rate}"
    );
    assert!(
        found.bitrates[0] > found.bitrates[1],
        "{:?}",
        found.bitrates
    );

    let single = probe(&clip("h264_aac_720p.ts"), Ticks::from_secs(10)).unwrap();
    assert!(!single.needs_master());
}

#[test]
fn a_cut_holds_exactly_the_asked_tracks_and_decodes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for (name, cuts) in [
        (
            "two_audio_langs.ts",
            vec![
                (vec![1], vec![("video", "h264", "")]),
                (vec![3], vec![("audio", "aac", "deu")]),
                (
                    vec![1, 2],
                    vec![("video", "h264", ""), ("audio", "aac", "eng")],
                ),
            ],
        ),
        (
            "h264_ac3_mp2.ts",
            vec![
                (vec![2], vec![("audio", "ac3", "eng")]),
                (
                    vec![1, 3],
                    vec![("video", "h264", ""), ("audio", "mp2", "spa")],
                ),
            ],
        ),
    ] {
        let bytes = clip(name);
        let program = program_of(&bytes).unwrap();
        for (numbers, want) in cuts {
            let cut = select(&bytes, &numbers).unwrap();
            let path = write(dir.path(), &format!("{name}-{numbers:?}.ts"), &cut);
            let got = ffprobe_streams(&path);
            let want: Vec<(String, String, String)> = want
                .iter()
                .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
                .collect();
            assert_eq!(got, want, "{name} {numbers:?}");
            let errors = decode_errors(&path);
            assert!(errors.is_empty(), "{name} {numbers:?}: {errors}");
            // The rewritten PMT passes our own CRC check and lists the cut.
            let cut_program = program_of(&cut).unwrap();
            let pids: Vec<u16> = cut_program.streams.iter().map(|s| s.pid).collect();
            let asked: Vec<u16> = numbers.iter().map(|n| program.streams[n - 1].pid).collect();
            assert_eq!(pids, asked, "{name} {numbers:?}");
            // Kept packets are the stored bytes, in order.
            for pid in &asked {
                assert_eq!(packets_on(&cut, *pid), packets_on(&bytes, *pid));
            }
            // The clock survives an audio-only cut as PCR-only packets.
            let pcrs = |b: &[u8]| {
                packets_on(b, program.pcr_pid)
                    .into_iter()
                    .filter_map(ts::pcr_base)
                    .collect::<Vec<_>>()
            };
            assert_eq!(pcrs(&cut), pcrs(&bytes), "{name} {numbers:?}");
        }
        assert_eq!(
            select(&bytes, &[4]),
            Err(SelectError::NoSuchTrack { asked: 4, count: 3 })
        );
    }
}
