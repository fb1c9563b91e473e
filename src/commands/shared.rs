//! What several commands share on the command line: the mutation flags (`serve`, `inject`) and
//! the value parsers. Engine and admission types are spelled for clap here, so that neither
//! depends on clap.

use std::net::IpAddr;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, ValueEnum};

use crate::admission::OnError;
use crate::engine::policy::{Config, Prefix, Quantity, WaitMode};

/// How Pods are mutated; shared by `serve` and `inject`.
#[derive(Debug, Clone, Args)]
pub struct MutationArgs {
    /// Prefix of the namespace labels and Pod annotations the injector reads and writes.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_PREFIX",
        default_value = "gke-wi-injector.dev"
    )]
    pub prefix: Prefix,

    /// The injector's own namespace; its Pods are never mutated.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_NAMESPACE",
        default_value = "gke-wi-injector"
    )]
    pub injector_namespace: String,

    /// Image of the wait init container (the injector's own image carries the `wait` program).
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_WAIT_IMAGE",
        default_value = "gke-wi-injector:latest"
    )]
    pub wait_image: String,

    /// Image of the wait init container for Windows Pods; without it Windows Pods get no wait container.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_IMAGE_WINDOWS")]
    pub wait_image_windows: Option<String>,

    /// `wait` runs the injector's `wait` program; `curl` runs the GKE guide's curl command in the chosen image.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_MODE", default_value = "wait", value_parser = wait_mode())]
    pub wait_mode: WaitMode,

    /// Name of the wait init container.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_WAIT_CONTAINER_NAME",
        default_value = "gke-metadata-wait"
    )]
    pub wait_container_name: String,

    /// CPU request of the wait init container.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_CPU_REQUEST", default_value = "10m")]
    pub wait_cpu_request: Quantity,

    /// Memory request of the wait init container.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_WAIT_MEMORY_REQUEST",
        default_value = "16Mi"
    )]
    pub wait_memory_request: Quantity,

    /// Memory limit of the wait init container.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_WAIT_MEMORY_LIMIT",
        default_value = "32Mi"
    )]
    pub wait_memory_limit: Quantity,

    /// Value of GCE_METADATA_HOST, and the address excluded from the Istio sidecar's capture.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_METADATA_HOST",
        default_value = "169.254.169.254"
    )]
    pub metadata_host: IpAddr,
}

impl MutationArgs {
    pub fn to_config(&self) -> Config {
        Config {
            prefix: self.prefix.clone(),
            injector_namespace: self.injector_namespace.clone(),
            wait_image: self.wait_image.clone(),
            wait_image_windows: self.wait_image_windows.clone(),
            wait_mode: self.wait_mode,
            wait_container_name: self.wait_container_name.clone(),
            wait_cpu_request: self.wait_cpu_request.clone(),
            wait_memory_request: self.wait_memory_request.clone(),
            wait_memory_limit: self.wait_memory_limit.clone(),
            metadata_host: self.metadata_host,
        }
    }
}

/// `--wait-mode`: the engine's [`WaitMode`], spelled for the command line here so that the
/// engine does not depend on clap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WaitModeArg {
    /// The injector's own `wait` program.
    Wait,
    /// The GKE guide's curl command, for an image that has curl and a shell.
    Curl,
}

pub fn wait_mode() -> impl clap::builder::TypedValueParser<Value = WaitMode> {
    clap::builder::EnumValueParser::<WaitModeArg>::new().map(|m| match m {
        WaitModeArg::Wait => WaitMode::Wait,
        WaitModeArg::Curl => WaitMode::Curl,
    })
}

/// `--on-error`: the admission layer's [`OnError`], spelled for the command line here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnErrorArg {
    /// Allow the Pod unchanged, with a warning.
    Allow,
    /// Deny the Pod.
    Deny,
}

pub fn on_error() -> impl clap::builder::TypedValueParser<Value = OnError> {
    clap::builder::EnumValueParser::<OnErrorArg>::new().map(|m| match m {
        OnErrorArg::Allow => OnError::Allow,
        OnErrorArg::Deny => OnError::Deny,
    })
}

/// Namespace labels as given on the command line, in order.
pub type Labels = std::collections::BTreeMap<String, String>;

