//! The chart's optional objects and modes: certificates, the NetworkPolicy, monitoring, NOTES.txt.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::tools::{self, CHART, NAME, NS, ROOT, Rendered, helm, render, run};

pub const CA: &str = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
pub const LEAF: &str = "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n";
pub const KEY: &str = "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n";

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
