//! Fixture-driven tests: every error names file, line, field and reason.

use super::*;

fn fixture(name: &str) -> String {
    let path = crate::fuzz_corpus::repo_path("crates/common/tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(name: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_str(&fixture(name), "config.yaml")
}

fn error_of(text: &str) -> String {
    match Config::from_yaml_str(text, "config.yaml") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn name(s: &str) -> StreamName {
    StreamName::new(s).unwrap()
}

#[test]
fn the_issue_example_reads_as_written() {
    let c = load("issue_example.yaml").unwrap();
    assert_eq!(c.http.listen, default_listen());
    assert_eq!(c.archive.as_deref(), Some("file:///var/lib/dvr"));
    let ort = &c.streams[&name("ort")];
    assert_eq!(ort.inputs.len(), 2);
    let dvr = ort.dvr.as_ref().unwrap();
    assert_eq!(dvr.root, "file:///var/lib/dvr");
    assert_eq!(dvr.depth_ms, Some(7 * 86_400_000));
    assert_eq!(dvr.segment_duration_ms, 2_000);
    assert_eq!(dvr.copy_interval_ms, 3_600_000);
    let news = c.streams[&name("news")].dvr.as_ref().unwrap();
    assert_eq!(news.depth_ms, Some(3 * 86_400_000));
    assert_eq!(news.max_size_bytes, Some(10 << 30));
    assert_eq!(c.recorded_streams().count(), 2);
}

#[test]
fn the_full_config_reads_every_field() {
    let c = load("full.yaml").unwrap();
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:9090");
    let ort = c.streams[&name("ort")].dvr.clone().unwrap();
    assert_eq!(
        ort,
        DvrConfig {
            root: "swift://archive/tv".into(),
            depth_ms: Some(7 * 86_400_000),
            segment_duration_ms: 4_000,
            copy_interval_ms: 600_000,
            max_size_bytes: Some(500 << 30),
            max_disk_usage_percent: None,
            schedule: Some(Schedule {
                intervals: vec![(480, 960), (1320, 90)]
            }),
            enabled: true,
            replicate_rate: None,
        }
    );
    let news = c.streams[&name("news/hd")].dvr.clone().unwrap();
    assert_eq!(news.root, "file:///storage");
    assert_eq!(news.max_disk_usage_percent, Some(90));
    assert!(c.streams[&name("ort-1h")].dvr.is_none());
    let demo = &c.streams[&name("demo")];
    assert_eq!(demo.dvr.as_ref().unwrap().root, "s3://tv-archive/dvr");
    assert!(matches!(
        demo.inputs[0],
        InputUrl::File { passes: None, .. }
    ));
}

#[test]
fn a_wrong_key_names_line_stream_and_key() {
    let e = load("wrong_key.yaml").unwrap_err();
    assert_eq!(e.line, Some(7));
    assert_eq!(
        e.to_string(),
        "config.yaml line 7: streams.ort.dvr: unknown field `dpeth`, expected one of root, depth, segment_duration, copy_interval, max_size, max_disk_usage, schedule, enabled, replicate, replicate_rate"
    );
}

#[test]
fn a_bad_duration_names_line_field_and_reason() {
    let e = load("bad_duration.yaml").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"config.yaml line 7: streams.ort.dvr.depth: invalid duration "7x": unknown unit"#
    );
}

#[test]
fn a_bad_stream_name_is_refused() {
    let e = load("bad_stream_name.yaml").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"config.yaml line 6: streams.../etc: invalid stream name "../etc": '.' and '..' are not allowed as components"#
    );
}

