//! `doctor`'s checks over hand-built snapshots: each finding, its severity, the skipped
//! reasons, the exit codes and the JSON schema. The same checks run against a real API server in
//! `tests/e2e/cases_doctor.rs`.

use std::collections::BTreeMap;

use gke_wi_injector::doctor::snapshot::{LiveInjection, NamespaceInfo, Read, Snapshot, Workload};
use gke_wi_injector::doctor::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const P: &str = "gke-wi-injector.dev";

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn opts() -> Options {
    Options {
        cfg: gke_wi_injector::engine::policy::Config::default(),
        webhook_configuration: "gke-wi-injector".into(),
        tls_secret: "gke-wi-injector-tls".into(),
        max_service_accounts: 3000,
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    }
}

fn ns(name: &str, labels: &[(&str, &str)]) -> NamespaceInfo {
    NamespaceInfo {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn our_webhook() -> Value {
    json!({
        "metadata": {"name": "gke-wi-injector"},
        "webhooks": [{
            "name": "pods.gke-wi-injector.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "reinvocationPolicy": "IfNeeded",
            "clientConfig": {"service": {"name": "gke-wi-injector", "namespace": "gke-wi-injector"}, "caBundle": ""},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {
                "matchLabels": {format!("{P}/inject"): "enabled"},
                "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "gke-wi-injector"]}]
            }
        }]
    })
}

fn pod(name: &str, extra: Value) -> Value {
    let mut p = json!({
        "metadata": {"name": name, "namespace": "team", "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "app"}]}
    });
    json_merge(&mut p, extra);
    p
}

fn json_merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                json_merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// A CA (PEM) and a 90-day serving certificate it issued for the webhook's Service.
fn certificates(validity_days: u64) -> (String, String) {
    use gke_wi_injector::server::certs::{Ca, service_names};
    use std::time::Duration;
    let ca = Ca::new("ca", Duration::from_secs(86_400 * 400)).unwrap();
    let names = service_names("gke-wi-injector", "gke-wi-injector").unwrap();
    let leaf = ca
        .issue(&names, Duration::from_secs(86_400 * validity_days))
        .unwrap();
    (ca.pem().to_string(), leaf.cert_pem)
}

fn with_ca_bundle(ca_pem: &str) -> Value {
    let mut hook = our_webhook();
    hook["webhooks"][0]["clientConfig"]["caBundle"] = json!(base64_of(ca_pem.as_bytes()));
    hook
}

fn tls_secret(cert_pem: &str) -> Value {
    json!({"metadata": {"name": "gke-wi-injector-tls"}, "data": {"tls.crt": base64_of(cert_pem.as_bytes())}})
}

/// A snapshot with one opted-in namespace `team`, everything readable, a valid certificate.
fn healthy() -> Snapshot {
    let team = "team".to_string();
    let (ca, cert) = certificates(90);
    Snapshot {
        scope: vec![team.clone()],
        namespaces: Some(Read::Ok(vec![
            ns("team", &[(&format!("{P}/inject"), "enabled")]),
            ns("kube-system", &[]),
        ])),
        webhook_configurations: Some(Read::Ok(vec![obj(with_ca_bundle(&ca))])),
        service: Some(Read::Ok(Some(obj(
            json!({"metadata": {"name": "gke-wi-injector"}}),
        )))),
        endpoint_slices: Some(Read::Ok(vec![obj(json!({
            "metadata": {"name": "s"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}]
        }))])),
        tls_secret: Some(Read::Ok(Some(obj(tls_secret(&cert))))),
        pods: BTreeMap::from([(team.clone(), Read::Ok(vec![]))]),
        workloads: BTreeMap::from([(team.clone(), Read::Ok(vec![]))]),
        replica_set_owners: BTreeMap::from([(team.clone(), Read::Ok(BTreeMap::new()))]),
        network_policies: BTreeMap::from([(team.clone(), Read::Ok(vec![]))]),
        service_accounts: BTreeMap::from([(team.clone(), Read::Ok(vec![]))]),
        service_account_counts: Some(Read::Ok(BTreeMap::from([(team.clone(), 1)]))),
        nodes: Some(Read::Ok(vec![])),
        metadata_server_pods: Some(Read::Ok(vec![])),
        live: vec![LiveInjection {
            namespace: team,
            annotations: Read::Ok(BTreeMap::from([(
                format!("{P}/injected"),
                "metadata-wait,metadata-host".to_string(),
            )])),
        }],
    }
}

fn findings(snap: &Snapshot, id: &'static str) -> Vec<Finding> {
    checks::run(id, snap, &opts()).unwrap()
}

fn only(snap: &Snapshot, id: &'static str) -> Finding {
    let mut f = findings(snap, id);
    assert_eq!(f.len(), 1, "{id}: {f:#?}");
    f.remove(0)
}

#[test]
fn a_healthy_snapshot_has_no_findings() {
    let report = run(&healthy(), &opts());
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.findings.is_empty() && c.status == Status::Ran),
        "{report:#?}"
    );
    assert_eq!(report.exit_code(true), 0);
}

