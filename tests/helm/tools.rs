//! The pinned tools the chart and monitoring tests run (helm, kustomize, promtool: env `HELM`,
//! `KUSTOMIZE`, `PROMTOOL`, else built by scripts/install-*.sh), and the chart rendered with them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use gke_wi_injector::commands::inject::INPUT_LIMITS;
use gke_wi_injector::engine::yaml;
use serde_json::Value;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
pub const CHART: &str = "deploy/helm/gke-wi-injector";
pub const NS: &str = "gke-wi-injector";
pub const NAME: &str = "gke-wi-injector";
/// Kubernetes version helm renders for (a `go install`-built helm defaults to v1.20).
pub const KUBE_VERSION: &str = "v1.36.3";

/// `env` if set, else the last stdout line of `script` (which builds and caches the tool).
fn tool(env: &str, script: &str, what: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env}={} is not a file", p.display());
        return p;
    }
    let script = Path::new(ROOT).join(script);
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or("").trim();
    assert!(
        out.status.success() && Path::new(path).is_file(),
        "these tests need {what}: set {env} to its path, or let {} build it (needs Go and the Go \
         module proxy). It said:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(path)
}

pub fn helm() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| tool("HELM", "scripts/install-helm.sh", "Helm 3"))
}

pub fn kustomize() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| tool("KUSTOMIZE", "scripts/install-kustomize.sh", "kustomize v5"))
}

pub fn promtool() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| tool("PROMTOOL", "scripts/install-promtool.sh", "promtool"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// YAML documents, empty ones (comments only) dropped.
pub fn docs(text: &str) -> Vec<Value> {
    yaml::documents(text, &INPUT_LIMITS)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// `helm template` of the chart as release `release` in `namespace` with `values` (a YAML
/// document); the error output when helm refuses.
pub fn try_render(release: &str, namespace: &str, values: &str) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).unwrap();
    let out = run(Command::new(helm())
        .args(["template", release, CHART, "--namespace", namespace])
        .args(["--kube-version", KUBE_VERSION, "--values"])
        .arg(&file)
        .current_dir(ROOT));
    if out.status.success() {
        Ok(docs(&String::from_utf8(out.stdout).unwrap()))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The chart as release gke-wi-injector in namespace gke-wi-injector with `values`.
pub fn render(values: &str) -> Rendered {
    let docs = try_render(NAME, NS, values)
        .unwrap_or_else(|e| panic!("helm template with values {values:?}: {e}"));
    Rendered { docs }
}

/// `kustomize build` of a directory of this repository.
pub fn kustomize_build(dir: &Path) -> Rendered {
    let out = run(Command::new(kustomize()).arg("build").arg(dir));
    assert!(
        out.status.success(),
        "kustomize build {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Rendered {
        docs: docs(&String::from_utf8(out.stdout).unwrap()),
    }
}

pub struct Rendered {
    pub docs: Vec<Value>,
}

impl Rendered {
    /// `Kind/name` of every object, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.docs.iter().map(id).collect();
        ids.sort();
        ids
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", self.ids()))
    }

    pub fn has_kind(&self, kind: &str) -> bool {
        self.docs.iter().any(|d| d["kind"] == kind)
    }

    /// The injector's container.
    pub fn container(&self, name: &str) -> &Value {
        &self.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    }

    pub fn pod_spec(&self, name: &str) -> &Value {
        &self.get("Deployment", name)["spec"]["template"]["spec"]
    }

    /// The container's env as `(name, value)`, `valueFrom` entries as `<from>`.
    pub fn env(&self, name: &str) -> Vec<(String, String)> {
        self.container(name)["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap_or("<from>").to_string(),
                )
            })
            .collect()
    }

    pub fn webhook(&self, name: &str) -> &Value {
        let cfg = self.get("MutatingWebhookConfiguration", name);
        assert_eq!(cfg["webhooks"].as_array().unwrap().len(), 1);
        &cfg["webhooks"][0]
    }
}

pub fn id(d: &Value) -> String {
    format!(
        "{}/{}",
        d["kind"].as_str().unwrap(),
        d["metadata"]["name"].as_str().unwrap()
    )
}
