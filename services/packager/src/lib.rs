//! The packager: stateless, it answers any playback URL from the catalog,
//! the archive and, for the part not yet archived, the live log
//! (ARCHITECTURE sections 2 and 7).
//!
//! - [`url`]: the Flussonic-compatible URL grammar.
//! - [`playlist`]: HLS media playlists over stored segments.

pub mod playlist;
pub mod url;
