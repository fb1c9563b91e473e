//! Realistic Pod CREATE AdmissionReviews for the benchmarks, shaped like kube-apiserver's.
#![allow(dead_code)]

use serde_json::{Value, json};

#[path = "../../tests/support/fixtures.rs"]
mod fixtures;
#[allow(unused_imports)]
pub use fixtures::free_port;

/// The binary the server benchmarks start: this build's, or `BENCH_SERVER_BIN` (for example the
/// image's static binary from `scripts/build-static.sh`).
pub fn server_binary() -> std::path::PathBuf {
    std::env::var_os("BENCH_SERVER_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_gke-wi-injector").into())
}

pub fn review(pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "", "namespace": "team", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "uid": "4c1e", "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": pod, "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    }))
    .unwrap()
}

pub fn container(name: &str, env: usize) -> Value {
    let env: Vec<Value> = (0..env).map(|i| json!({"name": format!("VAR_{i}"), "value": format!("value-{i}-{}", "x".repeat(16))})).collect();
    json!({
        "name": name, "image": format!("us-docker.pkg.dev/team/{name}:1.2.3"),
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
    })
}

pub fn pod(containers: usize, env: usize, padding: usize) -> Value {
    let cs: Vec<Value> = (0..containers)
        .map(|i| container(&format!("c{i}"), env))
        .collect();
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "generateName": "web-7d9c8b-", "namespace": "team",
            "labels": {"app": "web", "pod-template-hash": "7d9c8b"},
            "annotations": {"example.com/blob": "p".repeat(padding)},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c8b", "uid": "e5f6", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-11-25T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:generateName": {}}}}]
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}}],
            "containers": cs,
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "web", "securityContext": {}, "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {}
    })
}

/// Creates `items` (JSON objects) with `kubectl create` (`kubectl` builds the command for the
/// arguments) in 4 parallel Lists written under `dir`; returns how long it took.
pub fn create_in_lists(
    dir: &std::path::Path,
    name: &str,
    items: &[String],
    kubectl: impl Fn(&[&str]) -> std::process::Command,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    let batches = 4;
    let mut children = Vec::new();
    for b in 0..batches {
        let part: Vec<&str> = items
            .iter()
            .skip(b)
            .step_by(batches)
            .map(String::as_str)
            .collect();
        let list = format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
            part.join(",")
        );
        let path = dir.join(format!("{name}-{b}.json"));
        std::fs::write(&path, list).unwrap();
        let child = kubectl(&["create", "-f", path.to_str().unwrap(), "-o", "name"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        children.push(child);
    }
    for mut c in children {
        assert!(c.wait().unwrap().success(), "kubectl create failed");
    }
    started.elapsed()
}
