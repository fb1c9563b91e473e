//! Engine cost per AdmissionReview: decode + plan + patch + encode, as the server pays it.
//! `cargo bench --bench engine`; the figures are reported in the README ("Performance").
//!
//! With `ENGINE_BENCH_ITERATIONS=N` (and `ENGINE_BENCH_CASE=noop` or `typical`) the binary instead
//! answers that review N times and exits, for instruction counts that other processes on the
//! machine do not disturb:
//!
//! ```text
//! bin=$(cargo bench --bench engine --no-run 2>&1 | grep -o '/[^ )]*engine-[0-9a-f]*')
//! ENGINE_BENCH_CASE=typical ENGINE_BENCH_ITERATIONS=1100 valgrind --tool=callgrind "$bin"
//! ```
//!
//! Two counts, subtracted, leave start-up out: (I(1100) - I(100)) / 1000 per review.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use gke_wi_injector::admission::{NamespaceLabels, OnError, Review};
use gke_wi_injector::engine::policy::{Config, Labels};
use serde_json::Value;

mod common;
use common::{pod, review};

/// The binary's allocator (src/main.rs), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The server's one call per request (after the transport checks and the lookup).
fn answer(body: &[u8], labels: &Labels, cfg: &Config) -> Vec<u8> {
    let review = Review::parse(body).unwrap();
    review
        .answer(NamespaceLabels::Known(labels), cfg, OnError::Allow)
        .body
}

fn engine(c: &mut Criterion) {
    let cfg = Config::default();
    let on: Labels = [
        ("gke-wi-injector.dev/inject".into(), "enabled".into()),
        ("istio-injection".into(), "enabled".into()),
    ]
    .into();
    let off = Labels::new();
    let cases = [
        ("typical_3_containers", review(pod(3, 8, 0)), &on),
        ("30_containers_long_env", review(pod(30, 60, 0)), &on),
        ("1mib_pod", review(pod(3, 8, 1024 * 1024)), &on),
        ("noop_not_opted_in", review(pod(3, 8, 0)), &off),
    ];
    let mut group = c.benchmark_group("review");
    for (name, body, labels) in &cases {
        // Every case must really do what it claims before it is timed.
        let out: Value = serde_json::from_slice(&answer(body, labels, &cfg)).unwrap();
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(
            out["response"].get("patch").is_some(),
            !labels.is_empty(),
            "{name}"
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| b.iter(|| answer(black_box(body), labels, &cfg)));
    }
    group.finish();
}

/// `ENGINE_BENCH_ITERATIONS` answers of one case, without criterion.
fn fixed(iterations: usize, case: &str) {
    let cfg = Config::default();
    let labels: Labels = match case {
        "noop" => Labels::new(),
        "typical" => [
            ("gke-wi-injector.dev/inject".into(), "enabled".into()),
            ("istio-injection".into(), "enabled".into()),
        ]
        .into(),
        other => panic!("ENGINE_BENCH_CASE={other:?}: noop or typical"),
    };
    let body = review(pod(3, 8, 0));
    let bytes: usize = (0..iterations)
        .map(|_| answer(black_box(&body), &labels, &cfg).len())
        .sum();
    println!("{case}: {iterations} reviews, {bytes} bytes answered");
}

criterion_group!(benches, engine);

fn main() {
    if let Ok(n) = std::env::var("ENGINE_BENCH_ITERATIONS") {
        let case = std::env::var("ENGINE_BENCH_CASE").unwrap_or_else(|_| "typical".into());
        fixed(
            n.parse().expect("ENGINE_BENCH_ITERATIONS is a count"),
            &case,
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
