//! gke-wi-injector: a mutating admission webhook that makes Pods using GKE Workload Identity
//! Federation start reliably.
//!
//! Layers, each depending only on the ones below it:
//!
//! - `commands` (`serve`, `inject`, `certs`, `wait`, `doctor`): one module per subcommand, owning its
//!   clap `Args` and its `run` (`commands::shared`: what several share); `cli` is the
//!   top-level parser;
//! - `doctor`: the Workload Identity checks over what was read from a cluster (pure);
//! - `server`: lifecycle, HTTP, TLS, certificates, reloads, admin, metrics, logs, limits;
//! - `namespaces`: where namespace labels come from (a file, or the cluster);
//! - `admission`: the AdmissionReview contract over kube-core's types, and the Pod view;
//! - `engine` (the `gke-wi-injector-engine` crate): the pure mutation, with no I/O, HTTP,
//!   command line or Kubernetes client; the compiler enforces it.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cli;
pub mod commands;
pub mod doctor;
pub mod namespaces;
pub mod server;

/// The fixtures the unit tests share with the integration tests and the benches.
#[cfg(test)]
#[path = "../tests/support/fixtures.rs"]
mod fixtures;

pub use gke_wi_injector_engine as engine;
pub use gke_wi_injector_engine::WAIT_FAILURE_MESSAGE;
