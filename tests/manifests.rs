//! The kustomize manifests under deploy/, rendered with a pinned kustomize (env `KUSTOMIZE`, else
//! scripts/install-kustomize.sh) and checked field by field: the webhook configuration, RBAC,
//! security contexts, availability, the certificate wiring of each flavour, and that one
//! `images:` edit moves both the injector's image and the wait init container's image.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use gke_wi_injector::commands::inject::INPUT_LIMITS;
use gke_wi_injector::engine::yaml;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NS: &str = "gke-wi-injector";
const NAME: &str = "gke-wi-injector";
const SECRET: &str = "gke-wi-injector-tls";
const WAIT_IMAGE_ENV: &str = "GKE_WI_INJECTOR_WAIT_IMAGE";

/// The kustomizations a user may apply.
const FLAVOURS: [&str; 4] = [
    "deploy",
    "deploy/base",
    "deploy/overlays/cert-manager",
    "deploy/overlays/self-managed",
];

fn kustomize() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(k) = std::env::var_os("KUSTOMIZE") {
            let k = PathBuf::from(k);
            assert!(k.is_file(), "KUSTOMIZE={} is not a file", k.display());
            return k;
        }
        let script = Path::new(ROOT).join("scripts/install-kustomize.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = stdout.lines().last().unwrap_or("").trim();
        assert!(
            out.status.success() && Path::new(path).is_file(),
            "the manifest tests need kustomize v5: set KUSTOMIZE to its path, or let {} build it \
             (needs Go and the Go module proxy). It said:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(path)
    })
}

