//! What `doctor` read from the cluster: each piece either read, forbidden (with the permission
//! it needs), or failed (with the API server's message), so that a check can say it was skipped
//! rather than pass on data it never saw.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::Value;

/// One piece of data from the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Read<T> {
    Ok(T),
    /// 403: the caller may not read it; the text names the permission, e.g. `list pods in team-a`.
    Forbidden(String),
    /// Any other failure, with the API server's (or the transport's) message.
    Failed(String),
}

impl<T> Read<T> {
    /// The data transformed, or the same failure.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Read<U> {
        match self {
            Read::Ok(t) => Read::Ok(f(t)),
            Read::Forbidden(s) => Read::Forbidden(s),
            Read::Failed(s) => Read::Failed(s),
        }
    }

    /// The data, or why a check that needs it is skipped.
    pub fn get(&self) -> Result<&T, String> {
        match self {
            Read::Ok(t) => Ok(t),
            Read::Forbidden(needs) => Err(format!("forbidden (needs {needs})")),
            Read::Failed(e) => Err(format!("could not be read: {e}")),
        }
    }
}

/// A Namespace's name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A workload's Pod template (Deployment, StatefulSet, DaemonSet, Job, CronJob).
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub kind: &'static str,
    pub name: String,
    /// The Pod template (`metadata`, `spec`) as JSON, as the engine reads Pods.
    pub template: Value,
}

/// The result of one server-side dry-run Pod create.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveInjection {
    pub namespace: String,
    /// The annotations of the Pod the API server returned.
    pub annotations: Read<BTreeMap<String, String>>,
}

/// Everything the checks look at. Per-namespace maps hold one entry per namespace in scope.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The namespaces in scope, sorted.
    pub scope: Vec<String>,
    /// Every namespace of the cluster (name and labels), or the ones named with `-n`.
    pub namespaces: Option<Read<Vec<NamespaceInfo>>>,
    pub webhook_configurations: Option<Read<Vec<MutatingWebhookConfiguration>>>,
    /// The Service our webhook's `clientConfig.service` names: `None` inside when it does not
    /// exist; the whole field `None` when the configuration names no Service (a URL).
    pub service: Option<Read<Option<Service>>>,
    pub endpoint_slices: Option<Read<Vec<EndpointSlice>>>,
    /// The serving certificate's Secret; `None` inside when it does not exist.
    pub tls_secret: Option<Read<Option<Secret>>>,
    pub pods: BTreeMap<String, Read<Vec<Pod>>>,
    pub workloads: BTreeMap<String, Read<Vec<Workload>>>,
    /// ReplicaSet name to its controller (`Deployment/NAME`), per namespace.
    pub replica_set_owners: BTreeMap<String, Read<BTreeMap<String, String>>>,
    pub network_policies: BTreeMap<String, Read<Vec<NetworkPolicy>>>,
    pub service_accounts: BTreeMap<String, Read<Vec<ServiceAccount>>>,
    /// ServiceAccounts per namespace, cluster-wide.
    pub service_account_counts: Option<Read<BTreeMap<String, usize>>>,
    pub nodes: Option<Read<Vec<Node>>>,
    /// Pods labelled `k8s-app=gke-metadata-server` in `kube-system`.
    pub metadata_server_pods: Option<Read<Vec<Pod>>>,
    pub live: Vec<LiveInjection>,
}

/// `Option<Read<T>>` for data that was not read at all (never asked for).
pub fn needed<'a, T>(read: &'a Option<Read<T>>, what: &str) -> Result<&'a T, String> {
    match read {
        Some(r) => r.get(),
        None => Err(format!("not read ({what})")),
    }
}

/// The owner reference marked `controller` (the ReplicaSet of a Pod, the Deployment of a
/// ReplicaSet), if any.
pub fn controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}
