//! Namespace labels from `--namespaces FILE`, outside a cluster: parsed within the YAML limits,
//! answered from memory and re-read when the file changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{Fetched, NamespaceSource};
use crate::engine::policy::Labels;
use crate::engine::yaml;

/// Label of the file source in `reload_failures_total`.
pub const RELOAD_SOURCE: &str = "namespaces";

#[derive(Debug, thiserror::Error)]
pub enum NamespacesFileError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: document {index}: {problem}", path.display())]
    Document {
        path: PathBuf,
        index: usize,
        problem: String,
    },
}

/// Namespaces and their labels, parsed from YAML or JSON: `Namespace` objects in one or more
/// documents, or a `List`/`NamespaceList` of them, read within [`yaml::FILE_LIMITS`]. Errors
/// name the file, the document (from 1, empty documents not counted) and the field.
pub fn parse_namespaces(
    text: &str,
    path: &Path,
) -> Result<HashMap<String, Arc<Labels>>, NamespacesFileError> {
    let mut out = HashMap::new();
    let docs =
        yaml::documents(text, &yaml::FILE_LIMITS).map_err(|e| NamespacesFileError::Document {
            path: path.to_path_buf(),
            index: e.document.unwrap_or(1),
            problem: format!("not YAML or JSON: {}", e.problem()),
        })?;
    for (i, value) in docs.into_iter().enumerate() {
        let index = i + 1;
        let bad = |problem: String| NamespacesFileError::Document {
            path: path.to_path_buf(),
            index,
            problem,
        };
        match value {
            Value::Null => continue,
            Value::Object(_) => {}
            _ => return Err(bad("expected a Namespace or a List of Namespaces".into())),
        }
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind {
            "Namespace" => add_namespace(&value, "", &mut out).map_err(bad)?,
            "List" | "NamespaceList" => {
                let items = value
                    .get("items")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("items: expected a list".into()))?;
                for (j, item) in items.iter().enumerate() {
                    let at = format!("items[{j}].");
                    let item_kind = item.get("kind").and_then(Value::as_str);
                    // kubectl prints the items of a NamespaceList without kind.
                    let is_namespace = item_kind == Some("Namespace")
                        || (item_kind.is_none() && kind == "NamespaceList");
                    if !is_namespace {
                        let found =
                            item_kind.map_or_else(|| "no kind".to_string(), |k| format!("{k:?}"));
                        return Err(bad(format!("{at}kind: expected Namespace, found {found}")));
                    }
                    add_namespace(item, &at, &mut out).map_err(bad)?;
                }
            }
            other => {
                return Err(bad(format!(
                    "kind: expected Namespace or List, found {other:?}"
                )));
            }
        }
    }
    Ok(out)
}

fn add_namespace(
    ns: &Value,
    at: &str,
    out: &mut HashMap<String, Arc<Labels>>,
) -> Result<(), String> {
    let name = ns
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{at}metadata.name: missing"))?;
    let mut labels = Labels::new();
    match ns.pointer("/metadata/labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("{at}metadata.labels[{k}]: expected a string"))?;
                labels.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => return Err(format!("{at}metadata.labels: expected a map")),
    }
    if out.insert(name.to_string(), Arc::new(labels)).is_some() {
        return Err(format!("{at}metadata.name: {name:?} appears twice"));
    }
    Ok(())
}

/// `--namespaces FILE`: always synced; re-read when the file changes.
#[derive(Debug)]
pub struct FileNamespaces {
    path: PathBuf,
    namespaces: ArcSwap<HashMap<String, Arc<Labels>>>,
}

impl FileNamespaces {
    /// Reads and parses the file; returns the source and the contents read (for the reloader).
    pub fn load(path: &Path) -> Result<(Arc<FileNamespaces>, Vec<u8>), NamespacesFileError> {
        let bytes = std::fs::read(path).map_err(|error| NamespacesFileError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let map = parse_namespaces(&String::from_utf8_lossy(&bytes), path)?;
        let source = FileNamespaces {
            path: path.to_path_buf(),
            namespaces: ArcSwap::from_pointee(map),
        };
        Ok((Arc::new(source), bytes))
    }

    /// The file the namespaces are read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes new contents of the file (`server::reload` polls it). A file that drops namespaces
    /// may be half-written (truncated, then written): it is taken only once it has not changed
    /// for a poll (`stable`), so an emptied or partly written file never leaves Pods of the
    /// dropped namespaces uninjected in between. A bad file keeps the old namespaces.
    pub fn replace(&self, contents: &[u8], stable: bool) -> Result<(), NotTaken> {
        let map = parse_namespaces(&String::from_utf8_lossy(contents), &self.path)
            .map_err(|e| NotTaken::Invalid(e.to_string()))?;
        let dropped = dropped_namespaces(&self.namespaces.load(), &map);
        if dropped > 0 && !stable {
            return Err(NotTaken::Unsettled(format!(
                "{} drops {dropped} namespaces; taken if unchanged at the next poll",
                self.path.display()
            )));
        }
        tracing::info!(file = %self.path.display(), namespaces = map.len(), dropped, "reloaded the namespaces file");
        self.namespaces.store(Arc::new(map));
        Ok(())
    }
}

/// Why [`FileNamespaces::replace`] did not take new contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotTaken {
    /// The contents do not parse.
    Invalid(String),
    /// The contents drop namespaces and have not settled yet.
    Unsettled(String),
}

