//! SPEC §9 against the real `serve` binary over TLS on loopback: idle connections are closed,
//! uploads past the body budget get 503, the head, body and handshake timeouts fire. Through every
//! attack `/livez` answers, reviews are served, and memory stays bounded. (Connection caps and
//! file descriptors: `server_limits_fds.rs`; protocol abuse: `server_limits_protocol.rs`.)

mod support;

use std::time::{Duration, Instant};

use support::client::config;
use support::h2;
use support::limits::{
    Served, connect_tls, post_head, read_response, review_on, until_closed, write_within,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;
const OPEN: &str = "gke_wi_injector_connections_open{listener=\"admission\"}";

#[tokio::test]
async fn connections_with_nothing_to_do_are_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(2);
    let s = Served::start(&["--idle-timeout", "2s"]).await;
    let first = Instant::now();
    let no_alpn = config(
        &s.ca,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[],
    );
    // Silent after the handshake: HTTP/1.1, HTTP/2 (no preface either), no ALPN at all.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(s.tls(b"http/1.1").await);
        silent.push(s.tls(b"h2").await);
        silent.push(connect_tls(s.addr, no_alpn.clone()).await.unwrap());
    }
    // HTTP/2 with the preface and SETTINGS exchanged, then nothing.
    let mut h2_idle = Vec::new();
    for _ in 0..5 {
        h2_idle.push(h2::handshake(&s).await);
    }
    // Used once, then left idle (keep-alive).
    let mut used = s.tls(b"http/1.1").await;
    assert_eq!(review_on(&mut used).await, 200);
    let opened = Instant::now();

    // None is closed early (checked only if opening them all took less than half the timeout).
    if opened < first + idle / 2 {
        tokio::time::sleep_until((first + idle / 2).into()).await;
        let soon = Instant::now() + Duration::from_millis(100);
        for conn in silent.iter_mut() {
            assert!(until_closed(conn, soon).await.is_err(), "closed early");
        }
        assert!(until_closed(&mut used, soon).await.is_err(), "closed early");
    } else {
        eprintln!(
            "opening took {:?}: early closes not checked",
            opened - first
        );
    }

    let deadline = opened + idle + Duration::from_secs(5);
    for conn in silent.iter_mut() {
        assert!(until_closed(conn, deadline).await.is_ok(), "still open");
    }
    assert!(
        until_closed(&mut used, deadline).await.is_ok(),
        "still open"
    );
    for conn in h2_idle.iter_mut() {
        let sent = until_closed(conn, deadline).await.expect("still open");
        let goaway = h2::frames(&sent).into_iter().find(|f| f.kind == h2::GOAWAY);
        assert_eq!(
            goaway.and_then(|f| f.error_code()),
            Some(0),
            "GOAWAY NO_ERROR"
        );
    }
    eprintln!("36 idle connections closed after {:?}", opened.elapsed());

    let idle_closed = s
        .metric(
            "gke_wi_injector_connection_timeouts_total{listener=\"admission\",timeout=\"idle\"}",
        )
        .await;
    assert!(idle_closed >= 36.0, "{idle_closed}");
    assert_eq!(s.metric(OPEN).await, 0.0);
    assert_eq!(s.review().await, Ok(200));
}

