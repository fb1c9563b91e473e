//! Connections of both listeners (SPEC §9): a cap on open connections, the TLS handshake
//! (admission listener), HTTP/1.1 or HTTP/2 by ALPN (or by the first bytes) with explicit protocol
//! limits, and the timeouts that close a connection a client holds without using it. The admin
//! listener has the same protections with fixed bounds ([`ADMIN_LIMITS`]).
//!
//! | bound | what a client sees |
//! |---|---|
//! | `--max-connections` open at once | up to [`OVERFLOW_CONNECTIONS`] more get a 503 `Status` within [`OVERFLOW_TIMEOUT`], then are closed; past those, a connection is closed at once, before any TLS work |
//! | `--header-timeout` for the TLS handshake | the connection is closed |
//! | `--header-timeout` from a request head's first byte to its end (HTTP/1.1) | the connection is closed |
//! | `--idle-timeout` with no request in flight | HTTP/1.1: closed; HTTP/2: GOAWAY, then closed |
//! | HTTP/1.1: a head of [`H1_MAX_HEAD_BYTES`], [`H1_MAX_HEADERS`] headers | closed; 431 |
//! | HTTP/2: [`H2_MAX_CONCURRENT_STREAMS`] streams, [`H2_MAX_HEADER_LIST_SIZE`] of headers | streams refused; oversized headers answered 431 |
//! | HTTP/2: resets and CONTINUATION floods (h2's limits, set here explicitly) | GOAWAY `ENHANCE_YOUR_CALM` |
//!
//! The idle clock runs only while no request is in flight; bytes alone (HTTP/2 PINGs, a head
//! that never ends) do not restart it.

mod activity;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use self::activity::{Activity, HEADS_OFF, HEADS_ON, HEADS_UNKNOWN, Watched, scopeguard};
use crate::server::metrics::Metrics;
use crate::server::reload;