/// A copy of deploy/ and certs/ (the committed files) with stand-in certificate files.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&Path::new(ROOT).join("deploy"), &dir.path().join("deploy"));
        let certs = dir.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(
            Path::new(ROOT).join("certs/kustomization.yaml"),
            certs.join("kustomization.yaml"),
        )
        .unwrap();
        for (file, body) in cert_files() {
            std::fs::write(certs.join(file), body).unwrap();
        }
        Tree { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn kustomize(&self, dir: &str, args: &[&str]) -> String {
        let out = Command::new(kustomize())
            .args(args)
            .current_dir(self.path(dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kustomize {args:?} in {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn build(&self, dir: &str) -> Objects {
        let yaml = self.kustomize(dir, &["build", "."]);
        let docs = yaml::documents(&yaml, &INPUT_LIMITS)
            .unwrap()
            .into_iter()
            .map(unwrap_base64)
            .collect();
        Objects {
            dir: dir.to_string(),
            docs,
        }
    }
}

/// kustomize folds long base64 values (Secret data, the caBundle it copies) into lines of 76;
/// the API server's decoder (Go's encoding/base64) skips the newlines, k8s-openapi's does not.
fn unwrap_base64(mut doc: Value) -> Value {
    let unwrap = |v: &mut Value| {
        if let Some(s) = v.as_str() {
            *v = Value::String(s.replace('\n', ""));
        }
    };
    if doc["kind"] == "Secret"
        && let Some(data) = doc.get_mut("data").and_then(Value::as_object_mut)
    {
        data.values_mut().for_each(unwrap);
    }
    if let Some(hooks) = doc.get_mut("webhooks").and_then(Value::as_array_mut) {
        for hook in hooks {
            if let Some(ca) = hook.pointer_mut("/clientConfig/caBundle") {
                unwrap(ca);
            }
        }
    }
    doc
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Stand-ins for what `gke-wi-injector certs` writes; kustomize does not parse them.
fn cert_files() -> [(&'static str, &'static str); 3] {
    [
        (
            "ca.crt",
            "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
        ),
        (
            "tls.crt",
            "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n",
        ),
        (
            "tls.key",
            "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n",
        ),
    ]
}

/// One rendered kustomization.
struct Objects {
    dir: String,
    docs: Vec<Value>,
}

impl Objects {
    fn ids(&self) -> BTreeSet<String> {
        self.docs
            .iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    fn raw(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{}: no {kind}/{name} in {:?}", self.dir, self.ids()))
    }

    fn get<T: serde::de::DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        serde_json::from_value(self.raw(kind, name).clone())
            .unwrap_or_else(|e| panic!("{}: {kind}/{name} does not decode: {e}", self.dir))
    }

    fn webhook(&self) -> MutatingWebhook {
        let cfg: MutatingWebhookConfiguration = self.get("MutatingWebhookConfiguration", NAME);
        let mut hooks = cfg.webhooks.unwrap();
        assert_eq!(hooks.len(), 1, "{}", self.dir);
        hooks.remove(0)
    }

    fn pod_spec(&self) -> PodSpec {
        let d: Deployment = self.get("Deployment", NAME);
        d.spec.unwrap().template.spec.unwrap()
    }

    fn container(&self) -> Container {
        let mut containers = self.pod_spec().containers;
        assert_eq!(containers.len(), 1, "{}", self.dir);
        containers.remove(0)
    }

    fn wait_image_env(&self) -> String {
        let env = self.container().env.unwrap();
        let var = env.iter().find(|e| e.name == WAIT_IMAGE_ENV);
        var.and_then(|e| e.value.clone())
            .unwrap_or_else(|| panic!("{}: no {WAIT_IMAGE_ENV} value", self.dir))
    }
}

fn common_ids() -> BTreeSet<String> {
    [
        "Namespace/gke-wi-injector",
        "ServiceAccount/gke-wi-injector",
        "ClusterRole/gke-wi-injector",
        "ClusterRoleBinding/gke-wi-injector",
        "Deployment/gke-wi-injector",
        "PodDisruptionBudget/gke-wi-injector",
        "Service/gke-wi-injector",
        "MutatingWebhookConfiguration/gke-wi-injector",
    ]
    .map(String::from)
    .into()
}

#[test]
fn every_flavour_renders_the_objects_it_should() {
    let tree = Tree::new();
    let cert_manager: BTreeSet<String> = [
        "Issuer/gke-wi-injector-selfsigned",
        "Certificate/gke-wi-injector-ca",
        "Issuer/gke-wi-injector-ca",
        "Certificate/gke-wi-injector-tls",
    ]
    .map(String::from)
    .into();
    let with =
        |extra: &BTreeSet<String>| common_ids().union(extra).cloned().collect::<BTreeSet<_>>();
    assert_eq!(tree.build("deploy/base").ids(), common_ids());
    assert_eq!(
        tree.build("deploy/overlays/cert-manager").ids(),
        with(&cert_manager)
    );
    assert_eq!(tree.build("deploy").ids(), with(&cert_manager));
    let secret = BTreeSet::from([format!("Secret/{SECRET}")]);
    assert_eq!(
        tree.build("deploy/overlays/self-managed").ids(),
        with(&secret)
    );
    // deploy/ is the cert-manager flavour, object for object.
    assert_eq!(
        tree.build("deploy").docs,
        tree.build("deploy/overlays/cert-manager").docs
    );
}

#[test]
fn the_webhook_configuration_has_every_field_the_spec_names() {
    let tree = Tree::new();
    for flavour in FLAVOURS {
        let objs = tree.build(flavour);
        let cfg = objs.raw("MutatingWebhookConfiguration", NAME);
        // The API server calls configurations in name order; Istio must see our annotations.
        for istio in ["istio-sidecar-injector", "istio-revision-tag-default"] {
            assert!(
                cfg["metadata"]["name"].as_str().unwrap() < istio,
                "{flavour}"
            );
        }
        let hook = objs.webhook();
        assert_eq!(hook.name, "pods.gke-wi-injector.dev", "{flavour}");
        let rules = serde_json::to_value(hook.rules.as_ref().unwrap()).unwrap();
        assert_eq!(
            rules,
            json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                     "resources": ["pods"], "scope": "Namespaced"}]),
            "{flavour}"
        );
        let svc = hook.client_config.service.as_ref().unwrap();
        assert_eq!(
            (
                svc.name.as_str(),
                svc.namespace.as_str(),
                svc.path.as_deref(),
                svc.port
            ),
            (NAME, NS, Some("/mutate"), Some(443)),
            "{flavour}"
        );
        assert_eq!(hook.client_config.url, None, "{flavour}");
        let selector = serde_json::to_value(hook.namespace_selector.as_ref().unwrap()).unwrap();
        assert_eq!(
            selector,
            json!({
                "matchLabels": {"gke-wi-injector.dev/inject": "enabled"},
                "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                      "values": ["kube-system", NS]}],
            }),
            "{flavour}"
        );
        assert_eq!(hook.object_selector, None, "{flavour}");
        assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"), "{flavour}");
        assert_eq!(hook.side_effects, "None", "{flavour}");
        assert_eq!(hook.timeout_seconds, Some(5), "{flavour}");
        assert_eq!(
            hook.reinvocation_policy.as_deref(),
            Some("IfNeeded"),
            "{flavour}"
        );
        assert_eq!(hook.admission_review_versions, ["v1"], "{flavour}");
        assert_eq!(
            hook.match_policy.as_deref(),
            Some("Equivalent"),
            "{flavour}"
        );
    }
}

#[test]
fn rbac_grants_only_get_list_watch_on_namespaces() {
    let tree = Tree::new();
    for flavour in FLAVOURS {
        let objs = tree.build(flavour);
        let role: ClusterRole = objs.get("ClusterRole", NAME);
        assert_eq!(
            role.rules.unwrap(),
            [PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["namespaces".into()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            }],
            "{flavour}"
        );
        assert_eq!(role.aggregation_rule, None, "{flavour}");
        // No other grant anywhere: one ClusterRole, one binding, no namespaced Roles.
        let rbac: Vec<_> = objs
            .ids()
            .into_iter()
            .filter(|id| id.contains("Role"))
            .collect();
        assert_eq!(
            rbac,
            [
                "ClusterRole/gke-wi-injector",
                "ClusterRoleBinding/gke-wi-injector"
            ],
            "{flavour}"
        );
        let binding: ClusterRoleBinding = objs.get("ClusterRoleBinding", NAME);
        assert_eq!(
            (
                binding.role_ref.kind.as_str(),
                binding.role_ref.name.as_str()
            ),
            ("ClusterRole", NAME)
        );
        let subjects = binding.subjects.unwrap();
        assert_eq!(subjects.len(), 1, "{flavour}");
        assert_eq!(
            (
                subjects[0].kind.as_str(),
                subjects[0].name.as_str(),
                subjects[0].namespace.as_deref()
            ),
            ("ServiceAccount", NAME, Some(NS)),
            "{flavour}"
        );
        assert_eq!(
            objs.pod_spec().service_account_name.as_deref(),
            Some(NAME),
            "{flavour}"
        );
    }
}

#[test]
fn the_deployment_is_highly_available_and_restricted() {
    let tree = Tree::new();
    for flavour in FLAVOURS {
        let objs = tree.build(flavour);
        let d: Deployment = objs.get("Deployment", NAME);
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(2), "{flavour}");
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(
            spec.selector.match_labels.as_ref(),
            Some(&labels),
            "{flavour}"
        );
        let pod = spec.template.spec.unwrap();

        let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
        let terms = anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(terms.len(), 1, "{flavour}");
        let term = &terms[0].pod_affinity_term;
        assert_eq!(term.topology_key, "kubernetes.io/hostname", "{flavour}");
        assert_eq!(
            term.label_selector.as_ref().unwrap().match_labels.as_ref(),
            Some(&labels)
        );

        let pdb: PodDisruptionBudget = objs.get("PodDisruptionBudget", NAME);
        let pdb = pdb.spec.unwrap();
        assert_eq!(pdb.min_available, Some(IntOrString::Int(1)), "{flavour}");
        assert_eq!(
            pdb.selector.unwrap().match_labels.as_ref(),
            Some(&labels),
            "{flavour}"
        );

        let psc = serde_json::to_value(pod.security_context.unwrap()).unwrap();
        for (k, v) in [
            ("runAsNonRoot", json!(true)),
            ("runAsUser", json!(65532)),
            ("seccompProfile", json!({"type": "RuntimeDefault"})),
        ] {
            assert_eq!(psc[k], v, "{flavour}: pod securityContext.{k}");
        }
        let c = objs.container();
        let csc = serde_json::to_value(c.security_context.as_ref().unwrap()).unwrap();
        for (k, v) in [
            ("runAsNonRoot", json!(true)),
            ("runAsUser", json!(65532)),
            ("allowPrivilegeEscalation", json!(false)),
            ("readOnlyRootFilesystem", json!(true)),
            ("capabilities", json!({"drop": ["ALL"]})),
            ("seccompProfile", json!({"type": "RuntimeDefault"})),
        ] {
            assert_eq!(csc[k], v, "{flavour}: container securityContext.{k}");
        }
        assert!(
            csc.get("privileged").is_none_or(|p| p == false),
            "{flavour}"
        );

        let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert!(
            requests.contains_key("cpu") && requests.contains_key("memory"),
            "{flavour}: {requests:?}"
        );
        let args: Vec<&str> = c
            .args
            .as_ref()
            .unwrap()
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            args,
            [
                "serve",
                "--tls-cert",
                "/certs/tls.crt",
                "--tls-key",
                "/certs/tls.key"
            ]
        );
        assert_eq!(c.command, None, "{flavour}: the image's entrypoint runs");
        let ports: Vec<_> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.as_deref(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            [(Some("https"), 10250), (Some("admin"), 9090)],
            "{flavour}"
        );
        let port_of = |p: &IntOrString| match p {
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => {
                ports
                    .iter()
                    .find(|(n, _)| *n == Some(name.as_str()))
                    .unwrap()
                    .1
            }
        };
        for (probe, path) in [
            (&c.liveness_probe, "/livez"),
            (&c.readiness_probe, "/readyz"),
        ] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(
                (get.path.as_deref(), port_of(&get.port)),
                (Some(path), 9090),
                "{flavour}"
            );
        }

        let env = c.env.as_ref().unwrap();
        let ns = env
            .iter()
            .find(|e| e.name == "GKE_WI_INJECTOR_NAMESPACE")
            .unwrap();
        let field = ns.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(field.field_path, "metadata.namespace", "{flavour}");
        let mount = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == "/certs")
            .unwrap();
        assert_eq!(mount.read_only, Some(true), "{flavour}");
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == mount.name)
            .unwrap();
        let secret = volume.secret.unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some(SECRET), "{flavour}");
        // The key is readable by the injector's group (fsGroup) only.
        assert_eq!(secret.default_mode, Some(0o440), "{flavour}");
        let fs_group = objs.pod_spec().security_context.unwrap().fs_group;
        assert_eq!(fs_group, Some(65532), "{flavour}");

        let svc: Service = objs.get("Service", NAME);
        let svc = svc.spec.unwrap();
        assert_eq!(svc.selector.as_ref(), Some(&labels), "{flavour}");
        let sports: Vec<_> = svc
            .ports
            .unwrap()
            .iter()
            .map(|p| (p.port, port_of(p.target_port.as_ref().unwrap())))
            .collect();
        assert_eq!(sports, [(443, 10250), (9090, 9090)], "{flavour}");

        // Every namespaced object lives in the injector's namespace, which never opts in.
        for doc in &objs.docs {
            let kind = doc["kind"].as_str().unwrap();
            if ![
                "Namespace",
                "ClusterRole",
                "ClusterRoleBinding",
                "MutatingWebhookConfiguration",
            ]
            .contains(&kind)
            {
                assert_eq!(doc["metadata"]["namespace"], NS, "{flavour}: {kind}");
            }
        }
        let ns = objs.raw("Namespace", NS);
        assert!(
            ns["metadata"]["labels"]
                .get("gke-wi-injector.dev/inject")
                .is_none(),
            "{flavour}"
        );
    }
}

