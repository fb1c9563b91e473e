//! The admission endpoint driven through `router()` with `oneshot`: real AdmissionReview JSON in,
//! the response checked field by field, the patch applied to the object as the API server does.

mod support;

use axum::http::StatusCode;
use gke_wi_injector::admission::OnError;
use k8s_openapi::api::core::v1::Pod;
use rstest::rstest;
use serde_json::{Value, json};
use support::router::patch_of;
use support::router::{assert_contract, post, review, send};
use support::{P, UID, app_state, pod, pod_review};

#[tokio::test]
async fn an_opted_in_pod_gets_a_patch_that_applies_to_the_object_as_sent() {
    let answer = review(app_state(OnError::Allow), &pod_review("team", pod(), false))
        .await
        .json();
    assert_contract(&answer);
    let response = &answer["response"];
    assert_eq!(
        response["auditAnnotations"],
        json!({"injected": "metadata-wait,metadata-host,istio"})
    );

    let mut mutated = pod();
    json_patch::patch(&mut mutated, &patch_of(response)).expect("the patch applies");
    let init = mutated["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(
        init[0]["name"], "gke-metadata-wait",
        "the wait container comes first"
    );
    assert_eq!(init[0]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(init[1]["name"], "log-shipper");
    assert_eq!(
        init[1]["restartPolicy"], "Always",
        "native sidecar fields survive"
    );
    assert_eq!(
        mutated["spec"]["containers"][0]["env"],
        json!([{"name": "PORT", "value": "8080"}, {"name": "GCE_METADATA_HOST", "value": "169.254.169.254"}])
    );
    let annotations = &mutated["metadata"]["annotations"];
    assert_eq!(
        annotations[format!("{P}/injected")],
        "metadata-wait,metadata-host,istio"
    );
    assert_eq!(
        annotations["traffic.sidecar.istio.io/excludeOutboundIPRanges"],
        "169.254.169.254/32"
    );
    assert_eq!(
        annotations["proxy.istio.io/config"],
        r#"{"holdApplicationUntilProxyStarts":true}"#
    );
    assert_eq!(
        mutated["spec"]["futureField"],
        json!({"kept": ["as", "is"]}),
        "unknown fields survive"
    );
    assert_eq!(
        mutated["metadata"]["managedFields"],
        pod()["metadata"]["managedFields"]
    );
    serde_json::from_value::<Pod>(mutated.clone()).expect("still a Pod");

    // Reinvocation on the mutated Pod: nothing new, so no patch and no patchType.
    let again = review(
        app_state(OnError::Allow),
        &pod_review("team", mutated, false),
    )
    .await
    .json();
    assert_contract(&again);
    assert!(again["response"].get("patch").is_none(), "{again}");
}

#[tokio::test]
async fn dry_run_gets_the_identical_answer() {
    let wet = review(app_state(OnError::Allow), &pod_review("team", pod(), false)).await;
    let dry = review(app_state(OnError::Allow), &pod_review("team", pod(), true)).await;
    assert_eq!(wet.json(), dry.json());
}

#[rstest]
#[case::no_query("/mutate")]
#[case::timeout_query("/mutate?timeout=10s")]
#[case::other_query("/mutate?timeout=30s&x=y")]
#[tokio::test]
async fn the_route_ignores_the_query_string(#[case] uri: &str) {
    let body = pod_review("team", pod(), false).to_string();
    let answer = send(
        app_state(OnError::Allow),
        post(uri, Some("application/json"), body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.json()["response"]["patch"].is_string());
}

#[rstest]
#[case::charset("application/json; charset=utf-8")]
#[case::upper("Application/JSON")]
#[tokio::test]
async fn json_content_types_with_parameters_are_accepted(#[case] ct: &str) {
    let body = pod_review("team", pod(), false).to_string();
    let answer = send(app_state(OnError::Allow), post("/mutate", Some(ct), body)).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_namespace_not_opted_in_is_allowed_without_a_patch() {
    let answer = review(
        app_state(OnError::Allow),
        &pod_review("plain", pod(), false),
    )
    .await
    .json();
    assert_contract(&answer);
    assert!(answer["response"].get("patch").is_none());
    assert!(answer["response"].get("warnings").is_none());
}

#[tokio::test]
async fn an_unknown_namespace_is_allowed_unchanged_with_a_warning_naming_it() {
    let answer = review(
        app_state(OnError::Allow),
        &pod_review("new-ns", pod(), false),
    )
    .await
    .json();
    assert_contract(&answer);
    assert!(answer["response"].get("patch").is_none());
    let warnings = answer["response"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("new-ns") && w.contains("API server unreachable"),
        "{w}"
    );
}

#[tokio::test]
async fn on_error_deny_denies_when_the_namespace_is_unknown() {
    let answer = review(
        app_state(OnError::Deny),
        &pod_review("new-ns", pod(), false),
    )
    .await
    .json();
    assert_eq!(answer["response"]["uid"], UID);
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("new-ns")
    );
}

#[tokio::test]
async fn many_problems_give_at_most_five_warnings_of_at_most_120_characters() {
    let mut p = pod();
    p["metadata"]["annotations"] = json!({
        format!("{P}/metadata-wait"): "sometimes",
        format!("{P}/metadata-host"): "perhaps",
        format!("{P}/istio"): "maybe-with-a-very-long-value-that-goes-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on",
        "proxy.istio.io/config": "holdApplicationUntilProxyStarts: false",
    });
    let env = json!([{"name": "GCE_METADATA_HOST", "value": "metadata.google.internal"}]);
    for c in ["initContainers", "containers"] {
        for container in p["spec"][c].as_array_mut().unwrap() {
            container["env"] = env.clone();
        }
    }
    let answer = review(app_state(OnError::Allow), &pod_review("team", p, false))
        .await
        .json();
    assert_contract(&answer);
    assert_eq!(
        answer["response"]["warnings"].as_array().unwrap().len(),
        5,
        "{answer}"
    );
}

#[rstest]
#[case::update("UPDATE")]
#[case::delete("DELETE")]
#[tokio::test]
async fn requests_that_are_not_pod_create_are_allowed_unchanged(#[case] operation: &str) {
    let mut r = pod_review("team", pod(), false);
    r["request"]["operation"] = json!(operation);
    r["request"]["oldObject"] = pod();
    if operation == "DELETE" {
        r["request"]["object"] = Value::Null;
    }
    let answer = review(app_state(OnError::Allow), &r).await.json();
    assert_contract(&answer);
    assert!(answer["response"].get("patch").is_none());
}
