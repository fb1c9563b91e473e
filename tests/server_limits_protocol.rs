//! Protocol abuse against the real `serve` binary (SPEC §9): an HTTP/1.1 head past its bound,
//! and HTTP/2 frames written by hand — too many streams, rapid resets, a CONTINUATION flood and an
//! oversized header list. The attacking request or connection is refused or closed; other clients
//! are served throughout and memory stays flat.

mod support;

use std::time::{Duration, Instant};

use support::client::{config, post_review};
use support::h2::{self, frame};
use support::limits::{self, Served, read_response, until_closed};
use support::{pod, pod_review};
use tokio::io::AsyncWriteExt as _;

/// A review over HTTP/2 on a new connection succeeds.
async fn served_over_h2(s: &Served) {
    let h2_only = config(&s.ca, &[&rustls::version::TLS13], &[b"h2"]);
    let reply = post_review(
        s.addr,
        "localhost",
        h2_only,
        &pod_review("team-a", pod(), false),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(s.livez().await, 200);
}

/// Frames the server sends within `wait`, or until it closes the connection.
async fn frames_within<S: tokio::io::AsyncRead + Unpin>(
    conn: &mut S,
    wait: Duration,
) -> (Vec<h2::Frame>, bool) {
    match until_closed(conn, Instant::now() + wait).await {
        Ok(bytes) => (h2::frames(&bytes), true),
        Err(bytes) => (h2::frames(&bytes), false),
    }
}

/// A `GET /` whose head is `size` bytes.
fn head_of(size: usize) -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: ".to_vec();
    head.extend(vec![b'a'; size - head.len() - 4]);
    head.extend(b"\r\n\r\n");
    head
}

#[tokio::test]
async fn an_http1_head_past_32_kib_closes_the_connection() {
    let s = Served::start(&[]).await;
    // 30 KiB: answered (404, the path is unknown).
    let mut conn = s.tls(b"http/1.1").await;
    conn.write_all(&head_of(30 * 1024)).await.unwrap();
    let answer = read_response(&mut conn, Duration::from_secs(5)).await;
    assert_eq!(answer.unwrap().status, 404);
    // 40 KiB, in one write or in pieces: closed, at most with a 431 (hyper's own bound on its read
    // buffer may see the head first when it arrives in pieces).
    for pieces in [1, 40] {
        let mut conn = s.tls(b"http/1.1").await;
        let head = head_of(40 * 1024);
        for piece in head.chunks(head.len() / pieces) {
            if conn.write_all(piece).await.is_err() {
                break;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let sent = until_closed(&mut conn, deadline).await.expect("closed");
        let text = String::from_utf8_lossy(&sent);
        assert!(
            sent.is_empty() || text.starts_with("HTTP/1.1 431 "),
            "{text}"
        );
    }
    let series = "gke_wi_injector_admission_requests_total{outcome=\"bad_request\"}";
    assert_eq!(s.metric(series).await, 0.0, "the handler never ran");
    served_over_h2(&s).await;
}

#[tokio::test]
async fn streams_past_the_limit_are_refused_and_the_others_stay_open() {
    let s = Served::start(&[]).await;
    let mut conn = h2::handshake(&s).await;
    // 100 requests whose bodies never come: the handler waits (body timeout 30 s).
    let block = h2::post_mutate_block();
    let mut burst = Vec::new();
    for i in 0..100u32 {
        burst.extend(frame(h2::HEADERS, h2::END_HEADERS, 2 * i + 1, &block));
    }
    conn.write_all(&burst).await.unwrap();
    let (frames, closed) = frames_within(&mut conn, Duration::from_secs(2)).await;
    assert!(
        !closed,
        "the connection stays open for the streams it accepted"
    );
    let refused: Vec<u32> = frames
        .iter()
        .filter(|f| f.kind == h2::RST_STREAM && f.error_code() == Some(h2::REFUSED_STREAM))
        .map(|f| f.stream)
        .collect();
    assert_eq!(refused.len(), 100 - 32, "{frames:?}");
    assert!(
        refused.iter().all(|&id| id > 2 * 32),
        "the first 32 are served"
    );
    served_over_h2(&s).await;

    // The 32 open streams still work: one of them gets its body and is answered.
    let body = serde_json::to_vec(&pod_review("team-a", pod(), false)).unwrap();
    conn.write_all(&frame(h2::DATA, h2::END_STREAM, 1, &body))
        .await
        .unwrap();
    let (frames, _) = frames_within(&mut conn, Duration::from_secs(1)).await;
    let answered = frames
        .iter()
        .any(|f| f.kind == h2::HEADERS && f.stream == 1);
    assert!(answered, "{frames:?}");
}

#[tokio::test]
async fn rapid_resets_end_the_connection_with_enhance_your_calm() {
    let s = Served::start(&[]).await;
    let rss_before = s.rss_mib();
    let mut conn = h2::handshake(&s).await;
    let block = h2::post_mutate_block();
    let mut burst = Vec::new();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(h2::HEADERS, h2::END_HEADERS, id, &block));
        burst.extend(frame(h2::RST_STREAM, 0, id, &h2::CANCEL.to_be_bytes()));
    }
    // The server may close the connection before it has read everything.
    let _ = conn.write_all(&burst).await;
    let (frames, closed) = frames_within(&mut conn, Duration::from_secs(5)).await;
    let goaway = frames.iter().find(|f| f.kind == h2::GOAWAY);
    assert_eq!(
        goaway.and_then(|f| f.error_code()),
        Some(h2::ENHANCE_YOUR_CALM),
        "{frames:?}"
    );
    assert!(closed);
    served_over_h2(&s).await;
    let rss = s.rss_mib();
    eprintln!("rapid reset: RSS {rss_before:.1} -> {rss:.1} MiB");
    assert!(rss < rss_before + 16.0);
}