#[test]
fn cert_manager_issues_the_serving_certificate_and_injects_its_ca() {
    let tree = Tree::new();
    for flavour in ["deploy", "deploy/overlays/cert-manager"] {
        let objs = tree.build(flavour);
        let cert = objs.raw("Certificate", "gke-wi-injector-tls");
        assert_eq!(cert["spec"]["secretName"], SECRET, "{flavour}");
        assert_eq!(
            cert["spec"]["dnsNames"],
            json!([
                "gke-wi-injector.gke-wi-injector.svc",
                "gke-wi-injector.gke-wi-injector.svc.cluster.local"
            ]),
            "{flavour}"
        );
        assert_eq!(
            cert["spec"]["issuerRef"],
            json!({"kind": "Issuer", "name": "gke-wi-injector-ca"})
        );
        let ca = objs.raw("Certificate", "gke-wi-injector-ca");
        assert_eq!(ca["spec"]["isCA"], true, "{flavour}");
        let ca_issuer = objs.raw("Issuer", "gke-wi-injector-ca");
        assert_eq!(
            ca_issuer["spec"]["ca"]["secretName"], ca["spec"]["secretName"],
            "{flavour}"
        );
        let root = ca["spec"]["issuerRef"]["name"].as_str().unwrap();
        assert!(
            objs.raw("Issuer", root)["spec"].get("selfSigned").is_some(),
            "{flavour}"
        );

        let cfg = objs.raw("MutatingWebhookConfiguration", NAME);
        assert_eq!(
            cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            format!("{NS}/gke-wi-injector-tls"),
            "{flavour}"
        );
        assert_eq!(
            objs.webhook().client_config.ca_bundle,
            None,
            "{flavour}: the CA injector sets it"
        );
    }
}

