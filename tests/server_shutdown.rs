//! Graceful shutdown: readiness fails first, the listener closes after the delay, a request in
//! flight (its body still arriving) is answered, and the drain is bounded by the grace period.

mod support;

use std::time::{Duration, Instant};

use support::client::{admin_get, apiserver_like, post_review};
use support::{TestServer, UID, pod, pod_review};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const RELOAD: Duration = Duration::from_millis(50);

/// Opens a TLS connection and sends the request head and the first `sent` bytes of `body`.
async fn start_slow_request(ts: &TestServer, body: &[u8], sent: usize) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(ts.addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(apiserver_like(ts.ca.pem()))
        .connect(name, tcp)
        .await
        .unwrap();
    let head = format!(
        "POST /mutate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..sent]).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

/// Reads one HTTP/1.1 response: (status line, body).
async fn read_response(tls: &mut TlsStream<TcpStream>) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            while buf.len() < end + 4 + length {
                let n = tls.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let status = head.lines().next().unwrap().to_string();
            return (status, buf[end + 4..end + 4 + length].to_vec());
        }
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed before a response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn an_in_flight_request_is_answered_and_readiness_fails_before_the_listener_closes() {
    let ts = TestServer::start(RELOAD, Duration::from_secs(5)).await;
    let (addr, admin) = (ts.addr(), ts.admin_addr());
    assert_eq!(
        admin_get(admin, "/readyz").await.unwrap(),
        (200, "ok\n".to_string())
    );

    let body = serde_json::to_vec(&pod_review("team", pod(), false)).unwrap();
    let mut in_flight = start_slow_request(&ts, &body, body.len() / 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let TestServer {
        server,
        ca,
        dir: _dir,
        ..
    } = ts;
    let delay = Duration::from_millis(1500);
    let started = Instant::now();
    let shutdown = tokio::spawn(server.shutdown(delay));

    // Not ready at once ...
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        admin_get(admin, "/readyz").await.unwrap(),
        (503, "not ready: shutting down\n".to_string())
    );
    // ... while the listener still accepts during the delay.
    assert!(started.elapsed() < delay);
    let during = post_review(
        addr,
        "localhost",
        apiserver_like(ca.pem()),
        &pod_review("team", pod(), false),
    )
    .await;
    assert_eq!(during.unwrap().status, 200);

    // After the delay the listener is closed.
    tokio::time::sleep(delay + Duration::from_millis(200)).await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(
        !shutdown.is_finished(),
        "the drain waits for the request in flight"
    );

    // The rest of the body arrives; the request is answered in full.
    in_flight.write_all(&body[body.len() / 2..]).await.unwrap();
    in_flight.flush().await.unwrap();
    let (status, answer) = read_response(&mut in_flight).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["response"]["uid"], UID);
    assert!(answer["response"]["patch"].is_string());

    tokio::time::timeout(Duration::from_secs(3), shutdown)
        .await
        .expect("drained")
        .unwrap();
    assert!(
        admin_get(admin, "/readyz").await.is_err(),
        "the admin listener closes last"
    );
}

#[tokio::test]
async fn a_request_that_never_finishes_is_cut_at_the_grace_period() {
    let grace = Duration::from_millis(400);
    let ts = TestServer::start(RELOAD, grace).await;
    let body = serde_json::to_vec(&pod_review("team", pod(), false)).unwrap();
    let mut stuck = start_slow_request(&ts, &body, 10).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let TestServer {
        server, dir: _dir, ..
    } = ts;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.shutdown(Duration::ZERO))
        .await
        .expect("bounded drain");
    let took = started.elapsed();
    assert!(took >= grace, "{took:?}");
    assert!(took < grace + Duration::from_secs(2), "{took:?}");
    drop(stuck.write_all(b"late").await);
}
