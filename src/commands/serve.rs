//! `gke-wi-injector serve`: checks every input (the namespace source, then the certificate),
//! then starts the server (`server::lifecycle`) and stops it on a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, ValueEnum};
use tokio::sync::watch;

use super::shared::{
    MutationArgs, on_error, parse_body_budget, parse_duration, parse_nonzero_duration,
};
use crate::admission::OnError;
use crate::namespaces::cluster::{self, KubeNamespaces};
use crate::namespaces::{FileNamespaces, NamespaceSource};
use crate::server::budget::BodyBudget;
use crate::server::connections::Limits;
use crate::server::http::AppState;
use crate::server::lifecycle::{Listeners, Server, Signals};
use crate::server::metrics::Metrics;
use crate::server::reload;
use crate::server::telemetry::{self, LogFormat};
use crate::server::tls::{CertSource, Tls};

/// `--log-format`: the server's [`LogFormat`], spelled for clap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormatArg {
    Json,
    Text,
}

fn log_format() -> impl clap::builder::TypedValueParser<Value = LogFormat> {
    clap::builder::EnumValueParser::<LogFormatArg>::new().map(|f| match f {
        LogFormatArg::Json => LogFormat::Json,
        LogFormatArg::Text => LogFormat::Text,
    })
}

/// The `serve` subcommand's flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub mutation: MutationArgs,

    /// HTTPS address of the admission endpoint.
    #[arg(long, env = "GKE_WI_INJECTOR_LISTEN", default_value = "0.0.0.0:10250")]
    pub listen: SocketAddr,

    /// Plain-HTTP address of /livez, /readyz and /metrics.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_ADMIN_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub admin_listen: SocketAddr,

    /// PEM certificate chain served to the API server; re-read when the file changes.
    #[arg(long, env = "GKE_WI_INJECTOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert; re-read when the file changes.
    #[arg(long, env = "GKE_WI_INJECTOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Without --tls-cert/--tls-key: where to write the CA of the generated development certificate.
    #[arg(long, env = "GKE_WI_INJECTOR_DEV_CA_OUT")]
    pub dev_ca_out: Option<PathBuf>,

    /// Namespaces from a YAML or JSON file instead of the cluster (re-read when it changes).
    #[arg(long, env = "GKE_WI_INJECTOR_NAMESPACES")]
    pub namespaces: Option<PathBuf>,

    /// What to answer when the injector cannot decide (namespace unknown, request unreadable).
    #[arg(long, env = "GKE_WI_INJECTOR_ON_ERROR", default_value = "allow", value_parser = on_error())]
    pub on_error: OnError,

    /// Log format.
    #[arg(long, env = "GKE_WI_INJECTOR_LOG_FORMAT", default_value = "json", value_parser = log_format())]
    pub log_format: LogFormat,

    /// After SIGTERM, keep accepting (with /readyz failing) this long before closing the listener,
    /// so that the API server stops sending reviews here first. Not applied to SIGINT.
    #[arg(long, env = "GKE_WI_INJECTOR_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Longest time in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "GKE_WI_INJECTOR_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Timeout of the single GET for a namespace missing from the cache.
    #[arg(long, env = "GKE_WI_INJECTOR_NAMESPACE_GET_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub namespace_get_timeout: Duration,

    /// How often the certificate and namespaces files are checked for changes.
    #[arg(long, env = "GKE_WI_INJECTOR_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub reload_interval: Duration,

    /// Most connections open at once on the admission listener. Past it a new connection is
    /// closed as soon as it is accepted, before any TLS work (counted in
    /// gke_wi_injector_connections_rejected_total). Lowered at start when the open-files limit
    /// (raised to its hard limit first) leaves less room.
    #[arg(long, env = "GKE_WI_INJECTOR_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most request-body bytes held in memory at once, all requests together (Ki, Mi, Gi
    /// suffixes); a request whose body would pass it is answered 503 ServiceUnavailable. Bytes
    /// past a body's first 256 KiB may use three quarters of it, so large uploads cannot crowd
    /// out ordinary reviews. At least 1Mi.
    #[arg(long, env = "GKE_WI_INJECTOR_MAX_BODY_BYTES_IN_FLIGHT", default_value = "64Mi", value_parser = parse_body_budget)]
    pub max_body_bytes_in_flight: usize,

    /// Close a connection that has had no request in flight for this long (HTTP/2: with a
    /// GOAWAY). Longer than the API server's own idle timeout (90 s), so that it closes its
    /// idle connections first and never sends a review on a connection being closed.
    #[arg(long, env = "GKE_WI_INJECTOR_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_nonzero_duration)]
    pub idle_timeout: Duration,

    /// Longest a client may take for the TLS handshake, and for a request's head (HTTP/1.1) once
    /// its first byte has arrived.
    #[arg(long, env = "GKE_WI_INJECTOR_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub header_timeout: Duration,

    /// Longest a request body may take to arrive; answered 408 after. The API server gives up on
    /// a webhook call after at most 30 s.
    #[arg(long, env = "GKE_WI_INJECTOR_BODY_TIMEOUT", default_value = "30s", value_parser = parse_nonzero_duration)]
    pub body_timeout: Duration,
}

