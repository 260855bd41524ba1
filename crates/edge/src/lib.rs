//! The HTTP edge of a DVR node: what stands between the internet and the
//! services' routes, the same for the packager, the API and the probes.
//!
//! - [`client`]: who the client is, through the proxies the operator
//!   trusts ([`ClientAddr`], in every request's extensions);
//! - [`limits`]: requests answered at once, capped in total and per
//!   client, `503` with `Retry-After` past a cap ([`Edge`], [`busy`]);
//! - [`quota`]: the capped count both use, also for the packager's open
//!   paced streams;
//! - [`serve`]: the accept loop with the connection cap, the header read
//!   and write-stall timeouts, and a bounded drain at shutdown.
//!
//! Every limit is in the `http:` section of the config, with a default
//! safe on the open internet (`docs/operations.md` lists them).

pub mod client;
mod io;
pub mod limits;
pub mod metrics;
pub mod quota;
pub mod serve;

pub use client::ClientAddr;
pub use limits::{busy, Edge};
pub use quota::{Exceeded, Quota, QuotaPermit};
pub use serve::serve;