/// How many namespaces of `old` are missing from `new`.
fn dropped_namespaces(
    old: &HashMap<String, Arc<Labels>>,
    new: &HashMap<String, Arc<Labels>>,
) -> usize {
    old.keys().filter(|name| !new.contains_key(*name)).count()
}

impl NamespaceSource for FileNamespaces {
    fn cached(&self, namespace: &str) -> Option<Arc<Labels>> {
        self.namespaces.load().get(namespace).cloned()
    }

    fn fetch<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Fetched> {
        let reason = format!("namespace {namespace:?} is not in {}", self.path.display());
        Box::pin(std::future::ready(Fetched::Unknown(reason)))
    }

    fn synced(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        self.namespaces.load().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespaces::{Lookup, lookup};
    use rstest::rstest;

    fn parse(text: &str) -> Result<HashMap<String, Arc<Labels>>, String> {
        parse_namespaces(text, Path::new("ns.yaml")).map_err(|e| e.to_string())
    }

    fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn multi_document_yaml() {
        let got = parse(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels:\n    x: \"1\"\n---\n---\nkind: Namespace\nmetadata: {name: b}\n",
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["a"], labels(&[("x", "1")]));
        assert_eq!(got["b"], labels(&[]));
    }

    #[test]
    fn a_json_list() {
        let got = parse(r#"{"apiVersion":"v1","kind":"List","items":[{"kind":"Namespace","metadata":{"name":"a","labels":{"k":"v"}}}]}"#).unwrap();
        assert_eq!(got["a"], labels(&[("k", "v")]));
    }

    #[test]
    fn a_namespace_list_as_kubectl_prints_it() {
        let got = parse("kind: NamespaceList\nitems:\n- metadata: {name: a}\n").unwrap();
        assert_eq!(got["a"], labels(&[]));
    }

    #[rstest]
    #[case::other_kind(
        "kind: Pod\nmetadata: {name: a}",
        "ns.yaml: document 1: kind: expected Namespace or List, found \"Pod\""
    )]
    #[case::no_name(
        "kind: Namespace\nmetadata: {}",
        "ns.yaml: document 1: metadata.name: missing"
    )]
    #[case::number_label(
        "kind: Namespace\nmetadata: {name: a, labels: {x: 1}}",
        "ns.yaml: document 1: metadata.labels[x]: expected a string"
    )]
    #[case::duplicate(
        "kind: Namespace\nmetadata: {name: a}\n---\nkind: Namespace\nmetadata: {name: a}",
        "ns.yaml: document 2: metadata.name: \"a\" appears twice"
    )]
    #[case::item_kind(
        "kind: List\nitems: [{kind: Pod, metadata: {name: a}}]",
        "ns.yaml: document 1: items[0].kind: expected Namespace, found \"Pod\""
    )]
    #[case::scalar(
        "just text",
        "ns.yaml: document 1: expected a Namespace or a List of Namespaces"
    )]
    #[case::broken_second_document(
        "kind: Namespace\nmetadata: {name: a}\n---\nkind: [",
        "ns.yaml: document 2: not YAML or JSON: "
    )]
    fn bad_files_name_file_document_and_field(#[case] text: &str, #[case] want: &str) {
        let got = parse(text).unwrap_err();
        if want.ends_with(": ") {
            assert!(got.starts_with(want), "{got}");
        } else {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn an_alias_bomb_is_refused_within_the_file_limits() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let doc = format!(
            "kind: Namespace\nmetadata: {{name: a, labels: {{}}}}\nbomb:\n  {}",
            text.replace('\n', "\n  ")
        );
        let started = std::time::Instant::now();
        let err = parse(&doc).unwrap_err();
        assert!(
            err.starts_with("ns.yaml: document 1: not YAML or JSON: "),
            "{err}"
        );
        assert!(err.contains("limit"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_file_source_answers_from_memory_and_names_the_file_for_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns.yaml");
        std::fs::write(
            &path,
            "kind: Namespace\nmetadata: {name: team, labels: {a: b}}\n",
        )
        .unwrap();
        let (source, _) = FileNamespaces::load(&path).unwrap();
        assert!(source.synced());
        assert_eq!(source.len(), 1);
        assert_eq!(
            lookup(source.as_ref(), "team").await,
            Lookup::Cached(labels(&[("a", "b")]))
        );
        let missing = lookup(source.as_ref(), "other").await;
        assert_eq!(
            missing,
            Lookup::Unknown(format!("namespace \"other\" is not in {}", path.display()))
        );
        assert_eq!(missing.metric_label(), "unknown");
    }
}