#[test]
fn an_empty_or_broken_ca_bundle_is_an_error() {
    let mut snap = healthy();
    for (bundle, says) in [
        ("", "caBundle is empty"),
        ("bm90IHBlbQ==", "caBundle holds no PEM certificate"),
    ] {
        let mut hook = our_webhook();
        hook["webhooks"][0]["clientConfig"]["caBundle"] = json!(bundle);
        snap.webhook_configurations = Some(Read::Ok(vec![obj(hook)]));
        let f = only(&snap, "webhook-registered");
        assert_eq!(f.severity, Severity::Error);
        assert!(f.message.contains(says), "{}", f.message);
    }
    snap.tls_secret = Some(Read::Ok(None));
    let f = only(&snap, "certificate");
    assert_eq!(f.severity, Severity::Info);
    assert!(f.message.contains("does not exist"), "{}", f.message);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_missing_webhook_configuration_is_an_error_and_skips_the_order_check() {
    let mut snap = healthy();
    snap.webhook_configurations = Some(Read::Ok(vec![]));
    let f = only(&snap, "webhook-registered");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("does not exist"), "{}", f.message);
    assert!(f.fix.contains("kubectl apply -k deploy/"));
    let err = checks::run("webhook-order", &snap, &opts()).unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn a_selector_that_reaches_kube_system_and_fail_and_no_reinvocation_are_reported() {
    let mut snap = healthy();
    let mut hook = our_webhook();
    hook["webhooks"][0]["namespaceSelector"] = json!({});
    hook["webhooks"][0]["failurePolicy"] = json!("Fail");
    hook["webhooks"][0]["reinvocationPolicy"] = json!("Never");
    snap.webhook_configurations = Some(Read::Ok(vec![obj(hook)]));
    let f = findings(&snap, "webhook-registered");
    let messages: Vec<_> = f.iter().map(|f| (f.severity, f.message.as_str())).collect();
    let has = |sev, s: &str| messages.iter().any(|(v, m)| *v == sev && m.contains(s));
    assert!(
        has(Severity::Error, "does not exclude kube-system"),
        "{messages:#?}"
    );
    assert!(
        has(Severity::Error, "does not exclude gke-wi-injector"),
        "{messages:#?}"
    );
    assert!(
        has(Severity::Warning, "failurePolicy Fail"),
        "{messages:#?}"
    );
    assert!(
        has(Severity::Warning, "reinvocationPolicy is not IfNeeded"),
        "{messages:#?}"
    );
    assert!(
        has(
            Severity::Warning,
            "does not require gke-wi-injector.dev/inject=enabled"
        ),
        "{messages:#?}"
    );
}

#[test]
fn a_service_without_ready_endpoints_or_missing_is_an_error() {
    let mut snap = healthy();
    snap.endpoint_slices = Some(Read::Ok(vec![obj(json!({
        "metadata": {"name": "s"}, "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": false}}]
    }))]));
    let f = findings(&snap, "webhook-registered");
    assert!(
        f.iter()
            .any(|f| f.severity == Severity::Error && f.message.contains("no ready endpoint")),
        "{f:#?}"
    );
    snap.service = Some(Read::Ok(None));
    let f = findings(&snap, "webhook-registered");
    assert!(
        f.iter().any(|f| f.message.contains("which does not exist")),
        "{f:#?}"
    );
}

