//! `doctor` against the real API server: every failing condition created for real (a blocking
//! NetworkPolicy and one that allows the metadata server, Nodes with and without the Workload
//! Identity label, `gke-metadata-server` Pods whose status is set through the status subresource,
//! a Pod created before its namespace opted in, a mis-ordered Istio-named webhook configuration,
//! a certificate Secret the caBundle does not verify, a user who may not list Pods), each
//! finding asserted, the clean report on a healthy setup, the exit codes, the kubectl plugin,
//! and the JSON report compared with `tests/fixtures/doctor/*.json` (`GKE_WI_E2E_BLESS=1`
//! rewrites them).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::harness::{BIN, REPO, kubectl_obj, output, run, run_stdin};
use crate::{Env, P, create_pod, kubectl, namespace, pod};

/// `doctor` as the admin (or with `kubeconfig`); (exit status, stdout, stderr).
fn doctor(env: &Env, kubeconfig: Option<&Path>, args: &[&str]) -> Result<(i32, String, String)> {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GKE_WI_INJECTOR_") {
            cmd.env_remove(k);
        }
    }
    let kc = kubeconfig.unwrap_or(env.cp.kubeconfig_admin());
    cmd.arg("doctor")
        .arg(format!("--kubeconfig={}", kc.display()))
        .args(args);
    let out = output(&mut cmd, "")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

fn json_report(env: &Env, kubeconfig: Option<&Path>, args: &[&str]) -> Result<(i32, Value)> {
    let mut all = vec!["-o", "json"];
    all.extend(args);
    let (code, stdout, stderr) = doctor(env, kubeconfig, &all)?;
    let v: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("doctor printed no JSON (exit {code}):\n{stdout}\n{stderr}"))?;
    Ok((code, v))
}

fn findings<'a>(report: &'a Value, check: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["check"] == check)
        .collect()
}

fn has(report: &Value, check: &str, severity: &str, text: &str) -> Result<()> {
    ensure!(
        findings(report, check).iter().any(
            |f| f["severity"] == severity && f["message"].as_str().unwrap_or("").contains(text)
        ),
        "no {severity} finding of {check} saying {text:?}; findings of {check}: {:#}",
        json!(findings(report, check))
    );
    Ok(())
}

/// The report with what changes from run to run (the injector's port) replaced.
fn normalized(report: &Value, injector_url: &str) -> String {
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    format!(
        "{}\n",
        text.replace(injector_url, "https://127.0.0.1:PORT/mutate")
    )
}

fn golden(name: &str, got: &str) -> Result<()> {
    let path = Path::new(REPO).join("tests/fixtures/doctor").join(name);
    if std::env::var_os("GKE_WI_E2E_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        std::fs::write(&path, got)?;
        return Ok(());
    }
    let want = std::fs::read_to_string(&path)
        .with_context(|| format!("{} (GKE_WI_E2E_BLESS=1 writes it)", path.display()))?;
    ensure!(
        want == got,
        "doctor's JSON differs from {} (GKE_WI_E2E_BLESS=1 rewrites it):\n{}",
        path.display(),
        similar::TextDiff::from_lines(want.as_str(), got).unified_diff()
    );
    Ok(())
}

fn apply(env: &Env, obj: Value) -> Result<Value> {
    kubectl_obj(&env.cp, &["apply"], &obj)
}

fn set_status(env: &Env, ns: &str, name: &str, status: Value) -> Result<()> {
    run(env.cp.kubectl(&[
        "patch",
        "pod",
        "-n",
        ns,
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": status}).to_string(),
    ]))?;
    Ok(())
}

fn node(name: &str, pool: &str, wi: bool) -> Value {
    let mut labels = json!({"cloud.google.com/gke-nodepool": pool, "kubernetes.io/hostname": name});
    if wi {
        labels["iam.gke.io/gke-metadata-server-enabled"] = json!("true");
    }
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
}

fn metadata_server_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": "gke-metadata-server"}},
        "spec": {"nodeName": "node-wi", "containers": [{"name": "gke-metadata-server", "image": "gke-metadata-server:1"}]}
    })
}

