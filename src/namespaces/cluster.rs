//! Namespace labels from the cluster: a metadata-only watch of Namespaces (kube-runtime watcher
//! and reflector store) answers from memory; a namespace the cache does not have yet (just
//! created) costs one GET with a short timeout. When the API server is unreachable, the cache
//! keeps serving what it has and the watch retries with backoff. RBAC: `get`, `list`, `watch` on
//! `namespaces`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use super::{Fetched, NamespaceSource};
use crate::engine::policy::Labels;

type NamespaceMeta = PartialObjectMeta<Namespace>;

/// Why there is no cluster to watch.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no namespace source: pass --namespaces FILE, or run in a cluster (in-cluster service account) or with \
         KUBECONFIG pointing to a cluster configuration ({0})"
    )]
    NoConfig(kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(kube::Error),
}

/// A client from the in-cluster service account or KUBECONFIG (`kube::Config::infer`).
pub async fn client() -> Result<Client, ClusterError> {
    let config = kube::Config::infer()
        .await
        .map_err(ClusterError::NoConfig)?;
    Client::try_from(config).map_err(ClusterError::Client)
}

#[derive(Debug)]
pub struct KubeNamespaces {
    store: Store<NamespaceMeta>,
    api: Api<NamespaceMeta>,
    get_timeout: Duration,
    synced: Arc<AtomicBool>,
}

impl KubeNamespaces {
    /// Starts the watch (in a task that ends when `stop` turns true) and returns the source at once;
    /// it reports `synced` after the first complete list.
    pub fn start(
        client: Client,
        get_timeout: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> Arc<KubeNamespaces> {
        let api = Api::<NamespaceMeta>::all(client);
        let (store, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        // The store keeps what identifies a namespace and its labels; managed fields and
        // annotations (kubectl's last-applied configuration among them) are most of a
        // namespace's metadata and are dropped as each object arrives.
        let events = reflector::reflector(
            writer,
            watcher(api.clone(), watcher::Config::default())
                .default_backoff()
                .modify(keep_name_and_labels),
        );
        let flag = synced.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    _ = stop.wait_for(|stopped| *stopped) => return,
                };
                match event {
                    Some(Ok(watcher::Event::InitDone)) => {
                        if !flag.swap(true, Ordering::SeqCst) {
                            tracing::info!("namespace cache synced");
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => tracing::warn!(
                        %error,
                        "namespace watch failed; cached labels keep serving while it retries with backoff"
                    ),
                    None => return,
                }
            }
        });
        Arc::new(KubeNamespaces {
            store,
            api,
            get_timeout,
            synced,
        })
    }
}

/// Drops what the injector never reads from a cached namespace.
fn keep_name_and_labels(ns: &mut NamespaceMeta) {
    let meta = &mut ns.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
    meta.creation_timestamp = None;
    meta.deletion_timestamp = None;
    meta.generate_name = None;
}

fn labels_of(meta: &NamespaceMeta) -> Arc<Labels> {
    Arc::new(
        meta.metadata
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    )
}

impl NamespaceSource for KubeNamespaces {
    fn cached(&self, namespace: &str) -> Option<Arc<Labels>> {
        self.store
            .get(&ObjectRef::new(namespace))
            .map(|meta| labels_of(&meta))
    }

