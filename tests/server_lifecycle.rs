//! The `serve` binary's life cycle and logs: signals (SIGHUP, a second signal during the drain),
//! the development CA file when a second server cannot bind, and what a hostile request can put
//! into a log line.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::client::{admin_get, apiserver_like, post_review};
use support::limits::{Launch, Served};
use support::{pod, pod_review};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A request whose body never finishes arriving: it keeps the drain waiting.
async fn stuck_request(serve: &Served) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(serve.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(apiserver_like(&serve.ca))
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
    let mut serve = Served::start(&["--shutdown-grace=20s"]).await;
    let mut stuck = stuck_request(&serve).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    serve.signal("HUP");
    // Not killed: the drain waits for the request in flight ...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "{}",
        serve.logs()
    );
    // ... which is answered once its body has arrived; then the process exits 0.
    stuck.write_all(&[b' '; 999]).await.unwrap();
    stuck.flush().await.unwrap();
    let status = serve.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", serve.logs());
    let log = serve.logs();
    assert!(log.contains(r#""signal":"SIGHUP""#), "{log}");
    assert!(log.contains("drained"), "{log}");
}

#[tokio::test]
async fn a_second_signal_ends_the_drain_at_once_with_status_1() {
    let mut serve = Served::start(&["--shutdown-delay=0s", "--shutdown-grace=60s"]).await;
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
    assert_eq!(status.code(), Some(1), "{}", serve.logs());
    let log = serve.logs();
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
    let first = Served::start(&[]).await;
    // Same ports, same --dev-ca-out: it cannot bind and must not touch the CA file.
    let mut second = Launch {
        addr: first.addr,
        admin: first.admin,
        ca_path: first.ca_path.clone(),
        ..Launch::new(&[])
    }
    .spawn();
    let status = second.exit_within(Duration::from_secs(20)).await;
    assert!(!status.success());
    assert!(
        second.logs().contains("cannot listen on --listen"),
        "{}",
        second.logs()
    );
    let ca_now = std::fs::read_to_string(&first.ca_path).unwrap();
    assert_eq!(
        ca_now, first.ca,
        "the first server's CA is still the file's"
    );
    let reply = post_review(
        first.addr,
        "localhost",
        apiserver_like(&ca_now),
        &pod_review("team-a", pod(), false),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn hostile_strings_are_capped_in_the_log_and_refusals_carry_one_message() {
    let mut serve = Served::start(&[]).await;
    let huge = "n".repeat(1 << 20);
    let mut hostile = pod();
    hostile["metadata"]["name"] = huge.clone().into();
    let mut review = pod_review("team-a", hostile, false);
    review["request"]["name"] = huge.clone().into();
    review["request"]["uid"] = huge.clone().into();
    let reply = post_review(serve.addr, "localhost", apiserver_like(&serve.ca), &review)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.json()["response"]["patch"].is_string());
    // A refusal that quotes a client-chosen header.
    let refused = support::client::request(
        serve.addr,
        "localhost",
        apiserver_like(&serve.ca),
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
    let log = serve.logs();
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
    // stderr is a pipe nobody reads: it fills after some 64 KiB, and a write to it blocks.
    let (reader, writer) = std::io::pipe().unwrap();
    let serve = Launch {
        stderr: Some(Stdio::from(writer)),
        ..Launch::new(&[])
    }
    .start()
    .await;
    let ca = serve.ca.clone();

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
