//! Properties that hold for every Pod: the patch applies (RFC 6902, strict); a second pass is
//! empty; fields unknown to k8s-openapi survive byte-for-byte; the result decodes as a
//! `k8s_openapi` Pod; containers we leave alone keep their order and content.

use gke_wi_injector::engine::mutate::plan;
use gke_wi_injector::engine::policy::{Config, Labels};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const P: &str = "gke-wi-injector.dev";

fn env_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[A-Z_]{1,8}".prop_map(|n| json!({"name": n, "value": "v"})),
        Just(json!({"name": "GCE_METADATA_HOST", "value": "169.254.169.254"})),
        Just(json!({"name": "GCE_METADATA_HOST", "value": "10.1.2.3"})),
        Just(json!({"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})),
    ]
}

/// A container with a unique name, maybe env (absent, null, empty, entries), maybe an unknown field.
fn container() -> impl Strategy<Value = (Option<Value>, Option<Value>, bool)> {
    let env = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        prop::collection::vec(env_entry(), 0..4).prop_map(|v| Some(Value::Array(v))),
    ];
    let unknown = prop::option::of(prop_oneof![
        Just(json!({"nested": {"deep": [1, 2.5, "x", null]}})),
        Just(json!("Always")),
        Just(json!([{"resourceName": "cpu", "restartPolicy": "NotRequired"}])),
    ]);
    (env, unknown, any::<bool>())
}

fn build_container(
    name: String,
    (env, unknown, sidecar): (Option<Value>, Option<Value>, bool),
    init: bool,
) -> Value {
    let mut c = json!({"name": name, "image": format!("{name}:1")});
    if let Some(env) = env {
        c["env"] = env;
    }
    if let Some(u) = unknown {
        c["futureField~/x"] = u;
    }
    if init && sidecar {
        c["restartPolicy"] = json!("Always");
    }
    c
}

fn annotations() -> impl Strategy<Value = Option<Value>> {
    let entry = prop_oneof![
        ("[a-z]{1,6}(/[a-z~]{1,6})?", "[ -~]{0,12}").prop_map(|(k, v)| (k, v)),
        Just((
            "proxy.istio.io/config".to_string(),
            "concurrency: 2\n".to_string()
        )),
        Just((
            "proxy.istio.io/config".to_string(),
            r#"{"holdApplicationUntilProxyStarts":false}"#.to_string()
        )),
        Just(("proxy.istio.io/config".to_string(), "{not yaml".to_string())),
        Just((
            "traffic.sidecar.istio.io/excludeOutboundIPRanges".to_string(),
            "10.0.0.0/8".to_string()
        )),
        Just((
            "traffic.sidecar.istio.io/excludeOutboundIPRanges".to_string(),
            "*".to_string()
        )),
        Just((format!("{P}/metadata-wait"), "disabled".to_string())),
        Just((format!("{P}/istio"), "enabled".to_string())),
        Just((format!("{P}/injected"), "stale".to_string())),
    ];
    prop::option::of(prop::collection::vec(entry, 0..5).prop_map(|entries| {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect::<Map<_, _>>(),
        )
    }))
}

