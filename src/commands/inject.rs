//! `gke-wi-injector inject`: the offline dry run. Reads YAML or JSON documents, mutates Pods
//! and the Pod templates of workloads exactly as the webhook would, and prints the result. All
//! output is built first and written only when every document succeeded.

use std::io::{Read, Write};

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use json_patch::PatchOperation;
use json_patch::jsonptr::{PointerBuf, Token};
use serde_json::{Value, json};

use crate::admission::{self, NamespaceLabels, OnError};
use crate::cli::shared::{MutationArgs, parse_labels};
use crate::engine::mutate::{self, Plan};
use crate::engine::policy::{Config, Decision, Labels, Skip};
use crate::engine::yaml::{self, YamlLimits};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The mutated objects, as YAML.
    Yaml,
    /// One RFC 6902 JSON Patch per object.
    Patch,
    /// One AdmissionReview response per object.
    Review,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    #[command(flatten)]
    pub mutation: MutationArgs,

    /// File to read (YAML or JSON, multi-document); `-` reads standard input.
    #[arg(short = 'f', long = "filename", env = "GKE_WI_INJECTOR_FILENAME")]
    pub file: PathBuf,

    /// Labels of the namespace the objects are created in: `k=v,k2=v2`.
    #[arg(long, env = "GKE_WI_INJECTOR_NAMESPACE_LABELS", default_value = "", value_parser = parse_labels)]
    pub namespace_labels: Labels,

    /// Namespace of objects that name none.
    #[arg(
        short = 'n',
        long = "namespace",
        env = "GKE_WI_INJECTOR_INJECT_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,

    /// What to print.
    #[arg(short = 'o', long, env = "GKE_WI_INJECTOR_OUTPUT", value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
}

/// A document that cannot be processed: names the document (1-based) and the field.
/// `doc` 0 stands for the whole input (its size) or the output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{field}: {problem}", doc_prefix(*.doc))]
pub struct DocError {
    pub doc: usize,
    pub field: String,
    pub problem: String,
}

fn doc_prefix(doc: usize) -> String {
    if doc == 0 {
        String::new()
    } else {
        format!("document {doc}: ")
    }
}

/// Longest input `inject` reads, in bytes (files are user input too).
pub const MAX_INPUT_BYTES: usize = yaml::FILE_LIMITS.max_bytes;

/// The bounds `inject` reads YAML input under: [`yaml::FILE_LIMITS`]. JSON input is read by
/// serde_json (nesting up to 128) after the same size check.
pub const INPUT_LIMITS: YamlLimits = yaml::FILE_LIMITS;

/// What `inject` needs besides the text.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    pub namespace_labels: Labels,
    /// Namespace of objects that name none.
    pub default_namespace: String,
    pub output: OutputFormat,
}

impl From<&InjectArgs> for Options {
    fn from(args: &InjectArgs) -> Self {
        Options {
            config: args.mutation.to_config(),
            namespace_labels: args.namespace_labels.clone(),
            default_namespace: args.namespace.clone(),
            output: args.output,
        }
    }
}

/// The printed result and what goes to standard error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub output: String,
    /// `document N: warning` lines.
    pub warnings: Vec<String>,
    /// Pods (and Pod templates) that were mutated.
    pub mutated: usize,
    /// Pods (and Pod templates) seen.
    pub pods: usize,
}

/// Where the Pod template sits in a workload of this kind.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// Splits YAML or JSON text into documents (empty YAML documents are dropped), under
/// [`INPUT_LIMITS`].
pub fn parse_documents(text: &str) -> Result<Vec<Value>, DocError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(DocError {
            doc: 0,
            field: "(input)".into(),
            problem: format!("over the byte limit of {MAX_INPUT_BYTES}"),
        });
    }
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return yaml::documents(text, &INPUT_LIMITS).map_err(|e| DocError {
            doc: e.document.unwrap_or(1),
            field: "(yaml)".into(),
            problem: e.problem(),
        });
    }
    let mut docs = Vec::new();
    for (i, doc) in serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
    {
        let doc = doc.map_err(|e| DocError {
            doc: i + 1,
            field: "(json)".into(),
            problem: e.to_string(),
        })?;
        docs.push(doc);
    }
    Ok(docs)
}

