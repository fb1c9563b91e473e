//! Istio's real sidecar injector for the Istio cases: `pilot-discovery discovery` (istiod) built
//! from the pinned Go module by tests/e2e/build-istio.sh, running on loopback against the suite's
//! kube-apiserver, configured with what Istio's own `istio-discovery` chart renders (from the
//! same module's `manifests/`): the mesh ConfigMap, the `istio-sidecar-injector` ConfigMap with
//! the default injection templates and values, and the two mutating webhook configurations,
//! their clientConfig set through the chart's own `istiodRemote.injectionURL` and
//! `injectionCABundle` values.
//!
//! The install is the one Istio documents for revision-based upgrades: istiod revision `canary`
//! (configurations `istio-sidecar-injector-canary`, selecting `istio.io/rev=canary`) with the
//! revision tag `default` pointing at it (`istio-revision-tag-default`, selecting
//! `istio-injection=enabled` and `istio.io/rev=default`). istiod runs with
//! `ENABLE_NATIVE_SIDECARS=false` (classic sidecars: its default, `auto`, turns them on in a
//! cluster without nodes); the native-sidecar case asks for them per Pod with Istio's
//! `sidecar.istio.io/nativeSidecar: "true"` annotation, then again with istiod restarted with
//! `ENABLE_NATIVE_SIDECARS=true`.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::control_plane::ControlPlane;
use crate::harness::{REPO, b64, free_ports, http_get, kubectl_obj, output, run};

pub const REVISION: &str = "canary";
pub const TAG: &str = "default";
pub const ISTIO_NS: &str = "istio-system";
/// The configurations the chart renders for this install, in the order the API server calls
/// them (by name), all after `gke-wi-injector`.
pub const WEBHOOKS: [&str; 2] = [
    "istio-revision-tag-default",
    "istio-sidecar-injector-canary",
];
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The directory holding `pilot-discovery`, `charts/istio-discovery/` and `crd-all.gen.yaml`:
/// `GKE_WI_ISTIO_DIR` (scripts/test.sh exports it), else what tests/e2e/build-istio.sh prints
/// (it builds on first use).
pub fn istio_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("GKE_WI_ISTIO_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let mut c = Command::new("bash");
            c.arg(Path::new(REPO).join("tests/e2e/build-istio.sh"));
            let out = run(c).context(
                "building Istio's pilot-discovery with tests/e2e/build-istio.sh (needs Go and \
                 the Go module proxy; or set GKE_WI_ISTIO_DIR to its output)",
            )?;
            PathBuf::from(
                out.lines()
                    .last()
                    .context("build-istio.sh printed nothing")?
                    .trim(),
            )
        }
    };
    for f in [
        "pilot-discovery",
        "crd-all.gen.yaml",
        "charts/istio-discovery/Chart.yaml",
    ] {
        ensure!(
            dir.join(f).is_file(),
            "{} has no {f}: GKE_WI_ISTIO_DIR must be the directory tests/e2e/build-istio.sh \
             prints (run `tests/e2e/build-istio.sh | tail -n1`)",
            dir.display()
        );
    }
    Ok(dir)
}

