//! The process's `tracing` subscriber: log lines to stderr and, when an
//! OTLP endpoint is configured, spans to an OpenTelemetry collector.
//!
//! JSON lines are the default inside a container (`KUBERNETES_SERVICE_HOST`
//! or `container` set), because log collectors there parse each line as one
//! record; a terminal gets text. `--log-format` overrides either.
//!
//! Traces are exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, over
//! OTLP/HTTP with protobuf (the collector's port 4318; the standard
//! `OTEL_EXPORTER_OTLP_*` and `OTEL_SERVICE_NAME` variables are honoured by
//! the exporter itself). A process without it pays nothing for tracing
//! beyond the log layer.

use std::fmt;
use std::str::FromStr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (containers, log collectors).
    Json,
    /// Human-readable text (terminals).
    Text,
}

impl LogFormat {
    /// The default for an environment read through `env`: JSON in a
    /// container, text elsewhere.
    pub fn default_for(env: impl Fn(&str) -> Option<String>) -> LogFormat {
        if env("KUBERNETES_SERVICE_HOST").is_some() || env("container").is_some() {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(format!("unknown log format {other:?}: use json or text")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        })
    }
}

/// Telemetry that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` is not a valid filter.
    #[error("RUST_LOG is not a valid log filter: {0}")]
    Filter(String),
    /// The OTLP exporter could not be built from the `OTEL_*` variables.
    #[error("cannot export traces to OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: {message}")]
    Otlp {
        /// The configured endpoint.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// A subscriber was already installed.
    #[error("logging is already initialised: {0}")]
    AlreadySet(String),
}

/// Keeps the trace exporter alive; dropping it flushes the spans still
/// buffered, so hold it until the process ends.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("dvr: flushing traces at exit failed: {e}");
            }
        }
    }
}

/// Installs the process's subscriber: `format` lines to stderr filtered by
/// `RUST_LOG` (default `info`, and never below `info` for the request
/// signers, see [`shows_no_credentials`]), and OTLP span export named `service` when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Call once, outside any async
/// runtime (the exporter's HTTP client runs its own).
pub fn init(format: LogFormat, service: &str) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| TelemetryError::Filter(e.to_string()))?
        }
        _ => EnvFilter::new("info"),
    };
    let lines = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let provider = endpoint
        .map(|endpoint| tracer_provider(service, &endpoint))
        .transpose()?;
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("dvr"))
            .boxed()
    });
    if provider.is_some() {
        crate::propagation::install();
    }
    tracing_subscriber::registry()
        .with(
            lines
                .and_then(otel)
                .with_filter(filter.and(no_credentials())),
        )
        .try_init()
        .map_err(|e| TelemetryError::AlreadySet(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

/// [`shows_no_credentials`] as a filter. It only ever drops, so its level
/// hint is "everything" and the combined filter keeps `RUST_LOG`'s: without
/// one the hint is lost, the `log` crate's max level becomes `trace`, and
/// every `log::trace!` of a library (srt-protocol logs per packet) is
/// formatted into a record and filtered at run time.
fn no_credentials() -> tracing_subscriber::filter::FilterFn<fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(shows_no_credentials as fn(&tracing::Metadata<'_>) -> bool)
        .with_max_level_hint(tracing::level_filters::LevelFilter::TRACE)
}

/// Whether an event may be logged without exposing a storage secret: the
/// object-store request signers (`reqsign*`) print their whole credential
/// provider, secret key included, at `debug`, so their events below `info`
/// are dropped whatever `RUST_LOG` asks for.
fn shows_no_credentials(meta: &tracing::Metadata<'_>) -> bool {
    !(meta.target().starts_with("reqsign") && *meta.level() > tracing::Level::INFO)
}

fn tracer_provider(service: &str, endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| TelemetryError::Otlp {
            endpoint: endpoint.to_owned(),
            message: e.to_string(),
        })?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| format!("dvr-{service}"));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_containers_text_on_terminals() {
        let k8s = |k: &str| (k == "KUBERNETES_SERVICE_HOST").then(|| "10.0.0.1".to_owned());
        assert_eq!(LogFormat::default_for(k8s), LogFormat::Json);
        let podman = |k: &str| (k == "container").then(|| "podman".to_owned());
        assert_eq!(LogFormat::default_for(podman), LogFormat::Json);
        assert_eq!(LogFormat::default_for(|_| None), LogFormat::Text);
    }

    #[test]
    fn formats_parse_and_print_back() {
        for f in [LogFormat::Json, LogFormat::Text] {
            assert_eq!(f.to_string().parse::<LogFormat>(), Ok(f));
        }
        let err = "xml".parse::<LogFormat>().unwrap_err();
        assert!(err.contains("json or text"), "{err}");
    }

    #[test]
    fn signers_debug_lines_stay_out_even_at_rust_log_debug() {
        use std::sync::{Arc, Mutex};
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || SharedBuf(sink.clone()))
                .with_filter(EnvFilter::new("debug").and(no_credentials())),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "reqsign_core::api", "secret_access_key: s3cr3t");
            tracing::warn!(target: "reqsign_core::api", "credential expired");
            tracing::debug!(target: "dvr_storage::s3", "put ch1/seg");
        });
        let written = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(!written.contains("s3cr3t"), "{written}");
        assert!(written.contains("credential expired"), "{written}");
        assert!(written.contains("put ch1/seg"), "{written}");
    }

    #[test]
    fn the_credentials_filter_keeps_rust_logs_level_hint() {
        use tracing_subscriber::layer::Filter;
        let combined = EnvFilter::new("info").and(no_credentials());
        assert_eq!(
            Filter::<tracing_subscriber::Registry>::max_level_hint(&combined),
            Some(tracing::level_filters::LevelFilter::INFO)
        );
    }

    struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
