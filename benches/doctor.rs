//! `doctor -A` against a real kube-apiserver (the end-to-end harness) holding many namespaces and
//! Pods: creates N opted-in namespaces with two Pods each, runs `gke-wi-injector doctor -A -o
//! json`, and prints its wall time and peak resident memory (read from `/proc` while it runs).
//!
//! `cargo bench --bench doctor` uses 10,000 namespaces and 20,000 Pods (`DOCTOR_NAMESPACES`
//! changes the count); under `cargo test` it checks 100 namespaces and asserts that every one is
//! in the report's scope, every Pod is found un-injected (one finding per namespace) and only `webhook-order` is skipped. No
//! webhook is registered, so the report's `webhook-registered` and `live-injection` errors are
//! expected.

mod common;
#[path = "../tests/e2e/support/control_plane.rs"]
mod control_plane;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn peak_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = if bench {
        std::env::var("DOCTOR_NAMESPACES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000)
    } else {
        100
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cp = runtime
        .block_on(control_plane::ControlPlane::start())
        .expect("control plane");

    let namespaces: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"doc-{i:05}","labels":{{"gke-wi-injector.dev/inject":"enabled"}}}}}}"#))
        .collect();
    let ns_time = common::create_in_lists(cp.dir(), "namespaces", &namespaces, |a| cp.kubectl(a));
    let pods: Vec<String> = (0..2 * n)
        .map(|i| format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"app-{i}","namespace":"doc-{:05}","labels":{{"app":"a"}}}},"spec":{{"containers":[{{"name":"app","image":"app:1"}}]}}}}"#, i / 2))
        .collect();
    let pod_time = common::create_in_lists(cp.dir(), "pods", &pods, |a| cp.kubectl(a));

    let started = Instant::now();
    let mut child = Command::new(common::server_binary())
        .args(["doctor", "-A", "-o", "json"])
        .arg(format!("--kubeconfig={}", cp.kubeconfig_admin().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_kb(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let out = reader.join().unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).expect("doctor's JSON");
    let scope = report["scope"].as_array().map_or(0, Vec::len);
    println!(
        "created {n} namespaces in {ns_time:.1?} and {} Pods in {pod_time:.1?}",
        2 * n
    );
    println!(
        "doctor -A: {elapsed:.2?}, peak RSS {:.1} MiB, {scope} namespaces in scope, {} findings",
        peak as f64 / 1024.0,
        report["findings"].as_array().map_or(0, Vec::len)
    );
    assert!(
        scope >= n,
        "scope holds {scope} namespaces, want at least {n}"
    );
    // Only webhook-order is skipped: there is no webhook configuration to order against.
    for check in report["checks"].as_array().unwrap() {
        let expected = if check["id"] == "webhook-order" {
            "skipped"
        } else {
            "ran"
        };
        assert_eq!(check["status"], expected, "{check:#}");
    }
    // Every Pod was created without the webhook: one missed-pods finding per namespace (its
    // Pods have no controller), naming both Pods.
    let missed: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "missed-pods")
        .collect();
    assert_eq!(missed.len(), n);
    let pods: usize = missed
        .iter()
        .map(|f| f["objects"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(pods, 2 * n);
}
