//! The injector's real `/metrics` text (from `Metrics`, after every kind of event), parsed into
//! series, and the injector metric names an expression reads.

use std::collections::BTreeMap;

use gke_wi_injector::engine::policy::Features;
use gke_wi_injector::server::metrics::Metrics;

/// Every `outcome` label value (`admission::Outcome`, checked against `Outcome::ALL`).
pub const OUTCOMES: [&str; 11] = [
    "mutated",
    "unchanged",
    "skipped",
    "ignored",
    "error",
    "denied",
    "bad_request",
    "unsupported_media_type",
    "payload_too_large",
    "request_timeout",
    "over_capacity",
];

/// The outcomes the error alert counts: the injector could not decide, or refused the request.
pub const FAILED_OUTCOMES: [&str; 7] = [
    "error",
    "denied",
    "bad_request",
    "unsupported_media_type",
    "payload_too_large",
    "request_timeout",
    "over_capacity",
];

/// One sample line: metric name and labels.
#[derive(Debug)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

pub fn parse_series(s: &str) -> Series {
    let s = s.trim();
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], &s[i + 1..s.rfind('}').unwrap()]),
        None => (s.split_whitespace().next().unwrap(), ""),
    };
    let mut labels = BTreeMap::new();
    for pair in rest.split("\",").map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap();
        labels.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
    }
    Series {
        name: name.to_string(),
        labels,
    }
}

/// `/metrics` of a server that has seen every kind of event, parsed.
pub fn real_metrics() -> Vec<Series> {
    let m = Metrics::new();
    let all = Features {
        wait: true,
        host: true,
        istio: true,
    };
    for outcome in gke_wi_injector::admission::Outcome::ALL {
        m.request(outcome, all);
    }
    drop(m.timer());
    for result in ["cache", "get", "unknown"] {
        m.lookup(result);
    }
    m.set_cert_not_after(1_900_000_000);
    for source in ["tls", "namespaces"] {
        m.reload_failed(source);
        m.reload_deferred(source);
    }
    m.set_log_drops(|| 3);
    m.encode(5, true)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(parse_series)
        .collect()
}

/// Metric names an expression uses that the injector exports (`gke_wi_injector_...`).
pub fn injector_metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("gke_wi_injector_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}
