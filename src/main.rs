#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use gke_wi_injector::cli::{Cli, Command};

/// mimalloc rather than the C library's allocator: the image's static binary links musl, whose
/// allocator held the server to a quarter of its throughput (README, "Performance"). Its arena
/// memory is committed as used (`.cargo/config.toml`), which keeps the resident set small.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inject(args) => gke_wi_injector::commands::inject::run(args),
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|runtime| runtime.block_on(gke_wi_injector::commands::serve::run(args))),
        Command::Certs(args) => gke_wi_injector::commands::certs::run(&args),
        Command::Doctor(args) => {
            // doctor has its own exit codes (0 clean, 1 errors, 2 cluster unreadable).
            return match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    ExitCode::from(runtime.block_on(gke_wi_injector::commands::doctor::run(args)))
                }
                Err(e) => {
                    eprintln!("error: starting the async runtime: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Wait(args) => {
            // The wait program has its own exit codes (0 ready, 1 gave up).
            let code = gke_wi_injector::commands::wait::run(&args);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
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
