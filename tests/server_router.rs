//! The admission endpoint driven through `router()` with `oneshot`: real AdmissionReview JSON in,
//! the response checked field by field, the patch applied to the object as the API server does.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use gke_wi_injector::admission::OnError;
use gke_wi_injector::server::{AppState, MAX_BODY_BYTES, router};
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::Pod;
use rstest::rstest;
use serde_json::{Value, json};
use support::{P, UID, app_state, pod, pod_review};
use tower::ServiceExt as _;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn send(state: AppState, request: Request<Body>) -> Answer {
    let response = router(state).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    assert!(
        headers.get(header::RETRY_AFTER).is_none(),
        "Retry-After on {status}"
    );
    Answer {
        status,
        headers,
        body,
    }
}

fn post(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

async fn review(state: AppState, review: &Value) -> Answer {
    let answer = send(
        state,
        post(
            "/mutate?timeout=10s",
            Some("application/json"),
            review.to_string(),
        ),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    answer
}

fn patch_of(response: &Value) -> json_patch::Patch {
    let b64 = response["patch"]
        .as_str()
        .expect("patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("standard padded base64");
    serde_json::from_slice(&bytes).unwrap()
}

fn assert_contract(answer: &Value) {
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], UID);
    assert_eq!(
        response["allowed"],
        Value::Bool(true),
        "allowed is explicit"
    );
    match response.get("patch") {
        Some(_) => assert_eq!(response["patchType"], "JSONPatch"),
        None => assert!(
            response.get("patchType").is_none(),
            "patchType without a patch: {response}"
        ),
    }
    let warnings = response
        .get("warnings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(warnings.len() <= 5, "{warnings:?}");
    for w in &warnings {
        assert!(w.as_str().unwrap().chars().count() <= 120, "{w}");
    }
}

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

fn status_message(answer: &Answer, code: u16) -> String {
    assert_eq!(
        answer.status.as_u16(),
        code,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    let status = answer.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["code"], code);
    status["message"].as_str().unwrap().to_string()
}

#[rstest]
#[case::not_json("{not json", "body is not an AdmissionReview")]
#[case::empty("", "body is not an AdmissionReview")]
#[case::wrong_kind(
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#,
    "expected admission.k8s.io/v1 AdmissionReview"
)]
#[case::no_request(
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    "AdmissionReview has no request"
)]
#[tokio::test]
async fn unreadable_reviews_are_400_with_a_clear_message(#[case] body: &str, #[case] says: &str) {
    let state = app_state(OnError::Allow);
    let metrics = state.metrics.clone();
    let answer = send(
        state,
        post("/mutate", Some("application/json"), body.to_string()),
    )
    .await;
    let message = status_message(&answer, 400);
    assert!(message.contains(says), "{message}");
    let text = metrics.encode(0, true);
    assert!(
        text.contains("gke_wi_injector_admission_requests_total{outcome=\"bad_request\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_v1beta1_review_is_400_naming_the_version_expected() {
    let mut r = pod_review("team", pod(), false);
    r["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let answer = send(
        app_state(OnError::Allow),
        post("/mutate", Some("application/json"), r.to_string()),
    )
    .await;
    assert_eq!(
        status_message(&answer, 400),
        "apiVersion/kind is \"admission.k8s.io/v1beta1/AdmissionReview\", expected admission.k8s.io/v1 AdmissionReview"
    );
}

#[rstest]
#[case::get("GET")]
#[case::put("PUT")]
#[case::delete("DELETE")]
#[tokio::test]
async fn other_methods_on_mutate_are_405(#[case] method: &str) {
    let request = Request::builder()
        .method(method)
        .uri("/mutate")
        .body(Body::empty())
        .unwrap();
    let answer = send(app_state(OnError::Allow), request).await;
    let message = status_message(&answer, 405);
    assert_eq!(answer.headers[header::ALLOW], "POST");
    assert!(message.contains(method), "{message}");
}

#[rstest]
#[case::root("POST", "/")]
#[case::validate("POST", "/validate")]
#[case::trailing_slash("POST", "/mutate/")]
#[case::get_other("GET", "/metrics")]
#[tokio::test]
async fn unknown_paths_are_404(#[case] method: &str, #[case] uri: &str) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let answer = send(app_state(OnError::Allow), request).await;
    assert!(status_message(&answer, 404).contains("POST /mutate"));
}

#[rstest]
#[case::text(Some("text/plain"))]
#[case::yaml(Some("application/yaml"))]
#[case::json_suffix(Some("application/jsonx"))]
#[case::none(None)]
#[tokio::test]
async fn other_content_types_are_415(#[case] ct: Option<&str>) {
    let body = pod_review("team", pod(), false).to_string();
    let answer = send(app_state(OnError::Allow), post("/mutate", ct, body)).await;
    assert!(status_message(&answer, 415).starts_with("Content-Type must be application/json"));
}

/// A valid review padded to `size` bytes with an annotation.
fn review_of_size(size: usize) -> String {
    let mut p = pod();
    p["metadata"]["annotations"] = json!({"padding": ""});
    let base = pod_review("team", p.clone(), false).to_string().len();
    p["metadata"]["annotations"]["padding"] = json!("x".repeat(size - base));
    let body = pod_review("team", p, false).to_string();
    assert_eq!(body.len(), size);
    body
}

#[tokio::test]
async fn a_review_of_exactly_7_mib_is_answered() {
    let answer = send(
        app_state(OnError::Allow),
        post(
            "/mutate",
            Some("application/json"),
            review_of_size(MAX_BODY_BYTES),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_contract(&answer.json());
}

#[tokio::test]
async fn a_body_over_7_mib_is_413_with_or_without_content_length() {
    let body = review_of_size(MAX_BODY_BYTES + 1);
    let mut request = post("/mutate", Some("application/json"), body.clone());
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, body.len().into());
    assert!(
        status_message(&send(app_state(OnError::Allow), request).await, 413)
            .contains("larger than 7340032 bytes")
    );

    // Streamed in chunks without Content-Length: refused once the limit is passed.
    let chunks = body
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
        .collect::<Vec<_>>();
    let streamed = Body::from_stream(futures::stream::iter(chunks));
    let answer = send(
        app_state(OnError::Allow),
        post("/mutate", Some("application/json"), streamed),
    )
    .await;
    status_message(&answer, 413);
}
