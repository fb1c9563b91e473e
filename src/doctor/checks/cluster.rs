//! The cluster around the injector: `node-pools`, `metadata-server`, `service-account-count`,
//! `istio-mode`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::{Finding, Options, Severity, meta_name, opted_in, scope_namespaces};
use crate::doctor::snapshot::{Snapshot, needed};

const NODE_POOLS: &str = "node-pools";
const METADATA_SERVER: &str = "metadata-server";
const SA_COUNT: &str = "service-account-count";
const ISTIO_MODE: &str = "istio-mode";

/// The label GKE sets on nodes whose pool runs the GKE metadata server (`GKE_METADATA`).
pub const METADATA_NODE_LABEL: &str = "iam.gke.io/gke-metadata-server-enabled";
/// The node pool label.
pub const NODE_POOL_LABEL: &str = "cloud.google.com/gke-nodepool";

pub fn node_pools(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let nodes = needed(&snap.nodes, "list nodes")?;
    // Pool name → (node names, whether every node repels Pods with a NoSchedule/NoExecute taint).
    let mut pools: BTreeMap<String, (Vec<String>, bool)> = BTreeMap::new();
    for node in nodes {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if labels.get(METADATA_NODE_LABEL).map(String::as_str) == Some("true") {
            continue;
        }
        let pool = labels
            .get(NODE_POOL_LABEL)
            .cloned()
            .unwrap_or_else(|| "(no node pool label)".to_string());
        let tainted = node
            .spec
            .iter()
            .flat_map(|s| s.taints.iter().flatten())
            .any(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"));
        let entry = pools.entry(pool).or_insert((Vec::new(), true));
        entry.0.push(meta_name(&node.metadata).to_string());
        entry.1 &= tainted;
    }
    let opted: Vec<String> = opted_in(snap, opts)
        .map(|v| v.into_iter().map(|n| n.name.clone()).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (pool, (node_names, tainted)) in pools {
        let on_pool: Vec<String> = opted
            .iter()
            .filter_map(|ns| {
                snap.pods
                    .get(ns)
                    .and_then(|p| p.get().ok())
                    .map(|p| (ns, p))
            })
            .flat_map(|(ns, pods)| {
                pods.iter()
                    .filter(|p| {
                        p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_ref())
                            .is_some_and(|n| node_names.contains(n))
                    })
                    .map(move |p| format!("{ns}/pod/{}", meta_name(&p.metadata)))
            })
            .collect();
        let (severity, why) = if !on_pool.is_empty() {
            (
                Severity::Error,
                format!(
                    "{} Pod(s) of opted-in namespaces run there and get no tokens",
                    on_pool.len()
                ),
            )
        } else if !tainted {
            (
                Severity::Error,
                "Pods of opted-in namespaces can be scheduled there (no NoSchedule taint) and would get no tokens".to_string(),
            )
        } else {
            (
                Severity::Info,
                "its nodes are tainted, so Pods that do not tolerate the taint do not land there"
                    .to_string(),
            )
        };
        out.push(
            Finding::new(
                NODE_POOLS,
                severity,
                format!(
                    "node pool {pool}: {} node(s) without {METADATA_NODE_LABEL}=true (the pool does not run the GKE metadata server, GKE_METADATA); {why}",
                    node_names.len()
                ),
            )
            .objects(node_names.iter().map(|n| format!("node/{n}")).chain(on_pool))
            .fix(format!(
                "gcloud container node-pools describe {pool} --cluster=CLUSTER_NAME --location=LOCATION --format=\"value(config.workloadMetadataConfig.mode)\"; \
                 gcloud container node-pools update {pool} --cluster=CLUSTER_NAME --location=LOCATION --workload-metadata=GKE_METADATA"
            )),
        );
    }
    Ok(out)
}

/// Why a metadata server Pod is unhealthy, if it is.
fn unhealthy(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    for cs in status.container_statuses.iter().flatten() {
        if let Some(reason) = cs
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
            && reason == "CrashLoopBackOff"
        {
            let oom = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.reason.as_deref())
                == Some("OOMKilled");
            return Some(if oom {
                format!(
                    "container {} is in CrashLoopBackOff after being OOMKilled",
                    cs.name
                )
            } else {
                format!("container {} is in CrashLoopBackOff", cs.name)
            });
        }
        if cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.as_deref())
            == Some("OOMKilled")
        {
            return Some(format!("container {} was OOMKilled", cs.name));
        }
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str());
    (ready != Some("True")).then(|| "not Ready".to_string())
}

