//! Command-line interface: one binary, five subcommands, each defined by its module under
//! `commands/` (its clap `Args` and its `run`). Every flag can also be set through an environment
//! variable `GKE_WI_INJECTOR_<FLAG>`. Parsing validates types; loading files and binding sockets
//! happens later, in each subcommand's runner. What several commands share (the mutation flags,
//! value parsers) is in `commands::shared`.

use clap::{Parser, Subcommand};

use crate::commands::{
    certs::CertsArgs, doctor::DoctorArgs, inject::InjectArgs, serve::ServeArgs, wait::WaitArgs,
};

#[derive(Debug, Parser)]
#[command(
    name = "gke-wi-injector",
    version,
    about = "Mutating admission webhook that makes GKE Workload Identity Federation Pods start reliably"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start; boxing the largest variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission server.
    Serve(ServeArgs),
    /// Offline dry run: print what the webhook would do to the objects in a file.
    Inject(InjectArgs),
    /// Write a CA and a serving certificate for the webhook Service.
    Certs(CertsArgs),
    /// Wait until the GKE metadata server serves a token (the init container's program).
    Wait(WaitArgs),
    /// Check a live cluster against GKE's Workload Identity troubleshooting guide (read-only).
    Doctor(DoctorArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_limits_default_to_the_library_defaults() {
        let cli = Cli::try_parse_from(["gke-wi-injector", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let limits = crate::server::connections::Limits::default();
        assert_eq!(args.max_connections, limits.max_connections);
        assert_eq!(args.idle_timeout, limits.idle_timeout);
        assert_eq!(args.header_timeout, limits.header_timeout);
        assert_eq!(args.body_timeout, crate::server::BODY_TIMEOUT);
        let budget = crate::server::BODY_BUDGET_BYTES;
        assert_eq!(args.max_body_bytes_in_flight, budget);
    }

    #[test]
    fn every_flag_has_an_env_var() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.is_positional() || ["help", "version"].contains(&arg.get_id().as_str()) {
                    continue;
                }
                assert!(
                    arg.get_env().is_some(),
                    "{} --{} has no env",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
