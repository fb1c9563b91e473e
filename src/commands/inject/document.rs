//! One document of `inject`: finds the Pods and Pod templates in it (workloads, Lists,
//! AdmissionReviews), answers each as the webhook would, and keeps the patch and the reviews.

use json_patch::PatchOperation;
use json_patch::jsonptr::{PointerBuf, Token};
use serde_json::{Value, json};

use super::{DocError, Options, OutputFormat, Report, template_path};
use crate::admission::{self, NamespaceLabels, OnError};
use crate::engine::mutate::{self, Plan};
use crate::engine::policy::{Decision, Skip};

pub(super) struct DocContext<'a> {
    pub(super) doc: usize,
    pub(super) opts: &'a Options,
    pub(super) report: &'a mut Report,
    /// The document's patch (`--output patch`), paths from the document root.
    pub(super) ops: Vec<PatchOperation>,
    /// AdmissionReview responses (`--output review`).
    pub(super) reviews: Vec<Value>,
}

impl DocContext<'_> {
    fn err(&self, field: impl Into<String>, problem: impl Into<String>) -> DocError {
        DocError {
            doc: self.doc,
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// Processes one top-level document and returns it as printed by `--output yaml`.
    pub(super) fn document(&mut self, doc: Value) -> Result<Value, DocError> {
        if doc.get("kind").and_then(Value::as_str) == Some("AdmissionReview") {
            let review = self.admission_review(&doc)?;
            self.reviews.push(review.clone());
            return Ok(review);
        }
        let mut doc = doc;
        self.object(&mut doc, PointerBuf::root(), "", false)?;
        Ok(doc)
    }

    /// Mutates `obj` in place (at `at` inside the document; `field` is its dotted prefix).
    fn object(
        &mut self,
        obj: &mut Value,
        at: PointerBuf,
        field: &str,
        in_list: bool,
    ) -> Result<(), DocError> {
        let kind = match obj.get("kind") {
            Some(Value::String(k)) => k.clone(),
            _ if !obj.is_object() => {
                return Err(self.err(or_doc(field), "expected a Kubernetes object"));
            }
            _ => {
                return Err(self.err(
                    join(field, "kind"),
                    "missing: every object needs apiVersion and kind",
                ));
            }
        };
        if kind == "List" || (kind.ends_with("List") && obj.get("items").is_some()) {
            let Some(items) = obj.get_mut("items").and_then(Value::as_array_mut) else {
                return Err(self.err(join(field, "items"), "expected a list"));
            };
            for (i, item) in items.iter_mut().enumerate() {
                let mut ptr = at.clone();
                ptr.push_back("items");
                ptr.push_back(i);
                self.object(item, ptr, &format!("{}items[{i}]", prefix(field)), true)?;
            }
            return Ok(());
        }
        let Some(path) = template_path(&kind) else {
            if in_list && !is_known_kind(&kind) {
                return Err(self.err(
                    join(field, "kind"),
                    format!("unknown kind {kind:?} inside a List"),
                ));
            }
            self.review_passthrough(obj, &kind);
            return Ok(());
        };
        let namespace = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(&self.opts.default_namespace)
            .to_string();
        let tmpl_ptr = PointerBuf::from_tokens(path.iter().map(|t| Token::new(*t)));
        let tmpl_field = if path.is_empty() {
            field.to_string()
        } else {
            join(field, &path.join("."))
        };
        let Some(template) = obj.pointer(tmpl_ptr.as_str()) else {
            return Err(self.err(tmpl_field, "missing"));
        };
        let plan = mutate::plan(
            &self.opts.config,
            &namespace,
            &self.opts.namespace_labels,
            template,
        )
        .map_err(|e| self.err(join(&tmpl_field, &e.field), e.problem))?;
        self.note(&plan, &kind, obj);
        if self.opts.output == OutputFormat::Review {
            let pod = pod_from_template(obj, &kind, template, &namespace);
            self.reviews.push(self.review_for(pod, &namespace));
        }
        let target = obj
            .pointer_mut(tmpl_ptr.as_str())
            .ok_or_else(|| self.err(or_doc(field), "template vanished"))?;
        json_patch::patch(target, &plan.ops)
            .map_err(|e| self.err(or_doc(field), format!("patch did not apply: {e}")))?;
        let base = at.concat(&tmpl_ptr);
        self.ops
            .extend(crate::engine::patch::rebase(plan.ops, &base));
        Ok(())
    }

    fn note(&mut self, plan: &Plan, kind: &str, obj: &Value) {
        self.report.pods += 1;
        if !plan.ops.is_empty() {
            self.report.mutated += 1;
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        for w in plan.warnings.as_slice() {
            self.report
                .warnings
                .push(format!("document {}: {kind} {name}: {w}", self.doc));
        }
        if plan.decision == Decision::Skip(Skip::NotOptedIn) {
            let key = self.opts.config.prefix.key("inject");
            self.report.warnings.push(format!(
                "document {}: {kind} {name}: not injected: --namespace-labels lacks {key}=enabled",
                self.doc
            ));
        }
    }

    /// Non-Pod documents in `--output review`: the webhook is never called for them.
    fn review_passthrough(&mut self, obj: &Value, kind: &str) {
        if self.opts.output == OutputFormat::Review {
            let mut request = review_request(
                self.doc,
                obj.clone(),
                obj.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(&self.opts.default_namespace),
            );
            request["request"]["kind"] = json!({"group": "", "version": "v1", "kind": kind});
            self.reviews.push(self.answer(request));
        }
    }

    fn review_for(&self, pod: Value, namespace: &str) -> Value {
        self.answer(review_request(self.doc, pod, namespace))
    }

    fn answer(&self, request: Value) -> Value {
        let body = serde_json::to_vec(&request).unwrap_or_default();
        match admission::parse_review(&body) {
            Ok(req) => {
                let labels = NamespaceLabels::Known(&self.opts.namespace_labels);
                let outcome = admission::review(req, labels, &self.opts.config, OnError::Allow);
                serde_json::from_slice(&admission::encode(&outcome.review)).unwrap_or_default()
            }
            Err(e) => json!({"error": e.to_string()}),
        }
    }

    /// An AdmissionReview request in: the response out, as the server would answer.
    fn admission_review(&mut self, doc: &Value) -> Result<Value, DocError> {
        let body = serde_json::to_vec(doc).unwrap_or_default();
        let req = admission::parse_review(&body).map_err(|e| self.err("request", e.to_string()))?;
        let labels = NamespaceLabels::Known(&self.opts.namespace_labels);
        let outcome = admission::review(req, labels, &self.opts.config, OnError::Allow);
        let response = outcome.review.response.as_ref();
        for w in response
            .and_then(|r| r.warnings.as_deref())
            .unwrap_or_default()
        {
            self.report
                .warnings
                .push(format!("document {}: {w}", self.doc));
        }
        if let Some(patch) = response.and_then(|r| r.patch.as_deref()) {
            let ops: Vec<PatchOperation> = serde_json::from_slice(patch).unwrap_or_default();
            self.ops.extend(ops);
        }
        self.report.pods += usize::from(outcome.result != admission::Outcome::Ignored);
        self.report.mutated += usize::from(outcome.result == admission::Outcome::Mutated);
        Ok(serde_json::from_slice(&admission::encode(&outcome.review)).unwrap_or_default())
    }
}

/// Kinds that may stand in a List besides those carrying Pod templates.
fn is_known_kind(kind: &str) -> bool {
    const KINDS: [&str; 24] = [
        "Namespace",
        "Service",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Ingress",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "PersistentVolume",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "LimitRange",
        "ResourceQuota",
        "Endpoints",
        "EndpointSlice",
        "StorageClass",
        "PriorityClass",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    KINDS.contains(&kind)
}

/// The Pod a workload controller would create from the template.
fn pod_from_template(obj: &Value, kind: &str, template: &Value, namespace: &str) -> Value {
    if kind == "Pod" {
        return obj.clone();
    }
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod"});
    let mut metadata = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let owner = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("pod");
    metadata["generateName"] = json!(format!("{owner}-"));
    metadata["namespace"] = json!(namespace);
    pod["metadata"] = metadata;
    pod["spec"] = template.get("spec").cloned().unwrap_or(Value::Null);
    pod
}

/// A Pod CREATE review shaped like the API server's, with a stable uid per document.
fn review_request(doc: usize, pod: Value, namespace: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("00000000-0000-0000-0000-{doc:012}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod.pointer("/metadata/name").cloned().unwrap_or(json!("")),
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "gke-wi-injector-inject"},
            "object": pod, "dryRun": true,
        }
    })
}

fn prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}.")
    }
}

fn join(field: &str, rest: &str) -> String {
    format!("{}{rest}", prefix(field))
}

fn or_doc(field: &str) -> String {
    if field.is_empty() {
        "(document)".into()
    } else {
        field.into()
    }
}
