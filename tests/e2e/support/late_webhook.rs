//! A second mutating webhook for the reinvocation case: a tiny HTTPS server on 127.0.0.1 that
//! appends a container `late-sidecar` to every Pod that lacks one ([`Mode::AddContainer`]), or
//! only adds an annotation ([`Mode::Annotate`]). It runs on its own thread and
//! runtime so that the test's blocking kubectl calls never starve it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

pub const CONTAINER: &str = "late-sidecar";
pub const ANNOTATION: &str = "e2e.gke-wi-injector.dev/late";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    AddContainer,
    Annotate,
}

/// What the late webhook saw: the Pod of each request it answered.
#[derive(Default)]
pub struct Seen {
    pub calls: AtomicUsize,
    pub pods: Mutex<Vec<Value>>,
}

pub struct LateWebhook {
    pub url: String,
    pub ca_pem: String,
    pub seen: Arc<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LateWebhook {
    pub fn start(mode: Mode) -> Result<LateWebhook> {
        let ca = gke_wi_injector::server::certs::Ca::new(
            "e2e late webhook CA",
            Duration::from_secs(3600),
        )?;
        let leaf = ca.issue(&["127.0.0.1".to_string()], Duration::from_secs(3600))?;
        let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Seen::default());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let seen2 = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("late webhook runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stopped => return,
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                    };
                    let acceptor = acceptor.clone();
                    let seen = seen2.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let svc = service_fn(move |req| handle(req, seen.clone(), mode));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), svc)
                            .await;
                    });
                }
            });
        });
        Ok(LateWebhook {
            url: format!("https://127.0.0.1:{port}/late"),
            ca_pem: ca.pem().to_string(),
            seen,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for LateWebhook {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    seen: Arc<Seen>,
    mode: Mode,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(400)),
    };
    match review(&body, &seen, mode) {
        Ok(v) => Ok(Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap_or_else(|_| status(500))),
        Err(_) => Ok(status(400)),
    }
}

fn status(code: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or_default();
    r
}

fn review(body: &[u8], seen: &Seen, mode: Mode) -> Result<Value> {
    let review: Value = serde_json::from_slice(body)?;
    let req = &review["request"];
    let uid = req["uid"].as_str().context("uid")?;
    let pod = &req["object"];
    seen.calls.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut pods) = seen.pods.lock() {
        pods.push(pod.clone());
    }
    let patch = match mode {
        Mode::AddContainer => {
            let has = pod["spec"]["containers"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["name"] == CONTAINER));
            (!has).then(|| {
                json!([{"op": "add", "path": "/spec/containers/-",
                        "value": {"name": CONTAINER, "image": "late:1"}}])
            })
        }
        Mode::Annotate => Some(if pod["metadata"]["annotations"].is_object() {
            json!([{"op": "add", "path": format!("/metadata/annotations/{}", ANNOTATION.replace('/', "~1")),
                    "value": "yes"}])
        } else {
            json!([{"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: "yes"}}])
        }),
    };
    let mut response = json!({"uid": uid, "allowed": true});
    if let Some(patch) = patch {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(crate::harness::b64(patch.to_string().as_bytes()));
    }
    Ok(
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "response": response}),
    )
}
