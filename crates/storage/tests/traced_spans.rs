//! Every storage read is one span with its key, size and outcome.
//!
//! In a test binary of its own: tracing caches each call site's interest
//! process-wide, and a test that installs a subscriber while other tests
//! of the same binary hit the same call sites on other threads can find a
//! call site cached as uninteresting (seen as spans missing at random).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dvr_storage::{resolve, StorageConfig, StorageUri};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};

type Fields = BTreeMap<String, String>;

/// Every span closed, with its last field values.
#[derive(Default)]
struct Recorder {
    open: Mutex<HashMap<u64, (&'static str, Fields)>>,
    closed: Arc<Mutex<Vec<(&'static str, Fields)>>>,
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Collect(&mut fields));
        let mut open = self.open.lock().unwrap();
        open.insert(id.into_u64(), (attrs.metadata().name(), fields));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some((_, fields)) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Collect(fields));
        }
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(span);
        }
    }
}

#[tokio::test]
async fn every_read_is_one_span_with_its_key_size_and_outcome() {
    let recorder = Recorder::default();
    let closed = Arc::clone(&recorder.closed);
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder));
    let uri = StorageUri::parse("memory://traced-reads").unwrap();
    let storage = resolve(&uri, &StorageConfig::default()).unwrap();
    storage
        .put("ch1/a.ts", Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    storage.get("ch1/a.ts").await.unwrap();
    storage.get_range("ch1/a.ts", 2..6).await.unwrap();
    storage.get("ch1/missing.ts").await.unwrap_err();
    storage.stat("ch1/missing.ts").await.unwrap();
    storage.list("ch1/").await.unwrap();

    let spans = closed.lock().unwrap().clone();
    let field = |i: usize, name: &str| spans[i].1.get(name).cloned().unwrap_or_default();
    let names: Vec<&str> = spans.iter().map(|s| s.0).collect();
    assert_eq!(
        names,
        [
            "storage.get",
            "storage.get_range",
            "storage.get",
            "storage.head",
            "storage.list"
        ],
        "one span per read, none for the write: {spans:?}"
    );
    for i in 0..spans.len() {
        assert_eq!(field(i, "backend"), "memory", "{spans:?}");
    }
    assert_eq!(
        (field(0, "key"), field(0, "bytes"), field(0, "status")),
        ("ch1/a.ts".into(), "10".into(), "ok".into())
    );
    assert_eq!(
        (field(1, "bytes"), field(1, "range")),
        ("4".into(), "2..6".into())
    );
    assert_eq!(field(2, "status"), "not_found");
    assert_eq!(field(3, "status"), "not_found");
    assert_eq!(
        (field(4, "key"), field(4, "objects")),
        ("ch1/".into(), "1".into())
    );
}
