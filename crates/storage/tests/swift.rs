//! The conformance suite against a one-node Swift from Debian's packages,
//! natively (tempauth, SLO uploads) and through Swift's own S3 API (the
//! `s3api` middleware). One node is started for the whole binary: Swift's
//! Python servers take seconds to start.

use std::sync::Arc;

use bytes::Bytes;
use dvr_common::{SimulatedClock, UtcMs};
use dvr_storage::testsuite::{run_all, SuiteOptions};
use dvr_storage::{resolve, resolve_with_clock, Secret, Storage, StorageConfig, StorageUri};
use dvr_testkit::swift::SwiftNode;

fn swift_config(node: &SwiftNode) -> StorageConfig {
    let mut cfg = node.storage_config();
    cfg.retry.max_attempts = 2;
    cfg
}

fn s3api_config(node: &SwiftNode) -> StorageConfig {
    let mut cfg = node.s3api_storage_config();
    cfg.retry.max_attempts = 2;
    cfg
}

fn storage(uri: &str, cfg: &StorageConfig) -> Arc<dyn Storage> {
    resolve(&StorageUri::parse(uri).unwrap(), cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_natively_and_through_s3api_passes_the_conformance_suite() {
    let t0 = std::time::Instant::now();
    let lap = |what: &str| eprintln!("{what}: {:?}", t0.elapsed());
    let node = SwiftNode::start().await;
    lap("swift started");
    node.create_container("archive").await;
    node.create_container("s3bucket").await;
    lap("containers created");
    let cfg = swift_config(&node);

    // Native Swift, under a prefix and at the container root (where the
    // SLO segments live and must stay hidden).
    let s = storage("swift://archive/dvr", &cfg);
    s.check().await.expect("swift check");
    run_all(s.as_ref(), &SuiteOptions::quick("suite/")).await;
    lap("native suite under a prefix");
    let root = storage("swift://archive", &cfg);
    run_all(root.as_ref(), &SuiteOptions::quick("rootsuite/")).await;
    lap("native suite at the container root");
    // Deleting large objects removed their segments too.
    let (storage_url, token) = node.login().await;
    let left = reqwest::Client::new()
        .get(format!("{storage_url}/archive?prefix=.segments/"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(left.trim().is_empty(), "leaked SLO segments: {left}");

    // Start-up check: a missing container, a wrong key.
    let err = storage("swift://no-such-container/p", &cfg)
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("container does not exist") && err.contains("swift://no-such-container/p"),
        "{err}"
    );
    let mut wrong = cfg.clone();
    wrong.swift.key = Some(Secret::new("not-the-key"));
    let err = storage("swift://archive/p", &wrong)
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("access denied") && !err.contains("not-the-key"),
        "{err}"
    );

    // A token past its expiry is renewed before use.
    let clock = SimulatedClock::new(UtcMs(1_700_000_000_000));
    let timed = resolve_with_clock(
        &StorageUri::parse("swift://archive/dvr").unwrap(),
        &cfg,
        Arc::new(clock.clone()),
    )
    .unwrap();
    timed
        .put("renew/a", Bytes::from_static(b"a"))
        .await
        .unwrap();
    clock.advance_ms(2 * 86_400_000);
    assert_eq!(
        timed.get("renew/a").await.unwrap(),
        Bytes::from_static(b"a")
    );

    // A token the server no longer knows (401) is renewed and the request
    // repeated, for reads and for the custom Swift delete alike.
    node.revoke_tokens().await;
    assert_eq!(
        timed.get("renew/a").await.unwrap(),
        Bytes::from_static(b"a")
    );
    node.revoke_tokens().await;
    timed.delete("renew/a").await.unwrap();
    assert!(timed.stat("renew/a").await.unwrap().is_none());

    // A rejected static token is a clear denial, not a retry loop.
    let (storage_url, _) = node.login().await;
    let mut stale = StorageConfig::default();
    stale.swift.storage_url = Some(storage_url);
    stale.swift.token = Some(Secret::new("AUTH_tkstale0000"));
    let err = storage("swift://archive/dvr", &stale)
        .get("renew/a")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("access denied") && !err.contains("AUTH_tkstale0000"),
        "{err}"
    );

    // Swift's S3 API, against a container made through Swift.
    let s3 = storage("s3://s3bucket/dvr", &s3api_config(&node));
    s3.check().await.expect("s3api check");
    run_all(s3.as_ref(), &SuiteOptions::quick("suite/")).await;
    lap("s3api suite");
}
