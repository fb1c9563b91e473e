//! gke-wi-injector: a mutating admission webhook that makes Pods using GKE Workload Identity
//! Federation start reliably.
//!
//! The mutation engine (`policy`, `mutate`, `istio`, `patch`, `admission`) is pure: no I/O, no
//! HTTP, no Kubernetes client. The server, the offline `inject` command and the tests all call it.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cli;
pub mod inject;
pub mod pod_view;
pub mod wait;

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

pub use gke_wi_injector_engine as engine;
pub use gke_wi_injector_engine::WAIT_FAILURE_MESSAGE;
