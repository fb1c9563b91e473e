//! `gke-wi-injector doctor`: reads the cluster with the caller's kubeconfig (read-only, plus
//! server-side dry-run Pod creates), runs the checks of `crate::doctor`, prints the report.
//! Exit status: 0 without errors, 1 with errors (`--strict`: warnings too), 2 when the cluster
//! cannot be reached or read at all.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ListParams, ObjectList, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::shared::{MutationArgs, parse_nonzero_duration};
use crate::doctor::snapshot::{LiveInjection, NamespaceInfo, Read, Snapshot, Workload};
use crate::doctor::{self, Options, render};
use crate::engine::policy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check only these namespaces (repeat, or comma-separated); default: every namespace that opted in.
    #[arg(
        short = 'n',
        long = "namespace",
        env = "GKE_WI_INJECTOR_DOCTOR_NAMESPACE",
        value_delimiter = ',',
        conflicts_with = "all_namespaces"
    )]
    pub namespaces: Vec<String>,

    /// Check every namespace; namespaces with Workload Identity service accounts that did not opt in are a finding.
    #[arg(short = 'A', long, env = "GKE_WI_INJECTOR_DOCTOR_ALL_NAMESPACES")]
    pub all_namespaces: bool,

    /// Report format.
    #[arg(
        short = 'o',
        long,
        env = "GKE_WI_INJECTOR_DOCTOR_OUTPUT",
        value_enum,
        default_value = "text"
    )]
    pub output: Output,

    /// Kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then the in-cluster service account).
    #[arg(long, env = "GKE_WI_INJECTOR_DOCTOR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context (default: the current context).
    #[arg(long, env = "GKE_WI_INJECTOR_DOCTOR_CONTEXT")]
    pub context: Option<String>,

    /// Warnings fail too (exit 1).
    #[arg(long, env = "GKE_WI_INJECTOR_DOCTOR_STRICT")]
    pub strict: bool,

    /// At most this many namespaces get a server-side dry-run Pod create (live-injection).
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_DOCTOR_LIVE_NAMESPACES",
        default_value_t = 3
    )]
    pub live_namespaces: usize,

    /// Above this many ServiceAccounts in the cluster, service-account-count warns.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_DOCTOR_MAX_SERVICE_ACCOUNTS",
        default_value_t = 3000
    )]
    pub max_service_accounts: usize,

    /// Name of the injector's MutatingWebhookConfiguration.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_DOCTOR_WEBHOOK_CONFIGURATION",
        default_value = "gke-wi-injector"
    )]
    pub webhook_configuration: String,

    /// Name of the serving certificate's Secret in the injector's namespace.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_DOCTOR_TLS_SECRET",
        default_value = "gke-wi-injector-tls"
    )]
    pub tls_secret: String,

    /// Objects per list request (pagination).
    #[arg(long, env = "GKE_WI_INJECTOR_DOCTOR_PAGE_SIZE", default_value_t = 500)]
    pub page_size: u32,

    /// Timeout of each API request.
    #[arg(long, env = "GKE_WI_INJECTOR_DOCTOR_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_nonzero_duration)]
    pub request_timeout: Duration,

    #[command(flatten)]
    pub mutation: MutationArgs,
}

/// Above this many namespaces in scope, lists are read cluster-wide and split by namespace
/// instead of one request per namespace.
const PER_NAMESPACE_LISTS: usize = 20;

/// Runs `doctor`; returns the exit status.
pub async fn run(args: DoctorArgs) -> u8 {
    let client = match connect(&args).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    let mut progress = Progress::new();
    let snap = match read(&client, &args, &mut progress).await {
        Ok(s) => s,
        Err(e) => {
            progress.clear();
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    progress.clear();
    let opts = Options {
        cfg: args.mutation.to_config(),
        webhook_configuration: args.webhook_configuration.clone(),
        tls_secret: args.tls_secret.clone(),
        max_service_accounts: args.max_service_accounts,
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let report = doctor::run(&snap, &opts);
    let text = match args.output {
        Output::Text => render::text(&report),
        Output::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&render::json(&report)).unwrap_or_default()
        ),
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return 2;
    }
    report.exit_code(args.strict)
}

async fn connect(args: &DoctorArgs) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        cluster: None,
        user: None,
    };
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => match kube::Config::from_kubeconfig(&options).await {
            Ok(c) => c,
            Err(kubeconfig) => kube::Config::incluster().map_err(|_| {
                anyhow::anyhow!("no cluster configuration: {kubeconfig} (pass --kubeconfig, set KUBECONFIG, or run in a cluster)")
            })?,
        },
    };
    config.connect_timeout = Some(args.request_timeout);
    config.read_timeout = Some(args.request_timeout);
    let url = config.cluster_url.clone();
    let client = Client::try_from(config)?;
    client
        .apiserver_version()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the cluster at {url}: {}", describe(&e)))?;
    Ok(client)
}

fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// A failed request as a [`Read`]: 403 is `Forbidden(needs)`.
fn classify<T>(e: &kube::Error, needs: impl FnOnce() -> String) -> Read<T> {
    match e {
        kube::Error::Api(status) if status.code == 403 => Read::Forbidden(needs()),
        other => Read::Failed(describe(other)),
    }
}

/// `kube::Error` that means the caller is not who the cluster accepts: nothing can be read.
fn unauthorized(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 401)
}

/// A progress line on stderr while lists are read, only when stderr is a terminal.
struct Progress {
    on: bool,
    counts: BTreeMap<&'static str, usize>,
    shown: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            counts: BTreeMap::new(),
            shown: false,
        }
    }

    fn add(&mut self, what: &'static str, n: usize) {
        *self.counts.entry(what).or_default() += n;
        if self.on {
            let line: Vec<String> = self
                .counts
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            eprint!("\r\x1b[2Kreading: {}", line.join(", "));
            self.shown = true;
        }
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

/// What is listed: its name in the progress line and in a permission (`list pods in NS`), and
/// whether the check needs only its metadata (then it is listed metadata-only).
#[derive(Debug, Clone, Copy)]
struct What {
    label: &'static str,
    resource: &'static str,
    metadata_only: bool,
}

const fn full(label: &'static str, resource: &'static str) -> What {
    What {
        label,
        resource,
        metadata_only: false,
    }
}

const fn metadata(label: &'static str, resource: &'static str) -> What {
    What {
        label,
        resource,
        metadata_only: true,
    }
}

/// Every page of a list (`limit`/`continue`); metadata-only lists come back as objects with
/// only their metadata set.
async fn list_all<K>(
    api: &Api<K>,
    lp: &ListParams,
    page: u32,
    what: What,
    progress: &mut Progress,
) -> Result<Vec<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug + Default,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = lp.clone().limit(page);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let (items, next) = if what.metadata_only {
            let list = api.list_metadata(&params).await?;
            let items: Vec<K> = list
                .items
                .into_iter()
                .map(|m| {
                    let mut k = K::default();
                    *k.meta_mut() = m.metadata;
                    k
                })
                .collect();
            (items, list.metadata.continue_)
        } else {
            let list: ObjectList<K> = api.list(&params).await?;
            (list.items, list.metadata.continue_)
        };
        progress.add(what.label, items.len());
        // Managed fields are often most of an object's size and no check reads them.
        out.extend(items.into_iter().map(|mut k| {
            k.meta_mut().managed_fields = None;
            k
        }));
        match next {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// Reads one kind either per namespace in `namespaces` or cluster-wide split by namespace.
async fn per_namespace<K>(
    client: &Client,
    namespaces: &[String],
    lp: &ListParams,
    page: u32,
    what: What,
    progress: &mut Progress,
) -> BTreeMap<String, Read<Vec<K>>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Default,
    K::DynamicType: Default,
{
    let mut out = BTreeMap::new();
    if namespaces.len() > PER_NAMESPACE_LISTS {
        let api = Api::<K>::all(client.clone());
        match list_all(&api, lp, page, what, progress).await {
            Ok(items) => {
                let mut by_ns: BTreeMap<String, Vec<K>> =
                    namespaces.iter().map(|n| (n.clone(), Vec::new())).collect();
                for item in items {
                    if let Some(v) = item
                        .meta()
                        .namespace
                        .as_ref()
                        .and_then(|ns| by_ns.get_mut(ns))
                    {
                        v.push(item);
                    }
                }
                return by_ns.into_iter().map(|(k, v)| (k, Read::Ok(v))).collect();
            }
            Err(e) if !matches!(&e, kube::Error::Api(s) if s.code == 403) => {
                for ns in namespaces {
                    out.insert(ns.clone(), classify(&e, String::new));
                }
                return out;
            }
            Err(_) => {} // not allowed cluster-wide: per namespace
        }
    }
    for ns in namespaces {
        let api = Api::<K>::namespaced(client.clone(), ns);
        let read = match list_all(&api, lp, page, what, progress).await {
            Ok(items) => Read::Ok(items),
            Err(e) => classify(&e, || format!("list {} in {ns}", what.resource)),
        };
        out.insert(ns.clone(), read);
    }
    out
}

async fn get_opt<K>(api: &Api<K>, name: &str, needs: impl FnOnce() -> String) -> Read<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.get_opt(name).await {
        Ok(v) => Read::Ok(v),
        Err(e) => classify(&e, needs),
    }
}

async fn read(
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
            let owners = match read {
                Read::Ok(list) => Read::Ok(
                    list.into_iter()
                        .filter_map(|rs| {
                            let owner = rs
                                .metadata
                                .owner_references
                                .iter()
                                .flatten()
                                .find(|o| o.controller == Some(true))?;
                            Some((
                                rs.metadata.name.clone()?,
                                format!("{}/{}", owner.kind, owner.name),
                            ))
                        })
                        .collect(),
                ),
                Read::Forbidden(s) => Read::Forbidden(s),
                Read::Failed(s) => Read::Failed(s),
            };
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

/// The Pod templates of the workloads in `namespaces`.
async fn workloads(
    client: &Client,
    namespaces: &[String],
    page: u32,
    progress: &mut Progress,
) -> BTreeMap<String, Read<Vec<Workload>>> {
    fn templates<K: serde::Serialize>(
        kind: &'static str,
        read: Read<Vec<K>>,
        pointer: &str,
        name: impl Fn(&K) -> String,
    ) -> Read<Vec<Workload>> {
        match read {
            Read::Ok(items) => Read::Ok(
                items
                    .iter()
                    .filter_map(|item| {
                        let value = serde_json::to_value(item).ok()?;
                        Some(Workload {
                            kind,
                            name: name(item),
                            template: value.pointer(pointer).cloned().unwrap_or(Value::Null),
                        })
                    })
                    .collect(),
            ),
            Read::Forbidden(s) => Read::Forbidden(s),
            Read::Failed(s) => Read::Failed(s),
        }
    }
    let lp = ListParams::default();
    let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.name.clone().unwrap_or_default()
    };
    let mut parts: Vec<BTreeMap<String, Read<Vec<Workload>>>> = Vec::new();
    let deployments = per_namespace::<Deployment>(
        client,
        namespaces,
        &lp,
        page,
        full("deployments", "deployments"),
        progress,
    )
    .await;
    parts.push(
        deployments
            .into_iter()
            .map(|(ns, r)| {
                (
                    ns,
                    templates("Deployment", r, "/spec/template", |d| name(&d.metadata)),
                )
            })
            .collect(),
    );
    let sets = per_namespace::<StatefulSet>(
        client,
        namespaces,
        &lp,
        page,
        full("stateful sets", "statefulsets"),
        progress,
    )
    .await;
    parts.push(
        sets.into_iter()
            .map(|(ns, r)| {
                (
                    ns,
                    templates("StatefulSet", r, "/spec/template", |d| name(&d.metadata)),
                )
            })
            .collect(),
    );
    let daemons = per_namespace::<DaemonSet>(
        client,
        namespaces,
        &lp,
        page,
        full("daemon sets", "daemonsets"),
        progress,
    )
    .await;
    parts.push(
        daemons
            .into_iter()
            .map(|(ns, r)| {
                (
                    ns,
                    templates("DaemonSet", r, "/spec/template", |d| name(&d.metadata)),
                )
            })
            .collect(),
    );
    let jobs = per_namespace::<Job>(
        client,
        namespaces,
        &lp,
        page,
        full("jobs", "jobs"),
        progress,
    )
    .await;
    parts.push(
        jobs.into_iter()
            .map(|(ns, r)| {
                (
                    ns,
                    templates("Job", r, "/spec/template", |d| name(&d.metadata)),
                )
            })
            .collect(),
    );
    let cron = per_namespace::<CronJob>(
        client,
        namespaces,
        &lp,
        page,
        full("cron jobs", "cronjobs"),
        progress,
    )
    .await;
    parts.push(
        cron.into_iter()
            .map(|(ns, r)| {
                (
                    ns,
                    templates("CronJob", r, "/spec/jobTemplate/spec/template", |d| {
                        name(&d.metadata)
                    }),
                )
            })
            .collect(),
    );
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
