//! The layers' arrows, checked: the engine crate (crates/engine) reaches no command-line,
//! runtime, HTTP, Kubernetes-client or logging-subscriber crate, directly or through its
//! dependencies (read from Cargo.lock, which cargo keeps in step with the manifests).

use std::collections::{BTreeMap, BTreeSet};

const ENGINE: &str = "gke-wi-injector-engine";
const FORBIDDEN: &[&str] = &[
    "clap",
    "tokio",
    "axum",
    "hyper",
    "hyper-util",
    "kube",
    "kube-client",
    "tracing-subscriber",
    "rustls",
    "gke-wi-injector",
];

/// Package name to the names of its dependencies, from Cargo.lock.
fn lock_graph() -> BTreeMap<String, Vec<String>> {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let mut graph = BTreeMap::new();
    for package in lock.split("[[package]]").skip(1) {
        let name = package
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|n| n.strip_suffix('"'))
            .unwrap()
            .to_string();
        let deps = package
            .split_once("dependencies = [")
            .map(|(_, rest)| rest.split_once(']').unwrap().0)
            .unwrap_or("")
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"'))
            .map(|d| d.split([' ', '"']).next().unwrap().to_string())
            .collect();
        graph
            .entry(name)
            .or_insert_with(Vec::new)
            .extend::<Vec<_>>(deps);
    }
    graph
}

#[test]
fn the_engine_reaches_no_io_crate() {
    let graph = lock_graph();
    assert!(graph.contains_key(ENGINE), "{ENGINE} is not in Cargo.lock");
    let mut seen = BTreeSet::new();
    let mut todo = vec![ENGINE.to_string()];
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone()) {
            todo.extend(graph.get(&name).into_iter().flatten().cloned());
        }
    }
    let reached: Vec<_> = FORBIDDEN.iter().filter(|f| seen.contains(**f)).collect();
    assert!(reached.is_empty(), "the engine depends on {reached:?}");
    // The walk itself works: the engine does reach its JSON crate.
    assert!(seen.contains("serde_json"));
}

/// Every `crate::` path named in the files under `src/<dir>`.
fn crate_paths(dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(dir),
    ];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let module: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push((path.display().to_string(), module));
        }
    }
    out
}

/// The layers of the main crate, lowest first; a layer may use only the layers below it.
#[test]
fn the_layers_point_one_way() {
    let layers: [(&str, &[&str]); 5] = [
        ("admission", &["engine", "admission"]),
        ("namespaces", &["engine", "namespaces"]),
        ("doctor", &["engine", "doctor", "WAIT_FAILURE_MESSAGE"]),
        ("server", &["engine", "admission", "namespaces", "server"]),
        (
            "commands",
            &[
                "engine",
                "admission",
                "namespaces",
                "server",
                "doctor",
                "commands",
            ],
        ),
    ];
    for (layer, allowed) in layers {
        let paths = crate_paths(layer);
        assert!(!paths.is_empty(), "no crate:: path found under src/{layer}");
        for (file, module) in paths {
            // `fixtures` is the unit tests' shared test data (cfg(test) only).
            assert!(
                allowed.contains(&module.as_str()) || module == "fixtures",
                "{file} uses crate::{module}; {layer}/ may use only {allowed:?}"
            );
        }
    }
}