#[tokio::test]
async fn a_continuation_flood_ends_the_connection_with_enhance_your_calm() {
    let s = Served::start(&[]).await;
    let mut conn = h2::handshake(&s).await;
    let block = h2::post_mutate_block();
    let mut flood = frame(h2::HEADERS, 0, 1, &block[..4]);
    for _ in 0..10_000 {
        flood.extend(frame(h2::CONTINUATION, 0, 1, &[]));
    }
    let _ = conn.write_all(&flood).await;
    let (frames, closed) = frames_within(&mut conn, Duration::from_secs(5)).await;
    let goaway = frames.iter().find(|f| f.kind == h2::GOAWAY);
    assert_eq!(
        goaway.and_then(|f| f.error_code()),
        Some(h2::ENHANCE_YOUR_CALM),
        "{frames:?}"
    );
    assert!(closed);
    served_over_h2(&s).await;
}

#[tokio::test]
async fn a_header_list_past_16_kib_is_not_served() {
    let s = Served::start(&[]).await;
    let mut conn = h2::handshake(&s).await;
    // One literal header of 20 KiB (length as an HPACK integer, 7-bit prefix).
    let mut block = h2::post_mutate_block();
    block.extend([0x00, 0x01, b'x']);
    let len = 20 * 1024 - 127;
    block.push(0x7f);
    let mut rest = len;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    block.extend(vec![b'a'; len + 127]);
    let (first, tail) = block.split_at(16 * 1024);
    let mut frames_out = frame(h2::HEADERS, 0, 1, first);
    frames_out.extend(frame(h2::CONTINUATION, h2::END_HEADERS, 1, tail));
    conn.write_all(&frames_out).await.unwrap();
    let (frames, _) = frames_within(&mut conn, Duration::from_secs(2)).await;
    // h2 answers with a 431 (a HEADERS frame that ends the stream, :status as a literal) and
    // resets the stream; the handler never runs.
    let on_stream_1: Vec<&h2::Frame> = frames.iter().filter(|f| f.stream == 1).collect();
    let answer = on_stream_1.first().expect("an answer on stream 1");
    assert_eq!(
        (answer.kind, answer.flags & h2::END_STREAM),
        (h2::HEADERS, h2::END_STREAM)
    );
    assert_eq!(
        answer.payload[0], 0x48,
        ":status, not one of the static 200/204/206/304/400/404/500"
    );
    let series = "gke_wi_injector_admission_requests_total{outcome=\"bad_request\"}";
    assert_eq!(s.metric(series).await, 0.0, "the handler never ran");
    served_over_h2(&s).await;
}

#[tokio::test]
async fn refusals_before_the_body_is_read_still_reach_the_client() {
    // Answered before the body is read (413 on the declared length, 415 on the content type)
    // while the client goes on sending: the bytes after the answer are not a new head.
    let s = Served::start(&[]).await;
    for (head, want) in [
        (limits::post_head(8 * 1024 * 1024), 413),
        (
            b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 1048576\r\n\r\n".to_vec(),
            415,
        ),
    ] {
        let (mut read, mut write) = tokio::io::split(s.tls(b"http/1.1").await);
        let sender = tokio::spawn(async move {
            let mut data = head;
            data.extend(vec![b' '; 1024 * 1024]);
            limits::write_within(&mut write, &data, Duration::from_secs(5)).await;
            write
        });
        let answer = read_response(&mut read, Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer.status, want);
        assert_eq!(answer.json()["kind"], "Status");
        drop(sender.await);
    }
    served_over_h2(&s).await;
}
