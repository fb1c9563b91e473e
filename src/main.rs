#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser;
use gke_wi_injector::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(gke_wi_injector::serve::run(args)),
        Command::Certs(args) => gke_wi_injector::certs::run(&args),
        Command::Inject(_) | Command::Wait(_) => {
            anyhow::bail!("not wired yet")
        }
    }
}
