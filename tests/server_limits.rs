//! SPEC §9 against the real `serve` binary over TLS on loopback: idle connections are closed,
//! connections over the cap are closed before their handshake, uploads past the body budget get
//! 503, the head, body and handshake timeouts fire, and the open-files limit is raised. Through
//! every attack `/livez` answers, reviews are served, and the process's file descriptors and
//! memory stay bounded. (Protocol abuse: `server_limits_protocol.rs`.)

mod support;

use std::time::{Duration, Instant};

use support::client::config;
use support::limits::{
    Served, connect_tls, h2, post_head, read_response, review_of, until_closed, write_within,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;
const OPEN: &str = "gke_wi_injector_connections_open{listener=\"admission\"}";
const REJECTED: &str = "gke_wi_injector_connections_rejected_total{listener=\"admission\"}";

/// The JSON log lines whose message is `message`.
fn log_lines(served: &Served, message: &str) -> Vec<serde_json::Value> {
    served
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == message)
        .collect()
}

/// Sends one review on an HTTP/1.1 keep-alive connection and reads the answer.
async fn review_on<S>(conn: &mut S) -> u16
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let body = review_of(4096);
    let mut request = post_head(body.len());
    request.extend(body);
    conn.write_all(&request).await.unwrap();
    read_response(conn, Duration::from_secs(5))
        .await
        .unwrap()
        .status
}

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
async fn connections_over_the_cap_are_closed_at_once_and_reviews_go_on() {
    let cap = 40;
    let s = Served::start(&["--max-connections", "40", "--header-timeout", "30s"]).await;
    assert_eq!(s.metric(REJECTED).await, 0.0);
    let (_, text) = support::client::admin_get(s.admin, "/metrics")
        .await
        .unwrap();
    assert!(
        text.contains(&format!("\n{REJECTED} 0\n")),
        "scraped at zero:\n{text}"
    );
    // The API server's pooled keep-alive connection, opened before the flood.
    let mut pooled = s.tls(b"http/1.1").await;
    assert_eq!(review_on(&mut pooled).await, 200);
    let (fds_before, rss_before) = (s.fds(), s.rss_mib());

    let flood = 300;
    let mut held = Vec::new();
    for _ in 0..flood {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut closed = 0;
    for conn in held.iter_mut() {
        if until_closed(conn, deadline).await.is_ok() {
            closed += 1;
        }
    }
    let (fds, rss) = (s.fds(), s.rss_mib());
    eprintln!(
        "{flood} connections over a cap of {cap}: {closed} closed at once; fds {fds_before} -> {fds}, RSS {rss_before:.1} -> {rss:.1} MiB"
    );
    assert_eq!(closed, flood - (cap - 1), "all but the free slots");
    assert!(fds <= fds_before + cap + 8, "{fds_before} -> {fds}");
    assert!(rss < rss_before + 32.0, "{rss_before} -> {rss}");
    assert_eq!(s.livez().await, 200);
    assert_eq!(review_on(&mut pooled).await, 200, "the pooled connection");
    let rejected = s.metric(REJECTED).await;
    assert_eq!(rejected, (flood - (cap - 1)) as f64);
    assert_eq!(s.metric(OPEN).await, cap as f64);
    let warned = log_lines(
        &s,
        "connection limit reached; closing new connections at once",
    );
    assert!(
        (1..=2).contains(&warned.len()),
        "{} warnings for {rejected} refusals",
        warned.len()
    );

    // Once the flood is gone, new clients are served again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.review().await != Ok(200) {
        assert!(Instant::now() < deadline, "not served after the flood");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
            let answer = read_response(&mut read, Duration::from_secs(4)).await;
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

/// The hard limit on open files of this process, from /proc/self/limits.
fn hard_open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

/// Soft and hard open-files limits of a process.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut fields = line.split_whitespace().skip(3);
    (
        fields.next().unwrap().to_string(),
        fields.next().unwrap().to_string(),
    )
}

#[tokio::test]
async fn the_open_files_limit_is_raised_and_the_connection_cap_fits_under_it() {
    let hard = hard_open_files_limit();
    if hard <= 512 {
        eprintln!("hard open-files limit {hard}: too low to show the raise");
    } else {
        let s = Served::start_with("ulimit -Sn 256 &&", &[]).await;
        let (soft_now, hard_now) = open_files_limits(s.pid());
        assert_eq!(
            (soft_now.as_str(), hard_now.clone()),
            (hard_now.as_str(), hard.to_string())
        );
        let logged = log_lines(&s, "open-files limit");
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0]["soft_before"], "256");
        assert_eq!(logged[0]["soft"], hard.to_string());
        assert!(log_lines(&s, "--max-connections lowered to fit the open-files limit").is_empty());
    }

    // A hard limit of 200 leaves room for 200 - 128 connections, whatever the flag says.
    let s = Served::start_with(
        "ulimit -n 200 &&",
        &["--max-connections", "1000", "--header-timeout", "30s"],
    )
    .await;
    let lowered = log_lines(&s, "--max-connections lowered to fit the open-files limit");
    assert_eq!(lowered.len(), 1, "{}", s.logs());
    assert_eq!(lowered[0]["lowered_to"], 72);
    let mut held = Vec::new();
    for _ in 0..120 {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut closed = 0;
    for conn in held.iter_mut() {
        if until_closed(conn, deadline).await.is_ok() {
            closed += 1;
        }
    }
    assert_eq!(closed, 120 - 72);
    assert_eq!(
        s.metric("gke_wi_injector_accept_errors_total{listener=\"admission\"}")
            .await,
        0.0
    );
    assert!(s.fds() < 200);
    assert_eq!(s.livez().await, 200);
}

#[tokio::test]
async fn a_flood_of_the_admin_port_is_capped_and_reviews_go_on() {
    let s = Served::start(&[]).await;
    let fds_before = s.fds();
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(TcpStream::connect(s.admin).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut closed = 0;
    for conn in held.iter_mut() {
        if until_closed(conn, deadline).await.is_ok() {
            closed += 1;
        }
    }
    assert_eq!(closed, 200 - 64);
    assert!(s.fds() <= fds_before + 64 + 8, "{}", s.fds());
    assert_eq!(s.review().await, Ok(200));

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.livez().await != 200 {
        assert!(Instant::now() < deadline, "/livez not back after the flood");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let series = "gke_wi_injector_connections_rejected_total{listener=\"admin\"}";
    assert_eq!(s.metric(series).await, 136.0);
}
