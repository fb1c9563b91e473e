//! `router()` driven with `oneshot`: send a request, collect the answer, check the contract.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use gke_wi_injector::server::{AppState, router};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use super::UID;

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

pub async fn send(state: AppState, request: Request<Body>) -> Answer {
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

pub fn post(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

pub async fn review(state: AppState, review: &Value) -> Answer {
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

pub fn patch_of(response: &Value) -> json_patch::Patch {
    let b64 = response["patch"]
        .as_str()
        .expect("patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("standard padded base64");
    serde_json::from_slice(&bytes).unwrap()
}

pub fn assert_contract(answer: &Value) {
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

pub fn status_message(answer: &Answer, code: u16) -> String {
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