#[test]
fn self_managed_certificates_become_the_secret_and_the_ca_bundle() {
    let tree = Tree::new();
    let objs = tree.build("deploy/overlays/self-managed");
    let secret: Secret = objs.get("Secret", SECRET);
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some(NS));
    let data = secret.data.unwrap();
    for (file, body) in cert_files() {
        assert_eq!(data[file].0, body.as_bytes(), "Secret data {file}");
    }
    let ca_bundle = objs.webhook().client_config.ca_bundle.expect("caBundle");
    assert_eq!(ca_bundle.0, cert_files()[0].1.as_bytes());

    // A new CA (e.g. old + new during a rotation) reaches the caBundle on the next build.
    let bundle = format!(
        "{}{}",
        cert_files()[0].1,
        "-----BEGIN CERTIFICATE-----\nNEXT\n-----END CERTIFICATE-----\n"
    );
    std::fs::write(tree.path("certs/ca.crt"), &bundle).unwrap();
    let objs = tree.build("deploy/overlays/self-managed");
    assert_eq!(
        objs.webhook().client_config.ca_bundle.unwrap().0,
        bundle.as_bytes()
    );
}

#[test]
fn the_base_and_self_managed_flavours_need_no_cert_manager() {
    let tree = Tree::new();
    for flavour in ["deploy/base", "deploy/overlays/self-managed"] {
        let objs = tree.build(flavour);
        assert!(objs.docs.iter().all(|d| {
            !d["apiVersion"]
                .as_str()
                .unwrap()
                .starts_with("cert-manager.io/")
        }));
        let cfg = objs.raw("MutatingWebhookConfiguration", NAME);
        assert!(
            cfg["metadata"].get("annotations").is_none(),
            "{flavour}: {cfg}"
        );
    }
    assert_eq!(
        tree.build("deploy/base").webhook().client_config.ca_bundle,
        None
    );
}