    fn fetch<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Fetched> {
        Box::pin(async move {
            match tokio::time::timeout(self.get_timeout, self.api.get_opt(namespace)).await {
                Ok(Ok(Some(meta))) => Fetched::Found(labels_of(&meta)),
                Ok(Ok(None)) => Fetched::Unknown(format!("namespace {namespace:?} not found")),
                Ok(Err(e)) => Fetched::Unknown(format!("GET namespace {namespace:?} failed: {e}")),
                Err(_) => Fetched::Unknown(format!(
                    "GET namespace {namespace:?} timed out after {} ms",
                    self.get_timeout.as_millis()
                )),
            }
        })
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    fn len(&self) -> usize {
        self.store.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespaces::{Lookup, lookup};
    use axum::body::Body;
    use axum::http::{Request, Response, StatusCode};
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    /// A fake API server: lists `team`, serves `fresh` on GET, is slow for `slow`, 404 otherwise;
    /// watches never answer. With `outage`, every request after the first list fails with 503.
    fn fake_api(outage: bool) -> (Client, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, std::convert::Infallible>(answer(req, outage && call > 0).await) }
        });
        (Client::new(service, "default"), calls)
    }

    async fn answer(req: Request<kube::client::Body>, down: bool) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let meta = |name: &str, labels: serde_json::Value| {
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                       "metadata": {"name": name, "labels": labels, "resourceVersion": "1"}})
        };
        let (status, body) = match path.as_str() {
            _ if down => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable", "code": 503}),
            ),
            "/api/v1/namespaces" if query.contains("watch=true") => {
                std::future::pending::<(StatusCode, serde_json::Value)>().await
            }
            "/api/v1/namespaces" => (
                StatusCode::OK,
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                           "metadata": {"resourceVersion": "1"},
                           "items": [meta("team", json!({"gke-wi-injector.dev/inject": "enabled"}))]}),
            ),
            "/api/v1/namespaces/fresh" => (StatusCode::OK, meta("fresh", json!({"new": "yes"}))),
            "/api/v1/namespaces/slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                (StatusCode::OK, meta("slow", json!({})))
            }
            _ => (
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
            ),
        };
        Response::builder()
            .status(status)
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    fn one(k: &str, v: &str) -> Arc<Labels> {
        Arc::new([(k.to_string(), v.to_string())].into())
    }

    async fn synced_source(outage: bool) -> (Arc<KubeNamespaces>, Arc<AtomicUsize>) {
        let (stop_tx, stop) = watch::channel(false);
        std::mem::forget(stop_tx); // the watch runs for the whole test
        let (client, calls) = fake_api(outage);
        let source = KubeNamespaces::start(client, Duration::from_millis(200), stop);
        for _ in 0..100 {
            if source.synced() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(source.synced());
        (source, calls)
    }

    #[tokio::test]
    async fn when_the_api_server_goes_away_cached_labels_keep_serving() {
        let (source, calls) = synced_source(true).await;
        // The watch fails and retries with backoff (about a second apart) meanwhile.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::SeqCst) < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the watch did not retry"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(source.synced());
        assert_eq!(source.len(), 1);
        assert_eq!(
            lookup(source.as_ref(), "team").await,
            Lookup::Cached(one("gke-wi-injector.dev/inject", "enabled"))
        );
        let Lookup::Unknown(reason) = lookup(source.as_ref(), "fresh").await else {
            panic!("a miss cannot be answered during the outage")
        };
        assert!(
            reason.starts_with("GET namespace \"fresh\" failed: "),
            "{reason}"
        );
    }

    #[test]
    fn the_cache_keeps_names_and_labels_only() {
        let mut ns: NamespaceMeta = serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "team", "uid": "u1", "resourceVersion": "7",
                "creationTimestamp": "2026-11-29T10:00:00Z",
                "labels": {"gke-wi-injector.dev/inject": "enabled"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}],
                "finalizers": ["kubernetes"]
            }
        }))
        .unwrap();
        keep_name_and_labels(&mut ns);
        let kept = serde_json::to_value(&ns.metadata).unwrap();
        assert_eq!(
            kept,
            json!({"name": "team", "uid": "u1", "resourceVersion": "7",
                   "labels": {"gke-wi-injector.dev/inject": "enabled"}})
        );
    }

    #[tokio::test]
    async fn watch_cache_then_one_get_for_a_miss() {
        let (source, _) = synced_source(false).await;
        assert_eq!(source.len(), 1);
        assert_eq!(
            lookup(source.as_ref(), "team").await,
            Lookup::Cached(one("gke-wi-injector.dev/inject", "enabled"))
        );
        assert_eq!(
            lookup(source.as_ref(), "fresh").await,
            Lookup::Fetched(one("new", "yes"))
        );
        assert_eq!(
            lookup(source.as_ref(), "gone").await,
            Lookup::Unknown("namespace \"gone\" not found".into())
        );
        let started = std::time::Instant::now();
        assert_eq!(
            lookup(source.as_ref(), "slow").await,
            Lookup::Unknown("GET namespace \"slow\" timed out after 200 ms".into())
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
