#![forbid(unsafe_code)]

use clap::Parser;
use gke_wi_injector::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Wait(args) => std::process::exit(gke_wi_injector::wait::run(&args)),
        Command::Serve(_) | Command::Inject(_) | Command::Certs(_) => {
            anyhow::bail!("not wired yet")
        }
    }
}
