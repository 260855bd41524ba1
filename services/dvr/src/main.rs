//! `dvr`: one binary for every service and tool of the DVR.

mod api;
mod archive;
mod config;
mod ctl;
mod ctl_http;
mod deploy;
mod health;
mod inspect;
mod reindex;
mod run;
mod supervisor;

use clap::{Parser, Subcommand};

/// Network DVR and catch-up TV: records live channels to object storage and
/// serves any moment of them over HLS, DASH and MPEG-TS.
#[derive(Debug, Parser)]
#[command(name = "dvr", version, about)]
struct Cli {
    /// Log lines as `json` or `text`; default json in a container
    /// (KUBERNETES_SERVICE_HOST or `container` set), text elsewhere. The
    /// level comes from RUST_LOG (default info).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<dvr_telemetry::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the DVR: record the configured streams and serve them over HTTP
    /// (embedded mode, every service in this process).
    Run(run::RunArgs),
    /// Cut a transport-stream file into segments as the recorder would and
    /// report them: use it to check a source before recording it.
    Inspect(inspect::InspectArgs),
    /// Rebuild a stream's catalog from a listing of its archive and report
    /// the chunks, orphans and damaged objects found (writes nothing).
    Reindex(reindex::ReindexArgs),
    /// Operator controls: `lock`, `unlock`, `locks` on the archive, or with
    /// `--url` over a running DVR's API, plus `streams`, `status`, `sessions`.
    Ctl(ctl::CtlArgs),
    /// Kubernetes deployment: `render` the manifests from a values file.
    Deploy(deploy::DeployArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let format = cli
        .log_format
        .unwrap_or_else(|| dvr_telemetry::LogFormat::default_for(|k| std::env::var(k).ok()));
    // Held until exit: dropping it flushes the traces still buffered.
    let _telemetry = match dvr_telemetry::init(format, "dvr") {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("dvr: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Reindex(args) => reindex::run(&args),
        Command::Ctl(args) => ctl::run(&args),
        Command::Deploy(args) => deploy::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dvr: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
