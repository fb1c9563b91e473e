//! Prometheus metrics of the server (SPEC §6), served as text on the admin listener's `/metrics`.
//! Every label has a small, fixed set of values.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admission::Outcome;
use crate::engine::policy::{Feature, Features};

/// Latency buckets, 100 µs to 5 s: a cached-namespace review takes well under a millisecond, a
/// cache miss adds one GET, and the API server gives up at `timeoutSeconds` (at most 30 s).
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `mutated`, `unchanged`, `skipped`, `ignored`, `error`, `denied`, or for requests that are
    /// not answered with a review: `bad_request`, `unsupported_media_type`, `payload_too_large`,
    /// `request_timeout`, `over_capacity` (the body-byte budget is spent: 503).
    pub outcome: Outcome,
}

/// The label value is [`Outcome::label`], the one spelling of each outcome.
impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.label())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// `admission` (HTTPS, --listen) or `admin` (plain HTTP, --admin-listen).
    pub listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabel {
    pub listener: &'static str,
    /// `handshake` (TLS), `header` (a request head started and not finished), `idle` (no request
    /// in flight).
    pub timeout: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabel {
    /// `metadata-wait`, `metadata-host`, `istio`.
    pub feature: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `tls` (the --tls-cert/--tls-key pair) or `namespaces` (the --namespaces file).
    pub source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabel {
    /// `cache` (answered from the watch cache or file), `get` (cache miss, answered by one GET),
    /// `unknown` (not found, or the GET failed).
    pub result: &'static str,
}

/// All metrics, registered once; cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabel, Counter>,
    features: Family<FeatureLabel, Counter>,
    latency: Histogram,
    lookups: Family<LookupLabel, Counter>,
    namespaces_cached: Gauge,
    namespaces_synced: Gauge,
    cert_not_after: Gauge,
    reload_failures: Family<SourceLabel, Counter>,
    reload_deferrals: Family<SourceLabel, Counter>,
    log_lines_dropped: Counter,
    /// Reads the log writer's dropped-lines count (set once logging starts).
    log_drops: OnceLock<Box<dyn Fn() -> u64 + Send + Sync>>,
    connections_open: Family<ListenerLabel, Gauge>,
    connections_rejected: Family<ListenerLabel, Counter>,
    connection_timeouts: Family<TimeoutLabel, Counter>,
    accept_errors: Family<ListenerLabel, Counter>,
    body_bytes_buffered: Gauge,
    /// Serializes scrapes: gauges are refreshed just before encoding.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gke_wi_injector");
        let requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests by outcome",
            requests.clone(),
        );
        let features = Family::<FeatureLabel, Counter>::default();
        registry.register(
            "admission_features",
            "Admitted Pods by feature that applies to them (added now or already present)",
            features.clone(),
        );
        let latency = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "admission_duration_seconds",
            "Time from request received to response ready",
            latency.clone(),
        );
        let lookups = Family::<LookupLabel, Counter>::default();
        registry.register(
            "namespace_lookups",
            "Namespace label lookups by result",
            lookups.clone(),
        );
        let namespaces_cached = Gauge::default();
        registry.register(
            "namespace_cache_size",
            "Namespaces in the label cache",
            namespaces_cached.clone(),
        );
        let namespaces_synced = Gauge::default();
        registry.register(
            "namespace_cache_synced",
            "1 once the namespace cache has its first complete list",
            namespaces_synced.clone(),
        );
        let cert_not_after = Gauge::default();
        registry.register(
            "tls_certificate_not_after_timestamp_seconds",
            "Expiry (Unix time) of the serving certificate in use",
            cert_not_after.clone(),
        );
        let reload_failures = Family::<SourceLabel, Counter>::default();
        registry.register(
            "reload_failures",
            "Changed files that were refused; the previous contents stay in use",
            reload_failures.clone(),
        );
        let reload_deferrals = Family::<SourceLabel, Counter>::default();
        registry.register(
            "reload_deferrals",
            "Changed files held back until unchanged for a poll (a namespaces file that drops namespaces)",
            reload_deferrals.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log writer's queue was full",
            log_lines_dropped.clone(),
        );
        let connections_open = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "connections_open",
            "Connections accepted and not yet closed, by listener",
            connections_open.clone(),
        );
        let connections_rejected = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "connections_rejected",
            "Connections closed as soon as accepted, before any TLS work, because the listener's cap was reached",
            connections_rejected.clone(),
        );
        let connection_timeouts = Family::<TimeoutLabel, Counter>::default();
        registry.register(
            "connection_timeouts",
            "Connections closed by the server for taking too long, by timeout",
            connection_timeouts.clone(),
        );
        let accept_errors = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "accept_errors",
            "Failed accepts (out of file descriptors, for instance), by listener",
            accept_errors.clone(),
        );
        let body_bytes_buffered = Gauge::default();
        registry.register(
            "body_bytes_buffered",
            "Request-body bytes held in memory now, out of --max-body-bytes-in-flight",
            body_bytes_buffered.clone(),
        );
        Metrics {
            registry,
            connections_open,
            connections_rejected,
            connection_timeouts,
            accept_errors,
            body_bytes_buffered,
            requests,
            features,
            latency,
            lookups,
            namespaces_cached,
            namespaces_synced,
            cert_not_after,
            reload_failures,
            reload_deferrals,
            log_lines_dropped,
            log_drops: OnceLock::new(),
            scrape: Mutex::new(()),
        }
    }

    /// Counts one answered request and the features that apply to its Pod.
    pub fn request(&self, outcome: Outcome, features: Features) {
        self.requests.get_or_create(&OutcomeLabel { outcome }).inc();
        for feature in features.iter() {
            self.features
                .get_or_create(&FeatureLabel {
                    feature: Feature::name(feature),
                })
                .inc();
        }
    }

    /// Starts the latency timer of one request; it observes when dropped, on every return path.
    pub fn timer(&self) -> LatencyTimer<'_> {
        LatencyTimer {
            histogram: &self.latency,
            start: Instant::now(),
        }
    }

    pub fn lookup(&self, result: &'static str) {
        self.lookups.get_or_create(&LookupLabel { result }).inc();
    }

    pub fn set_cert_not_after(&self, unix_seconds: i64) {
        self.cert_not_after.set(unix_seconds);
    }

    pub fn reload_failed(&self, source: &'static str) {
        self.reload_failures
            .get_or_create(&SourceLabel { source })
            .inc();
    }

    pub fn reload_deferred(&self, source: &'static str) {
        self.reload_deferrals
            .get_or_create(&SourceLabel { source })
            .inc();
    }

    /// Reload deferrals so far for `source` (tests and logs).
    pub fn reload_deferrals(&self, source: &'static str) -> u64 {
        self.reload_deferrals
            .get_or_create(&SourceLabel { source })
            .get()
    }

    /// Where `log_lines_dropped_total` is read from at each scrape; the first call wins.
    pub fn set_log_drops(&self, read: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.log_drops.set(Box::new(read));
    }

    /// Reload failures so far for `source` (tests and logs).
    pub fn reload_failures(&self, source: &'static str) -> u64 {
        self.reload_failures
            .get_or_create(&SourceLabel { source })
            .get()
    }

    /// Creates `listener`'s connection series at zero, so that they are scraped before the first
    /// event.
    pub fn listener_started(&self, listener: &'static str) {
        let label = ListenerLabel { listener };
        let _ = self.connections_open.get_or_create(&label);
        let _ = self.connections_rejected.get_or_create(&label);
        let _ = self.accept_errors.get_or_create(&label);
    }

    /// One more (`delta` 1) or one less (-1) open connection on `listener`.
    pub fn connections_open(&self, listener: &'static str, delta: i64) {
        self.connections_open
            .get_or_create(&ListenerLabel { listener })
            .inc_by(delta);
    }

    pub fn connection_rejected(&self, listener: &'static str) {
        self.connections_rejected
            .get_or_create(&ListenerLabel { listener })
            .inc();
    }

    /// A connection of `listener` closed by `timeout`: `handshake`, `header` or `idle`.
    pub fn connection_timed_out(&self, listener: &'static str, timeout: &'static str) {
        self.connection_timeouts
            .get_or_create(&TimeoutLabel { listener, timeout })
            .inc();
    }

    pub fn accept_failed(&self, listener: &'static str) {
        self.accept_errors
            .get_or_create(&ListenerLabel { listener })
            .inc();
    }

    /// Body bytes taken (`delta` > 0) from or given back (< 0) to the budget.
    pub fn body_bytes_buffered(&self, delta: i64) {
        self.body_bytes_buffered.inc_by(delta);
    }

    /// Prometheus text exposition, with the namespace gauges refreshed first.
    pub fn encode(&self, namespaces_cached: usize, namespaces_synced: bool) -> String {
        let _guard = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.namespaces_cached
            .set(i64::try_from(namespaces_cached).unwrap_or(i64::MAX));
        self.namespaces_synced.set(i64::from(namespaces_synced));
        if let Some(read) = self.log_drops.get() {
            let now = read();
            self.log_lines_dropped
                .inc_by(now.saturating_sub(self.log_lines_dropped.get()));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Observes the elapsed time into the latency histogram when dropped.
pub struct LatencyTimer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl LatencyTimer<'_> {
    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed()
    }
}

impl Drop for LatencyTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
