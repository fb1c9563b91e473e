//! A bounded, seeded fuzz run of the admission engine on stable Rust (no cargo-fuzz): the Pods and
//! AdmissionReviews under `tests/fixtures/inject/` are the seeds; review bodies are mutated as
//! bytes (flips, truncation, splices, huge strings, deep nesting) and Pods as values (Istio
//! annotations with aliases, nesting and random YAML tokens, exclude ranges, nested copies).
//! Every case must: not panic; return a patch that applies to the Pod; give an empty patch on a
//! second pass over the patched Pod; and take well under two seconds.
//!
//! `GKE_WI_FUZZ_CASES=N` runs N cases per kind instead of the default; `GKE_WI_FUZZ_SEED=S`
//! starts from another seed. A failure prints the seed and case number that reproduce it.

use std::path::Path;
use std::time::{Duration, Instant};

use gke_wi_injector::admission::{self, NamespaceLabels, OnError};
use gke_wi_injector::commands::inject::INPUT_LIMITS;
use gke_wi_injector::engine::policy::{Config, Labels};
use gke_wi_injector::engine::yaml;
use serde_json::{Value, json};

const DEFAULT_CASES: usize = 1000;
const DEFAULT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const MAX_REVIEW_TIME: Duration = Duration::from_secs(2);
const PROXY: &str = "proxy.istio.io/config";
const EXCLUDE: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Pods in the fixtures: Pods themselves, workload templates, AdmissionReview objects.
fn seed_pods() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inject");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    paths.sort();
    let mut pods = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in yaml::documents(&text, &INPUT_LIMITS).unwrap() {
            collect_pods(doc, &mut pods);
        }
    }
    assert!(pods.len() >= 15, "only {} seed Pods", pods.len());
    pods
}

fn collect_pods(doc: Value, pods: &mut Vec<Value>) {
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let template = ["/spec/template", "/spec/jobTemplate/spec/template"]
        .iter()
        .find_map(|p| doc.pointer(p).cloned());
    match kind.as_str() {
        "Pod" => pods.push(doc),
        "AdmissionReview" => pods.push(doc["request"]["object"].clone()),
        "List" => {
            for item in doc["items"].as_array().cloned().unwrap_or_default() {
                collect_pods(item, pods);
            }
        }
        _ => {
            if let Some(t) = template {
                pods.push(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": t["metadata"].clone(), "spec": t["spec"].clone()}));
            }
        }
    }
}

fn review_body(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team", "operation": "CREATE",
            "userInfo": {"username": "fuzz"},
            "object": pod, "dryRun": false,
        }
    }))
    .unwrap()
}

