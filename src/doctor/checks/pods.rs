//! The Pods of the namespaces in scope: `missed-pods`, `network-policy-egress`,
//! `ksa-annotation`, `host-network`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};

use super::{
    Finding, Options, Severity, by_owner, labels_of, meta_name, opted_in, owner_of, per_namespace,
    restart_command, scope_namespaces,
};
use crate::doctor::netpol::{self, Destination, Verdict};
use crate::doctor::snapshot::{Snapshot, Workload};
use crate::engine::mutate;
use crate::engine::policy::{Decision, Skip};

const MISSED: &str = "missed-pods";
const EGRESS: &str = "network-policy-egress";
const KSA: &str = "ksa-annotation";
const HOST_NETWORK: &str = "host-network";

/// The annotation naming the Google service account a Kubernetes service account acts as.
pub const GSA_ANNOTATION: &str = "iam.gke.io/gcp-service-account";

/// The controllers of the ReplicaSets of `ns`, when they could be read.
fn rs_owners<'a>(snap: &'a Snapshot, ns: &str) -> Option<&'a BTreeMap<String, String>> {
    snap.replica_set_owners.get(ns).and_then(|r| r.get().ok())
}

fn running(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub fn missed(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let namespaces = opted_in(snap, opts)?;
    let mut out = Vec::new();
    for (ns, pods) in per_namespace(MISSED, &namespaces, &snap.pods, &mut out)? {
        let rs = rs_owners(snap, &ns.name);
        let mut missed = Vec::new();
        let mut features = BTreeSet::new();
        for pod in pods.iter().filter(|p| running(p)) {
            let Ok(value) = serde_json::to_value(pod) else {
                continue;
            };
            // A Pod the webhook would still change was not (fully) injected: the webhook is
            // idempotent, so an injected Pod plans to nothing.
            let Ok(plan) = mutate::plan(&opts.cfg, &ns.name, &ns.labels, &value) else {
                continue;
            };
            if matches!(plan.decision, Decision::Inject { .. }) && !plan.ops.is_empty() {
                features.insert(plan.features().record());
                missed.push((
                    owner_of(pod, rs),
                    format!("pod/{}", meta_name(&pod.metadata)),
                ));
            }
        }
        for (owner, pods) in by_owner(missed) {
            let whose = match owner.as_deref() {
                Some(o) => format!("of {o}"),
                None => "without a controller".to_string(),
            };
            out.push(
                Finding::new(
                    MISSED,
                    Severity::Warning,
                    format!(
                        "{} Pod(s) {whose} lack the injection ({}): created before the namespace opted in, or while the webhook was unreachable under failurePolicy Ignore",
                        pods.len(),
                        features.iter().cloned().collect::<Vec<_>>().join(" / ")
                    ),
                )
                .namespace(&ns.name)
                .objects(owner.iter().cloned().chain(pods.iter().cloned()))
                .fix(restart_command(&ns.name, owner.as_deref(), &pods)),
            );
        }
    }
    Ok(out)
}

/// The destinations a Pod with `labels` cannot reach, and the policies isolating it.
fn blocked(
    ns: &str,
    labels: &BTreeMap<String, String>,
    policies: &[k8s_openapi::api::networking::v1::NetworkPolicy],
) -> Option<(Vec<String>, Vec<String>)> {
    let mut dests = Vec::new();
    let mut isolating = BTreeSet::new();
    for dest in netpol::METADATA_DESTINATIONS {
        if let Verdict::Blocked(by) = netpol::egress_verdict(ns, labels, policies, &dest) {
            dests.push(describe(&dest));
            isolating.extend(by);
        }
    }
    (!dests.is_empty()).then(|| (dests, isolating.into_iter().collect()))
}

fn describe(dest: &Destination) -> String {
    format!("{} {} {}", dest.ip, dest.protocol, dest.port)
}

fn template_labels(w: &Workload) -> BTreeMap<String, String> {
    w.template
        .pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

pub fn network_policy_egress(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let namespaces = opted_in(snap, opts)?;
    let mut out = Vec::new();
    for (ns, policies) in per_namespace(EGRESS, &namespaces, &snap.network_policies, &mut out)? {
        // A CIDR the evaluator cannot read counts as matching nothing; say which.
        for policy in policies {
            let bad = netpol::invalid_cidrs(policy);
            if !bad.is_empty() {
                let name = meta_name(&policy.metadata);
                out.push(
                    Finding::new(
                        EGRESS,
                        Severity::Warning,
                        format!("NetworkPolicy {name} has egress ipBlock CIDRs that cannot be read ({}): evaluated as matching no address", bad.join(", ")),
                    )
                    .namespace(&ns.name)
                    .object(format!("NetworkPolicy/{name}"))
                    .fix("write each cidr and except entry as ADDRESS/PREFIX, e.g. 169.254.169.254/32"),
                );
            }
        }
        let mut report = |object: String,
                          extra: Vec<String>,
                          dests: Vec<String>,
                          by: Vec<String>| {
            out.push(
                Finding::new(
                    EGRESS,
                    Severity::Error,
                    format!(
                        "{object}: egress to the metadata server ({}) is blocked by NetworkPolicy {}: Workload Identity cannot serve tokens",
                        dests.join(", "),
                        by.join(", ")
                    ),
                )
                .namespace(&ns.name)
                .objects(std::iter::once(object.clone()).chain(extra))
                .fix(format!(
                    "add to spec.egress of NetworkPolicy {} in {}:\n{}",
                    by[0],
                    ns.name,
                    netpol::allow_rule_yaml()
                )),
            );
        };
        let mut covered = BTreeSet::new();
        if let Some(Ok(workloads)) = snap.workloads.get(&ns.name).map(|w| w.get()) {
            for w in workloads {
                if w.template.pointer("/spec/hostNetwork") == Some(&serde_json::Value::Bool(true)) {
                    continue;
                }
                let object = format!("{}/{}", w.kind, w.name);
                covered.insert(object.clone());
                if let Some((dests, by)) = blocked(&ns.name, &template_labels(w), policies) {
                    report(object, Vec::new(), dests, by);
                }
            }
        }
        let rs = rs_owners(snap, &ns.name);
        let pods = snap.pods.get(&ns.name).and_then(|p| p.get().ok());
        let mut bare = Vec::new();
        for pod in pods.into_iter().flatten().filter(|p| running(p)) {
            let host = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
            let owner = owner_of(pod, rs);
            if host || owner.as_ref().is_some_and(|o| covered.contains(o)) {
                continue; // host-network Pods are not subject to NetworkPolicy
            }
            if let Some(found) = blocked(&ns.name, &labels_of(&pod.metadata), policies) {
                bare.push((owner, format!("pod/{}", meta_name(&pod.metadata)), found));
            }
        }
        for (owner, pod, (dests, by)) in bare {
            match owner {
                Some(o) => report(o, vec![pod], dests, by),
                None => report(pod, Vec::new(), dests, by),
            }
        }
    }
    Ok(out)
}

/// The Google service account a Kubernetes service account is annotated with.
pub fn gsa_annotation(sa: &ServiceAccount) -> Option<&str> {
    sa.metadata
        .annotations
        .as_ref()?
        .get(GSA_ANNOTATION)
        .map(String::as_str)
}

/// `NAME@PROJECT.iam.gserviceaccount.com`, with IAM's rules for both parts: a service account
/// id of 6–30 characters and a project id of 6–30, lowercase letters, digits and hyphens,
/// starting with a letter and not ending with a hyphen.
pub fn well_formed_gsa(email: &str) -> bool {
    fn id(s: &str) -> bool {
        (6..=30).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }
    let Some((name, domain)) = email.split_once('@') else {
        return false;
    };
    let Some(project) = domain.strip_suffix(".iam.gserviceaccount.com") else {
        return false;
    };
    id(name) && id(project)
}

fn pod_service_account(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or("default")
}

pub fn ksa_annotation(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let all = scope_namespaces(snap)?;
    let namespaces = opted_in(snap, opts)?;
    let mut out = Vec::new();
    let inject = opts.cfg.prefix.key("inject");
    // With -A, namespaces that did not opt in but hold Workload Identity service accounts.
    let opted: BTreeSet<&str> = namespaces.iter().map(|n| n.name.as_str()).collect();
    for ns in all.iter().filter(|n| !opted.contains(n.name.as_str())) {
        let skip = crate::engine::policy::namespace_skip(&opts.cfg, &ns.name, &ns.labels);
        if skip == Some(Skip::ProtectedNamespace) {
            continue; // never injected, whatever its labels
        }
        let Some(Ok(sas)) = snap.service_accounts.get(&ns.name).map(|s| s.get()) else {
            continue;
        };
        let wi: Vec<String> = sas
            .iter()
            .filter(|sa| gsa_annotation(sa).is_some())
            .map(|sa| format!("serviceaccount/{}", meta_name(&sa.metadata)))
            .collect();
        if !wi.is_empty() {
            out.push(
                Finding::new(
                    KSA,
                    Severity::Warning,
                    format!("namespace {} has {} Workload Identity service account(s) but did not opt in: its Pods get none of the fixes", ns.name, wi.len()),
                )
                .namespace(&ns.name)
                .objects(wi)
                .fix(format!("kubectl label namespace {} {inject}=enabled", ns.name)),
            );
        }
    }
    for (ns, pods) in per_namespace(KSA, &namespaces, &snap.pods, &mut out)? {
        let sas = match snap.service_accounts.get(&ns.name).map(|s| s.get()) {
            Some(Ok(sas)) => sas,
            Some(Err(reason)) => {
                out.push(
                    Finding::new(KSA, Severity::Info, format!("not checked: {reason}"))
                        .namespace(&ns.name),
                );
                continue;
            }
            None => continue,
        };
        // The service accounts of the Pods, and of the Pods the workloads will create.
        let templates = snap.workloads.get(&ns.name).and_then(|w| w.get().ok());
        let used: BTreeSet<&str> = pods
            .iter()
            .map(pod_service_account)
            .chain(templates.into_iter().flatten().map(|w| {
                w.template
                    .pointer("/spec/serviceAccountName")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("default")
            }))
            .collect();
        for name in used {
            let object = format!("serviceaccount/{name}");
            let Some(sa) = sas.iter().find(|sa| meta_name(&sa.metadata) == name) else {
                continue;
            };
            match gsa_annotation(sa) {
                Some(gsa) if !well_formed_gsa(gsa) => out.push(
                    Finding::new(
                        KSA,
                        Severity::Error,
                        format!("{GSA_ANNOTATION} is {gsa:?}, not NAME@PROJECT_ID.iam.gserviceaccount.com: tokens for it cannot be issued"),
                    )
                    .namespace(&ns.name)
                    .object(object)
                    .fix(format!("kubectl -n {} annotate serviceaccount {name} --overwrite {GSA_ANNOTATION}=GSA_NAME@PROJECT_ID.iam.gserviceaccount.com", ns.name)),
                ),
                Some(_) => {}
                None => out.push(
                    Finding::new(
                        KSA,
                        Severity::Info,
                        format!("no {GSA_ANNOTATION} annotation: Pods using it authenticate with direct Workload Identity Federation; grant IAM roles to principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/PROJECT_ID.svc.id.goog/subject/ns/{}/sa/{name}", ns.name),
                    )
                    .namespace(&ns.name)
                    .object(object)
                    .fix(format!(
                        "gcloud projects get-iam-policy PROJECT_ID --flatten=bindings --filter=\"bindings.members:principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/PROJECT_ID.svc.id.goog/subject/ns/{}/sa/{name}\" --format=\"value(bindings.role)\"",
                        ns.name
                    )),
                ),
            }
        }
    }
    Ok(out)
}

pub fn host_network(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let namespaces = opted_in(snap, opts)?;
    let mut out = Vec::new();
    for (ns, pods) in per_namespace(HOST_NETWORK, &namespaces, &snap.pods, &mut out)? {
        let rs = rs_owners(snap, &ns.name);
        let found: Vec<_> = pods
            .iter()
            .filter(|p| running(p) && p.spec.as_ref().and_then(|s| s.host_network) == Some(true))
            .map(|p| (owner_of(p, rs), format!("pod/{}", meta_name(&p.metadata))))
            .collect();
        for (owner, pods) in by_owner(found) {
            out.push(
                Finding::new(
                    HOST_NETWORK,
                    Severity::Warning,
                    format!(
                        "{} hostNetwork Pod(s){}: Workload Identity does not serve Pods on the host network; the injector leaves them alone",
                        pods.len(),
                        owner.as_deref().map(|o| format!(" of {o}")).unwrap_or_default()
                    ),
                )
                .namespace(&ns.name)
                .objects(owner.iter().cloned().chain(pods))
                .fix("set spec.hostNetwork: false, or authenticate these Pods another way (Workload Identity cannot)"),
            );
        }
    }
    Ok(out)
}
