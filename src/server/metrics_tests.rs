use super::*;

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[test]
fn requests_are_counted_by_outcome_and_feature() {
    let m = Metrics::new();
    m.request(
        Outcome::Mutated,
        Features {
            wait: true,
            host: true,
            istio: false,
        },
    );
    m.request(
        Outcome::Mutated,
        Features {
            wait: false,
            host: true,
            istio: false,
        },
    );
    m.request(Outcome::Skipped, Features::default());
    let text = m.encode(3, true);
    assert_eq!(
        line(
            &text,
            "gke_wi_injector_admission_requests_total{outcome=\"mutated\"}"
        ),
        "gke_wi_injector_admission_requests_total{outcome=\"mutated\"} 2"
    );
    assert_eq!(
        line(
            &text,
            "gke_wi_injector_admission_requests_total{outcome=\"skipped\"}"
        ),
        "gke_wi_injector_admission_requests_total{outcome=\"skipped\"} 1"
    );
    assert_eq!(
        line(
            &text,
            "gke_wi_injector_admission_features_total{feature=\"metadata-host\"}"
        ),
        "gke_wi_injector_admission_features_total{feature=\"metadata-host\"} 2"
    );
    assert_eq!(
        line(
            &text,
            "gke_wi_injector_admission_features_total{feature=\"metadata-wait\"}"
        ),
        "gke_wi_injector_admission_features_total{feature=\"metadata-wait\"} 1"
    );
    assert!(!text.contains("feature=\"istio\""), "{text}");
    assert_eq!(
        line(&text, "gke_wi_injector_namespace_cache_size "),
        "gke_wi_injector_namespace_cache_size 3"
    );
    assert_eq!(
        line(&text, "gke_wi_injector_namespace_cache_synced "),
        "gke_wi_injector_namespace_cache_synced 1"
    );
}

#[test]
fn latency_buckets_run_from_100us_to_5s_and_the_timer_observes_on_drop() {
    let m = Metrics::new();
    drop(m.timer());
    let text = m.encode(0, false);
    assert!(
        text.contains("gke_wi_injector_admission_duration_seconds_bucket{le=\"0.0001\"}"),
        "{text}"
    );
    assert!(
        text.contains("gke_wi_injector_admission_duration_seconds_bucket{le=\"5.0\"}"),
        "{text}"
    );
    assert_eq!(
        line(&text, "gke_wi_injector_admission_duration_seconds_count "),
        "gke_wi_injector_admission_duration_seconds_count 1"
    );
}

#[test]
fn certificate_expiry_and_reload_failures() {
    let m = Metrics::new();
    m.set_cert_not_after(1_900_000_000);
    m.reload_failed("tls");
    m.reload_failed("tls");
    let text = m.encode(0, false);
    assert_eq!(
        line(
            &text,
            "gke_wi_injector_tls_certificate_not_after_timestamp_seconds "
        ),
        "gke_wi_injector_tls_certificate_not_after_timestamp_seconds 1900000000"
    );
    assert_eq!(
        line(
            &text,
            "gke_wi_injector_reload_failures_total{source=\"tls\"}"
        ),
        "gke_wi_injector_reload_failures_total{source=\"tls\"} 2"
    );
    assert_eq!(m.reload_failures("tls"), 2);
    assert_eq!(m.reload_failures("namespaces"), 0);
}
