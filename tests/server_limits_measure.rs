//! Memory and file descriptors of `serve` at its default limits under the worst clients the
//! limits allow; prints the numbers behind the README's Limits table. Ignored by default (about
//! 30 s, 1,000 connections):
//! `cargo test --test server_limits_measure -- --ignored --nocapture`

mod support;

use std::time::Duration;

use support::limits::{Served, post_head, read_response, write_within};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

#[tokio::test]
#[ignore = "a measurement, not a check: run by hand"]
async fn memory_and_descriptors_at_the_default_limits() {
    // Defaults but for the head timeout, long enough to open all the connections.
    let s = Served::start(&["--header-timeout", "60s"]).await;
    let report = |what: &str| {
        eprintln!(
            "{what:<58} fds {:>4}  RSS {:>6.1} MiB",
            s.fds(),
            s.rss_mib()
        )
    };
    report("started");

    // 512 (--max-connections) TLS connections, each with 31 KiB of an unfinished head: the most
    // HTTP/1.1 buffers an attacker can hold for --header-timeout.
    let mut held = Vec::new();
    let head = {
        let mut h = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Pad: ".to_vec();
        h.extend(vec![b'a'; 31 * 1024]);
        h
    };
    for _ in 0..512 {
        let mut conn = s.tls(b"http/1.1").await;
        conn.write_all(&head).await.unwrap();
        held.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    report("512 TLS connections with 31 KiB heads");
    // 500 more: closed at once.
    let mut over = Vec::new();
    for _ in 0..500 {
        over.push(TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    report("and 500 more connections over the cap");
    assert_eq!(s.livez().await, 200);
    drop((held, over));
    tokio::time::sleep(Duration::from_secs(1)).await;
    report("all closed");

    // The body budget (64 MiB) filled by uploads that stall: 7 MiB declared, 5 MiB sent.
    let mut uploads = Vec::new();
    for _ in 0..40 {
        let conn = s.tls(b"http/1.1").await;
        uploads.push(tokio::spawn(async move {
            let (mut read, mut write) = tokio::io::split(conn);
            let mut data = post_head(7 * MIB);
            data.extend(vec![b' '; 5 * MIB]);
            write_within(&mut write, &data, Duration::from_secs(10)).await;
            let answer = read_response(&mut read, Duration::from_secs(3)).await;
            (answer.map(|a| a.status), read, write)
        }));
    }
    let mut refused = 0;
    let mut open = Vec::new();
    for upload in uploads {
        let (status, read, write) = upload.await.unwrap();
        if status == Ok(503) {
            refused += 1;
        }
        open.push((read, write));
    }
    let buffered = s.metric("gke_wi_injector_body_bytes_buffered").await / MIB as f64;
    report(&format!(
        "40 stalled 5 MiB uploads: {refused} refused, {buffered:.0} MiB buffered"
    ));
    assert_eq!(s.review().await, Ok(200));
    drop(open);

    // Whole reviews of nearly 7 MiB, parsed at once: a Pod with 150,000 env entries.
    let mut review = support::pod_review("team-a", support::pod(), false);
    let env: Vec<serde_json::Value> = (0..150_000)
        .map(|i| serde_json::json!({"name": format!("E{i}"), "value": "v"}))
        .collect();
    review["request"]["object"]["spec"]["containers"][0]["env"] = env.into();
    let body = serde_json::to_vec(&review).unwrap();
    assert!(body.len() <= 7 * MIB, "{}", body.len());
    let mut reviews = Vec::new();
    for _ in 0..12 {
        let mut conn = s.tls(b"http/1.1").await;
        let mut data = post_head(body.len());
        data.extend(&body);
        reviews.push(tokio::spawn(async move {
            conn.write_all(&data).await.unwrap();
            read_response(&mut conn, Duration::from_secs(60))
                .await
                .map(|a| a.status)
        }));
    }
    let mut statuses = Vec::new();
    for r in reviews {
        statuses.push(r.await.unwrap());
    }
    report(&format!(
        "12 reviews of {:.1} MiB at once: {statuses:?}",
        body.len() as f64 / MIB as f64
    ));
    eprintln!("peak RSS {:.1} MiB", s.peak_rss_mib());
}
