//! The conformance suite and the fault tests against a real S3 server:
//! `s3s-fs` 0.14.1, which checks SigV4 signatures, started on a loopback
//! port for this test binary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dvr_storage::testsuite::{run_all, SuiteOptions};
use dvr_storage::{resolve, Secret, Storage, StorageConfig, StorageError, StorageUri};
use dvr_testkit::process::free_port;
use dvr_testkit::s3::{S3sFs, S3_SECRET_KEY};

/// The server's config, with retries quick enough for the fault tests.
fn config(server: &S3sFs) -> StorageConfig {
    let mut cfg = server.storage_config();
    cfg.retry.initial_backoff_ms = 50;
    cfg.retry.max_backoff_ms = 500;
    cfg
}

fn storage(uri: &str, cfg: &StorageConfig) -> Arc<dyn Storage> {
    resolve(&StorageUri::parse(uri).unwrap(), cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3s_fs_passes_the_conformance_suite() {
    let server = S3sFs::start(&["archive"]).await;
    let cfg = config(&server);
    let s = storage("s3://archive/dvr/root", &cfg);
    s.check().await.expect("check");
    let opts = SuiteOptions {
        many_keys: 1100,
        ..SuiteOptions::quick("suite/")
    };
    run_all(s.as_ref(), &opts).await;
    // The prefix of the URI is where the objects really are.
    s.put("ch1/locks.json", Bytes::from_static(b"[]"))
        .await
        .unwrap();
    let bucket_root = storage("s3://archive", &cfg);
    assert!(bucket_root
        .stat("dvr/root/ch1/locks.json")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_missing_bucket_bad_credentials_and_a_dead_endpoint() {
    let server = S3sFs::start(&["archive"]).await;
    let cfg = config(&server);

    let err = storage("s3://no-such-bucket/p", &cfg)
        .check()
        .await
        .unwrap_err();
    let line = err.to_string();
    assert!(
        line.contains("s3://no-such-bucket/p") && line.contains("does not exist"),
        "{line}"
    );

    let mut wrong = cfg.clone();
    wrong.s3.secret_access_key = Some(Secret::new("wrong-secret-value"));
    let err = storage("s3://archive/p", &wrong).check().await.unwrap_err();
    let line = err.to_string();
    assert!(line.contains("access denied"), "{line}");
    assert!(
        !line.contains("wrong-secret-value") && !line.contains(S3_SECRET_KEY),
        "{line}"
    );

    let mut dead = cfg.clone();
    dead.s3.endpoint = Some(format!("http://127.0.0.1:{}", free_port()));
    let err = storage("s3://archive/p", &dead).check().await.unwrap_err();
    let line = err.to_string();
    assert!(line.contains("cannot reach the endpoint"), "{line}");
    assert!(!line.contains('\n'), "one line: {line}");
}

/// The server goes away: a put fails with a transient error naming the key
/// and the masked URI; it comes back on the same port and data directory
/// and the retrying storage gets the put through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_transient_and_retry_rides_it_out() {
    let mut server = S3sFs::start(&["archive"]).await;
    let mut no_retry = config(&server);
    no_retry.retry.max_attempts = 1;
    let once = storage("s3://archive/outage", &no_retry);
    once.put("ch1/before.ts", Bytes::from_static(b"before"))
        .await
        .unwrap();

    server.stop();
    let err = once
        .put("ch1/during.ts", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(matches!(err, StorageError::Unavailable { .. }), "{err:?}");
    let line = err.to_string();
    assert!(
        line.contains("ch1/during.ts") && line.contains("s3://archive/outage"),
        "{line}"
    );
    assert!(!line.contains(S3_SECRET_KEY) && !format!("{err:?}").contains(S3_SECRET_KEY));

    let mut patient = config(&server);
    patient.retry.max_attempts = 30;
    patient.retry.max_backoff_ms = 300;
    let retrying = storage("s3://archive/outage", &patient);
    let started = Instant::now();
    let put = tokio::spawn({
        let retrying = retrying.clone();
        async move {
            retrying
                .put("ch1/during.ts", Bytes::from_static(b"during"))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!put.is_finished(), "the put must wait for the server");
    server.restart().await;
    put.await
        .unwrap()
        .expect("retry succeeds once the server is back");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(
        retrying.get("ch1/during.ts").await.unwrap(),
        Bytes::from_static(b"during")
    );
    assert_eq!(
        retrying.get("ch1/before.ts").await.unwrap(),
        Bytes::from_static(b"before")
    );
}
