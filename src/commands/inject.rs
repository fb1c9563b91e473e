//! `gke-wi-injector inject`: the offline dry run. Reads YAML or JSON documents, mutates Pods
//! and the Pod templates of workloads exactly as the webhook would, and prints the result. All
//! output is built first and written only when every document succeeded.

use std::io::{Read, Write};

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::Value;

use super::shared::{MutationArgs, parse_labels};
use crate::engine::policy::{Config, Labels};
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

mod document;

use document::DocContext;

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
