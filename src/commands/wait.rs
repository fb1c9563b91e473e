//! The wait init container's program: poll the GKE metadata server's token endpoint until it
//! answers 2xx, with the GKE troubleshooting guide's curl semantics (SPEC §4.1).
//!
//! A small blocking HTTP/1.1 client on `std::net::TcpStream`: the metadata server speaks plain
//! HTTP, and the init container must start in milliseconds with no runtime. Every attempt's
//! connect and read timeouts are clipped to what is left of the total budget, and the pause
//! between attempts never runs past it. Nothing read from the server is ever printed: the body
//! is the Pod's access token.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Args;

use super::shared::{parse_duration, parse_nonzero_duration};
pub use crate::engine::metadata::{
    AddrError, DEFAULT_METADATA_IP, Host, MetadataAddr, TOKEN_PATH, parse_metadata_host,
};

/// The `wait` subcommand's flags.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Metadata server address: host, host:port or [IPv6]:port, as client libraries read it (empty = default).
    #[arg(long, env = "GCE_METADATA_HOST", default_value = "169.254.169.254", value_parser = parse_metadata_host)]
    pub metadata_host: MetadataAddr,

    /// Most attempts before giving up, the first included.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_ATTEMPTS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,

    /// Total time budget for all attempts; no attempt, timeout or pause runs past it.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_MAX_TIME", default_value = "60s", value_parser = parse_duration)]
    pub max_time: Duration,

    /// Connect timeout of one attempt.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_CONNECT_TIMEOUT", default_value = "3s", value_parser = parse_nonzero_duration)]
    pub connect_timeout: Duration,

    /// Time one attempt waits for the response's status line once connected.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_READ_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub read_timeout: Duration,

    /// Pause between attempts.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

/// Longest status line read before the response counts as malformed.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Socket addresses to try. A host name is resolved on a helper thread so that a slow
/// resolver, too, is bounded by `timeout`; `None` when it fails or runs out of time.
fn resolve(addr: &MetadataAddr, timeout: Duration) -> Option<Vec<SocketAddr>> {
    let name = match addr.host() {
        Host::Ip(ip) => return Some(vec![SocketAddr::new(*ip, addr.port())]),
        Host::Name(name) => name.clone(),
    };
    let port = addr.port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let addrs = (name.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect);
        let _ = tx.send(addrs);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => Some(addrs).filter(|a: &Vec<SocketAddr>| !a.is_empty()),
        _ => None,
    }
}

/// Bounds of the wait loop.
#[derive(Debug, Clone)]
pub struct WaitConfig {
    pub addr: MetadataAddr,
    /// Most attempts, counting the first.
    pub attempts: u32,
    /// Total budget: no attempt starts, and no timeout or pause runs, past it.
    pub max_time: Duration,
    /// Connect timeout of one attempt.
    pub connect_timeout: Duration,
    /// Time allowed for the status line once connected (writing the request included).
    pub read_timeout: Duration,
    /// Pause after a failed attempt.
    pub interval: Duration,
}

impl From<&WaitArgs> for WaitConfig {
    fn from(a: &WaitArgs) -> Self {
        WaitConfig {
            addr: a.metadata_host.clone(),
            attempts: a.attempts,
            max_time: a.max_time,
            connect_timeout: a.connect_timeout,
            read_timeout: a.read_timeout,
            interval: a.interval,
        }
    }
}

/// What one attempt saw. The `Display` text is what the log prints; it never holds response bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx status line: the metadata server serves tokens.
    Ready(u16),
    /// Any other status.
    Status(u16),
    Refused,
    ConnectTimedOut,
    ReadTimedOut,
    /// The host name did not resolve.
    Unresolved,
    /// The connection closed before a full status line arrived.
    Closed,
    /// The first line is not an HTTP/1.x status line.
    Malformed,
    /// Any other socket error.
    Io(io::ErrorKind),
}

impl Outcome {
    pub fn is_ready(self) -> bool {
        matches!(self, Outcome::Ready(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ready(code) | Outcome::Status(code) => write!(f, "HTTP {code}"),
            Outcome::Refused => f.write_str("connection refused"),
            Outcome::ConnectTimedOut => f.write_str("connect timed out"),
            Outcome::ReadTimedOut => f.write_str("timed out waiting for the response"),
            Outcome::Unresolved => f.write_str("host name did not resolve in time"),
            Outcome::Closed => f.write_str("connection closed before a status line"),
            Outcome::Malformed => f.write_str("malformed response (not an HTTP/1.x status line)"),
            Outcome::Io(kind) => write!(f, "connection error: {kind}"),
        }
    }
}

/// The metadata server answered 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub attempts: u32,
    pub status: u16,
    pub elapsed: Duration,
}

/// Every attempt failed, or the budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaveUp {
    pub attempts: u32,
    pub last: Option<Outcome>,
    pub elapsed: Duration,
}

