//! The Helm chart in deploy/helm/gke-wi-injector, rendered with a pinned helm (env `HELM`, else
//! scripts/install-helm.sh): with default values it renders `kustomize build deploy/` object for
//! object (differences listed in `ALLOWED_DIFFERENCES`), every value changes what it should, the
//! schema refuses what the injector would not accept, `helm lint` is clean, and the README's
//! values table is the one generated from values.schema.json.

#[path = "helm/tools.rs"]
mod tools;
#[path = "helm/values_table.rs"]
mod values_table;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use tools::{CHART, NAME, NS, ROOT, Rendered, helm, id, kustomize_build, render, run, try_render};

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
fn image_values_reach_the_injector_and_the_wait_container() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let r = render(&format!(
        "image: {{repository: example.invalid/team/gke-wi-injector, tag: 1.2.3, digest: '{digest}', \
         pullPolicy: Always}}\nimagePullSecrets: [{{name: regcred}}]"
    ));
    let image = format!("example.invalid/team/gke-wi-injector:1.2.3@{digest}");
    let c = r.container(NAME);
    assert_eq!(c["image"], image.as_str());
    assert_eq!(c["imagePullPolicy"], "Always");
    assert!(
        r.env(NAME)
            .contains(&("GKE_WI_INJECTOR_WAIT_IMAGE".into(), image.clone()))
    );
    assert_eq!(
        r.pod_spec(NAME)["imagePullSecrets"],
        json!([{"name": "regcred"}])
    );

    let r = render("image: {tag: 9.9.9}\nmutation: {waitImage: curlimages/curl:8.10.1}");
    assert_eq!(r.container(NAME)["image"], "gke-wi-injector:9.9.9");
    assert!(r.env(NAME).contains(&(
        "GKE_WI_INJECTOR_WAIT_IMAGE".into(),
        "curlimages/curl:8.10.1".into()
    )));
}

