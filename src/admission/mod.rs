//! The admission contract (SPEC §5) over kube-core's `admission.k8s.io/v1` types: a pure
//! function from a request and the namespace's labels to the response. The HTTP server (through
//! [`Review`]: decode, then one [`Review::answer`]) and the offline `inject --output review` both
//! use it. `wire` decodes and encodes the JSON; `answer` is what the handler writes back.

use std::collections::HashMap;

use json_patch::Patch;
use serde_json::Value;

pub use kube::core::DynamicObject;
pub use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

pub mod answer;
pub mod pod_view;
mod wire;

pub use answer::{Answer, LogFields, Outcome};
pub use pod_view::PodView;
pub use wire::{ReviewError, encode, parse_review};

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

fn is_pod_create(req: &Request<'_>) -> bool {
    req.kind.group.is_empty()
        && req.kind.kind == "Pod"
        && req.operation == Operation::Create
        && req.sub_resource.as_deref().unwrap_or("").is_empty()
}

/// What a request asks of the injector, worked out once when it is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// Not a Pod CREATE: answered unchanged without a lookup.
    Ignored,
    /// A Pod CREATE without a namespace.
    NoNamespace,
    /// A Pod CREATE in this namespace.
    Pod(String),
}

/// A decoded AdmissionReview request: the HTTP handler reads what it logs and which namespace
/// to look up, then asks for the [`Answer`] once.
#[derive(Debug)]
pub struct Review<'a> {
    request: Request<'a>,
    scope: Scope,
}

impl<'a> Review<'a> {
    /// Decodes an AdmissionReview request body.
    pub fn parse(body: &'a [u8]) -> Result<Review<'a>, ReviewError> {
        parse_review(body).map(Review::from)
    }

    /// The namespace whose labels the answer needs, or `None` when none is looked up (not a
    /// Pod CREATE, or no namespace).
    pub fn namespace(&self) -> Option<&str> {
        match &self.scope {
            Scope::Pod(namespace) => Some(namespace),
            Scope::Ignored | Scope::NoNamespace => None,
        }
    }

    pub fn uid(&self) -> &str {
        &self.request.uid
    }

    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub fn operation(&self) -> &'static str {
        match self.request.operation {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    pub fn dry_run(&self) -> bool {
        self.request.dry_run
    }

    /// The answer to send: the AdmissionReview encoded for the wire, its outcome and the fields
    /// of its log line. `ns` is what the lookup of [`Review::namespace`] found.
    pub fn answer(self, ns: NamespaceLabels<'_>, cfg: &Config, on_error: OnError) -> Answer {
        let mut request = self.request;
        let request_name = std::mem::take(&mut request.name);
        let reviewed = decide(request, self.scope, ns, cfg, on_error);
        let body = encode(&reviewed.review);
        // The Pod's names come from the engine's reading of the Pod (opted-in namespaces); a Pod
        // that was not read is named by the request's `name`, empty for generated names.
        let PodNames {
            name,
            generate_name,
        } = reviewed.names;
        Answer {
            status: 200,
            body,
            outcome: reviewed.result,
            features: reviewed.features,
            log: LogFields::Reviewed {
                pod: name.filter(|n| !n.is_empty()).unwrap_or(request_name),
                generate_name: generate_name.unwrap_or_default(),
                reason: reviewed.reason,
                patch_ops: reviewed.patch_ops,
                patch_bytes: reviewed.patch_bytes,
            },
        }
    }
}

impl<'a> From<Request<'a>> for Review<'a> {
    fn from(request: Request<'a>) -> Self {
        let scope = if !is_pod_create(&request) {
            Scope::Ignored
        } else {
            match request.namespace.as_deref().filter(|ns| !ns.is_empty()) {
                Some(ns) => Scope::Pod(ns.to_owned()),
                None => Scope::NoNamespace,
            }
        };
        Review { request, scope }
    }
}

/// The labels of the Pod's namespace, or why they are not known.
#[derive(Debug, Clone)]
pub enum NamespaceLabels<'a> {
    Known(&'a Labels),
    Unknown { reason: String },
}

/// The Pod's names, for logs: known when the Pod was read (its namespace opted in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNames {
    pub name: Option<String>,
    pub generate_name: Option<String>,
}

