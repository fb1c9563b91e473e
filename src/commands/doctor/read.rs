//! The snapshot `doctor` checks: what it reads, in order (namespaces and scope, the webhook and
//! its Service, certificate, the workloads of the namespaces in scope, ServiceAccounts, Nodes,
//! the metadata server, and the dry-run Pod creates).

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::Value;

use super::DoctorArgs;
use super::lists::{
    Namespaced, Progress, What, classify, describe, full, get_opt, list_all, metadata,
    per_namespace, unauthorized,
};
use crate::doctor;
use crate::doctor::snapshot::{LiveInjection, NamespaceInfo, Read, Snapshot, Workload, controller};
use crate::engine::policy;

pub async fn read(
    client: &Client,
    args: &DoctorArgs,
    progress: &mut Progress,
) -> anyhow::Result<Snapshot> {
    let cfg = args.mutation.to_config();
    let page = args.page_size.max(1);
    let mut snap = Snapshot::default();

    // Namespaces and the scope.
    let ns_api = Api::<Namespace>::all(client.clone());
    let namespaces: Read<Vec<NamespaceInfo>> = if args.namespaces.is_empty() {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(page);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            match ns_api.list_metadata(&params).await {
                Ok(list) => {
                    progress.add("namespaces", list.items.len());
                    out.extend(list.items.into_iter().map(|m| NamespaceInfo {
                        name: m.metadata.name.unwrap_or_default(),
                        labels: m.metadata.labels.unwrap_or_default(),
                    }));
                    match list.metadata.continue_ {
                        Some(t) if !t.is_empty() => token = Some(t),
                        _ => break Read::Ok(out),
                    }
                }
                Err(e) if unauthorized(&e) => {
                    anyhow::bail!("the cluster refused the credentials: {}", describe(&e))
                }
                Err(e) => break classify(&e, || "list namespaces".into()),
            }
        }
    } else {
        let mut out = Vec::new();
        let mut failed = None;
        for name in &args.namespaces {
            match ns_api.get_metadata_opt(name).await {
                Ok(Some(m)) => out.push(NamespaceInfo {
                    name: m.metadata.name.unwrap_or_default(),
                    labels: m.metadata.labels.unwrap_or_default(),
                }),
                Ok(None) => anyhow::bail!("namespace {name} does not exist"),
                Err(e) if unauthorized(&e) => {
                    anyhow::bail!("the cluster refused the credentials: {}", describe(&e))
                }
                Err(e) => {
                    failed = Some(classify(&e, || format!("get namespaces {name}")));
                    break;
                }
            }
        }
        failed.unwrap_or(Read::Ok(out))
    };
    if let Read::Ok(all) = &namespaces {
        let mut scope: Vec<String> = all
            .iter()
            .filter(|n| {
                args.all_namespaces
                    || !args.namespaces.is_empty()
                    || policy::namespace_skip(&cfg, &n.name, &n.labels).is_none()
            })
            .map(|n| n.name.clone())
            .collect();
        scope.sort();
        snap.scope = scope;
    }
    let opted: Vec<String> = match &namespaces {
        Read::Ok(all) => all
            .iter()
            .filter(|n| snap.scope.binary_search(&n.name).is_ok())
            .filter(|n| policy::namespace_skip(&cfg, &n.name, &n.labels).is_none())
            .map(|n| n.name.clone())
            .collect(),
        _ => Vec::new(),
    };
    snap.namespaces = Some(namespaces);

    // The webhook, its Service and endpoints, its certificate.
    let mwc = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let configs = match list_all(
        &mwc,
        &ListParams::default(),
        page,
        full("webhook configurations", "mutatingwebhookconfigurations"),
        progress,
    )
    .await
    {
        Ok(c) => Read::Ok(c),
        Err(e) => classify(&e, || "list mutatingwebhookconfigurations".into()),
    };
    let service_ref = match &configs {
        Read::Ok(list) => list
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(args.webhook_configuration.as_str()))
            .and_then(|c| {
                c.webhooks
                    .iter()
                    .flatten()
                    .find_map(|h| h.client_config.service.clone())
            }),
        _ => None,
    };
    snap.webhook_configurations = Some(configs);
    if let Some(svc) = service_ref {
        let api = Api::<Service>::namespaced(client.clone(), &svc.namespace);
        snap.service = Some(
            get_opt(&api, &svc.name, || {
                format!("get services in {}", svc.namespace)
            })
            .await,
        );
        let api = Api::<EndpointSlice>::namespaced(client.clone(), &svc.namespace);
        let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={}", svc.name));
        snap.endpoint_slices = Some(
            match list_all(
                &api,
                &lp,
                page,
                full("endpoint slices", "endpointslices"),
                progress,
            )
            .await
            {
                Ok(v) => Read::Ok(v),
                Err(e) => classify(&e, || format!("list endpointslices in {}", svc.namespace)),
            },
        );
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), &cfg.injector_namespace);
    snap.tls_secret = Some(
        get_opt(&secrets, &args.tls_secret, || {
            format!("get secrets in {}", cfg.injector_namespace)
        })
        .await,
    );

    // The opted-in namespaces' Pods, workloads, ReplicaSets and NetworkPolicies.
    let lp = ListParams::default();
    snap.pods =
        per_namespace::<Pod>(client, &opted, &lp, page, full("pods", "pods"), progress).await;
    snap.network_policies = per_namespace::<NetworkPolicy>(
        client,
        &opted,
        &lp,
        page,
        full("network policies", "networkpolicies"),
        progress,
    )
    .await;
    let replica_sets = per_namespace::<ReplicaSet>(
        client,
        &opted,
        &lp,
        page,
        metadata("replica sets", "replicasets"),
        progress,
    )
    .await;
    snap.replica_set_owners = replica_sets
        .into_iter()
        .map(|(ns, read)| {
            let owners = read.map(|list| {
                list.into_iter()
                    .filter_map(|rs| {
                        let owner = controller(&rs.metadata)?;
                        Some((
                            rs.metadata.name.clone()?,
                            format!("{}/{}", owner.kind, owner.name),
                        ))
                    })
                    .collect()
            });
            (ns, owners)
        })
        .collect();
    snap.workloads = workloads(client, &opted, page, progress).await;

    // ServiceAccounts: cluster-wide for the count, and those of the namespaces in scope.
    let sa_all = Api::<ServiceAccount>::all(client.clone());
    match list_all(
        &sa_all,
        &lp,
        page,
        metadata("service accounts", "serviceaccounts"),
        progress,
    )
    .await
    {
        Ok(all) => {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            let mut by_ns: BTreeMap<String, Vec<ServiceAccount>> =
                snap.scope.iter().map(|n| (n.clone(), Vec::new())).collect();
            for sa in all {
                let ns = sa.metadata.namespace.clone().unwrap_or_default();
                *counts.entry(ns.clone()).or_default() += 1;
                if let Some(v) = by_ns.get_mut(&ns) {
                    v.push(sa);
                }
            }
            snap.service_account_counts = Some(Read::Ok(counts));
            snap.service_accounts = by_ns.into_iter().map(|(k, v)| (k, Read::Ok(v))).collect();
        }
        Err(e) => {
            snap.service_account_counts = Some(classify(&e, || {
                "list serviceaccounts in every namespace".into()
            }));
            let scope = snap.scope.clone();
            snap.service_accounts = per_namespace::<ServiceAccount>(
                client,
                &scope,
                &lp,
                page,
                metadata("service accounts", "serviceaccounts"),
                progress,
            )
            .await;
        }
    }

    // Nodes and the metadata server.
    let nodes = Api::<Node>::all(client.clone());
    snap.nodes = Some(
        match list_all(&nodes, &lp, page, full("nodes", "nodes"), progress).await {
            Ok(v) => Read::Ok(v),
            Err(e) => classify(&e, || "list nodes".into()),
        },
    );
    let system = Api::<Pod>::namespaced(client.clone(), "kube-system");
    let lp_mds = ListParams::default().labels("k8s-app=gke-metadata-server");
    snap.metadata_server_pods = Some(
        match list_all(
            &system,
            &lp_mds,
            page,
            full("metadata server pods", "pods"),
            progress,
        )
        .await
        {
            Ok(v) => Read::Ok(v),
            Err(e) => classify(&e, || "list pods in kube-system".into()),
        },
    );

    // The whole path, proven: a server-side dry-run Pod create per namespace (a few).
    let pod: Pod = serde_json::from_value(doctor::checks::dry_run_pod())?;
    for ns in opted.iter().take(args.live_namespaces) {
        let api = Api::<Pod>::namespaced(client.clone(), ns);
        let params = PostParams {
            dry_run: true,
            field_manager: Some("gke-wi-injector-doctor".into()),
        };
        let annotations = match api.create(&params, &pod).await {
            Ok(created) => Read::Ok(created.metadata.annotations.unwrap_or_default()),
            Err(e) => classify(&e, || format!("create pods in {ns}")),
        };
        snap.live.push(LiveInjection {
            namespace: ns.clone(),
            annotations,
        });
    }
    Ok(snap)
}

