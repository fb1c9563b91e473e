//! Who gets what (SPEC §3): namespace labels and Pod annotations decide, feature by feature,
//! which mutations a Pod gets. Pure code: no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::Value;

use crate::warnings::Warnings;

/// Label and annotation prefix (`gke-wi-injector.dev` by default): a DNS subdomain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// `<prefix>/<name>`.
    pub fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.0)
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix("gke-wi-injector.dev".into())
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if ok {
            Ok(Prefix(s.to_string()))
        } else {
            Err(format!(
                "prefix {s:?} is not a DNS subdomain (lowercase letters, digits, '-' and '.')"
            ))
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Kubernetes resource quantity (`10m`, `16Mi`), checked for shape, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity(String);

impl Quantity {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Quantity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const SUFFIXES: [&str; 14] = [
            "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
        ];
        let digits_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(digits_end);
        let number_ok = !number.is_empty()
            && number.matches('.').count() <= 1
            && number.chars().any(|c| c.is_ascii_digit());
        if number_ok && SUFFIXES.contains(&suffix) {
            Ok(Quantity(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a resource quantity such as 10m, 16Mi or 1"
            ))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// The injector's own `wait` program.
    Wait,
    /// The GKE guide's curl command, for an image that has curl and a shell.
    Curl,
}

/// Everything the mutation needs to know besides the Pod and its namespace.
#[derive(Debug, Clone)]
pub struct Config {
    pub prefix: Prefix,
    pub injector_namespace: String,
    pub wait_image: String,
    pub wait_image_windows: Option<String>,
    pub wait_mode: WaitMode,
    pub wait_container_name: String,
    pub wait_cpu_request: Quantity,
    pub wait_memory_request: Quantity,
    pub wait_memory_limit: Quantity,
    pub metadata_host: IpAddr,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prefix: Prefix::default(),
            injector_namespace: "gke-wi-injector".into(),
            wait_image: "gke-wi-injector:latest".into(),
            wait_image_windows: None,
            wait_mode: WaitMode::Wait,
            wait_container_name: "gke-metadata-wait".into(),
            wait_cpu_request: Quantity("10m".into()),
            wait_memory_request: Quantity("16Mi".into()),
            wait_memory_limit: Quantity("32Mi".into()),
            metadata_host: IpAddr::from([169, 254, 169, 254]),
        }
    }
}

/// One mutation, in the order SPEC §4 lists them (and `P/injected` records them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    MetadataWait,
    MetadataHost,
    Istio,
}

impl Feature {
    pub const ALL: [Feature; 3] = [Feature::MetadataWait, Feature::MetadataHost, Feature::Istio];

    /// The label/annotation suffix and the name in `P/injected`.
    pub fn name(self) -> &'static str {
        match self {
            Feature::MetadataWait => "metadata-wait",
            Feature::MetadataHost => "metadata-host",
            Feature::Istio => "istio",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of features that apply to one Pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub wait: bool,
    pub host: bool,
    pub istio: bool,
}

impl Features {
    pub fn has(&self, f: Feature) -> bool {
        match f {
            Feature::MetadataWait => self.wait,
            Feature::MetadataHost => self.host,
            Feature::Istio => self.istio,
        }
    }

    fn set(&mut self, f: Feature, on: bool) {
        match f {
            Feature::MetadataWait => self.wait = on,
            Feature::MetadataHost => self.host = on,
            Feature::Istio => self.istio = on,
        }
    }

    pub fn iter(self) -> impl Iterator<Item = Feature> {
        Feature::ALL.into_iter().filter(move |f| self.has(*f))
    }

    pub fn is_empty(&self) -> bool {
        !(self.wait || self.host || self.istio)
    }

    /// `metadata-wait,metadata-host,istio` (in SPEC order).
    pub fn record(self) -> String {
        self.iter().map(Feature::name).collect::<Vec<_>>().join(",")
    }
}

/// Why a Pod is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `kube-system` or the injector's own namespace.
    ProtectedNamespace,
    /// The namespace lacks `P/inject=enabled`.
    NotOptedIn,
    /// The Pod carries `P/inject: disabled`.
    PodOptOut,
    /// A static Pod's API mirror (`kubernetes.io/config.mirror`).
    MirrorPod,
    /// `spec.hostNetwork: true`: Workload Identity does not serve these Pods.
    HostNetwork,
    /// Every feature is disabled.
    NoFeatures,
}

impl Skip {
    /// Bounded label for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::ProtectedNamespace => "protected_namespace",
            Skip::NotOptedIn => "not_opted_in",
            Skip::PodOptOut => "pod_opt_out",
            Skip::MirrorPod => "mirror_pod",
            Skip::HostNetwork => "host_network",
            Skip::NoFeatures => "no_features",
        }
    }
}

