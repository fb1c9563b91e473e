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
pub fn istio_auto(ns_labels: &Labels) -> bool {
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
#[path = "policy_tests.rs"]
mod tests;
