use super::*;
use serde_json::json;

#[test]
fn keeps_what_the_engine_reads_and_nothing_else() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"a": "b"}, "managedFields": [{"x": 1}], "labels": {"l": "v"}},
        "spec": {
            "containers": [{"name": "c", "image": "i", "env": [{"name": "E", "value": "v"}, {"name": "GCE_METADATA_HOST", "value": "x", "valueFrom": {}}, {"value": 1}], "ports": [{"containerPort": 80}]}],
            "initContainers": [{"name": "i", "restartPolicy": "Always"}],
            "hostNetwork": false, "nodeSelector": {"kubernetes.io/os": "linux"}, "volumes": [{"name": "v"}]
        },
        "status": {"phase": "Pending"}
    });
    let got = parse(&pod.to_string()).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {"a": "b"}},
            "spec": {
                "containers": [{"name": "c", "env": [{"name": "GCE_METADATA_HOST", "value": "x"}, {"value": 1}]}],
                "initContainers": [{"name": "i"}],
                "hostNetwork": false, "nodeSelector": {"kubernetes.io/os": "linux"}
            }
        })
    );
}

#[test]
fn unexpected_types_are_kept_whole() {
    let pod = json!({"spec": {"containers": {"a": [1, 2]}, "initContainers": ["x", 3, null, 1.5]}, "metadata": [1]});
    assert_eq!(parse(&pod.to_string()).unwrap(), pod);
}

#[test]
fn the_request_object_is_read_when_asked() {
    let view: PodView =
        serde_json::from_str(r#"{"kind": "Pod", "status": {"phase": "Pending"}}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&view).unwrap(),
        r#"{"kind": "Pod", "status": {"phase": "Pending"}}"#
    );
    assert_eq!(view.read().unwrap(), json!({"kind": "Pod"}));
    assert!(serde_json::from_str::<PodView>(r#"{"kind": "Pod""#).is_err());
}

#[test]
fn trailing_garbage_is_an_error() {
    assert!(parse("{} x").is_err());
    assert!(parse("{\"spec\": ").is_err());
}

/// The streaming view and the engine's declared read set agree, on every Pod and Pod
/// template of the `inject` fixtures: what the engine reads (checked in `engine::reads`) is
/// what the server parses.
#[test]
fn the_view_is_the_engine_read_set() {
    use crate::engine::{reads, yaml};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/inject");
    let mut pods = Vec::new();
    let mut todo = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".in.yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            todo.extend(yaml::documents(&text, &yaml::FILE_LIMITS).unwrap());
        }
    }
    while let Some(v) = todo.pop() {
        match v {
            Value::Object(map) => {
                let spec = map.get("spec").and_then(|s| s.get("containers"));
                if spec.is_some_and(Value::is_array) {
                    pods.push(Value::Object(map.clone()));
                }
                todo.extend(map.into_iter().map(|(_, v)| v));
            }
            Value::Array(items) => todo.extend(items),
            _ => {}
        }
    }
    assert!(pods.len() >= 20, "found {} fixture Pods", pods.len());
    for pod in pods {
        assert_eq!(
            parse(&pod.to_string()).unwrap(),
            reads::prune(&pod, &POD),
            "{pod}"
        );
    }
}
