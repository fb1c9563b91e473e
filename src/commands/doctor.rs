//! `gke-wi-injector doctor`: reads the cluster with the caller's kubeconfig (read-only, plus
//! server-side dry-run Pod creates), runs the checks of `crate::doctor`, prints the report.
//! Exit status: 0 without errors, 1 with errors (`--strict`: warnings too), 2 when the cluster
//! cannot be reached or read at all.

mod lists;
mod read;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::shared::{MutationArgs, parse_nonzero_duration};
use crate::doctor::{self, Options, render};
use lists::{Progress, describe};

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
    let snap = match read::read(&client, &args, &mut progress).await {
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
