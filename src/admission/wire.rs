//! The AdmissionReview on the wire: the request decoded in one pass, the response encoded with
//! the patch as base64.

use std::collections::HashMap;

use kube::core::TypeMeta;

use super::{AdmissionReview, DynamicObject, Request};

/// A body that is not an `admission.k8s.io/v1` AdmissionReview request (answered with 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not an AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("apiVersion/kind is {0:?}, expected admission.k8s.io/v1 AdmissionReview")]
    WrongType(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

impl ReviewError {
    /// Bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ReviewError::Json(_) => "unreadable_json",
            ReviewError::WrongType(_) => "wrong_type",
            ReviewError::NoRequest => "no_request",
        }
    }
}

/// Encodes a review for the wire. kube-core serializes `response.patch` (bytes) as a JSON array
/// of numbers; the contract (SPEC §5) is a standard, padded base64 string, as Go encodes `[]byte`.
/// Everything else is written as kube-core writes it (a unit test holds the two together).
/// Upstream: kube-rs/kube#1781; once kube-core writes `patch` as base64, this can go and
/// `serde_json::to_vec(review)` do.
pub fn encode(review: &AdmissionReview<DynamicObject>) -> Vec<u8> {
    use base64::Engine as _;

    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire<'a> {
        api_version: &'a str,
        kind: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        response: Option<WireResponse<'a>>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct WireResponse<'a> {
        uid: &'a str,
        allowed: bool,
        status: &'a kube::core::Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "HashMap::is_empty")]
        audit_annotations: &'a HashMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a Vec<String>>,
    }
    let response = review.response.as_ref().map(|r| {
        let patch = r
            .patch
            .as_deref()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
        WireResponse {
            uid: &r.uid,
            allowed: r.allowed,
            status: &r.result,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            audit_annotations: &r.audit_annotations,
            warnings: r.warnings.as_ref(),
        }
    });
    let wire = Wire {
        api_version: &review.types.api_version,
        kind: &review.types.kind,
        response,
    };
    // Strings, booleans and maps of strings always serialize.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// The AdmissionReview envelope. kube's `AdmissionReview` flattens its `TypeMeta`, which makes
/// serde buffer the whole body (Pod included) before decoding it; this envelope has the same
/// fields without `flatten`, so the request decodes in one pass (the Pod inside it is only
/// checked for well-formed JSON and kept as bytes until the engine needs it).
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    request: Option<Request<'a>>,
}

/// Decodes an AdmissionReview request body.
pub fn parse_review(body: &[u8]) -> Result<Request<'_>, ReviewError> {
    // One UTF-8 check of the whole body (fast, vectorized) spares serde_json one per string.
    // A body that is not UTF-8 goes through `from_slice`, which accepts it as before when the
    // bad bytes sit in fields nobody reads, and otherwise names the position of the fault.
    let envelope: Envelope<'_> = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text)?,
        Err(_) => serde_json::from_slice(body)?,
    };
    if envelope.api_version != "admission.k8s.io/v1" || envelope.kind != "AdmissionReview" {
        return Err(ReviewError::WrongType(format!(
            "{}/{}",
            envelope.api_version, envelope.kind
        )));
    }
    let mut req = envelope.request.ok_or(ReviewError::NoRequest)?;
    req.types = TypeMeta {
        api_version: envelope.api_version.into_owned(),
        kind: envelope.kind.into_owned(),
    };
    Ok(req)
}