prop_compose! {
    fn pod()(
        containers in prop::collection::vec(container(), 1..5),
        inits in prop::option::of(prop::collection::vec(container(), 0..4)),
        wait_exists in any::<bool>(),
        annotations in annotations(),
        windows in any::<bool>(),
        unknown_spec in prop::option::of(Just(json!({"kept": [1, {"a": "b"}]}))),
    ) -> Value {
        let containers: Vec<Value> = containers.into_iter().enumerate()
            .map(|(i, c)| build_container(format!("c{i}"), c, false)).collect();
        let mut spec = json!({"containers": containers});
        if let Some(inits) = inits {
            let mut list: Vec<Value> = inits.into_iter().enumerate()
                .map(|(i, c)| build_container(format!("i{i}"), c, true)).collect();
            if wait_exists {
                list.push(json!({"name": "gke-metadata-wait", "image": "custom"}));
            }
            spec["initContainers"] = Value::Array(list);
        }
        if windows {
            spec["nodeSelector"] = json!({"kubernetes.io/os": "windows"});
        }
        if let Some(u) = unknown_spec {
            spec["futurePodField"] = u;
        }
        let mut metadata = json!({"name": "p", "namespace": "team", "futureMeta": 7});
        if let Some(a) = annotations {
            metadata["annotations"] = a;
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
    }
}

fn labels() -> impl Strategy<Value = Labels> {
    let value = prop_oneof![
        Just("enabled"),
        Just("disabled"),
        Just("auto"),
        Just("bogus")
    ];
    (value.clone(), value.clone(), value, any::<bool>()).prop_map(|(w, h, i, istio_ns)| {
        let mut l: Labels = [(format!("{P}/inject"), "enabled".to_string())].into();
        l.insert(format!("{P}/metadata-wait"), w.to_string());
        l.insert(format!("{P}/metadata-host"), h.to_string());
        l.insert(format!("{P}/istio"), i.to_string());
        if istio_ns {
            l.insert("istio-injection".into(), "enabled".into());
        }
        l
    })
}

/// Every value reachable in `before` through keys unknown to the Pod schema is unchanged in `after`.
fn unknown_fields_kept(before: &Value, after: &Value) {
    assert_eq!(
        before["metadata"]["futureMeta"],
        after["metadata"]["futureMeta"]
    );
    assert_eq!(
        before["spec"].get("futurePodField"),
        after["spec"].get("futurePodField")
    );
    for list in ["containers", "initContainers"] {
        let Some(items) = before["spec"].get(list).and_then(Value::as_array) else {
            continue;
        };
        for item in items {
            let name = &item["name"];
            let out = after["spec"][list]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| &c["name"] == name)
                .unwrap();
            assert_eq!(item.get("futureField~/x"), out.get("futureField~/x"));
            assert_eq!(item.get("restartPolicy"), out.get("restartPolicy"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_pod(input in pod(), labels in labels()) {
        let cfg = Config::default();
        let first = plan(&cfg, "team", &labels, &input).unwrap();
        let mut out = input.clone();
        json_patch::patch(&mut out, &first.ops).expect("the patch applies");

        let second = plan(&cfg, "team", &labels, &out).unwrap();
        prop_assert!(second.ops.is_empty(), "second pass: {:?}", second.ops);

        unknown_fields_kept(&input, &out);
        let typed: k8s_openapi::api::core::v1::Pod = serde_json::from_value(out.clone()).expect("decodes as a Pod");
        prop_assert_eq!(typed.spec.unwrap().containers.len(), input["spec"]["containers"].as_array().unwrap().len());

        // Containers that already had the variable (or when the feature is off) are untouched,
        // and the order of all containers is the same.
        for list in ["containers", "initContainers"] {
            let before: Vec<&Value> = input["spec"].get(list).and_then(Value::as_array).into_iter().flatten().collect();
            let after: Vec<&Value> = out["spec"].get(list).and_then(Value::as_array).into_iter().flatten()
                .filter(|c| !(list == "initContainers" && c["name"] == "gke-metadata-wait" && !before.iter().any(|b| b["name"] == "gke-metadata-wait")))
                .collect();
            prop_assert_eq!(before.len(), after.len());
            for (b, a) in before.iter().zip(&after) {
                prop_assert_eq!(&b["name"], &a["name"]);
                let had = b.get("env").and_then(Value::as_array).is_some_and(|e| e.iter().any(|x| x["name"] == "GCE_METADATA_HOST"));
                if had || !first.features().host {
                    prop_assert_eq!(b, a);
                }
            }
        }
        // Our wait container, when added, is first.
        if first.features().wait && !input["spec"].get("initContainers").and_then(Value::as_array).is_some_and(|l| l.iter().any(|c| c["name"] == "gke-metadata-wait")) {
            prop_assert_eq!(&out["spec"]["initContainers"][0]["name"], "gke-metadata-wait");
        }
        prop_assert!(first.warnings.len() <= 5);
        prop_assert!(first.warnings.as_slice().iter().all(|w| w.chars().count() <= 120));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The server plans on the parts of the Pod the engine reads; the plan is the same as on
    /// the whole Pod.
    #[test]
    fn plan_on_the_pod_view_equals_plan_on_the_whole_pod(mut input in pod(), labels in labels()) {
        input["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
        input["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
        let cfg = Config::default();
        let view = gke_wi_injector::admission::pod_view::parse(&input.to_string()).unwrap();
        prop_assert!(view["spec"].get("volumes").is_none());
        let whole = plan(&cfg, "team", &labels, &input).unwrap();
        let pruned = plan(&cfg, "team", &labels, &view).unwrap();
        prop_assert_eq!(whole, pruned);
    }
}
