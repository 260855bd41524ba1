//! The auth service: decides whether a player may play a stream, the way
//! IPTV middleware expects (the seeds' "Authorization" chapters).
//!
//! - [`securetoken`]: tokens signed with a shared key (SHA-1 as the seeds,
//!   or HMAC-SHA256), checked without asking anyone.
//! - [`backend`]: the HTTP backend protocol, several backends in parallel.
//! - `policy`: the seeds' rules as pure functions: each stream's policy
//!   from the config, the list order, securetoken checks, session ids and
//!   what a reply says.
//! - `sessions`: the session table: decided once, re-checked every auth
//!   duration, mirrored into the sessions bucket, with its usage.
//! - [`engine`]: joins the two and asks the HTTP backends.
//! - [`metrics`]: decisions, backend latency and open sessions for
//!   Prometheus.
//! - [`authorizer`]: the engine as the packager's in-process
//!   [`Authorizer`](dvr_bus::Authorizer), and the service loop that answers
//!   over the bus. (The trait and its bus client are in dvr-bus, which the
//!   packager uses; which request fields a policy reads is
//!   [`dvr_common::config::policy_reads`].)

pub mod authorizer;
pub mod backend;
pub mod engine;
pub mod metrics;
mod policy;
pub mod securetoken;
mod sessions;

pub use authorizer::{list_sessions, serve};
pub use engine::{session_id, session_id_for, unreadable_secrets, Engine};
