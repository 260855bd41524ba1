//! The archive as a tape addressed by UTC time, without touching storage.
//!
//! The recorder, the packager and `dvr reindex` all need the same answers
//! about the archive: what an object is called, what a chunk index says,
//! which time ranges are recorded, which bytes serve a range, what may be
//! deleted. This crate computes them from values passed in (listings,
//! decoded indexes, `now`), so it is fast to test and safe to fuzz; the
//! storage crate moves the bytes. The pieces:
//!
//! - [`key`]: object keys (`{stream}/{YYYY}/{MM}/{DD}/{HH}/{first_seq:020}.ts`)
//!   and where chunks are cut.
//! - [`index`]: the binary chunk index, one fixed record per segment.
//! - [`catalog`]: which chunks exist; recorded ranges and the hour bitmap.
//! - [`plan`]: the segments (and gaps) that serve a time range.
//! - [`lock`]: protected ranges and `locks.json`.
//! - [`retention`]: which chunks to delete by depth, size and disk usage.
//! - [`status`]: the JSON shapes of `recording_status.json`.
//! - [`store`]: the archive on a storage backend, with the catalog in memory;
//!   [`cache`] and [`disk_cache`] keep indexes and segments near the packager.
//! - [`registry`]: one store per archive root, shared by every caller.
//! - [`tape`]: one stream's tape, the archive joined to its live log: what
//!   the packager serves, the API reports and ingest resumes after.

pub mod cache;
pub mod catalog;
pub mod disk_cache;
pub mod error;
pub mod fuzzing;
pub mod index;
pub mod key;
pub mod lock;
pub mod metrics;
pub mod plan;
pub mod registry;
pub mod retention;
pub mod status;
pub mod store;
pub mod tape;

pub use cache::{MemoryCache, DEFAULT_MEMORY_CACHE_BYTES};
pub use catalog::{
    hour_bitmap, merge_ranges, plan_rebuild, recorded_ranges, widen, Catalog, ChunkEntry,
    HourBitmap, ListingPlan, TimeRange, MAX_GAPS_PER_CHUNK,
};
pub use disk_cache::{DiskCache, DiskCacheConfig};
pub use error::ArchiveError;
pub use index::{ChunkIndex, IndexRecord, INDEX_VERSION};
pub use key::{ChunkKey, ObjectKind};
pub use lock::{Lock, LocksFile};
pub use plan::{
    plan_range, record_runs, records_in_range, ChunkRecords, PlanItem, PlannedSegment, RecordRun,
};
pub use registry::{ArchiveRegistry, RegistryError, StreamArchiveError};
pub use retention::{plan_retention, DiskUsage, RetentionPlan, RetentionPolicy};
