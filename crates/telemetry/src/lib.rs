//! What every DVR service tells its operator: logs, metrics and traces.
//!
//! - [`logging`]: one `tracing` subscriber for the process, JSON lines in a
//!   container and text on a terminal (`--log-format`), the level from
//!   `RUST_LOG`, and an OpenTelemetry layer when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`metrics`]: one Prometheus registry for the process, which each crate
//!   fills from its own `metrics` module, served as `/metrics`.
//! - [`propagation`]: W3C trace context in and out of any header map (HTTP
//!   or NATS), so a request stays one trace across services.
//!
//! The one idea: every service uses the same three entry points, so an
//! operator reads every service the same way.

pub mod logging;
pub mod metrics;
pub mod propagation;

pub use logging::{init, LogFormat, TelemetryError, TelemetryGuard};