#[test]
fn istio_sorting_before_ours_is_an_error_after_is_fine_others_are_info() {
    let mut snap = healthy();
    let istio = |name: &str| -> Value {
        json!({"metadata": {"name": name}, "webhooks": [{
            "name": "rev.namespace.sidecar-injector.istio.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://istiod"},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
        }]})
    };
    let mut other = istio("vault-agent-injector");
    other["webhooks"][0]["name"] = json!("vault.hashicorp.com");
    snap.webhook_configurations = Some(Read::Ok(vec![
        obj(our_webhook()),
        obj(istio("istio-sidecar-injector")),
        obj(istio("aa-mesh-injector")),
        obj(other),
    ]));
    let f = findings(&snap, "webhook-order");
    assert_eq!(f.len(), 2, "{f:#?}");
    let e = f.iter().find(|f| f.severity == Severity::Error).unwrap();
    assert_eq!(e.objects, ["MutatingWebhookConfiguration/aa-mesh-injector"]);
    assert!(e.message.contains("sorts before gke-wi-injector"));
    let i = f.iter().find(|f| f.severity == Severity::Info).unwrap();
    assert!(
        i.message
            .contains("vault-agent-injector also mutates Pods, after ours"),
        "{}",
        i.message
    );
}

#[test]
fn live_injection_wants_the_features_the_labels_ask_for() {
    let mut snap = healthy();
    assert!(findings(&snap, "live-injection").is_empty());
    snap.live[0].annotations = Read::Ok(BTreeMap::new());
    let f = only(&snap, "live-injection");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("absent"), "{}", f.message);
    snap.live[0].annotations =
        Read::Failed("Internal error occurred: failed calling webhook".into());
    assert!(
        only(&snap, "live-injection")
            .message
            .contains("failed calling webhook")
    );
    snap.live[0].annotations = Read::Forbidden("create pods in team".into());
    let err = checks::run("live-injection", &snap, &opts()).unwrap_err();
    assert_eq!(err, "forbidden (needs create pods in team)");
}

#[test]
fn missed_pods_are_grouped_by_owner_with_restart_commands() {
    let mut snap = healthy();
    let owned = |name: &str, rs: &str| {
        pod(
            name,
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "u", "controller": true}]}}),
        )
    };
    let injected = {
        let mut p = pod("done", json!({}));
        let cfg = gke_wi_injector::engine::policy::Config::default();
        let labels = BTreeMap::from([(format!("{P}/inject"), "enabled".to_string())]);
        let plan = gke_wi_injector::engine::mutate::plan(&cfg, "team", &labels, &p).unwrap();
        json_patch::patch(&mut p, &plan.ops).unwrap();
        p
    };
    snap.pods.insert(
        "team".into(),
        Read::Ok(vec![
            obj(owned("api-1", "api-5d4")),
            obj(owned("api-2", "api-5d4")),
            obj(pod("bare", json!({}))),
            obj(injected),
            obj(pod(
                "optout",
                json!({"metadata": {"annotations": {format!("{P}/inject"): "disabled"}}}),
            )),
            obj(pod("host", json!({"spec": {"hostNetwork": true}}))),
            obj(pod("finished", json!({"status": {"phase": "Succeeded"}}))),
        ]),
    );
    snap.replica_set_owners.insert(
        "team".into(),
        Read::Ok(BTreeMap::from([(
            "api-5d4".into(),
            "Deployment/api".into(),
        )])),
    );
    let f = findings(&snap, "missed-pods");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[0].objects, ["Deployment/api", "pod/api-1", "pod/api-2"]);
    assert_eq!(f[0].fix, "kubectl -n team rollout restart deployment/api");
    assert!(
        f[0].message.contains("2 Pod(s) of Deployment/api"),
        "{}",
        f[0].message
    );
    assert_eq!(f[1].objects, ["pod/bare"]);
    assert_eq!(
        f[1].fix,
        "kubectl -n team get pod/bare -o yaml | kubectl -n team replace --force -f -"
    );
}

