//! Command-line interface: one binary, four subcommands. Every flag can also be set through an
//! environment variable `GKE_WI_INJECTOR_<FLAG>`. Parsing validates types; loading files and
//! binding sockets happens later, in each subcommand's runner.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::admission::OnError;
use crate::engine::policy::{Config, Prefix, Quantity, WaitMode};

#[derive(Debug, Parser)]
#[command(
    name = "gke-wi-injector",
    version,
    about = "Mutating admission webhook that makes GKE Workload Identity Federation Pods start reliably"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start; boxing the largest variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission server.
    Serve(ServeArgs),
    /// Offline dry run: print what the webhook would do to the objects in a file.
    Inject(InjectArgs),
    /// Write a CA and a serving certificate for the webhook Service.
    Certs(CertsArgs),
    /// Wait until the GKE metadata server serves a token (the init container's program).
    Wait(WaitArgs),
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub mutation: MutationArgs,

    /// HTTPS address of the admission endpoint.
    #[arg(long, env = "GKE_WI_INJECTOR_LISTEN", default_value = "0.0.0.0:10250")]
    pub listen: SocketAddr,

    /// Plain-HTTP address of /livez, /readyz and /metrics.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_ADMIN_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub admin_listen: SocketAddr,

    /// PEM certificate chain served to the API server; re-read when the file changes.
    #[arg(long, env = "GKE_WI_INJECTOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert; re-read when the file changes.
    #[arg(long, env = "GKE_WI_INJECTOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Without --tls-cert/--tls-key: where to write the CA of the generated development certificate.
    #[arg(long, env = "GKE_WI_INJECTOR_DEV_CA_OUT")]
    pub dev_ca_out: Option<PathBuf>,

    /// Namespaces from a YAML or JSON file instead of the cluster (re-read when it changes).
    #[arg(long, env = "GKE_WI_INJECTOR_NAMESPACES")]
    pub namespaces: Option<PathBuf>,

    /// What to answer when the injector cannot decide (namespace unknown, request unreadable).
    #[arg(long, env = "GKE_WI_INJECTOR_ON_ERROR", default_value = "allow", value_parser = on_error())]
    pub on_error: OnError,

    /// Log format.
    #[arg(long, env = "GKE_WI_INJECTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// After SIGTERM, keep accepting (with /readyz failing) this long before closing the listener,
    /// so that the API server stops sending reviews here first. Not applied to SIGINT.
    #[arg(long, env = "GKE_WI_INJECTOR_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Longest time in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "GKE_WI_INJECTOR_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Timeout of the single GET for a namespace missing from the cache.
    #[arg(long, env = "GKE_WI_INJECTOR_NAMESPACE_GET_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub namespace_get_timeout: Duration,

    /// How often the certificate and namespaces files are checked for changes.
    #[arg(long, env = "GKE_WI_INJECTOR_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub reload_interval: Duration,

    /// Most connections open at once on the admission listener. Past it a new connection is
    /// closed as soon as it is accepted, before any TLS work (counted in
    /// gke_wi_injector_connections_rejected_total). Lowered at start when the open-files limit
    /// (raised to its hard limit first) leaves less room.
    #[arg(long, env = "GKE_WI_INJECTOR_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most request-body bytes held in memory at once, all requests together (Ki, Mi, Gi
    /// suffixes); a request whose body would pass it is answered 503 ServiceUnavailable. Bytes
    /// past a body's first 256 KiB may use three quarters of it, so large uploads cannot crowd
    /// out ordinary reviews. At least 1Mi.
    #[arg(long, env = "GKE_WI_INJECTOR_MAX_BODY_BYTES_IN_FLIGHT", default_value = "64Mi", value_parser = parse_body_budget)]
    pub max_body_bytes_in_flight: usize,

    /// Close a connection that has had no request in flight for this long (HTTP/2: with a
    /// GOAWAY). Longer than the API server's own idle timeout (90 s), so that it closes its
    /// idle connections first and never sends a review on a connection being closed.
    #[arg(long, env = "GKE_WI_INJECTOR_IDLE_TIMEOUT", default_value = "120s", value_parser = crate::wait::parse_nonzero_duration)]
    pub idle_timeout: Duration,

    /// Longest a client may take for the TLS handshake, and for a request's head (HTTP/1.1) once
    /// its first byte has arrived.
    #[arg(long, env = "GKE_WI_INJECTOR_HEADER_TIMEOUT", default_value = "10s", value_parser = crate::wait::parse_nonzero_duration)]
    pub header_timeout: Duration,

    /// Longest a request body may take to arrive; answered 408 after. The API server gives up on
    /// a webhook call after at most 30 s.
    #[arg(long, env = "GKE_WI_INJECTOR_BODY_TIMEOUT", default_value = "30s", value_parser = crate::wait::parse_nonzero_duration)]
    pub body_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The mutated objects, as YAML.
    Yaml,
    /// One RFC 6902 JSON Patch per object.
    Patch,
    /// One AdmissionReview response per object.
    Review,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    #[command(flatten)]
    pub mutation: MutationArgs,

    /// File to read (YAML or JSON, multi-document); `-` reads standard input.
    #[arg(short = 'f', long = "filename", env = "GKE_WI_INJECTOR_FILENAME")]
    pub file: PathBuf,

    /// Labels of the namespace the objects are created in: `k=v,k2=v2`.
    #[arg(long, env = "GKE_WI_INJECTOR_NAMESPACE_LABELS", default_value = "", value_parser = parse_labels)]
    pub namespace_labels: Labels,

    /// Namespace of objects that name none.
    #[arg(
        short = 'n',
        long = "namespace",
        env = "GKE_WI_INJECTOR_INJECT_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,

    /// What to print.
    #[arg(short = 'o', long, env = "GKE_WI_INJECTOR_OUTPUT", value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook Service.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_CERTS_SERVICE",
        default_value = "gke-wi-injector"
    )]
    pub service: String,

    /// Namespace of the webhook Service.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_CERTS_NAMESPACE",
        default_value = "gke-wi-injector"
    )]
    pub namespace: String,

    /// Directory to write ca.crt, tls.crt and tls.key to.
    #[arg(long, env = "GKE_WI_INJECTOR_CERTS_OUT")]
    pub out: PathBuf,

    /// Validity of the serving certificate.
    #[arg(long, env = "GKE_WI_INJECTOR_CERTS_VALIDITY", default_value = "365d", value_parser = parse_duration)]
    pub validity: Duration,

    /// Overwrite existing keys.
    #[arg(long, env = "GKE_WI_INJECTOR_CERTS_FORCE")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Metadata server address: host, host:port or [IPv6]:port, as client libraries read it (empty = default).
    #[arg(long, env = "GCE_METADATA_HOST", default_value = "169.254.169.254", value_parser = crate::wait::parse_metadata_host)]
    pub metadata_host: crate::wait::MetadataAddr,

    /// Most attempts before giving up, the first included.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_ATTEMPTS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,

    /// Total time budget for all attempts; no attempt, timeout or pause runs past it.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_MAX_TIME", default_value = "60s", value_parser = parse_duration)]
    pub max_time: Duration,

    /// Connect timeout of one attempt.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_CONNECT_TIMEOUT", default_value = "3s", value_parser = crate::wait::parse_nonzero_duration)]
    pub connect_timeout: Duration,

    /// Time one attempt waits for the response's status line once connected.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_READ_TIMEOUT", default_value = "10s", value_parser = crate::wait::parse_nonzero_duration)]
    pub read_timeout: Duration,

    /// Pause between attempts.
    #[arg(long, env = "GKE_WI_INJECTOR_WAIT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
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

fn wait_mode() -> impl clap::builder::TypedValueParser<Value = WaitMode> {
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

fn on_error() -> impl clap::builder::TypedValueParser<Value = OnError> {
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
fn parse_body_budget(s: &str) -> Result<usize, String> {
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

    #[test]
    fn serve_limits_default_to_the_library_defaults() {
        let cli = Cli::try_parse_from(["gke-wi-injector", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let limits = crate::connections::Limits::default();
        assert_eq!(args.max_connections, limits.max_connections);
        assert_eq!(args.idle_timeout, limits.idle_timeout);
        assert_eq!(args.header_timeout, limits.header_timeout);
        assert_eq!(args.body_timeout, crate::server::BODY_TIMEOUT);
        let budget = crate::server::BODY_BUDGET_BYTES;
        assert_eq!(args.max_body_bytes_in_flight, budget);
    }

    #[test]
    fn every_flag_has_an_env_var() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.is_positional() || ["help", "version"].contains(&arg.get_id().as_str()) {
                    continue;
                }
                assert!(
                    arg.get_env().is_some(),
                    "{} --{} has no env",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
