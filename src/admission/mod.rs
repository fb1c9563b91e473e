//! The admission contract (SPEC §5) over kube-core's `admission.k8s.io/v1` types: a pure
//! function from a request and the namespace's labels to the response. The HTTP server and the
//! offline `inject --output review` both use it.

use std::collections::HashMap;

use json_patch::Patch;
use serde_json::Value;

pub use kube::core::DynamicObject;
use kube::core::TypeMeta;
pub use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

pub mod pod_view;

pub use pod_view::PodView;

/// An admission request whose object is a [`PodView`] of the request body.
pub type Request<'a> = AdmissionRequest<PodView<'a>>;

use crate::engine::mutate;
use crate::engine::policy::{self, Config, Decision, Features, Labels, Skip};

/// What to answer when the injector cannot decide (namespace unknown, object unreadable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Allow the Pod unchanged, with a warning.
    Allow,
    /// Deny the Pod.
    Deny,
}

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

fn is_pod_create(req: &Request<'_>) -> bool {
    req.kind.group.is_empty()
        && req.kind.kind == "Pod"
        && req.operation == Operation::Create
        && req.sub_resource.as_deref().unwrap_or("").is_empty()
}

/// The namespace whose labels the answer needs, or `None` when the request is not a Pod CREATE
/// (answered unchanged without a lookup).
pub fn namespace_to_look_up<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    if !is_pod_create(req) {
        return None;
    }
    req.namespace.as_deref().filter(|ns| !ns.is_empty())
}

/// The labels of the Pod's namespace, or why they are not known.
#[derive(Debug, Clone)]
pub enum NamespaceLabels<'a> {
    Known(&'a Labels),
    Unknown { reason: String },
}

/// How a request was answered; bounded, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// A patch was returned.
    Mutated,
    /// The Pod gets features but already had everything (e.g. reinvocation).
    Unchanged,
    /// The policy left the Pod alone.
    Skipped(Skip),
    /// Not a Pod CREATE.
    Ignored,
    /// The injector could not decide and allowed the Pod unchanged.
    Error(&'static str),
    /// The injector could not decide and denied the Pod (`--on-error=deny`).
    Denied(&'static str),
}

impl OutcomeKind {
    pub fn label(&self) -> &'static str {
        match self {
            OutcomeKind::Mutated => "mutated",
            OutcomeKind::Unchanged => "unchanged",
            OutcomeKind::Skipped(_) => "skipped",
            OutcomeKind::Ignored => "ignored",
            OutcomeKind::Error(_) => "error",
            OutcomeKind::Denied(_) => "denied",
        }
    }
}

/// The Pod's names, for logs: known when the Pod was read (its namespace opted in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNames {
    pub name: Option<String>,
    pub generate_name: Option<String>,
}

/// The answer to one request.
#[derive(Debug)]
pub struct Outcome {
    /// The AdmissionReview to send back (HTTP 200); serialize it with [`encode`].
    pub review: AdmissionReview<DynamicObject>,
    pub result: OutcomeKind,
    pub features: Features,
    pub patch_ops: usize,
    pub patch_bytes: usize,
    pub names: PodNames,
}

