use super::*;
use crate::policy::{Feature, Skip};
use rstest::rstest;
use serde_json::json;

const P: &str = "gke-wi-injector.dev";

fn ns(pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = [(format!("{P}/inject"), "enabled".to_string())].into();
    for (k, v) in pairs {
        l.insert(k.replace("P/", &format!("{P}/")), v.to_string());
    }
    l
}

fn pod(v: Value) -> Value {
    v
}

/// Plans, applies, and returns (plan, patched pod).
fn run_with(cfg: &Config, labels: &Labels, input: &Value) -> (Plan, Value) {
    let plan = plan(cfg, "team", labels, input).expect("plan");
    let mut out = input.clone();
    json_patch::patch(&mut out, &plan.ops).expect("patch applies");
    (plan, out)
}

fn run(labels: &Labels, input: &Value) -> (Plan, Value) {
    let (p, out) = run_with(&Config::default(), labels, input);
    let again = plan(&Config::default(), "team", labels, &out).expect("second plan");
    assert!(
        again.ops.is_empty(),
        "second pass not empty: {:?}",
        again.ops
    );
    (p, out)
}

fn basic() -> Value {
    pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": "team"},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    }))
}

fn env_of(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn wait_container_is_prepended_with_restricted_security_context_and_resources() {
    let input = json!({"metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "migrate", "image": "m"}],
        "containers": [{"name": "app", "image": "a"}]}});
    let (_, out) = run(&ns(&[]), &input);
    let inits = out["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    let w = &inits[0];
    assert_eq!(w["name"], "gke-metadata-wait");
    assert_eq!(w["image"], "gke-wi-injector:latest");
    assert_eq!(w["args"], json!(["wait"]));
    assert_eq!(
        w["resources"],
        json!({"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}})
    );
    assert_eq!(
        w["securityContext"],
        json!({
        "runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        env_of(w),
        [("GCE_METADATA_HOST".into(), "169.254.169.254".into())]
    );
    assert_eq!(inits[1]["name"], "migrate");
    assert_eq!(
        env_of(&inits[1]),
        [("GCE_METADATA_HOST".into(), "169.254.169.254".into())]
    );
}

#[test]
fn init_containers_list_is_created_when_missing() {
    let (p, out) = run(&ns(&[]), &basic());
    assert!(
        p.ops
            .iter()
            .any(|op| op.path().as_str() == "/spec/initContainers")
    );
    assert_eq!(
        out["spec"]["initContainers"][0]["name"],
        "gke-metadata-wait"
    );
}

#[test]
fn existing_wait_container_by_name_is_not_duplicated() {
    let input = json!({"metadata": {}, "spec": {
        "initContainers": [{"name": "other"}, {"name": "gke-metadata-wait", "image": "mine"}],
        "containers": [{"name": "app"}]}});
    let (_, out) = run(&ns(&[("P/metadata-host", "disabled")]), &input);
    assert_eq!(
        out["spec"]["initContainers"],
        input["spec"]["initContainers"]
    );
}

#[test]
fn flags_change_the_wait_container() {
    let cfg = Config {
        wait_image: "registry.example/wi:2".into(),
        wait_container_name: "wi-wait".into(),
        wait_cpu_request: "50m".parse().unwrap(),
        wait_memory_request: "52Mi".parse().unwrap(),
        wait_memory_limit: "64Mi".parse().unwrap(),
        metadata_host: "169.254.169.253".parse().unwrap(),
        ..Config::default()
    };
    let (_, out) = run_with(&cfg, &ns(&[]), &basic());
    let w = &out["spec"]["initContainers"][0];
    assert_eq!(w["name"], "wi-wait");
    assert_eq!(w["image"], "registry.example/wi:2");
    assert_eq!(
        w["resources"]["requests"],
        json!({"cpu": "50m", "memory": "52Mi"})
    );
    assert_eq!(w["resources"]["limits"], json!({"memory": "64Mi"}));
    assert_eq!(
        env_of(&out["spec"]["containers"][0]),
        [("GCE_METADATA_HOST".into(), "169.254.169.253".into())]
    );
}

#[test]
fn curl_mode_runs_the_guides_command() {
    let cfg = Config {
        wait_mode: WaitMode::Curl,
        wait_image: "curlimages/curl:8".into(),
        ..Config::default()
    };
    let (_, out) = run_with(&cfg, &ns(&[]), &basic());
    let w = &out["spec"]["initContainers"][0];
    assert_eq!(w["command"][0], "sh");
    let script = w["command"][2].as_str().unwrap();
    assert!(script.contains("-H 'Metadata-Flavor: Google'"), "{script}");
    assert!(script.contains(
        "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token"
    ));
    assert!(
        script.contains("--retry 30")
            && script.contains("--retry-max-time 60")
            && script.contains("--connect-timeout 3")
    );
    assert!(script.contains(crate::WAIT_FAILURE_MESSAGE));
    assert!(w.get("args").is_none());
}

#[test]
fn windows_os_pod_gets_a_windows_security_context() {
    let cfg = Config {
        wait_image_windows: Some("wi:win".into()),
        ..Config::default()
    };
    let input =
        json!({"metadata": {}, "spec": {"os": {"name": "windows"}, "containers": [{"name": "a"}]}});
    let (_, out) = run_with(&cfg, &ns(&[]), &input);
    assert_eq!(
        out["spec"]["initContainers"][0]["securityContext"],
        json!({"runAsNonRoot": true, "windowsOptions": {"runAsUserName": "ContainerUser"}})
    );
    // A node selector alone leaves the API server's Linux rules (and Pod Security's) in force.
    let input = json!({"metadata": {}, "spec": {"nodeSelector": {"kubernetes.io/os": "windows"}, "containers": [{"name": "a"}]}});
    let (_, out) = run_with(&cfg, &ns(&[]), &input);
    assert_eq!(out["spec"]["initContainers"][0]["image"], "wi:win");
    assert_eq!(
        out["spec"]["initContainers"][0]["securityContext"]["runAsUser"],
        65532
    );
}

#[test]
fn windows_pod_uses_windows_image_when_given() {
    let cfg = Config {
        wait_image_windows: Some("wi:win".into()),
        ..Config::default()
    };
    let input =
        json!({"metadata": {}, "spec": {"os": {"name": "windows"}, "containers": [{"name": "a"}]}});
    let (_, out) = run_with(&cfg, &ns(&[]), &input);
    assert_eq!(out["spec"]["initContainers"][0]["image"], "wi:win");
}

#[test]
fn windows_pod_without_windows_image_gets_env_but_no_wait() {
    let input = json!({"metadata": {}, "spec": {"nodeSelector": {"kubernetes.io/os": "windows"}, "containers": [{"name": "a"}]}});
    let (p, out) = run(&ns(&[]), &input);
    assert!(out["spec"].get("initContainers").is_none());
    assert_eq!(env_of(&out["spec"]["containers"][0]).len(), 1);
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(
        out["metadata"]["annotations"][format!("{P}/injected")],
        "metadata-host"
    );
}

#[test]
fn env_is_added_to_every_container_lacking_it() {
    let input = json!({"metadata": {}, "spec": {"containers": [
        {"name": "a"},
        {"name": "b", "env": [{"name": "X", "value": "1"}]},
        {"name": "c", "env": null},
        {"name": "d", "env": []},
    ]}});
    let (_, out) = run(&ns(&[("P/metadata-wait", "disabled")]), &input);
    let cs = out["spec"]["containers"].as_array().unwrap();
    let host = || {
        (
            "GCE_METADATA_HOST".to_string(),
            "169.254.169.254".to_string(),
        )
    };
    assert_eq!(env_of(&cs[0]), [host()]);
    assert_eq!(env_of(&cs[1]), [("X".into(), "1".into()), host()]);
    assert_eq!(env_of(&cs[2]), [host()]);
    assert_eq!(env_of(&cs[3]), [host()]);
}

#[rstest]
#[case::same_value(json!({"name": "GCE_METADATA_HOST", "value": "169.254.169.254"}), 0)]
#[case::other_value(json!({"name": "GCE_METADATA_HOST", "value": "10.0.0.1"}), 1)]
#[case::value_from(json!({"name": "GCE_METADATA_HOST", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}), 0)]
fn existing_env_entry_is_left_alone(#[case] entry: Value, #[case] warnings: usize) {
    let input =
        json!({"metadata": {}, "spec": {"containers": [{"name": "app", "env": [entry.clone()]}]}});
    let (p, out) = run(&ns(&[("P/metadata-wait", "disabled")]), &input);
    assert_eq!(out["spec"]["containers"][0]["env"], json!([entry]));
    assert_eq!(p.warnings.len(), warnings);
    if warnings > 0 {
        assert!(
            p.warnings.as_slice()[0].contains("spec.containers[app].env"),
            "{:?}",
            p.warnings
        );
    }
}

#[test]
fn istio_annotations_are_added_when_absent() {
    let (_, out) = run(&ns(&[("P/istio", "enabled")]), &basic());
    let a = &out["metadata"]["annotations"];
    assert_eq!(
        a["traffic.sidecar.istio.io/excludeOutboundIPRanges"],
        "169.254.169.254/32"
    );
    assert_eq!(
        a["proxy.istio.io/config"],
        r#"{"holdApplicationUntilProxyStarts":true}"#
    );
}

#[test]
fn istio_annotations_merge_with_user_values() {
    let input = json!({"metadata": {"annotations": {
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.0/8",
        "proxy.istio.io/config": "concurrency: 2\n"}},
        "spec": {"containers": [{"name": "a"}]}});
    let (_, out) = run(&ns(&[("P/istio", "enabled")]), &input);
    let a = &out["metadata"]["annotations"];
    assert_eq!(
        a["traffic.sidecar.istio.io/excludeOutboundIPRanges"],
        "10.0.0.0/8,169.254.169.254/32"
    );
    assert_eq!(
        a["proxy.istio.io/config"],
        "concurrency: 2\nholdApplicationUntilProxyStarts: true\n"
    );
}

#[test]
fn explicit_hold_false_is_kept_with_a_warning() {
    let input = json!({"metadata": {"annotations": {"proxy.istio.io/config": "{\"holdApplicationUntilProxyStarts\": false}"}},
        "spec": {"containers": [{"name": "a"}]}});
    let (p, out) = run(&ns(&[("P/istio", "enabled")]), &input);
    assert_eq!(
        out["metadata"]["annotations"]["proxy.istio.io/config"],
        "{\"holdApplicationUntilProxyStarts\": false}"
    );
    assert!(
        p.warnings
            .as_slice()
            .iter()
            .any(|w| w.contains("proxy.istio.io/config")),
        "{:?}",
        p.warnings
    );
}

#[rstest]
#[case::all(&[("P/istio", "enabled")], "metadata-wait,metadata-host,istio")]
#[case::default(&[], "metadata-wait,metadata-host")]
#[case::istio_only(&[("P/istio", "enabled"), ("P/metadata-wait", "disabled"), ("P/metadata-host", "disabled")], "istio")]
fn injected_record(#[case] labels: &[(&str, &str)], #[case] want: &str) {
    let (p, out) = run(&ns(labels), &basic());
    assert_eq!(
        out["metadata"]["annotations"][format!("{P}/injected")],
        want
    );
    assert_eq!(p.features().record(), want);
}

#[test]
fn features_only_change_what_they_own() {
    let (_, out) = run(&ns(&[("P/metadata-wait", "disabled")]), &basic());
    assert!(out["spec"].get("initContainers").is_none());
    assert!(
        out["metadata"]["annotations"]
            .get("proxy.istio.io/config")
            .is_none()
    );
    let (_, out) = run(&ns(&[("P/metadata-host", "disabled")]), &basic());
    assert!(out["spec"]["containers"][0].get("env").is_none());
    assert!(out["spec"]["initContainers"][0].get("env").is_none());
}

#[test]
fn skipped_pods_get_no_operations() {
    let p = plan(&Config::default(), "team", &Labels::new(), &basic()).unwrap();
    assert_eq!(p.decision, Decision::Skip(Skip::NotOptedIn));
    assert!(p.ops.is_empty());
    let host =
        json!({"metadata": {}, "spec": {"hostNetwork": true, "containers": [{"name": "a"}]}});
    let p = plan(&Config::default(), "team", &ns(&[]), &host).unwrap();
    assert_eq!(p.decision, Decision::Skip(Skip::HostNetwork));
    assert!(p.ops.is_empty());
    assert_eq!(p.warnings.len(), 1);
}

#[test]
fn reinvocation_covers_a_container_added_later() {
    let (_, mut out) = run(&ns(&[]), &basic());
    out["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "s"}));
    let p = plan(&Config::default(), "team", &ns(&[]), &out).unwrap();
    assert_eq!(p.ops.len(), 1, "{:?}", p.ops);
    assert_eq!(p.ops[0].path().as_str(), "/spec/containers/1/env");
    assert!(p.features().has(Feature::MetadataWait));
}

#[test]
fn annotation_keys_with_slashes_are_escaped_in_paths() {
    let input =
        json!({"metadata": {"annotations": {"x": "y"}}, "spec": {"containers": [{"name": "a"}]}});
    let p = plan(
        &Config::default(),
        "team",
        &ns(&[("P/istio", "enabled")]),
        &input,
    )
    .unwrap();
    let paths: Vec<&str> = p.ops.iter().map(|o| o.path().as_str()).collect();
    assert!(
        paths.contains(&"/metadata/annotations/traffic.sidecar.istio.io~1excludeOutboundIPRanges"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/metadata/annotations/gke-wi-injector.dev~1injected"),
        "{paths:?}"
    );
}

#[test]
fn ipv6_metadata_host_is_bracketed_in_env() {
    let cfg = Config {
        metadata_host: "fd20::254".parse().unwrap(),
        ..Config::default()
    };
    let (_, out) = run_with(&cfg, &ns(&[("P/istio", "enabled")]), &basic());
    assert_eq!(env_of(&out["spec"]["containers"][0])[0].1, "[fd20::254]");
    assert_eq!(
        out["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeOutboundIPRanges"],
        "fd20::254/128"
    );
}

#[rstest]
#[case::containers_string(json!({"spec": {"containers": "app"}}), "spec.containers", "expected a list, found a string")]
#[case::containers_missing(json!({"spec": {}}), "spec.containers", "missing")]
#[case::spec_missing(json!({"metadata": {}}), "spec", "missing")]
#[case::spec_list(json!({"spec": []}), "spec", "expected an object, found a list")]
#[case::init_object(json!({"spec": {"containers": [], "initContainers": {}}}), "spec.initContainers", "expected a list, found an object")]
#[case::container_no_name(json!({"spec": {"containers": [{"image": "x"}]}}), "spec.containers[0].name", "expected a string")]
#[case::env_string(json!({"spec": {"containers": [{"name": "a", "env": "X=1"}]}}), "spec.containers[0].env", "expected a list, found a string")]
#[case::env_entry_no_name(json!({"spec": {"containers": [{"name": "a", "env": [{"value": "1"}]}]}}), "spec.containers[0].env[0].name", "expected a string")]
#[case::annotations_list(json!({"metadata": {"annotations": []}, "spec": {"containers": []}}), "metadata.annotations", "expected an object, found a list")]
#[case::annotation_number(json!({"metadata": {"annotations": {"a": 1}}, "spec": {"containers": []}}), "metadata.annotations[a]", "expected a string, found a number")]
#[case::host_network_string(json!({"spec": {"hostNetwork": "yes", "containers": []}}), "spec.hostNetwork", "expected a boolean, found a string")]
#[case::not_object(json!("pod"), "(document)", "expected an object, found a string")]
fn bad_shapes_name_the_field(#[case] input: Value, #[case] field: &str, #[case] problem: &str) {
    let err = plan(&Config::default(), "team", &ns(&[]), &input).unwrap_err();
    assert_eq!((err.field.as_str(), err.problem.as_str()), (field, problem));
}
