//! `/metrics` of a real `dvr run`: every family the operator's alerts and
//! dashboards use is listed, and the counters move as the process works.
//!
//! Stream `live` plays the committed clip in real time, so ingest's
//! counters grow between two scrapes; stream `fast` reads it unpaced for
//! 30 passes (five minutes of tape in a moment), so the recorder closes
//! copy windows and writes chunks without waiting a real minute. `fast`
//! is protected by an allow list and a backend that cannot be reached, so
//! plays of it move the auth families. At the end, the sample alert rules
//! are checked against the families listed.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{
    free_tcp_port, get_with_head, header, start_dvr, testdata, wait_for, Procs,
    DISTRIBUTED_FAMILIES,
};

/// Every family a service must expose (name as written in the text).
const FAMILIES: &[&str] = &[
    "dvr_ingest_received_bytes",
    "dvr_ingest_bitrate_bits_per_second",
    "dvr_ingest_packets",
    "dvr_ingest_cc_errors",
    "dvr_ingest_source_switches",
    "dvr_ingest_signal_losses",
    "dvr_ingest_segments",
    "dvr_recorder_segments",
    "dvr_recorder_uploaded_bytes",
    "dvr_recorder_chunk_uploads",
    "dvr_recorder_chunk_upload_seconds",
    "dvr_recorder_upload_retries",
    "dvr_recorder_errors",
    "dvr_recorder_backlog_seconds",
    "dvr_recorder_copy_interval_seconds",
    "dvr_recorder_last_chunk_timestamp_seconds",
    "dvr_recorder_retention_deletions",
    "dvr_recorder_retention_deleted_bytes",
    "dvr_packager_requests",
    "dvr_packager_request_duration_seconds",
    "dvr_packager_sent_bytes",
    "dvr_packager_cache_lookups",
    "dvr_auth_decisions",
    "dvr_auth_backend_request_duration_seconds",
    "dvr_auth_open_sessions",
    "dvr_bus_publish_seconds",
];

