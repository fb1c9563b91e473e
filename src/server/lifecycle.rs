//! The server's lifecycle (SPEC §6): the HTTPS admission listener and the plain-HTTP admin
//! listener, started on bound sockets and shut down gracefully.
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

use super::admin::{self, AdminState, Readiness};
use super::connections::{self, Limits, Listener};
use super::http::{self, AppState};

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
            http::router(app),
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
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: unix_signal(SignalKind::terminate())?,
            int: unix_signal(SignalKind::interrupt())?,
            hup: unix_signal(SignalKind::hangup())?,
        })
    }

    /// The next signal's name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}
