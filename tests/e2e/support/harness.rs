//! The injector under test (the real `gke-wi-injector serve` binary, real TLS, authenticating to
//! the real API server) and the kubectl plumbing the e2e cases share.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use gke_wi_injector::engine::yaml;
use serde_json::Value;

use crate::control_plane::ControlPlane;

pub const BIN: &str = env!("CARGO_BIN_EXE_gke-wi-injector");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// Runs a command to completion; an error carries its stdout and stderr.
pub fn run(cmd: Command) -> Result<String> {
    run_stdin(cmd, "")
}

/// Runs a command with `input` on its standard input.
pub fn run_stdin(mut cmd: Command, input: &str) -> Result<String> {
    let out = output(&mut cmd, input)?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs a command with `input` on stdin and returns its output whatever the exit status.
pub fn output(cmd: &mut Command, input: &str) -> Result<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(input.as_bytes())?;
    drop(stdin);
    Ok(child.wait_with_output()?)
}

/// `kubectl <args> -o json` as the admin, parsed.
pub fn kubectl_json(cp: &ControlPlane, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&run(cp.kubectl(&all))?)?)
}

/// `kubectl <args> -f - -o json` with `obj` on stdin, as the admin; returns the object the API
/// server answered with (for `create`/`apply`: the stored, mutated object).
pub fn kubectl_obj(cp: &ControlPlane, args: &[&str], obj: &Value) -> Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-f", "-", "-o", "json"]);
    let out = run_stdin(cp.kubectl(&all), &obj.to_string())?;
    Ok(serde_json::from_str(&out)?)
}

/// Creates `obj` through the API (`kubectl create`) and returns what was stored.
pub fn create(cp: &ControlPlane, obj: &Value) -> Result<Value> {
    kubectl_obj(cp, &["create"], obj)
}

/// N distinct free loopback ports.
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}

/// Plain HTTP/1.1 GET on 127.0.0.1:port: (status code, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status in {text:?}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP body in {text:?}"))?;
    // Decode a chunked body (hyper chunks bodies of unknown length).
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16)?;
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        return Ok((status, out));
    }
    Ok((status, body.to_string()))
}

/// The injector under test: `gke-wi-injector serve` with its generated development
/// certificate (which covers 127.0.0.1), reading Namespaces from the API server as `user`.
pub struct Injector {
    child: Option<Child>,
    /// SIGKILLs the injector if this test process dies without running `Drop` (see
    /// control_plane.rs's `Supervised`): it reads a pipe only we hold and kills on EOF.
    watchdog: Option<(Child, std::process::ChildStdin)>,
    pub port: u16,
    pub admin_port: u16,
    pub ca_pem: String,
    pub log: PathBuf,
}

impl Injector {
    /// Starts `serve` and waits for `/readyz` (namespace cache synced, certificate loaded).
    pub fn start(dir: &Path, kubeconfig: &Path) -> Result<Injector> {
        Injector::start_with(dir, kubeconfig, "injector", None)
    }

