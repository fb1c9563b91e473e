//! `gke-wi-injector serve` (SPEC §6): loads the certificate and the namespace source, binds the
//! HTTPS admission listener and the plain-HTTP admin listener, and shuts down gracefully.
//!
//! Shutdown (SIGTERM, SIGINT or SIGHUP): `/readyz` fails at once; after `--shutdown-delay`
//! (SIGTERM only, so endpoints stop pointing here before the listener goes away) the listener
//! closes; requests in flight finish, bounded by `--shutdown-grace`; then the process exits 0.
//! SIGHUP (the terminal went away) stops like SIGINT rather than killing the process mid-request;
//! there is no reload signal, as the certificate and the namespaces file are re-read when they
//! change. A second signal during the delay or the drain ends it at once: the open connections
//! are dropped and the process exits 1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal as unix_signal};
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

/// The two listeners, bound and not serving yet.
#[derive(Debug)]
pub struct Listeners {
    main: TcpListener,
    admin: TcpListener,
    addr: SocketAddr,
    admin_addr: SocketAddr,
}

impl Listeners {
    /// Binds `--listen` and `--admin-listen`; the error names the flag.
    pub async fn bind(listen: SocketAddr, admin_listen: SocketAddr) -> Result<Self, BindError> {
        let error = |flag, addr| move |error| BindError { flag, addr, error };
        let main = TcpListener::bind(listen)
            .await
            .map_err(error("--listen", listen))?;
        let admin = TcpListener::bind(admin_listen)
            .await
            .map_err(error("--admin-listen", admin_listen))?;
        let addr = main.local_addr().map_err(error("--listen", listen))?;
        let admin_addr = admin
            .local_addr()
            .map_err(error("--admin-listen", admin_listen))?;
        Ok(Listeners {
            main,
            admin,
            addr,
            admin_addr,
        })
    }
}

impl Server {
    /// Starts serving on bound listeners. `stop` is also what ends the reloaders and the
    /// namespace watch; it turns true when the listener closes. The open-files limit is raised
    /// first, and `limits.max_connections` lowered if it does not fit.
    pub fn start(
        listeners: Listeners,
        shutdown_grace: Duration,
        limits: Limits,
        app: AppState,
        tls: Arc<rustls::ServerConfig>,
        stop: watch::Sender<bool>,
    ) -> Server {
        let limits = limits.within_open_files_limit();
        let Listeners {
            main: listener,
            admin: admin_listener,
            addr,
            admin_addr,
        } = listeners;
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
        Server {
            addr,
            admin_addr,
            readiness,
            stop,
            admin_stop,
            main,
            admin,
        }
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

/// The signals that stop the server, installed once so that none is missed between the first
/// and the second.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: unix_signal(SignalKind::terminate())?,
            int: unix_signal(SignalKind::interrupt())?,
            hup: unix_signal(SignalKind::hangup())?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
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
