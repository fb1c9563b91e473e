//! Case 14: the Helm chart (deploy/helm/gke-wi-injector), rendered by the pinned helm (env
//! `HELM`, else scripts/install-helm.sh) with `gke-wi-injector certs` output as its certificates,
//! applied to the real API server, and a Pod injected through the webhook configuration it
//! rendered (its clientConfig pointed at the injector under test, as `setup` does for deploy/).
//! An extra excluded namespace proves the chart's configuration is the one in effect.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gke_wi_injector::engine::yaml;
use serde_json::{Value, json};

use crate::harness::{BIN, REPO, b64, find, kubectl_obj, output, run};
use crate::{Env, HOST, P, create_pod, host_env, injected, namespace, pod};

const INCLUDED: &str = "e2e-helm";
const EXCLUDED: &str = "e2e-helm-excluded";

fn helm() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("HELM") {
        return Ok(PathBuf::from(h));
    }
    let mut c = Command::new("bash");
    c.arg(Path::new(REPO).join("scripts/install-helm.sh"));
    let out = run(c)?;
    Ok(PathBuf::from(
        out.lines()
            .last()
            .context("install-helm.sh printed nothing")?
            .trim(),
    ))
}

/// Whether a server-side dry-run Pod in `ns` comes back mutated.
fn mutated(env: &Env, ns: &str) -> Result<bool> {
    let out = kubectl_obj(
        &env.cp,
        &["create", "-n", ns, "--dry-run=server"],
        &pod("probe"),
    )?;
    Ok(injected(&out).is_some())
}

pub fn chart_applied_and_injecting(env: &Env) -> Result<()> {
    let cp = &env.cp;
    let enabled = [(format!("{P}/inject"), "enabled")];
    let labels: Vec<(&str, &str)> = enabled.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    namespace(cp, INCLUDED, &labels)?;
    namespace(cp, EXCLUDED, &labels)?;
    // Under deploy/'s configuration both namespaces are injected.
    ensure!(
        mutated(env, EXCLUDED)?,
        "{EXCLUDED} not injected under deploy/'s webhook"
    );

    // The chart with the certificates `gke-wi-injector certs` writes.
    let tmp = tempfile::tempdir()?;
    let certs = tmp.path().join("certs");
    let mut c = Command::new(BIN);
    c.args(["certs", "--out", &certs.display().to_string()]);
    run(c)?;
    let mut c = Command::new(helm()?);
    c.args(["template", "gke-wi-injector", "deploy/helm/gke-wi-injector"])
        .args([
            "--namespace",
            "gke-wi-injector",
            "--kube-version",
            "v1.36.3",
        ])
        .args(["--set", "certificates.mode=selfSigned"])
        .args([
            "--set",
            &format!("webhook.extraExcludedNamespaces={{{EXCLUDED}}}"),
        ])
        .current_dir(REPO);
    for (value, file) in [
        ("caCrt", "ca.crt"),
        ("tlsCrt", "tls.crt"),
        ("tlsKey", "tls.key"),
    ] {
        c.arg("--set-file").arg(format!(
            "certificates.selfSigned.{value}={}",
            certs.join(file).display()
        ));
    }
    let rendered = run(c)?;
    let mut docs: Vec<Value> =
        yaml::documents(&rendered, &gke_wi_injector::commands::inject::INPUT_LIMITS)?
            .into_iter()
            .filter(|d| !d.is_null())
            .collect();
    let ca = std::fs::read_to_string(certs.join("ca.crt"))?;
    let mwc = docs
        .iter_mut()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .context("no webhook configuration rendered")?;
    let hook = &mut mwc["webhooks"][0];
    ensure!(
        hook["clientConfig"]
            == json!({"caBundle": b64(ca.as_bytes()), "service": {"name": "gke-wi-injector",
                      "namespace": "gke-wi-injector", "path": "/mutate", "port": 443}}),
        "rendered clientConfig: {}",
        hook["clientConfig"]
    );
    // The API server reaches the injector under test by URL (no Service routing here).
    hook["clientConfig"] =
        json!({"url": env.inj.url(), "caBundle": b64(env.inj.ca_pem.as_bytes())});

    // Every rendered object is accepted as it is, without a Pod Security warning for the
    // restricted namespace the Deployment's Pods would run in.
    let out = output(
        &mut cp.kubectl(&["apply", "-f", "-"]),
        &json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string(),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "applying the chart failed:\n{stdout}\n{stderr}"
    );
    ensure!(
        !stderr.contains("Warning"),
        "warnings applying the chart: {stderr}"
    );
    ensure!(
        stdout.lines().count() == docs.len(),
        "{} objects rendered, applied:\n{stdout}",
        docs.len()
    );
    for (kind, name) in [
        ("Deployment", "gke-wi-injector"),
        ("Secret", "gke-wi-injector-tls"),
        ("NetworkPolicy", "gke-wi-injector"),
        ("PodDisruptionBudget", "gke-wi-injector"),
    ] {
        find(&docs, kind, name)?;
        let live = crate::get(cp, &["get", "-n", "gke-wi-injector", kind, name])?;
        ensure!(
            live["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm",
            "{kind}/{name} is not the chart's: {}",
            live["metadata"]
        );
    }

    // The chart's configuration takes effect (the API server's informer picks it up): the extra
    // excluded namespace is no longer sent, the other one still is.
    let deadline = Instant::now() + Duration::from_secs(20);
    while mutated(env, EXCLUDED)? {
        if Instant::now() >= deadline {
            bail!("{EXCLUDED} still injected 20 s after the chart's webhook was applied");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = env.inj.requests_total()?;
    let excluded = create_pod(cp, EXCLUDED, &pod("app"))?;
    ensure!(
        injected(&excluded).is_none(),
        "excluded Pod mutated: {}",
        excluded["metadata"]
    );
    ensure!(
        env.inj.requests_total()? == before,
        "the injector was called for {EXCLUDED}"
    );

    let stored = create_pod(cp, INCLUDED, &pod("app"))?;
    ensure!(
        injected(&stored) == Some("metadata-wait,metadata-host"),
        "Pod not injected through the chart's webhook: {}",
        stored["metadata"]
    );
    ensure!(
        stored["spec"]["initContainers"][0]["name"] == "gke-metadata-wait",
        "no wait container: {}",
        stored["spec"]
    );
    ensure!(
        host_env(&stored["spec"]["containers"][0]) == [&json!(HOST)],
        "GCE_METADATA_HOST: {}",
        stored["spec"]["containers"][0]
    );
    ensure!(
        env.inj.requests_total()? > before,
        "the injector was not called"
    );

    Ok(())
}
