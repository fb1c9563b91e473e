#![forbid(unsafe_code)]

use clap::Parser;
use gke_wi_injector::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(_) | Command::Inject(_) | Command::Certs(_) | Command::Wait(_) => {
            anyhow::bail!("not wired yet")
        }
    }
}
