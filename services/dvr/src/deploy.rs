//! `dvr deploy render`: the Kubernetes manifests from a values file (the
//! work is in the `dvr-deploy` crate under `charts/`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Arguments of `dvr deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(subcommand)]
    command: DeployCommand,
}

#[derive(Debug, Subcommand)]
enum DeployCommand {
    /// Render every manifest (and a kustomization) into a directory:
    /// `kubectl apply -k DIR` then applies it.
    Render {
        /// The values file (see charts/dvr/values.yaml).
        #[arg(long, value_name = "FILE")]
        values: PathBuf,
        /// The directory to write; files an earlier render wrote there are
        /// replaced, others are left alone.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Runs `dvr deploy …`.
pub fn run(args: &DeployArgs) -> anyhow::Result<()> {
    match &args.command {
        DeployCommand::Render { values, out } => {
            let written = dvr_deploy::render_to_dir(values, out)?;
            println!("wrote {} files to {}", written.len(), out.display());
            Ok(())
        }
    }
}
