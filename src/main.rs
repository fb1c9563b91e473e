#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use gke_wi_injector::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inject(args) => gke_wi_injector::inject::run(args),
        Command::Serve(_) | Command::Certs(_) | Command::Wait(_) => {
            Err(anyhow::anyhow!("not wired yet"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