/// Where namespace labels will come from, decided (and the file read) before anything starts.
enum NamespacePlan {
    File(Arc<FileNamespaces>, Vec<u8>),
    Cluster(kube::Client),
}

/// The `serve` subcommand. Every input is checked before anything binds or starts: the namespace
/// source (the file parsed, or a cluster configuration found), then the certificate.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Dropped last: queued log lines are written before the process exits.
    let logs = telemetry::init(args.log_format)?;
    let metrics = Arc::new(Metrics::new());
    metrics.set_log_drops(logs.dropped_counter());
    let mut signals =
        Signals::install().map_err(|e| anyhow::anyhow!("installing the signal handlers: {e}"))?;
    let (stop, stopped) = watch::channel(false);

    let plan = match &args.namespaces {
        Some(path) => {
            let (source, contents) = FileNamespaces::load(path)?;
            NamespacePlan::File(source, contents)
        }
        None => NamespacePlan::Cluster(cluster::client().await?),
    };
    let cert_source = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => CertSource::Generated {
            ca_out: args.dev_ca_out.clone(),
        },
    };
    if args.tls_cert.is_some() && args.dev_ca_out.is_some() {
        tracing::warn!("--dev-ca-out is ignored: --tls-cert/--tls-key are given");
    }
    let mut tls = Tls::load(&cert_source, &metrics)?;
    let tls_config = tls.server_config()?;
    let mut dev_ca_out = None;
    if let CertSource::Generated { ca_out } = cert_source {
        tracing::warn!(
            ca_out = ca_out.as_ref().map(|p| p.display().to_string()),
            "no --tls-cert/--tls-key: serving a generated development certificate for localhost, 127.0.0.1 and ::1"
        );
        dev_ca_out = ca_out;
    }

    let namespaces: Arc<dyn NamespaceSource> = match plan {
        NamespacePlan::File(source, contents) => {
            let file = args.namespaces.as_deref().map(|p| p.display().to_string());
            tracing::info!(
                file,
                namespaces = source.len(),
                "namespace labels from a file"
            );
            reload::spawn_namespaces_file(
                &source,
                contents,
                args.reload_interval,
                metrics.clone(),
                stopped.clone(),
            );
            source
        }
        NamespacePlan::Cluster(client) => {
            tracing::info!("namespace labels from a metadata-only watch of Namespaces");
            KubeNamespaces::start(client, args.namespace_get_timeout, stopped.clone())
        }
    };
    tls.spawn_reloader(args.reload_interval, metrics.clone(), stopped);

    let app = AppState {
        config: Arc::new(args.mutation.to_config()),
        on_error: args.on_error,
        namespaces,
        metrics,
        body_timeout: args.body_timeout,
        body_budget: BodyBudget::new(args.max_body_bytes_in_flight),
    };
    let limits = Limits {
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout,
        header_timeout: args.header_timeout,
    };
    // The development CA is written once both ports are ours, and before readiness: a second
    // server that cannot bind leaves the running one's CA in place.
    let listeners = Listeners::bind(args.listen, args.admin_listen).await?;
    if let Some(path) = &dev_ca_out {
        tls.write_dev_ca(path)?;
    }
    let server = Server::start(
        listeners,
        args.shutdown_grace,
        limits,
        app,
        tls_config,
        stop,
    );
    tracing::info!(listen = %server.addr(), admin = %server.admin_addr(), "serving admission reviews on POST /mutate");

    let signal = signals.next().await;
    let delay = if signal == "SIGTERM" {
        args.shutdown_delay
    } else {
        Duration::ZERO
    };
    tracing::info!(signal, "shutting down; a second signal stops at once");
    tokio::select! {
        () = server.shutdown(delay) => {}
        second = signals.next() => {
            tracing::warn!(signal = second, "second signal: exiting without finishing the drain");
            anyhow::bail!("stopped by a second signal ({second}) before in-flight requests finished");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
