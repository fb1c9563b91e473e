//! Bounded YAML reading (SPEC §9). Every YAML (or JSON, which is YAML) text that a tenant or a
//! user writes is read here into `serde_json::Value`s:
//!
//! - size is checked before parsing;
//! - nesting (block and flow), parser events, nodes, anchors, aliases and alias replay are
//!   bounded while parsing by serde-saphyr's `Budget` and `AliasLimits`;
//! - the visitor that builds the value counts every node and string byte it produces, aliases
//!   and merge keys expanded included, so the value stays within [`YamlLimits::max_nodes`] and
//!   [`YamlLimits::max_value_bytes`] whatever the input does.
//!
//! Scalars resolve as YAML 1.1 (what Kubernetes and Istio read through sigs.k8s.io/yaml, go-yaml
//! v2): `yes`/`on`/`y` are `true`, `no`/`off`/`n` are `false` and `0755` is octal. One
//! deviation: serde-saphyr accepts these words in any letter case, go-yaml only in lower case,
//! Capitalized and UPPER case (`yes`, `Yes`, `YES`), so serde-saphyr reads `yEs` as `true` where
//! go-yaml reads the string "yEs".

mod bounded;

use std::fmt;

use serde_json::Value;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::ErrorKind;
use serde_saphyr::{Budget, Error as SaphyrError, ExternalMessageSource, Options};

use bounded::{Bounded, Tally};

/// Bounds for one parse. Over any of them the parse fails with [`YamlErrorKind::OverLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YamlLimits {
    /// Longest input, in bytes; checked before parsing.
    pub max_bytes: usize,
    /// Deepest nesting of mappings and sequences, block or flow (a top-level mapping is 1).
    pub max_depth: usize,
    /// Most nodes (scalars, mappings, sequences, mapping keys) in the parsed value, aliases
    /// expanded.
    pub max_nodes: usize,
    /// Most bytes of strings (keys and values) in the parsed value, aliases expanded.
    pub max_value_bytes: usize,
    /// Most aliases (`*a`), anchors (`&a`) and merge keys (`<<`), each.
    pub max_aliases: usize,
    /// Most parser events replayed through aliases, in total.
    pub max_alias_events: usize,
    /// Most documents in one text.
    pub max_documents: usize,
}

/// Bounds for files a user hands over (`inject` input, `--namespaces`): roomy for any set of
/// manifests, but with alias expansion bounded so that a few kilobytes cannot expand into
/// gigabytes. The depth limit also keeps the recursive parse well inside a 2 MiB thread stack,
/// even in debug builds.
pub const FILE_LIMITS: YamlLimits = YamlLimits {
    max_bytes: 64 * 1024 * 1024,
    max_depth: 64,
    max_nodes: 4 * 1024 * 1024,
    max_value_bytes: 128 * 1024 * 1024,
    max_aliases: 4 * 1024,
    max_alias_events: 64 * 1024,
    max_documents: 16 * 1024,
};

/// Which kind of bound was hit: what a warning or an error names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Input bytes, nodes, string bytes or documents.
    Size,
    /// Nesting depth.
    Depth,
    /// Aliases, anchors, merge keys or alias expansion.
    Aliases,
}

impl Bound {
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Size => "size",
            Bound::Depth => "depth",
            Bound::Aliases => "aliases",
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One exceeded bound: its kind, what exactly was counted and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub bound: Bound,
    /// What was counted, e.g. `"byte"`, `"depth"`, `"alias"`, `"alias expansion"`.
    pub what: &'static str,
    pub limit: usize,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "over the {} limit of {}", self.what, self.limit)
    }
}

/// Why a text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlErrorKind {
    #[error("{0}")]
    OverLimit(Limit),
    #[error("not valid YAML: {0}")]
    Invalid(String),
}

/// A text that could not be read, with the document (1-based, counting non-empty documents)
/// and line where that is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{kind}", place(*.document, *.line))]
pub struct YamlError {
    pub document: Option<usize>,
    pub line: Option<u64>,
    pub kind: YamlErrorKind,
}

impl YamlError {
    /// The exceeded bound, if that is why the text could not be read.
    pub fn limit(&self) -> Option<Limit> {
        match self.kind {
            YamlErrorKind::OverLimit(l) => Some(l),
            YamlErrorKind::Invalid(_) => None,
        }
    }

    /// The message without the document number (for callers that name the document themselves).
    pub fn problem(&self) -> String {
        format!("{}{}", place(None, self.line), self.kind)
    }
}

fn place(document: Option<usize>, line: Option<u64>) -> String {
    match (document, line) {
        (Some(d), Some(l)) => format!("document {d}, line {l}: "),
        (Some(d), None) => format!("document {d}: "),
        (None, Some(l)) => format!("line {l}: "),
        (None, None) => String::new(),
    }
}

/// Reads a multi-document text; empty documents are dropped.
pub fn documents(text: &str, limits: &YamlLimits) -> Result<Vec<Value>, YamlError> {
    if text.len() > limits.max_bytes {
        return Err(YamlError {
            document: None,
            line: None,
            kind: YamlErrorKind::OverLimit(Limit {
                bound: Bound::Size,
                what: "byte",
                limit: limits.max_bytes,
            }),
        });
    }
    let _guard = Tally::start(*limits);
    let parsed = serde_saphyr::from_multiple_with_options::<Bounded>(text, options(limits));
    let tally = Tally::current();
    match parsed {
        Ok(docs) => Ok(docs.into_iter().map(|b| b.0).collect()),
        Err(e) => {
            let document = tally.documents + usize::from(!tally.in_document);
            let e = root_cause(&e);
            let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
            let kind = match tally.tripped.or_else(|| saphyr_limit(e, limits)) {
                Some(l) => YamlErrorKind::OverLimit(l),
                None => YamlErrorKind::Invalid(one_line(&e.to_string())),
            };
            Err(YamlError {
                document: Some(document),
                line,
                kind,
            })
        }
    }
}

