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

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::ErrorKind;
use serde_saphyr::{Budget, Error as SaphyrError, ExternalMessageSource, Options};

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

/// What the visitor has built so far, per thread: serde-saphyr's multi-document entry point
/// takes a `Deserialize` type, not a seed, so the counters live beside the parse.
#[derive(Debug, Clone, Copy)]
struct Tally {
    limits: YamlLimits,
    nodes: usize,
    bytes: usize,
    depth: usize,
    documents: usize,
    in_document: bool,
    tripped: Option<Limit>,
}

thread_local! {
    static TALLY: Cell<Option<Tally>> = const { Cell::new(None) };
}

/// Clears the thread's tally when the parse ends, even by unwinding.
struct TallyGuard;

impl Drop for TallyGuard {
    fn drop(&mut self) {
        TALLY.with(|t| t.set(None));
    }
}

impl Tally {
    fn start(limits: YamlLimits) -> TallyGuard {
        TALLY.with(|t| {
            t.set(Some(Tally {
                limits,
                nodes: 0,
                bytes: 0,
                depth: 0,
                documents: 0,
                in_document: false,
                tripped: None,
            }))
        });
        TallyGuard
    }

    fn current() -> Tally {
        TALLY.with(Cell::get).unwrap_or(Tally {
            limits: UNBOUNDED,
            nodes: 0,
            bytes: 0,
            depth: 0,
            documents: 0,
            in_document: false,
            tripped: None,
        })
    }

    fn update<R>(f: impl FnOnce(&mut Tally) -> R) -> R {
        let mut t = Tally::current();
        let r = f(&mut t);
        TALLY.with(|cell| cell.set(Some(t)));
        r
    }

    /// Counts one node of `bytes` string bytes.
    fn charge<E: de::Error>(bytes: usize) -> Result<(), E> {
        Tally::update(|t| {
            t.nodes += 1;
            t.bytes = t.bytes.saturating_add(bytes);
            let over = if t.nodes > t.limits.max_nodes {
                Some(("node", t.limits.max_nodes))
            } else if t.bytes > t.limits.max_value_bytes {
                Some(("expanded byte", t.limits.max_value_bytes))
            } else {
                None
            };
            match over {
                Some((what, limit)) => Err(t.trip(Bound::Size, what, limit)),
                None => Ok(()),
            }
        })
    }

    fn enter<E: de::Error>() -> Result<(), E> {
        Tally::update(|t| {
            t.depth += 1;
            if t.depth > t.limits.max_depth {
                let limit = t.limits.max_depth;
                return Err(t.trip(Bound::Depth, "depth", limit));
            }
            Ok(())
        })
    }

    fn leave() {
        Tally::update(|t| t.depth = t.depth.saturating_sub(1));
    }

    fn trip<E: de::Error>(&mut self, bound: Bound, what: &'static str, limit: usize) -> E {
        let l = Limit { bound, what, limit };
        self.tripped.get_or_insert(l);
        E::custom(l)
    }
}

const UNBOUNDED: YamlLimits = YamlLimits {
    max_bytes: usize::MAX,
    max_depth: usize::MAX,
    max_nodes: usize::MAX,
    max_value_bytes: usize::MAX,
    max_aliases: usize::MAX,
    max_alias_events: usize::MAX,
    max_documents: usize::MAX,
};

/// A `serde_json::Value` built under the thread's [`Tally`].
struct Bounded(Value);

impl<'de> Deserialize<'de> for Bounded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let root = Tally::update(|t| {
            let root = t.depth == 0 && !t.in_document;
            if root {
                t.documents += 1;
                t.in_document = true;
            }
            root
        });
        let v = d.deserialize_any(BoundedVisitor)?;
        if root {
            Tally::update(|t| t.in_document = false);
        }
        Ok(Bounded(v))
    }
}

struct BoundedVisitor;

impl<'de> Visitor<'de> for BoundedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Tally::charge(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Tally::charge(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Tally::charge(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Tally::charge(0)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Tally::charge(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Tally::charge(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Tally::charge(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(BoundedVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        Tally::charge(0)?;
        Tally::enter()?;
        let mut out = Vec::new();
        let result = loop {
            match seq.next_element::<Bounded>() {
                Ok(Some(v)) => out.push(v.0),
                Ok(None) => break Ok(Value::Array(out)),
                Err(e) => break Err(e),
            }
        };
        Tally::leave();
        result
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        Tally::charge(0)?;
        Tally::enter()?;
        let mut out = Map::new();
        let result = loop {
            let key = match map.next_key::<String>() {
                Ok(Some(k)) => k,
                Ok(None) => break Ok(Value::Object(out)),
                Err(e) => break Err(e),
            };
            if let Err(e) = Tally::charge(key.len()) {
                break Err(e);
            }
            match map.next_value::<Bounded>() {
                Ok(v) => {
                    out.insert(key, v.0);
                }
                Err(e) => break Err(e),
            }
        };
        Tally::leave();
        result
    }
}

#[cfg(test)]
#[path = "yaml_tests.rs"]
mod tests;
