//! Every request the endpoint refuses, through `router()` with `oneshot`: a clear status and
//! `metav1.Status` message, never a `Retry-After`.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt as _;
use gke_wi_injector::admission::OnError;
use gke_wi_injector::server::MAX_BODY_BYTES;
use rstest::rstest;
use serde_json::json;
use support::router::{assert_contract, post, send, status_message};
use support::{app_state, pod, pod_review};

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

#[tokio::test]
async fn a_body_that_stops_arriving_is_408_after_the_body_timeout() {
    let mut state = app_state(OnError::Allow);
    state.body_timeout = std::time::Duration::from_millis(200);
    let first = futures::stream::iter([Ok::<_, std::io::Error>(b"{\"apiVersion\":".to_vec())]);
    let stalled = Body::from_stream(first.chain(futures::stream::pending()));
    let started = std::time::Instant::now();
    let answer = send(state, post("/mutate", Some("application/json"), stalled)).await;
    assert_eq!(
        status_message(&answer, 408),
        "body not received within 0.2 s"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
