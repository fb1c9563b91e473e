//! gke-wi-injector: a mutating admission webhook that makes Pods using GKE Workload Identity
//! Federation start reliably.
//!
//! The mutation engine (`policy`, `mutate`, `istio`, `patch`, `admission`) is pure: no I/O, no
//! HTTP, no Kubernetes client. The server, the offline `inject` command and the tests all call it.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cli;
pub mod inject;
pub mod istio;
pub mod mutate;
pub mod patch;
pub mod pod_view;
pub mod policy;
pub mod wait;
pub mod warnings;
pub mod yaml;

pub mod admin;
pub mod budget;
pub mod certs;
pub mod connections;
pub mod metrics;
pub mod namespaces;
pub mod namespaces_kube;
pub mod reload;
pub mod serve;
pub mod server;
pub mod telemetry;
pub mod tls;

/// What the wait program (and the curl command of `--wait-mode=curl`) prints when it gives up,
/// word for word from GKE's troubleshooting guide.
pub const WAIT_FAILURE_MESSAGE: &str = "Retry limit exceeded. Failed to wait for metadata server to be available. Check if the gke-metadata-server Pod in the kube-system namespace is healthy.";
