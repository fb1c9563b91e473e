//! The built binary: `certs`, and the effect of `serve`'s configuration (namespace source,
//! certificate validation before binding, the development certificate, env vars, SIGTERM).

mod support;
use support::free_port;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use support::client::{admin_get, apiserver_like, post_review};
use support::{pod, pod_review};

const BIN: &str = env!("CARGO_BIN_EXE_gke-wi-injector");
const EXAMPLE_NAMESPACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/namespaces.yaml");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

/// Verifies `tls.crt` for `name` the way a TLS client does, trusting only `ca.crt`.
fn verify(dir: &Path, name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&dir.join("ca.crt"))).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    verifier
        .verify_server_cert(&der(&dir.join("tls.crt")), &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn certs_writes_a_ca_and_a_serving_certificate_for_the_service() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("certs");
    let out = run(&[
        "certs",
        "--service",
        "hook",
        "--namespace",
        "sys",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let ca = std::fs::read(out_dir.join("ca.crt")).unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(stdout.trim_end())
            .unwrap(),
        ca,
        "caBundle"
    );

    use std::os::unix::fs::PermissionsExt as _;
    let mode = |f: &str| {
        std::fs::metadata(out_dir.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        (mode("tls.key"), mode("tls.crt"), mode("ca.crt")),
        (0o600, 0o644, 0o644)
    );
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["ca.crt", "tls.crt", "tls.key"],
        "no temporary files left"
    );

    let cert = der(&out_dir.join("tls.crt"));
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
    let sans: Vec<String> = parsed
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        sans,
        [
            "DNSName(hook.sys.svc)",
            "DNSName(hook.sys.svc.cluster.local)",
            "DNSName(hook.sys)",
            "DNSName(hook)"
        ]
    );
    for name in [
        "hook.sys.svc",
        "hook.sys.svc.cluster.local",
        "hook.sys",
        "hook",
    ] {
        verify(&out_dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verify(&out_dir, "other.sys.svc").is_err());
    assert!(verify(&out_dir, "hook.other.svc").is_err());
}

#[test]
fn certs_refuses_to_overwrite_a_key_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    assert!(run(&["certs", "--out", dir]).status.success());
    let key = std::fs::read(tmp.path().join("tls.key")).unwrap();

    let again = run(&["certs", "--out", dir]);
    assert!(!again.status.success());
    assert_eq!(
        stderr(&again).trim(),
        format!(
            "error: {}/tls.key already exists; pass --force to replace it",
            dir
        )
    );
    assert_eq!(
        std::fs::read(tmp.path().join("tls.key")).unwrap(),
        key,
        "untouched"
    );

    let forced = run(&["certs", "--out", dir, "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(
        std::fs::read(tmp.path().join("tls.key")).unwrap(),
        key,
        "replaced"
    );
    verify(tmp.path(), "gke-wi-injector.gke-wi-injector.svc").unwrap();
}

#[test]
fn certs_names_a_bad_flag_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("never");
    let out = run(&[
        "certs",
        "--service",
        "My_Hook",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--service \"My_Hook\" is not a DNS label"),
        "{}",
        stderr(&out)
    );
    assert!(!out_dir.exists());
}

