//! An HTTPS client for the tests: rustls trusting only the given CA, one connection per request,
//! HTTP/2 or HTTP/1.1 as ALPN decides (hyper's client connection API).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::http::{HeaderMap, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A client configuration that trusts only `ca_pem`.
pub fn config(
    ca_pem: &str,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // A full handshake every time, as kube-apiserver's client does: a resumed session would
    // report the certificate of the session it resumes, not the one served now.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// TLS 1.3 and 1.2, ALPN http/1.1 only: what kube-apiserver offers a Service webhook.
pub fn apiserver_like(ca_pem: &str) -> Arc<ClientConfig> {
    config(
        ca_pem,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"http/1.1"],
    )
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// DER of the certificate the server presented.
    pub peer_cert: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
    pub tls_version: Option<rustls::ProtocolVersion>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Connects (new TCP + TLS connection), sends one request, reads the whole answer. Every error
/// is returned as text (the rotation test counts them).
pub async fn request(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    let peer_cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let tls_version = session.protocol_version();
    let h2 = alpn.as_deref() == Some(b"h2");

    let mut req = Request::builder()
        .method(method)
        .uri(if h2 {
            format!("https://{server_name}{path}")
        } else {
            path.to_string()
        })
        .header("host", server_name);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let io = TokioIo::new(tls);
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2: {e}"))?;
        tokio::spawn(conn);
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("h1: {e}"))?;
        tokio::spawn(conn);
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes()
        .to_vec();
    Ok(Reply {
        status,
        headers,
        body,
        peer_cert,
        alpn,
        tls_version,
    })
}

/// `POST /mutate?timeout=10s` with a review, as the API server sends it.
pub async fn post_review(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    review: &serde_json::Value,
) -> Result<Reply, String> {
    let body = serde_json::to_vec(review).unwrap();
    request(
        addr,
        server_name,
        config,
        "POST",
        "/mutate?timeout=10s",
        Some("application/json"),
        body,
    )
    .await
}

/// A plain-HTTP GET on the admin listener: (status, body).
pub async fn admin_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "admin")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The value of one metric line (`name{labels}`) in Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}