/// Answers one admission request. The patch is computed against the request's object; it is
/// never re-serialized from a typed Pod. The answer depends only on the request and the labels,
/// so `dryRun` requests get exactly the same answer.
pub fn review(
    req: Request<'_>,
    ns: NamespaceLabels<'_>,
    cfg: &Config,
    on_error: OnError,
) -> Outcome {
    let response = AdmissionResponse::from(&req);
    if !is_pod_create(&req) {
        return finish(
            response,
            OutcomeKind::Ignored,
            Features::default(),
            Vec::new(),
            Vec::new(),
        );
    }
    let Some(namespace) = namespace_to_look_up(&req).map(str::to_owned) else {
        return cannot_decide(
            response,
            on_error,
            "no_namespace",
            "request.namespace is empty; not injected".into(),
        );
    };
    let labels = match ns {
        NamespaceLabels::Known(labels) => labels,
        NamespaceLabels::Unknown { reason } => {
            let msg =
                format!("labels of namespace {namespace} unavailable ({reason}); not injected");
            return cannot_decide(response, on_error, "namespace_unavailable", msg);
        }
    };
    if let Some(skip) = policy::namespace_skip(cfg, &namespace, labels) {
        return finish(
            response,
            OutcomeKind::Skipped(skip),
            Features::default(),
            Vec::new(),
            Vec::new(),
        );
    }
    let Some(object) = req.object else {
        let msg = "request.object is missing; not injected".to_string();
        return cannot_decide(response, on_error, "no_object", msg);
    };
    let pod = match object.read() {
        Ok(pod) => pod,
        Err(e) => {
            let msg = format!("request.object is not readable ({e}); not injected");
            return cannot_decide(response, on_error, "bad_pod", msg);
        }
    };
    if !pod.is_object() {
        let msg = "request.object is not a JSON object; not injected".to_string();
        return cannot_decide(response, on_error, "bad_pod", msg);
    }

    let plan = match mutate::plan(cfg, &namespace, labels, &pod) {
        Ok(plan) => plan,
        Err(e) => {
            return cannot_decide(
                response,
                on_error,
                "bad_pod",
                format!("request.object.{e}; not injected"),
            );
        }
    };
    let features = plan.features();
    let result = match plan.decision {
        Decision::Skip(skip) => OutcomeKind::Skipped(skip),
        Decision::Inject { .. } if plan.ops.is_empty() => OutcomeKind::Unchanged,
        Decision::Inject { .. } => OutcomeKind::Mutated,
    };
    let mut response = response;
    if !features.is_empty() {
        response.audit_annotations = HashMap::from([("injected".to_string(), features.record())]);
    }
    let text = |ptr: &str| pod.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
    let names = PodNames {
        name: text("/metadata/name"),
        generate_name: text("/metadata/generateName"),
    };
    let mut outcome = finish(
        response,
        result,
        features,
        plan.ops,
        plan.warnings.into_vec(),
    );
    outcome.names = names;
    outcome
}

fn cannot_decide(
    response: AdmissionResponse,
    on_error: OnError,
    reason: &'static str,
    message: String,
) -> Outcome {
    match on_error {
        OnError::Allow => finish(
            response,
            OutcomeKind::Error(reason),
            Features::default(),
            Vec::new(),
            vec![message],
        ),
        OnError::Deny => {
            let response = response.deny(format!("gke-wi-injector: {message}"));
            finish(
                response,
                OutcomeKind::Denied(reason),
                Features::default(),
                Vec::new(),
                Vec::new(),
            )
        }
    }
}

fn finish(
    mut response: AdmissionResponse,
    result: OutcomeKind,
    features: Features,
    ops: Vec<json_patch::PatchOperation>,
    warnings: Vec<String>,
) -> Outcome {
    let patch_ops = ops.len();
    let mut patch_bytes = 0;
    if !warnings.is_empty() {
        let mut w = crate::engine::warnings::Warnings::default();
        warnings.into_iter().for_each(|m| w.push(m));
        response.warnings = Some(w.into_vec());
    }
    if !ops.is_empty() {
        // Serializing a patch of strings and maps cannot fail; if it ever did, the Pod is
        // allowed unchanged rather than blocked.
        match response.clone().with_patch(Patch(ops)) {
            Ok(with_patch) => {
                patch_bytes = with_patch.patch.as_ref().map_or(0, Vec::len);
                response = with_patch;
            }
            Err(_) => {
                return Outcome {
                    review: response.into_review(),
                    result: OutcomeKind::Error("patch_encoding"),
                    features,
                    patch_ops: 0,
                    patch_bytes: 0,
                    names: PodNames::default(),
                };
            }
        }
    }
    Outcome {
        review: response.into_review(),
        result,
        features,
        patch_ops,
        patch_bytes,
        names: PodNames::default(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
