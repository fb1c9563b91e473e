use super::*;
use crate::fixtures::free_port;
use rstest::rstest;
use std::net::{IpAddr, Ipv4Addr};

#[rstest]
#[case::ok(b"HTTP/1.1 200 OK\r", Some(200))]
#[case::no_cr(b"HTTP/1.1 204 No Content", Some(204))]
#[case::no_reason(b"HTTP/1.0 500", Some(500))]
#[case::empty_reason(b"HTTP/1.1 404 \r", Some(404))]
#[case::http2(b"HTTP/2 200 OK", None)]
#[case::lowercase(b"http/1.1 200 OK", None)]
#[case::two_digits(b"HTTP/1.1 20 OK", None)]
#[case::four_digits(b"HTTP/1.1 2000 OK", None)]
#[case::out_of_range(b"HTTP/1.1 999 Weird", None)]
#[case::no_space(b"HTTP/1.1200 OK", None)]
#[case::garbage(b"ya29.secret-token", None)]
#[case::empty(b"", None)]
fn status_lines(#[case] line: &[u8], #[case] want: Option<u16>) {
    assert_eq!(parse_status_line(line), want);
}

#[test]
fn request_names_the_token_path_and_flavor_header() {
    let addr: MetadataAddr = "[::1]:8080".parse().unwrap();
    let req = request(&addr);
    assert!(
        req.starts_with(
            "GET /computeMetadata/v1/instance/service-accounts/default/token HTTP/1.1\r\n"
        ),
        "{req}"
    );
    assert!(req.contains("\r\nHost: [::1]:8080\r\n"), "{req}");
    assert!(req.contains("\r\nMetadata-Flavor: Google\r\n"), "{req}");
    assert!(req.ends_with("\r\n\r\n"), "{req}");
}

#[test]
fn clip_never_exceeds_the_deadline() {
    let deadline = Instant::now() + Duration::from_millis(200);
    let got = clip(Duration::from_secs(3), deadline).unwrap();
    assert!(got <= Duration::from_millis(200), "{got:?}");
    assert_eq!(
        clip(Duration::from_millis(5), deadline),
        Some(Duration::from_millis(5))
    );
    assert_eq!(
        clip(
            Duration::from_secs(1),
            Instant::now() - Duration::from_millis(1)
        ),
        None
    );
}

fn cfg(port: u16, attempts: u32, max_time: Duration) -> WaitConfig {
    WaitConfig {
        addr: MetadataAddr::new_ip(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        attempts,
        max_time,
        connect_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_millis(300),
        interval: Duration::from_millis(10),
    }
}

#[test]
fn gives_up_after_the_attempt_limit_with_one_log_line_each() {
    let mut log = Vec::new();
    let err = wait(&cfg(free_port(), 3, Duration::from_secs(10)), &mut log).unwrap_err();
    assert_eq!(err.attempts, 3);
    assert_eq!(err.last, Some(Outcome::Refused));
    let log = String::from_utf8(log).unwrap();
    let lines: Vec<_> = log.lines().filter(|l| l.starts_with("attempt ")).collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[2].starts_with("attempt 3/3: connection refused ("),
        "{log}"
    );
}

#[test]
fn the_pause_never_runs_past_the_budget() {
    let mut c = cfg(free_port(), 30, Duration::from_millis(200));
    c.interval = Duration::from_secs(30);
    let started = Instant::now();
    let err = wait(&c, &mut io::sink()).unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn host_names_are_resolved_and_connected() {
    let port = free_port();
    let mut c = cfg(port, 1, Duration::from_secs(5));
    c.addr = format!("localhost:{port}").parse().unwrap();
    let err = wait(&c, &mut io::sink()).unwrap_err();
    assert_eq!(err.last, Some(Outcome::Refused));
    c.addr = "name.invalid".parse().unwrap();
    let err = wait(&c, &mut io::sink()).unwrap_err();
    assert_eq!(err.last, Some(Outcome::Unresolved));
}

#[test]
fn a_zero_budget_makes_no_attempt() {
    let err = wait(&cfg(free_port(), 5, Duration::ZERO), &mut io::sink()).unwrap_err();
    assert_eq!((err.attempts, err.last), (0, None));
}
