//! The `serve` binary's life cycle and logs: signals (SIGHUP, a second signal during the drain),
//! the development CA file when a second server cannot bind, and what a hostile request can put
//! into a log line.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::client::{admin_get, apiserver_like, post_review};
use support::{pod, pod_review};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const BIN: &str = env!("CARGO_BIN_EXE_gke-wi-injector");
const EXAMPLE_NAMESPACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/namespaces.yaml");

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A `serve` process with the development certificate; its log goes to a file.
struct Serve {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    ca_path: PathBuf,
    log_path: PathBuf,
}

impl Serve {
    fn spawn(dir: &Path, name: &str, addr: SocketAddr, admin: SocketAddr, extra: &[&str]) -> Serve {
        let log_path = dir.join(format!("{name}.log"));
        let log = Stdio::from(std::fs::File::create(&log_path).unwrap());
        Serve::spawn_logging_to(dir, log_path, log, addr, admin, extra)
    }

    fn spawn_logging_to(
        dir: &Path,
        log_path: PathBuf,
        log: Stdio,
        addr: SocketAddr,
        admin: SocketAddr,
        extra: &[&str],
    ) -> Serve {
        let ca_path = dir.join("dev-ca.crt");
        let child = Command::new(BIN)
            .args(["serve", "--namespaces", EXAMPLE_NAMESPACES])
            .arg(format!("--listen={addr}"))
            .arg(format!("--admin-listen={admin}"))
            .arg(format!("--dev-ca-out={}", ca_path.display()))
            .args(extra)
            .env("KUBECONFIG", dir.join("none"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Serve {
            child,
            addr,
            admin,
            ca_path,
            log_path,
        }
    }

    async fn start(dir: &Path, extra: &[&str]) -> Serve {
        Serve::spawn(dir, "serve", free_addr(), free_addr(), extra)
            .ready()
            .await
    }

    async fn ready(mut self) -> Serve {
        let serve = &mut self;
        let deadline = Instant::now() + Duration::from_secs(20);
        while admin_get(serve.admin, "/readyz").await.map(|r| r.0) != Ok(200) {
            assert!(Instant::now() < deadline, "not ready in time");
            assert!(serve.child.try_wait().unwrap().is_none(), "exited early");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self
    }

    fn ca(&self) -> String {
        std::fs::read_to_string(&self.ca_path).unwrap()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request whose body never finishes arriving: it keeps the drain waiting.
async fn stuck_request(serve: &Serve) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(serve.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(apiserver_like(&serve.ca()))
        .connect(name, tcp)
        .await
        .unwrap();
    let head = "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

#[tokio::test]
async fn sighup_drains_like_sigint_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(tmp.path(), &["--shutdown-grace=20s"]).await;
    let mut stuck = stuck_request(&serve).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    serve.signal("HUP");
    // Not killed: the drain waits for the request in flight ...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(serve.child.try_wait().unwrap().is_none(), "{}", serve.log());
    // ... which is answered once its body has arrived; then the process exits 0.
    stuck.write_all(&[b' '; 999]).await.unwrap();
    stuck.flush().await.unwrap();
    let status = serve.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", serve.log());
    let log = serve.log();
    assert!(log.contains(r#""signal":"SIGHUP""#), "{log}");
    assert!(log.contains("drained"), "{log}");
}

#[tokio::test]
async fn a_second_signal_ends_the_drain_at_once_with_status_1() {
    let tmp = tempfile::tempdir().unwrap();
    let mut serve =
        Serve::start(tmp.path(), &["--shutdown-delay=0s", "--shutdown-grace=60s"]).await;
    let _stuck = stuck_request(&serve).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    serve.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "the first signal drains"
    );
    let started = Instant::now();
    serve.signal("INT");
    let status = serve.exit_within(Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{}", serve.log());
    let log = serve.log();
    assert!(
        log.contains("second signal: exiting without finishing the drain"),
        "{log}"
    );
    assert!(
        log.trim_end().ends_with(
            "error: stopped by a second signal (SIGINT) before in-flight requests finished"
        ),
        "{log}"
    );
}

#[tokio::test]
async fn a_second_server_that_cannot_bind_leaves_the_first_ones_ca_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Serve::start(tmp.path(), &[]).await;
    let ca = first.ca();
    // Same ports, same --dev-ca-out: it cannot bind and must not touch the CA file.
    let mut second = Serve::spawn(tmp.path(), "second", first.addr, first.admin, &[]);
    let status = second.exit_within(Duration::from_secs(20)).await;
    assert!(!status.success());
    assert!(
        second.log().contains("cannot listen on --listen"),
        "{}",
        second.log()
    );
    assert_eq!(first.ca(), ca, "the first server's CA is still the file's");
    let reply = post_review(
        first.addr,
        "localhost",
        apiserver_like(&first.ca()),
        &pod_review("team-a", pod(), false),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn hostile_strings_are_capped_in_the_log_and_refusals_carry_one_message() {
    let tmp = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(tmp.path(), &[]).await;
    let huge = "n".repeat(1 << 20);
    let mut hostile = pod();
    hostile["metadata"]["name"] = huge.clone().into();
    let mut review = pod_review("team-a", hostile, false);
    review["request"]["name"] = huge.clone().into();
    review["request"]["uid"] = huge.clone().into();
    let reply = post_review(
        serve.addr,
        "localhost",
        apiserver_like(&serve.ca()),
        &review,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.json()["response"]["patch"].is_string());
    // A refusal that quotes a client-chosen header.
    let refused = support::client::request(
        serve.addr,
        "localhost",
        apiserver_like(&serve.ca()),
        "POST",
        "/mutate",
        Some(&format!("text/{}", "x".repeat(4000))),
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(refused.status, 415);

    serve.signal("TERM");
    assert_eq!(
        serve.exit_within(Duration::from_secs(15)).await.code(),
        Some(0)
    );
    let log = serve.log();
    let answered = log
        .lines()
        .find(|l| l.contains("admission review answered"))
        .expect("a request line");
    assert!(answered.len() < 4096, "{} bytes", answered.len());
    let line: serde_json::Value = serde_json::from_str(answered).unwrap();
    let capped = format!("{}…(1048576 bytes)", "n".repeat(256));
    assert_eq!(line["pod"], capped.as_str());
    assert_eq!(line["span"]["uid"], capped.as_str());
    let refusal = log
        .lines()
        .find(|l| l.contains("admission request refused"))
        .expect("a refusal line");
    assert!(refusal.len() < 4096, "{} bytes", refusal.len());
    assert_eq!(refusal.matches(r#""message":"#).count(), 1, "{refusal}");
    let line: serde_json::Value = serde_json::from_str(refusal).unwrap();
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .starts_with("Content-Type must be application/json, got text/xxx"),
        "{refusal}"
    );
}

#[tokio::test]
async fn a_log_reader_that_stops_reading_never_stalls_admission() {
    let tmp = tempfile::tempdir().unwrap();
    // stderr is a pipe nobody reads: it fills after some 64 KiB, and a write to it blocks.
    let (reader, writer) = std::io::pipe().unwrap();
    let serve = Serve::spawn_logging_to(
        tmp.path(),
        tmp.path().join("unread"),
        Stdio::from(writer),
        free_addr(),
        free_addr(),
        &[],
    )
    .ready()
    .await;
    let ca = std::fs::read_to_string(&serve.ca_path).unwrap();

    // One keep-alive connection, many reviews: each writes a log line of some 400 bytes.
    let tcp = TcpStream::connect(serve.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(apiserver_like(&ca))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let body = serde_json::to_vec(&pod_review("team-a", pod(), false)).unwrap();
    let reviews = 6000;
    let answered = tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..reviews {
            let request = hyper::Request::post("/mutate?timeout=10s")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(axum::body::Bytes::from(
                    body.clone(),
                )))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
        }
    })
    .await;
    assert!(answered.is_ok(), "admission stalled behind the log pipe");
    let (status, metrics) = admin_get(serve.admin, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    let dropped = support::client::metric(&metrics, "gke_wi_injector_log_lines_dropped_total")
        .expect("the dropped-lines counter");
    // The pipe and the queue hold some lines; the rest were dropped and counted.
    assert!(dropped > 0.0 && dropped < f64::from(reviews), "{dropped}");
    drop(reader);
}
