//! Engine cost per AdmissionReview: decode + plan + patch + encode, as the server pays it.
//! `cargo bench --bench engine`; the figures are reported in the README ("Performance").

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gke_wi_injector::admission::{self, NamespaceLabels, OnError};
use gke_wi_injector::policy::{Config, Labels};
use serde_json::{Value, json};

fn review(pod: Value) -> Vec<u8> {
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

fn container(name: &str, env: usize) -> Value {
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

fn pod(containers: usize, env: usize, padding: usize) -> Value {
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

fn answer(body: &[u8], labels: &Labels, cfg: &Config) -> Vec<u8> {
    let req = admission::parse_review(body).unwrap();
    let outcome = admission::review(req, NamespaceLabels::Known(labels), cfg, OnError::Allow);
    admission::encode(&outcome.review)
}

fn engine(c: &mut Criterion) {
    let cfg = Config::default();
    let on: Labels = [
        ("gke-wi-injector.dev/inject".into(), "enabled".into()),
        ("istio-injection".into(), "enabled".into()),
    ]
    .into();
    let off = Labels::new();
    let cases = [
        ("typical_3_containers", review(pod(3, 8, 0)), &on),
        ("30_containers_long_env", review(pod(30, 60, 0)), &on),
        ("1mib_pod", review(pod(3, 8, 1024 * 1024)), &on),
        ("noop_not_opted_in", review(pod(3, 8, 0)), &off),
    ];
    let mut group = c.benchmark_group("review");
    for (name, body, labels) in &cases {
        // Every case must really do what it claims before it is timed.
        let out: Value = serde_json::from_slice(&answer(body, labels, &cfg)).unwrap();
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(
            out["response"].get("patch").is_some(),
            !labels.is_empty(),
            "{name}"
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| b.iter(|| answer(black_box(body), labels, &cfg)));
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