/// The wait loop. Writes one line per attempt to `log`, never the response.
pub fn wait(cfg: &WaitConfig, log: &mut impl Write) -> Result<Ready, GaveUp> {
    let start = Instant::now();
    let deadline = start + cfg.max_time;
    let _ = writeln!(
        log,
        "waiting for {} (at most {} attempts within {:?})",
        cfg.addr.url(),
        cfg.attempts,
        cfg.max_time
    );
    let mut last = None;
    let mut made = 0;
    for n in 1..=cfg.attempts {
        if Instant::now() >= deadline {
            break;
        }
        let outcome = attempt(cfg, deadline);
        made = n;
        last = Some(outcome);
        let elapsed = start.elapsed();
        let _ = writeln!(
            log,
            "attempt {n}/{}: {outcome} ({:.2}s elapsed)",
            cfg.attempts,
            elapsed.as_secs_f64()
        );
        if let Outcome::Ready(status) = outcome {
            return Ok(Ready {
                attempts: n,
                status,
                elapsed,
            });
        }
        if n == cfg.attempts {
            break;
        }
        match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => std::thread::sleep(cfg.interval.min(left)),
            _ => break,
        }
    }
    Err(GaveUp {
        attempts: made,
        last,
        elapsed: start.elapsed(),
    })
}

/// `timeout` clipped to what is left before `deadline`; `None` when nothing is left.
pub fn clip(timeout: Duration, deadline: Instant) -> Option<Duration> {
    let left = deadline.checked_duration_since(Instant::now())?;
    let d = timeout.min(left);
    (!d.is_zero()).then_some(d)
}

/// One GET of the token endpoint, bounded by the attempt's timeouts and the overall deadline.
fn attempt(cfg: &WaitConfig, deadline: Instant) -> Outcome {
    // Resolving a host name counts against the connect timeout, as in curl.
    let connect_deadline = deadline.min(Instant::now() + cfg.connect_timeout);
    let Some(addrs) =
        clip(cfg.connect_timeout, connect_deadline).and_then(|t| resolve(&cfg.addr, t))
    else {
        return Outcome::Unresolved;
    };
    let mut stream = None;
    let mut last = Outcome::ConnectTimedOut;
    for addr in addrs {
        let Some(timeout) = clip(cfg.connect_timeout, connect_deadline) else {
            break;
        };
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = connect_error(&e),
        }
    }
    let Some(mut stream) = stream else {
        return last;
    };
    let read_deadline = deadline.min(Instant::now() + cfg.read_timeout);
    match exchange(&mut stream, &cfg.addr, read_deadline) {
        Ok(status) if (200..300).contains(&status) => Outcome::Ready(status),
        Ok(status) => Outcome::Status(status),
        Err(outcome) => outcome,
    }
}

fn connect_error(e: &io::Error) -> Outcome {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Outcome::Refused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Outcome::ConnectTimedOut,
        kind => Outcome::Io(kind),
    }
}

fn io_error(e: &io::Error) -> Outcome {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Outcome::ReadTimedOut,
        io::ErrorKind::UnexpectedEof => Outcome::Closed,
        kind => Outcome::Io(kind),
    }
}

/// The request bytes: HTTP/1.1 with the header the metadata server requires.
pub fn request(addr: &MetadataAddr) -> String {
    format!(
        "GET {TOKEN_PATH} HTTP/1.1\r\nHost: {}\r\nMetadata-Flavor: Google\r\nUser-Agent: gke-wi-injector-wait/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        addr.authority(),
        env!("CARGO_PKG_VERSION")
    )
}

/// Writes the request and reads up to the end of the status line; returns the status code.
fn exchange(
    stream: &mut TcpStream,
    addr: &MetadataAddr,
    deadline: Instant,
) -> Result<u16, Outcome> {
    let _ = stream.set_nodelay(true);
    let timeout = clip(Duration::MAX, deadline).ok_or(Outcome::ReadTimedOut)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| io_error(&e))?;
    stream
        .write_all(request(addr).as_bytes())
        .map_err(|e| io_error(&e))?;

    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            return parse_status_line(&buf[..end]).ok_or(Outcome::Malformed);
        }
        if buf.len() > MAX_STATUS_LINE {
            return Err(Outcome::Malformed);
        }
        let timeout = clip(Duration::MAX, deadline).ok_or(Outcome::ReadTimedOut)?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| io_error(&e))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Outcome::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(&e)),
        }
    }
}

/// `HTTP/1.x SP 3DIGIT [SP reason]` (a trailing `\r` allowed) → the status code.
pub fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let (code, reason) = rest.split_at_checked(3)?;
    if !code.iter().all(u8::is_ascii_digit) || !(reason.is_empty() || reason[0] == b' ') {
        return None;
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..=599).contains(&code).then_some(code)
}

/// `gke-wi-injector wait`: 0 once the token endpoint answers 2xx, otherwise the GKE guide's
/// message on stderr and 1.
pub fn run(args: &WaitArgs) -> i32 {
    let cfg = WaitConfig::from(args);
    let mut stderr = io::stderr().lock();
    match wait(&cfg, &mut stderr) {
        Ok(ready) => {
            let _ = writeln!(
                stderr,
                "metadata server ready: HTTP {} after {} attempt(s) in {:.2}s",
                ready.status,
                ready.attempts,
                ready.elapsed.as_secs_f64()
            );
            0
        }
        Err(_) => {
            let _ = writeln!(stderr, "{}", crate::engine::WAIT_FAILURE_MESSAGE);
            1
        }
    }
}

#[cfg(test)]
#[path = "wait_tests.rs"]
mod tests;
