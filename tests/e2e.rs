//! End-to-end: a real etcd + kube-apiserver (tests/e2e/support/control_plane.rs), the real
//! `gke-wi-injector serve` binary over real TLS, authenticating as a user bound only to the
//! ClusterRole from `deploy/`, registered with `deploy/`'s MutatingWebhookConfiguration (its
//! clientConfig rewritten to `url: https://127.0.0.1:PORT/mutate` plus the real caBundle).
//!
//! One control plane and one injector serve every case; each case works in its own namespaces.
//! The cases (numbered as in the e2e issue; letters are extra sub-cases) run in order in a single
//! test, because the last ones swap the injector, restart the API server and kill the injector.
//! A failing case does not stop the others: every failure is reported with its case name, then
//! the test fails. A warm run takes about 30 s; `GKE_WI_E2E_KEEP_DIR=1` keeps the logs of
//! etcd, kube-apiserver and the injector(s).
//!
//! `helm_chart_applied_and_a_pod_injected_through_it` (case 14) runs on its own control plane:
//! `cargo test --test e2e helm` runs only it. So does `istio_sidecar_injector_after_ours`
//! (`cargo test --test e2e istio`): Istio's real sidecar injector, istiod built from the pinned
//! `istio.io/istio` module by tests/e2e/build-istio.sh (`GKE_WI_ISTIO_DIR`), after ours. And
//! `doctor_against_a_real_cluster` (`cargo test --test e2e doctor`): `doctor`'s findings, each
//! created for real.

#[path = "e2e/support/control_plane.rs"]
mod control_plane;
#[path = "e2e/support/harness.rs"]
mod harness;
#[path = "e2e/support/istio_pod.rs"]
mod istio_pod;
#[path = "e2e/support/istiod.rs"]
mod istiod;
#[path = "e2e/support/late_webhook.rs"]
mod late_webhook;

#[path = "e2e/cases_basic.rs"]
mod cases_basic;
#[path = "e2e/cases_chain.rs"]
mod cases_chain;
#[path = "e2e/cases_deploy.rs"]
mod cases_deploy;
#[path = "e2e/cases_doctor.rs"]
mod cases_doctor;
#[path = "e2e/cases_helm.rs"]
mod cases_helm;
#[path = "e2e/cases_istio.rs"]
mod cases_istio;
#[path = "e2e/cases_tls.rs"]
mod cases_tls;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use control_plane::ControlPlane;
use harness::{Injector, REPO, b64, create, find, kubectl_json, kubectl_obj, kustomize, run};

pub const P: &str = "gke-wi-injector.dev";
pub const HOST: &str = "169.254.169.254";
pub const INJECTOR_USER: &str = "system:serviceaccount:gke-wi-injector:gke-wi-injector";

