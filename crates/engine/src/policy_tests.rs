use super::*;
use rstest::rstest;
use serde_json::json;

const P: &str = "gke-wi-injector.dev";

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.replace("P/", &format!("{P}/")), v.to_string()))
        .collect()
}

fn pod_with(annotations: &[(&str, &str)], spec: Value) -> Value {
    let a: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.replace("P/", &format!("{P}/")), json!(v)))
        .collect();
    json!({"metadata": {"name": "p", "annotations": a}, "spec": spec})
}

fn run(ns: &str, ns_labels: &[(&str, &str)], pod: Value) -> (Decision, Vec<String>) {
    let mut w = Warnings::default();
    let d = decide(&Config::default(), ns, &labels(ns_labels), &pod, &mut w);
    (d, w.into_vec())
}

fn inject(wait: bool, host: bool, istio: bool) -> Decision {
    Decision::Inject {
        features: Features { wait, host, istio },
        windows: false,
    }
}

const ON: (&str, &str) = ("P/inject", "enabled");

#[rstest]
#[case::kube_system("kube-system", &[ON], &[], Decision::Skip(Skip::ProtectedNamespace))]
#[case::own_namespace("gke-wi-injector", &[ON], &[], Decision::Skip(Skip::ProtectedNamespace))]
#[case::no_label("team", &[], &[], Decision::Skip(Skip::NotOptedIn))]
#[case::label_other_value("team", &[("P/inject", "true")], &[], Decision::Skip(Skip::NotOptedIn))]
#[case::defaults("team", &[ON], &[], inject(true, true, false))]
#[case::pod_opt_out("team", &[ON], &[("P/inject", "disabled")], Decision::Skip(Skip::PodOptOut))]
#[case::mirror("team", &[ON], &[("kubernetes.io/config.mirror", "abc")], Decision::Skip(Skip::MirrorPod))]
#[case::ns_disables_wait("team", &[ON, ("P/metadata-wait", "disabled")], &[], inject(false, true, false))]
#[case::ns_disables_host("team", &[ON, ("P/metadata-host", "disabled")], &[], inject(true, false, false))]
#[case::ns_enables_istio("team", &[ON, ("P/istio", "enabled")], &[], inject(true, true, true))]
#[case::istio_auto_injection("team", &[ON, ("istio-injection", "enabled")], &[], inject(true, true, true))]
#[case::istio_auto_rev("team", &[ON, ("istio.io/rev", "asm-managed")], &[], inject(true, true, true))]
#[case::istio_auto_rev_but_disabled("team", &[ON, ("istio.io/rev", "x"), ("istio-injection", "disabled")], &[], inject(true, true, false))]
#[case::istio_explicit_auto("team", &[ON, ("P/istio", "auto"), ("istio-injection", "enabled")], &[], inject(true, true, true))]
#[case::istio_disabled_beats_auto("team", &[ON, ("P/istio", "disabled"), ("istio-injection", "enabled")], &[], inject(true, true, false))]
#[case::pod_enables_istio("team", &[ON], &[("P/istio", "enabled")], inject(true, true, true))]
#[case::pod_disables_wait("team", &[ON], &[("P/metadata-wait", "disabled")], inject(false, true, false))]
#[case::pod_reenables_host("team", &[ON, ("P/metadata-host", "disabled")], &[("P/metadata-host", "enabled")], inject(true, true, false))]
#[case::all_disabled("team", &[ON, ("P/metadata-wait", "disabled"), ("P/metadata-host", "disabled")], &[], Decision::Skip(Skip::NoFeatures))]
fn decisions(
    #[case] ns: &str,
    #[case] ns_labels: &[(&str, &str)],
    #[case] annotations: &[(&str, &str)],
    #[case] want: Decision,
) {
    let (got, warnings) = run(
        ns,
        ns_labels,
        pod_with(annotations, json!({"containers": []})),
    );
    assert_eq!(got, want);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn host_network_is_skipped_with_a_warning() {
    let (d, w) = run("team", &[ON], pod_with(&[], json!({"hostNetwork": true})));
    assert_eq!(d, Decision::Skip(Skip::HostNetwork));
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("spec.hostNetwork"), "{w:?}");
}