#[tokio::test]
async fn a_keep_alive_connection_outlives_the_header_timeout_between_requests() {
    // hyper's own header timeout also ran between requests and cut keep-alive connections.
    let s = Served::start(&["--header-timeout", "1s", "--idle-timeout", "10s"]).await;
    let mut conn = s.tls(b"http/1.1").await;
    for _ in 0..3 {
        assert_eq!(review_on(&mut conn).await, 200);
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    assert_eq!(review_on(&mut conn).await, 200);
}

#[tokio::test]
async fn slow_handshakes_heads_and_bodies_are_cut_at_their_timeouts() {
    let s = Served::start(&["--header-timeout", "1s", "--body-timeout", "1s"]).await;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(6);
    // No TLS handshake at all.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    // A head that stops half-way.
    let mut half = s.tls(b"http/1.1").await;
    half.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // A head dribbled one byte every 200 ms: it would take 8 s.
    let (mut read, mut write) = tokio::io::split(s.tls(b"http/1.1").await);
    let dribble = tokio::spawn(async move {
        for &b in b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n\r\n"
            .iter()
            .take(40)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(&[b]).await.is_err() {
                break;
            }
        }
    });
    // A body that stops after 10 bytes of 100.
    let mut body = s.tls(b"http/1.1").await;
    body.write_all(&post_head(100)).await.unwrap();
    body.write_all(b"{\"apiVersi").await.unwrap();

    assert!(until_closed(&mut tcp, deadline).await.is_ok(), "handshake");
    assert!(until_closed(&mut half, deadline).await.is_ok(), "half head");
    assert!(until_closed(&mut read, deadline).await.is_ok(), "dribble");
    let cut = start.elapsed();
    assert!(cut >= Duration::from_millis(900), "{cut:?}");
    assert!(
        cut < Duration::from_secs(5),
        "the dribble outran the timeout: {cut:?}"
    );
    dribble.abort();
    let answer = read_response(&mut body, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.status, 408);
    assert_eq!(answer.json()["reason"], "Timeout");
    assert_eq!(answer.header("retry-after"), None);

    let timeouts = |t: &str| {
        format!(
            "gke_wi_injector_connection_timeouts_total{{listener=\"admission\",timeout=\"{t}\"}}"
        )
    };
    assert_eq!(s.metric(&timeouts("handshake")).await, 1.0);
    assert_eq!(s.metric(&timeouts("header")).await, 2.0);
    let series = "gke_wi_injector_admission_requests_total{outcome=\"request_timeout\"}";
    assert_eq!(s.metric(series).await, 1.0);
    assert_eq!(s.review().await, Ok(200));
}

#[tokio::test]
async fn uploads_past_the_body_budget_get_503_and_ordinary_reviews_go_on() {
    let s = Served::start(&["--max-body-bytes-in-flight", "16Mi"]).await;
    let rss_before = s.rss_mib();
    // Each upload declares 7 MiB, sends 1.5 MiB and stalls; 24 of them would hold 36 MiB
    // (72 MiB of buffers) without the budget.
    let uploads = 24;
    let mut tasks = Vec::new();
    for _ in 0..uploads {
        let conn = s.tls(b"http/1.1").await;
        tasks.push(tokio::spawn(async move {
            let (mut read, mut write) = tokio::io::split(conn);
            let writer = tokio::spawn(async move {
                let mut data = post_head(7 * MIB);
                data.extend(vec![b' '; 3 * MIB / 2]);
                write_within(&mut write, &data, Duration::from_secs(10)).await;
                write
            });
            let answer = read_response(&mut read, Duration::from_secs(8)).await;
            (answer, read, writer)
        }));
    }
    let mut refused = 0;
    let mut open = Vec::new();
    for task in tasks {
        let (answer, read, writer) = task.await.unwrap();
        match answer {
            Ok(answer) => {
                assert_eq!(
                    answer.status,
                    503,
                    "{}",
                    String::from_utf8_lossy(&answer.body)
                );
                let status = answer.json();
                assert_eq!(status["kind"], "Status");
                assert_eq!(status["reason"], "ServiceUnavailable");
                assert_eq!(status["code"], 503);
                assert_eq!(answer.header("retry-after"), None);
                refused += 1;
            }
            Err(e) => {
                assert_eq!(e, "no response in time");
                open.push((read, writer));
            }
        }
    }
    let buffered = s.metric("gke_wi_injector_body_bytes_buffered").await;
    let rss = s.rss_mib();
    eprintln!(
        "{uploads} uploads of 1.5 MiB under a 16 MiB budget: {refused} refused, {} held, {:.1} MiB buffered, RSS {rss_before:.1} -> {rss:.1} MiB",
        open.len(),
        buffered / MIB as f64
    );
    assert!(refused >= 12, "{refused}");
    assert!(!open.is_empty());
    assert!(buffered <= 16.0 * MIB as f64, "{buffered}");
    assert!(rss < rss_before + 48.0, "{rss_before} -> {rss}");
    // Ordinary reviews still fit: large bodies never take the last quarter of the budget.
    for _ in 0..5 {
        assert_eq!(s.review().await, Ok(200));
    }
    assert_eq!(s.livez().await, 200);
    let series = "gke_wi_injector_admission_requests_total{outcome=\"over_capacity\"}";
    assert_eq!(s.metric(series).await, refused as f64);

    drop(open);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.metric("gke_wi_injector_body_bytes_buffered").await != 0.0 {
        assert!(Instant::now() < deadline, "the budget was not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
