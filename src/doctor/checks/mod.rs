//! The checks, one function per id over the [`Snapshot`]. A check returns its findings, or the
//! reason it could not run (data it may not read); data forbidden in some namespaces only is
//! reported as an `info` finding naming the namespace and the permission, never as a pass.

mod cluster;
mod pods;
mod webhook;

pub use pods::well_formed_gsa;

pub use webhook::dry_run_pod;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::snapshot::{NamespaceInfo, Read, Snapshot, controller, needed};
use super::{Finding, Options, Severity};
use crate::engine::policy::{self, Labels};

/// Runs check `id`.
pub fn run(id: &'static str, snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    match id {
        "webhook-registered" => webhook::registered(snap, opts),
        "webhook-order" => webhook::order(snap, opts),
        "live-injection" => webhook::live(snap, opts),
        "certificate" => webhook::certificate(snap, opts),
        "missed-pods" => pods::missed(snap, opts),
        "network-policy-egress" => pods::network_policy_egress(snap, opts),
        "ksa-annotation" => pods::ksa_annotation(snap, opts),
        "host-network" => pods::host_network(snap, opts),
        "node-pools" => cluster::node_pools(snap, opts),
        "metadata-server" => cluster::metadata_server(snap),
        "service-account-count" => cluster::service_account_count(snap, opts),
        "istio-mode" => cluster::istio_mode(snap, opts),
        other => Err(format!("unknown check {other}")),
    }
}

/// The namespaces in scope with their labels.
fn scope_namespaces(snap: &Snapshot) -> Result<Vec<&NamespaceInfo>, String> {
    let all = needed(&snap.namespaces, "namespaces")?;
    Ok(all
        .iter()
        .filter(|n| snap.scope.binary_search(&n.name).is_ok())
        .collect())
}

/// The namespaces in scope that opted in (and are not protected).
fn opted_in<'a>(snap: &'a Snapshot, opts: &Options) -> Result<Vec<&'a NamespaceInfo>, String> {
    Ok(scope_namespaces(snap)?
        .into_iter()
        .filter(|n| policy::namespace_skip(&opts.cfg, &n.name, &n.labels).is_none())
        .collect())
}

/// For each of `namespaces`, its entry of a per-namespace read. Namespaces whose data is
/// forbidden or failed become `info` findings of `check`; when none could be read, the check is
/// skipped with the first reason.
fn per_namespace<'a, 'n, T>(
    check: &'static str,
    namespaces: &[&'n NamespaceInfo],
    reads: &'a BTreeMap<String, Read<T>>,
    notes: &mut Vec<Finding>,
) -> Result<Vec<(&'n NamespaceInfo, &'a T)>, String> {
    let mut out = Vec::new();
    let mut first_reason = None;
    for ns in namespaces {
        match reads.get(&ns.name).map(Read::get) {
            Some(Ok(t)) => out.push((*ns, t)),
            Some(Err(reason)) => {
                notes.push(
                    Finding::new(check, Severity::Info, format!("not checked: {reason}"))
                        .namespace(&ns.name),
                );
                first_reason.get_or_insert(reason);
            }
            None => {}
        }
    }
    match first_reason {
        Some(reason) if out.is_empty() => Err(reason),
        _ => Ok(out),
    }
}

fn meta_name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn labels_of(meta: &ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

/// The controller a Pod belongs to, as `Kind/name`, resolving a ReplicaSet to its Deployment.
fn owner_of(pod: &Pod, rs_owners: Option<&BTreeMap<String, String>>) -> Option<String> {
    let owner = controller(&pod.metadata)?;
    if owner.kind == "ReplicaSet"
        && let Some(deployment) = rs_owners.and_then(|m| m.get(&owner.name))
    {
        return Some(deployment.clone());
    }
    Some(format!("{}/{}", owner.kind, owner.name))
}

/// The command that recreates the Pods of `owner` (`Kind/name`) in `ns`, or of bare `pods`.
fn restart_command(ns: &str, owner: Option<&str>, pods: &[String]) -> String {
    match owner.and_then(|o| o.split_once('/')) {
        Some((kind @ ("Deployment" | "StatefulSet" | "DaemonSet"), name)) => {
            format!(
                "kubectl -n {ns} rollout restart {}/{name}",
                kind.to_ascii_lowercase()
            )
        }
        Some(("ReplicaSet", _)) => format!(
            "kubectl -n {ns} delete {} (its ReplicaSet creates them again)",
            pods.join(" ")
        ),
        Some(("Job", name)) => format!(
            "kubectl -n {ns} get job/{name} -o yaml > job.yaml; kubectl -n {ns} delete job/{name}; \
             remove metadata.uid, metadata.resourceVersion, status, spec.selector and the template's \
             controller-uid labels from job.yaml; kubectl -n {ns} create -f job.yaml"
        ),
        Some((kind, name)) => format!(
            "recreate the Pods of {kind}/{name}: kubectl -n {ns} delete {}",
            pods.join(" ")
        ),
        None => format!(
            "kubectl -n {ns} get {} -o yaml | kubectl -n {ns} replace --force -f -",
            pods.join(" ")
        ),
    }
}

/// Groups `(owner, pod)` pairs by owner; the Pods without a controller form one group (`None`),
/// last.
fn by_owner(items: Vec<(Option<String>, String)>) -> Vec<(Option<String>, Vec<String>)> {
    let mut groups: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for (owner, pod) in items {
        groups.entry(owner).or_default().push(pod);
    }
    let bare = groups.remove(&None);
    groups.into_iter().chain(bare.map(|p| (None, p))).collect()
}

/// The guide's checks outside the Kubernetes API, filled with the names found.
pub fn manual_checks(snap: &Snapshot, opts: &Options) -> Vec<String> {
    let mut out = vec![
        "gcloud container clusters describe CLUSTER_NAME --location=LOCATION \
         --format=\"value(workloadIdentityConfig.workloadPool)\"   # must print PROJECT_ID.svc.id.goog"
            .to_string(),
        "gcloud services list --enabled --filter=\"name:iamcredentials.googleapis.com\"   \
         # the IAM Service Account Credentials API must be enabled"
            .to_string(),
    ];
    let mut gsas = BTreeSet::new();
    for (ns, read) in &snap.service_accounts {
        let Read::Ok(sas) = read else { continue };
        for sa in sas {
            if let Some(gsa) = pods::gsa_annotation(sa).filter(|g| pods::well_formed_gsa(g)) {
                gsas.insert((
                    gsa.to_string(),
                    ns.clone(),
                    meta_name(&sa.metadata).to_string(),
                ));
            }
        }
    }
    for (gsa, ns, ksa) in gsas {
        let project = gsa
            .split_once('@')
            .and_then(|(_, d)| d.strip_suffix(".iam.gserviceaccount.com"))
            .unwrap_or("PROJECT_ID");
        out.push(format!(
            "gcloud iam service-accounts get-iam-policy {gsa} \
             --flatten=bindings --filter=\"bindings.role:roles/iam.workloadIdentityUser\" \
             --format=\"value(bindings.members)\"   # must list serviceAccount:{project}.svc.id.goog[{ns}/{ksa}]"
        ));
    }
    if let Some(ns) = opted_in(snap, opts).ok().and_then(|v| v.first().copied()) {
        out.push(format!(
            "kubectl -n {} run wi-dns-check --rm -i --restart=Never --image=busybox:1.36 -- \
             nslookup metadata.google.internal   # DNS inside Pods",
            ns.name
        ));
    }
    out
}