fn container_status(state: Value, last: Value) -> Value {
    json!([{"name": "gke-metadata-server", "image": "gke-metadata-server:1", "imageID": "", "ready": false,
            "restartCount": 3, "state": state, "lastState": last}])
}

fn ready(is: bool) -> Value {
    json!([{"type": "Ready", "status": if is { "True" } else { "False" }}])
}

fn opt_in() -> [(String, &'static str); 1] {
    [(format!("{P}/inject"), "enabled")]
}

fn labels<'a>(l: &'a [(String, &'static str)]) -> Vec<(&'a str, &'a str)> {
    l.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

/// The objects of `doctor`'s `webhook-order` errors, scoped to `ns`.
pub fn webhook_order_errors(env: &Env, ns: &str) -> Result<Vec<String>> {
    let (_, report) = json_report(env, None, &["-n", ns])?;
    Ok(findings(&report, "webhook-order")
        .iter()
        .filter(|f| f["severity"] == "error")
        .flat_map(|f| f["objects"].as_array().into_iter().flatten())
        .filter_map(|o| o.as_str().map(str::to_owned))
        .collect())
}

/// A healthy setup: one opted-in namespace, a node with Workload Identity and a Ready metadata
/// server Pod. Clean report, exit 0, also through the kubectl plugin.
pub fn healthy(env: &Env) -> Result<()> {
    namespace(&env.cp, "doc-ok", &labels(&opt_in()))?;
    create_pod(&env.cp, "doc-ok", &pod("app"))?;
    apply(env, node("node-wi", "default-pool", true))?;
    create_pod(
        &env.cp,
        "kube-system",
        &metadata_server_pod("gke-metadata-server-ok"),
    )?;
    set_status(
        env,
        "kube-system",
        "gke-metadata-server-ok",
        json!({"phase": "Running", "conditions": ready(true)}),
    )?;

    let (code, report) = json_report(env, None, &["-n", "doc-ok", "--strict"])?;
    let serious: Vec<&Value> = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["severity"] != "info")
        .collect();
    ensure!(
        code == 0 && serious.is_empty(),
        "healthy setup: exit {code}, findings {serious:#?}"
    );
    ensure!(
        report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|c| c["status"] == "ran"),
        "a check was skipped for the admin: {:#}",
        report["checks"]
    );
    golden("healthy.json", &normalized(&report, &env.inj.url()))?;

    // The text report, and the same command as a kubectl plugin.
    let (code, text, stderr) = doctor(env, None, &["-n", "doc-ok"])?;
    ensure!(
        code == 0 && text.contains("live-injection          ok"),
        "text report:\n{text}"
    );
    ensure!(
        stderr.is_empty(),
        "stderr is not a terminal, yet doctor wrote: {stderr:?}"
    );
    // On a terminal (script(1) gives it one), a progress line with the counts so far, cleared
    // before the report.
    let line = format!(
        "{BIN} doctor --kubeconfig={} -n doc-ok",
        env.cp.kubeconfig_admin().display()
    );
    let out = output(
        Command::new("script").args(["-qec", &line, "/dev/null"]),
        "",
    )?;
    let seen = String::from_utf8_lossy(&out.stdout);
    ensure!(
        seen.contains("\x1b[2Kreading: ")
            && seen.contains(" pods")
            && seen.contains("gke-wi-injector doctor: 1 namespace(s): doc-ok"),
        "no progress line on a terminal: {seen:?}"
    );
    let bin = tempfile::tempdir()?;
    std::os::unix::fs::symlink(BIN, bin.path().join("kubectl-gke_wi_injector"))?;
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut plugin = Command::new(env.cp.bin_dir().join("kubectl"));
    plugin
        .env("PATH", path)
        .env("KUBECONFIG", env.cp.kubeconfig_admin())
        .args(["gke-wi-injector", "doctor", "-n", "doc-ok", "-o", "json"]);
    let out = output(&mut plugin, "")?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("kubectl gke-wi-injector doctor: {out:?}"))?;
    ensure!(
        out.status.success() && v["scope"] == json!(["doc-ok"]),
        "plugin: {out:?}"
    );
    Ok(())
}