/// HTTP/2 streams open at once on one connection; more are refused (`REFUSED_STREAM`).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 32;
/// Largest HTTP/2 header list (decoded); it also bounds the CONTINUATION frames of one head.
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// Streams a client may reset before the server has accepted them (rapid reset,
/// CVE-2023-44487); past it the connection gets GOAWAY `ENHANCE_YOUR_CALM`.
pub const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset for a client's protocol errors before it sends GOAWAY.
pub const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// A PING after this long without a frame from the client; no answer within
/// [`H2_KEEP_ALIVE_TIMEOUT`] closes the connection (a peer that vanished).
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest HTTP/1.1 request head (request line and headers); a connection whose head passes it
/// is closed. The API server sends a few hundred bytes.
pub const H1_MAX_HEAD_BYTES: usize = 32 * 1024;
/// Largest HTTP/1.1 read buffer (hyper's bound, checked between reads).
pub const H1_MAX_BUF_SIZE: usize = 32 * 1024;
pub const H1_MAX_HEADERS: usize = 100;
/// Bounds of the plain-HTTP admin listener: kubelet probes open one connection per probe and
/// Prometheus keeps one alive between scrapes.
pub const ADMIN_LIMITS: Limits = Limits {
    max_connections: 64,
    idle_timeout: Duration::from_secs(90),
    header_timeout: Duration::from_secs(10),
};
/// Connections over the cap that are still answered (503 with a `Status` naming the bound) so
/// that the client, usually the API server, logs why; past these, connections are closed at
/// accept.
pub const OVERFLOW_CONNECTIONS: u32 = 32;
/// Longest an over-the-cap connection is kept: its handshake, one request and the 503.
pub const OVERFLOW_TIMEOUT: Duration = Duration::from_secs(1);
/// File descriptors kept out of `--max-connections`: the over-the-cap connections being
/// answered, the admin listener's connections, the files re-read, the namespace watch, logs.
pub const FD_RESERVE: u64 = OVERFLOW_CONNECTIONS as u64 + ADMIN_LIMITS.max_connections as u64 + 64;
/// How long a connection being closed for idleness may take to say goodbye (GOAWAY), while no
/// request is in flight on it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Accept errors and refused connections are logged at most once per interval.
const LOG_INTERVAL: Duration = Duration::from_secs(5);
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Bounds of the admission listener (`--max-connections`, `--idle-timeout`, `--header-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: u32,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            idle_timeout: Duration::from_secs(120),
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Raises the soft open-files limit to the hard one, then lowers `max_connections` if the
    /// limit leaves less than [`FD_RESERVE`] descriptors beside them. Logs both limits.
    pub fn within_open_files_limit(mut self) -> Limits {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let before = getrlimit(Resource::Nofile);
        if before.current != before.maximum {
            let raised = Rlimit {
                current: before.maximum,
                maximum: before.maximum,
            };
            if let Err(error) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(%error, "cannot raise the open-files limit");
            }
        }
        let now = getrlimit(Resource::Nofile);
        let show = |l: Option<u64>| l.map_or("unlimited".to_string(), |n| n.to_string());
        tracing::info!(
            soft_before = show(before.current),
            soft = show(now.current),
            hard = show(now.maximum),
            "open-files limit"
        );
        if let Some(soft) = now.current {
            let room = u32::try_from(soft.saturating_sub(FD_RESERVE).max(1)).unwrap_or(u32::MAX);
            if room < self.max_connections {
                tracing::warn!(
                    max_connections = self.max_connections,
                    lowered_to = room,
                    open_files_limit = soft,
                    "--max-connections lowered to fit the open-files limit"
                );
                self.max_connections = room;
            }
        }
        self
    }
}

/// A bound socket, and how its connections are served.
pub struct Listener {
    /// `admission` or `admin`, the `listener` label of the connection metrics.
    pub name: &'static str,
    pub socket: TcpListener,
    /// `None`: plain HTTP.
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
}

/// What every connection task shares.
struct Shared {
    name: &'static str,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
    /// For a client that negotiated no ALPN: HTTP/2 if it starts with the HTTP/2 preface.
    any: auto::Builder<TokioExecutor>,
    /// For connections over the cap: one answer, then closed.
    overflow: auto::Builder<TokioExecutor>,
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Head timeouts are kept by `Activity`: hyper's own would also cut idle keep-alive.
    builder
        .http1()
        .header_read_timeout(None)
        .max_buf_size(H1_MAX_BUF_SIZE)
        .max_headers(H1_MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    builder
}

/// Accepts connections until `stop`, at most `limits.max_connections` at once, each served in
/// its own task; then closes the listener and waits up to `grace` for their requests to finish.
pub async fn serve(
    listener: Listener,
    app: Router,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let Listener {
        name,
        socket,
        tls,
        limits,
    } = listener;
    metrics.listener_started(name);
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let overflow_slots = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS as usize));
    let mut overflow = builder();
    overflow.http1().keep_alive(false);
    let shared = Arc::new(Shared {
        name,
        tls,
        app,
        limits,
        metrics: metrics.clone(),
        h1: builder().http1_only(),
        h2: builder().http2_only(),
        any: builder(),
        overflow,
    });
    let (mut failures, mut refusals) = (Throttle::new(LOG_INTERVAL), Throttle::new(LOG_INTERVAL));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = reload::until_stopped(&mut stop) => break,
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, for instance: back off instead of spinning.
                    metrics.accept_failed(name);
                    if let Some(suppressed) = failures.admit() {
                        let backoff_ms = backoff.as_millis() as u64;
                        tracing::warn!(listener = name, %error, suppressed, backoff_ms, "accept failed");
                    }
                    tokio::select! {
                        biased;
                        () = reload::until_stopped(&mut stop) => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        backoff = ACCEPT_BACKOFF_MIN;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_rejected(name);
            if let Some(suppressed) = refusals.admit() {
                tracing::warn!(
                    listener = name,
                    max_connections = limits.max_connections,
                    suppressed,
                    "connection limit reached; new connections are answered 503 or closed at once"
                );
            }
            match overflow_slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(over_capacity(shared.clone(), tcp, peer, permit));
                }
                // Closed before any TLS work: a client past the overflow costs an accept and a
                // close.
                Err(_) => drop(tcp),
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(shared.clone(), tcp, peer, slot, stop.clone()));
    }
    drop(socket);
    let open = limits.max_connections as usize - slots.available_permits();
    tracing::info!(
        listener = name,
        open_connections = open,
        "listener closed; draining in-flight requests"
    );
    // Every connection holds a slot until it has closed.
    match tokio::time::timeout(grace, slots.acquire_many(limits.max_connections)).await {
        Ok(_) => tracing::info!(listener = name, "drained"),
        Err(_) => tracing::warn!(
            listener = name,
            grace_ms = grace.as_millis() as u64,
            "requests still in flight after --shutdown-grace; closing them"
        ),
    }
}

/// One connection, from the TLS handshake (if any) to its close.
async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
) {
    let (metrics, name) = (&shared.metrics, shared.name);
    metrics.connections_open(name, 1);
    let _open = scopeguard(|| metrics.connections_open(name, -1));
    let Some(acceptor) = &shared.tls else {
        return serve_http(&shared, tcp, HEADS_UNKNOWN, peer, stop).await;
    };
    let handshake = acceptor.accept(tcp);
    let tls = match tokio::time::timeout(shared.limits.header_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => {
            metrics.connection_timed_out(name, "handshake");
            return tracing::debug!(%peer, "TLS handshake timed out");
        }
    };
    let heads = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => HEADS_OFF,
        Some(b"http/1.1") => HEADS_ON,
        _ => HEADS_UNKNOWN,
    };
    serve_http(&shared, tls, heads, peer, stop).await;
}

/// A connection accepted over the cap: the handshake, a 503 `Status` for its requests, and
/// closed after the first answer (HTTP/1.1) or [`OVERFLOW_TIMEOUT`], whichever comes first.
async fn over_capacity(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let max_connections = shared.limits.max_connections;
    let service = hyper::service::service_fn(move |_request: hyper::Request<Incoming>| {
        std::future::ready(Ok::<_, std::convert::Infallible>(
            crate::server::http::over_connection_capacity(max_connections),
        ))
    });
    let answer = async {
        match &shared.tls {
            None => {
                let io = TokioIo::new(tcp);
                shared.overflow.serve_connection(io, service).await
            }
            Some(acceptor) => {
                let tls = acceptor.accept(tcp).await?;
                let io = TokioIo::new(tls);
                shared.overflow.serve_connection(io, service).await
            }
        }
    };
    match tokio::time::timeout(OVERFLOW_TIMEOUT, answer).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%peer, %error, "over-the-cap connection failed"),
        Err(_) => tracing::debug!(%peer, "over-the-cap connection closed at its timeout"),
    }
}

/// HTTP/1.1 or HTTP/2 on an established connection, until it closes or times out. `heads`:
/// HTTP/1.1 (`HEADS_ON`), HTTP/2 (`HEADS_OFF`), or to be told from the first bytes.
async fn serve_http<IO>(
    shared: &Shared,
    io: IO,
    heads: u8,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = match heads {
        HEADS_ON => &shared.h1,
        HEADS_OFF => &shared.h2,
        _ => &shared.any,
    };
    let (metrics, name, limits) = (&shared.metrics, shared.name, shared.limits);
    let activity = Arc::new(Activity::new(heads));
    let io = TokioIo::new(Watched {
        io,
        activity: activity.clone(),
    });
    let (app, requests) = (shared.app.clone(), activity.clone());
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = requests.begin();
        let app = app.clone();
        async move {
            let _in_flight = in_flight;
            app.oneshot(request).await
        }
    });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let (mut closing, mut stopping) = (None::<Instant>, false);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            timeout = activity.expired(limits), if closing.is_none() => {
                metrics.connection_timed_out(name, timeout);
                tracing::debug!(%peer, timeout, "closing a connection that timed out");
                if timeout == "header" {
                    // A head cut short has no graceful end.
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            () = reload::until_stopped(&mut stop), if !stopping && closing.is_none() => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => {
                if !activity.busy() {
                    return;
                }
                // A request that crossed the GOAWAY is answered first.
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
        }
    }
}

/// Lets one event in per interval, counting the others.
struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(events suppressed since the last one let in)`, or `None` to stay quiet.
    fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + self.interval) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_throttle_lets_one_event_in_per_interval_and_counts_the_rest() {
        let interval = Duration::from_millis(300);
        let mut throttle = Throttle::new(interval);
        assert_eq!(throttle.admit(), Some(0));
        for _ in 0..99 {
            assert_eq!(throttle.admit(), None);
        }
        tokio::time::sleep(interval).await;
        assert_eq!(throttle.admit(), Some(99));
        assert_eq!(throttle.admit(), None);
    }
}
