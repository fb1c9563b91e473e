//! Connection caps and file descriptors of the real `serve` binary (SPEC §9): connections over
//! `--max-connections` are closed before their handshake while pooled connections keep getting
//! reviews, the admin port is capped too, and the open-files limit is raised at start with the
//! cap fitted under it. File descriptors and memory of the process stay bounded throughout.

mod support;

use std::time::{Duration, Instant};

use support::limits::{Served, flood, review_on};

const OPEN: &str = "gke_wi_injector_connections_open{listener=\"admission\"}";
const REJECTED: &str = "gke_wi_injector_connections_rejected_total{listener=\"admission\"}";

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

    let attackers = 300;
    let (closed, held) = flood(s.addr, attackers, Duration::from_secs(2)).await;
    let (fds, rss) = (s.fds(), s.rss_mib());
    eprintln!(
        "{attackers} connections over a cap of {cap}: {closed} closed at once; fds {fds_before} -> {fds}, RSS {rss_before:.1} -> {rss:.1} MiB"
    );
    assert_eq!(closed, attackers - (cap - 1), "all but the free slots");
    assert!(fds <= fds_before + cap + 8, "{fds_before} -> {fds}");
    assert!(rss < rss_before + 32.0, "{rss_before} -> {rss}");
    assert_eq!(s.livez().await, 200);
    assert_eq!(review_on(&mut pooled).await, 200, "the pooled connection");
    let rejected = s.metric(REJECTED).await;
    assert_eq!(rejected, (attackers - (cap - 1)) as f64);
    assert_eq!(s.metric(OPEN).await, cap as f64);
    let warned =
        s.log_lines("connection limit reached; new connections are answered 503 or closed at once");
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
async fn a_client_just_over_the_cap_is_told_why_and_past_the_overflow_closed_at_once() {
    let cap = 4;
    let s = Served::start(&["--max-connections", "4", "--header-timeout", "30s"]).await;
    let mut pooled = Vec::new();
    for _ in 0..cap {
        pooled.push(s.tls(b"http/1.1").await);
    }
    // Just over the cap: a handshake and a 503 `Status` that names the bound, no Retry-After.
    let review = support::pod_review("team-a", support::pod(), false);
    let reply = support::client::post_review(
        s.addr,
        "localhost",
        support::client::apiserver_like(&s.ca),
        &review,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 503);
    assert!(reply.headers.get("retry-after").is_none());
    let status = reply.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert_eq!(status["code"], 503);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("4 connections open, its limit (--max-connections)"),
        "{status}"
    );
    // Past the overflow: silent connections over the cap hold the overflow's slots until its
    // timeout; meanwhile the next ones are closed at once, before any TLS work.
    let silent = gke_wi_injector::server::connections::OVERFLOW_CONNECTIONS as usize;
    let mut held = Vec::new();
    for _ in 0..silent {
        held.push(tokio::net::TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        s.try_tls(b"http/1.1").await.is_err(),
        "past the overflow, no handshake"
    );
    // The overflow's connections are closed at their timeout; a client is answered 503 again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = support::client::post_review(
            s.addr,
            "localhost",
            support::client::apiserver_like(&s.ca),
            &review,
        )
        .await;
        if got.as_ref().map(|r| r.status) == Ok(503) {
            break;
        }
        assert!(Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The pooled connections were served throughout.
    for conn in pooled.iter_mut() {
        assert_eq!(review_on(conn).await, 200);
    }
    assert_eq!(s.livez().await, 200);
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
        let logged = s.log_lines("open-files limit");
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0]["soft_before"], "256");
        assert_eq!(logged[0]["soft"], hard.to_string());
        assert!(
            s.log_lines("--max-connections lowered to fit the open-files limit")
                .is_empty()
        );
    }

    if hard < 200 {
        return eprintln!("hard open-files limit {hard}: cannot set one of 200");
    }
    // A hard limit of 200 leaves room for 200 - 160 connections, whatever the flag says.
    let s = Served::start_with(
        "ulimit -n 200 &&",
        &["--max-connections", "1000", "--header-timeout", "30s"],
    )
    .await;
    let lowered = s.log_lines("--max-connections lowered to fit the open-files limit");
    assert_eq!(lowered.len(), 1, "{}", s.logs());
    assert_eq!(lowered[0]["lowered_to"], 40);
    let (closed, _held) = flood(s.addr, 120, Duration::from_secs(2)).await;
    assert_eq!(closed, 120 - 40);
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
    let (closed, held) = flood(s.admin, 200, Duration::from_secs(2)).await;
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

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_logs_once_per_interval() {
    // 40 open files: the admission cap is lowered to 1 and the admin listener's 64 cannot all be
    // had, so a flood of the admin port runs the process out of descriptors.
    let s = Served::start_with("ulimit -n 40 &&", &[]).await;
    let fds_before = s.fds();
    let (_, held) = flood(s.admin, 100, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.livez().await != 200 {
        assert!(Instant::now() < deadline, "/livez not back after the flood");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failures = s
        .metric("gke_wi_injector_accept_errors_total{listener=\"admin\"}")
        .await;
    let logged = s.log_lines("accept failed");
    eprintln!(
        "{failures} failed accepts in 3 s, {} logged; fds {fds_before} before",
        logged.len()
    );
    assert!(failures >= 3.0, "{failures}");
    assert!(
        (1..=2).contains(&logged.len()),
        "one line per 5 s: {logged:?}"
    );
    assert!(
        logged[0]["error"]
            .as_str()
            .unwrap()
            .contains("Too many open files")
    );
    assert_eq!(s.review().await, Ok(200));
}