/// The outcome of the policy for one Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Skip(Skip),
    Inject {
        features: Features,
        /// Windows Pod: the wait container uses the Windows image, or is left out.
        windows: bool,
    },
}

/// Namespace labels, as the cache or the command line gives them.
pub type Labels = BTreeMap<String, String>;

/// Decides which features apply to `pod` (the Pod's JSON, or a Pod template's) created in
/// namespace `namespace` with labels `ns_labels`. Unknown label and annotation values fall back
/// to the default and are named in `warnings`.
pub fn decide(
    cfg: &Config,
    namespace: &str,
    ns_labels: &Labels,
    pod: &Value,
    warnings: &mut Warnings,
) -> Decision {
    if let Some(skip) = namespace_skip(cfg, namespace, ns_labels) {
        return Decision::Skip(skip);
    }
    let inject_key = cfg.prefix.key("inject");
    let annotations = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).and_then(Value::as_str);

    match annotation(&inject_key) {
        Some("disabled") => return Decision::Skip(Skip::PodOptOut),
        Some("enabled") | None => {}
        Some(other) => warnings.push(format!(
            "annotation {inject_key}={other:?} is not enabled/disabled; injecting"
        )),
    }
    if annotation("kubernetes.io/config.mirror").is_some() {
        return Decision::Skip(Skip::MirrorPod);
    }
    if pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
        warnings.push(
            "spec.hostNetwork is true: Workload Identity does not serve this Pod; not injected",
        );
        return Decision::Skip(Skip::HostNetwork);
    }

    let mut features = Features::default();
    for feature in Feature::ALL {
        let key = cfg.prefix.key(feature.name());
        let ns_value = ns_labels.get(&key).map(String::as_str);
        let mut on = match (feature, ns_value) {
            (Feature::MetadataWait | Feature::MetadataHost, None) => true,
            (Feature::Istio, None | Some("auto")) => istio_auto(ns_labels),
            (_, Some("enabled")) => true,
            (_, Some("disabled")) => false,
            (_, Some(other)) => {
                let allowed = if feature == Feature::Istio {
                    "enabled/disabled/auto"
                } else {
                    "enabled/disabled"
                };
                warnings.push(format!(
                    "namespace label {key}={other:?} is not {allowed}; using the default"
                ));
                feature != Feature::Istio || istio_auto(ns_labels)
            }
        };
        match annotation(&key) {
            None => {}
            Some("enabled") => on = true,
            Some("disabled") => on = false,
            Some(other) => warnings.push(format!(
                "annotation {key}={other:?} is not enabled/disabled; using the namespace setting"
            )),
        }
        features.set(feature, on);
    }
    if features.is_empty() {
        return Decision::Skip(Skip::NoFeatures);
    }

    let windows = is_windows(pod);
    if windows && features.wait && cfg.wait_image_windows.is_none() {
        features.wait = false;
        warnings.push("Windows Pod (spec.os.name or nodeSelector kubernetes.io/os): no wait init container without --wait-image-windows");
        if features.is_empty() {
            return Decision::Skip(Skip::NoFeatures);
        }
    }
    Decision::Inject { features, windows }
}

/// The decisions that need only the namespace: protected namespaces and namespaces that did
/// not opt in. The server checks these before it parses the Pod.
pub fn namespace_skip(cfg: &Config, namespace: &str, ns_labels: &Labels) -> Option<Skip> {
    if namespace == "kube-system" || namespace == cfg.injector_namespace {
        return Some(Skip::ProtectedNamespace);
    }
    let opted_in = ns_labels
        .get(&cfg.prefix.key("inject"))
        .is_some_and(|v| v == "enabled");
    (!opted_in).then_some(Skip::NotOptedIn)
}

/// Istio `auto`: on when the namespace has `istio-injection=enabled` or any `istio.io/rev`
/// label, and not `istio-injection=disabled`.
fn istio_auto(ns_labels: &Labels) -> bool {
    match ns_labels.get("istio-injection").map(String::as_str) {
        Some("disabled") => false,
        Some("enabled") => true,
        _ => ns_labels.contains_key("istio.io/rev"),
    }
}

fn is_windows(pod: &Value) -> bool {
    pod.pointer("/spec/os/name").and_then(Value::as_str) == Some("windows")
        || pod
            .pointer("/spec/nodeSelector/kubernetes.io~1os")
            .and_then(Value::as_str)
            == Some("windows")
}

#[cfg(test)]
mod tests {
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
}
