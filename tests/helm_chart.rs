//! The Helm chart in deploy/helm/gke-wi-injector, rendered with a pinned helm (env `HELM`, else
//! scripts/install-helm.sh): with default values it renders `kustomize build deploy/` object for
//! object (differences listed in `ALLOWED_DIFFERENCES`), every value changes what it should, the
//! schema refuses what the injector would not accept, `helm lint` is clean, and the README's
//! values table is the one generated from values.schema.json.

#[path = "helm/cases_objects.rs"]
mod cases_objects;
#[path = "helm/cases_values.rs"]
mod cases_values;
#[path = "helm/tools.rs"]
mod tools;
#[path = "helm/values_table.rs"]
mod values_table;

use std::path::Path;
use std::process::Command;

use cases_objects::{CA, KEY, LEAF};
use serde_json::{Value, json};
use tools::{CHART, NAME, NS, ROOT, helm, id, kustomize_build, render, run, try_render};

/// Where the chart's default output may differ from `kustomize build deploy/`, and why.
const ALLOWED_DIFFERENCES: [&str; 3] = [
    "Helm's standard labels (helm.sh/chart, app.kubernetes.io/instance, app.kubernetes.io/version, \
     app.kubernetes.io/managed-by) on every object's metadata.labels; selectors and Pod labels are \
     deploy/'s (a Deployment's selector is immutable)",
    "no Namespace: Helm creates the release namespace (--create-namespace); namespace.create=true \
     renders deploy/'s Namespace",
    "a NetworkPolicy, on by default in the chart (networkPolicy.enabled)",
];

