//! The packager: stateless, it answers any playback URL from the catalog,
//! the archive and, for the part not yet archived, the live log
//! (ARCHITECTURE sections 2 and 7).
//!
//! - [`url`]: the Flussonic-compatible URL grammar.
//! - [`playlist`]: HLS media playlists over stored segments.
//! - [`master`]: master playlists for streams with several tracks.
//! - [`tapes`]: which tapes ([`dvr_archive::tape`]) are served, kept
//!   equal to the streams bucket, and the catalog followed when the
//!   recorder runs elsewhere.
//! - [`timeshift`]: stream mode (`timeshift_abs`, `timeshift_rel`, `rewind`).
//! - [`paced`]: endless MPEG-TS paced in real time.
//! - [`service`]: the HTTP handler, which hands each form to its family:
//!   [`playlists`] (HLS), [`transport`] (MPEG-TS files, segments, paced
//!   streams), [`status`] (`recording_status.json`); [`query`]: the query
//!   parameters they read; [`config`]: their limits.
//! - [`dash`]: DASH manifests; [`cmaf`]: fMP4 init and media segments
//!   made from the stored TS on request (DASH and `.fmp4.m3u8` CMAF HLS).
//! - [`export`]: MP4 export; [`preview`]: keyframes as pictures.
//! - [`feed`]: the segment feed other origins of the cluster follow.
//! - [`http`]: CORS, ETags, ranges and gzip around every answer.
//! - [`auth`]: play authorization in front of every answer.
//! - `bounded`: the memory caches' one policy (a byte bound, emptied when
//!   full).

pub mod auth;
mod bounded;
pub mod cmaf;
pub mod config;
pub mod dash;
pub mod demand;
pub mod error;
pub mod export;
pub mod exports;
pub mod feed;
pub mod http;
pub mod master;
pub mod metrics;
pub mod paced;
pub mod playlist;
pub mod playlists;
pub mod preview;
pub mod query;
pub mod service;
pub mod status;
pub mod tapes;
pub mod timeshift;
pub mod transport;
pub mod url;

pub use auth::Gate;
pub use config::{PackagerConfig, RequestContext};
pub use error::PackagerError;
pub use service::Packager;
pub use tapes::{apply_summary, follow_catalog, Tapes};