/// `serve` with no cluster configuration reachable: no in-cluster env, KUBECONFIG missing.
fn serve_outside_a_cluster(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(args)
        .env("GKE_WI_INJECTOR_LISTEN", "127.0.0.1:0")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("KUBECONFIG", home.path().join("no-such-kubeconfig"))
        .env("HOME", home.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .stdin(Stdio::null());
    cmd.output().unwrap()
}

#[test]
fn serve_without_a_cluster_or_a_namespaces_file_names_both() {
    let out = serve_outside_a_cluster(&[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("error: no namespace source: pass --namespaces FILE"),
        "{err}"
    );
    assert!(
        err.contains("in-cluster") && err.contains("KUBECONFIG"),
        "{err}"
    );
    assert!(
        err.contains("no-such-kubeconfig"),
        "names the file it tried: {err}"
    );
}

#[test]
fn serve_checks_the_certificate_before_binding() {
    // The port is taken: an error about the certificate proves it was checked first.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = serve_outside_a_cluster(&[
        "--listen",
        &port,
        "--tls-cert",
        "/nonexistent/tls.crt",
        "--tls-key",
        "/nonexistent/tls.key",
        "--namespaces",
        EXAMPLE_NAMESPACES,
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(
        err.trim(),
        "error: cannot read /nonexistent/tls.crt: No such file or directory (os error 2)"
    );
    assert!(!err.contains("Address already in use"), "{err}");
}

#[test]
fn serve_names_a_taken_port_and_logs_as_text_when_asked() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = serve_outside_a_cluster(&[
        "--listen",
        &port,
        "--namespaces",
        EXAMPLE_NAMESPACES,
        "--log-format",
        "text",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("error: cannot listen on --listen {port}: ")),
        "{err}"
    );
    let log = err
        .lines()
        .find(|l| l.contains("namespace labels from a file"))
        .expect("an info line");
    assert!(
        !log.starts_with('{') && log.contains(" INFO "),
        "text, not JSON: {log}"
    );
}

#[test]
fn serve_refuses_a_key_that_does_not_match_the_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert!(
        run(&["certs", "--out", a.to_str().unwrap()])
            .status
            .success()
    );
    assert!(
        run(&["certs", "--out", b.to_str().unwrap()])
            .status
            .success()
    );
    let (cert, key) = (a.join("tls.crt"), b.join("tls.key"));
    let out = serve_outside_a_cluster(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--namespaces",
        EXAMPLE_NAMESPACES,
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{} does not match the certificate in {}",
            key.display(),
            cert.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn serve_with_the_dev_certificate_answers_and_exits_0_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_path = tmp.path().join("dev-ca.crt");
    let (port, admin_port) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--namespaces",
            EXAMPLE_NAMESPACES,
            "--shutdown-delay",
            "0s",
        ])
        .env("GKE_WI_INJECTOR_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "GKE_WI_INJECTOR_ADMIN_LISTEN",
            format!("127.0.0.1:{admin_port}"),
        )
        .env("GKE_WI_INJECTOR_DEV_CA_OUT", &ca_path)
        .env("KUBECONFIG", tmp.path().join("none"))
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let admin = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin_get(admin, "/readyz").await.map(|r| r.0) != Ok(200) {
        assert!(Instant::now() < deadline, "not ready in time");
        assert!(child.try_wait().unwrap().is_none(), "exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let ca = std::fs::read_to_string(&ca_path).unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let reply = post_review(
            addr,
            host,
            apiserver_like(&ca),
            &pod_review("team-a", pod(), false),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json()["response"]["auditAnnotations"]["injected"],
            "metadata-wait,metadata-host"
        );
    }
    let reply = post_review(
        addr,
        "localhost",
        apiserver_like(&ca),
        &pod_review("team-b", pod(), false),
    )
    .await
    .unwrap();
    assert!(
        reply.json()["response"].get("patch").is_none(),
        "team-b is not opted in"
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));

    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .collect();
    let answered: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "admission review answered")
        .collect();
    assert_eq!(answered.len(), 3, "{logs}");
    // The span identifies the request; the event carries the result.
    let (span, event) = (&answered[0]["span"], answered[0]);
    assert_eq!(span["name"], "admission");
    assert_eq!(span["uid"], support::UID);
    assert_eq!(span["namespace"], "team-a");
    assert_eq!(span["operation"], "CREATE");
    assert_eq!(span["dry_run"], false);
    assert_eq!(event["generate_name"], "web-7d9c5b-");
    assert_eq!(event["outcome"], "mutated");
    assert_eq!(event["features"], "metadata-wait,metadata-host");
    assert!(event["patch_bytes"].as_u64().unwrap() > 0);
    assert!(event["duration_us"].as_u64().is_some());
    // Pod contents never reach the logs: no image, container name, env value or port. The check
    // reads every key and value but the ones the server fills from its clock and configuration
    // (time, duration, addresses, paths), where digits like "8080" can occur by chance.
    let mut texts = Vec::new();
    lines.iter().for_each(|line| log_strings(line, &mut texts));
    for secret in ["8080", "nginx", "fluent-bit", "169.254.169.254", "PORT"] {
        assert!(
            !texts.iter().any(|t| t.contains(secret)),
            "logs carry Pod contents ({secret}):\n{logs}"
        );
    }
    assert!(out.stdout.is_empty(), "logs go to stderr");
}

/// Every key and value of a JSON log line as text, except the fields the server fills from its
/// own clock and configuration (timestamp, duration, listen addresses, file paths).
fn log_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| log_strings(v, out)),
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                if matches!(
                    key.as_str(),
                    "timestamp" | "duration_us" | "listen" | "admin" | "ca_out" | "file"
                ) {
                    continue;
                }
                out.push(key.clone());
                log_strings(v, out);
            }
        }
        _ => {}
    }
}
