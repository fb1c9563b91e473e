//! Each value of the chart rendered and asserted: image, the `serve` flags, scheduling, the
//! PodDisruptionBudget, the webhook configuration, and other release names and namespaces.

use serde_json::json;

use crate::tools::{NAME, NS, Rendered, id, render, try_render};

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
    // Every variable is one `serve` reads (its flags' `env`, from the command line's definition).
    let cli = <gke_wi_injector::cli::Cli as clap::CommandFactory>::command();
    let serve_env: Vec<String> = cli
        .find_subcommand("serve")
        .unwrap()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    for (k, _) in &env {
        assert!(serve_env.contains(k), "{k} is not a serve flag");
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
