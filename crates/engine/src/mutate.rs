//! The mutations of SPEC §4 as a pure function from a Pod's raw JSON to patch operations.

use json_patch::PatchOperation;
use json_patch::jsonptr::Token;
use serde_json::{Value, json};

use crate::istio::{self, ProxyConfigMerge};
use crate::patch;
use crate::policy::{self, Config, Decision, Features, Labels, WaitMode};
use crate::warnings::Warnings;

/// The environment variable client libraries read instead of resolving `metadata.google.internal`.
pub const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";

/// What the webhook does to one Pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub decision: Decision,
    /// Operations relative to the Pod (or Pod template) root; empty when nothing changes.
    pub ops: Vec<PatchOperation>,
    pub warnings: Warnings,
}

impl Plan {
    /// Features that apply to this Pod (whether this pass added them or they were there).
    pub fn features(&self) -> Features {
        match self.decision {
            Decision::Inject { features, .. } => features,
            Decision::Skip(_) => Features::default(),
        }
    }
}

/// A Pod whose shape the mutation cannot work on; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ShapeError {
    /// Dotted path of the field, e.g. `spec.containers[1].env`.
    pub field: String,
    pub problem: String,
}

fn shape(field: impl Into<String>, problem: impl Into<String>) -> ShapeError {
    ShapeError {
        field: field.into(),
        problem: problem.into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks the fields the mutation reads or writes, so that the patch always applies.
fn check_shape(pod: &Value) -> Result<(), ShapeError> {
    let expect_object = |field: &str, v: Option<&Value>, required: bool| match v {
        None | Some(Value::Null) if !required => Ok(()),
        None => Err(shape(field, "missing")),
        Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(shape(
            field,
            format!("expected an object, found {}", type_name(other)),
        )),
    };
    if !pod.is_object() {
        return Err(shape(
            "(document)",
            format!("expected an object, found {}", type_name(pod)),
        ));
    }
    expect_object("metadata", pod.get("metadata"), false)?;
    if let Some(Value::Object(annotations)) = pod.pointer("/metadata/annotations") {
        for (k, v) in annotations {
            if !v.is_string() {
                return Err(shape(
                    format!("metadata.annotations[{k}]"),
                    format!("expected a string, found {}", type_name(v)),
                ));
            }
        }
    } else {
        expect_object(
            "metadata.annotations",
            pod.pointer("/metadata/annotations"),
            false,
        )?;
    }
    expect_object("spec", pod.get("spec"), true)?;
    let spec = &pod["spec"];
    if let Some(v) = spec
        .get("hostNetwork")
        .filter(|v| !v.is_boolean() && !v.is_null())
    {
        return Err(shape(
            "spec.hostNetwork",
            format!("expected a boolean, found {}", type_name(v)),
        ));
    }
    for (list, required) in [("containers", true), ("initContainers", false)] {
        let containers = match spec.get(list) {
            None | Some(Value::Null) if !required => continue,
            None | Some(Value::Null) => return Err(shape(format!("spec.{list}"), "missing")),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(shape(
                    format!("spec.{list}"),
                    format!("expected a list, found {}", type_name(other)),
                ));
            }
        };
        for (i, c) in containers.iter().enumerate() {
            let field = format!("spec.{list}[{i}]");
            if !c.is_object() {
                return Err(shape(
                    field,
                    format!("expected an object, found {}", type_name(c)),
                ));
            }
            if !c.get("name").is_some_and(Value::is_string) {
                return Err(shape(format!("{field}.name"), "expected a string"));
            }
            match c.get("env") {
                None | Some(Value::Null) => {}
                Some(Value::Array(env)) => {
                    for (j, e) in env.iter().enumerate() {
                        if !e.get("name").is_some_and(Value::is_string) {
                            return Err(shape(
                                format!("{field}.env[{j}].name"),
                                "expected a string",
                            ));
                        }
                    }
                }
                Some(other) => {
                    return Err(shape(
                        format!("{field}.env"),
                        format!("expected a list, found {}", type_name(other)),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Plans the mutation of `pod` (a Pod, or a Pod template with `metadata` and `spec`) created in
/// `namespace`, whose labels are `ns_labels`.
pub fn plan(
    cfg: &Config,
    namespace: &str,
    ns_labels: &Labels,
    pod: &Value,
) -> Result<Plan, ShapeError> {
    check_shape(pod)?;
    let mut warnings = Warnings::default();
    let decision = policy::decide(cfg, namespace, ns_labels, pod, &mut warnings);
    let mut ops = Vec::new();
    if let Decision::Inject { features, windows } = decision {
        if features.host {
            add_metadata_host(cfg, pod, &mut ops, &mut warnings);
        }
        if features.wait {
            add_wait_container(cfg, pod, features.host, windows, &mut ops);
        }
        let mut annotations = Vec::new();
        if features.istio {
            istio_annotations(cfg, pod, &mut annotations, &mut warnings);
        }
        let record_key = cfg.prefix.key("injected");
        let record = features.record();
        if annotation(pod, &record_key) != Some(record.as_str()) {
            annotations.push((record_key, Value::String(record)));
        }
        patch::set_keys(
            pod,
            &[Token::new("metadata"), Token::new("annotations")],
            annotations,
            &mut ops,
        );
    }
    Ok(Plan {
        decision,
        ops,
        warnings,
    })
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

fn metadata_host_value(cfg: &Config) -> String {
    match cfg.metadata_host {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// `GCE_METADATA_HOST` on every init container and container that lacks it. Runs before the
/// wait container is prepended, so init container indices are those of the request.
fn add_metadata_host(
    cfg: &Config,
    pod: &Value,
    ops: &mut Vec<PatchOperation>,
    warnings: &mut Warnings,
) {
    let ours = metadata_host_value(cfg);
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"].get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, container) in containers.iter().enumerate() {
            let existing = container
                .get("env")
                .and_then(Value::as_array)
                .and_then(|env| env.iter().find(|e| e["name"] == METADATA_HOST_ENV));
            match existing {
                None => patch::append(
                    &[
                        Token::new("spec"),
                        Token::new(list),
                        Token::from(i),
                        Token::new("env"),
                    ],
                    container.get("env"),
                    json!({"name": METADATA_HOST_ENV, "value": ours}),
                    ops,
                ),
                Some(entry) => {
                    if let Some(value) = entry
                        .get("value")
                        .and_then(Value::as_str)
                        .filter(|v| *v != ours)
                    {
                        let name = container["name"].as_str().unwrap_or_default();
                        warnings.push(format!(
                            "spec.{list}[{name}].env {METADATA_HOST_ENV}={value:?} differs from {ours}; left as is"
                        ));
                    }
                }
            }
        }
    }
}

/// The wait init container, prepended unless an init container of that name exists.
fn add_wait_container(
    cfg: &Config,
    pod: &Value,
    with_env: bool,
    windows: bool,
    ops: &mut Vec<PatchOperation>,
) {
    let current = pod["spec"].get("initContainers");
    let exists = current.and_then(Value::as_array).is_some_and(|list| {
        list.iter()
            .any(|c| c["name"] == cfg.wait_container_name.as_str())
    });
    if exists {
        return;
    }
    patch::prepend(
        &[Token::new("spec"), Token::new("initContainers")],
        current,
        wait_container(cfg, with_env, windows, windows_os(pod)),
        ops,
    );
}

/// `spec.os.name: windows`: the API server then refuses Linux-only security context fields.
fn windows_os(pod: &Value) -> bool {
    pod.pointer("/spec/os/name").and_then(Value::as_str) == Some("windows")
}

/// The GKE guide's curl command, for `--wait-mode=curl`.
pub fn curl_command(host: &str) -> String {
    format!(
        "curl -sS -H 'Metadata-Flavor: Google' 'http://{host}/computeMetadata/v1/instance/service-accounts/default/token' \
         --retry 30 --retry-connrefused --retry-max-time 60 --connect-timeout 3 --fail --retry-all-errors > /dev/null && exit 0 \
         || echo '{}' >&2; exit 1",
        crate::WAIT_FAILURE_MESSAGE
    )
}

/// The wait init container. `windows` picks the Windows image; `windows_os` (the Pod declares
/// `spec.os.name: windows`) swaps the Linux security context, which the API server forbids on
/// such Pods and Pod Security exempts them from, for a non-administrator Windows user.
fn wait_container(cfg: &Config, with_env: bool, windows: bool, windows_os: bool) -> Value {
    let image = match (&cfg.wait_image_windows, windows) {
        (Some(win), true) => win.as_str(),
        _ => cfg.wait_image.as_str(),
    };
    let mut c = json!({"name": cfg.wait_container_name, "image": image});
    match cfg.wait_mode {
        WaitMode::Wait => c["args"] = json!(["wait"]),
        WaitMode::Curl => {
            c["command"] = json!(["sh", "-c", curl_command(&metadata_host_value(cfg))])
        }
    }
    if with_env {
        c["env"] = json!([{"name": METADATA_HOST_ENV, "value": metadata_host_value(cfg)}]);
    }
    c["resources"] = json!({
        "requests": {"cpu": cfg.wait_cpu_request.as_str(), "memory": cfg.wait_memory_request.as_str()},
        "limits": {"memory": cfg.wait_memory_limit.as_str()},
    });
    c["securityContext"] = if windows_os {
        json!({"runAsNonRoot": true, "windowsOptions": {"runAsUserName": "ContainerUser"}})
    } else {
        json!({
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        })
    };
    c
}

fn istio_annotations(
    cfg: &Config,
    pod: &Value,
    out: &mut Vec<(String, Value)>,
    warnings: &mut Warnings,
) {
    if let Some(v) =
        istio::merge_exclude_ranges(annotation(pod, istio::EXCLUDE_OUTBOUND), cfg.metadata_host)
    {
        out.push((istio::EXCLUDE_OUTBOUND.to_string(), Value::String(v)));
    }
    match istio::merge_proxy_config(annotation(pod, istio::PROXY_CONFIG)) {
        ProxyConfigMerge::Set(v) => out.push((istio::PROXY_CONFIG.to_string(), Value::String(v))),
        ProxyConfigMerge::Unchanged => {}
        ProxyConfigMerge::ExplicitlyOff => warnings.push(format!(
            "annotation {} sets {} to other than true; left as is",
            istio::PROXY_CONFIG,
            istio::HOLD
        )),
        ProxyConfigMerge::Unparsable => warnings.push(format!(
            "annotation {} is not a YAML or JSON mapping; left as is",
            istio::PROXY_CONFIG
        )),
        ProxyConfigMerge::OverLimit(limit) => warnings.push(format!(
            "annotation {} hits the {} bound: {limit}; left as is",
            istio::PROXY_CONFIG,
            limit.bound
        )),
    }
}

#[cfg(test)]
#[path = "mutate_tests.rs"]
mod tests;
