//! What the DVR's tests share: real servers, made-up segments, the
//! committed clips and ffmpeg.
//!
//! It exists so that a test server or a fixture is written once, not copied
//! into each crate's tests or exposed by a library behind a feature. It is
//! a dev-dependency only (`publish = false`). It depends on `dvr-storage`
//! and `dvr-media`, so those crates can use it from their integration tests
//! (`tests/*.rs`) but not from unit tests inside `src/`, where it would be a
//! second, incompatible copy of the crate under test.
//!
//! - [`nats`], [`s3`], [`swift`]: nats-server, s3s-fs and a one-node Swift
//!   on loopback ports, killed when dropped; [`process`] is how each starts.
//! - [`fixtures`]: segments of a made-up tape.
//! - [`clips`]: the clips of `testdata/`.
//! - [`ffmpeg`]: ffmpeg and ffprobe, run so that failures show their stderr.
//! - [`pil`]: pictures judged by a decoder independent of libavcodec.

pub mod clips;
pub mod ffmpeg;
pub mod fixtures;
pub mod nats;
pub mod pil;
pub mod process;
pub mod s3;
pub mod swift;
