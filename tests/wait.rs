//! `gke-wi-injector wait`, the built binary, against a scripted metadata server on loopback:
//! refusals, error statuses, hangs past the connect and read timeouts, malformed answers, and
//! finally 200. Checks the request sent, the attempt count, the time bound, the exit code, the
//! guide's message, and that the token never reaches the output.

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::free_port;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use gke_wi_injector::WAIT_FAILURE_MESSAGE;

const BIN: &str = env!("CARGO_BIN_EXE_gke-wi-injector");
const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// What the server puts in every body; it must never appear in the output.
const SECRET: &str = "ya29.c.SECRET-TOKEN-must-never-be-logged";

/// How the fake metadata server answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Reads the request, then says nothing until the client hangs up.
    Hang,
    /// Sends bytes that are not an HTTP status line.
    Garbage,
    /// Closes the connection without answering.
    Close,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A metadata server on 127.0.0.1 that answers the n-th request with `script[n]` (the last entry
/// repeats) and records every request. Its threads end when the test process does.
struct FakeMetadata {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeMetadata {
    fn start(script: &[Answer]) -> Self {
        assert!(!script.is_empty());
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = script.to_vec();
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            // Bounded: no test makes more than a few dozen requests.
            for (n, conn) in listener.incoming().take(1000).enumerate() {
                let Ok(conn) = conn else { continue };
                let answer = script[n.min(script.len() - 1)];
                let log = Arc::clone(&log);
                thread::spawn(move || serve(conn, answer, &log));
            }
        });
        FakeMetadata { addr, seen }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut conn: TcpStream, answer: Answer, log: &Mutex<Vec<Seen>>) {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let Some(seen) = read_request(&mut conn) else {
        return;
    };
    log.lock().unwrap().push(seen);
    let reply = match answer {
        Answer::Status(code) => format!(
            "HTTP/1.1 {code} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{}",
            body().len(),
            body()
        ),
        Answer::Garbage => format!("{SECRET}\r\n\r\n"),
        Answer::Close => return,
        Answer::Hang => {
            // Wait (bounded) for the client to give up and close its end.
            let mut sink = [0u8; 64];
            let _ = conn.read(&mut sink);
            return;
        }
    };
    let _ = conn.write_all(reply.as_bytes());
}

fn body() -> String {
    format!(r#"{{"access_token":"{SECRET}","expires_in":3599,"token_type":"Bearer"}}"#)
}

fn read_request(conn: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(buf).ok()?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Seen {
        request_line,
        headers,
    })
}

/// A listener with a backlog of 0 whose accept queue is full and never drained: Linux drops
/// further SYNs, so a new connect hangs until the client's connect timeout. Returns the listener
/// and the filler connections, which must stay alive.
fn blackhole() -> (TcpListener, Vec<TcpStream>, SocketAddr) {
    // std listens with a backlog of 128 or more; tokio's TcpSocket lets us choose it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let listener = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        socket.listen(0).unwrap().into_std().unwrap()
    });
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..64 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (listener, fillers, addr),
            Err(e) => panic!("filling the accept queue of {addr}: {e}"),
        }
    }
    panic!(
        "the accept queue of {addr} never filled after {} connections",
        fillers.len()
    );
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn attempt_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("attempt "))
            .collect()
    }

    fn assert_gave_up(&self) {
        assert_eq!(self.code, Some(1), "stderr:\n{}", self.stderr);
        assert_eq!(
            self.stderr.lines().last(),
            Some(WAIT_FAILURE_MESSAGE),
            "stderr:\n{}",
            self.stderr
        );
    }

    fn assert_no_secret(&self) {
        assert!(!self.stdout.contains("SECRET"), "stdout:\n{}", self.stdout);
        assert!(!self.stderr.contains("SECRET"), "stderr:\n{}", self.stderr);
        assert!(
            !self.stderr.contains("access_token"),
            "stderr:\n{}",
            self.stderr
        );
    }
}

/// Runs `gke-wi-injector wait` with fast bounds; `extra` flags replace the defaults they name.
fn wait(host: &str, extra: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("wait").args(["--metadata-host", host]);
    for (flag, value) in [
        ("--interval", "50ms"),
        ("--connect-timeout", "300ms"),
        ("--read-timeout", "300ms"),
    ] {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra);
    for (k, _) in std::env::vars() {
        if k == "GCE_METADATA_HOST" || k.starts_with("GKE_WI_INJECTOR_") {
            cmd.env_remove(k);
        }
    }
    run(cmd)
}

