use super::*;
pub(crate) use crate::fixtures::{UID, pod_review};
use base64::Engine as _;
use rstest::rstest;
use serde_json::json;

const P: &str = "gke-wi-injector.dev";

fn sidecar_pod() -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"generateName": "web-7d9c-", "namespace": "team", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c", "uid": "u", "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]},
        "spec": {
            "initContainers": [{"name": "log-shipper", "image": "fluent-bit:3", "restartPolicy": "Always", "resources": {}}],
            "containers": [{"name": "web", "image": "nginx:1.27", "resources": {}, "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
            "futureField": {"kept": true}
        },
        "status": {}
    })
}

fn labels() -> Labels {
    [
        (format!("{P}/inject"), "enabled".into()),
        (format!("{P}/istio"), "enabled".into()),
    ]
    .into()
}

fn answer(body: &Value, ns: NamespaceLabels<'_>, on_error: OnError) -> (Reviewed, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let req = parse_review(&bytes).expect("parses");
    let outcome = review(req, ns, &Config::default(), on_error);
    let json = serde_json::from_slice(&encode(&outcome.review)).unwrap();
    (outcome, json)
}

fn decoded_patch(resp: &Value) -> Vec<json_patch::PatchOperation> {
    let b64 = resp["response"]["patch"].as_str().expect("patch present");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("standard padded base64");
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn pod_create_gets_a_patch_that_applies_to_the_raw_object() {
    let pod = sidecar_pod();
    let l = labels();
    let (outcome, resp) = answer(
        &pod_review("team", pod.clone(), false),
        NamespaceLabels::Known(&l),
        OnError::Allow,
    );
    assert_eq!(outcome.result, Outcome::Mutated);
    assert_eq!(resp["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(resp["kind"], "AdmissionReview");
    assert_eq!(resp["response"]["uid"], UID);
    assert_eq!(resp["response"]["allowed"], true);
    assert_eq!(resp["response"]["patchType"], "JSONPatch");
    assert_eq!(
        resp["response"]["auditAnnotations"]["injected"],
        "metadata-wait,metadata-host,istio"
    );
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &decoded_patch(&resp)).expect("applies to the object as sent");
    assert_eq!(patched["spec"]["futureField"], json!({"kept": true}));
    assert_eq!(
        patched["spec"]["initContainers"][1]["restartPolicy"],
        "Always"
    );
    assert_eq!(
        patched["spec"]["initContainers"][0]["name"],
        "gke-metadata-wait"
    );
    assert_eq!(
        patched["metadata"]["managedFields"],
        pod["metadata"]["managedFields"]
    );
    let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(patched).expect("still a Pod");
}

#[test]
fn dry_run_gets_the_identical_answer() {
    let l = labels();
    let (_, wet) = answer(
        &pod_review("team", sidecar_pod(), false),
        NamespaceLabels::Known(&l),
        OnError::Allow,
    );
    let (_, dry) = answer(
        &pod_review("team", sidecar_pod(), true),
        NamespaceLabels::Known(&l),
        OnError::Allow,
    );
    assert_eq!(wet, dry);
}

#[test]
fn unchanged_pod_has_neither_patch_nor_patch_type() {
    let l = Labels::new();
    let (outcome, resp) = answer(
        &pod_review("team", sidecar_pod(), false),
        NamespaceLabels::Known(&l),
        OnError::Allow,
    );
    assert_eq!(
        (outcome.result, outcome.skip),
        (Outcome::Skipped, Some(Skip::NotOptedIn))
    );
    assert_eq!(resp["response"]["allowed"], true);
    assert!(resp["response"].get("patch").is_none());
    assert!(resp["response"].get("patchType").is_none());
}

#[rstest]
#[case::update("UPDATE", "Pod", "")]
#[case::delete("DELETE", "Pod", "")]
#[case::binding_subresource("CREATE", "Pod", "binding")]
#[case::configmap("CREATE", "ConfigMap", "")]
fn non_pod_create_is_allowed_unchanged(#[case] op: &str, #[case] kind: &str, #[case] sub: &str) {
    let mut body = pod_review("team", sidecar_pod(), false);
    body["request"]["operation"] = json!(op);
    body["request"]["kind"]["kind"] = json!(kind);
    if !sub.is_empty() {
        body["request"]["subResource"] = json!(sub);
    }
    if op == "DELETE" {
        body["request"]["oldObject"] = body["request"]["object"].take();
    }
    let bytes = serde_json::to_vec(&body).unwrap();
    assert_eq!(Review::parse(&bytes).unwrap().namespace(), None);
    let req = parse_review(&bytes).unwrap();
    let l = labels();
    let out = review(
        req,
        NamespaceLabels::Known(&l),
        &Config::default(),
        OnError::Allow,
    );
    assert_eq!(out.result, Outcome::Ignored);
    let resp: Value = serde_json::from_slice(&encode(&out.review)).unwrap();
    assert_eq!(resp["response"]["allowed"], true);
    assert!(resp["response"].get("patch").is_none());
}

#[test]
fn unknown_namespace_allows_with_a_warning_or_denies_on_request() {
    let body = pod_review("team", sidecar_pod(), false);
    let unknown = || NamespaceLabels::Unknown {
        reason: "API unreachable".into(),
    };
    let (out, resp) = answer(&body, unknown(), OnError::Allow);
    assert_eq!(
        (out.result, out.reason),
        (Outcome::Error, "namespace_unavailable")
    );
    assert_eq!(resp["response"]["allowed"], true);
    let w = resp["response"]["warnings"][0].as_str().unwrap();
    assert!(
        w.contains("namespace team") && w.contains("API unreachable"),
        "{w}"
    );

    let (out, resp) = answer(&body, unknown(), OnError::Deny);
    assert_eq!(
        (out.result, out.reason),
        (Outcome::Denied, "namespace_unavailable")
    );
    assert_eq!(resp["response"]["allowed"], false);
    assert!(
        resp["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("namespace team")
    );
}

#[test]
fn pod_of_unexpected_shape_is_allowed_with_a_warning_naming_the_field() {
    let mut pod = sidecar_pod();
    pod["spec"]["containers"][0]["env"] = json!({"A": "b"});
    let l = labels();
    let (out, resp) = answer(
        &pod_review("team", pod, false),
        NamespaceLabels::Known(&l),
        OnError::Allow,
    );
    assert_eq!((out.result, out.reason), (Outcome::Error, "bad_pod"));
    assert!(
        resp["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("spec.containers[0].env")
    );
    assert!(resp["response"].get("patch").is_none());
}

#[test]
fn bytes_that_are_not_utf8_in_fields_nobody_reads_are_accepted() {
    let mut json = pod_review("team", sidecar_pod(), false);
    json["request"]["unknownField"] = json!("@@");
    let text = serde_json::to_vec(&json).unwrap();
    let at = text.windows(2).position(|w| w == b"@@").unwrap();
    let body = [&text[..at], &[0xff], &text[at + 2..]].concat();
    assert!(std::str::from_utf8(&body).is_err());
    let req = parse_review(&body).unwrap();
    assert_eq!(req.uid, json["request"]["uid"]);
}

#[rstest]
#[case::not_json(b"{not json".to_vec(), "unreadable_json")]
#[case::v1beta1(serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": null})).unwrap(), "wrong_type")]
#[case::wrong_kind(serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"})).unwrap(), "wrong_type")]
#[case::no_request(serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).unwrap(), "no_request")]
#[case::not_utf8([&br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "object": {"kind": "Pod"#[..], &[0xff], br#""}}}"#].concat(), "unreadable_json")]
#[case::broken_object(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "object": {"kind": }}}"#.to_vec(), "unreadable_json")]
fn unreadable_bodies_are_errors(#[case] body: Vec<u8>, #[case] reason: &str) {
    assert_eq!(parse_review(&body).unwrap_err().reason(), reason);
}

#[test]
fn reinvocation_with_nothing_new_is_empty() {
    let l = labels();
    let pod = sidecar_pod();
    let (_, resp) = answer(
        &pod_review("team", pod.clone(), false),
        NamespaceLabels::Known(&l),
        OnError::Allow,
    );
    let mut patched = pod;
    json_patch::patch(&mut patched, &decoded_patch(&resp)).unwrap();
    let (out, resp) = answer(
        &pod_review("team", patched, false),
        NamespaceLabels::Known(&l),
        OnError::Allow,
    );
    assert_eq!(out.result, Outcome::Unchanged);
    assert!(resp["response"].get("patch").is_none());
}

#[test]
fn encode_matches_kube_core_except_the_patch_encoding() {
    let l = labels();
    let mut pod = sidecar_pod();
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "GCE_METADATA_HOST", "value": "10.0.0.1"}]);
    let bytes = serde_json::to_vec(&pod_review("team", pod, false)).unwrap();
    let req = parse_review(&bytes).unwrap();
    let out = review(
        req,
        NamespaceLabels::Known(&l),
        &Config::default(),
        OnError::Allow,
    );
    let ours: Value = serde_json::from_slice(&encode(&out.review)).unwrap();
    let mut kube = serde_json::to_value(&out.review).unwrap();
    let bytes: Vec<u8> = serde_json::from_value(kube["response"]["patch"].take()).unwrap();
    kube["response"]["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    assert_eq!(ours, kube);
    assert_eq!(
        ours["response"]["warnings"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(ours["response"]["auditAnnotations"].is_object());
}
