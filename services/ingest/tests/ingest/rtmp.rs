//! RTMP publish against ffmpeg as the encoder: what it publishes is cut
//! into H.264 + AAC segments of the right length; a publish to a stream
//! that is not there, and one in a codec other than H.264 (ffmpeg's FLV1),
//! are refused (ffmpeg fails) and record nothing; a play request is
//! refused at once.

use super::*;
use dvr_ingest::input::publish::rtmp::RtmpListener;
use dvr_ingest::input::PublishHub;

/// `secs` seconds of the test pattern published in real time to `url`.
fn publish(url: &str, secs: u32) -> Ffmpeg {
    publish_video(url, secs, "libx264")
}

/// [`publish`] with video encoded by `encoder`.
fn publish_video(url: &str, secs: u32, encoder: &str) -> Ffmpeg {
    require_ffmpeg();
    let t = secs.to_string();
    let child = ffmpeg(&["-re"])
        .args(source())
        .args(["-t", &t])
        .args(H264_AAC)
        .args(["-c:v", encoder])
        .args(["-f", "flv", url])
        .spawn()
        .expect("ffmpeg starts");
    Ffmpeg(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_publish_is_recorded_and_unknown_streams_and_codecs_refused() {
    init_logs();
    let hub = PublishHub::new(None);
    let listener = RtmpListener::bind("127.0.0.1:0".parse().unwrap(), Arc::clone(&hub))
        .await
        .expect("listens");
    let port = listener.local_addr().port();
    let mut config = config(&["publish://"]);
    config.publish = Some(Arc::clone(&hub));
    let (tx, mut rx) = mpsc::channel(64);
    let task = IngestTask::spawn(config, Arc::new(SystemClock), tx);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    for (what, mut refused) in [
        (
            "a publish to an unknown stream",
            publish(&format!("rtmp://127.0.0.1:{port}/live/nope"), 1),
        ),
        (
            "a publish of FLV1 video",
            publish_video(&format!("rtmp://127.0.0.1:{port}/live/test"), 2, "flv"),
        ),
        (
            "a play request",
            Ffmpeg(
                ffmpeg(&["-i", &format!("rtmp://127.0.0.1:{port}/live/test")])
                    .args(["-t", "1", "-f", "null", "-"])
                    .spawn()
                    .expect("ffmpeg starts"),
            ),
        ),
    ] {
        let status = loop {
            if let Some(status) = refused.0.try_wait().expect("ffmpeg status") {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!status.success(), "{what} fails");
    }
    // Answered, not left to the 10 s admission timeout.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    let mut sender = publish(&format!("rtmp://127.0.0.1:{port}/live/test"), 5);
    sender.wait().await;
    assert!(
        sender.0.wait().expect("status").success(),
        "ffmpeg published"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = task.stop().await.expect("ingest ran");
    let segments = drain(&mut rx).await;
    assert_well_formed(&segments);
    assert_target_durations(&segments);
    let total: i64 = segments.iter().map(|s| s.duration.0).sum();
    assert!(
        (Ticks::from_secs(5).0 - 9_000..=Ticks::from_secs(5).0).contains(&total),
        "5 s published, {total} ticks recorded:\n{}",
        describe(&segments)
    );
    let tracks = &segments[0].codecs.tracks;
    let codecs: Vec<_> = tracks
        .iter()
        .map(|t| t.codec_string().unwrap_or("?"))
        .collect();
    assert_eq!(codecs.len(), 2, "{codecs:?}");
    assert!(
        codecs[0].starts_with("avc1.") && codecs[1] == "mp4a.40.2",
        "{codecs:?}"
    );
    assert_eq!(
        tracks[0].video.as_ref().map(|v| (v.width, v.height)),
        Some((640, 360))
    );
    assert!(stats.bytes > 0);
}