pub fn metadata_server(snap: &Snapshot) -> Result<Vec<Finding>, String> {
    let pods = needed(&snap.metadata_server_pods, "list pods in kube-system")?;
    let fix = "kubectl -n kube-system describe pods -l k8s-app=gke-metadata-server; kubectl -n kube-system logs -l k8s-app=gke-metadata-server --previous";
    let mut out = Vec::new();
    if pods.is_empty() {
        let enabled: Vec<String> = snap
            .nodes
            .as_ref()
            .and_then(|n| n.get().ok())
            .into_iter()
            .flatten()
            .filter(|n| {
                n.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(METADATA_NODE_LABEL))
                    .map(String::as_str)
                    == Some("true")
            })
            .map(|n| format!("node/{}", meta_name(&n.metadata)))
            .collect();
        if !enabled.is_empty() {
            out.push(
                Finding::new(
                    METADATA_SERVER,
                    Severity::Error,
                    format!("no gke-metadata-server Pod in kube-system, although {} node(s) have Workload Identity enabled: no Pod gets a token", enabled.len()),
                )
                .objects(enabled)
                .fix("kubectl -n kube-system get daemonset gke-metadata-server; gcloud container clusters describe CLUSTER_NAME --location=LOCATION --format=\"value(workloadIdentityConfig)\""),
            );
        }
        return Ok(out);
    }
    for pod in pods {
        let Some(why) = unhealthy(pod) else { continue };
        let oom = why.contains("OOMKilled");
        let message = if oom {
            format!(
                "{why}: the metadata server's memory grows with the number of Kubernetes service accounts in the cluster (see service-account-count); while it restarts, Pods on its node get no tokens"
            )
        } else {
            format!(
                "{why}: Pods on its node get no tokens, and the wait init container gives up with \"{}\"",
                crate::WAIT_FAILURE_MESSAGE
            )
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        out.push(
            Finding::new(METADATA_SERVER, Severity::Error, message)
                .namespace("kube-system")
                .object(format!("pod/{}", meta_name(&pod.metadata)))
                .objects(node.map(|n| format!("node/{n}")))
                .fix(if oom {
                    format!("{fix}; reduce the number of ServiceAccounts (gke-metadata-server's memory limit is managed by GKE)")
                } else {
                    fix.to_string()
                }),
        );
    }
    Ok(out)
}

pub fn service_account_count(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let counts = needed(
        &snap.service_account_counts,
        "list serviceaccounts in every namespace",
    )?;
    let total: usize = counts.values().sum();
    if total <= opts.max_service_accounts {
        return Ok(Vec::new());
    }
    let mut top: Vec<(&String, &usize)> = counts.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let top: Vec<String> = top
        .iter()
        .take(10)
        .map(|(ns, n)| format!("{ns}: {n}"))
        .collect();
    Ok(vec![
        Finding::new(
            SA_COUNT,
            Severity::Warning,
            format!(
                "{total} ServiceAccounts in the cluster, over {}: the gke-metadata-server's memory grows with their number and it can be OOMKilled (most: {})",
                opts.max_service_accounts,
                top.join(", ")
            ),
        )
        .objects(top.iter().map(|t| format!("namespace/{}", t.split(':').next().unwrap_or(""))))
        .fix("delete unused ServiceAccounts: kubectl get serviceaccounts -A --no-headers | wc -l; kubectl -n NAMESPACE delete serviceaccount NAME"),
    ])
}

pub fn istio_mode(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let istio_key = opts.cfg.prefix.key("istio");
    let opted: std::collections::BTreeSet<&str> = opted_in(snap, opts)?
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    let mut out = Vec::new();
    for ns in scope_namespaces(snap)? {
        let opted_in = opted.contains(ns.name.as_str());
        let label = |k: &str| ns.labels.get(k).map(String::as_str);
        if opted_in && label("istio.io/dataplane-mode") == Some("ambient") {
            out.push(
                Finding::new(
                    ISTIO_MODE,
                    Severity::Warning,
                    format!("namespace {} uses Istio ambient mode: the sidecar annotations the injector writes have no effect there (ztunnel does not read them)", ns.name),
                )
                .namespace(&ns.name)
                .object(format!("namespace/{}", ns.name))
                .fix(format!("kubectl label namespace {} {istio_key}=disabled (ambient needs no sidecar exclusions)", ns.name)),
            );
        }
        // Istio injects sidecars here exactly when the injector's `auto` would turn on.
        let injected = crate::engine::policy::istio_auto(&ns.labels);
        if opted_in && injected && label(&istio_key) == Some("disabled") {
            out.push(
                Finding::new(
                    ISTIO_MODE,
                    Severity::Warning,
                    format!("namespace {} has Istio sidecar injection but {istio_key}=disabled: the proxy intercepts the metadata traffic and may start after the app", ns.name),
                )
                .namespace(&ns.name)
                .object(format!("namespace/{}", ns.name))
                .fix(format!("kubectl label namespace {} {istio_key}-", ns.name)),
            );
        }
    }
    Ok(out)
}
