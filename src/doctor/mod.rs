//! `doctor`: GKE's Workload Identity checklist, evaluated over what was read from a cluster.
//!
//! Everything here is pure: `commands::doctor` reads the cluster into a [`Snapshot`], [`run`]
//! turns it into a [`Report`] (one [`CheckResult`] per check id, each with its findings), and the
//! report renders as text or as the JSON schema documented in the README ("Diagnose a cluster").

pub mod checks;
pub mod netpol;
pub mod render;
pub mod snapshot;

use serde::Serialize;

pub use snapshot::{Read, Snapshot};

/// The checks, in the order they run and are reported. The ids are stable (JSON, docs).
pub const CHECKS: [&str; 12] = [
    "webhook-registered",
    "webhook-order",
    "live-injection",
    "missed-pods",
    "network-policy-egress",
    "node-pools",
    "metadata-server",
    "service-account-count",
    "ksa-annotation",
    "host-network",
    "istio-mode",
    "certificate",
];

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing a check found: what, where, and the exact fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub severity: Severity,
    /// The namespace of the objects concerned; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The objects concerned, `kind/name` (several when grouped, e.g. Pods of one Deployment).
    pub objects: Vec<String>,
    pub message: String,
    /// A command or manifest change that fixes it; empty for information only.
    pub fix: String,
}

impl Finding {
    pub fn new(check: &'static str, severity: Severity, message: impl Into<String>) -> Finding {
        Finding {
            check,
            severity,
            namespace: None,
            objects: Vec::new(),
            message: message.into(),
            fix: String::new(),
        }
    }

    pub fn namespace(mut self, ns: impl Into<String>) -> Finding {
        self.namespace = Some(ns.into());
        self
    }

    pub fn object(mut self, object: impl Into<String>) -> Finding {
        self.objects.push(object.into());
        self
    }

    pub fn objects(mut self, objects: impl IntoIterator<Item = String>) -> Finding {
        self.objects.extend(objects);
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = fix.into();
        self
    }
}

/// Whether a check could run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// It ran; its findings (possibly none) are in the report.
    Ran,
    /// It could not read what it needs, e.g. `forbidden (needs list pods in team-a)`. Never a pass.
    Skipped(String),
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub id: &'static str,
    pub status: Status,
    pub findings: Vec<Finding>,
}

impl CheckResult {
    fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Everything `doctor` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The namespaces checked, sorted.
    pub scope: Vec<String>,
    pub checks: Vec<CheckResult>,
    /// What `doctor` cannot see from the Kubernetes API, as the guide's `gcloud` commands with
    /// the names it found.
    pub manual_checks: Vec<String>,
}

impl Report {
    /// Number of findings of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.checks
            .iter()
            .flat_map(|c| &c.findings)
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Exit status: 1 with an error (with `strict`, also with a warning), else 0. (2, the
    /// cluster could not be read at all, is decided before there is a report.)
    pub fn exit_code(&self, strict: bool) -> u8 {
        let worst = self.checks.iter().filter_map(CheckResult::worst).max();
        match worst {
            Some(Severity::Error) => 1,
            Some(Severity::Warning) if strict => 1,
            _ => 0,
        }
    }
}

/// What the checks are told besides the cluster's contents.
#[derive(Debug, Clone)]
pub struct Options {
    pub cfg: crate::engine::policy::Config,
    /// Name of the injector's MutatingWebhookConfiguration.
    pub webhook_configuration: String,
    /// Name of the Secret holding the serving certificate, in the injector's namespace.
    pub tls_secret: String,
    /// Above this many ServiceAccounts in the cluster, `service-account-count` warns.
    pub max_service_accounts: usize,
    /// The time the certificate's expiry is measured against (seconds since the epoch).
    pub now: i64,
}

/// Runs every check over `snap`.
pub fn run(snap: &Snapshot, opts: &Options) -> Report {
    let checks = CHECKS
        .iter()
        .map(|&id| {
            let (status, mut findings) = match checks::run(id, snap, opts) {
                Ok(findings) => (Status::Ran, findings),
                Err(reason) => (Status::Skipped(reason), Vec::new()),
            };
            findings.sort_by(|a, b| {
                b.severity
                    .cmp(&a.severity)
                    .then_with(|| a.namespace.cmp(&b.namespace))
                    .then_with(|| a.objects.cmp(&b.objects))
            });
            CheckResult {
                id,
                status,
                findings,
            }
        })
        .collect();
    Report {
        scope: snap.scope.clone(),
        checks,
        manual_checks: checks::manual_checks(snap, opts),
    }
}
