//! Shared fixtures of the server tests: realistic AdmissionReviews, namespace sources, an
//! in-process server on 127.0.0.1, and an HTTPS client that trusts only a given CA.
#![allow(dead_code)]

pub mod client;
pub mod fixtures;
pub mod h2;
pub mod limits;
pub mod router;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gke_wi_injector::admission::OnError;
use gke_wi_injector::engine::policy::{Config, Labels};
use gke_wi_injector::namespaces::{Fetched, FileNamespaces, NamespaceSource};
use gke_wi_injector::server::certs::{Ca, Leaf};
use gke_wi_injector::server::metrics::Metrics;
use gke_wi_injector::server::tls::{CertSource, Tls};
use gke_wi_injector::server::{AppState, BODY_TIMEOUT};
use gke_wi_injector::server::{Listeners, Server};
use serde_json::{Value, json};
use tokio::sync::watch;

pub use fixtures::{UID, free_port, pod_review};

pub const P: &str = "gke-wi-injector.dev";

/// A Pod as a ReplicaSet controller creates it: generateName, owner, managedFields, a native
/// sidecar (`restartPolicy: Always` on an init container) and a field the Rust types do not know.
pub fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "web-7d9c5b-", "namespace": "team",
            "labels": {"app": "web", "pod-template-hash": "7d9c5b"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c5b",
                                 "uid": "6b1e0a52-0c1d-4f5e-8a9b-0c1d2e3f4a5b", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-11-25T10:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}}}}}]
        },
        "spec": {
            "initContainers": [{"name": "log-shipper", "image": "fluent-bit:3.1", "restartPolicy": "Always",
                                "resources": {}, "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "containers": [{"name": "web", "image": "nginx:1.27",
                            "env": [{"name": "PORT", "value": "8080"}],
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "resources": {"requests": {"cpu": "100m"}},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "web", "serviceAccount": "web", "securityContext": {},
            "schedulerName": "default-scheduler", "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
            "futureField": {"kept": ["as", "is"]}
        },
        "status": {}
    })
}

/// Labels of the test namespaces: `team` opts in and runs Istio, `plain` does not opt in.
pub fn namespace_labels() -> HashMap<String, Arc<Labels>> {
    let labels = |pairs: &[(&str, &str)]| -> Arc<Labels> {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    HashMap::from([
        (
            "team".to_string(),
            labels(&[
                (&format!("{P}/inject"), "enabled"),
                ("istio-injection", "enabled"),
            ]),
        ),
        ("plain".to_string(), labels(&[("team", "plain")])),
    ])
}

/// The same namespaces as a `--namespaces` file.
pub const NAMESPACES_YAML: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: team
  labels: {gke-wi-injector.dev/inject: enabled, istio-injection: enabled}
---
apiVersion: v1
kind: Namespace
metadata:
  name: plain
  labels: {team: plain}
";

/// A namespace source held in memory; a miss answers `Unknown` with `miss_reason`.
#[derive(Debug)]
pub struct StaticNamespaces {
    pub namespaces: HashMap<String, Arc<Labels>>,
    pub miss_reason: String,
}

impl NamespaceSource for StaticNamespaces {
    fn cached(&self, namespace: &str) -> Option<Arc<Labels>> {
        self.namespaces.get(namespace).cloned()
    }
    fn fetch<'a>(&'a self, _namespace: &'a str) -> BoxFuture<'a, Fetched> {
        Box::pin(std::future::ready(Fetched::Unknown(
            self.miss_reason.clone(),
        )))
    }
    fn synced(&self) -> bool {
        true
    }
    fn len(&self) -> usize {
        self.namespaces.len()
    }
}

pub fn app_state(on_error: OnError) -> AppState {
    AppState {
        config: Arc::new(Config::default()),
        on_error,
        namespaces: Arc::new(StaticNamespaces {
            namespaces: namespace_labels(),
            miss_reason: "API server unreachable".into(),
        }),
        metrics: Arc::new(Metrics::new()),
        body_timeout: BODY_TIMEOUT,
        body_budget: gke_wi_injector::server::budget::BodyBudget::new(
            gke_wi_injector::server::BODY_BUDGET_BYTES,
        ),
    }
}

pub const TEST_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// An in-process server on 127.0.0.1 with `--tls-cert`/`--tls-key` files it re-reads, and a
/// `--namespaces` file.
pub struct TestServer {
    pub server: Server,
    pub ca: Ca,
    pub dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub metrics: Arc<Metrics>,
}

impl TestServer {
    pub async fn start(reload_interval: Duration, shutdown_grace: Duration) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA", Duration::from_secs(3600)).unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let ns_path = dir.path().join("namespaces.yaml");
        std::fs::write(&ns_path, NAMESPACES_YAML).unwrap();
        let first = issue(&ca);
        write_atomically(&cert_path, first.cert_pem.as_bytes());
        write_atomically(&key_path, first.key_pem.as_bytes());

        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = watch::channel(false);
        let source = CertSource::Files {
            cert: cert_path.clone(),
            key: key_path.clone(),
        };
        let mut tls = Tls::load(&source, &metrics).unwrap();
        tls.spawn_reloader(reload_interval, metrics.clone(), stopped.clone());
        let (namespaces, contents) = FileNamespaces::load(&ns_path).unwrap();
        gke_wi_injector::server::reload::spawn_namespaces_file(
            &namespaces,
            contents,
            reload_interval,
            metrics.clone(),
            stopped,
        );
        let app = AppState {
            config: Arc::new(Config::default()),
            on_error: OnError::Allow,
            namespaces,
            metrics: metrics.clone(),
            body_timeout: BODY_TIMEOUT,
            body_budget: gke_wi_injector::server::budget::BodyBudget::new(
                gke_wi_injector::server::BODY_BUDGET_BYTES,
            ),
        };
        let any = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners::bind(any, any).await.unwrap();
        let server = Server::start(
            listeners,
            shutdown_grace,
            gke_wi_injector::server::connections::Limits::default(),
            app,
            tls.server_config().unwrap(),
            stop,
        );
        TestServer {
            server,
            ca,
            dir,
            cert_path,
            key_path,
            metrics,
        }
    }

    /// A new serving certificate from the same CA.
    pub fn leaf(&self) -> Leaf {
        issue(&self.ca)
    }

    /// Replaces the files the way a careful writer does: each one renamed into place.
    pub fn write_pair(&self, leaf: &Leaf) {
        write_atomically(&self.cert_path, leaf.cert_pem.as_bytes());
        write_atomically(&self.key_path, leaf.key_pem.as_bytes());
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.server.admin_addr()
    }
}

pub fn write_atomically(path: &std::path::Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn issue(ca: &Ca) -> Leaf {
    let names: Vec<String> = TEST_NAMES.iter().map(|s| s.to_string()).collect();
    ca.issue(&names, Duration::from_secs(3600)).unwrap()
}