fn labels(rng: &mut Rng) -> Labels {
    let sets: [&[(&str, &str)]; 4] = [
        &[("gke-wi-injector.dev/inject", "enabled")],
        &[
            ("gke-wi-injector.dev/inject", "enabled"),
            ("gke-wi-injector.dev/istio", "enabled"),
        ],
        &[
            ("gke-wi-injector.dev/inject", "enabled"),
            ("istio-injection", "enabled"),
        ],
        &[],
    ];
    rng.pick(&sets)
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One review of `body`; the JSON patch, if any, and the time it took.
fn review(body: &[u8], labels: &Labels) -> (Option<Vec<u8>>, Duration) {
    let started = Instant::now();
    let patch = match admission::parse_review(body) {
        Ok(req) => {
            let outcome = admission::review(
                req,
                NamespaceLabels::Known(labels),
                &Config::default(),
                OnError::Allow,
            );
            outcome.review.response.and_then(|r| r.patch)
        }
        Err(_) => None,
    };
    (patch, started.elapsed())
}

/// Reviews `body`; when it returns a patch, applies it to the request's object and checks that a
/// second pass over the result is empty. Returns whether there was a patch.
fn check(body: &[u8], labels: &Labels, case: &str) -> bool {
    let (patch, took) = review(body, labels);
    assert!(took < MAX_REVIEW_TIME, "{case}: first pass took {took:?}");
    let Some(patch) = patch else { return false };
    let ops: json_patch::Patch = serde_json::from_slice(&patch)
        .unwrap_or_else(|e| panic!("{case}: patch is not a JSON Patch: {e}"));
    // The engine accepts bytes that are not UTF-8 in fields it does not read.
    let body: Value = serde_json::from_slice(body)
        .or_else(|_| serde_json::from_str(&String::from_utf8_lossy(body)))
        .unwrap_or_else(|e| panic!("{case}: patched, but the body is not JSON: {e}"));
    let mut pod = body["request"]["object"].clone();
    json_patch::patch(&mut pod, &ops).unwrap_or_else(|e| panic!("{case}: patch fails: {e}"));
    let (again, took) = review(&review_body(&pod), labels);
    assert!(took < MAX_REVIEW_TIME, "{case}: second pass took {took:?}");
    if let Some(again) = again {
        let again: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(again, json!([]), "{case}: second pass not empty");
    }
    true
}

const YAML_TOKENS: &[&str] = &[
    "concurrency: 2",
    "holdApplicationUntilProxyStarts: ",
    "hold_application_until_proxy_starts: ",
    "true",
    "yes",
    "On",
    "off",
    "'yes'",
    "\"true\"",
    "&a ",
    "*a",
    "<<: ",
    "[",
    "]",
    "{",
    "}",
    ",",
    ": ",
    "\n",
    "  ",
    "- ",
    "#",
    "---",
    "...",
    "|",
    ">",
    "!!str ",
    "~",
    "null",
    "tracing:",
    "sampling: 10",
    "\t",
    "\\",
    "\u{feff}",
    "é",
    "%YAML 1.2",
    "?",
    "0755",
    ".nan",
];

fn alias_bomb(levels: usize, width: usize) -> String {
    let mut s = format!("a0: &a0 [{}]\n", vec!["lol"; width].join(","));
    for i in 1..levels {
        let refs = vec![format!("*a{}", i - 1); width].join(",");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s
}

fn proxy_config(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => (0..rng.below(40)).map(|_| *rng.pick(YAML_TOKENS)).collect(),
        1 => alias_bomb(1 + rng.below(10), 1 + rng.below(10)),
        2 => {
            let depth = 1 + rng.below(5000);
            let (open, close) = *rng.pick(&[("[", "]"), ("{", "}"), ("{a: ", "}"), ("- ", "")]);
            format!("x: {}1{}", open.repeat(depth), close.repeat(depth))
        }
        3 => {
            let lines = rng.below(3000);
            (0..lines).map(|i| format!("k{i}: v{i}\n")).collect()
        }
        4 => {
            let base = rng.pick(&["concurrency: 2\n", "{\"concurrency\": 2}", "{a: 1}", ""]);
            let hold = rng.pick(&["", "holdApplicationUntilProxyStarts: false\n", "x: *a\n"]);
            format!("{base}{hold}")
        }
        _ => {
            let mut s = alias_bomb(1 + rng.below(4), 1 + rng.below(4));
            s.push_str(&format!(
                "holdApplicationUntilProxyStarts: {}\n",
                rng.pick(YAML_TOKENS)
            ));
            s
        }
    }
}

fn exclude_ranges(rng: &mut Rng) -> String {
    const PARTS: &[&str] = &[
        "10.0.0.0/8",
        "*",
        "169.254.169.254",
        "169.254.169.254/32",
        "169.254.0.0/16",
        "0.0.0.0/0",
        "::/0",
        "fd00::/8",
        "garbage",
        "",
        " ",
        "169.254.169.254/33",
    ];
    let n = rng.below(5);
    (0..n)
        .map(|_| *rng.pick(PARTS))
        .collect::<Vec<_>>()
        .join(*rng.pick(&[",", ", ", " , "]))
}

/// A random node of `v` (by a random walk from the root).
fn random_node<'a>(v: &'a mut Value, rng: &mut Rng) -> &'a mut Value {
    let mut node = v;
    for _ in 0..rng.below(8) {
        let len = match &*node {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if len == 0 {
            break;
        }
        let i = rng.below(len);
        node = match node {
            Value::Object(m) => m.values_mut().nth(i).unwrap(),
            Value::Array(a) => &mut a[i],
            _ => unreachable!(),
        };
    }
    node
}