fn run(mut cmd: Command) -> Run {
    let started = Instant::now();
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("running gke-wi-injector");
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
        took: started.elapsed(),
    }
}

#[test]
fn refused_every_time_gives_up_after_the_attempt_limit() {
    let port = free_port();
    let run = wait(&format!("127.0.0.1:{port}"), &["--attempts", "4"]);
    run.assert_gave_up();
    let lines = run.attempt_lines();
    assert_eq!(lines.len(), 4, "stderr:\n{}", run.stderr);
    for (i, line) in lines.iter().enumerate() {
        let want = format!("attempt {}/4: connection refused (", i + 1);
        assert!(
            line.starts_with(&want),
            "{line:?} should start with {want:?}"
        );
        assert!(line.ends_with("s elapsed)"), "{line:?}");
    }
    assert!(run.stdout.is_empty(), "stdout:\n{}", run.stdout);
    // Three pauses of 50 ms, no more than a few seconds in all.
    assert!(run.took >= Duration::from_millis(150), "{:?}", run.took);
    assert!(run.took < Duration::from_secs(5), "{:?}", run.took);
}

#[test]
fn every_kind_of_error_is_retried_until_200() {
    let server = FakeMetadata::start(&[
        Answer::Status(500),
        Answer::Status(404),
        Answer::Hang,
        Answer::Garbage,
        Answer::Close,
        Answer::Status(403),
        Answer::Status(200),
    ]);
    let run = wait(&server.host(), &["--attempts", "10"]);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert!(run.stdout.is_empty(), "stdout:\n{}", run.stdout);
    let outcomes: Vec<&str> = run
        .attempt_lines()
        .iter()
        .map(|l| l.split_once(": ").unwrap().1.split(" (").next().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "HTTP 500",
            "HTTP 404",
            "timed out waiting for the response",
            "malformed response",
            "connection closed before a status line",
            "HTTP 403",
            "HTTP 200",
        ],
        "stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("metadata server ready: HTTP 200 after 7 attempt(s)"),
        "stderr:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains(WAIT_FAILURE_MESSAGE));
    run.assert_no_secret();

    let seen = server.seen();
    assert_eq!(seen.len(), 7, "{seen:?}");
    for s in &seen {
        assert_eq!(s.request_line, format!("GET {TOKEN_PATH} HTTP/1.1"));
        assert_eq!(s.header("Metadata-Flavor"), Some("Google"), "{s:?}");
        assert_eq!(s.header("Host"), Some(server.host().as_str()), "{s:?}");
    }
}

#[test]
fn error_statuses_until_the_limit_give_up_with_the_guides_message() {
    let server = FakeMetadata::start(&[Answer::Status(500), Answer::Status(404)]);
    let run = wait(&server.host(), &["--attempts", "5"]);
    run.assert_gave_up();
    assert_eq!(server.seen().len(), 5);
    let lines = run.attempt_lines();
    assert_eq!(lines.len(), 5, "stderr:\n{}", run.stderr);
    assert!(lines[0].starts_with("attempt 1/5: HTTP 500 ("), "{lines:?}");
    assert!(lines[4].starts_with("attempt 5/5: HTTP 404 ("), "{lines:?}");
    run.assert_no_secret();
}