/// One scrape: the content type and every sample, `name{labels}` → value.
fn scrape(port: u16) -> Option<(String, BTreeMap<String, f64>, String)> {
    let (status, head, body) = get_with_head(port, "/metrics");
    if status != 200 {
        return None;
    }
    let text = String::from_utf8(body).ok()?;
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect();
    Some((header(&head, "content-type")?.to_owned(), samples, text))
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in {samples:#?}"))
}

#[test]
fn metrics_list_every_family_and_counters_grow() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let clip = testdata("h264_aac_720p.ts");
    let config = dir.path().join("dvr.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nhttp: {{ listen: \"127.0.0.1:{http}\" }}\narchive: file://{root}/archive\n\
             auth_backends:\n  main: {{ allow: {{ token: [ \"tok1\" ] }}, backends: [ \"http://127.0.0.1:{dead}/auth\" ] }}\n\
             streams:\n  live:\n    inputs: [ \"file://{clip}?loop=true\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1m }}\n  \
             fast:\n    inputs: [ \"file://{clip}?loop=30&pace=false\" ]\n    \
             dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1m }}\n    \
             auth: \"auth://main\"\n",
            dead = free_tcp_port(),
            root = dir.path().display(),
            clip = clip.display(),
        ),
    )
    .unwrap();
    let _procs = Procs(vec![start_dvr(&config, &dir.path().join("data"))]);

    wait_for("/metrics", Duration::from_secs(30), || {
        scrape(http).is_some()
    });
    let (content_type, first, text) = scrape(http).unwrap();
    // The archive cache's family has fixed labels, so it is there at once.
    assert!(
        text.contains("# TYPE dvr_packager_cache_lookups counter"),
        "{text}"
    );
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let live = |name: &str| format!("{name}{{stream=\"live\"}}");

    // Ingest: the paced stream's counters grow between scrapes.
    wait_for(
        "ingest packets of stream live",
        Duration::from_secs(20),
        || {
            scrape(http)
                .is_some_and(|(_, s, _)| s.get(&live("dvr_ingest_packets_total")) > Some(&0.0))
        },
    );
    let (_, before, _) = scrape(http).unwrap();
    wait_for("ingest counters to grow", Duration::from_secs(20), || {
        scrape(http).is_some_and(|(_, s, _)| {
            value(&s, &live("dvr_ingest_packets_total"))
                > value(&before, &live("dvr_ingest_packets_total"))
                && value(&s, &live("dvr_ingest_received_bytes_total"))
                    > value(&before, &live("dvr_ingest_received_bytes_total"))
                && value(&s, &live("dvr_ingest_segments_total"))
                    > value(&before, &live("dvr_ingest_segments_total"))
        })
    });
    wait_for("a bitrate for stream live", Duration::from_secs(20), || {
        scrape(http)
            .is_some_and(|(_, s, _)| value(&s, &live("dvr_ingest_bitrate_bits_per_second")) > 0.0)
    });

    // Recorder: the unpaced stream's closed windows become chunks.
    let fast = |name: &str| format!("{name}{{stream=\"fast\"}}");
    let ok_uploads = "dvr_recorder_chunk_uploads_total{stream=\"fast\",result=\"ok\"}";
    let start_uploads = first.get(ok_uploads).copied().unwrap_or(0.0);
    wait_for("chunks of stream fast", Duration::from_secs(60), || {
        scrape(http).is_some_and(|(_, s, _)| s.get(ok_uploads).copied().unwrap_or(0.0) >= 2.0)
    });
    let (_, after, text) = scrape(http).unwrap();
    assert!(value(&after, ok_uploads) > start_uploads);
    assert!(value(&after, &fast("dvr_recorder_segments_total")) >= 2.0);
    assert!(value(&after, &fast("dvr_recorder_uploaded_bytes_total")) > 0.0);
    assert!(value(&after, &fast("dvr_recorder_chunk_upload_seconds_count")) >= 2.0);
    assert!(value(&after, &fast("dvr_recorder_last_chunk_timestamp_seconds")) > 1.7e9);
    assert_eq!(
        value(&after, &fast("dvr_recorder_copy_interval_seconds")),
        60.0
    );
    assert_eq!(
        value(
            &after,
            "dvr_recorder_chunk_uploads_total{stream=\"fast\",result=\"error\"}"
        ),
        0.0,
        "{text}"
    );

    // Packager: requests by form and status, and the bytes sent.
    let (status, _, body) = get_with_head(http, "/live/index.m3u8");
    assert_eq!(status, 200);
    assert_eq!(get_with_head(http, "/no-such-stream/index.m3u8").0, 404);
    let (_, s, _) = scrape(http).unwrap();
    assert!(
        value(
            &s,
            "dvr_packager_requests_total{form=\"live_playlist\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &s,
            "dvr_packager_requests_total{form=\"live_playlist\",status=\"404\"}"
        ) >= 1.0
    );
    assert!(
        value(&s, "dvr_packager_sent_bytes_total{form=\"live_playlist\"}") >= body.len() as f64
    );
    assert!(
        value(
            &s,
            "dvr_packager_request_duration_seconds_count{form=\"live_playlist\"}"
        ) >= 2.0
    );

    // Auth: a play without a token is refused by the default, one with
    // an allowed token opens a session, one with another token asks the
    // backend, which does not answer.
    assert_eq!(get_with_head(http, "/fast/index.m3u8").0, 403);
    assert_eq!(get_with_head(http, "/fast/index.m3u8?token=tok1").0, 200);
    assert_eq!(get_with_head(http, "/fast/index.m3u8?token=other").0, 403);
    let (_, s, text) = scrape(http).unwrap();
    let decisions = |decision: &str, by: &str| {
        value(
            &s,
            &format!(
                "dvr_auth_decisions_total{{stream=\"fast\",decision=\"{decision}\",by=\"{by}\"}}"
            ),
        )
    };
    assert_eq!(decisions("deny", "default"), 1.0, "{text}");
    assert_eq!(decisions("allow", "list"), 1.0, "{text}");
    assert_eq!(decisions("deny", "backend"), 1.0, "{text}");
    assert_eq!(value(&s, &fast("dvr_auth_open_sessions")), 1.0);
    assert_eq!(
        value(
            &s,
            "dvr_auth_backend_request_duration_seconds_count{result=\"no_data\"}"
        ),
        1.0
    );

    // Bus: the embedded live log's appends are timed.
    assert!(
        value(
            &s,
            "dvr_bus_publish_seconds_count{op=\"live_log_append\",backend=\"embedded\"}"
        ) >= 1.0
    );

    // Every family is listed once its first series exists: the ingest and
    // recorder ones when a stream starts, the packager's at its first
    // request.
    let (_, _, text) = scrape(http).unwrap();
    for family in FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "family {family} is not listed:\n{text}"
        );
    }
    alert_rules_name_exported_metrics(&text);
}

#[derive(serde::Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(serde::Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(serde::Deserialize)]
struct Rule {
    alert: String,
    expr: String,
    annotations: BTreeMap<String, String>,
}

/// Every `dvr_…` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("dvr_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The sample alert rules (docs/prometheus-rules.yaml) name only metrics
/// this scrape shows, or the bus's that only a process on NATS lists
/// (their tests check those): a renamed metric must not leave an alert
/// that can never fire.
fn alert_rules_name_exported_metrics(scraped: &str) {
    let families: Vec<&str> = scraped
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .chain(DISTRIBUTED_FAMILIES.iter().copied())
        .collect();
    let path = dvr_common::fuzz_corpus::repo_path("docs/prometheus-rules.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let file: RuleFile =
        dvr_common::config::from_yaml_str_as(&text, "docs/prometheus-rules.yaml").unwrap();
    let rules: Vec<&Rule> = file.groups.iter().flat_map(|g| &g.rules).collect();
    let alerts: Vec<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
    for required in [
        "DvrRecordingStopped",
        "DvrUploadBacklogGrowing",
        "DvrStorageErrors",
        "DvrNoPackagerReady",
    ] {
        assert!(alerts.contains(&required), "no {required} in {alerts:?}");
    }
    for rule in rules {
        assert!(rule.annotations.contains_key("summary"), "{}", rule.alert);
        for name in metric_names(&rule.expr) {
            // A sample's name is its family's plus a suffix the format adds.
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                families.contains(&family),
                "alert {} uses {name}, which /metrics does not list: {families:?}",
                rule.alert
            );
        }
    }
}
