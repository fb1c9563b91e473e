//! The plain-HTTP admin listener (SPEC §6): `/livez`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;
use crate::namespaces::NamespaceSource;

/// Whether the server should get traffic: the namespace cache has synced, a certificate is
/// loaded, and shutdown has not begun.
#[derive(Debug)]
pub struct Readiness {
    namespaces: Arc<dyn NamespaceSource>,
    cert_loaded: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    pub fn new(namespaces: Arc<dyn NamespaceSource>) -> Self {
        Readiness {
            namespaces,
            cert_loaded: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn set_cert_loaded(&self) {
        self.cert_loaded.store(true, Ordering::SeqCst);
    }

    /// From now on `/readyz` fails; there is no way back.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// `Ok` when ready, else what is missing.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.is_shutting_down() {
            Err("shutting down")
        } else if !self.cert_loaded.load(Ordering::SeqCst) {
            Err("no serving certificate loaded")
        } else if !self.namespaces.synced() {
            Err("namespace cache not synced yet")
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminState {
    pub readiness: Arc<Readiness>,
    pub namespaces: Arc<dyn NamespaceSource>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let text = state
        .metrics
        .encode(state.namespaces.len(), state.namespaces.synced());
    let content_type =
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}