/// The Pod templates (at `pointer`) of the objects of kind `K` in `namespaces`.
async fn templates<K>(
    client: &Client,
    namespaces: &[String],
    page: u32,
    (kind, what, pointer): (&'static str, What, &str),
    progress: &mut Progress,
) -> BTreeMap<String, Read<Vec<Workload>>>
where
    K: Namespaced + Serialize,
    K::DynamicType: Default,
{
    let lp = ListParams::default();
    per_namespace::<K>(client, namespaces, &lp, page, what, progress)
        .await
        .into_iter()
        .map(|(ns, read)| {
            let read = read.map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        let value = serde_json::to_value(item).ok()?;
                        Some(Workload {
                            kind,
                            name: item.meta().name.clone().unwrap_or_default(),
                            template: value.pointer(pointer).cloned().unwrap_or(Value::Null),
                        })
                    })
                    .collect()
            });
            (ns, read)
        })
        .collect()
}

/// The Pod templates of the workloads in `namespaces`, by namespace (the first failure of a
/// namespace's lists stands for all of them).
async fn workloads(
    client: &Client,
    namespaces: &[String],
    page: u32,
    progress: &mut Progress,
) -> BTreeMap<String, Read<Vec<Workload>>> {
    const TEMPLATE: &str = "/spec/template";
    let (c, n) = (client, namespaces);
    let parts = [
        templates::<Deployment>(
            c,
            n,
            page,
            ("Deployment", full("deployments", "deployments"), TEMPLATE),
            progress,
        )
        .await,
        templates::<StatefulSet>(
            c,
            n,
            page,
            (
                "StatefulSet",
                full("stateful sets", "statefulsets"),
                TEMPLATE,
            ),
            progress,
        )
        .await,
        templates::<DaemonSet>(
            c,
            n,
            page,
            ("DaemonSet", full("daemon sets", "daemonsets"), TEMPLATE),
            progress,
        )
        .await,
        templates::<Job>(
            c,
            n,
            page,
            ("Job", full("jobs", "jobs"), TEMPLATE),
            progress,
        )
        .await,
        templates::<CronJob>(
            c,
            n,
            page,
            (
                "CronJob",
                full("cron jobs", "cronjobs"),
                "/spec/jobTemplate/spec/template",
            ),
            progress,
        )
        .await,
    ];
    let mut out: BTreeMap<String, Read<Vec<Workload>>> = BTreeMap::new();
    for part in parts {
        for (ns, read) in part {
            let merged = match (out.remove(&ns), read) {
                (None, r) => r,
                (Some(Read::Ok(mut a)), Read::Ok(b)) => {
                    a.extend(b);
                    Read::Ok(a)
                }
                (Some(Read::Ok(_)), failed) => failed,
                (Some(failed), _) => failed,
            };
            out.insert(ns, merged);
        }
    }
    out
}
