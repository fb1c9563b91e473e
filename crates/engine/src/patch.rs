//! Targeted RFC 6902 operations against the request's raw JSON (SPEC §5). Pointers are built
//! from tokens (so `/` and `~` in annotation keys are escaped), and every `add` under a parent
//! that may be missing creates the parent first, as the API server's patcher (RFC 6902, strict)
//! requires.

use json_patch::jsonptr::{Pointer, PointerBuf, Token};
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use serde_json::{Map, Value};

/// Sets `entries` as keys of the object at `parent` (tokens from the root of `doc`). When the
/// object, or any object above it, is missing or null, one `add` creates it with all entries;
/// otherwise each key gets an `add` (new) or a `replace` (present).
pub fn set_keys(
    doc: &Value,
    parent: &[Token<'_>],
    entries: Vec<(String, Value)>,
    ops: &mut Vec<PatchOperation>,
) {
    if entries.is_empty() || (parent.is_empty() && !doc.is_object()) {
        return;
    }
    let mut node = doc;
    let mut depth = 0;
    for token in parent {
        let next = match node {
            Value::Object(map) => map.get(token.decoded().as_ref()),
            Value::Array(items) => token
                .decoded()
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(next @ (Value::Object(_) | Value::Array(_))) => {
                node = next;
                depth += 1;
            }
            _ => break,
        }
    }
    if depth == parent.len() && node.is_object() {
        for (key, value) in entries {
            let path = child(parent, &key);
            ops.push(if node.get(&key).is_some() {
                PatchOperation::Replace(ReplaceOperation { path, value })
            } else {
                PatchOperation::Add(AddOperation { path, value })
            });
        }
        return;
    }
    // `node` is an object or an array element holding no object at parent[depth]: the first
    // missing level is created there (an array is never replaced, its elements are addressed).
    let depth = depth.min(parent.len() - 1);
    let mut nested = Value::Object(entries.into_iter().collect::<Map<_, _>>());
    for token in parent[depth + 1..].iter().rev() {
        nested = Value::Object(Map::from_iter([(token.decoded().into_owned(), nested)]));
    }
    let path = PointerBuf::from_tokens(parent[..=depth].iter().cloned());
    ops.push(PatchOperation::Add(AddOperation {
        path,
        value: nested,
    }));
}

/// Appends `value` to the array at `array` whose current value is `current`; a missing or null
/// array is created holding `value`. The object holding the array must exist.
pub fn append(
    array: &[Token<'_>],
    current: Option<&Value>,
    value: Value,
    ops: &mut Vec<PatchOperation>,
) {
    insert(array, current, "-", value, ops)
}

/// Inserts `value` as the first entry of the array at `array` (current value `current`),
/// creating the array if missing. The object holding the array must exist.
pub fn prepend(
    array: &[Token<'_>],
    current: Option<&Value>,
    value: Value,
    ops: &mut Vec<PatchOperation>,
) {
    insert(array, current, "0", value, ops)
}

fn insert(
    array: &[Token<'_>],
    current: Option<&Value>,
    position: &str,
    value: Value,
    ops: &mut Vec<PatchOperation>,
) {
    let mut path = PointerBuf::from_tokens(array.iter().cloned());
    let value = if current.is_some_and(Value::is_array) {
        path.push_back(position);
        value
    } else {
        Value::Array(vec![value])
    };
    ops.push(PatchOperation::Add(AddOperation { path, value }));
}

fn child(parent: &[Token<'_>], key: &str) -> PointerBuf {
    let mut p = PointerBuf::from_tokens(parent.iter().cloned());
    p.push_back(key);
    p
}

/// Prefixes every operation's path with `base` (the Pod template inside a workload).
pub fn rebase(ops: Vec<PatchOperation>, base: &Pointer) -> Vec<PatchOperation> {
    if base.is_root() {
        return ops;
    }
    ops.into_iter()
        .map(|op| match op {
            PatchOperation::Add(AddOperation { path, value }) => {
                PatchOperation::Add(AddOperation {
                    path: base.concat(&path),
                    value,
                })
            }
            PatchOperation::Replace(ReplaceOperation { path, value }) => {
                PatchOperation::Replace(ReplaceOperation {
                    path: base.concat(&path),
                    value,
                })
            }
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(mut doc: Value, ops: &[PatchOperation]) -> Value {
        json_patch::patch(&mut doc, ops).expect("patch applies");
        doc
    }

    fn t(s: &'static str) -> Token<'static> {
        Token::new(s)
    }

    #[test]
    fn set_keys_creates_missing_annotations_with_all_entries() {
        let doc = json!({"metadata": {"name": "p"}});
        let mut ops = vec![];
        set_keys(
            &doc,
            &[t("metadata"), t("annotations")],
            vec![("a/b".into(), json!("1")), ("c".into(), json!("2"))],
            &mut ops,
        );
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].path().as_str(), "/metadata/annotations");
        assert_eq!(
            apply(doc, &ops)["metadata"]["annotations"],
            json!({"a/b": "1", "c": "2"})
        );
    }

    #[test]
    fn set_keys_creates_missing_metadata_too() {
        let doc = json!({"spec": {}});
        let mut ops = vec![];
        set_keys(
            &doc,
            &[t("metadata"), t("annotations")],
            vec![("k".into(), json!("v"))],
            &mut ops,
        );
        assert_eq!(ops[0].path().as_str(), "/metadata");
        assert_eq!(
            apply(doc, &ops),
            json!({"spec": {}, "metadata": {"annotations": {"k": "v"}}})
        );
    }

    #[test]
    fn set_keys_escapes_slash_and_tilde() {
        let doc = json!({"metadata": {"annotations": {"x~y/z": "old"}}});
        let mut ops = vec![];
        set_keys(
            &doc,
            &[t("metadata"), t("annotations")],
            vec![("x~y/z".into(), json!("new")), ("a/b".into(), json!("n"))],
            &mut ops,
        );
        assert_eq!(ops[0].path().as_str(), "/metadata/annotations/x~0y~1z");
        assert!(matches!(ops[0], PatchOperation::Replace(_)));
        assert_eq!(ops[1].path().as_str(), "/metadata/annotations/a~1b");
        assert!(matches!(ops[1], PatchOperation::Add(_)));
        assert_eq!(
            apply(doc, &ops)["metadata"]["annotations"],
            json!({"x~y/z": "new", "a/b": "n"})
        );
    }

    #[test]
    fn null_parent_is_replaced_by_an_object() {
        let doc = json!({"metadata": {"annotations": null}});
        let mut ops = vec![];
        set_keys(
            &doc,
            &[t("metadata"), t("annotations")],
            vec![("k".into(), json!("v"))],
            &mut ops,
        );
        assert_eq!(
            apply(doc, &ops)["metadata"]["annotations"],
            json!({"k": "v"})
        );
    }

    #[test]
    fn append_to_existing_and_missing_arrays() {
        let doc = json!({"c": [{"env": [{"name": "A"}]}, {"name": "x"}, {"env": null}]});
        let mut ops = vec![];
        for (i, c) in doc["c"].as_array().unwrap().iter().enumerate() {
            append(
                &[t("c"), Token::from(i), t("env")],
                c.get("env"),
                json!({"name": "B"}),
                &mut ops,
            );
        }
        assert_eq!(ops[0].path().as_str(), "/c/0/env/-");
        assert_eq!(ops[1].path().as_str(), "/c/1/env");
        let out = apply(doc, &ops);
        assert_eq!(out["c"][0]["env"], json!([{"name": "A"}, {"name": "B"}]));
        assert_eq!(out["c"][1]["env"], json!([{"name": "B"}]));
        assert_eq!(out["c"][2]["env"], json!([{"name": "B"}]));
    }

    #[test]
    fn prepend_inserts_first_or_creates() {
        let with = json!({"spec": {"initContainers": [{"name": "a"}]}});
        let mut ops = vec![];
        let current = with["spec"].get("initContainers");
        prepend(
            &[t("spec"), t("initContainers")],
            current,
            json!({"name": "w"}),
            &mut ops,
        );
        assert_eq!(
            apply(with.clone(), &ops)["spec"]["initContainers"],
            json!([{"name": "w"}, {"name": "a"}])
        );

        let without = json!({"spec": {"containers": []}});
        let mut ops = vec![];
        prepend(
            &[t("spec"), t("initContainers")],
            without["spec"].get("initContainers"),
            json!({"name": "w"}),
            &mut ops,
        );
        assert_eq!(ops[0].path().as_str(), "/spec/initContainers");
        assert_eq!(
            apply(without, &ops)["spec"]["initContainers"],
            json!([{"name": "w"}])
        );
    }

    #[test]
    fn rebase_prefixes_paths() {
        let ops = vec![PatchOperation::Add(AddOperation {
            path: PointerBuf::parse("/spec/x").unwrap(),
            value: json!(1),
        })];
        let base = PointerBuf::parse("/spec/template").unwrap();
        assert_eq!(
            rebase(ops, &base)[0].path().as_str(),
            "/spec/template/spec/x"
        );
    }
}