/// Everything the cases share.
pub struct Env {
    pub cp: ControlPlane,
    pub inj: Injector,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_against_a_real_kube_apiserver() -> Result<()> {
    let started = Instant::now();
    let mut env = setup().await?;
    eprintln!(
        "e2e: setup took {:?} (apiserver {}, injector {})",
        started.elapsed(),
        env.cp.server_url(),
        env.inj.url()
    );
    let mut failures = Vec::new();
    macro_rules! case {
        ($name:literal, $body:expr) => {{
            let t = Instant::now();
            let r: Result<()> = $body;
            match r {
                Ok(()) => eprintln!("e2e: PASS {} ({:?})", $name, t.elapsed()),
                Err(e) => {
                    eprintln!("e2e: FAIL {} ({:?}): {e:#}", $name, t.elapsed());
                    failures.push(format!("{}: {e:#}", $name));
                }
            }
        }};
    }
    case!(
        "case 10: deploy/ manifests accepted, kube-system never sent",
        { cases_deploy::deploy_manifests_accepted(&env) }
    );
    case!("case 1: labelled namespace gets all three mutations", {
        cases_basic::all_three_mutations(&env)
    });
    case!(
        "case 2: unlabelled namespace untouched, injector not called",
        { cases_basic::unlabelled_namespace_untouched(&env) }
    );
    case!("case 3: per-feature labels, Pod annotations, Istio auto", {
        cases_basic::per_feature_labels_and_annotations(&env)
    });
    case!("case 3b: admission warnings reach kubectl", {
        cases_basic::warnings_reach_the_user(&env)
    });
    case!("case 3c: the user's own values win", {
        cases_basic::users_values_win(&env)
    });
    case!(
        "case 4: server-side dry run shows the mutation, stores nothing",
        { cases_basic::server_dry_run(&env) }
    );
    case!("case 5: a namespace label change applies within 2 s", {
        cases_basic::label_change_applies_quickly(&env)
    });
    case!("case 12: Windows Pods", { cases_basic::windows_pods(&env) });
    case!("case 8: Pod Security restricted admits the injected Pod", {
        cases_basic::pod_security_restricted(&env)
    });
    case!("case 9: native sidecar and other fields survive", {
        cases_basic::native_sidecar_survives(&env)
    });
    case!("case 11a: a namespace created a moment earlier", {
        cases_chain::fresh_namespace(&env)
    });
    case!("case 6: reinvocation covers a later webhook's container", {
        cases_chain::reinvocation_after_later_webhook(&env).await
    });
    case!(
        "case 6b: reinvocation with nothing new answers an empty patch",
        { cases_chain::reinvocation_with_nothing_new(&env).await }
    );
    case!(
        "case 11b: the injector keeps serving across an API server restart",
        { cases_chain::apiserver_restart(&mut env).await }
    );
    case!(
        "case 13: certificate files rotate under a live API server",
        { cases_tls::certificate_rotation(&env) }
    );
    case!("case 7: injector down, failurePolicy Ignore", {
        cases_chain::injector_down(&mut env)
    });
    eprintln!("e2e: total {:?}", started.elapsed());
    if !failures.is_empty() {
        eprintln!(
            "--- injector log (tail) ---\n{}",
            tail(&env.inj.log_text(), 40)
        );
        bail!(
            "{} case(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

/// Case 14, on its own control plane (`cargo test --test e2e helm`): the Helm chart applied to
/// the real API server and a Pod injected through the webhook configuration it rendered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_chart_applied_and_a_pod_injected_through_it() -> Result<()> {
    let env = setup().await?;
    let r = cases_helm::chart_applied_and_injecting(&env);
    if r.is_err() {
        eprintln!(
            "--- injector log (tail) ---\n{}",
            tail(&env.inj.log_text(), 40)
        );
    }
    r
}

/// `doctor`, on its own control plane (`cargo test --test e2e doctor`): a healthy setup, then
/// warnings only, every failing condition, a configuration naming a Service, a user who may not
/// list Pods and a cluster that cannot be reached, and last the injector killed. The steps
/// build on each other, so they run in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_against_a_real_cluster() -> Result<()> {
    let mut env = setup().await?;
    type Step = fn(&Env) -> Result<()>;
    let steps: [(&str, Step); 5] = [
        (
            "doctor 1: healthy setup, clean report, kubectl plugin",
            cases_doctor::healthy,
        ),
        (
            "doctor 2: warnings only, --strict",
            cases_doctor::warnings_and_strict,
        ),
        (
            "doctor 3: every failing condition",
            cases_doctor::failing_conditions,
        ),
        (
            "doctor 3b: the webhook's Service and endpoints",
            cases_doctor::service_and_endpoints,
        ),
        (
            "doctor 4: forbidden data skipped, unreachable cluster",
            cases_doctor::forbidden_and_unreachable,
        ),
    ];
    for (name, step) in steps {
        let t = Instant::now();
        step(&env).with_context(|| name.to_string())?;
        eprintln!("e2e: PASS {name} ({:?})", t.elapsed());
    }
    // Last: it kills the injector.
    cases_doctor::injector_down(&mut env).context("doctor 5: the injector down")?;
    eprintln!("e2e: PASS doctor 5: the injector down");
    Ok(())
}

/// Istio cases, on their own control plane (`cargo test --test e2e istio`): the real Istio
/// sidecar injector (istiod built from the pinned Go module, configured by Istio's own chart)
/// called after ours by the API server; each case asserts on the Pod the API server stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_sidecar_injector_after_ours() -> Result<()> {
    let started = Instant::now();
    // Fails fast, naming tests/e2e/build-istio.sh, when istiod is not there.
    istiod::istio_dir()?;
    let env = setup().await?;
    // Blocking work on this test's runtime, as the other cases do: nothing async runs meanwhile.
    let mut istiod = istiod::Istiod::start(&env.cp, false)?;
    eprintln!(
        "e2e: Istio {}-dev (istio.io/istio {}) ready after {:?}",
        istiod.line,
        cases_istio::pinned_version()?,
        started.elapsed()
    );
    let mut failures = Vec::new();
    let mut case = |name: &str, r: Result<()>| match r {
        Ok(()) => eprintln!("e2e: PASS {name}"),
        Err(e) => {
            eprintln!("e2e: FAIL {name}: {e:#}");
            failures.push(format!("{name}: {e:#}"));
        }
    };
    case(
        "istio 1: classic sidecar holds the app, init excludes our range",
        cases_istio::classic_sidecar(&env, &istiod),
    );
    case("istio 2: native sidecar", cases_istio::native_sidecar(&env));
    case(
        "istio 3: revision and revision tag",
        cases_istio::revision_and_tag(&env),
    );
    case(
        "istio 4: the user's proxy config and ranges merged",
        cases_istio::users_proxy_config_merged(&env),
    );
    case(
        "istio 5: P/istio=disabled",
        cases_istio::istio_feature_disabled(&env),
    );
    case(
        "istio 6: a configuration sorted before ours",
        cases_istio::misordered_configuration(&env, &istiod),
    );
    case(
        "istio 1b: Istio CNI (istio-validation and the CNI annotation)",
        cases_istio::cni(&env, &istiod),
    );
    istiod.kill();
    match istiod::Istiod::start(&env.cp, true) {
        Ok(native) => {
            istiod = native;
            case(
                "istio 2b: native sidecar with ENABLE_NATIVE_SIDECARS=true",
                cases_istio::native_sidecar_by_flag(&env),
            );
        }
        Err(e) => case("istio 2b: istiod with ENABLE_NATIVE_SIDECARS=true", Err(e)),
    }
    eprintln!("e2e: istio total {:?}", started.elapsed());
    if !failures.is_empty() {
        eprintln!(
            "--- injector log (tail) ---\n{}\n{}",
            tail(&env.inj.log_text(), 30),
            istiod.log_tail(30)
        );
        bail!(
            "{} Istio case(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Control plane, RBAC from deploy/, the injector as the deploy/ ServiceAccount's user, and the
/// webhook registered from deploy/.
async fn setup() -> Result<Env> {
    let cp = ControlPlane::start().await?;
    let base = kustomize(&cp, &Path::new(REPO).join("deploy/base"))?;

    // The injector's Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding, as rendered.
    let rbac: Vec<Value> = [
        ("Namespace", "gke-wi-injector"),
        ("ServiceAccount", "gke-wi-injector"),
        ("ClusterRole", "gke-wi-injector"),
        ("ClusterRoleBinding", "gke-wi-injector"),
    ]
    .iter()
    .map(|(k, n)| find(&base, k, n).cloned())
    .collect::<Result<_>>()?;
    kubectl_obj(
        &cp,
        &["apply"],
        &json!({"apiVersion": "v1", "kind": "List", "items": rbac}),
    )?;

    // The client-cert user the ClusterRoleBinding's ServiceAccount subject names, in no group
    // but system:authenticated: it can read Namespaces and nothing else.
    let kubeconfig = cp.kubeconfig_for(INJECTOR_USER, &[])?;
    let as_injector = |args: &[&str]| {
        let mut c = std::process::Command::new(cp.bin_dir().join("kubectl"));
        c.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(args);
        harness::output(&mut c, "")
    };
    let ns = as_injector(&["get", "namespaces", "-o", "name"])?;
    ensure!(
        ns.status.success(),
        "injector user cannot list namespaces: {ns:?}"
    );
    let pods = as_injector(&["get", "pods", "-A"])?;
    ensure!(
        !pods.status.success() && String::from_utf8_lossy(&pods.stderr).contains("forbidden"),
        "injector user should not read Pods: {pods:?}"
    );

    let inj = tokio::task::spawn_blocking({
        let dir = cp.dir().to_path_buf();
        move || Injector::start(&dir, &kubeconfig)
    })
    .await??;

    register_webhook(&cp, &inj)?;
    let env = Env { cp, inj };
    namespace(&env.cp, "e2e-probe", &[(&format!("{P}/inject"), "enabled")])?;
    wait_webhook_active(&env.cp, &env.inj)?;
    Ok(env)
}

/// Applies deploy/'s webhook with its clientConfig pointing at `inj`; every other field as
/// shipped.
pub fn register_webhook(cp: &ControlPlane, inj: &Injector) -> Result<()> {
    let base = kustomize(cp, &Path::new(REPO).join("deploy/base"))?;
    let mut mwc = find(&base, "MutatingWebhookConfiguration", "gke-wi-injector")?.clone();
    for hook in mwc["webhooks"].as_array_mut().context("webhooks")? {
        hook["clientConfig"] = json!({"url": inj.url(), "caBundle": b64(inj.ca_pem.as_bytes())});
    }
    kubectl_obj(cp, &["apply"], &mwc)?;
    Ok(())
}

/// The API server picks up webhook configurations through an informer: poll with server-side
/// dry runs until a Pod in a labelled namespace comes back mutated by `inj`.
pub fn wait_webhook_active(cp: &ControlPlane, inj: &Injector) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = inj.requests_total()?;
        let out = kubectl_obj(
            cp,
            &["create", "-n", "e2e-probe", "--dry-run=server"],
            &pod("probe"),
        )?;
        if injected(&out).is_some() && inj.requests_total()? > before {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "webhook at {} not active after 20 s; last Pod: {out:#}\n{}",
                inj.url(),
                inj.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Creates a namespace with labels.
pub fn namespace(cp: &ControlPlane, name: &str, labels: &[(&str, &str)]) -> Result<Value> {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    create(
        cp,
        &json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": labels}}),
    )
}

/// A minimal Pod: one container, no env, no annotations.
pub fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    })
}

/// Creates `pod` in `ns` and returns the stored Pod.
pub fn create_pod(cp: &ControlPlane, ns: &str, pod: &Value) -> Result<Value> {
    kubectl_obj(cp, &["create", "-n", ns], pod)
}

/// The `P/injected` annotation, if any.
pub fn injected(pod: &Value) -> Option<&str> {
    pod["metadata"]["annotations"][format!("{P}/injected")].as_str()
}

/// The names of `spec.<field>` entries.
pub fn names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every container and init container.
pub fn all_containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|f| pod["spec"][f].as_array())
        .flatten()
        .collect()
}