#[test]
fn semantic_errors() {
    let base =
        "version: 1\narchive: file:///a\nstreams:\n  s:\n    inputs: [\"udp://1.2.3.4:5\"]\n";
    assert_eq!(
        error_of(&format!("{base}    dvr: {{ copy_interval: 7m }}\n")),
        "config.yaml line 6: streams.s.dvr.copy_interval: 420000 ms does not divide the hour evenly (use 1m, 2m, 5m, 10m, 15m, 20m, 30m, 1h…)"
    );
    assert_eq!(
        error_of(&format!("{base}    dvr: {{ segment_duration: 20s }}\n")),
        "config.yaml line 6: streams.s.dvr.segment_duration: 20000 ms is outside 500ms..10s"
    );
    assert_eq!(
        error_of(&format!("{base}    dvr: \"/storage 3d replicate\"\n")),
        "config.yaml line 4: streams.s.dvr.replicate: replication copies another origin's archive: the stream needs m4f:// inputs"
    );
    assert_eq!(
        error_of(&format!("{base}    dvr: {{ replicate_rate: 10M }}\n")),
        "config.yaml line 6: streams.s.dvr.replicate_rate: a replication rate without replicate: add `replicate` (the line) or `replicate: true`"
    );
    assert_eq!(
        error_of(&format!(
            "{base}    dvr: {{ replicate: true, replicate_rate: 100K }}\n"
        )),
        "config.yaml line 6: streams.s.dvr.replicate_rate: \"100K\" a second is below 1M: a backfill that slow never catches up"
    );
    // Accepted means applied: what the DVR does not do is refused.
    assert_eq!(
        error_of(&format!(
            "{base}    dvr: \"/storage 3d schedule=8:00-8:00\"\n"
        )),
        r#"config.yaml line 6: streams.s.dvr: dvr token "schedule=8:00-8:00": interval "8:00-8:00" is empty"#
    );
    assert_eq!(
        error_of(&format!("{base}    dvr: \"/storage copy=s3://b/tv 3d\"\n")),
        r#"config.yaml line 6: streams.s.dvr: dvr token "copy=s3://b/tv": a local spool copied to another root is not supported: give that root as the path (`URI 3d …`); the recorder writes it directly"#
    );
    assert_eq!(
        error_of(&format!("{base}    dvr: {{ root: s3://b/tv, max_disk_usage: 90% }}\n")),
        "config.yaml line 6: streams.s.dvr.max_disk_usage: a disk-usage limit needs a file:// root, and s3://b/tv is an object store (no disk to measure): use max_size"
    );
    assert_eq!(
        error_of(&format!("{base}    dvr: {{ max_size: 10X }}\n")),
        r#"config.yaml line 6: streams.s.dvr.max_size: invalid size "10X": unknown unit (use K, M, G or T)"#
    );
    assert_eq!(
        error_of("version: 2\n"),
        "config.yaml line 1: version: unsupported version 2 (this build reads version 1)"
    );
    assert_eq!(
        error_of("version: 1\nstreams:\n  s:\n    inputs: []\n"),
        "config.yaml line 4: streams.s.inputs: at least one input is needed"
    );
    assert_eq!(
        error_of("version: 1\nstreams:\n  s:\n    inputs: [\"rtmp://x/y\"]\n"),
        r#"config.yaml line 4: streams.s.inputs[0]: invalid input URL "rtmp://x/y": RTMP is not pulled: encoders publish to the rtmp.listen address, into a stream with a publish:// input"#
    );
    assert_eq!(
        error_of("version: 1\nstreams:\n  s:\n    inputs: [\"hls://h/x.m3u8?bandwith=min\"]\n"),
        r#"config.yaml line 4: streams.s.inputs[0]: invalid input URL "hls://h/x.m3u8?bandwith=min": unknown option "bandwith" (known: bandwidth, pdt; origin query parameters need the http(s):// form)"#
    );
    assert_eq!(
        error_of("version: 1\nstreams:\n  s:\n    inputs: [\"udp://1.2.3.4:5\"]\n    dvr: 3d\n"),
        r#"config.yaml line 5: streams.s.dvr: archive root "3d" is neither an absolute path nor a file://, s3://, swift:// or memory:// URI"#
    );
    assert_eq!(
        error_of("version: 1\nstreams:\n  s:\n    inputs: [\"udp://1.2.3.4:5\"]\n    dvr: { depth: 1d }\n"),
        "config.yaml line 5: streams.s.dvr: no archive root: set `root` here or `archive` at the top"
    );
    assert_eq!(
        error_of("version: 1\nstreams:\n  d:\n    inputs: [\"timeshift://s/60\"]\n"),
        r#"config.yaml line 3: streams.d.inputs[0]: timeshift source "s" is not a configured stream with dvr"#
    );
}

#[test]
fn shape_errors_carry_the_line() {
    let e = Config::from_yaml_str("streams: {}\n", "c.yaml").unwrap_err();
    assert_eq!(e.to_string(), "c.yaml line 1: missing field `version`");
    let e =
        Config::from_yaml_str("version: 1\nhttp: { listen: 5, port: 1 }\n", "c.yaml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "c.yaml line 2: http: unknown field `port`, expected one of listen, trust_forwarded_for, trusted_proxies, max_connections, max_requests, max_requests_per_client, header_read_timeout, write_stall_timeout"
    );
}