#[test]
fn mutation_and_log_values_become_the_serve_flags_environment() {
    let defaults = render("").env(NAME);
    assert_eq!(
        defaults,
        [
            (
                "GKE_WI_INJECTOR_NAMESPACE".to_string(),
                "<from>".to_string()
            ),
            (
                "GKE_WI_INJECTOR_WAIT_IMAGE".into(),
                format!("gke-wi-injector:{}", env!("CARGO_PKG_VERSION"))
            ),
        ]
    );
    let r = render(
        "mutation:\n  prefix: wi.example.com\n  metadataHost: 169.254.169.252\n  waitMode: curl\n  \
         waitImageWindows: example.invalid/wait-windows:1\n  waitResources: {cpuRequest: 20m, \
         memoryRequest: 24Mi, memoryLimit: 48Mi}\nlogFormat: text",
    );
    let env = r.env(NAME);
    assert_eq!(
        env[2..],
        [
            ("GKE_WI_INJECTOR_PREFIX", "wi.example.com"),
            ("GKE_WI_INJECTOR_METADATA_HOST", "169.254.169.252"),
            ("GKE_WI_INJECTOR_WAIT_MODE", "curl"),
            (
                "GKE_WI_INJECTOR_WAIT_IMAGE_WINDOWS",
                "example.invalid/wait-windows:1"
            ),
            ("GKE_WI_INJECTOR_WAIT_CPU_REQUEST", "20m"),
            ("GKE_WI_INJECTOR_WAIT_MEMORY_REQUEST", "24Mi"),
            ("GKE_WI_INJECTOR_WAIT_MEMORY_LIMIT", "48Mi"),
            ("GKE_WI_INJECTOR_LOG_FORMAT", "text"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    // Every variable is one `serve` reads (src/cli.rs).
    let cli = std::fs::read_to_string(Path::new(ROOT).join("src/cli.rs")).unwrap();
    for (k, _) in &env {
        assert!(
            cli.contains(&format!("env = \"{k}\"")),
            "{k} is not a serve flag"
        );
    }
    // The prefix is also the label the webhook selects namespaces by.
    assert_eq!(
        r.webhook(NAME)["namespaceSelector"]["matchLabels"],
        json!({"wi.example.com/inject": "enabled"})
    );
}

#[test]
fn scheduling_values_reach_the_pod_spec() {
    let r = render(
        "replicas: 3\nresources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 512Mi}}\n\
         nodeSelector: {pool: system}\ntolerations: [{key: dedicated, operator: Equal, value: system, \
         effect: NoSchedule}]\naffinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: \
         {nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [system]}]}]}}}\n\
         topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, \
         whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: \
         gke-wi-injector}}}]\npriorityClassName: system-cluster-critical",
    );
    let d = r.get("Deployment", NAME);
    assert_eq!(d["spec"]["replicas"], 3);
    let pod = r.pod_spec(NAME);
    assert_eq!(r.container(NAME)["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(r.container(NAME)["resources"]["requests"]["cpu"], "100m");
    // Helm merges maps with the defaults: the Linux selector stays unless set to null.
    assert_eq!(
        pod["nodeSelector"],
        json!({"kubernetes.io/os": "linux", "pool": "system"})
    );
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    // A given affinity replaces the default anti-affinity.
    assert!(
        pod["affinity"].get("podAntiAffinity").is_none(),
        "{}",
        pod["affinity"]
    );
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "pool"
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");

    let defaults = render("");
    let pod = defaults.pod_spec(NAME);
    for absent in [
        "tolerations",
        "topologySpreadConstraints",
        "priorityClassName",
        "imagePullSecrets",
    ] {
        assert!(pod.get(absent).is_none(), "{absent} rendered by default");
    }
    let r = render("nodeSelector: {kubernetes.io/os: null, pool: system}");
    assert_eq!(r.pod_spec(NAME)["nodeSelector"], json!({"pool": "system"}));
    // No selector at all renders none.
    assert!(
        render("nodeSelector: null")
            .pod_spec(NAME)
            .get("nodeSelector")
            .is_none()
    );
}

#[test]
fn the_pod_disruption_budget_follows_its_values() {
    let r = render("podDisruptionBudget: {minAvailable: 50%}");
    assert_eq!(
        r.get("PodDisruptionBudget", NAME)["spec"]["minAvailable"],
        "50%"
    );
    let r = render("podDisruptionBudget: {enabled: false}");
    assert!(!r.has_kind("PodDisruptionBudget"), "{:?}", r.ids());
}

#[test]
fn webhook_values_reach_the_webhook_configuration() {
    let r = render(
        "webhook: {failurePolicy: Fail, timeoutSeconds: 10, extraExcludedNamespaces: [istio-system, \
         kube-system, gke-managed-system]}",
    );
    let hook = r.webhook(NAME);
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["timeoutSeconds"], 10);
    // kube-system and the release namespace stay, once each.
    assert_eq!(
        hook["namespaceSelector"]["matchExpressions"],
        json!([{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": ["kube-system", NS, "istio-system", "gke-managed-system"]}])
    );
    // Everything else as deploy/ has it.
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(hook["sideEffects"], "None");
}

#[test]
fn another_release_name_and_namespace_rename_everything_consistently() {
    let r = Rendered {
        docs: try_render("wi", "platform-wi", "").unwrap(),
    };
    let full = "wi-gke-wi-injector";
    for d in &r.docs {
        assert!(
            d["metadata"]["name"].as_str().unwrap().starts_with(full),
            "{}",
            id(d)
        );
        if let Some(ns) = d["metadata"]["namespace"].as_str() {
            assert_eq!(ns, "platform-wi", "{}", id(d));
        }
        assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/instance"], "wi");
    }
    let hook = r.webhook(full);
    assert_eq!(
        hook["clientConfig"]["service"],
        json!({"name": full, "namespace": "platform-wi", "path": "/mutate", "port": 443})
    );
    assert_eq!(
        hook["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["kube-system", "platform-wi"])
    );
    assert_eq!(
        r.get("MutatingWebhookConfiguration", full)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "platform-wi/wi-gke-wi-injector-tls"
    );
    assert_eq!(
        r.get("Certificate", "wi-gke-wi-injector-tls")["spec"]["dnsNames"],
        json!([
            "wi-gke-wi-injector.platform-wi.svc",
            "wi-gke-wi-injector.platform-wi.svc.cluster.local"
        ])
    );
    assert_eq!(r.pod_spec(full)["serviceAccountName"], full);
    assert_eq!(
        r.get("ClusterRoleBinding", full)["subjects"],
        json!([{"kind": "ServiceAccount", "name": full, "namespace": "platform-wi"}])
    );
    assert_eq!(
        r.pod_spec(full)["volumes"][0]["secret"]["secretName"],
        "wi-gke-wi-injector-tls"
    );

    let r = Rendered {
        docs: try_render("x", NS, "fullnameOverride: gke-wi-injector").unwrap(),
    };
    assert!(r.find("Deployment", NAME).is_some(), "{:?}", r.ids());
}

const CA: &str = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
const LEAF: &str = "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n";

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn no_cert_manager(r: &Rendered) {
    assert!(
        r.docs.iter().all(|d| !d["apiVersion"]
            .as_str()
            .unwrap()
            .starts_with("cert-manager.io/")),
        "{:?}",
        r.ids()
    );
    assert!(
        r.get("MutatingWebhookConfiguration", NAME)["metadata"]
            .get("annotations")
            .is_none()
    );
}

#[test]
fn certificate_modes() {
    // certManager (default): the four cert-manager objects and the CA injector's annotation.
    let r = render("");
    for (kind, name) in [
        ("Issuer", "gke-wi-injector-selfsigned"),
        ("Certificate", "gke-wi-injector-ca"),
        ("Issuer", "gke-wi-injector-ca"),
        ("Certificate", "gke-wi-injector-tls"),
    ] {
        r.get(kind, name);
    }
    assert!(r.webhook(NAME)["clientConfig"].get("caBundle").is_none());
    assert!(!r.has_kind("Secret"));

    // selfSigned: `gke-wi-injector certs` output as values becomes the Secret and the caBundle.
    let values = json!({"certificates": {"mode": "selfSigned",
        "selfSigned": {"caCrt": CA, "tlsCrt": LEAF, "tlsKey": KEY}}});
    let r = render(&values.to_string());
    no_cert_manager(&r);
    let secret = r.get("Secret", "gke-wi-injector-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["namespace"], NS);
    assert_eq!(
        secret["data"],
        json!({"tls.crt": b64(LEAF), "tls.key": b64(KEY), "ca.crt": b64(CA)})
    );
    assert_eq!(r.webhook(NAME)["clientConfig"]["caBundle"], b64(CA));
    assert_eq!(
        r.pod_spec(NAME)["volumes"][0]["secret"]["secretName"],
        "gke-wi-injector-tls"
    );

    // existingSecret: mounted as is, its CA in the caBundle, no Secret rendered.
    let values = json!({"certificates": {"mode": "existingSecret",
        "existingSecret": {"name": "platform-webhook-tls", "caCrt": CA}}});
    let r = render(&values.to_string());
    no_cert_manager(&r);
    assert!(!r.has_kind("Secret"));
    assert_eq!(r.webhook(NAME)["clientConfig"]["caBundle"], b64(CA));
    assert_eq!(
        r.pod_spec(NAME)["volumes"][0]["secret"]["secretName"],
        "platform-webhook-tls"
    );
}

#[test]
fn the_network_policy_admits_the_webhook_and_monitoring_only() {
    let r = render("");
    let np = &r.get("NetworkPolicy", NAME)["spec"];
    assert_eq!(
        np["podSelector"]["matchLabels"],
        r.get("Deployment", NAME)["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(np["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        np["ingress"],
        json!([
            {"ports": [{"port": 10250, "protocol": "TCP"}]},
            {"from": [{"namespaceSelector": {"matchLabels":
                {"kubernetes.io/metadata.name": "monitoring"}}}],
             "ports": [{"port": 9090, "protocol": "TCP"}]},
        ])
    );
    assert!(np.get("egress").is_none());

    let r = render(
        "networkPolicy: {apiServerCIDR: 172.16.0.2/32, apiServerPorts: [443, 6443], \
         monitoringNamespace: prometheus}",
    );
    let np = &r.get("NetworkPolicy", NAME)["spec"];
    assert_eq!(np["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        np["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "prometheus"
    );
    assert_eq!(
        np["egress"],
        json!([
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"to": [{"ipBlock": {"cidr": "172.16.0.2/32"}}],
             "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]},
        ])
    );

    // No monitoring namespace: only the webhook port.
    let r = render("networkPolicy: {monitoringNamespace: ''}");
    assert_eq!(
        r.get("NetworkPolicy", NAME)["spec"]["ingress"],
        json!([{"ports": [{"port": 10250, "protocol": "TCP"}]}])
    );
    assert!(!render("networkPolicy: {enabled: false}").has_kind("NetworkPolicy"));
}

#[test]
fn monitoring_objects_are_optional() {
    let r = render("");
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(!r.has_kind(kind), "{kind} rendered by default");
    }
    let r = render(
        "monitoring:\n  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}\n  \
         prometheusRule: {enabled: true, labels: {release: prom}}\n  dashboard: {enabled: true}",
    );
    let sm = r.get("ServiceMonitor", NAME);
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "admin", "path": "/metrics", "scheme": "http", "interval": "15s"}])
    );
    // It selects the chart's Service, whose admin port it names.
    let svc = r.get("Service", NAME);
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v, "Service label {k}");
    }
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "admin")
    );
    assert_eq!(
        r.get("PrometheusRule", NAME)["metadata"]["labels"]["release"],
        "prom"
    );
    let cm = r.get("ConfigMap", "gke-wi-injector-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value =
        serde_json::from_str(cm["data"]["gke-wi-injector.json"].as_str().unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "gke-wi-injector");

    // The latency alert's threshold is 80 % of timeoutSeconds, at most 4 s (the last finite bucket is 5 s).
    for (timeout, threshold) in [(5, "> 4\n"), (2, "> 1.6\n"), (1, "> 0.8\n"), (10, "> 4\n")] {
        let r = render(&format!(
            "monitoring: {{prometheusRule: {{enabled: true}}}}\nwebhook: {{timeoutSeconds: {timeout}}}"
        ));
        let rules = &r.get("PrometheusRule", NAME)["spec"]["groups"][0]["rules"];
        let latency = rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["alert"] == "GkeWiInjectorLatencyNearTimeout")
            .unwrap();
        assert!(
            latency["expr"].as_str().unwrap().ends_with(threshold),
            "timeoutSeconds {timeout}: {}",
            latency["expr"]
        );
    }
}

/// NOTES.txt rendered by `helm template` (which skips it): a copy of the chart carries it as a
/// named template inside a ConfigMap.
fn notes(values: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("gke-wi-injector");
    copy_dir(&Path::new(ROOT).join(CHART), &chart);
    let notes = std::fs::read_to_string(chart.join("templates/NOTES.txt")).unwrap();
    std::fs::write(
        chart.join("templates/_notes_check.tpl"),
        format!("{{{{- define \"notes-check\" -}}}}\n{notes}{{{{- end -}}}}\n"),
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/notes-check.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes-check}\ndata:\n  notes: |\n    \
         {{- include \"notes-check\" . | nindent 4 }}\n",
    )
    .unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).unwrap();
    let out = run(Command::new(helm())
        .args(["template", NAME])
        .arg(&chart)
        .args(["--namespace", NS, "--values"])
        .arg(&file));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Rendered {
        docs: tools::docs(&String::from_utf8(out.stdout).unwrap()),
    };
    r.get("ConfigMap", "notes-check")["data"]["notes"]
        .as_str()
        .unwrap()
        .to_string()
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

#[test]
fn notes_tell_how_to_opt_in_and_check() {
    let text = notes("mutation: {prefix: wi.example.com}");
    for want in [
        "kubectl -n gke-wi-injector rollout status deploy/gke-wi-injector",
        "kubectl label namespace my-app wi.example.com/inject=enabled",
        "--dry-run=server",
        "wi.example.com/injected",
        "pod-security.kubernetes.io/enforce=restricted",
        "from cert-manager",
    ] {
        assert!(text.contains(want), "NOTES lack {want:?}:\n{text}");
    }
    let text = notes(
        "namespace: {create: true}\ncertificates: {mode: existingSecret, existingSecret: {name: s, caCrt: \"-----BEGIN CERTIFICATE-----\"}}",
    );
    assert!(!text.contains("pod-security"), "{text}");
    assert!(!text.contains("cert-manager"), "{text}");
}

#[test]
fn the_readme_values_table_is_generated_from_the_schema() {
    values_table::check_readme();
}

#[test]
fn the_schema_defaults_are_the_values_file() {
    values_table::check_defaults();
}