/// Labels `ns` to opt in (after its Pods were created).
fn opt_in_now(env: &Env, ns: &str) -> Result<()> {
    let label = format!("{P}/inject=enabled");
    kubectl(&env.cp, &["label", "namespace", ns, &label]).map(|_| ())
}

/// Warnings only (a Pod created before its namespace opted in): exit 0, and 1 with `--strict`.
pub fn warnings_and_strict(env: &Env) -> Result<()> {
    namespace(&env.cp, "doc-missed", &[])?;
    create_pod(&env.cp, "doc-missed", &pod("before-label"))?;
    opt_in_now(env, "doc-missed")?;
    let (code, report) = json_report(env, None, &["-n", "doc-missed"])?;
    ensure!(code == 0, "warnings only: exit {code}: {report:#}");
    has(
        &report,
        "missed-pods",
        "warning",
        "1 Pod(s) without a controller lack the injection",
    )?;
    let f = findings(&report, "missed-pods")[0];
    ensure!(f["objects"] == json!(["pod/before-label"]), "{f:#}");
    let (code, _) = json_report(env, None, &["-n", "doc-missed", "--strict"])?;
    ensure!(code == 1, "--strict with a warning: exit {code}");
    // The fix doctor prints, run as printed: the Pod is created again, through the webhook.
    let fix = f["fix"].as_str().context("fix")?;
    let path = format!(
        "{}:{}",
        env.cp.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = Command::new("sh");
    sh.args(["-c", fix])
        .env("PATH", path)
        .env("KUBECONFIG", env.cp.kubeconfig_admin());
    run(sh)?;
    let (code, report) = json_report(env, None, &["-n", "doc-missed", "--strict"])?;
    ensure!(
        code == 0 && findings(&report, "missed-pods").is_empty(),
        "after `{fix}`: exit {code}, {:#}",
        json!(findings(&report, "missed-pods"))
    );
    // Created before the label again, for the report of every failing condition.
    kubectl(
        &env.cp,
        &["label", "namespace", "doc-missed", &format!("{P}/inject-")],
    )?;
    create_pod(&env.cp, "doc-missed", &pod("before-label-2"))?;
    opt_in_now(env, "doc-missed")?;
    Ok(())
}

/// Every failing condition at once, in the default scope (every opted-in namespace).
pub fn failing_conditions(env: &Env) -> Result<()> {
    let cp = &env.cp;
    // NetworkPolicies: one namespace blocked, one allowed.
    for ns in ["doc-np", "doc-np-ok"] {
        namespace(cp, ns, &labels(&opt_in()))?;
        apply(
            env,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "api:1"}]}}}}),
        )?;
    }
    apply(
        env,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "egress-cluster-only", "namespace": "doc-np"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}, {"namespaceSelector": {}}]}]}}),
    )?;
    apply(
        env,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "egress-with-metadata", "namespace": "doc-np-ok"},
        "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}], "ports": [{"protocol": "TCP", "port": 80}]},
                            {"to": [{"ipBlock": {"cidr": "169.254.169.252/32"}}], "ports": [{"protocol": "TCP", "port": 988}]}]}}),
    )?;
    // A node pool without GKE_METADATA, with a Pod of an opted-in namespace on it.
    apply(env, node("node-legacy", "legacy-pool", false))?;
    let mut on_legacy = pod("on-legacy");
    on_legacy["spec"]["nodeName"] = json!("node-legacy");
    create_pod(cp, "doc-ok", &on_legacy)?;
    // Metadata server Pods crash-looping and OOMKilled.
    create_pod(
        cp,
        "kube-system",
        &metadata_server_pod("gke-metadata-server-crash"),
    )?;
    set_status(
        env,
        "kube-system",
        "gke-metadata-server-crash",
        json!({"phase": "Running", "conditions": ready(false),
        "containerStatuses": container_status(json!({"waiting": {"reason": "CrashLoopBackOff"}}), json!({}))}),
    )?;
    create_pod(
        cp,
        "kube-system",
        &metadata_server_pod("gke-metadata-server-oom"),
    )?;
    set_status(
        env,
        "kube-system",
        "gke-metadata-server-oom",
        json!({"phase": "Running", "conditions": ready(true),
        "containerStatuses": container_status(json!({"running": {}}), json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))}),
    )?;
    // An Istio-named webhook configuration sorting before ours (never called: its selector
    // matches no namespace).
    apply(
        env,
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "aaa-mesh-injector"},
        "webhooks": [{"name": "namespace.sidecar-injector.istio.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Ignore", "clientConfig": {"url": "https://127.0.0.1:1/inject"},
            "namespaceSelector": {"matchLabels": {"doctor-e2e": "never"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]}]}),
    )?;
    // A serving certificate that expires in 5 days and that the caBundle does not verify.
    let tmp = tempfile::tempdir()?;
    let mut certs = Command::new(BIN);
    certs
        .args(["certs", "--validity=5d", "--out"])
        .arg(tmp.path());
    run(certs)?;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "gke-wi-injector-tls", "namespace": "gke-wi-injector"},
        "data": {"tls.crt": crate::harness::b64(&std::fs::read(tmp.path().join("tls.crt"))?),
                 "tls.key": crate::harness::b64(&std::fs::read(tmp.path().join("tls.key"))?)}});
    apply(env, secret)?;
    // Workload Identity service accounts, one malformed, and one in a namespace not opted in.
    apply(
        env,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "doc-np",
        "annotations": {"iam.gke.io/gcp-service-account": "api@my-project"}}}),
    )?;
    namespace(cp, "doc-not-opted", &[])?;
    apply(
        env,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner", "namespace": "doc-not-opted",
        "annotations": {"iam.gke.io/gcp-service-account": "runner-sa@my-project.iam.gserviceaccount.com"}}}),
    )?;
    // hostNetwork and Istio modes.
    let mut host = pod("host-net");
    host["spec"]["hostNetwork"] = json!(true);
    create_pod(cp, "doc-ok", &host)?;
    let istio_off = [
        (format!("{P}/inject"), "enabled"),
        ("istio-injection".to_string(), "enabled"),
        (format!("{P}/istio"), "disabled"),
    ];
    namespace(cp, "doc-istio-off", &labels(&istio_off))?;
    let ambient = [
        (format!("{P}/inject"), "enabled"),
        ("istio.io/dataplane-mode".to_string(), "ambient"),
    ];
    namespace(cp, "doc-ambient", &labels(&ambient))?;

    let (code, report) = json_report(env, None, &["--max-service-accounts=2"])?;
    ensure!(code == 1, "errors: exit {code}");
    has(
        &report,
        "network-policy-egress",
        "error",
        "Deployment/api: egress to the metadata server (169.254.169.254 TCP 80, 169.254.169.252 TCP 988) is blocked by NetworkPolicy egress-cluster-only",
    )?;
    ensure!(
        findings(&report, "network-policy-egress")
            .iter()
            .all(|f| f["namespace"] == "doc-np"),
        "doc-np-ok's policy allows both destinations: {:#}",
        json!(findings(&report, "network-policy-egress"))
    );
    has(
        &report,
        "node-pools",
        "error",
        "node pool legacy-pool: 1 node(s) without iam.gke.io/gke-metadata-server-enabled=true",
    )?;
    has(
        &report,
        "metadata-server",
        "error",
        "container gke-metadata-server is in CrashLoopBackOff",
    )?;
    has(
        &report,
        "metadata-server",
        "error",
        "container gke-metadata-server was OOMKilled",
    )?;
    has(
        &report,
        "webhook-order",
        "error",
        "aaa-mesh-injector (Istio's sidecar injector) sorts before gke-wi-injector",
    )?;
    has(
        &report,
        "certificate",
        "warning",
        "the serving certificate expires in 5 days",
    )?;
    has(
        &report,
        "certificate",
        "error",
        "does not verify the serving certificate",
    )?;
    has(
        &report,
        "ksa-annotation",
        "error",
        "iam.gke.io/gcp-service-account is \"api@my-project\"",
    )?;
    has(
        &report,
        "service-account-count",
        "warning",
        "ServiceAccounts in the cluster, over 2",
    )?;
    has(&report, "host-network", "warning", "1 hostNetwork Pod(s)")?;
    has(
        &report,
        "istio-mode",
        "warning",
        "namespace doc-ambient uses Istio ambient mode",
    )?;
    has(
        &report,
        "istio-mode",
        "warning",
        "namespace doc-istio-off has Istio sidecar injection",
    )?;
    has(&report, "missed-pods", "warning", "lack the injection")?;
    // live-injection is capped at 3 namespaces and passes in each.
    ensure!(
        findings(&report, "live-injection").is_empty(),
        "{:#}",
        json!(findings(&report, "live-injection"))
    );
    ensure!(
        findings(&report, "ksa-annotation")
            .iter()
            .all(|f| f["namespace"] != "doc-not-opted"),
        "doc-not-opted is out of the default scope"
    );
    golden("failing.json", &normalized(&report, &env.inj.url()))?;
    // The same report as text: the README's "Diagnose a cluster" shows this file.
    let (code, text, _) = doctor(env, None, &["--max-service-accounts=2"])?;
    ensure!(code == 1, "text report: exit {code}");
    golden(
        "failing.txt",
        &text.replace(&env.inj.url(), "https://127.0.0.1:PORT/mutate"),
    )?;

    // -A: the namespace with a Workload Identity service account that did not opt in.
    let (_, all) = json_report(env, None, &["-A"])?;
    has(
        &all,
        "ksa-annotation",
        "warning",
        "namespace doc-not-opted has 1 Workload Identity service account(s) but did not opt in",
    )?;
    Ok(())
}