    /// Starts `serve` named `name` (its log is `dir/<name>.log`), with the generated development
    /// certificate, or with `--tls-cert`/`--tls-key` files `(cert, key, CA PEM)` re-read every
    /// 200 ms.
    ///
    /// A start that fails because one of its two free ports was taken in the meantime (the e2e
    /// tests run in parallel) is retried with new ports.
    pub fn start_with(
        dir: &Path,
        kubeconfig: &Path,
        name: &str,
        tls: Option<(&Path, &Path, &str)>,
    ) -> Result<Injector> {
        let mut attempt = 1;
        loop {
            match Injector::start_once(dir, kubeconfig, name, tls) {
                Err(e)
                    if attempt < 3
                        && format!("{e:#}")
                            .to_lowercase()
                            .contains("address already in use") =>
                {
                    eprintln!("{name}: a port was taken before it was bound; retrying");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn start_once(
        dir: &Path,
        kubeconfig: &Path,
        name: &str,
        tls: Option<(&Path, &Path, &str)>,
    ) -> Result<Injector> {
        let [port, admin_port] = free_ports::<2>()?;
        let ca_out = dir.join(format!("{name}-dev-ca.crt"));
        let log = dir.join(format!("{name}.log"));
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(BIN);
        // Nothing from the caller's environment may configure the injector.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("GKE_WI_INJECTOR_") {
                cmd.env_remove(k);
            }
        }
        cmd.args([
            "serve",
            &format!("--listen=127.0.0.1:{port}"),
            &format!("--admin-listen=127.0.0.1:{admin_port}"),
            "--log-format=text",
            "--shutdown-delay=0s",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf);
        match tls {
            Some((cert, key, _)) => cmd.args([
                format!("--tls-cert={}", cert.display()),
                format!("--tls-key={}", key.display()),
                "--reload-interval=200ms".to_string(),
            ]),
            None => cmd.arg(format!("--dev-ca-out={}", ca_out.display())),
        };
        let child = cmd.spawn().context("spawning gke-wi-injector serve")?;
        let watchdog = Command::new("sh")
            .args([
                "-c",
                "while read -r _; do :; done; kill -KILL \"$1\" 2>/dev/null",
                "gke-wi-e2e-watchdog",
                &child.id().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
            .and_then(|mut w| w.stdin.take().map(|s| (w, s)));
        let mut inj = Injector {
            child: Some(child),
            watchdog,
            port,
            admin_port,
            ca_pem: String::new(),
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = inj.child.as_mut().context("child")?.try_wait()? {
                bail!(
                    "injector exited with {status} before /readyz\n{}",
                    inj.log_text()
                );
            }
            if let Ok((200, _)) = http_get(admin_port, "/readyz") {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "injector not ready after {READY_TIMEOUT:?}\n{}",
                    inj.log_text()
                );
            }
            std::thread::sleep(POLL);
        }
        inj.ca_pem = match tls {
            Some((_, _, ca)) => ca.to_string(),
            None => fs::read_to_string(&ca_out)
                .with_context(|| format!("reading {}", ca_out.display()))?,
        };
        Ok(inj)
    }

    /// `https://127.0.0.1:PORT/mutate`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/mutate", self.port)
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> Result<String> {
        let (status, body) = http_get(self.admin_port, "/metrics")?;
        ensure!(status == 200, "/metrics answered {status}: {body}");
        Ok(body)
    }

    /// One sample of `/metrics`: the value of the line `name{labels} v` (or `name v`), 0 if absent.
    pub fn sample(&self, series: &str) -> Result<f64> {
        Ok(sample(&self.metrics()?, series))
    }

    /// Sum of every `gke_wi_injector_admission_requests_total{...}` sample: all reviews received.
    pub fn requests_total(&self) -> Result<f64> {
        let text = self.metrics()?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("gke_wi_injector_admission_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILLs the process (no drain): the API server sees connection refused.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The child is reaped; stop the watchdog without letting it signal a reused pid.
        if let Some((mut w, stdin)) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
            drop(stdin);
        }
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of the sample line that starts with `series ` in Prometheus text; 0 if absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// `kubectl kustomize <dir>` split into its documents.
pub fn kustomize(cp: &ControlPlane, dir: &Path) -> Result<Vec<Value>> {
    let out = run(cp.kubectl(&["kustomize", &dir.display().to_string()]))?;
    Ok(yaml::documents(
        &out,
        &gke_wi_injector::commands::inject::INPUT_LIMITS,
    )?)
}

/// The document of `kind` named `name`.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .ok_or_else(|| anyhow!("no {kind} {name} in the rendered manifests"))
}

/// Standard base64.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The leaf certificate 127.0.0.1:port serves, fetched with a TLS handshake that trusts only
/// `ca_pem` (and checks the IP SAN, as the API server does).
pub fn served_certificate(port: u16, ca_pem: &str) -> Result<Vec<u8>> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let mut sock = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| anyhow!("no peer certificate"))?;
    Ok(leaf.to_vec())
}
