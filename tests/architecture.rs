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