/// Runs the whole input; on error nothing of the output is returned.
pub fn inject(text: &str, opts: &Options) -> Result<Report, DocError> {
    let docs = parse_documents(text)?;
    let mut report = Report::default();
    let mut rendered = Vec::with_capacity(docs.len());
    for (i, doc) in docs.into_iter().enumerate() {
        let mut ctx = DocContext {
            doc: i + 1,
            opts,
            report: &mut report,
            ops: Vec::new(),
            reviews: Vec::new(),
        };
        let out = ctx.document(doc)?;
        rendered.push(match opts.output {
            OutputFormat::Yaml => Rendered::Object(out),
            OutputFormat::Patch => {
                Rendered::Json(serde_json::to_value(&ctx.ops).unwrap_or_default())
            }
            OutputFormat::Review => Rendered::Reviews(std::mem::take(&mut ctx.reviews)),
        });
    }
    report.output = render(rendered, opts.output).map_err(|e| DocError {
        doc: 0,
        field: "(output)".into(),
        problem: e,
    })?;
    Ok(report)
}

enum Rendered {
    Object(Value),
    Json(Value),
    Reviews(Vec<Value>),
}

fn render(rendered: Vec<Rendered>, output: OutputFormat) -> Result<String, String> {
    let mut out = String::new();
    for r in rendered {
        match (r, output) {
            (Rendered::Object(v), _) => {
                if !out.is_empty() {
                    out.push_str("---\n");
                }
                out.push_str(&yaml::to_string(&v).map_err(|e| e.to_string())?);
            }
            (Rendered::Json(v), _) => {
                out.push_str(&v.to_string());
                out.push('\n');
            }
            (Rendered::Reviews(reviews), _) => {
                for v in reviews {
                    out.push_str(&serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
                    out.push('\n');
                }
            }
        }
    }
    Ok(out)
}

struct DocContext<'a> {
    doc: usize,
    opts: &'a Options,
    report: &'a mut Report,
    /// The document's patch (`--output patch`), paths from the document root.
    ops: Vec<PatchOperation>,
    /// AdmissionReview responses (`--output review`).
    reviews: Vec<Value>,
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
    fn document(&mut self, doc: Value) -> Result<Value, DocError> {
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

/// The `inject` subcommand.
pub fn run(args: InjectArgs) -> anyhow::Result<()> {
    let (name, bytes) = if args.file.as_os_str() == "-" {
        let bytes = read_bounded(std::io::stdin().lock()).context("<stdin>: cannot read")?;
        ("<stdin>".to_string(), bytes)
    } else {
        let name = args.file.display().to_string();
        let bytes = std::fs::File::open(&args.file)
            .and_then(read_bounded)
            .with_context(|| format!("{name}: cannot read"))?;
        (name, bytes)
    };
    if bytes.len() > MAX_INPUT_BYTES {
        anyhow::bail!("{name}: (input): over the byte limit of {MAX_INPUT_BYTES}");
    }
    let text = String::from_utf8(bytes).with_context(|| format!("{name}: cannot read"))?;
    let opts = Options::from(&args);
    let report = inject(&text, &opts).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let mut stderr = std::io::stderr().lock();
    for w in &report.warnings {
        let _ = writeln!(stderr, "warning: {name}: {w}");
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(report.output.as_bytes())
        .context("cannot write to standard output")?;
    stdout.flush().context("cannot write to standard output")?;
    Ok(())
}

/// Reads at most one byte more than [`MAX_INPUT_BYTES`]: enough to refuse a larger input
/// without holding all of it.
fn read_bounded(input: impl Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
