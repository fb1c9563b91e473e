//! Fixtures shared by the unit tests (`src/`, through `#[path]`), the integration tests (as
//! `support::fixtures`) and the benchmarks: a Pod CREATE AdmissionReview as kube-apiserver sends
//! it, and free loopback ports. Only `serde_json` and `std`, so every target can include it.
#![allow(dead_code)]

use serde_json::{Value, json};

/// The `request.uid` of [`pod_review`].
pub const UID: &str = "0f3c1c9e-8d2b-4a5b-9c1d-2e3f4a5b6c7d";

/// A Pod CREATE review as kube-apiserver sends it.
pub fn pod_review(namespace: &str, pod: Value, dry_run: bool) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "", "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "uid": "3f1c2d4e-5a6b-7c8d-9e0f-1a2b3c4d5e6f",
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": pod, "oldObject": null, "dryRun": dry_run,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kube-controller-manager"}
        }
    })
}

/// A port on 127.0.0.1 that was free a moment ago: nothing listens on it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
