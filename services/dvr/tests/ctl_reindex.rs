//! `dvr reindex` and `dvr ctl lock|unlock|locks` as an operator runs them,
//! against a `file://` archive written through the archive store.

use std::process::{Command, Output};
use std::sync::Arc;

use bytes::Bytes;
use dvr_archive::store::ArchiveStore;
use dvr_archive::{ChunkIndex, ChunkKey};
use dvr_common::{StreamName, Ticks, UtcMs};
use dvr_media::{CodecSummary, SegmentFlags};
use dvr_storage::{StorageConfig, StorageUri};

/// 2026-11-21T14:00:00Z
const T0: i64 = 1_795_269_600;

/// Two chunks of ten 2 s segments (14:00:00 and 15:00:00), plus an orphan
/// `.ts` and a chunk whose index is garbage.
fn archive() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let uri = StorageUri::parse(&format!("file://{}", dir.path().display())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let storage = dvr_storage::resolve(&uri, &StorageConfig::default()).unwrap();
        let store = ArchiveStore::new(Arc::clone(&storage));
        let stream: StreamName = "ort".parse().unwrap();
        let flags = SegmentFlags {
            discontinuity: false,
            independent: true,
        };
        for (c, hour) in [(0u64, 0i64), (1, 1), (2, 2)] {
            let start = (T0 + hour * 3600) * 1000;
            let key = ChunkKey::new(stream.clone(), UtcMs(start), c * 10);
            storage
                .put(&key.ts_key(), Bytes::from(vec![0x47; 1880 * 10]))
                .await
                .unwrap();
            let index = ChunkIndex::from_segments(
                CodecSummary::default(),
                (0..10u64).map(|i| {
                    let t = UtcMs(start + 2000 * i as i64);
                    (c * 10 + i, t, Ticks::from_ms(2000), Ticks(0), 1880, flags)
                }),
            );
            store.commit_chunk(key.clone(), index).await.unwrap();
            if c == 2 {
                storage
                    .put(&key.idx_key(), Bytes::from_static(b"garbage"))
                    .await
                    .unwrap();
            }
        }
        let orphan = ChunkKey::new(stream, UtcMs((T0 + 3 * 3600) * 1000), 30);
        storage
            .put(&orphan.ts_key(), Bytes::from_static(b"half"))
            .await
            .unwrap();
    });
    dir
}

fn dvr(dir: &tempfile::TempDir, args: &[&str]) -> Output {
    let archive = format!("file://{}", dir.path().display());
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--stream", "ort", "--archive", &archive]);
    Command::new(env!("CARGO_BIN_EXE_dvr"))
        .args(&all)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn reindex_reports_chunks_orphans_and_bad_objects_and_writes_nothing() {
    let dir = archive();
    let before = std::fs::read_dir(dir.path().join("ort/2026/11/21/14"))
        .unwrap()
        .count();
    let text = stdout(&dvr(&dir, &["reindex"]));
    assert!(
        text.contains("chunks    2 (20 segments, 36.7 KiB)")
            || text.contains("chunks    2 (20 segments,"),
        "{text}"
    );
    assert!(text.contains("ranges    2\n"), "{text}");
    assert!(
        text.contains("2026-11-21T14:00:00.000Z to 2026-11-21T14:00:20.000Z (20s)"),
        "{text}"
    );
    assert!(text.contains("orphans   1"), "{text}");
    assert!(
        text.contains("ort/2026/11/21/17/00000000000000000030.ts"),
        "{text}"
    );
    assert!(text.contains("bad       1"), "{text}");
    assert!(
        text.contains("ort/2026/11/21/16/00000000000000000020.idx"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&dvr(&dir, &["reindex", "--json"]))).unwrap();
    assert_eq!(json["chunks"], 2);
    assert_eq!(json["ranges"][1]["from_secs"], T0 + 3600);
    let err = stderr(&dvr(&dir, &["reindex", "--check"]));
    assert_eq!(
        err.trim(),
        "dvr: stream ort: 1 orphaned and 1 damaged chunk objects"
    );
    let after = std::fs::read_dir(dir.path().join("ort/2026/11/21/14"))
        .unwrap()
        .count();
    assert_eq!(before, after);
    assert!(!dir.path().join("ort/locks.json").exists());
}

#[test]
fn locks_are_added_listed_and_removed_in_the_archive() {
    let dir = archive();
    let from = (T0 + 5).to_string();
    assert_eq!(
        stdout(&dvr(&dir, &["ctl", "locks"])).trim(),
        r#"{"locks":[],"stream":"ort"}"#
    );
    let text = stdout(&dvr(
        &dir,
        &["ctl", "lock", "--from", &from, "--duration", "1h"],
    ));
    assert!(
        text.starts_with(&format!(
            "locked ort from {from} for 3600 s (2026-11-21T14:00:05"
        )),
        "{text}"
    );
    stdout(&dvr(
        &dir,
        &["ctl", "lock", "--from", &from, "--duration", "1000"],
    ));
    let file = std::fs::read_to_string(dir.path().join("ort/locks.json")).unwrap();
    assert_eq!(
        file,
        format!(
            r#"{{"locks":[{{"from":{from},"duration":1000}},{{"from":{from},"duration":3600}}]}}"#
        )
    );
    let text = stdout(&dvr(
        &dir,
        &["ctl", "unlock", "--from", &from, "--duration", "3600"],
    ));
    assert!(
        text.contains(&format!(r#""locks":[{{"duration":1000,"from":{from}}}]"#)),
        "{text}"
    );
    let err = stderr(&dvr(
        &dir,
        &["ctl", "unlock", "--from", &from, "--duration", "3600"],
    ));
    assert!(err.contains("stream ort has no lock from"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn bad_times_and_durations_are_one_clear_line() {
    let dir = archive();
    for (args, says) in [
        (
            ["--from", "-5", "--duration", "60"],
            "is not a UTC epoch second",
        ),
        (
            ["--from", "1795269600000", "--duration", "60"],
            "not milliseconds",
        ),
        (
            ["--from", "1795269600", "--duration", "0"],
            "must be positive",
        ),
        (["--from", "1795269600", "--duration", "1y"], "unknown unit"),
    ] {
        let mut all = vec!["ctl", "lock"];
        all.extend(args);
        let err = stderr(&dvr(&dir, &all));
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!dir.path().join("ort/locks.json").exists());
}
