//! What a connection's timeouts watch: requests in flight, since when none, and since when a
//! request head has been arriving; fed by the service (requests) and by [`Watched`] (bytes).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{H1_MAX_HEAD_BYTES, Limits};

/// Runs `f` when dropped.
pub(super) fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Whether bytes read while no request is in flight start a head that must end within the
/// header timeout: HTTP/1.1 yes; HTTP/2 no (PINGs and SETTINGS are not requests); without ALPN,
/// decided by the first bytes.
pub(super) const HEADS_ON: u8 = 1;
pub(super) const HEADS_OFF: u8 = 2;
pub(super) const HEADS_UNKNOWN: u8 = 3;
const NEVER: u64 = u64::MAX;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's timeouts need to know: requests in flight, since when none, and since
/// when a head has been arriving. Times are microseconds since `epoch`.
pub(super) struct Activity {
    epoch: Instant,
    heads: AtomicU8,
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    head_since: AtomicU64,
    /// Bytes read since `head_since`.
    head_bytes: AtomicUsize,
    /// Told when a deadline may have moved.
    changed: Notify,
}

impl Activity {
    pub(super) fn new(heads: u8) -> Self {
        Activity {
            epoch: Instant::now(),
            heads: AtomicU8::new(heads),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NEVER),
            head_bytes: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn at(&self, micros: u64, after: Duration) -> Instant {
        self.epoch + Duration::from_micros(micros) + after
    }

    /// Notes bytes read; `false` once an HTTP/1.1 head has passed [`H1_MAX_HEAD_BYTES`].
    fn read(&self, bytes: &[u8]) -> bool {
        if self.heads.load(Ordering::Relaxed) == HEADS_UNKNOWN {
            let n = bytes.len().min(H2_PREFACE.len());
            let h2 = H2_PREFACE.starts_with(&bytes[..n]);
            let heads = if h2 { HEADS_OFF } else { HEADS_ON };
            self.heads.store(heads, Ordering::Relaxed);
        }
        if self.heads.load(Ordering::Relaxed) != HEADS_ON
            || self.in_flight.load(Ordering::SeqCst) > 0
        {
            return true;
        }
        if self.head_since.load(Ordering::SeqCst) == NEVER {
            self.head_bytes.store(0, Ordering::SeqCst);
            self.head_since.store(self.now(), Ordering::SeqCst);
            self.changed.notify_one();
        }
        let before = self.head_bytes.fetch_add(bytes.len(), Ordering::SeqCst);
        before + bytes.len() <= H1_MAX_HEAD_BYTES
    }

    /// A request reached the application; until the guard drops it is in flight.
    pub(super) fn begin(self: &Arc<Self>) -> impl Drop + Send + use<> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(NEVER, Ordering::SeqCst);
        let activity = self.clone();
        scopeguard(move || {
            if activity.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                activity.head_since.store(NEVER, Ordering::SeqCst);
                activity.idle_since.store(activity.now(), Ordering::SeqCst);
                activity.changed.notify_one();
            }
        })
    }

    /// Whether a request is in flight.
    pub(super) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// The next deadline and its name, or `None` while a request is in flight.
    fn deadline(&self, limits: Limits) -> Option<(Instant, &'static str)> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let idle = self.at(self.idle_since.load(Ordering::SeqCst), limits.idle_timeout);
        match self.head_since.load(Ordering::SeqCst) {
            NEVER => Some((idle, "idle")),
            head => Some((self.at(head, limits.header_timeout), "header").min((idle, "idle"))),
        }
    }

    /// Resolves with the name of the first timeout that passes.
    pub(super) async fn expired(&self, limits: Limits) -> &'static str {
        loop {
            match self.deadline(limits) {
                None => self.changed.notified().await,
                Some((at, name)) if at <= Instant::now() => return name,
                Some((at, _)) => tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = self.changed.notified() => {}
                },
            }
        }
    }
}

/// The TLS stream, reporting the bytes it reads to the connection's [`Activity`].
pub(super) struct Watched<T> {
    pub(super) io: T,
    pub(super) activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let new = &buf.filled()[before..];
            if !new.is_empty() && !self.activity.read(new) {
                let error = format!("request head larger than {H1_MAX_HEAD_BYTES} bytes");
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_connections: 1,
        idle_timeout: Duration::from_millis(400),
        header_timeout: Duration::from_millis(200),
    };

    #[tokio::test]
    async fn idle_runs_only_without_requests_and_a_head_must_end_in_time() {
        let activity = Arc::new(Activity::new(HEADS_ON));
        let (at, name) = activity.deadline(LIMITS).unwrap();
        assert_eq!(name, "idle");
        assert!(at <= Instant::now() + LIMITS.idle_timeout);
        activity.read(b"POST /mut");
        let (at, name) = activity.deadline(LIMITS).unwrap();
        assert_eq!(name, "header");
        assert!(at <= Instant::now() + LIMITS.header_timeout);
        let started = Instant::now();
        assert_eq!(activity.expired(LIMITS).await, "header");
        assert!(started.elapsed() < LIMITS.header_timeout + Duration::from_secs(2));

        let request = activity.begin();
        assert_eq!(
            activity.deadline(LIMITS),
            None,
            "no clock while a request is in flight"
        );
        activity.read(b"more body");
        tokio::time::sleep(LIMITS.idle_timeout).await;
        let watch = activity.clone();
        let expired = tokio::spawn(async move { watch.expired(LIMITS).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!expired.is_finished());
        let idle_from = Instant::now();
        drop(request);
        assert_eq!(expired.await.unwrap(), "idle");
        assert!(idle_from.elapsed() >= LIMITS.idle_timeout - Duration::from_millis(5));
    }

    #[test]
    fn http2_bytes_start_no_head() {
        for (heads, first, want) in [
            (HEADS_OFF, &b"\0\0\x08\x06"[..], false),
            (HEADS_UNKNOWN, H2_PREFACE, false),
            (HEADS_UNKNOWN, b"PRI *", false),
            (HEADS_UNKNOWN, b"POST /mutate HTTP/1.1\r\n", true),
        ] {
            let activity = Activity::new(heads);
            assert!(activity.read(first));
            let started = activity.head_since.load(Ordering::SeqCst) != NEVER;
            assert_eq!(started, want, "{first:?}");
        }
    }

    #[test]
    fn an_http1_head_is_bounded_and_the_bound_starts_again_with_each_head() {
        let activity = Arc::new(Activity::new(HEADS_ON));
        let kib = [b'a'; 1024];
        assert!((0..32).all(|_| activity.read(&kib)));
        assert!(!activity.read(b"!"), "one byte past 32 KiB");
        drop(activity.begin());
        assert!((0..32).all(|_| activity.read(&kib)), "a new head");
        let request = activity.begin();
        assert!(
            (0..100).all(|_| activity.read(&kib)),
            "a body is not a head"
        );
        drop(request);
        let h2 = Activity::new(HEADS_OFF);
        assert!((0..100).all(|_| h2.read(&kib)));
    }
}