fn helm_labels(release: &str) -> [(&'static str, String); 4] {
    let version = env!("CARGO_PKG_VERSION");
    [
        ("helm.sh/chart", format!("gke-wi-injector-{version}")),
        ("app.kubernetes.io/instance", release.to_string()),
        ("app.kubernetes.io/version", version.to_string()),
        ("app.kubernetes.io/managed-by", "Helm".to_string()),
    ]
}

/// Asserts Helm's standard labels are on `doc` and removes them.
fn strip_helm_labels(mut doc: Value, release: &str) -> Value {
    let what = id(&doc);
    let labels = doc["metadata"]["labels"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("{what} has no labels"));
    for (k, v) in helm_labels(release) {
        assert_eq!(
            labels.remove(k),
            Some(Value::String(v)),
            "{what}: label {k}"
        );
    }
    doc
}

fn diff(a: &Value, b: &Value) -> String {
    let a = serde_json::to_string_pretty(a).unwrap();
    let b = serde_json::to_string_pretty(b).unwrap();
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .header("kustomize build deploy/", "helm template")
        .to_string()
}

#[test]
fn default_values_render_deploy_object_for_object() {
    let kustomize = kustomize_build(&Path::new(ROOT).join("deploy"));
    let helm = render("");
    eprintln!(
        "allowed differences:\n- {}",
        ALLOWED_DIFFERENCES.join("\n- ")
    );

    let mut want = kustomize.ids();
    want.retain(|i| i != "Namespace/gke-wi-injector");
    want.push("NetworkPolicy/gke-wi-injector".into());
    want.sort();
    assert_eq!(helm.ids(), want);

    for k in &kustomize.docs {
        if k["kind"] == "Namespace" {
            continue;
        }
        let h = helm.get(
            k["kind"].as_str().unwrap(),
            k["metadata"]["name"].as_str().unwrap(),
        );
        let h = strip_helm_labels(h.clone(), NAME);
        assert!(h == *k, "{} differs:\n{}", id(k), diff(k, &h));
    }
}

#[test]
fn namespace_create_renders_deploys_namespace() {
    let kustomize = kustomize_build(&Path::new(ROOT).join("deploy"));
    let helm = render("namespace: {create: true}");
    let ns = strip_helm_labels(helm.get("Namespace", NS).clone(), NAME);
    assert_eq!(&ns, kustomize.get("Namespace", NS));
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn chart_version_follows_the_crate() {
    let chart: Value = tools::docs(
        &std::fs::read_to_string(Path::new(ROOT).join(CHART).join("Chart.yaml")).unwrap(),
    )
    .remove(0);
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn helm_lint_is_clean_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    for (i, values) in [
        json!({}),
        json!({"certificates": {"mode": "selfSigned",
               "selfSigned": {"caCrt": CA, "tlsCrt": LEAF, "tlsKey": KEY}}}),
        json!({"certificates": {"mode": "existingSecret",
               "existingSecret": {"name": "mine", "caCrt": CA}}}),
        json!({"namespace": {"create": true},
               "networkPolicy": {"apiServerCIDR": "172.16.0.2/32"},
               "monitoring": {"serviceMonitor": {"enabled": true},
                              "prometheusRule": {"enabled": true},
                              "dashboard": {"enabled": true}}}),
    ]
    .iter()
    .enumerate()
    {
        let file = dir.path().join(format!("values-{i}.json"));
        std::fs::write(&file, values.to_string()).unwrap();
        let out = run(Command::new(helm())
            .args([
                "lint",
                "--strict",
                CHART,
                "--kube-version",
                tools::KUBE_VERSION,
            ])
            .arg("--values")
            .arg(&file)
            .current_dir(ROOT));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 chart(s) linted, 0 chart(s) failed"),
            "helm lint with {values}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains("[WARNING]") && !text.contains("[ERROR]"),
            "{values}:\n{text}"
        );
    }
}

#[test]
fn the_schema_refuses_values_the_injector_would_not_accept() {
    for (values, field) in [
        ("webhook: {failurePolicy: Sometimes}", "failurePolicy"),
        ("webhook: {timeoutSeconds: 31}", "timeoutSeconds"),
        ("webhook: {timeoutSeconds: 0}", "timeoutSeconds"),
        ("replicas: 0", "replicas"),
        ("certificates: {mode: vault}", "mode"),
        ("mutation: {waitMode: sleep}", "waitMode"),
        ("mutation: {prefix: Not_A_DNS_Name}", "prefix"),
        ("logFormat: yaml", "logFormat"),
        ("image: {digest: latest}", "digest"),
        ("image: {pullPolicy: Sometimes}", "pullPolicy"),
        (
            "networkPolicy: {apiServerCIDR: 172.16.0.2}",
            "apiServerCIDR",
        ),
        ("podDisruptionBudget: {minAvailable: half}", "minAvailable"),
        (
            "webhook: {extraExcludedNamespaces: [a, a]}",
            "extraExcludedNamespaces",
        ),
        // A misspelt key is an error, not silently ignored.
        ("replica: 3", "replica"),
        ("webhook: {failurepolicy: Fail}", "failurepolicy"),
    ] {
        let err = try_render(NAME, NS, values).expect_err(values);
        assert!(
            err.contains("schema") && err.contains(field),
            "{values}: helm said {err}"
        );
    }
    // Required companions of the certificate modes.
    for (values, missing) in [
        (
            "certificates: {mode: selfSigned}",
            "certificates.selfSigned.",
        ),
        (
            "certificates: {mode: selfSigned, selfSigned: {caCrt: \"-----BEGIN CERTIFICATE-----\\n\"}}",
            "certificates.selfSigned.tlsCrt",
        ),
        (
            "certificates: {mode: existingSecret}",
            "certificates.existingSecret.",
        ),
        (
            "certificates: {mode: existingSecret, existingSecret: {name: mine}}",
            "certificates.existingSecret.caCrt",
        ),
    ] {
        let err = try_render(NAME, NS, values).expect_err(values);
        assert!(
            err.contains(missing) && err.contains("is required"),
            "{values}: helm said {err}"
        );
    }
}

#[test]
fn the_readme_values_table_is_generated_from_the_schema() {
    values_table::check_readme();
}

#[test]
fn the_schema_defaults_are_the_values_file() {
    values_table::check_defaults();
}
