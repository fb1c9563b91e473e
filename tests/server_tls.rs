//! The admission listener over real TLS on 127.0.0.1: CA verification, protocol versions, ALPN,
//! clients without SNI, and certificate rotation under continuous requests.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use support::client::{self, admin_get, apiserver_like, metric, post_review};
use support::{TestServer, UID, pod, pod_review};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const RELOAD: Duration = Duration::from_millis(50);
const GRACE: Duration = Duration::from_secs(5);

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn assert_answered(reply: &client::Reply) {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let json = reply.json();
    assert_eq!(json["response"]["uid"], UID);
    assert!(json["response"]["patch"].is_string());
}

#[tokio::test]
async fn a_client_trusting_only_the_ca_is_answered_over_every_version_and_alpn() {
    let ts = TestServer::start(RELOAD, GRACE).await;
    let served = std::fs::read_to_string(&ts.cert_path).unwrap();
    let review = pod_review("team", pod(), false);
    let cases: [(
        &'static rustls::SupportedProtocolVersion,
        &[u8],
        rustls::ProtocolVersion,
    ); 4] = [
        (
            &rustls::version::TLS13,
            b"http/1.1",
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            &rustls::version::TLS12,
            b"http/1.1",
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            &rustls::version::TLS13,
            b"h2",
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            &rustls::version::TLS12,
            b"h2",
            rustls::ProtocolVersion::TLSv1_2,
        ),
    ];
    for (version, alpn, want_version) in cases {
        let config = client::config(ts.ca.pem(), &[version], &[alpn]);
        let reply = post_review(ts.addr(), "localhost", config, &review)
            .await
            .unwrap();
        assert_answered(&reply);
        assert_eq!(reply.tls_version, Some(want_version));
        assert_eq!(reply.alpn.as_deref(), Some(alpn));
        assert_eq!(reply.peer_cert, der_of(&served));
    }
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_the_handshake() {
    let ts = TestServer::start(RELOAD, GRACE).await;
    let other =
        gke_wi_injector::server::certs::Ca::new("other CA", Duration::from_secs(3600)).unwrap();
    let err = post_review(
        ts.addr(),
        "localhost",
        apiserver_like(other.pem()),
        &pod_review("team", pod(), false),
    )
    .await
    .unwrap_err();
    assert!(
        err.starts_with("handshake:") && err.contains("UnknownIssuer"),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_that_sends_no_sni_gets_the_certificate() {
    // rustls, like Go, sends no SNI for an IP address; the certificate's IP SAN is verified.
    let ts = TestServer::start(RELOAD, GRACE).await;
    let reply = post_review(
        ts.addr(),
        "127.0.0.1",
        apiserver_like(ts.ca.pem()),
        &pod_review("team", pod(), false),
    )
    .await
    .unwrap();
    assert_answered(&reply);
}

/// A ClientHello that offers only `version` (no supported_versions extension), with a TLS 1.2
/// AEAD suite, groups and signature algorithms rustls accepts: only the version can be refused.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut v = kind.to_be_bytes().to_vec();
        v.extend((data.len() as u16).to_be_bytes());
        v.extend(data);
        v
    }
    let mut extensions = Vec::new();
    extensions.extend(ext(0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17])); // groups: x25519, P-256
    extensions.extend(ext(0x000b, &[0x01, 0x00])); // EC point formats: uncompressed
    extensions.extend(ext(
        0x000d,
        &[0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    )); // signature algorithms
    let name = b"localhost";
    let mut sni = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    extensions.extend(ext(0x0000, &sni));

    let mut body = version.to_vec();
    body.extend([0x5a; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // ECDHE-ECDSA/RSA-AES128-GCM-SHA256
    body.extend([0x01, 0x00]); // compression: null
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);

    let mut handshake = vec![0x01];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// The first record the server answers a raw ClientHello with.
async fn first_record(addr: std::net::SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut header = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut header))
        .await
        .unwrap()
        .unwrap();
    let len = u16::from_be_bytes([header[3], header[4]]) as usize;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    let mut record = header.to_vec();
    record.extend(payload);
    record
}

#[tokio::test]
async fn tls_1_1_is_refused_with_a_protocol_version_alert() {
    let ts = TestServer::start(RELOAD, GRACE).await;
    // Control: the same hello offering TLS 1.2 gets a ServerHello.
    let tls12 = first_record(ts.addr(), &client_hello([0x03, 0x03])).await;
    assert_eq!(
        (tls12[0], tls12[5]),
        (0x16, 0x02),
        "handshake record with a ServerHello: {tls12:02x?}"
    );
    // TLS 1.1: a fatal protocol_version (70) alert.
    let tls11 = first_record(ts.addr(), &client_hello([0x03, 0x02])).await;
    assert_eq!(tls11[0], 0x15, "alert record: {tls11:02x?}");
    assert_eq!(
        &tls11[5..],
        [0x02, 70],
        "fatal protocol_version: {tls11:02x?}"
    );
    // TLS 1.0 likewise.
    let tls10 = first_record(ts.addr(), &client_hello([0x03, 0x01])).await;
    assert_eq!(&tls10[5..], [0x02, 70]);
}

#[tokio::test]
async fn openssl_cannot_connect_with_tls_1_1() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("openssl not installed; the raw ClientHello test covers TLS 1.1");
        return;
    }
    let ts = TestServer::start(RELOAD, GRACE).await;
    let connect = ts.addr().to_string();
    let run = move |args: &[&str]| {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            connect.as_str(),
            "-servername",
            "localhost",
        ])
        .args(args);
        cmd.stdin(std::process::Stdio::null());
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = tokio::task::spawn_blocking(move || {
        let old = run(&["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
        let new = run(&["-tls1_2"]);
        (old, new)
    })
    .await
    .map(|(old, new)| ((old.0, new.0), (old.1, new.1)))
    .unwrap();
    assert!(!ok.0, "TLS 1.1 handshake succeeded:\n{}", text.0);
    assert!(text.0.contains("alert"), "{}", text.0);
    assert!(
        text.0.contains("no peer certificate available"),
        "{}",
        text.0
    );
    assert!(ok.1, "TLS 1.2 control failed:\n{}", text.1);
    assert!(
        text.1.contains("Protocol  : TLSv1.2") || text.1.contains("TLSv1.2"),
        "{}",
        text.1
    );
}

#[tokio::test]
async fn rotated_files_are_served_with_zero_failed_requests() {
    let ts = TestServer::start(RELOAD, GRACE).await;
    let old = der_of(&std::fs::read_to_string(&ts.cert_path).unwrap());
    let next = ts.leaf();
    let new = der_of(&next.cert_pem);
    let review = Arc::new(pod_review("team", pod(), false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (addr, config, review, stop) = (
            ts.addr(),
            apiserver_like(ts.ca.pem()),
            review.clone(),
            stop.clone(),
        );
        let name = if i % 2 == 0 { "localhost" } else { "127.0.0.1" };
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut seen) = (0usize, Vec::new(), Vec::<Vec<u8>>::new());
            // Bounded: at most 5000 requests per client.
            for _ in 0..5000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match post_review(addr, name, config.clone(), &review).await {
                    Ok(reply) if reply.status == 200 => {
                        ok += 1;
                        if !seen.contains(&reply.peer_cert) {
                            seen.push(reply.peer_cert);
                        }
                    }
                    Ok(reply) => failed.push(format!("status {}", reply.status)),
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed, seen)
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    ts.write_pair(&next);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rotated = false;
    while Instant::now() < deadline {
        let reply = post_review(ts.addr(), "localhost", apiserver_like(ts.ca.pem()), &review)
            .await
            .unwrap();
        if reply.peer_cert == new {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed, mut seen) = (0, Vec::new(), Vec::new());
    for c in clients {
        let (o, f, s) = c.await.unwrap();
        ok += o;
        failed.extend(f);
        seen.extend(s);
    }
    eprintln!("rotation: {ok} requests answered, {} failed", failed.len());
    assert!(rotated, "the new certificate was never served");
    assert!(
        failed.is_empty(),
        "{} failed requests, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    assert!(ok >= 20, "only {ok} requests");
    assert!(seen.contains(&old), "clients saw the old certificate");
    assert!(seen.contains(&new), "clients saw the new certificate");
    let (_, text) = admin_get(ts.admin_addr(), "/metrics").await.unwrap();
    assert_eq!(
        metric(
            &text,
            "gke_wi_injector_reload_failures_total{source=\"tls\"}"
        ),
        None,
        "{text}"
    );
    let not_after = metric(
        &text,
        "gke_wi_injector_tls_certificate_not_after_timestamp_seconds",
    )
    .unwrap();
    assert!(not_after > 1.7e9, "{not_after}");
}

async fn served_cert(ts: &TestServer) -> Vec<u8> {
    post_review(
        ts.addr(),
        "localhost",
        apiserver_like(ts.ca.pem()),
        &pod_review("team", pod(), false),
    )
    .await
    .unwrap()
    .peer_cert
}

async fn reload_failures(ts: &TestServer) -> Option<f64> {
    let (_, text) = admin_get(ts.admin_addr(), "/metrics").await.unwrap();
    metric(
        &text,
        "gke_wi_injector_reload_failures_total{source=\"tls\"}",
    )
}

#[tokio::test]
async fn a_corrupt_or_mismatched_pair_is_refused_and_the_old_one_kept() {
    let ts = TestServer::start(RELOAD, GRACE).await;
    let original = served_cert(&ts).await;
    // Waits (bounded) until the failure counter reaches `n`, then checks it stays there.
    let failures_reach = |n: f64| {
        let ts = &ts;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while reload_failures(ts).await != Some(n) {
                assert!(
                    Instant::now() < deadline,
                    "reload failures never reached {n}"
                );
                tokio::time::sleep(RELOAD).await;
            }
            tokio::time::sleep(RELOAD * 6).await;
            assert_eq!(
                reload_failures(ts).await,
                Some(n),
                "reported once per bad pair, not once per poll"
            );
        }
    };

    // Unparsable certificate.
    support::write_atomically(
        &ts.cert_path,
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    failures_reach(1.0).await;
    assert_eq!(served_cert(&ts).await, original);

    // A well-formed certificate with the key of another one.
    let (a, b) = (ts.leaf(), ts.leaf());
    support::write_atomically(&ts.cert_path, a.cert_pem.as_bytes());
    support::write_atomically(&ts.key_path, b.key_pem.as_bytes());
    failures_reach(2.0).await;
    assert_eq!(served_cert(&ts).await, original);

    // A good pair afterwards is picked up.
    ts.write_pair(&a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cert(&ts).await != der_of(&a.cert_pem) {
        assert!(Instant::now() < deadline, "the good pair was never served");
        tokio::time::sleep(RELOAD).await;
    }
    assert_eq!(reload_failures(&ts).await, Some(2.0));
}
