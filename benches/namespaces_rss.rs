//! Memory of the server with many namespaces in its cache, against a real kube-apiserver (the
//! end-to-end harness): creates N labelled namespaces, starts `gke-wi-injector serve` with a
//! kubeconfig, waits until its namespace cache has synced all of them, and prints the time to
//! ready and the server's resident memory.
//!
//! `cargo bench --bench namespaces_rss` uses 10,000 namespaces (`RSS_NAMESPACES` changes it);
//! under `cargo test` it checks 200 and asserts the cache holds every one. `BENCH_SERVER_BIN=PATH`
//! measures another build of the binary (the image's static one).

mod common;
#[path = "../tests/e2e/support/control_plane.rs"]
mod control_plane;

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = if bench {
        std::env::var("RSS_NAMESPACES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000)
    } else {
        200
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cp = runtime
        .block_on(control_plane::ControlPlane::start())
        .expect("control plane");

    // Create the namespaces in 4 parallel batches (one List each).
    let items: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"load-{i:05}","labels":{{"gke-wi-injector.dev/inject":"enabled","team":"t{}"}}}}}}"#, i % 50))
        .collect();
    let create_time = common::create_in_lists(cp.dir(), "namespaces", &items, |a| cp.kubectl(a));

    let admin = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut server = Command::new(common::server_binary())
        .arg("serve")
        .args([
            "--listen",
            &format!("127.0.0.1:{}", common::free_port()),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .args(["--dev-ca-out", dir.path().join("ca.crt").to_str().unwrap()])
        .env("KUBECONFIG", cp.kubeconfig_admin())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = started + Duration::from_secs(120);
    let want = n as f64;
    let (ready_after, size) = loop {
        assert!(Instant::now() < deadline, "cache not synced within 120 s");
        let ready = http_get(admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"));
        let size = http_get(admin, "/metrics")
            .and_then(|m| metric(&m, "gke_wi_injector_namespace_cache_size"));
        if ready && size.is_some_and(|s| s >= want) {
            break (started.elapsed(), size.unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let the allocator settle after the initial list, then read resident memory.
    std::thread::sleep(Duration::from_secs(1));
    let (rss, hwm) = (
        status_kb(server.id(), "VmRSS:"),
        status_kb(server.id(), "VmHWM:"),
    );
    let _ = server.kill();
    let _ = server.wait();

    // The cache holds the N namespaces plus the API server's own (default, kube-system, ...).
    assert!(
        size >= want && size < want + 10.0,
        "cache size {size} for {n} namespaces"
    );
    assert!(rss > 0, "no /proc data");
    println!("namespaces created: {n} in {create_time:.1?}");
    println!("ready with all {n} cached after {ready_after:.1?} (cache size {size})");
    println!(
        "server RSS: {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}