/// `webhook-registered` on a configuration that names a Service (deploy/'s, copied under
/// another name, its selector matching no namespace so that the API server never calls it):
/// the Service missing, then without a ready endpoint, then ready (EndpointSlices written by
/// hand, as there is no controller manager).
pub fn service_and_endpoints(env: &Env) -> Result<()> {
    let base = crate::harness::kustomize(&env.cp, &Path::new(REPO).join("deploy/base"))?;
    let mut mwc =
        crate::harness::find(&base, "MutatingWebhookConfiguration", "gke-wi-injector")?.clone();
    mwc["metadata"]["name"] = json!("zz-doctor-service");
    mwc["webhooks"][0]["namespaceSelector"]["matchLabels"]["doctor-e2e"] = json!("never");
    mwc["webhooks"][0]["clientConfig"]["caBundle"] =
        json!(crate::harness::b64(env.inj.ca_pem.as_bytes()));
    apply(env, mwc)?;
    let args = ["-n", "doc-ok", "--webhook-configuration=zz-doctor-service"];
    let registered = |report: &Value| -> Vec<String> {
        findings(report, "webhook-registered")
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["severity"].as_str().unwrap_or(""),
                    f["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let (_, report) = json_report(env, None, &args)?;
    has(
        &report,
        "webhook-registered",
        "error",
        "names Service gke-wi-injector/gke-wi-injector, which does not exist",
    )?;

    apply(
        env,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gke-wi-injector", "namespace": "gke-wi-injector"},
        "spec": {"ports": [{"port": 443, "targetPort": 10250}], "selector": {"app.kubernetes.io/name": "gke-wi-injector"}}}),
    )?;
    let slice = |ready: bool| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "gke-wi-injector-abc", "namespace": "gke-wi-injector", "labels": {"kubernetes.io/service-name": "gke-wi-injector"}},
        "addressType": "IPv4", "ports": [{"port": 10250}],
        "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": ready}}]})
    };
    apply(env, slice(false))?;
    let (_, report) = json_report(env, None, &args)?;
    has(
        &report,
        "webhook-registered",
        "error",
        "has no ready endpoint",
    )?;

    apply(env, slice(true))?;
    let (_, report) = json_report(env, None, &args)?;
    let left = registered(&report);
    ensure!(
        left.is_empty(),
        "a Service with a ready endpoint: {left:#?}"
    );
    kubectl(
        &env.cp,
        &[
            "delete",
            "mutatingwebhookconfiguration",
            "zz-doctor-service",
        ],
    )?;
    Ok(())
}

