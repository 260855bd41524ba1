//! The conformance suite every backend must pass.
//!
//! Each function exercises one part of the [`Storage`] contract and panics
//! with a message naming the backend when it does not hold. The memory and
//! file backends run it as unit tests; `tests/` runs it against s3s-fs, a
//! one-node Swift and Swift's S3 API. Every function works under its own
//! prefix below `base`, so a shared bucket can hold several runs.

// Test code: building the failure context eagerly costs nothing that matters,
// and `expect` prints the error next to it.
#![allow(clippy::expect_fun_call)]

use std::ops::Range;

use bytes::Bytes;

use crate::error::StorageError;
use crate::storage::Storage;

/// What a run covers.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Prefix under which the suite writes, e.g. `suite-1234/`; must end in
    /// `/`. Use a fresh one per run.
    pub base: String,
    /// Keys for the pagination test (more than 1000 to cross an S3 page);
    /// 0 skips it.
    pub many_keys: usize,
    /// Size of the object for the streamed upload tests; make it more than
    /// two parts.
    pub large_object: usize,
}

impl SuiteOptions {
    /// A quick run: no pagination test, a 12 MiB streamed object.
    pub fn quick(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            many_keys: 0,
            large_object: 12 * 1024 * 1024,
        }
    }
}

/// Runs every test of the suite in turn.
pub async fn run_all(s: &dyn Storage, o: &SuiteOptions) {
    invalid_keys_are_rejected(s, o).await;
    put_get_stat_overwrite(s, o).await;
    empty_object(s, o).await;
    missing_key_is_not_found(s, o).await;
    ranged_reads(s, o).await;
    list_nested_prefixes(s, o).await;
    delete_is_idempotent(s, o).await;
    delete_many(s, o).await;
    streamed_put(s, o).await;
    put_file(s, o).await;
    put_source_of_wrong_length(s, o).await;
    if o.many_keys > 0 {
        list_paginates(s, o).await;
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn ctx(s: &dyn Storage, what: &str) -> String {
    format!("[{}] {what}", s.uri())
}

/// Keys that could escape the root or confuse a store fail before any
/// request, with [`StorageError::InvalidKey`].
pub async fn invalid_keys_are_rejected(s: &dyn Storage, _o: &SuiteOptions) {
    let long = "k".repeat(2000);
    for key in [
        "",
        "/abs",
        "a/../../etc/passwd",
        "..",
        "a//b",
        "a\0b",
        "dir/",
        long.as_str(),
    ] {
        let is_invalid =
            |r: Result<(), StorageError>| matches!(r, Err(StorageError::InvalidKey { .. }));
        assert!(
            is_invalid(s.put(key, Bytes::from_static(b"x")).await),
            "{}",
            ctx(s, key)
        );
        assert!(is_invalid(s.get(key).await.map(|_| ())), "{}", ctx(s, key));
        assert!(
            is_invalid(s.get_range(key, 0..1).await.map(|_| ())),
            "{}",
            ctx(s, key)
        );
        assert!(is_invalid(s.stat(key).await.map(|_| ())), "{}", ctx(s, key));
        assert!(is_invalid(s.delete(key).await), "{}", ctx(s, key));
        assert!(
            is_invalid(s.delete_many(&[key.to_owned()]).await),
            "{}",
            ctx(s, key)
        );
        assert!(
            is_invalid(s.put_writer(key).await.map(|_| ())),
            "{}",
            ctx(s, key)
        );
    }
    assert!(
        matches!(s.list("../").await, Err(StorageError::InvalidKey { .. })),
        "{}",
        ctx(s, "list ../")
    );
}

/// Put, get, stat and overwrite one object.
pub async fn put_get_stat_overwrite(s: &dyn Storage, o: &SuiteOptions) {
    let key = format!("{}basic/ch1/2024/01/02/03/00000000000000000001.ts", o.base);
    let data = pattern(1000, 1);
    s.put(&key, data.clone()).await.expect(&ctx(s, "put"));
    assert_eq!(
        s.get(&key).await.expect(&ctx(s, "get")),
        data,
        "{}",
        ctx(s, "get")
    );
    let meta = s
        .stat(&key)
        .await
        .expect(&ctx(s, "stat"))
        .expect(&ctx(s, "stat some"));
    assert_eq!(meta.key, key);
    assert_eq!(meta.len, 1000, "{}", ctx(s, "stat len"));
    // OpenDAL's memory service keeps no times; every real store does.
    if !s.uri().starts_with("memory://") {
        assert!(meta.last_modified.is_some(), "{}", ctx(s, "last_modified"));
    }
    let replaced = pattern(10, 2);
    s.put(&key, replaced.clone())
        .await
        .expect(&ctx(s, "overwrite"));
    assert_eq!(
        s.get(&key).await.expect(&ctx(s, "get")),
        replaced,
        "{}",
        ctx(s, "overwrite")
    );
}

/// A zero-byte object exists, has length 0 and reads back empty.
pub async fn empty_object(s: &dyn Storage, o: &SuiteOptions) {
    let key = format!("{}empty/zero.idx", o.base);
    s.put(&key, Bytes::new()).await.expect(&ctx(s, "put empty"));
    let meta = s
        .stat(&key)
        .await
        .expect(&ctx(s, "stat"))
        .expect(&ctx(s, "empty exists"));
    assert_eq!(meta.len, 0);
    assert!(s.get(&key).await.expect(&ctx(s, "get empty")).is_empty());
    assert!(s
        .get_range(&key, 0..0)
        .await
        .expect(&ctx(s, "empty range"))
        .is_empty());
    assert_eq!(
        s.list(&format!("{}empty/", o.base))
            .await
            .expect(&ctx(s, "list"))
            .len(),
        1
    );
}

/// A missing key is `NotFound` for get and ranged get, and `None` for stat.
pub async fn missing_key_is_not_found(s: &dyn Storage, o: &SuiteOptions) {
    let key = format!("{}missing/nothing-here.ts", o.base);
    let err = s.get(&key).await.expect_err(&ctx(s, "get missing"));
    assert!(err.is_not_found(), "{}: {err}", ctx(s, "get missing"));
    assert!(err.to_string().contains(&key), "error names the key: {err}");
    let err = s
        .get_range(&key, 0..10)
        .await
        .expect_err(&ctx(s, "range missing"));
    assert!(err.is_not_found(), "{}: {err}", ctx(s, "range missing"));
    assert!(!err.is_transient());
    assert!(s.stat(&key).await.expect(&ctx(s, "stat missing")).is_none());
    assert!(s
        .list(&format!("{}missing/", o.base))
        .await
        .expect(&ctx(s, "list"))
        .is_empty());
}

/// Ranges inside the object, at its end, and past its end.
pub async fn ranged_reads(s: &dyn Storage, o: &SuiteOptions) {
    let key = format!("{}range/obj.ts", o.base);
    let data = pattern(4096, 3);
    s.put(&key, data.clone()).await.expect(&ctx(s, "put"));
    let slice = |r: Range<u64>| data.slice(r.start as usize..r.end as usize);
    for r in [0..1, 0..4096, 188..376, 4000..4096, 4095..4096, 4096..4096] {
        let got = s
            .get_range(&key, r.clone())
            .await
            .expect(&ctx(s, &format!("range {r:?}")));
        assert_eq!(got, slice(r.clone()), "{}", ctx(s, &format!("range {r:?}")));
    }
    for r in [4000..5000, 4096..4097, 5000..6000] {
        let err = s
            .get_range(&key, r.clone())
            .await
            .expect_err(&ctx(s, &format!("{r:?}")));
        assert!(
            matches!(err, StorageError::InvalidRange { .. }),
            "{}: {err}",
            ctx(s, &format!("range past end {r:?}"))
        );
        assert!(err.to_string().contains(&key), "{err}");
    }
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 10..5;
    assert!(matches!(
        s.get_range(&key, backwards).await,
        Err(StorageError::InvalidRange { .. })
    ));
}

/// Listing is recursive, sorted, filtered by prefix, and reports sizes.
pub async fn list_nested_prefixes(s: &dyn Storage, o: &SuiteOptions) {
    let base = format!("{}list/", o.base);
    let keys = [
        "ch1/2024/01/01/00/a.ts",
        "ch1/2024/01/01/00/a.idx",
        "ch1/2024/01/01/01/b.ts",
        "ch1/locks.json",
        "ch10/2024/01/01/00/c.ts",
        "ch2/x.ts",
    ];
    for (i, k) in keys.iter().enumerate() {
        s.put(&format!("{base}{k}"), pattern(i + 1, 4))
            .await
            .expect(&ctx(s, "put"));
    }
    let names = |v: Vec<crate::ObjectMeta>| -> Vec<String> {
        v.into_iter()
            .map(|m| m.key.trim_start_matches(&base).to_owned())
            .collect()
    };
    let all = s.list(&base).await.expect(&ctx(s, "list all"));
    if !s.uri().starts_with("memory://") {
        assert!(
            all.iter().all(|m| m.last_modified.is_some()),
            "{}",
            ctx(s, "list times")
        );
    }
    let sizes: Vec<u64> = all.iter().map(|m| m.len).collect();
    assert_eq!(sizes, vec![2, 1, 3, 4, 5, 6], "{}", ctx(s, "list sizes"));
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    assert_eq!(names(all), sorted, "{}", ctx(s, "list all"));
    let ch1 = names(
        s.list(&format!("{base}ch1/"))
            .await
            .expect(&ctx(s, "list ch1/")),
    );
    assert_eq!(
        ch1,
        [
            "ch1/2024/01/01/00/a.idx",
            "ch1/2024/01/01/00/a.ts",
            "ch1/2024/01/01/01/b.ts",
            "ch1/locks.json"
        ],
        "{}",
        ctx(s, "dir prefix excludes ch10")
    );
    let partial = names(
        s.list(&format!("{base}ch1"))
            .await
            .expect(&ctx(s, "list ch1")),
    );
    assert_eq!(
        partial.len(),
        5,
        "{}: {partial:?}",
        ctx(s, "name prefix includes ch10")
    );
    let hour = names(
        s.list(&format!("{base}ch1/2024/01/01/00/"))
            .await
            .expect(&ctx(s, "hour")),
    );
    assert_eq!(hour, ["ch1/2024/01/01/00/a.idx", "ch1/2024/01/01/00/a.ts"]);
    assert!(s
        .list(&format!("{base}nope/"))
        .await
        .expect(&ctx(s, "list empty"))
        .is_empty());
}

/// Deleting removes the object; deleting again, or a key never written,
/// succeeds.
pub async fn delete_is_idempotent(s: &dyn Storage, o: &SuiteOptions) {
    let key = format!("{}delete/one.ts", o.base);
    s.put(&key, pattern(10, 5)).await.expect(&ctx(s, "put"));
    s.delete(&key).await.expect(&ctx(s, "delete"));
    assert!(
        s.stat(&key).await.expect(&ctx(s, "stat")).is_none(),
        "{}",
        ctx(s, "deleted")
    );
    s.delete(&key).await.expect(&ctx(s, "delete again"));
    s.delete(&format!("{}delete/never.ts", o.base))
        .await
        .expect(&ctx(s, "delete never"));
}

/// `delete_many` removes exactly the given keys, missing ones included.
pub async fn delete_many(s: &dyn Storage, o: &SuiteOptions) {
    let base = format!("{}delete-many/", o.base);
    let keys: Vec<String> = (0..12).map(|i| format!("{base}k{i:02}")).collect();
    for k in &keys {
        s.put(k, pattern(3, 6)).await.expect(&ctx(s, "put"));
    }
    let mut doomed: Vec<String> = keys[..8].to_vec();
    doomed.push(format!("{base}never-existed"));
    s.delete_many(&doomed).await.expect(&ctx(s, "delete_many"));
    let left: Vec<String> = s
        .list(&base)
        .await
        .expect(&ctx(s, "list"))
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(
        left,
        keys[8..].to_vec(),
        "{}",
        ctx(s, "delete_many leftovers")
    );
    s.delete_many(&[])
        .await
        .expect(&ctx(s, "delete_many empty"));
    s.delete_many(&keys)
        .await
        .expect(&ctx(s, "delete_many all"));
    assert!(s.list(&base).await.expect(&ctx(s, "list")).is_empty());
}

/// A streamed upload larger than two parts reads back byte for byte and is
/// invisible until finished; an aborted one leaves nothing.
pub async fn streamed_put(s: &dyn Storage, o: &SuiteOptions) {
    let key = format!("{}stream/big.ts", o.base);
    let data = pattern(o.large_object, 7);
    let mut w = s.put_writer(&key).await.expect(&ctx(s, "put_writer"));
    // Uneven chunks, as a recorder writes them.
    let mut off = 0;
    let mut step = 1_000_003;
    while off < data.len() {
        let end = (off + step).min(data.len());
        w.write(data.slice(off..end)).await.expect(&ctx(s, "write"));
        off = end;
        step = step * 3 / 2;
    }
    assert!(
        s.stat(&key).await.expect(&ctx(s, "stat")).is_none(),
        "{}",
        ctx(s, "visible early")
    );
    let n = w.finish().await.expect(&ctx(s, "finish"));
    assert_eq!(n, data.len() as u64);
    let meta = s
        .stat(&key)
        .await
        .expect(&ctx(s, "stat"))
        .expect(&ctx(s, "exists"));
    assert_eq!(meta.len, data.len() as u64, "{}", ctx(s, "streamed length"));
    let got = s.get(&key).await.expect(&ctx(s, "get"));
    assert!(got == data, "{}", ctx(s, "streamed content differs"));
    let mid = (data.len() / 2) as u64;
    let r = mid - 100..mid + 100;
    assert_eq!(
        s.get_range(&key, r.clone()).await.expect(&ctx(s, "range")),
        data.slice(r.start as usize..r.end as usize)
    );
    let listed = s
        .list(&format!("{}stream/", o.base))
        .await
        .expect(&ctx(s, "list"));
    assert_eq!(
        listed.len(),
        1,
        "{}: segments must not show: {listed:?}",
        ctx(s, "list")
    );
    s.delete(&key).await.expect(&ctx(s, "delete big"));
    assert!(s.stat(&key).await.expect(&ctx(s, "stat")).is_none());

    let aborted = format!("{}stream/aborted.ts", o.base);
    let mut w = s.put_writer(&aborted).await.expect(&ctx(s, "put_writer"));
    w.write(pattern(1000, 8)).await.expect(&ctx(s, "write"));
    w.abort().await.expect(&ctx(s, "abort"));
    assert!(
        s.stat(&aborted).await.expect(&ctx(s, "stat")).is_none(),
        "{}",
        ctx(s, "aborted")
    );
}

/// Uploading a local file, larger than two parts and small.
pub async fn put_file(s: &dyn Storage, o: &SuiteOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, len) in [("big.ts", o.large_object + 12345), ("small.idx", 77)] {
        let path = dir.path().join(name);
        let data = pattern(len, 9);
        std::fs::write(&path, &data).expect("write local file");
        let key = format!("{}file/{name}", o.base);
        let n = s.put_file(&key, &path).await.expect(&ctx(s, "put_file"));
        assert_eq!(n, len as u64);
        let got = s.get(&key).await.expect(&ctx(s, "get"));
        assert!(got == data, "{}", ctx(s, "put_file content differs"));
        // Replaying an upload (a recorder retrying after a crash) rewrites
        // the same key with the same bytes.
        assert_eq!(
            s.put_file(&key, &path)
                .await
                .expect(&ctx(s, "put_file again")),
            len as u64
        );
        assert_eq!(
            s.stat(&key).await.expect(&ctx(s, "stat")).map(|m| m.len),
            Some(len as u64)
        );
        s.delete(&key).await.expect(&ctx(s, "delete uploaded file"));
    }
    let err = s
        .put_file(
            &format!("{}file/missing", o.base),
            &dir.path().join("no-such-file"),
        )
        .await
        .expect_err(&ctx(s, "missing local file"));
    assert!(matches!(err, StorageError::LocalFile { .. }), "{err}");
}

/// An upload source that yields fewer or more bytes than it announced fails
/// the upload, and nothing appears under the key.
pub async fn put_source_of_wrong_length(s: &dyn Storage, o: &SuiteOptions) {
    #[derive(Debug)]
    struct Lying {
        data: Bytes,
        announced: u64,
    }
    impl crate::UploadSource for Lying {
        fn len(&self) -> u64 {
            self.announced
        }
        fn open(&self) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> {
            use futures::StreamExt;
            futures::stream::iter([Ok(self.data.clone())]).boxed()
        }
        fn origin(&self) -> String {
            "a lying test source".to_owned()
        }
    }
    let key = format!("{}lying.ts", o.base);
    for announced in [1000, 3000] {
        let source = Lying {
            data: pattern(2000, 3),
            announced,
        };
        let err = s
            .put_source(&key, std::sync::Arc::new(source))
            .await
            .expect_err(&ctx(s, "a source of the wrong length"));
        assert!(matches!(err, StorageError::LocalFile { .. }), "{err}");
        assert!(err.to_string().contains("announced"), "{err}");
        assert!(
            s.stat(&key).await.expect(&ctx(s, "stat")).is_none(),
            "{}",
            ctx(s, "a failed upload left an object")
        );
    }
}

/// Listing more keys than one page of the store returns all of them.
pub async fn list_paginates(s: &dyn Storage, o: &SuiteOptions) {
    use futures::StreamExt;
    let base = format!("{}many/", o.base);
    let keys: Vec<String> = (0..o.many_keys)
        .map(|i| format!("{base}{:02}/{i:05}", i % 7))
        .collect();
    futures::stream::iter(keys.iter())
        .map(|k| s.put(k, Bytes::from_static(b"1")))
        .buffer_unordered(16)
        .for_each(|r| async move { r.expect("put") })
        .await;
    let listed = s.list(&base).await.expect(&ctx(s, "list many"));
    assert_eq!(listed.len(), o.many_keys, "{}", ctx(s, "pagination"));
    let mut expected = keys.clone();
    expected.sort();
    let got: Vec<String> = listed.into_iter().map(|m| m.key).collect();
    assert!(got == expected, "{}", ctx(s, "pagination keys"));
    s.delete_many(&keys)
        .await
        .expect(&ctx(s, "delete_many many"));
    assert!(
        s.list(&base).await.expect(&ctx(s, "list")).is_empty(),
        "{}",
        ctx(s, "deleted many")
    );
}
