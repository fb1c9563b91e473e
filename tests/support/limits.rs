//! The real `serve` binary under attack: started with the development certificate and the
//! example namespaces on loopback ports, raw TLS connections, the process's file descriptors and
//! memory, and HTTP/2 frames written by hand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::client::{admin_get, apiserver_like, config, metric, post_review};
use super::{free_port, pod, pod_review};

const BIN: &str = env!("CARGO_BIN_EXE_gke-wi-injector");
const EXAMPLE_NAMESPACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/namespaces.yaml");

/// `serve` running as its own process; killed when dropped.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The development CA, read once `/readyz` answered.
    pub ca: String,
    pub ca_path: PathBuf,
    pub log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// A loopback address with a port free at the time of the call.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// How to start `serve`; [`Launch::new`] gives fresh ports and a temporary directory for the CA
/// and the log.
pub struct Launch<'a> {
    /// A shell prefix such as `ulimit -n 256 &&`, run before `exec`.
    pub wrap: &'a str,
    pub args: &'a [&'a str],
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub ca_path: PathBuf,
    pub log: PathBuf,
    /// Where stderr goes; `None`: the `log` file.
    pub stderr: Option<Stdio>,
    /// Holds `ca_path` and `log` of [`Launch::new`]; removed when the `Served` is dropped.
    pub dir: Option<tempfile::TempDir>,
}

impl<'a> Launch<'a> {
    pub fn new(args: &'a [&'a str]) -> Launch<'a> {
        let dir = tempfile::tempdir().unwrap();
        Launch {
            wrap: "",
            args,
            addr: free_addr(),
            admin: free_addr(),
            ca_path: dir.path().join("ca.crt"),
            log: dir.path().join("serve.log"),
            stderr: None,
            dir: Some(dir),
        }
    }

    /// Starts the process without waiting for it.
    pub fn spawn(self) -> Served {
        let script = format!("{} exec \"$0\" \"$@\"", self.wrap);
        let stderr = self
            .stderr
            .unwrap_or_else(|| std::fs::File::create(&self.log).unwrap().into());
        let child = Command::new("sh")
            .args([
                "-c",
                &script,
                BIN,
                "serve",
                "--namespaces",
                EXAMPLE_NAMESPACES,
            ])
            .args(["--listen", &self.addr.to_string()])
            .args(["--admin-listen", &self.admin.to_string()])
            .args(["--dev-ca-out", self.ca_path.to_str().unwrap()])
            .args(self.args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Served {
            child,
            addr: self.addr,
            admin: self.admin,
            ca: String::new(),
            ca_path: self.ca_path,
            log: self.log,
            _dir: self.dir,
        }
    }

    /// Starts the process and waits (bounded) until `/readyz` answers 200.
    pub async fn start(self) -> Served {
        self.spawn().ready().await
    }
}

impl Served {
    /// Waits (bounded) until `/readyz` answers 200, then reads the development CA.
    pub async fn ready(mut self) -> Served {
        let deadline = Instant::now() + Duration::from_secs(20);
        while admin_get(self.admin, "/readyz").await.map(|r| r.0) != Ok(200) {
            assert!(Instant::now() < deadline, "not ready: {}", self.logs());
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "exited: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.ca = std::fs::read_to_string(&self.ca_path).unwrap();
        self
    }

    /// Starts `serve` with `args`, waiting (bounded) until `/readyz` answers 200. `wrap` is a
    /// shell prefix such as `ulimit -n 256;` run before `exec`.
    pub async fn start_with(wrap: &str, args: &[&str]) -> Served {
        Launch {
            wrap,
            ..Launch::new(args)
        }
        .start()
        .await
    }

    /// Sends the signal `name` (`TERM`, `INT`, `HUP`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status, waiting at most `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn start(args: &[&str]) -> Served {
        Served::start_with("", args).await
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines whose message is `message`.
    pub fn log_lines(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["message"] == message)
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open file descriptors of the server process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// Resident memory of the server process, in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024.0
    }

    /// Peak resident memory of the server process so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024.0
    }

    /// A Prometheus series from `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = admin_get(self.admin, "/metrics").await.unwrap();
        metric(&text, series).unwrap_or(0.0)
    }

    pub async fn livez(&self) -> u16 {
        admin_get(self.admin, "/livez").await.map_or(0, |r| r.0)
    }

    /// A whole review on a new connection, as the API server sends it; the HTTP status.
    pub async fn review(&self) -> Result<u16, String> {
        let review = pod_review("team-a", pod(), false);
        let reply = post_review(self.addr, "localhost", apiserver_like(&self.ca), &review).await?;
        if reply.status == 200 {
            assert!(reply.json()["response"]["patch"].is_string());
        }
        Ok(reply.status)
    }

    /// A TLS connection offering only `alpn`, handshake done, nothing sent.
    pub async fn tls(&self, alpn: &[u8]) -> TlsStream<TcpStream> {
        self.try_tls(alpn).await.unwrap()
    }

    pub async fn try_tls(&self, alpn: &[u8]) -> Result<TlsStream<TcpStream>, String> {
        connect_tls(self.addr, client_config(&self.ca, alpn)).await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client_config(ca: &str, alpn: &[u8]) -> Arc<ClientConfig> {
    config(
        ca,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[alpn],
    )
}

pub async fn connect_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| e.to_string())
}

/// Reads until the server closes the connection (end of stream or an error), collecting what it
/// sent; `Err` with the bytes so far if it is still open at `deadline`.
pub async fn until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Instant,
) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await;
        match read {
            Err(_) => return Err(got),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A raw HTTP/1.1 response: status, lower-case headers, body.
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one HTTP/1.1 response with a Content-Length, within `timeout`.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<RawResponse, String> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!(
                    "closed before a response: {:?}",
                    String::from_utf8_lossy(&buf)
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line in {head:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed in the body".into());
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| "no response in time".to_string())?
}

/// The head of `POST /mutate` with a JSON body of `length` bytes.
pub fn post_head(length: usize) -> Vec<u8> {
    format!(
        "POST /mutate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// A review of exactly `length` bytes (padding in an unread field), for uploads.
pub fn review_of(length: usize) -> Vec<u8> {
    let mut review = pod_review("team-a", pod(), false);
    review["request"]["options"]["padding"] = serde_json::Value::String(String::new());
    let base = serde_json::to_vec(&review).unwrap().len();
    review["request"]["options"]["padding"] = serde_json::Value::String("x".repeat(length - base));
    let bytes = serde_json::to_vec(&review).unwrap();
    assert_eq!(bytes.len(), length);
    bytes
}

/// Writes `data` within `timeout`; false if the server stopped reading.
pub async fn write_within<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
    timeout: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(timeout, stream.write_all(data)).await,
        Ok(Ok(()))
    )
}

/// Sends one review on an HTTP/1.1 keep-alive connection and reads the answer's status.
pub async fn review_on<S>(conn: &mut S) -> u16
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

/// Opens `n` TCP connections to `addr`; how many the server closes within `wait`, and the
/// connections (those still open hold their slots until dropped).
pub async fn flood(addr: SocketAddr, n: usize, wait: Duration) -> (usize, Vec<TcpStream>) {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let deadline = Instant::now() + wait;
    let mut closed = 0;
    for conn in held.iter_mut() {
        if until_closed(conn, deadline).await.is_ok() {
            closed += 1;
        }
    }
    (closed, held)
}
