//! The report as text for people and as JSON for CI and dashboards.
//!
//! JSON schema (`schemaVersion` 1; fields are only ever added):
//!
//! ```text
//! { "schemaVersion": 1,
//!   "scope": ["team-a", ...],                       namespaces checked
//!   "summary": {"error": n, "warning": n, "info": n, "skipped": n},
//!   "checks": [{"id": "webhook-registered", "status": "ran" | "skipped",
//!               "reason": "forbidden (needs list pods in team-a)",   only when skipped
//!               "findings": n}],
//!   "findings": [{"check": id, "severity": "error" | "warning" | "info",
//!                 "namespace": "team-a" | null, "objects": ["Deployment/api", ...],
//!                 "message": "...", "fix": "..."}],
//!   "manualChecks": ["gcloud ...", ...] }
//! ```

use serde_json::{Value, json};

use super::{Report, Severity, Status};

pub fn json(report: &Report) -> Value {
    let skipped = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, Status::Skipped(_)))
        .count();
    let checks: Vec<Value> = report
        .checks
        .iter()
        .map(|c| {
            let mut v = json!({"id": c.id, "findings": c.findings.len()});
            match &c.status {
                Status::Ran => v["status"] = "ran".into(),
                Status::Skipped(reason) => {
                    v["status"] = "skipped".into();
                    v["reason"] = reason.as_str().into();
                }
            }
            v
        })
        .collect();
    let findings: Vec<&super::Finding> = report.checks.iter().flat_map(|c| &c.findings).collect();
    json!({
        "schemaVersion": 1,
        "scope": report.scope,
        "summary": {
            "error": report.count(Severity::Error),
            "warning": report.count(Severity::Warning),
            "info": report.count(Severity::Info),
            "skipped": skipped,
        },
        "checks": checks,
        "findings": findings,
        "manualChecks": report.manual_checks,
    })
}

/// The human report: one block per check, its findings with their fixes, then what `doctor`
/// cannot see, then the counts.
pub fn text(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let scope = match report.scope.len() {
        0 => "no namespace in scope".to_string(),
        n if n <= 8 => format!("{n} namespace(s): {}", report.scope.join(", ")),
        n => format!("{n} namespaces"),
    };
    let _ = writeln!(out, "gke-wi-injector doctor: {scope}\n");
    for check in &report.checks {
        let head = match (
            &check.status,
            check.findings.iter().map(|f| f.severity).max(),
        ) {
            (Status::Skipped(reason), _) => format!("skipped: {reason}"),
            (Status::Ran, None) => "ok".to_string(),
            (Status::Ran, Some(worst)) => {
                format!("{} ({} finding(s))", worst.as_str(), check.findings.len())
            }
        };
        let _ = writeln!(out, "{:<24}{head}", check.id);
        for f in &check.findings {
            let mut objects = f.objects.join(", ");
            if let Some(ns) = &f.namespace {
                objects = if objects.is_empty() {
                    format!("namespace {ns}")
                } else {
                    format!("{ns}: {objects}")
                };
            }
            let _ = writeln!(out, "  {:<8} {}", f.severity.as_str(), f.message);
            if !objects.is_empty() {
                let _ = writeln!(out, "           objects: {objects}");
            }
            if !f.fix.is_empty() {
                let mut lines = f.fix.lines();
                if let Some(first) = lines.next() {
                    let _ = writeln!(out, "           fix: {first}");
                }
                for line in lines {
                    let _ = writeln!(out, "                {line}");
                }
            }
        }
    }
    if !report.manual_checks.is_empty() {
        let _ = writeln!(
            out,
            "\nWhat doctor cannot see from the Kubernetes API; run these:"
        );
        for c in &report.manual_checks {
            let _ = writeln!(out, "  {c}");
        }
    }
    let skipped = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, Status::Skipped(_)))
        .count();
    let _ = writeln!(
        out,
        "\n{} error(s), {} warning(s), {} info, {skipped} check(s) skipped",
        report.count(Severity::Error),
        report.count(Severity::Warning),
        report.count(Severity::Info),
    );
    out
}
