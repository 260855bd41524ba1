//! `dvr`: one binary for every service and tool of the DVR.

mod api;
mod archive;
mod config;
mod ctl;
mod ctl_http;
mod inspect;
mod reindex;
mod run;

use clap::{Parser, Subcommand};

/// Network DVR and catch-up TV: records live channels to object storage and
/// serves any moment of them over HLS, DASH and MPEG-TS.
#[derive(Debug, Parser)]
#[command(name = "dvr", version, about)]
struct Cli {
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Reindex(args) => reindex::run(&args),
        Command::Ctl(args) => ctl::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dvr: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