#[test]
fn a_forbidden_pod_list_skips_the_pod_checks_with_the_permission() {
    let mut snap = healthy();
    snap.pods
        .insert("team".into(), Read::Forbidden("list pods in team".into()));
    for id in ["missed-pods", "ksa-annotation", "host-network"] {
        let err = checks::run(id, &snap, &opts()).unwrap_err();
        assert_eq!(err, "forbidden (needs list pods in team)", "{id}");
    }
    let report = run(&snap, &opts());
    let text = render::text(&report);
    assert!(
        text.contains("missed-pods             skipped: forbidden (needs list pods in team)"),
        "{text}"
    );
    // Some namespaces readable, one not: the check runs and names the one it could not read.
    snap.scope.push("zeta".into());
    if let Some(Read::Ok(all)) = &mut snap.namespaces {
        all.push(ns("zeta", &[(&format!("{P}/inject"), "enabled")]));
    }
    snap.pods.insert("zeta".into(), Read::Ok(vec![]));
    let f = only(&snap, "missed-pods");
    assert_eq!(
        (f.severity, f.namespace.as_deref()),
        (Severity::Info, Some("team"))
    );
    assert_eq!(
        f.message,
        "not checked: forbidden (needs list pods in team)"
    );
}

#[test]
fn a_blocking_network_policy_is_reported_per_workload_and_bare_pod() {
    let mut snap = healthy();
    snap.network_policies.insert("team".into(), Read::Ok(vec![obj(json!({
        "metadata": {"name": "deny-egress", "namespace": "team"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}
    }))]));
    snap.workloads.insert(
        "team".into(),
        Read::Ok(vec![Workload {
            kind: "Deployment",
            name: "api".into(),
            template: json!({"metadata": {"labels": {"app": "api"}}, "spec": {"containers": []}}),
        }]),
    );
    snap.replica_set_owners.insert(
        "team".into(),
        Read::Ok(BTreeMap::from([(
            "api-5d4".into(),
            "Deployment/api".into(),
        )])),
    );
    snap.pods.insert("team".into(), Read::Ok(vec![
        obj(pod("api-1", json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-5d4", "uid": "u", "controller": true}]}}))),
        obj(pod("bare", json!({}))),
        obj(pod("host", json!({"spec": {"hostNetwork": true}}))),
    ]));
    let f = findings(&snap, "network-policy-egress");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[0].objects, ["Deployment/api"]);
    assert_eq!(f[1].objects, ["pod/bare"]);
    for f in &f {
        assert_eq!(f.severity, Severity::Error);
        assert!(
            f.message
                .contains("169.254.169.254 TCP 80, 169.254.169.252 TCP 988"),
            "{}",
            f.message
        );
        assert!(f.message.contains("deny-egress"));
        assert!(
            f.fix.contains("169.254.169.254/32") && f.fix.contains("988"),
            "{}",
            f.fix
        );
    }
}

#[test]
fn node_pools_without_the_metadata_server_label() {
    let mut snap = healthy();
    let node = |name: &str, pool: &str, enabled: bool, taint: bool| -> Value {
        let mut labels = json!({"cloud.google.com/gke-nodepool": pool});
        if enabled {
            labels["iam.gke.io/gke-metadata-server-enabled"] = json!("true");
        }
        let taints = if taint {
            json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
        } else {
            json!([])
        };
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
    };
    snap.nodes = Some(Read::Ok(vec![
        obj(node("n1", "default-pool", true, false)),
        obj(node("n2", "legacy", false, false)),
        obj(node("n3", "gpu", false, true)),
        obj(node("n4", "batch", false, false)),
    ]));
    snap.pods.insert(
        "team".into(),
        Read::Ok(vec![obj(pod(
            "on-legacy",
            json!({"spec": {"nodeName": "n2"}}),
        ))]),
    );
    let f = findings(&snap, "node-pools");
    assert_eq!(f.len(), 3, "{f:#?}");
    let by_pool = |p: &str| {
        f.iter()
            .find(|f| f.message.starts_with(&format!("node pool {p}:")))
            .unwrap()
    };
    assert_eq!(by_pool("legacy").severity, Severity::Error);
    assert!(
        by_pool("legacy")
            .objects
            .contains(&"team/pod/on-legacy".to_string())
    );
    assert!(
        by_pool("legacy")
            .fix
            .contains("--workload-metadata=GKE_METADATA")
    );
    assert_eq!(by_pool("batch").severity, Severity::Error);
    assert_eq!(by_pool("gpu").severity, Severity::Info);
    snap.nodes = Some(Read::Forbidden("list nodes".into()));
    assert_eq!(
        checks::run("node-pools", &snap, &opts()).unwrap_err(),
        "forbidden (needs list nodes)"
    );
}

#[test]
fn metadata_server_pods_crashing_oom_or_missing() {
    let mut snap = healthy();
    let mds = |name: &str, status: Value| -> Value {
        json!({"metadata": {"name": name, "namespace": "kube-system"}, "spec": {"nodeName": "n1", "containers": []}, "status": status})
    };
    let ready = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    let crash = json!({"conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "gke-metadata-server", "image": "i", "imageID": "", "ready": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]});
    let oom = json!({"conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "gke-metadata-server", "image": "i", "imageID": "", "ready": true, "restartCount": 1,
            "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]});
    snap.metadata_server_pods = Some(Read::Ok(vec![
        obj(mds("a", ready)),
        obj(mds("b", crash)),
        obj(mds("c", oom)),
    ]));
    let f = findings(&snap, "metadata-server");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(
        f[0].message.contains("CrashLoopBackOff"),
        "{}",
        f[0].message
    );
    assert!(
        f[1].message.contains("OOMKilled")
            && f[1]
                .message
                .contains("number of Kubernetes service accounts")
    );
    // None at all, on a cluster whose nodes have Workload Identity: an error.
    snap.metadata_server_pods = Some(Read::Ok(vec![]));
    snap.nodes = Some(Read::Ok(vec![obj(
        json!({"metadata": {"name": "n1", "labels": {"iam.gke.io/gke-metadata-server-enabled": "true"}}}),
    )]));
    let f = only(&snap, "metadata-server");
    assert!(
        f.message.starts_with("no gke-metadata-server Pod"),
        "{}",
        f.message
    );
}

#[test]
fn service_accounts_over_the_threshold_warn_with_the_top_namespaces() {
    let mut snap = healthy();
    let counts: BTreeMap<String, usize> = (0..12)
        .map(|i| (format!("ns-{i:02}"), 100 + i * 30))
        .collect();
    snap.service_account_counts = Some(Read::Ok(counts));
    let mut o = opts();
    o.max_service_accounts = 1000;
    let f = checks::run("service-account-count", &snap, &o).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(
        f[0].message.starts_with("3180 ServiceAccounts"),
        "{}",
        f[0].message
    );
    assert!(f[0].message.contains("ns-11: 430"), "{}", f[0].message);
    assert_eq!(f[0].objects.len(), 10);
    assert_eq!(
        findings(&snap, "service-account-count").len(),
        1,
        "3180 is over the default 3000"
    );
    o.max_service_accounts = 3180;
    assert!(
        checks::run("service-account-count", &snap, &o)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn service_account_annotations() {
    let mut snap = healthy();
    let sa = |name: &str, gsa: Option<&str>| -> Value {
        let mut v = json!({"metadata": {"name": name, "namespace": "team"}});
        if let Some(g) = gsa {
            v["metadata"]["annotations"] = json!({"iam.gke.io/gcp-service-account": g});
        }
        v
    };
    snap.service_accounts.insert(
        "team".into(),
        Read::Ok(vec![
            obj(sa(
                "good",
                Some("app-runner@my-project.iam.gserviceaccount.com"),
            )),
            obj(sa("bad", Some("app-runner@my-project"))),
            obj(sa("direct", None)),
            obj(sa("unused", Some("nope"))),
        ]),
    );
    let with_sa = |n: &str, sa: &str| obj(pod(n, json!({"spec": {"serviceAccountName": sa}})));
    snap.pods.insert(
        "team".into(),
        Read::Ok(vec![
            with_sa("a", "good"),
            with_sa("b", "bad"),
            with_sa("c", "direct"),
        ]),
    );
    let f = findings(&snap, "ksa-annotation");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(
        (f[0].severity, f[0].objects[0].as_str()),
        (Severity::Error, "serviceaccount/bad")
    );
    assert_eq!(
        (f[1].severity, f[1].objects[0].as_str()),
        (Severity::Info, "serviceaccount/direct")
    );
    assert!(f[1].message.contains("principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/PROJECT_ID.svc.id.goog/subject/ns/team/sa/direct"));
    let manual = checks::manual_checks(&snap, &opts());
    assert!(
        manual.iter().any(|m| m
            .contains("get-iam-policy app-runner@my-project.iam.gserviceaccount.com")
            && m.contains("serviceAccount:my-project.svc.id.goog[team/good]")),
        "{manual:#?}"
    );
}

#[test]
fn gsa_emails() {
    use checks::well_formed_gsa as ok;
    assert!(ok("app-runner@my-project.iam.gserviceaccount.com"));
    assert!(ok("a12345@p12345.iam.gserviceaccount.com"));
    for bad in [
        "app@my-project.iam.gserviceaccount.com",
        "app-runner@my-project",
        "App-Runner@my-project.iam.gserviceaccount.com",
        "app-runner-@my-project.iam.gserviceaccount.com",
        "app-runner@1project.iam.gserviceaccount.com",
        "app-runner",
        "",
    ] {
        assert!(!ok(bad), "{bad}");
    }
}

#[test]
fn all_namespaces_names_those_with_workload_identity_that_did_not_opt_in() {
    let mut snap = healthy();
    snap.scope = vec!["other".into(), "team".into()];
    if let Some(Read::Ok(all)) = &mut snap.namespaces {
        all.push(ns("other", &[]));
    }
    snap.service_accounts.insert("other".into(), Read::Ok(vec![obj(json!({"metadata": {"name": "app", "namespace": "other",
        "annotations": {"iam.gke.io/gcp-service-account": "app-runner@my-project.iam.gserviceaccount.com"}}}))]));
    let f = only(&snap, "ksa-annotation");
    assert_eq!(
        (f.severity, f.namespace.as_deref()),
        (Severity::Warning, Some("other"))
    );
    assert_eq!(
        f.fix,
        "kubectl label namespace other gke-wi-injector.dev/inject=enabled"
    );
}

#[test]
fn host_network_pods_warn() {
    let mut snap = healthy();
    snap.pods.insert(
        "team".into(),
        Read::Ok(vec![obj(pod("h", json!({"spec": {"hostNetwork": true}})))]),
    );
    let f = only(&snap, "host-network");
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.objects, ["pod/h"]);
}

#[test]
fn istio_ambient_and_disabled_namespaces_warn() {
    let mut snap = healthy();
    let inject = format!("{P}/inject");
    snap.scope = vec!["amb".into(), "off".into(), "rev".into()];
    snap.namespaces = Some(Read::Ok(vec![
        ns(
            "amb",
            &[(&inject, "enabled"), ("istio.io/dataplane-mode", "ambient")],
        ),
        ns(
            "off",
            &[
                (&inject, "enabled"),
                ("istio-injection", "enabled"),
                (&format!("{P}/istio"), "disabled"),
            ],
        ),
        ns("rev", &[(&inject, "enabled"), ("istio.io/rev", "canary")]),
    ]));
    let f = findings(&snap, "istio-mode");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(f[0].message.contains("ambient"));
    assert!(f[1].message.contains("gke-wi-injector.dev/istio=disabled"));
    assert_eq!(
        f[1].fix,
        "kubectl label namespace off gke-wi-injector.dev/istio-"
    );
}

#[test]
fn certificates_expiring_expired_or_not_verified_by_the_ca_bundle() {
    let (ca, cert) = certificates(10);
    let mut snap = healthy();
    snap.webhook_configurations = Some(Read::Ok(vec![obj(with_ca_bundle(&ca))]));
    snap.tls_secret = Some(Read::Ok(Some(obj(tls_secret(&cert)))));
    let mut o = opts();
    let f = checks::run("certificate", &snap, &o).unwrap();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].severity, Severity::Warning);
    // Ten days less the seconds since it was issued, rounded up.
    assert_eq!(f[0].message, "the serving certificate expires in 10 days");
    // Another CA in the bundle: the served certificate does not verify.
    let (other, _) = certificates(10);
    snap.webhook_configurations = Some(Read::Ok(vec![obj(with_ca_bundle(&other))]));
    let f = checks::run("certificate", &snap, &o).unwrap();
    assert!(
        f.iter()
            .any(|f| f.severity == Severity::Error && f.message.contains("does not verify")),
        "{f:#?}"
    );
    // Expired.
    o.now += 86_400 * 11;
    let f = checks::run("certificate", &snap, &o).unwrap();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].severity, Severity::Error);
    assert!(
        f[0].message.starts_with("the serving certificate expired"),
        "{}",
        f[0].message
    );
    snap.tls_secret = Some(Read::Forbidden("get secrets in gke-wi-injector".into()));
    assert_eq!(
        checks::run("certificate", &snap, &o).unwrap_err(),
        "forbidden (needs get secrets in gke-wi-injector)"
    );
}

#[test]
fn exit_codes_follow_the_worst_severity() {
    let report = |sev: Option<Severity>| Report {
        scope: vec![],
        checks: vec![CheckResult {
            id: "host-network",
            status: Status::Ran,
            findings: sev
                .map(|s| Finding::new("host-network", s, "x"))
                .into_iter()
                .collect(),
        }],
        manual_checks: vec![],
    };
    assert_eq!(report(None).exit_code(true), 0);
    assert_eq!(report(Some(Severity::Info)).exit_code(true), 0);
    assert_eq!(report(Some(Severity::Warning)).exit_code(false), 0);
    assert_eq!(report(Some(Severity::Warning)).exit_code(true), 1);
    assert_eq!(report(Some(Severity::Error)).exit_code(false), 1);
    let skipped = Report {
        scope: vec![],
        checks: vec![CheckResult {
            id: "node-pools",
            status: Status::Skipped("forbidden (needs list nodes)".into()),
            findings: vec![],
        }],
        manual_checks: vec![],
    };
    assert_eq!(
        skipped.exit_code(true),
        0,
        "a skipped check is not a failure, but it is never a pass either"
    );
    assert_eq!(render::json(&skipped)["checks"][0]["status"], "skipped");
}

#[test]
fn the_json_schema() {
    let mut snap = healthy();
    snap.nodes = Some(Read::Forbidden("list nodes".into()));
    if let Some(Read::Ok(configs)) = &mut snap.webhook_configurations {
        configs.push(obj(json!({"metadata": {"name": "aa-istio"}, "webhooks": [{
            "name": "namespace.sidecar-injector.istio.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://istiod"},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
        }]})));
    }
    let report = run(&snap, &opts());
    let v = render::json(&report);
    assert_eq!(v["schemaVersion"], 1);
    assert_eq!(v["scope"], json!(["team"]));
    assert_eq!(
        v["summary"],
        json!({"error": 1, "warning": 0, "info": 0, "skipped": 1})
    );
    // The one error: an Istio injector sorting before ours.
    let ids: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, CHECKS);
    let nodes = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "node-pools")
        .unwrap();
    assert_eq!(
        nodes,
        &json!({"id": "node-pools", "status": "skipped", "reason": "forbidden (needs list nodes)", "findings": 0})
    );
    let f = &v["findings"][0];
    let keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "check",
            "severity",
            "namespace",
            "objects",
            "message",
            "fix"
        ]
    );
    assert_eq!(f["check"], "webhook-order");
    assert_eq!(
        f["objects"],
        json!(["MutatingWebhookConfiguration/aa-istio"])
    );
    assert_eq!(f["severity"], "error");
    assert_eq!(f["namespace"], Value::Null);
    assert!(v["manualChecks"].as_array().unwrap().iter().any(|m| {
        m.as_str()
            .unwrap()
            .contains("workloadIdentityConfig.workloadPool")
    }));
}

#[test]
fn the_readme_shows_the_end_to_end_report() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let report =
        std::fs::read_to_string(format!("{root}/tests/fixtures/doctor/failing.txt")).unwrap();
    assert!(
        readme.contains(&format!("```text\n{report}```")),
        "README.md's doctor report differs from tests/fixtures/doctor/failing.txt (copy it into the README)"
    );
}

#[test]
fn an_unreadable_cidr_is_named() {
    let mut snap = healthy();
    snap.network_policies.insert(
        "team".into(),
        Read::Ok(vec![obj(json!({
            "metadata": {"name": "odd", "namespace": "team"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"ipBlock": {"cidr": "169.254.169.254"}}]}]}
        }))]),
    );
    let f = only(&snap, "network-policy-egress");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("(169.254.169.254)"), "{}", f.message);
    assert_eq!(f.objects, ["NetworkPolicy/odd"]);
}
