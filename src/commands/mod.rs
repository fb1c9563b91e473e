//! One module per subcommand: its clap `Args` and its `run`; `shared` holds the flags and value
//! parsers several of them use. `cli` (the top-level parser) names their `Args`; `main.rs` only
//! dispatches.

pub mod certs;
pub mod doctor;
pub mod inject;
pub mod serve;
pub mod shared;
pub mod wait;
