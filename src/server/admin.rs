//! The plain-HTTP admin listener (SPEC §6): `/livez`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::namespaces::NamespaceSource;
use crate::server::metrics::Metrics;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::policy::Labels;
    use crate::namespaces::Fetched;
    use axum::body::Body;
    use axum::http::Request;
    use futures::future::BoxFuture;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    #[derive(Debug)]
    struct Source(AtomicBool);

    impl NamespaceSource for Source {
        fn cached(&self, _: &str) -> Option<Arc<Labels>> {
            None
        }
        fn fetch<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Fetched> {
            Box::pin(std::future::ready(Fetched::Unknown(String::new())))
        }
        fn synced(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
        fn len(&self) -> usize {
            7
        }
    }

    async fn get(state: &AdminState, path: &str) -> (StatusCode, String, String) {
        let response = router(state.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let ct = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ready_only_with_a_certificate_and_a_synced_cache_and_never_again_after_shutdown() {
        let source = Arc::new(Source(AtomicBool::new(false)));
        let readiness = Arc::new(Readiness::new(source.clone()));
        let state = AdminState {
            readiness: readiness.clone(),
            namespaces: source.clone(),
            metrics: Arc::new(Metrics::new()),
        };
        assert_eq!(get(&state, "/livez").await.0, StatusCode::OK);
        let not_ready = |why: &str| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            )
        };
        let readyz = || async { get(&state, "/readyz").await };
        let (s, _, b) = readyz().await;
        assert_eq!((s, b), not_ready("no serving certificate loaded"));
        readiness.set_cert_loaded();
        let (s, _, b) = readyz().await;
        assert_eq!((s, b), not_ready("namespace cache not synced yet"));
        source.0.store(true, Ordering::SeqCst);
        let (s, _, b) = readyz().await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "ok\n"));
        readiness.begin_shutdown();
        let (s, _, b) = readyz().await;
        assert_eq!((s, b), not_ready("shutting down"));
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text_with_the_namespace_gauges() {
        let source = Arc::new(Source(AtomicBool::new(true)));
        let state = AdminState {
            readiness: Arc::new(Readiness::new(source.clone())),
            namespaces: source,
            metrics: Arc::new(Metrics::new()),
        };
        let (status, ct, body) = get(&state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            ct,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert!(
            body.contains("\ngke_wi_injector_namespace_cache_size 7\n"),
            "{body}"
        );
        assert!(
            body.contains("\ngke_wi_injector_namespace_cache_synced 1\n"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
    }
}