#[test]
fn yaml_path_heuristic() {
    let text = "a:\n  b:\n    c: 1\n    d: { e: 1 }\n  f: 2\n";
    assert_eq!(yaml_path_at_line(text, 3), "a.b.c");
    assert_eq!(yaml_path_at_line(text, 4), "a.b.d");
    assert_eq!(yaml_path_at_line(text, 5), "a.f");
    assert_eq!(yaml_path_at_line(text, 99), "a.f");
}

/// `storage:` belongs to the storage crate: this crate accepts it unread,
/// still refuses misspelled top-level keys, and reads it on request with
/// the same error form.
#[test]
fn a_section_owned_by_another_crate() {
    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct S3 {
        #[serde(default)]
        endpoint: Option<String>,
    }
    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Storage {
        #[serde(default)]
        s3: S3,
    }
    #[derive(Debug, serde::Deserialize)]
    struct Sections {
        #[serde(default)]
        storage: Storage,
    }
    let text = "version: 1\nstorage:\n  s3:\n    endpoint: http://127.0.0.1:9000\nstreams: {}\n";
    Config::from_yaml_str(text, "c.yaml").unwrap();
    let s: Sections = from_yaml_str_as(text, "c.yaml").unwrap();
    assert_eq!(
        s.storage.s3.endpoint.as_deref(),
        Some("http://127.0.0.1:9000")
    );
    let s: Sections = from_yaml_str_as("version: 1\n", "c.yaml").unwrap();
    assert!(s.storage.s3.endpoint.is_none());

    let typo = "version: 1\nstorge:\n  s3: {}\n";
    assert!(error_of(typo).starts_with("config.yaml line 2: unknown field `storge`"));
    let wrong = "version: 1\nstorage:\n  s3:\n    endpont: http://x\n";
    Config::from_yaml_str(wrong, "c.yaml").unwrap();
    let e = from_yaml_str_as::<Sections>(wrong, "c.yaml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "c.yaml line 4: storage.s3: unknown field `endpont`, expected one of endpoint"
    );
}

#[test]
fn cache_and_packager_settings_in_both_spellings() {
    let c = Config::from_yaml_str(
        "version: 1\narchive: s3://tv/dvr\npackager: { memory_cache: 1G, export_retention: 2d }\nstreams:\n  ort:\n    inputs: [ \"udp://239.0.0.1:1234\" ]\n    dvr: { depth: 7d }\n    cache: \"/mount/ssd1 3d 50G\"\n  news:\n    inputs: [ \"udp://239.0.0.2:1234\" ]\n    dvr: { depth: 1d }\n    cache: { path: /ssd, max_size: 2G, depth: 2d, misses: 3 }\n",
        "config.yaml",
    )
    .unwrap();
    assert_eq!(c.packager.memory_cache_bytes, 1 << 30);
    assert_eq!(c.packager.export_retention_ms, 2 * 86_400_000);
    let ort = c.streams[&name("ort")].cache.clone().unwrap();
    assert_eq!(
        (
            ort.path.as_str(),
            ort.depth_ms,
            ort.max_size_bytes,
            ort.misses
        ),
        ("/mount/ssd1", Some(3 * 86_400_000), 50 << 30, 1)
    );
    let news = c.streams[&name("news")].cache.clone().unwrap();
    assert_eq!((news.max_size_bytes, news.misses), (2 << 30, 3));
    let plain = load("issue_example.yaml").unwrap();
    assert_eq!(plain.packager, PackagerSettings::default());
    assert!(plain.streams.values().all(|s| s.cache.is_none()));
}

