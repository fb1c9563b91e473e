//! The built `gke-wi-injector inject` binary on files and standard input, including bad input:
//! one line naming file, document and field, a non-zero exit, and nothing on standard output.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use gke_wi_injector::commands::inject::INPUT_LIMITS;
use gke_wi_injector::engine::yaml;

const ON: &str = "gke-wi-injector.dev/inject=enabled";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gke-wi-injector"))
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The binary may exit before reading its input (refused flags): a broken pipe is fine.
    if let Err(e) = input.write_all(stdin.unwrap_or("").as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: app\n    image: app:1\n";

#[test]
fn file_in_yaml_out() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pod.yaml");
    std::fs::write(&f, POD).unwrap();
    let out = run(
        &[
            "inject",
            "-f",
            f.to_str().unwrap(),
            "--namespace-labels",
            ON,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pod = yaml::value(&text(&out.stdout), &INPUT_LIMITS).unwrap();
    assert_eq!(
        pod["spec"]["initContainers"][0]["name"],
        "gke-metadata-wait"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["env"][0]["value"],
        "169.254.169.254"
    );
}

#[test]
fn stdin_and_env_var_flags() {
    let mut cmd = bin();
    cmd.args(["inject", "-f", "-", "--output", "patch"])
        .env("GKE_WI_INJECTOR_NAMESPACE_LABELS", ON)
        .env("GKE_WI_INJECTOR_METADATA_HOST", "169.254.169.253")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(POD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ops: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(ops.to_string().contains("169.254.169.253"), "{ops}");
}

#[test]
fn not_opted_in_warns_on_stderr_and_passes_through() {
    let out = run(&["inject", "-f", "-"], Some(POD));
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("lacks gke-wi-injector.dev/inject=enabled"));
    let pod = yaml::value(&text(&out.stdout), &INPUT_LIMITS).unwrap();
    assert!(pod["spec"].get("initContainers").is_none());
}

fn assert_bad(args: &[&str], stdin: Option<&str>, must_contain: &[&str]) {
    let out = run(args, stdin);
    assert!(!out.status.success(), "expected failure");
    assert!(
        out.stdout.is_empty(),
        "partial output: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for s in must_contain {
        assert!(err.contains(s), "{err:?} lacks {s:?}");
    }
}

#[test]
fn broken_yaml_names_file_and_document() {
    let input = format!("{POD}---\nkind: Pod\nspec: [\n");
    assert_bad(
        &["inject", "-f", "-", "--namespace-labels", ON],
        Some(&input),
        &["<stdin>", "document 2", "(yaml)"],
    );
}

#[test]
fn containers_not_a_list_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        format!(
            "{POD}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: b}}\nspec:\n  containers: app\n"
        ),
    )
    .unwrap();
    assert_bad(
        &[
            "inject",
            "-f",
            f.to_str().unwrap(),
            "--namespace-labels",
            ON,
        ],
        None,
        &[
            "bad.yaml",
            "document 2",
            "spec.containers",
            "expected a list",
        ],
    );
}

#[test]
fn unknown_kind_inside_a_list() {
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n  spec: {containers: [{name: c}]}\n- apiVersion: example.com/v1\n  kind: Gizmo\n";
    assert_bad(
        &["inject", "-f", "-", "--namespace-labels", ON],
        Some(list),
        &["document 1", "items[1].kind", "Gizmo"],
    );
}

#[test]
fn missing_file_is_named() {
    assert_bad(
        &["inject", "-f", "/nonexistent/pods.yaml"],
        None,
        &["/nonexistent/pods.yaml"],
    );
}

#[test]
fn bad_flag_values_are_refused() {
    for (flag, value) in [
        ("--namespace-labels", "novalue"),
        ("--wait-memory-limit", "32MB"),
    ] {
        let out = run(&["inject", "-f", "-", flag, value], Some(POD));
        assert!(!out.status.success(), "{flag} {value} was accepted");
        assert!(text(&out.stderr).contains(flag), "{}", text(&out.stderr));
    }
}

#[test]
fn review_output_is_an_admission_review_per_pod() {
    let out = run(
        &[
            "inject",
            "-f",
            "-",
            "--namespace-labels",
            ON,
            "--output",
            "review",
        ],
        Some(POD),
    );
    assert!(out.status.success());
    let review: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(review["response"]["patchType"], "JSONPatch");
}

/// Nine anchors, each a list of nine aliases of the one before: 9^9 leaves from 400 bytes.
fn alias_bomb() -> String {
    let mut s = String::from("a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s
}

#[test]
fn proxy_config_alias_bomb_is_printed_untouched_with_a_warning() {
    let bomb = alias_bomb();
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "a", "annotations": {"proxy.istio.io/config": bomb}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    });
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bomb.yaml");
    std::fs::write(&f, yaml::to_string(&pod).unwrap()).unwrap();
    let labels = format!("{ON},gke-wi-injector.dev/istio=enabled");
    let started = std::time::Instant::now();
    let out = run(
        &[
            "inject",
            "-f",
            f.to_str().unwrap(),
            "--namespace-labels",
            &labels,
        ],
        None,
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = yaml::value(&text(&out.stdout), &INPUT_LIMITS).unwrap();
    assert_eq!(
        printed["metadata"]["annotations"]["proxy.istio.io/config"],
        bomb.as_str()
    );
    assert_eq!(
        printed["spec"]["initContainers"][0]["name"],
        "gke-metadata-wait"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("bomb.yaml") && err.contains("proxy.istio.io/config hits the aliases bound"),
        "{err}"
    );
}

#[test]
fn input_alias_bomb_names_file_and_document() {
    let input = format!("{POD}---\n{}", alias_bomb());
    assert_bad(
        &["inject", "-f", "-", "--namespace-labels", ON],
        Some(&input),
        &["<stdin>", "document 2", "(yaml)", "alias"],
    );
}
