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
//! - [`reads`]: which request fields a stream's policy decides on, so no
//!   answer is reused across a field it read.
//! - [`metrics`]: decisions, backend latency and open sessions for
//!   Prometheus.
//! - [`authorizer`]: how a packager asks, in process or over the bus, and
//!   the service loop that answers over the bus.

pub mod authorizer;
pub mod backend;
pub mod engine;
pub mod metrics;
mod policy;
pub mod reads;
pub mod securetoken;
mod sessions;

pub use authorizer::{list_sessions, serve, Authorizer, BusAuthorizer};
pub use engine::{session_id, session_id_for, unreadable_secrets, Engine};
pub use reads::{policy_reads, PolicyReads};