#[test]
fn cache_errors_name_line_and_field() {
    let live = "version: 1\nstreams:\n  ort:\n    inputs: [ \"udp://239.0.0.1:1234\" ]\n";
    assert_eq!(
        error_of(&format!("{live}    cache: /ssd\n")),
        "config.yaml line 5: streams.ort.cache: a cache needs dvr: it caches the stream's archive"
    );
    let base = "version: 1\narchive: s3://tv/dvr\nstreams:\n  ort:\n    inputs: [ \"udp://239.0.0.1:1234\" ]\n    dvr: { depth: 1d }\n";
    assert_eq!(
        error_of(&format!("{base}    cache: {{ path: ssd, max_size: 2G }}\n")),
        r#"config.yaml line 7: streams.ort.cache.path: cache path "ssd" must be an absolute local directory"#
    );
    assert_eq!(
        error_of(&format!("{base}    cache: \"/ssd 3d huge\"\n")),
        r#"config.yaml line 7: streams.ort.cache: unknown cache token "huge""#
    );
    assert!(
        error_of(&format!("{base}    cache: {{ path: /ssd, size: 2G }}\n"))
            .contains("unknown field")
    );
    assert_eq!(
        error_of(&format!("{base}packager: {{ memory_cache: lots }}\n")),
        r#"config.yaml line 7: packager.memory_cache: invalid size "lots": no number"#
    );
    assert!(
        error_of(&format!("{base}packager: {{ export_retention: 0s }}\n"))
            .contains("packager.export_retention: must be positive"),
    );
    assert!(
        error_of(&format!("{base}packager: {{ export_retention: soon }}\n"))
            .contains("line 7: packager.export_retention")
    );
}