#[test]
fn the_wait_image_follows_the_image_kustomize_sets() {
    let tree = Tree::new();
    let default = format!("gke-wi-injector:{}", env!("CARGO_PKG_VERSION"));
    for flavour in FLAVOURS {
        let objs = tree.build(flavour);
        assert_eq!(
            objs.container().image.as_deref(),
            Some(default.as_str()),
            "{flavour}"
        );
        assert_eq!(objs.wait_image_env(), default, "{flavour}");
    }
    // One `images:` edit in the kustomization applied changes both, whichever it is.
    for (i, flavour) in FLAVOURS.iter().enumerate() {
        let tree = Tree::new();
        let image = format!("example.invalid/team{i}/gke-wi-injector:1.2.{i}");
        tree.kustomize(
            flavour,
            &["edit", "set", "image", &format!("gke-wi-injector={image}")],
        );
        let objs = tree.build(flavour);
        assert_eq!(
            objs.container().image.as_deref(),
            Some(image.as_str()),
            "{flavour}"
        );
        assert_eq!(objs.wait_image_env(), image, "{flavour}");
    }
    // An edit in the base reaches every flavour built on it.
    let tree = Tree::new();
    tree.kustomize(
        "deploy/base",
        &[
            "edit",
            "set",
            "image",
            "gke-wi-injector=example.invalid/base/gke-wi-injector:7.0.0",
        ],
    );
    for flavour in ["deploy", "deploy/overlays/self-managed"] {
        let objs = tree.build(flavour);
        let want = "example.invalid/base/gke-wi-injector:7.0.0";
        assert_eq!(objs.container().image.as_deref(), Some(want), "{flavour}");
        assert_eq!(objs.wait_image_env(), want, "{flavour}");
    }
}
