//! `dvr`: one binary for every service and tool of the DVR.

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
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