#[test]
fn auth_policies_read_as_the_seeds_write_them() {
    let c = load("auth.yaml").unwrap();
    assert_eq!(c.http.trusted_proxies.len(), 2);
    assert!(c.http.trusted_proxies[0].contains("10.1.2.3".parse().unwrap()));
    let main = &c.auth_backends["main"];
    assert_eq!(main.allow.ip.len(), 2);
    assert!(main.allow.ip[1].contains("172.16.0.9".parse().unwrap()));
    assert_eq!(main.allow.token[0].expose(), "flusstest1");
    assert_eq!(main.deny.ua, ["BadBot/1.0"]);
    assert_eq!(
        main.backends[0].url,
        "http://stalker-1.iptv.example/auth.php"
    );
    assert!(!main.allow_default);
    assert!(c.auth_backends["blacklist"].allow_default);
    assert_eq!(
        c.auth_of(&name("ort")),
        Some(&AuthSpec::Named("main".into()))
    );
    match c.auth_of(&name("news")) {
        Some(AuthSpec::SecureToken { secret, hmac }) => {
            assert_eq!((secret.expose(), *hmac), ("SECRETKEY", false));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.auth_of(&name("hmac")),
        Some(AuthSpec::SecureToken { hmac: true, .. })
    ));
    assert!(matches!(
        c.auth_of(&name("cam")),
        Some(AuthSpec::Backend(BackendUrl {
            soft_limitation: true,
            ..
        }))
    ));
    assert_eq!(c.auth_of(&name("open")), None, "none turns the default off");
    assert_eq!(
        c.auth_of(&name("plain")),
        Some(&AuthSpec::Named("main".into())),
        "the global default"
    );
    let shown = format!("{c:?}");
    for secret in ["SECRETKEY", "HMACKEY", "flusstest1"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn auth_errors_name_line_and_field() {
    let base = "version: 1\nstreams:\n  s:\n    inputs: [\"udp://1.2.3.4:5\"]\n";
    assert_eq!(
        error_of(&format!("{base}    auth: auth://nope\n")),
        "config.yaml line 5: streams.s.auth: auth://nope: no such entry in auth_backends"
    );
    assert_eq!(
        error_of(&format!("{base}    auth: ftp://x\n")),
        "config.yaml line 5: streams.s.auth: unknown auth form (use auth://NAME, securetoken://SECRET, securetoken-hmac://SECRET, http(s)://URL or none)"
    );
    let backends = "version: 1\nauth_backends:\n  main:\n";
    assert_eq!(
        error_of(&format!(
            "{backends}    allow: {{ ip: [ \"10.0.0.1/40\" ] }}\n"
        )),
        r#"config.yaml line 4: auth_backends.main.allow.ip[0]: invalid address or network "10.0.0.1/40": the prefix length is too long"#
    );
    assert_eq!(
        error_of(&format!("{backends}    backends: [ \"ftp://x/auth\" ]\n")),
        r#"config.yaml line 4: auth_backends.main.backends[0]: auth backend "ftp://x/auth" is not an http:// or https:// URL"#
    );
    assert_eq!(
        error_of(&format!("{backends}    default: maybe\n")),
        r#"config.yaml line 4: auth_backends.main.default: default is allow or deny, not "maybe""#
    );
    assert!(
        error_of(&format!("{backends}    allow: {{ country: [ RU ] }}\n"))
            .starts_with("config.yaml line 4: auth_backends.main.allow: unknown field `country`")
    );
    assert_eq!(
        error_of("version: 1\nauth: auth://x\n"),
        "config.yaml line 2: auth: auth://x: no such entry in auth_backends"
    );
}

#[test]
fn http_limits_have_safe_defaults_and_are_checked() {
    let c = Config::from_yaml_str("version: 1\n", "c.yaml").unwrap();
    assert_eq!(c.http.limits, HttpLimits::default());
    assert!(c.http.trusted_proxies.is_empty());
    assert_eq!(c.packager.max_paced_streams, 5000);
    assert_eq!(c.packager.max_paced_streams_per_client, 16);
    let c = Config::from_yaml_str(
        "version: 1\nhttp:\n  trusted_proxies: [ \"10.0.0.0/8\" ]\n  max_connections: 5\n  max_requests: 4\n  max_requests_per_client: 2\n  header_read_timeout: 2s\n  write_stall_timeout: 500ms\npackager: { max_paced_streams: 3, max_paced_streams_per_client: 1 }\n",
        "c.yaml",
    )
    .unwrap();
    let l = c.http.limits;
    assert_eq!(
        (l.max_connections, l.max_requests, l.max_requests_per_client),
        (5, 4, 2)
    );
    assert_eq!(
        (l.header_read_timeout_ms, l.write_stall_timeout_ms),
        (2000, 500)
    );
    assert_eq!(c.packager.max_paced_streams_per_client, 1);
    assert_eq!(
        (
            c.packager.preview_decoder.as_str(),
            c.packager.preview_workers,
            c.packager.preview_queue
        ),
        ("dvr-preview-decoder", 2, 32)
    );
    let c = Config::from_yaml_str(
        "version: 1\npackager: { preview_decoder: /opt/dvr/bin/dvr-preview-decoder, preview_workers: 4, preview_queue: 0 }\n",
        "c.yaml",
    )
    .unwrap();
    assert_eq!(
        (
            c.packager.preview_decoder.as_str(),
            c.packager.preview_workers,
            c.packager.preview_queue
        ),
        ("/opt/dvr/bin/dvr-preview-decoder", 4, 0)
    );
    let error_of = |yaml: &str| {
        Config::from_yaml_str(&format!("version: 1\n{yaml}"), "c.yaml")
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        error_of("http: { trust_forwarded_for: true }\n"),
        "c.yaml line 2: http.trust_forwarded_for: replaced by http.trusted_proxies: list the addresses of the proxies whose X-Forwarded-For to believe"
    );
    assert_eq!(
        error_of("packager: { preview_workers: 0 }\n"),
        "c.yaml line 2: packager.preview_workers: must be at least 1"
    );
    assert_eq!(
        error_of("packager: { preview_decoder: \" \" }\n"),
        "c.yaml line 2: packager.preview_decoder: expected the path or name of the dvr-preview-decoder program"
    );
    assert_eq!(
        error_of("packager: { ffmpeg: /usr/bin/ffmpeg }\n"),
        "c.yaml line 2: packager.ffmpeg: replaced by packager.preview_decoder: JPEG previews are decoded by dvr-preview-decoder (libavcodec), not an ffmpeg process"
    );
    assert_eq!(
        error_of("http: { max_requests: 0 }\n"),
        "c.yaml line 2: http.max_requests: must be at least 1"
    );
    assert_eq!(
        error_of("http: { header_read_timeout: 1ms }\n"),
        "c.yaml line 2: http.header_read_timeout: must be between 100ms and 1h"
    );
    assert_eq!(
        error_of("http: { trusted_proxies: [ \"10.0.0.0/99\" ] }\n"),
        "c.yaml line 2: http.trusted_proxies[0]: invalid address or network \"10.0.0.0/99\": the prefix length is too long"
    );
    assert_eq!(
        error_of("packager: { max_paced_streams_per_client: 0 }\n"),
        "c.yaml line 2: packager.max_paced_streams_per_client: must be at least 1"
    );
}

#[test]
fn publish_inputs_need_the_rtmp_listener() {
    let text = "version: 1\nrtmp: { listen: \"127.0.0.1:1935\" }\nstreams:\n  studio:\n    inputs: [ \"publish://\", \"udp://239.0.0.1:1234\" ]\n";
    let c = Config::from_yaml_str(text, "config.yaml").unwrap();
    assert_eq!(
        c.rtmp.map(|r| r.listen.to_string()).as_deref(),
        Some("127.0.0.1:1935")
    );
    assert_eq!(c.streams[&name("studio")].inputs[0], InputUrl::Publish);
    assert!(Config::from_yaml_str("version: 1\n", "c")
        .unwrap()
        .rtmp
        .is_none());
    assert_eq!(
        error_of("version: 1\nstreams:\n  studio:\n    inputs: [ \"udp://239.0.0.1:1\", \"publish://\" ]\n"),
        "config.yaml line 3: streams.studio.inputs[1]: publish:// needs the RTMP listener: set rtmp: { listen: \"0.0.0.0:1935\" }"
    );
    assert_eq!(
        error_of("version: 1\nrtmp: { listen: \"0.0.0.0\" }\n"),
        "config.yaml line 2: rtmp.listen: \"0.0.0.0\" is not an address:port"
    );
    assert!(error_of(
        "version: 1\nrtmp: { listen: \"0.0.0.0:1935\" }\nstreams:\n  s:\n    inputs: [ \"publish://\", \"publish://\" ]\n"
    )
    .contains("streams.s.inputs[1]: a stream takes publishes once"));
    assert!(error_of("version: 1\nrtmp: { port: 1935 }\n").contains("rtmp"));
}

#[test]
fn srt_inputs_parse_with_every_option_applied_and_the_passphrase_masked() {
    let srt = |s: &str| match s.parse::<InputUrl>() {
        Ok(InputUrl::Srt(srt)) => srt,
        other => panic!("{s}: {other:?}"),
    };
    let caller = srt("srt://encoder.example:9000");
    assert_eq!(
        (caller.host.as_str(), caller.port, caller.mode),
        ("encoder.example", 9000, SrtMode::Caller)
    );
    assert_eq!(
        (caller.stream_id, caller.passphrase, caller.latency_ms),
        (None, None, None)
    );
    let written = "srt://0.0.0.0:9000?mode=listener&streamid=%23!::r%3Dort&passphrase=correct%20horse&latency=250";
    let listener = srt(written);
    assert_eq!(listener.mode, SrtMode::Listener);
    assert_eq!(listener.stream_id.as_deref(), Some("#!::r=ort"));
    assert_eq!(listener.passphrase.as_deref(), Some("correct horse"));
    assert_eq!(listener.latency_ms, Some(250));
    let url = InputUrl::Srt(listener.clone());
    // Written back with the secret (the config round trip), shown without.
    assert_eq!(
        url.written(),
        "srt://0.0.0.0:9000?mode=listener&streamid=%23!::r=ort&passphrase=correct%20horse&latency=250"
    );
    assert_eq!(url.written().parse::<InputUrl>().unwrap(), url);
    let shown = url.to_string();
    assert!(!shown.contains("horse"), "{shown}");
    assert!(shown.contains("passphrase=***"), "{shown}");
    assert!(!format!("{url:?}").contains("horse"));
    // `srt://:PORT` listens on every address.
    assert_eq!(srt("srt://:9000?mode=listener").host, "0.0.0.0");
    assert_eq!(srt("srt://[::1]:9000").host, "::1");

    for (bad, why) in [
        (
            "srt://h:9000?mode=rendezvous",
            "mode=rendezvous: expected caller or listener",
        ),
        (
            "srt://h:9000?pbkeylen=16",
            "unknown option \"pbkeylen\" (known: mode, streamid, passphrase, latency)",
        ),
        (
            "srt://h:9000?passphrase=short",
            "passphrase is 5 bytes: SRT takes 10 to 79",
        ),
        (
            "srt://h:9000?latency=2.5",
            "latency=2.5: expected milliseconds from 0 to 60000",
        ),
        (
            "srt://h:9000?latency=120&latency=200",
            "option \"latency\" is given twice",
        ),
        ("srt://h:9000?streamid=", "streamid is 0 bytes"),
        ("srt://h:9000/live", "no path"),
        ("srt://:9000", "missing host"),
        ("srt://h", "missing :port"),
    ] {
        let e = bad.parse::<InputUrl>().unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    let long = format!("srt://h:9000?passphrase={}", "x".repeat(80));
    let e = long.parse::<InputUrl>().unwrap_err().to_string();
    assert!(
        e.contains("passphrase is 80 bytes") && !e.contains("xxxxxxxxxx"),
        "{e}"
    );
    let e = "srt://h:9000?passphrase=hunter2hunter2&mode=x"
        .parse::<InputUrl>()
        .unwrap_err()
        .to_string();
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn srt_listeners_sharing_a_port_are_routed_by_distinct_stream_ids() {
    let two = |a: &str, b: &str| {
        format!(
            "version: 1\nstreams:\n  a:\n    inputs: [ \"{a}\" ]\n  b:\n    inputs: [ \"{b}\" ]\n"
        )
    };
    let ok = two(
        "srt://:9000?mode=listener&streamid=a",
        "srt://:9000?mode=listener&streamid=b",
    );
    Config::from_yaml_str(&ok, "config.yaml").unwrap();
    // Callers to different ports, or a caller and a listener, never clash.
    Config::from_yaml_str(
        &two("srt://:9000?mode=listener", "srt://:9001?mode=listener"),
        "c",
    )
    .unwrap();
    Config::from_yaml_str(&two("srt://h:9000", "srt://h:9000"), "c").unwrap();
    assert_eq!(
        error_of(&two(
            "srt://:9000?mode=listener",
            "srt://:9000?mode=listener&streamid=b"
        )),
        "config.yaml line 5: streams.b.inputs[0]: SRT port 9000 has several streams: each needs its own streamid= (a stream without one takes every caller, so it must be alone on its port) (also streams.a.inputs[0])"
    );
    assert!(error_of(&two(
        "srt://:9000?mode=listener&streamid=x",
        "srt://:9000?mode=listener&streamid=x"
    ))
    .contains("streamid \"x\" is taken by another stream"));
    assert!(error_of(&two(
        "srt://:9000?mode=listener&streamid=a&latency=200",
        "srt://:9000?mode=listener&streamid=b"
    ))
    .contains("streams sharing a port share its latency: the default and 200 ms"));
}

#[test]
fn the_cluster_key_is_kept_as_a_secret_and_an_empty_one_refused() {
    let base = "version: 1\nstreams: {}\n";
    let c = Config::from_yaml_str(
        &format!("{base}cluster_key: \"${{DVR_CLUSTER_KEY}}\"\n"),
        "config.yaml",
    )
    .unwrap();
    let key = c.cluster_key.unwrap();
    assert_eq!(key.expose(), "${DVR_CLUSTER_KEY}");
    assert_eq!(format!("{key:?}"), "Secret(***)");
    assert!(Config::from_yaml_str(base, "config.yaml")
        .unwrap()
        .cluster_key
        .is_none());
    assert_eq!(
        error_of(&format!("{base}cluster_key: \" \"\n")),
        "config.yaml line 3: cluster_key: an empty cluster key signs nothing"
    );
}

#[test]
fn m4f_inputs_need_the_cluster_key_and_stand_alone() {
    let stream = |inputs: &str| format!("version: 1\nstreams:\n  ch1:\n    inputs: [ {inputs} ]\n");
    let key = "cluster_key: \"${DVR_CLUSTER_KEY}\"\n";
    let two = "\"m4f://a.example:8080/ch1\", \"m4fs://b.example/ch1\"";
    let c = Config::from_yaml_str(&format!("{}{key}", stream(two)), "config.yaml").unwrap();
    assert_eq!(c.streams[&name("ch1")].inputs.len(), 2);
    assert_eq!(
        error_of(&stream(two)),
        "config.yaml line 3: streams.ch1.inputs: m4f:// needs cluster_key: the origins of a cluster sign their requests with it"
    );
    let mixed = "\"m4f://a.example:8080/ch1\", \"udp://239.0.0.1:1234\"";
    assert!(error_of(&format!("{}{key}", stream(mixed))).contains("cannot be mixed"));
}

#[test]
fn sources_read_with_their_filters_and_extra_dvr() {
    let text = "version: 1\narchive: file:///var/lib/dvr\ncluster_key: \"${K}\"\nstreams: {}\n\
                sources:\n  - url: http://origin-a.example:8080\n    only: [ \"ch*\", \"sport/*\" ]\n    \
                except: [ \"ch-test\" ]\n    dvr: { depth: 3d }\n  - url: https://origin-b.example/\n";
    let c = Config::from_yaml_str(text, "config.yaml").unwrap();
    assert_eq!(c.sources.len(), 2);
    let (a, b) = (&c.sources[0], &c.sources[1]);
    assert_eq!(a.url, "http://origin-a.example:8080/");
    assert_eq!(b.url, "https://origin-b.example/");
    assert_eq!(a.dvr.as_ref().unwrap().depth_ms, Some(3 * 86_400_000));
    assert_eq!(a.dvr.as_ref().unwrap().root, "file:///var/lib/dvr");
    assert!(b.dvr.is_none());
    for (name, taken) in [
        ("ch1", Some(Taken::Static)),
        ("ch-test", None),
        ("sport/hd", Some(Taken::Static)),
        ("news", Some(Taken::OnDemand)),
    ] {
        assert_eq!(a.takes(name), taken, "{name}");
        assert_eq!(
            b.takes(name),
            Some(Taken::Static),
            "without only, {name} is static"
        );
    }
    assert_eq!(
        a.input(&name("ch1")).to_string(),
        "m4f://origin-a.example:8080/ch1"
    );
    assert_eq!(
        b.input(&name("ch1")).to_string(),
        "m4fs://origin-b.example/ch1"
    );

    let base = "version: 1\nstreams: {}\n";
    assert_eq!(
        error_of(&format!("{base}sources: [ {{ url: \"http://a:1\" }} ]\n")),
        "config.yaml line 3: sources: sources need cluster_key: the origins of a cluster sign their requests with it"
    );
    let keyed = format!("{base}cluster_key: \"${{K}}\"\n");
    assert!(
        error_of(&format!("{keyed}sources: [ {{ url: \"ftp://a\" }} ]\n"))
            .contains("sources[0].url: \"ftp://a\" is not an origin")
    );
    assert!(
        error_of(&format!("{keyed}sources: [ {{ url: \"http://a/x\" }} ]\n"))
            .contains("is not an origin")
    );
    assert!(error_of(&format!(
        "{keyed}sources: [ {{ url: \"http://a\", only: [ \"c h\" ] }} ]\n"
    ))
    .contains("sources[0].only[0]"));
    assert!(error_of(&format!(
        "{keyed}sources: [ {{ url: \"http://a\", backups: [] }} ]\n"
    ))
    .contains("backups"));
}

#[test]
fn wildcards_match_any_run_of_characters() {
    for (pattern, name, want) in [
        ("ch*", "ch1", true),
        ("ch*", "ch", true),
        ("ch*", "news", false),
        ("*", "a/b", true),
        ("sport/*", "sport/hd", true),
        ("sport/*", "sports", false),
        ("*hd", "news/hd", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ] {
        assert_eq!(wildcard_match(pattern, name), want, "{pattern} {name}");
    }
}

#[test]
fn on_demand_streams_run_for_a_while_after_their_last_request() {
    let stream = |on_demand: &str| {
        let text = format!(
            "version: 1\nstreams:\n  cam:\n    inputs: [ \"udp://239.0.0.1:1234\" ]\n    on_demand: {on_demand}\n"
        );
        Config::from_yaml_str(&text, "config.yaml").map(|c| c.streams[&name("cam")].on_demand_ms)
    };
    assert_eq!(stream("true").unwrap(), Some(DEFAULT_ON_DEMAND_MS));
    assert_eq!(stream("false").unwrap(), None);
    assert_eq!(stream("90s").unwrap(), Some(90_000));
    for (bad, says) in [
        ("soon", "true, false"),
        ("500ms", "out of range"),
        ("2h", "out of range"),
    ] {
        let err = stream(bad).unwrap_err().to_string();
        assert!(
            err.contains("streams.cam.on_demand") && err.contains(says),
            "{bad}: {err}"
        );
    }
    let delayed = error_of(
        "version: 1\narchive: file:///a\nstreams:\n  src:\n    inputs: [ \"udp://239.0.0.1:1234\" ]\n    dvr: { depth: 1d }\n  \
         late:\n    inputs: [ \"timeshift://src/3600\" ]\n    on_demand: true\n",
    );
    assert!(
        delayed.contains("streams.late.on_demand") && delayed.contains("no ingest"),
        "{delayed}"
    );
}
