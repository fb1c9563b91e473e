//! Engine cost per AdmissionReview: decode + plan + patch + encode, as the server pays it.
//! `cargo bench --bench engine`; the figures are reported in the README ("Performance").

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

criterion_group!(benches, engine);
criterion_main!(benches);