/// Reads a text holding at most one (non-empty) document; `Null` when there is none.
pub fn value(text: &str, limits: &YamlLimits) -> Result<Value, YamlError> {
    let mut docs = documents(text, limits).map_err(|e| YamlError {
        document: None,
        ..e
    })?;
    match docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(docs.remove(0)),
        _ => Err(YamlError {
            document: None,
            line: None,
            kind: YamlErrorKind::Invalid("more than one document".into()),
        }),
    }
}

/// Writes one value as a YAML document (YAML 1.1-safe quoting: `"yes"`, `"0644"` stay strings).
pub fn to_string(value: &Value) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(value)
}

fn options(limits: &YamlLimits) -> Options {
    let mut budget = Budget::default();
    budget.max_reader_input_bytes = Some(limits.max_bytes);
    budget.max_depth = limits.max_depth;
    budget.flow_nesting_limit = limits.max_depth;
    budget.max_nodes = limits.max_nodes;
    // Each node opens and closes at most one event; comments are not emitted.
    budget.max_events = limits
        .max_nodes
        .saturating_mul(2)
        .saturating_add(limits.max_documents.saturating_mul(2))
        .saturating_add(2);
    budget.max_aliases = limits.max_aliases;
    budget.max_anchors = limits.max_aliases;
    budget.max_merge_keys = limits.max_aliases;
    budget.max_documents = limits.max_documents;
    budget.max_total_scalar_bytes = limits.max_value_bytes;
    budget.max_recorded_anchor_events = limits.max_alias_events;
    budget.max_recorded_anchor_bytes = limits.max_bytes;
    budget.max_inclusion_depth = 0;
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = limits.max_alias_events;
    alias_limits.max_replay_stack_depth = limits.max_depth;
    let mut opts = Options::default();
    opts.budget = Some(budget);
    opts.alias_limits = alias_limits;
    opts.emit_comments = false;
    opts.with_snippet = false;
    // YAML 1.1 as go-yaml v2 reads it: `0644` is 420 (`defaultMode: 0644` in Pod specs).
    opts.legacy_octal_numbers = true;
    // Keys such as `~` or `null` stay text (a JSON object key is always a string).
    opts.null_as_string = true;
    opts
}

/// The innermost error: alias and snippet wrappers removed.
fn root_cause(mut e: &SaphyrError) -> &SaphyrError {
    while let SaphyrError::AliasError { error, .. } | SaphyrError::WithSnippet { error, .. } = e {
        e = error;
    }
    e
}

/// The bound behind one of serde-saphyr's own limit errors.
fn saphyr_limit(e: &SaphyrError, limits: &YamlLimits) -> Option<Limit> {
    let (bound, what, limit) = match e {
        SaphyrError::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => (Bound::Depth, "depth", limits.max_depth),
            BudgetBreach::Aliases { .. } | BudgetBreach::AliasAnchorRatio { .. } => {
                (Bound::Aliases, "alias", limits.max_aliases)
            }
            BudgetBreach::Anchors { .. } => (Bound::Aliases, "anchor", limits.max_aliases),
            BudgetBreach::MergeKeys { .. } => (Bound::Aliases, "merge key", limits.max_aliases),
            BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => {
                (Bound::Size, "node", limits.max_nodes)
            }
            BudgetBreach::Documents { .. } => (Bound::Size, "document", limits.max_documents),
            BudgetBreach::RecordedAnchorEvents { .. }
            | BudgetBreach::RecordedAnchorBytes { .. } => {
                (Bound::Aliases, "alias expansion", limits.max_alias_events)
            }
            BudgetBreach::ScalarBytes { .. } => {
                (Bound::Size, "expanded byte", limits.max_value_bytes)
            }
            BudgetBreach::InputBytes { .. } => (Bound::Size, "byte", limits.max_bytes),
            _ => (Bound::Size, "size", limits.max_bytes),
        },
        SaphyrError::AliasReplayLimitExceeded { .. }
        | SaphyrError::AliasExpansionLimitExceeded { .. }
        | SaphyrError::AliasReplayCounterOverflow { .. } => {
            (Bound::Aliases, "alias expansion", limits.max_alias_events)
        }
        SaphyrError::AliasReplayStackDepthExceeded { .. } => {
            (Bound::Aliases, "alias nesting", limits.max_depth)
        }
        SaphyrError::ExternalMessage { source, .. } => match source.as_ref() {
            ExternalMessageSource::Parser(scan)
                if matches!(scan.kind(), ErrorKind::RecursionLimitExceeded) =>
            {
                (Bound::Depth, "depth", limits.max_depth)
            }
            _ => return None,
        },
        SaphyrError::IOError { cause } if cause.kind() == std::io::ErrorKind::FileTooLarge => {
            (Bound::Size, "byte", limits.max_bytes)
        }
        _ => return None,
    };
    Some(Limit { bound, what, limit })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[path = "yaml_tests.rs"]
mod tests;