/// Parses `k=v,k2=v2` (spaces around entries allowed; empty string = no labels).
pub fn parse_labels(s: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (k, v) = entry
            .split_once('=')
            .ok_or_else(|| format!("label {entry:?} is not of the form key=value"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("label {entry:?} has an empty key"));
        }
        labels.insert(k.to_string(), v.trim().to_string());
    }
    Ok(labels)
}

/// Parses byte counts: `1048576`, `512Ki`, `64Mi`, `1Gi`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: usize = n
        .parse()
        .map_err(|_| format!("size {s:?} must start with a whole number"))?;
    let scale: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("size {s:?} has unknown unit {unit:?} (Ki, Mi, Gi)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// A body-byte budget: [`parse_bytes`], at least 1 MiB and at most 4 GiB - 1.
pub fn parse_body_budget(s: &str) -> Result<usize, String> {
    let n = parse_bytes(s)?;
    if !(1 << 20..=u32::MAX as usize).contains(&n) {
        return Err(format!("size {s:?} must be between 1Mi and 4Gi - 1"));
    }
    Ok(n)
}

/// Parses durations such as `500ms`, `2s`, `5m`, `1h`, `365d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {s:?} needs a unit (ms, s, m, h, d)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("duration {s:?} must start with a whole number"))?;
    let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(secs(1)),
        "m" => Ok(secs(60)),
        "h" => Ok(secs(3600)),
        "d" => Ok(secs(86_400)),
        _ => Err(format!(
            "duration {s:?} has unknown unit {unit:?} (ms, s, m, h, d)"
        )),
    }
}

/// Rejects zero, for timeouts that must be positive.
pub fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::empty("", &[])]
    #[case::one("a=b", &[("a", "b")])]
    #[case::spaces(" a = b , c=d ", &[("a", "b"), ("c", "d")])]
    #[case::prefixed("gke-wi-injector.dev/inject=enabled", &[("gke-wi-injector.dev/inject", "enabled")])]
    #[case::empty_value("a=", &[("a", "")])]
    fn labels_parse(#[case] input: &str, #[case] want: &[(&str, &str)]) {
        let got = parse_labels(input).unwrap();
        let want: Labels = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[rstest]
    #[case::no_equals("a")]
    #[case::empty_key("=b")]
    fn labels_reject(#[case] input: &str) {
        let err = parse_labels(input).unwrap_err();
        assert!(err.contains(input.trim()), "{err}");
    }

    #[rstest]
    #[case::millis("250ms", Duration::from_millis(250))]
    #[case::seconds("3s", Duration::from_secs(3))]
    #[case::minutes("2m", Duration::from_secs(120))]
    #[case::days("365d", Duration::from_secs(365 * 86_400))]
    fn durations_parse(#[case] input: &str, #[case] want: Duration) {
        assert_eq!(parse_duration(input).unwrap(), want);
    }

    #[rstest]
    #[case::plain("4096", 4096)]
    #[case::kibi("512Ki", 512 << 10)]
    #[case::mebi("64Mi", 64 << 20)]
    #[case::gibi("1Gi", 1 << 30)]
    fn sizes_parse(#[case] input: &str, #[case] want: usize) {
        assert_eq!(parse_bytes(input).unwrap(), want);
    }

    #[rstest]
    #[case::decimal_unit("64M")]
    #[case::no_number("Mi")]
    #[case::budget_too_small("512Ki")]
    #[case::budget_too_large("4Gi")]
    fn body_budgets_reject(#[case] input: &str) {
        assert!(parse_body_budget(input).unwrap_err().contains(input));
    }

    #[rstest]
    #[case::no_unit("5")]
    #[case::bad_unit("5y")]
    #[case::no_number("s")]
    fn durations_reject(#[case] input: &str) {
        assert!(parse_duration(input).unwrap_err().contains(input));
    }

    #[rstest]
    #[case::zero("0s", Err("duration \"0s\" must be greater than zero".to_string()))]
    #[case::ms("300ms", Ok(Duration::from_millis(300)))]
    fn nonzero_durations(#[case] input: &str, #[case] want: Result<Duration, String>) {
        assert_eq!(parse_nonzero_duration(input), want);
    }
}