#[test]
fn host_network_false_is_injected() {
    let (d, _) = run("team", &[ON], pod_with(&[], json!({"hostNetwork": false})));
    assert_eq!(d, inject(true, true, false));
}

#[rstest]
#[case::ns_wait("team", &[ON, ("P/metadata-wait", "yes")], &[], inject(true, true, false), "gke-wi-injector.dev/metadata-wait")]
#[case::ns_istio("team", &[ON, ("P/istio", "on"), ("istio-injection", "enabled")], &[], inject(true, true, true), "gke-wi-injector.dev/istio")]
#[case::pod_host("team", &[ON, ("P/metadata-host", "disabled")], &[("P/metadata-host", "maybe")], inject(true, false, false), "gke-wi-injector.dev/metadata-host")]
#[case::pod_inject("team", &[ON], &[("P/inject", "sure")], inject(true, true, false), "gke-wi-injector.dev/inject")]
fn unknown_values_fall_back_and_warn(
    #[case] ns: &str,
    #[case] ns_labels: &[(&str, &str)],
    #[case] annotations: &[(&str, &str)],
    #[case] want: Decision,
    #[case] named: &str,
) {
    let (got, w) = run(ns, ns_labels, pod_with(annotations, json!({})));
    assert_eq!(got, want);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(named), "{w:?}");
}

#[rstest]
#[case::os_name(json!({"os": {"name": "windows"}}))]
#[case::node_selector(json!({"nodeSelector": {"kubernetes.io/os": "windows"}}))]
fn windows_pods_get_no_wait_container(#[case] spec: Value) {
    let (d, w) = run(
        "team",
        &[ON, ("P/istio", "enabled")],
        pod_with(&[], spec.clone()),
    );
    assert_eq!(
        d,
        Decision::Inject {
            features: Features {
                wait: false,
                host: true,
                istio: true
            },
            windows: true
        }
    );
    assert!(w[0].contains("--wait-image-windows"), "{w:?}");

    let cfg = Config {
        wait_image_windows: Some("win:1".into()),
        ..Config::default()
    };
    let mut w = Warnings::default();
    let d = decide(&cfg, "team", &labels(&[ON]), &pod_with(&[], spec), &mut w);
    assert_eq!(
        d,
        Decision::Inject {
            features: Features {
                wait: true,
                host: true,
                istio: false
            },
            windows: true
        }
    );
    assert!(w.into_vec().is_empty());
}

#[test]
fn custom_prefix_is_read() {
    let cfg = Config {
        prefix: "wi.example.com".parse().unwrap(),
        ..Config::default()
    };
    let ns: Labels = [("wi.example.com/inject".to_string(), "enabled".to_string())].into();
    let mut w = Warnings::default();
    assert_eq!(
        decide(&cfg, "a", &ns, &json!({}), &mut w),
        inject(true, true, false)
    );
    assert_eq!(
        decide(&Config::default(), "a", &ns, &json!({}), &mut w),
        Decision::Skip(Skip::NotOptedIn)
    );
}

#[rstest]
#[case::all(Features { wait: true, host: true, istio: true }, "metadata-wait,metadata-host,istio")]
#[case::host_istio(Features { wait: false, host: true, istio: true }, "metadata-host,istio")]
#[case::wait(Features { wait: true, host: false, istio: false }, "metadata-wait")]
fn record_lists_features_in_spec_order(#[case] f: Features, #[case] want: &str) {
    assert_eq!(f.record(), want);
}

#[rstest]
#[case::ok("gke-wi-injector.dev", true)]
#[case::upper("Gke.dev", false)]
#[case::slash("a/b", false)]
#[case::empty("", false)]
#[case::dash_edge("-a.dev", false)]
fn prefix_validation(#[case] s: &str, #[case] ok: bool) {
    assert_eq!(s.parse::<Prefix>().is_ok(), ok);
}

#[rstest]
#[case::milli("10m", true)]
#[case::mebi("16Mi", true)]
#[case::plain("1", true)]
#[case::decimal("0.5", true)]
#[case::bad_suffix("16MB", false)]
#[case::no_number("Mi", false)]
#[case::two_dots("1.2.3", false)]
fn quantity_validation(#[case] s: &str, #[case] ok: bool) {
    assert_eq!(s.parse::<Quantity>().is_ok(), ok);
}
