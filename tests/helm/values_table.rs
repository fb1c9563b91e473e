//! The README's values table, generated from the chart's values.schema.json (one row per value,
//! in the schema's order), and the schema's defaults checked against values.yaml.
//! `GKE_WI_UPDATE_README=1 cargo test --test helm_chart readme` rewrites the table.

use std::path::Path;

use serde_json::Value;

use crate::tools::{CHART, ROOT, docs};

pub const START: &str = "<!-- values table: generated from deploy/helm/gke-wi-injector/values.schema.json \
                         by tests/helm_chart.rs (GKE_WI_UPDATE_README=1 rewrites it) -->";
pub const END: &str = "<!-- end of values table -->";

fn schema() -> Value {
    let path = Path::new(ROOT).join(CHART).join("values.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A schema node that the table (and the defaults check) descends into: an object with named
/// properties. Free-form objects (resources, labels, ...) are one row.
fn is_structured(node: &Value) -> bool {
    node["type"] == "object" && node.get("properties").is_some()
}

/// `(path, schema node)` of every leaf value, in schema order.
fn leaves<'a>(prefix: &str, node: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    for (key, prop) in node["properties"].as_object().unwrap() {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if is_structured(prop) {
            leaves(&path, prop, out);
        } else {
            out.push((path, prop));
        }
    }
}

fn type_of(prop: &Value) -> String {
    let base = match prop.get("oneOf") {
        Some(alts) => alts
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["type"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" or "),
        None => prop["type"].as_str().unwrap().to_string(),
    };
    match prop.get("enum") {
        Some(values) => {
            let values: Vec<String> = values
                .as_array()
                .unwrap()
                .iter()
                .map(|v| format!("`{v}`"))
                .collect();
            format!("{base}: {}", values.join(", "))
        }
        None => base,
    }
}

/// The Markdown table, without the markers.
pub fn table() -> String {
    let schema = schema();
    let mut rows = Vec::new();
    leaves("", &schema, &mut rows);
    let mut out = String::from("| value | type | default | description |\n|---|---|---|---|\n");
    for (path, prop) in rows {
        let default = prop
            .get("default")
            .unwrap_or_else(|| panic!("{path} has no default in the schema"));
        let description = prop["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{path} has no description in the schema"));
        assert!(!description.contains('|'), "{path}: a | breaks the table");
        out.push_str(&format!(
            "| `{path}` | {} | `{default}` | {description} |\n",
            type_of(prop)
        ));
    }
    out
}

pub fn check_readme() {
    let path = Path::new(ROOT).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(START)
        .expect("README has the values table's start marker")
        + START.len();
    let end = readme
        .find(END)
        .expect("README has the values table's end marker");
    let want = format!("\n{}", table());
    if readme[start..end] != want && std::env::var_os("GKE_WI_UPDATE_README").is_some() {
        let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        readme[start..end] == want,
        "the README's values table differs from values.schema.json; run \
         GKE_WI_UPDATE_README=1 cargo test --test helm_chart readme. Expected:\n{want}"
    );
}

/// Every schema default is the value in values.yaml, and values.yaml has no key the schema lacks.
pub fn check_defaults() {
    let schema = schema();
    let text = std::fs::read_to_string(Path::new(ROOT).join(CHART).join("values.yaml")).unwrap();
    let values = docs(&text).remove(0);
    fn walk(path: &str, node: &Value, values: &Value) {
        let props = node["properties"].as_object().unwrap();
        let keys: Vec<&String> = values.as_object().unwrap().keys().collect();
        let want: Vec<&String> = props.keys().collect();
        assert_eq!(
            keys, want,
            "values.yaml keys under {path:?} (in schema order)"
        );
        for (key, prop) in props {
            let here = format!("{path}.{key}");
            if is_structured(prop) {
                walk(&here, prop, &values[key]);
            } else {
                assert_eq!(values[key], prop["default"], "default of {here}");
            }
        }
    }
    walk("", &schema, &values);
}