/// The Istio release line the pinned module belongs to (its `VERSION` file, e.g. `1.31`).
pub fn release_line(dir: &Path) -> String {
    fs::read_to_string(dir.join("VERSION"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `helm`: `HELM`, else scripts/install-helm.sh.
pub fn helm() -> Result<PathBuf> {
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

/// A running istiod. Dropping it kills the process.
pub struct Istiod {
    dir: PathBuf,
    /// The chart values (`--set`) of this install.
    values: Vec<String>,
    child: Option<Child>,
    watchdog: Option<(Child, ChildStdin)>,
    pub https_port: u16,
    pub http_port: u16,
    pub log: PathBuf,
    /// What the chart rendered (every document), for the cases that reuse a configuration.
    pub rendered: Vec<Value>,
    pub ca_pem: String,
    pub line: String,
}

impl Istiod {
    /// Applies Istio's CRDs and the chart's ConfigMaps and webhook configurations, starts istiod
    /// and waits until it serves `/ready`.
    /// `native` sets `ENABLE_NATIVE_SIDECARS` (`true`/`false`).
    pub fn start(cp: &ControlPlane, native: bool) -> Result<Istiod> {
        let dir = istio_dir()?;
        let work = cp.dir().join("istiod");
        fs::create_dir_all(&work)?;

        // Serving certificate for 127.0.0.1 (the API server checks the IP SAN), given to istiod
        // as its custom certificate; istiod's own webhook patcher then writes the same CA.
        let ca =
            gke_wi_injector::server::certs::Ca::new("e2e istiod CA", Duration::from_secs(3600))?;
        let leaf = ca.issue(&["127.0.0.1".to_string()], Duration::from_secs(3600))?;
        let (cert, key, ca_file) = (
            work.join("tls.crt"),
            work.join("tls.key"),
            work.join("ca.crt"),
        );
        fs::write(&cert, &leaf.cert_pem)?;
        fs::write(&key, &leaf.key_pem)?;
        fs::write(&ca_file, ca.pem())?;

        let [https, http, grpc, sgrpc, monitoring, ctrlz] = free_ports::<6>()?;

        // Namespace and CRDs (server-side: the CRDs are too large for the last-applied
        // annotation).
        kubectl_obj(
            cp,
            &["apply"],
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ISTIO_NS}}),
        )?;
        run(cp.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &dir.join("crd-all.gen.yaml").display().to_string(),
        ]))?;
        run(cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ]))?;

        // The chart, as `helm template` renders it for this install.
        let values = vec![
            format!("revision={REVISION}"),
            format!("revisionTags={{{TAG}}}"),
            format!("istiodRemote.injectionURL=https://127.0.0.1:{https}/inject"),
            format!(
                "istiodRemote.injectionCABundle={}",
                b64(ca.pem().as_bytes())
            ),
        ];
        let rendered = render(&dir, &values)?;
        let wanted = |d: &Value| {
            (d["kind"] == "ConfigMap"
                && [
                    format!("istio-{REVISION}"),
                    format!("istio-sidecar-injector-{REVISION}"),
                ]
                .iter()
                .any(|n| d["metadata"]["name"] == n.as_str()))
                || (d["kind"] == "MutatingWebhookConfiguration"
                    && WEBHOOKS.iter().any(|n| d["metadata"]["name"] == *n))
        };
        let items: Vec<Value> = rendered.iter().filter(|d| wanted(d)).cloned().collect();
        ensure!(
            items.len() == 4,
            "the chart rendered {} of the 4 objects wanted: {:?}",
            items.len(),
            items
                .iter()
                .map(|d| d["metadata"]["name"].clone())
                .collect::<Vec<_>>()
        );
        run_stdin_json(
            cp,
            &json!({"apiVersion": "v1", "kind": "List", "items": items}),
        )?;

        // istiod, on loopback only, in a working directory without ./var/lib/istio/inject or
        // ./etc/istio/config/mesh, so it reads the ConfigMaps above.
        let log = cp.dir().join("istiod.log");
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(dir.join("pilot-discovery"));
        cmd.current_dir(&work)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &work)
            .envs([
                ("REVISION", REVISION),
                ("POD_NAMESPACE", ISTIO_NS),
                ("POD_NAME", "istiod-canary-e2e"),
                ("SERVICE_ACCOUNT", "istiod-canary"),
                ("CLUSTER_ID", "Kubernetes"),
                ("PILOT_CERT_PROVIDER", "istiod"),
                (
                    "ENABLE_NATIVE_SIDECARS",
                    if native { "true" } else { "false" },
                ),
                ("PILOT_ENABLE_ANALYSIS", "false"),
                ("ENABLE_CA_SERVER", "false"),
                ("GOMAXPROCS", "1"),
            ])
            .env("KUBECONFIG", cp.kubeconfig_admin())
            .args([
                "discovery".to_string(),
                format!("--kubeconfig={}", cp.kubeconfig_admin().display()),
                format!("--httpsAddr=127.0.0.1:{https}"),
                format!("--httpAddr=127.0.0.1:{http}"),
                format!("--grpcAddr=127.0.0.1:{grpc}"),
                format!("--secureGRPCAddr=127.0.0.1:{sgrpc}"),
                format!("--monitoringAddr=127.0.0.1:{monitoring}"),
                "--ctrlz_address=127.0.0.1".to_string(),
                format!("--ctrlz_port={ctrlz}"),
                format!("--tlsCertFile={}", cert.display()),
                format!("--tlsKeyFile={}", key.display()),
                format!("--caCertFile={}", ca_file.display()),
                "--log_output_level=default:info".to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        let child = cmd.spawn().context("spawning pilot-discovery")?;
        let watchdog = Command::new("sh")
            .args([
                "-c",
                "while read -r _; do :; done; kill -KILL \"$1\" 2>/dev/null",
                "gke-wi-e2e-watchdog",
                &child.id().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
            .and_then(|mut w| w.stdin.take().map(|s| (w, s)));
        let mut istiod = Istiod {
            dir: dir.clone(),
            values,
            child: Some(child),
            watchdog,
            https_port: https,
            http_port: http,
            log,
            rendered,
            ca_pem: ca.pem().to_string(),
            line: release_line(&dir),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = istiod.child.as_mut().context("child")?.try_wait()? {
                bail!(
                    "istiod exited with {status} before /ready\n{}",
                    istiod.log_tail(40)
                );
            }
            if let Ok((200, _)) = http_get(http, "/ready") {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "istiod not ready after {READY_TIMEOUT:?}\n{}",
                    istiod.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(istiod)
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- istiod log ({}) ---\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    /// The chart rendered again with `extra` values (`--set k=v`) on top of this install's.
    pub fn render_with(&self, extra: &[&str]) -> Result<Vec<Value>> {
        let mut values = self.values.clone();
        values.extend(extra.iter().map(|v| v.to_string()));
        render(&self.dir, &values)
    }

    /// The rendered document of `kind` named `name`.
    pub fn rendered(&self, kind: &str, name: &str) -> Result<&Value> {
        crate::harness::find(&self.rendered, kind, name)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some((mut w, stdin)) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
            drop(stdin);
        }
    }
}

impl Drop for Istiod {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `helm template` of the istio-discovery chart in `dir` with `values` (`--set`).
fn render(dir: &Path, values: &[String]) -> Result<Vec<Value>> {
    let mut h = Command::new(helm()?);
    h.args([
        "template",
        "istiod",
        &dir.join("charts/istio-discovery").display().to_string(),
        "--namespace",
        ISTIO_NS,
    ]);
    for v in values {
        h.args(["--set", v]);
    }
    let text = run(h)?;
    Ok(gke_wi_injector::engine::yaml::documents(
        &text,
        &gke_wi_injector::commands::inject::INPUT_LIMITS,
    )?)
}

/// `kubectl apply -f -` of one object (a List), as the admin.
pub fn run_stdin_json(cp: &ControlPlane, obj: &Value) -> Result<()> {
    let out = output(&mut cp.kubectl(&["apply", "-f", "-"]), &obj.to_string())?;
    ensure!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
