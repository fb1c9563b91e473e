//! The mutation engine of gke-wi-injector: from a Pod (raw JSON), its namespace's labels and the
//! configuration to a plan (RFC 6902 patch operations, warnings, features applied).
//!
//! Pure: no I/O, no HTTP, no Kubernetes client, no command line. This crate depends on none of
//! them, so the compiler keeps it that way. The server, the offline `inject` command and the tests
//! all call it.
#![forbid(unsafe_code)]

pub mod istio;
pub mod metadata;
pub mod mutate;
pub mod patch;
pub mod policy;
pub mod reads;
pub mod warnings;
pub mod yaml;

pub use metadata::WAIT_FAILURE_MESSAGE;