/// The values of every `GCE_METADATA_HOST` env entry of a container.
pub fn host_env(container: &Value) -> Vec<&Value> {
    container["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|v| v["name"] == "GCE_METADATA_HOST")
                .map(|v| &v["value"])
                .collect()
        })
        .unwrap_or_default()
}

/// `kubectl get pod` says NotFound.
pub fn assert_not_stored(cp: &ControlPlane, ns: &str, name: &str) -> Result<()> {
    let out = harness::output(&mut cp.kubectl(&["get", "pod", "-n", ns, name]), "")?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("NotFound"),
        "pod {ns}/{name} should not exist: {out:?}"
    );
    Ok(())
}

/// `kubectl get <args> -o json`.
pub fn get(cp: &ControlPlane, args: &[&str]) -> Result<Value> {
    kubectl_json(cp, args)
}

/// `kubectl <args>` as the admin, output ignored.
pub fn kubectl(cp: &ControlPlane, args: &[&str]) -> Result<String> {
    run(cp.kubectl(args))
}

/// With `--wait-image-windows`, a Pod with `spec.os.name: windows` gets the wait container; the
/// API server's validation forbids Linux-only securityContext fields on Windows Pods, so the
/// injected container must not carry them or the user's Pod is refused. Uses the offline
/// `inject` (the same mutation as `serve`) and a server-side dry run.
#[tokio::test]
async fn windows_wait_container_passes_windows_validation() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let mut p = pod("windows-wait");
    p["metadata"]["namespace"] = json!("default");
    p["spec"]["os"] = json!({"name": "windows"});
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("pod.json");
    std::fs::write(&file, p.to_string())?;
    let mut inject = std::process::Command::new(harness::BIN);
    inject.args([
        "inject",
        "-f",
        &file.display().to_string(),
        "--namespace-labels",
        &format!("{P}/inject=enabled"),
        "--wait-image-windows",
        "wait-windows:1",
    ]);
    let mutated = run(inject)?;
    ensure!(
        mutated.contains("image: wait-windows:1"),
        "no Windows wait container:\n{mutated}"
    );
    let out = harness::output(
        &mut cp.kubectl(&["create", "--dry-run=server", "-f", "-", "-o", "json"]),
        &mutated,
    )?;
    ensure!(
        out.status.success(),
        "the API server refuses the injected Windows Pod:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