/// A user who may read namespaces and webhook configurations but not Pods: the Pod checks are
/// skipped with the permission they need; a cluster that cannot be reached exits 2.
pub fn forbidden_and_unreachable(env: &Env) -> Result<()> {
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "doctor-limited"},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]},
                  {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"], "verbs": ["list"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "doctor-limited"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "doctor-limited"},
        "subjects": [{"kind": "User", "name": "doctor-limited", "apiGroup": "rbac.authorization.k8s.io"}]});
    run_stdin(
        env.cp.kubectl(&["apply", "-f", "-"]),
        &json!({"apiVersion": "v1", "kind": "List", "items": [role, binding]}).to_string(),
    )?;
    let kubeconfig: PathBuf = env.cp.kubeconfig_for("doctor-limited", &[])?;
    // RBAC bindings reach the authorizer through an informer: retry briefly.
    let mut report = Value::Null;
    for _ in 0..50 {
        let (_, r) = json_report(env, Some(&kubeconfig), &["-n", "doc-ok"])?;
        report = r;
        if report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["id"] == "webhook-order" && c["status"] == "ran")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = |id: &str| -> Value {
        report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    ensure!(
        status("missed-pods")
            == json!({"id": "missed-pods", "status": "skipped", "reason": "forbidden (needs list pods in doc-ok)", "findings": 0}),
        "missed-pods for a user who cannot list Pods: {:#}",
        status("missed-pods")
    );
    ensure!(
        status("node-pools")["reason"] == "forbidden (needs list nodes)",
        "{:#}",
        status("node-pools")
    );
    ensure!(
        status("live-injection")["reason"] == "forbidden (needs create pods in doc-ok)",
        "{:#}",
        status("live-injection")
    );
    ensure!(
        status("webhook-order")["status"] == "ran",
        "{:#}",
        status("webhook-order")
    );

    // --context picks the kubeconfig's context: the admin kubeconfig's own works, another is
    // refused with exit 2.
    let (code, _, _) = doctor(env, None, &["-n", "doc-ok", "--context=e2e", "-o", "json"])?;
    ensure!(
        code == 1,
        "--context=e2e: exit {code} (the failing conditions are still there)"
    );
    let (code, _, stderr) = doctor(env, None, &["--context=no-such-context"])?;
    ensure!(
        code == 2 && stderr.contains("no-such-context"),
        "unknown context: exit {code}: {stderr}"
    );

    // Nothing listens on port 1 of loopback: exit 2, with a message naming the address.
    let dead = tempfile::tempdir()?;
    let kc = dead.path().join("kubeconfig");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )?;
    let (code, _, stderr) = doctor(env, Some(&kc), &[])?;
    ensure!(
        code == 2 && stderr.contains("cannot reach the cluster at https://127.0.0.1:1"),
        "unreachable: exit {code}: {stderr}"
    );
    Ok(())
}

/// The injector killed (connection refused, `failurePolicy: Ignore`): a Pod created meanwhile is
/// stored uninjected and `missed-pods` names it; the dry-run Pod of `live-injection` comes back
/// without the annotation, an error.
pub fn injector_down(env: &mut Env) -> Result<()> {
    env.inj.kill();
    let stored = create_pod(&env.cp, "doc-ok", &pod("while-down"))?;
    ensure!(
        crate::injected(&stored).is_none(),
        "Pod mutated with the injector down: {stored:#}"
    );
    let (code, report) = json_report(env, None, &["-n", "doc-ok"])?;
    ensure!(code == 1, "injector down: exit {code}");
    ensure!(
        findings(&report, "missed-pods").iter().any(|f| f["objects"]
            .as_array()
            .is_some_and(|o| o.contains(&json!("pod/while-down")))),
        "missed-pods does not name pod/while-down: {:#}",
        json!(findings(&report, "missed-pods"))
    );
    has(
        &report,
        "live-injection",
        "error",
        "a server-side dry-run Pod came back with gke-wi-injector.dev/injected absent",
    )
}
