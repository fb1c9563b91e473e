//! The engine's golden fixtures (`tests/fixtures/inject`) through the HTTP endpoint: every Pod
//! document is sent as a Pod CREATE review to `router()`, the returned patch is applied to the
//! Pod as sent, and the result must equal the `inject` golden output; warnings must match too.
//! The AdmissionReview fixture must get the golden response byte for byte (as JSON).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use clap::Parser as _;
use gke_wi_injector::admission::OnError;
use gke_wi_injector::cli::{Cli, Command};
use gke_wi_injector::commands::inject::INPUT_LIMITS;
use gke_wi_injector::commands::inject::{InjectArgs, OutputFormat};
use gke_wi_injector::engine::yaml;
use gke_wi_injector::server::metrics::Metrics;
use gke_wi_injector::server::{AppState, router};
use http_body_util::BodyExt as _;
use serde_json::Value;
use support::{StaticNamespaces, pod_review};
use tower::ServiceExt as _;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inject")
}

fn documents(text: &str) -> Vec<Value> {
    yaml::documents(text, &INPUT_LIMITS).unwrap()
}

/// The fixture's `# inject: FLAGS` line, parsed as the CLI would.
fn flags(text: &str, path: &Path) -> InjectArgs {
    let header = text.lines().next().unwrap();
    let flags = header
        .strip_prefix("# inject:")
        .unwrap_or_else(|| panic!("{}: no # inject: line", path.display()));
    let mut argv = vec!["gke-wi-injector", "inject", "-f", "fixture"];
    argv.extend(flags.split_whitespace());
    match Cli::try_parse_from(&argv).unwrap().command {
        Command::Inject(args) => args,
        _ => unreachable!(),
    }
}

fn state_for(args: &InjectArgs, namespace: &str) -> AppState {
    AppState {
        config: Arc::new(args.mutation.to_config()),
        on_error: OnError::Allow,
        namespaces: Arc::new(StaticNamespaces {
            namespaces: HashMap::from([(
                namespace.to_string(),
                Arc::new(args.namespace_labels.clone()),
            )]),
            miss_reason: "not in the fixture".into(),
        }),
        metrics: Arc::new(Metrics::new()),
        body_timeout: gke_wi_injector::server::BODY_TIMEOUT,
        body_budget: gke_wi_injector::server::budget::BodyBudget::new(
            gke_wi_injector::server::BODY_BUDGET_BYTES,
        ),
    }
}

async fn post(state: AppState, body: String) -> Value {
    let request = Request::post("/mutate?timeout=10s")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = router(state).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn every_golden_pod_gets_the_golden_result_over_http() {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    inputs.sort();
    let mut pods_checked = 0;
    let mut warnings_checked = 0;
    for input in &inputs {
        let text = std::fs::read_to_string(input).unwrap();
        let args = flags(&text, input);
        if args.output != OutputFormat::Yaml {
            continue;
        }
        let stem = input
            .to_string_lossy()
            .trim_end_matches(".in.yaml")
            .to_string();
        let expected = documents(&std::fs::read_to_string(format!("{stem}.out.yaml")).unwrap());
        let golden_warnings =
            std::fs::read_to_string(format!("{stem}.warnings.txt")).unwrap_or_default();
        let mut warnings = Vec::new();
        for (i, doc) in documents(&text).into_iter().enumerate() {
            if doc["kind"] != "Pod" {
                continue;
            }
            let namespace = doc["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&args.namespace)
                .to_string();
            let answer = post(
                state_for(&args, &namespace),
                pod_review(&namespace, doc.clone(), false).to_string(),
            )
            .await;
            let response = &answer["response"];
            assert_eq!(response["allowed"], true, "{}", input.display());
            let mut pod = doc;
            if let Some(b64) = response["patch"].as_str() {
                let patch: json_patch::Patch = serde_json::from_slice(
                    &base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap(),
                )
                .unwrap();
                json_patch::patch(&mut pod, &patch)
                    .unwrap_or_else(|e| panic!("{}: {e}", input.display()));
            } else {
                assert!(response.get("patchType").is_none());
            }
            assert_eq!(pod, expected[i], "{} document {}", input.display(), i + 1);
            pods_checked += 1;
            for w in response["warnings"].as_array().into_iter().flatten() {
                warnings.push(w.as_str().unwrap().to_string());
            }
        }
        let golden: Vec<&str> = golden_warnings.lines().collect();
        assert_eq!(
            warnings.len(),
            golden.len(),
            "{}: {warnings:?}",
            input.display()
        );
        for (got, want) in warnings.iter().zip(&golden) {
            assert!(
                want.ends_with(got.as_str()),
                "{}: {want:?} vs {got:?}",
                input.display()
            );
            warnings_checked += 1;
        }
    }
    assert!(pods_checked >= 15, "only {pods_checked} Pods");
    assert!(warnings_checked >= 4, "only {warnings_checked} warnings");
}

#[tokio::test]
async fn the_admission_review_fixture_gets_the_golden_response() {
    let input = fixtures().join("admission-review.in.yaml");
    let text = std::fs::read_to_string(&input).unwrap();
    let args = flags(&text, &input);
    let body: String = text.lines().skip(1).collect::<Vec<_>>().join("\n");
    let review: Value = serde_json::from_str(&body).unwrap();
    let namespace = review["request"]["namespace"].as_str().unwrap();
    let answer = post(state_for(&args, namespace), body.clone()).await;
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("admission-review.out.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(answer, golden);
}
