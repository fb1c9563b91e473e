//! The server: lifecycle (listeners, signals, drain), the HTTP adapter over the admission layer,
//! TLS and certificates, re-reading changed files, the admin endpoints and metrics, logs, and the
//! limits on connections and buffered bytes. Only the `serve` command starts it.

pub mod admin;
pub mod budget;
pub mod certs;
pub mod connections;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod reload;
pub mod telemetry;
pub mod tls;

pub use http::{AppState, BODY_BUDGET_BYTES, BODY_TIMEOUT, MAX_BODY_BYTES, router};
pub use lifecycle::{Listeners, Server};