/// Sets an annotation where `metadata.annotations` is (or can be made) a mapping.
fn set_annotation(pod: &mut Value, key: &str, value: String) {
    let Some(pod) = pod.as_object_mut() else {
        return;
    };
    let meta = pod.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(key.to_string(), Value::String(value));
    }
}

fn mutate_pod(mut pod: Value, rng: &mut Rng) -> Value {
    for _ in 0..1 + rng.below(3) {
        match rng.below(5) {
            0 | 1 => {
                let text = proxy_config(rng);
                set_annotation(&mut pod, PROXY, text);
            }
            2 => {
                let text = exclude_ranges(rng);
                set_annotation(&mut pod, EXCLUDE, text);
            }
            3 => {
                let copy = pod.clone();
                *random_node(&mut pod, rng) = copy;
            }
            _ => {
                let huge = "x".repeat(1 << (10 + rng.below(11)));
                *random_node(&mut pod, rng) = json!(huge);
            }
        }
    }
    pod
}

fn mutate_bytes(mut body: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    for _ in 0..1 + rng.below(2) {
        let at = rng.below(body.len() + 1);
        match rng.below(6) {
            0 if at < body.len() => body[at] ^= 1 << rng.below(8),
            1 => body.truncate(at),
            2 => {
                let len = rng.below(body.len().saturating_sub(at).min(200) + 1);
                let slice = body[at..at + len].to_vec();
                let to = rng.below(body.len() + 1);
                body.splice(to..to, slice);
            }
            3 => {
                let token = rng.pick(&["{", "[", "\"", ",", "}", "]", "null", "\\u0000", "1e999"]);
                let n = 1 + rng.below(20_000);
                body.splice(at..at, token.repeat(n).into_bytes());
            }
            4 => {
                let huge = format!("\"{}\"", "y".repeat(1 << (10 + rng.below(11))));
                body.splice(at..at, huge.into_bytes());
            }
            _ if at < body.len() => body[at] = rng.next() as u8,
            _ => {}
        }
    }
    body
}

#[test]
fn mutated_pods_get_applicable_idempotent_patches() {
    let seed = env_number("GKE_WI_FUZZ_SEED", DEFAULT_SEED);
    let cases = env_number("GKE_WI_FUZZ_CASES", DEFAULT_CASES as u64) as usize;
    let pods = seed_pods();
    let mut rng = Rng(seed);
    let mut patched = 0;
    for case in 0..cases {
        let pod = mutate_pod(rng.pick(&pods).clone(), &mut rng);
        let labels = labels(&mut rng);
        let case = format!("pods seed {seed:#x} case {case}");
        patched += usize::from(check(&review_body(&pod), &labels, &case));
    }
    // Many cases reach the patch checks (a quarter of the namespaces do not opt in, and some
    // mutations replace the metadata or the spec).
    assert!(
        patched * 3 > cases,
        "only {patched} of {cases} cases patched"
    );
    eprintln!("{patched} of {cases} mutated Pods patched");
}

#[test]
fn mutated_review_bodies_never_panic() {
    let seed = env_number("GKE_WI_FUZZ_SEED", DEFAULT_SEED) ^ 0xb0d1;
    let cases = env_number("GKE_WI_FUZZ_CASES", DEFAULT_CASES as u64) as usize;
    let pods = seed_pods();
    let mut rng = Rng(seed);
    let mut patched = 0;
    for case in 0..cases {
        let mut pod = rng.pick(&pods).clone();
        if rng.below(2) == 0 {
            pod = mutate_pod(pod, &mut rng);
        }
        let body = mutate_bytes(review_body(&pod), &mut rng);
        let labels = labels(&mut rng);
        let case = format!("bodies seed {seed:#x} case {case}");
        patched += usize::from(check(&body, &labels, &case));
    }
    // Some mutations leave the review readable, and those reach the patch checks.
    assert!(
        patched * 40 > cases,
        "only {patched} of {cases} cases patched"
    );
    eprintln!("{patched} of {cases} mutated bodies patched");
}
