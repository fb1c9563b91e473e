//! `gke-wi-injector serve` (SPEC §6): loads the certificate and the namespace source, binds the
//! HTTPS admission listener and the plain-HTTP admin listener, and shuts down gracefully.
//!
//! Shutdown (SIGTERM, or SIGINT): `/readyz` fails at once; after `--shutdown-delay` (SIGTERM only,
//! so endpoints stop pointing here before the listener goes away) the listener closes; requests
//! in flight finish, bounded by `--shutdown-grace`; then the process exits 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::admin::{self, AdminState, Readiness};
use crate::budget::BodyBudget;
use crate::cli::ServeArgs;
use crate::connections::{self, Limits, Listener};
use crate::metrics::Metrics;
use crate::namespaces::{FileNamespaces, NamespaceSource};
use crate::namespaces_kube::{self, KubeNamespaces};
use crate::server::{self, AppState};
use crate::telemetry;
use crate::tls::{CertSource, Tls};

/// Longest the admin listener waits for its own connections at the very end.
const ADMIN_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {flag} {addr}: {error}")]
pub struct BindError {
    flag: &'static str,
    addr: SocketAddr,
    error: std::io::Error,
}

/// The two listeners, running.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    readiness: Arc<Readiness>,
    stop: watch::Sender<bool>,
    admin_stop: watch::Sender<bool>,
    main: JoinHandle<()>,
    admin: JoinHandle<()>,
}

impl Server {
    /// Binds both listeners and starts serving. `stop` is also what ends the reloaders and the
    /// namespace watch; it turns true when the listener closes. The open-files limit is raised
    /// first, and `limits.max_connections` lowered if it does not fit.
    pub async fn start(
        listen: SocketAddr,
        admin_listen: SocketAddr,
        shutdown_grace: Duration,
        limits: Limits,
        app: AppState,
        tls: Arc<rustls::ServerConfig>,
        stop: watch::Sender<bool>,
    ) -> Result<Server, BindError> {
        let limits = limits.within_open_files_limit();
        let listener = TcpListener::bind(listen).await.map_err(|error| BindError {
            flag: "--listen",
            addr: listen,
            error,
        })?;
        let admin_listener = TcpListener::bind(admin_listen)
            .await
            .map_err(|error| BindError {
                flag: "--admin-listen",
                addr: admin_listen,
                error,
            })?;
        let addr = listener.local_addr().map_err(|error| BindError {
            flag: "--listen",
            addr: listen,
            error,
        })?;
        let admin_addr = admin_listener.local_addr().map_err(|error| BindError {
            flag: "--admin-listen",
            addr: admin_listen,
            error,
        })?;

        let readiness = Arc::new(Readiness::new(app.namespaces.clone()));
        readiness.set_cert_loaded();
        let admin_state = AdminState {
            readiness: readiness.clone(),
            namespaces: app.namespaces.clone(),
            metrics: app.metrics.clone(),
        };
        let (admin_stop, admin_stopped) = watch::channel(false);
        let admin = tokio::spawn(connections::serve(
            Listener {
                name: "admin",
                socket: admin_listener,
                tls: None,
                limits: connections::ADMIN_LIMITS,
            },
            admin::router(admin_state),
            app.metrics.clone(),
            admin_stopped,
            ADMIN_CLOSE_TIMEOUT,
        ));
        let metrics = app.metrics.clone();
        let main = tokio::spawn(connections::serve(
            Listener {
                name: "admission",
                socket: listener,
                tls: Some(TlsAcceptor::from(tls)),
                limits,
            },
            server::router(app),
            metrics,
            stop.subscribe(),
            shutdown_grace,
        ));
        Ok(Server {
            addr,
            admin_addr,
            readiness,
            stop,
            admin_stop,
            main,
            admin,
        })
    }

    /// Address of the HTTPS admission listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Address of the plain-HTTP admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Readiness false at once; after `delay` the listener closes and in-flight requests drain
    /// (bounded by the grace given to `start`); then the admin listener closes.
    pub async fn shutdown(self, delay: Duration) {
        self.readiness.begin_shutdown();
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "not ready; still accepting during --shutdown-delay"
            );
            tokio::time::sleep(delay).await;
        }
        let _ = self.stop.send(true);
        if let Err(error) = self.main.await {
            tracing::error!(%error, "admission listener task failed");
        }
        let _ = self.admin_stop.send(true);
        let mut admin = self.admin;
        if tokio::time::timeout(ADMIN_CLOSE_TIMEOUT, &mut admin)
            .await
            .is_err()
        {
            admin.abort();
        }
    }
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn signal() -> std::io::Result<&'static str> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
    }
}

/// Where namespace labels will come from, decided (and the file read) before anything starts.
enum NamespacePlan {
    File(Arc<FileNamespaces>, Vec<u8>),
    Cluster(kube::Client),
}

/// The `serve` subcommand. Every input is checked before anything binds or starts: the namespace
/// source (the file parsed, or a cluster configuration found), then the certificate.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format)?;
    let metrics = Arc::new(Metrics::new());
    let (stop, stopped) = watch::channel(false);

    let plan = match &args.namespaces {
        Some(path) => {
            let (source, contents) = FileNamespaces::load(path)?;
            NamespacePlan::File(source, contents)
        }
        None => NamespacePlan::Cluster(namespaces_kube::client().await?),
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
    if let CertSource::Generated { ca_out } = &cert_source {
        let ca_out = ca_out.as_ref().map(|p| p.display().to_string());
        tracing::warn!(
            ca_out,
            "no --tls-cert/--tls-key: serving a generated development certificate for localhost, 127.0.0.1 and ::1"
        );
    }

    let namespaces: Arc<dyn NamespaceSource> = match plan {
        NamespacePlan::File(source, contents) => {
            let file = args.namespaces.as_deref().map(|p| p.display().to_string());
            tracing::info!(
                file,
                namespaces = source.len(),
                "namespace labels from a file"
            );
            source.spawn_reloader(
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
    let server = Server::start(
        args.listen,
        args.admin_listen,
        args.shutdown_grace,
        limits,
        app,
        tls_config,
        stop,
    )
    .await?;
    tracing::info!(listen = %server.addr(), admin = %server.admin_addr(), "serving admission reviews on POST /mutate");

    let signal = signal()
        .await
        .map_err(|e| anyhow::anyhow!("installing the signal handlers: {e}"))?;
    let delay = if signal == "SIGTERM" {
        args.shutdown_delay
    } else {
        Duration::ZERO
    };
    tracing::info!(signal, "shutting down");
    server.shutdown(delay).await;
    tracing::info!("stopped");
    Ok(())
}
