//! Case 10: every manifest in deploy/ is accepted by the API server, the registered webhook keeps
//! every field deploy/ ships, and kube-system (and the injector's own namespace) Pods are never
//! sent to the injector.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::harness::{BIN, REPO, b64, find, kubectl_obj, kustomize, output, run};
use crate::{Env, P, create_pod, injected, kubectl, pod};

/// Minimal CRDs for the two cert-manager kinds deploy/'s default overlay uses, so that the whole
/// overlay can be dry-run (this bare API server has no cert-manager).
fn cert_manager_crds() -> Value {
    let crd = |kind: &str, plural: &str| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.cert-manager.io")},
            "spec": {
                "group": "cert-manager.io", "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(),
                          "listKind": format!("{kind}List")},
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": {"type": "object",
                                         "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        })
    };
    json!({"apiVersion": "v1", "kind": "List",
           "items": [crd("Certificate", "certificates"), crd("Issuer", "issuers")]})
}

/// `kubectl apply --dry-run=server -k dir`: succeeds, lists every object, warns about nothing.
fn dry_run_apply(env: &Env, dir: &Path) -> Result<Vec<String>> {
    let rendered = kustomize(&env.cp, dir)?;
    let out = output(
        &mut env.cp.kubectl(&[
            "apply",
            "--dry-run=server",
            "-k",
            &dir.display().to_string(),
        ]),
        "",
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "apply --dry-run=server -k {} failed:\n{stdout}\n{stderr}",
        dir.display()
    );
    ensure!(
        !stderr.contains("Warning"),
        "warnings from -k {}: {stderr}",
        dir.display()
    );
    let lines = stdout
        .lines()
        .filter(|l| l.ends_with("(server dry run)"))
        .count();
    ensure!(
        lines == rendered.len(),
        "{} objects rendered, {lines} accepted:\n{stdout}",
        rendered.len()
    );
    Ok(rendered
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"]
            )
        })
        .collect())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}

pub fn deploy_manifests_accepted(env: &Env) -> Result<()> {
    let cp = &env.cp;
    let repo = Path::new(REPO);

    // The registered webhook is deploy/'s, field for field, except the clientConfig.
    let base = kustomize(cp, &repo.join("deploy/base"))?;
    let shipped = &find(&base, "MutatingWebhookConfiguration", "gke-wi-injector")?["webhooks"][0];
    let live = crate::get(
        cp,
        &["get", "mutatingwebhookconfiguration", "gke-wi-injector"],
    )?;
    let live = &live["webhooks"][0];
    for (k, v) in shipped.as_object().context("webhook")? {
        if k != "clientConfig" {
            ensure!(
                &live[k] == v,
                "registered webhook field {k}: {} != {v}",
                live[k]
            );
        }
    }
    ensure!(
        live["clientConfig"]
            == json!({"url": env.inj.url(), "caBundle": b64(env.inj.ca_pem.as_bytes())}),
        "clientConfig: {}",
        live["clientConfig"]
    );

    // deploy/base ("bring your own certificate").
    let objs = dry_run_apply(env, &repo.join("deploy/base"))?;
    eprintln!("e2e:   deploy/base accepted: {objs:?}");

    // deploy/ (the cert-manager overlay), with minimal cert-manager CRDs installed.
    kubectl_obj(cp, &["apply"], &cert_manager_crds())?;
    kubectl(
        cp,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=20s",
            "crd/certificates.cert-manager.io",
            "crd/issuers.cert-manager.io",
        ],
    )?;
    let objs = dry_run_apply(env, &repo.join("deploy"))?;
    ensure!(
        objs.iter().any(|o| o.starts_with("Certificate/"))
            && objs.iter().any(|o| o.starts_with("Issuer/")),
        "deploy/ should carry cert-manager objects: {objs:?}"
    );
    eprintln!("e2e:   deploy/ (cert-manager) accepted: {objs:?}");

    // deploy/overlays/self-managed, with `gke-wi-injector certs` run into a copy's certs/.
    let tmp = tempfile::tempdir()?;
    copy_dir(&repo.join("deploy"), &tmp.path().join("deploy"))?;
    let certs: PathBuf = tmp.path().join("certs");
    std::fs::create_dir_all(&certs)?;
    std::fs::copy(
        repo.join("certs/kustomization.yaml"),
        certs.join("kustomization.yaml"),
    )?;
    let ca_bundle = run({
        let mut c = Command::new(BIN);
        c.args(["certs", "--out", &certs.display().to_string()]);
        c
    })?;
    let overlay = tmp.path().join("deploy/overlays/self-managed");
    let rendered = kustomize(cp, &overlay)?;
    let mwc = find(&rendered, "MutatingWebhookConfiguration", "gke-wi-injector")?;
    // kustomize wraps Secret data at 70 columns and the replacement copies it as is; the API
    // server's base64 decoding skips the newlines.
    let rendered_bundle: String = mwc["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .context("caBundle")?
        .split_whitespace()
        .collect();
    ensure!(
        rendered_bundle == ca_bundle.trim(),
        "self-managed caBundle is not the certs CA"
    );
    let objs = dry_run_apply(env, &overlay)?;
    ensure!(
        objs.iter().any(|o| o == "Secret/\"gke-wi-injector-tls\""),
        "self-managed should carry the TLS Secret: {objs:?}"
    );
    eprintln!("e2e:   deploy/overlays/self-managed accepted: {objs:?}");

    // kube-system and the injector's namespace are excluded by the namespaceSelector even when
    // labelled: their Pods never reach the injector.
    // A control namespace gets the label in the same command: once its Pods are mutated, the
    // API server's namespace informer has seen the new labels on all three.
    crate::namespace(cp, "e2e-c10-control", &[])?;
    kubectl(
        cp,
        &[
            "label",
            "--overwrite",
            "ns",
            "kube-system",
            "gke-wi-injector",
            "e2e-c10-control",
            &format!("{P}/inject=enabled"),
        ],
    )?;
    wait_mutated(env, "e2e-c10-control")?;
    for ns in ["kube-system", "gke-wi-injector"] {
        let before = env.inj.requests_total()?;
        let mut p = pod("c10");
        if ns == "gke-wi-injector" {
            // Pod Security restricted is enforced there.
            p["spec"]["securityContext"] = json!({"runAsNonRoot": true, "runAsUser": 1000,
                                                 "seccompProfile": {"type": "RuntimeDefault"}});
            p["spec"]["containers"][0]["securityContext"] =
                json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
        }
        let stored = create_pod(cp, ns, &p)?;
        let after = env.inj.requests_total()?;
        ensure!(
            before == after,
            "{ns}: injector called ({before} -> {after})"
        );
        ensure!(injected(&stored).is_none(), "{ns}: Pod mutated");
        ensure!(
            stored["spec"].get("initContainers").is_none()
                && stored["spec"]["containers"][0].get("env").is_none(),
            "{ns}: Pod changed: {}",
            stored["spec"]
        );
    }
    Ok(())
}

/// Bounded wait until a dry-run Pod in `ns` comes back mutated.
fn wait_mutated(env: &Env, ns: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = kubectl_obj(
            &env.cp,
            &["create", "-n", ns, "--dry-run=server"],
            &pod("probe"),
        )?;
        if injected(&out).is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("Pods in {ns} not mutated 10 s after labelling it");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