/// The decision on one request, before it is encoded.
#[derive(Debug)]
pub struct Reviewed {
    /// The AdmissionReview to send back (HTTP 200); serialize it with [`encode`].
    pub review: AdmissionReview<DynamicObject>,
    /// A review outcome (never a transport refusal).
    pub result: Outcome,
    /// Why the policy left the Pod alone, for [`Outcome::Skipped`].
    pub skip: Option<Skip>,
    /// Why the injector could not decide, for [`Outcome::Error`] and [`Outcome::Denied`].
    pub reason: &'static str,
    pub features: Features,
    pub patch_ops: usize,
    pub patch_bytes: usize,
    pub names: PodNames,
}

/// Answers one admission request (for callers that hold a decoded request, such as `inject`).
/// The patch is computed against the request's object; it is never re-serialized from a typed
/// Pod. The answer depends only on the request and the labels, so `dryRun` requests get exactly
/// the same answer.
pub fn review(
    req: Request<'_>,
    ns: NamespaceLabels<'_>,
    cfg: &Config,
    on_error: OnError,
) -> Reviewed {
    let Review { request, scope } = Review::from(req);
    decide(request, scope, ns, cfg, on_error)
}

fn decide(
    req: Request<'_>,
    scope: Scope,
    ns: NamespaceLabels<'_>,
    cfg: &Config,
    on_error: OnError,
) -> Reviewed {
    let response = AdmissionResponse::from(&req);
    let namespace = match scope {
        Scope::Ignored => {
            return finish(
                response,
                Verdict::Ignored,
                Features::default(),
                Vec::new(),
                Vec::new(),
            );
        }
        Scope::NoNamespace => {
            return cannot_decide(
                response,
                on_error,
                "no_namespace",
                "request.namespace is empty; not injected".into(),
            );
        }
        Scope::Pod(namespace) => namespace,
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
            Verdict::Skipped(skip),
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
        Decision::Skip(skip) => Verdict::Skipped(skip),
        Decision::Inject { .. } if plan.ops.is_empty() => Verdict::Unchanged,
        Decision::Inject { .. } => Verdict::Mutated,
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

/// A review's result with its detail, turned into [`Reviewed`]'s outcome, skip and reason.
enum Verdict {
    Mutated,
    Unchanged,
    Skipped(Skip),
    Ignored,
    Error(&'static str),
    Denied(&'static str),
}

fn cannot_decide(
    response: AdmissionResponse,
    on_error: OnError,
    reason: &'static str,
    message: String,
) -> Reviewed {
    match on_error {
        OnError::Allow => finish(
            response,
            Verdict::Error(reason),
            Features::default(),
            Vec::new(),
            vec![message],
        ),
        OnError::Deny => {
            let response = response.deny(format!("gke-wi-injector: {message}"));
            finish(
                response,
                Verdict::Denied(reason),
                Features::default(),
                Vec::new(),
                Vec::new(),
            )
        }
    }
}

fn finish(
    mut response: AdmissionResponse,
    verdict: Verdict,
    features: Features,
    ops: Vec<json_patch::PatchOperation>,
    warnings: Vec<String>,
) -> Reviewed {
    let (result, skip, reason) = match verdict {
        Verdict::Mutated => (Outcome::Mutated, None, ""),
        Verdict::Unchanged => (Outcome::Unchanged, None, ""),
        Verdict::Skipped(skip) => (Outcome::Skipped, Some(skip), ""),
        Verdict::Ignored => (Outcome::Ignored, None, ""),
        Verdict::Error(reason) => (Outcome::Error, None, reason),
        Verdict::Denied(reason) => (Outcome::Denied, None, reason),
    };
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
                return Reviewed {
                    review: response.into_review(),
                    result: Outcome::Error,
                    skip: None,
                    reason: "patch_encoding",
                    features,
                    patch_ops: 0,
                    patch_bytes: 0,
                    names: PodNames::default(),
                };
            }
        }
    }
    Reviewed {
        review: response.into_review(),
        result,
        skip,
        reason,
        features,
        patch_ops,
        patch_bytes,
        names: PodNames::default(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
