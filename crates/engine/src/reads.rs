//! What the engine reads of a Pod, declared once. `policy::decide` and `mutate::plan` read only
//! the fields in [`POD`]; the server parses only these from the request bytes (its Pod view in
//! `admission::pod_view` is driven by this table), so a Pod's other fields are never built. A
//! test here plans real-shaped Pods whole and pruned to [`POD`] and requires the same plan: a
//! field the engine starts to read without declaring it here fails it.

use serde_json::{Map, Value};

use crate::mutate::METADATA_HOST_ENV;

/// Which parts of a value to keep.
pub enum Keep {
    /// The whole value.
    All,
    /// Only these keys of an object.
    Fields(&'static [(&'static str, Keep)]),
    /// Every item of a list, each filtered.
    Items(&'static Keep),
    /// A container's `env`: only the entries named `GCE_METADATA_HOST`, and entries without a
    /// string name (so the engine still reports them), each with only its `name` and `value`.
    /// The engine appends with `/-` and never addresses an entry by index, so the other entries
    /// need not be kept.
    Env,
}

const CONTAINER: Keep = Keep::Fields(&[("name", Keep::All), ("env", Keep::Env)]);

/// What `policy::decide` and `mutate::plan` read of a Pod.
pub const POD: Keep = Keep::Fields(&[
    ("apiVersion", Keep::All),
    ("kind", Keep::All),
    (
        "metadata",
        Keep::Fields(&[
            ("name", Keep::All),
            ("generateName", Keep::All),
            ("namespace", Keep::All),
            ("annotations", Keep::All),
        ]),
    ),
    (
        "spec",
        Keep::Fields(&[
            ("hostNetwork", Keep::All),
            ("os", Keep::All),
            ("nodeSelector", Keep::All),
            ("containers", Keep::Items(&CONTAINER)),
            ("initContainers", Keep::Items(&CONTAINER)),
        ]),
    ),
]);

/// `value` with only what `keep` names, by the rules the server's streaming Pod view follows: a
/// value of an unexpected type (a list where an object is expected, say) is kept whole, so the
/// engine reports it as it would on the whole Pod.
pub fn prune(value: &Value, keep: &Keep) -> Value {
    match (keep, value) {
        (Keep::Fields(fields), Value::Object(map)) => Value::Object(
            map.iter()
                .filter_map(|(k, v)| {
                    let (_, keep) = fields.iter().find(|(name, _)| name == k)?;
                    Some((k.clone(), prune(v, keep)))
                })
                .collect(),
        ),
        (Keep::Items(keep), Value::Array(items)) => {
            Value::Array(items.iter().map(|item| prune(item, keep)).collect())
        }
        (Keep::Env, Value::Array(entries)) => Value::Array(
            entries
                .iter()
                .filter_map(|entry| match entry {
                    Value::Object(e) => {
                        let wanted = match e.get("name") {
                            Some(Value::String(n)) => n == METADATA_HOST_ENV,
                            _ => true,
                        };
                        let kept: Map<String, Value> = e
                            .iter()
                            .filter(|(k, _)| *k == "name" || *k == "value")
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        wanted.then_some(Value::Object(kept))
                    }
                    other => Some(other.clone()),
                })
                .collect(),
        ),
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::plan;
    use crate::policy::{Config, Labels, WaitMode};
    use crate::yaml;

    /// Every Pod and Pod template in the repository's `inject` fixtures (real-shaped objects:
    /// Deployments, CronJobs, Istio, host network, Windows, already injected...).
    fn fixture_pods() -> Vec<(String, Value)> {
        fn collect(name: &str, v: &Value, out: &mut Vec<(String, Value)>) {
            match v {
                Value::Object(map) => {
                    if map
                        .get("spec")
                        .and_then(|s| s.get("containers"))
                        .is_some_and(Value::is_array)
                    {
                        out.push((name.to_string(), v.clone()));
                    }
                    map.values().for_each(|v| collect(name, v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| collect(name, v, out)),
                _ => {}
            }
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/inject");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".in.yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in yaml::documents(&text, &yaml::FILE_LIMITS).unwrap() {
                collect(&name, &doc, &mut out);
            }
        }
        assert!(out.len() >= 20, "found {} fixture Pods", out.len());
        out
    }

    #[test]
    fn the_engine_reads_only_what_pod_declares() {
        let labels: Labels = [
            ("gke-wi-injector.dev/inject".into(), "enabled".into()),
            ("istio-injection".into(), "enabled".into()),
        ]
        .into();
        let curl = Config {
            wait_mode: WaitMode::Curl,
            wait_image_windows: Some("wait:windows".into()),
            ..Config::default()
        };
        for cfg in [Config::default(), curl] {
            for (name, pod) in fixture_pods() {
                let pruned = prune(&pod, &POD);
                assert_eq!(
                    plan(&cfg, "team", &labels, &pod),
                    plan(&cfg, "team", &labels, &pruned),
                    "{name}: the engine reads a field POD does not declare"
                );
            }
        }
    }

    #[test]
    fn prune_keeps_the_declared_fields_and_unexpected_types_whole() {
        let pod = serde_json::json!({
            "kind": "Pod", "status": {},
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {
                "containers": [{"name": "c", "image": "i", "env": [
                    {"name": "A", "value": "x"},
                    {"name": "GCE_METADATA_HOST", "value": "h", "valueFrom": {}},
                    {"value": 1}, "odd"
                ]}],
                "initContainers": {"not": "a list"},
                "volumes": []
            }
        });
        assert_eq!(
            prune(&pod, &POD),
            serde_json::json!({
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {
                    "containers": [{"name": "c", "env": [
                        {"name": "GCE_METADATA_HOST", "value": "h"}, {"value": 1}, "odd"
                    ]}],
                    "initContainers": {"not": "a list"}
                }
            })
        );
    }
}