#[test]
fn a_2xx_other_than_200_counts_as_ready() {
    let server = FakeMetadata::start(&[Answer::Status(204)]);
    let run = wait(&server.host(), &[]);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    let lines = run.attempt_lines();
    assert_eq!(lines.len(), 1, "stderr:\n{}", run.stderr);
    assert!(
        lines[0].starts_with("attempt 1/30: HTTP 204 ("),
        "{lines:?}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_server_that_never_answers_is_bounded_by_the_read_timeout() {
    let server = FakeMetadata::start(&[Answer::Hang]);
    let run = wait(&server.host(), &["--attempts", "3", "--max-time", "20s"]);
    run.assert_gave_up();
    assert_eq!(server.seen().len(), 3);
    assert_eq!(run.attempt_lines().len(), 3, "stderr:\n{}", run.stderr);
    assert!(
        run.attempt_lines()
            .iter()
            .all(|l| l.contains(": timed out waiting for the response (")),
        "stderr:\n{}",
        run.stderr
    );
    // 3 × 300 ms read timeout + 2 × 50 ms pause.
    assert!(run.took >= Duration::from_millis(1000), "{:?}", run.took);
    assert!(run.took < Duration::from_secs(6), "{:?}", run.took);
}

#[test]
fn a_connect_that_never_completes_is_bounded_by_the_connect_timeout() {
    let (_listener, _fillers, addr) = blackhole();
    let run = wait(&addr.to_string(), &["--attempts", "3", "--max-time", "20s"]);
    run.assert_gave_up();
    let lines = run.attempt_lines();
    assert_eq!(lines.len(), 3, "stderr:\n{}", run.stderr);
    assert!(
        lines.iter().all(|l| l.contains(": connect timed out (")),
        "stderr:\n{}",
        run.stderr
    );
    // 3 × 300 ms connect timeout + 2 × 50 ms pause.
    assert!(run.took >= Duration::from_millis(1000), "{:?}", run.took);
    assert!(run.took < Duration::from_secs(6), "{:?}", run.took);
}

#[test]
fn the_total_budget_clips_a_longer_connect_timeout() {
    let (_listener, _fillers, addr) = blackhole();
    let run = wait(
        &addr.to_string(),
        &["--connect-timeout", "30s", "--max-time", "700ms"],
    );
    run.assert_gave_up();
    assert_eq!(run.attempt_lines().len(), 1, "stderr:\n{}", run.stderr);
    assert!(run.took >= Duration::from_millis(700), "{:?}", run.took);
    assert!(run.took < Duration::from_secs(4), "{:?}", run.took);
}

#[test]
fn the_total_budget_ends_the_retries_before_the_attempt_limit() {
    let server = FakeMetadata::start(&[Answer::Hang]);
    let run = wait(
        &server.host(),
        &[
            "--attempts",
            "1000",
            "--max-time",
            "1s",
            "--read-timeout",
            "5s",
        ],
    );
    run.assert_gave_up();
    // Each attempt's read timeout is clipped to the budget: one attempt, then out of time.
    assert_eq!(run.attempt_lines().len(), 1, "stderr:\n{}", run.stderr);
    assert_eq!(server.seen().len(), 1);
    assert!(run.took >= Duration::from_secs(1), "{:?}", run.took);
    assert!(run.took < Duration::from_secs(4), "{:?}", run.took);
}

#[test]
fn the_host_comes_from_gce_metadata_host() {
    let server = FakeMetadata::start(&[Answer::Status(200)]);
    let mut cmd = Command::new(BIN);
    cmd.args(["wait", "--attempts", "2"])
        .env("GCE_METADATA_HOST", server.host());
    let run = run(cmd);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "waiting for http://{}{TOKEN_PATH} (at most 2 attempts within 60s)\n",
            server.host()
        )),
        "stderr:\n{}",
        run.stderr
    );
    assert_eq!(server.seen().len(), 1);
    run.assert_no_secret();
}

#[test]
fn the_bounds_come_from_the_environment() {
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.arg("wait")
        .env("GCE_METADATA_HOST", format!("127.0.0.1:{port}"))
        .env("GKE_WI_INJECTOR_WAIT_ATTEMPTS", "2")
        .env("GKE_WI_INJECTOR_WAIT_INTERVAL", "10ms")
        .env("GKE_WI_INJECTOR_WAIT_MAX_TIME", "5s")
        .env("GKE_WI_INJECTOR_WAIT_CONNECT_TIMEOUT", "200ms")
        .env("GKE_WI_INJECTOR_WAIT_READ_TIMEOUT", "200ms");
    let run = run(cmd);
    run.assert_gave_up();
    assert_eq!(run.attempt_lines().len(), 2, "stderr:\n{}", run.stderr);
    assert!(run.stderr.starts_with("waiting for http://127.0.0.1:"));
    assert!(
        run.stderr.contains("(at most 2 attempts within 5s)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_bad_metadata_host_is_a_usage_error_naming_the_flag() {
    let run = wait("http://169.254.169.254/", &[]);
    assert_eq!(run.code, Some(2), "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("--metadata-host"),
        "stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("must be host or host:port"),
        "stderr:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains(WAIT_FAILURE_MESSAGE));
}

#[test]
fn an_empty_gce_metadata_host_means_the_default_address() {
    let mut cmd = Command::new(BIN);
    cmd.args(["wait", "--attempts", "1", "--max-time", "10ms"])
        .env("GCE_METADATA_HOST", "");
    let run = run(cmd);
    run.assert_gave_up();
    assert!(
        run.stderr.starts_with(&format!(
            "waiting for http://169.254.169.254{TOKEN_PATH} (at most 1 attempts within 10ms)\n"
        )),
        "stderr:\n{}",
        run.stderr
    );
}

#[test]
fn zero_attempts_is_a_usage_error() {
    let run = wait("127.0.0.1:1", &["--attempts", "0"]);
    assert_eq!(run.code, Some(2), "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("--attempts"), "stderr:\n{}", run.stderr);
}
