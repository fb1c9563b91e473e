//! Server load benchmark: starts the real `gke-wi-injector serve` (release build, namespaces from
//! a file, generated development certificate) and drives `POST /mutate` from this process over
//! TLS with keep-alive, as kube-apiserver does (HTTP/1.1, one request in flight per connection).
//!
//! `cargo bench --bench load` prints, for fixed rates of 1,000 and 5,000 reviews/s and for
//! saturation: throughput, p50/p99/p99.9 latency and errors; then time-to-ready and the
//! server's peak RSS. `BENCH_SERVER_BIN=PATH` measures another build of the binary (the image's
//! static one). Last, the one-core mode: the server pinned to CPU 0 (`taskset`), this load
//! generator to CPU 1, saturation, and the server's own CPU time per review (from
//! `/proc/PID/stat`), with the request log line on and off (`RUST_LOG=warn`). Fixed rates are open-loop: latency counts from the moment a request was
//! due, so a stalled server is not hidden (no coordinated omission). Under `cargo test` it runs
//! a short smoke pass that asserts every review is answered.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

mod common;

const NAMESPACES: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n  labels:\n    gke-wi-injector.dev/inject: enabled\n    istio-injection: enabled\n";

struct Server {
    child: Child,
    addr: SocketAddr,
    ca_pem: String,
    ready_after: Duration,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    start_server_with(None, &[])
}

/// The server, optionally pinned to `cpu` with `taskset`, with extra environment variables.
fn start_server_with(cpu: Option<usize>, env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("namespaces.yaml");
    std::fs::write(&ns, NAMESPACES).unwrap();
    let ca = dir.path().join("ca.crt");
    let (port, admin_port) = (common::free_port(), common::free_port());
    let started = Instant::now();
    let mut command = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()])
                .arg(common::server_binary());
            c
        }
        None => Command::new(common::server_binary()),
    };
    let child = command
        .arg("serve")
        .args([
            "--namespaces",
            ns.to_str().unwrap(),
            "--dev-ca-out",
            ca.to_str().unwrap(),
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin_port}"),
        ])
        .env("KUBECONFIG", dir.path().join("none"))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let deadline = started + Duration::from_secs(10);
    while !readyz(admin) {
        assert!(Instant::now() < deadline, "server not ready within 10 s");
        std::thread::sleep(Duration::from_micros(500));
    }
    let ready_after = started.elapsed();
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    Server {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        ca_pem,
        ready_after,
        _dir: dir,
    }
}

