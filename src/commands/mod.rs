//! One module per subcommand: its clap `Args` and its `run`. `main.rs` only dispatches.

pub mod certs;
pub mod inject;
pub mod serve;
pub mod wait;