fn readyz(admin: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&admin, Duration::from_millis(100)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

/// CPU time (user + system) the process has used so far, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(100);
    Some(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// Pins every thread of this process (the load generator) to `cpu`.
fn pin_self(cpu: usize) -> bool {
    Command::new("taskset")
        .args([
            "-a",
            "-cp",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Saturation against a server pinned to one core: (reviews/s, server CPU µs per review).
async fn one_core(body: &Bytes, env: &[(&str, &str)], secs: Duration) -> Option<(f64, f64, usize)> {
    let server = start_server_with(Some(0), env);
    let tls = tls_connector(&server.ca_pem);
    run(&server, &tls, body, 8, None, Duration::from_secs(1)).await;
    let before = cpu_time(server.child.id())?;
    let r = run(&server, &tls, body, 16, None, secs).await;
    let used = cpu_time(server.child.id())? - before;
    let rate = r.sent as f64 / r.elapsed.as_secs_f64();
    Some((rate, used.as_secs_f64() * 1e6 / r.sent as f64, r.errors))
}

/// Peak resident set of the server (kB), from `/proc`.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(server: &Server, tls: &TlsConnector) -> Sender {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends one review; true when the answer is a 200 AdmissionReview that allows the Pod.
async fn send(sender: &mut Sender, body: &Bytes) -> bool {
    let req = hyper::Request::post("/mutate?timeout=10s")
        .header("content-type", "application/json")
        .header("host", "localhost")
        .body(Full::new(body.clone()))
        .unwrap();
    let Ok(resp) = sender.send_request(req).await else {
        return false;
    };
    let ok = resp.status() == 200;
    let Ok(bytes) = resp.into_body().collect().await.map(|b| b.to_bytes()) else {
        return false;
    };
    ok && bytes.windows(14).any(|w| w == b"\"allowed\":true")
}

struct Run {
    sent: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<16} {:>9.0}/s {:>9.1?} {:>9.1?} {:>9.1?} {:>7}  ({} reviews)",
            self.sent as f64 / self.elapsed.as_secs_f64(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.percentile(0.999),
            self.errors,
            self.sent
        );
    }
}

/// `rate` reviews/s for `duration` (open loop), or as fast as `connections` allow when `rate` is None.
///
/// At a fixed rate a pacing thread releases each review at its due time (a plain thread sleep
/// is accurate to tens of microseconds; the async timer ticks in whole milliseconds and would
/// add its own lateness to every latency). Connections take due reviews from one queue, so a
/// review that waits for a free connection counts its wait.
async fn run(
    server: &Server,
    tls: &TlsConnector,
    body: &Bytes,
    connections: usize,
    rate: Option<f64>,
    duration: Duration,
) -> Run {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(server, tls).await);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + duration;
    let due = rate.map(|rate| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        std::thread::spawn(move || {
            for i in 0.. {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if due >= end {
                    break;
                }
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if tx.send(due).is_err() {
                    break;
                }
            }
        });
        Arc::new(tokio::sync::Mutex::new(rx))
    });
    let mut tasks = Vec::new();
    for mut sender in senders {
        let body = body.clone();
        let due = due.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            tokio::time::sleep_until(start.into()).await;
            loop {
                let due = match &due {
                    Some(queue) => match queue.lock().await.recv().await {
                        Some(due) => due,
                        None => break,
                    },
                    None if Instant::now() < end => Instant::now(),
                    None => break,
                };
                if !send(&mut sender, &body).await {
                    errors += 1;
                }
                lat.push(due.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut out = Run {
        sent: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        out.sent += lat.len();
        out.errors += errors;
        out.latencies.extend(lat);
    }
    out.elapsed = start.elapsed();
    out.latencies.sort_unstable();
    out
}

fn tls_connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let body = Bytes::from(common::review(common::pod(3, 8, 0)));

    let mut ready = Vec::new();
    for _ in 0..if bench { 5 } else { 1 } {
        ready.push(start_server().ready_after);
    }
    ready.sort();
    let server = start_server();
    let tls = tls_connector(&server.ca_pem);
    if bench {
        println!("server: {}", common::server_binary().display());
    }

    runtime.block_on(async {
        if !bench {
            let r = run(&server, &tls, &body, 4, Some(200.0), Duration::from_secs(1)).await;
            assert!(r.sent >= 150, "only {} reviews sent", r.sent);
            assert_eq!(r.errors, 0, "reviews failed under load");
            println!(
                "load smoke: {} reviews, 0 errors, p99 {:?}",
                r.sent,
                r.percentile(0.99)
            );
            return;
        }
        let secs = Duration::from_secs(
            std::env::var("LOAD_SECONDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(10),
        );
        // Warm the server's connection handling and allocator.
        run(&server, &tls, &body, 8, None, Duration::from_secs(1)).await;
        println!(
            "{:<16} {:>11} {:>9} {:>9} {:>9} {:>7}",
            "load", "throughput", "p50", "p99", "p99.9", "errors"
        );
        run(&server, &tls, &body, 16, Some(1000.0), secs)
            .await
            .print("1,000/s");
        run(&server, &tls, &body, 32, Some(5000.0), secs)
            .await
            .print("5,000/s");
        run(&server, &tls, &body, 32, None, secs)
            .await
            .print("saturation");
        if std::thread::available_parallelism().map_or(0, |n| n.get()) < 2 || !pin_self(1) {
            println!("one core: needs two CPUs and taskset; skipped");
            return;
        }
        for (name, env) in [
            ("log line on", &[][..]),
            ("log line off (RUST_LOG=warn)", &[("RUST_LOG", "warn")][..]),
        ] {
            match one_core(&body, env, secs).await {
                Some((rate, us, errors)) => println!(
                    "one core, saturation, {name:<28} {rate:>8.0}/s  {us:>6.1} µs server CPU per review  {errors} errors"
                ),
                None => println!("one core, {name}: no /proc; skipped"),
            }
        }
    });
    if bench {
        println!(
            "time to ready: median {:?}, max {:?} (of {})",
            ready[ready.len() / 2],
            ready[ready.len() - 1],
            ready.len()
        );
        match peak_rss_kb(server.child.id()) {
            Some(kb) => println!("server peak RSS: {:.1} MiB", kb as f64 / 1024.0),
            None => println!("server peak RSS: unavailable (no /proc)"),
        }
    }
}
