//! Reading the Pod Istio's injector produced: where our annotations show up (see
//! cases_istio.rs) and what every Istio case asserts about our own part.
#![allow(dead_code)]

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::{HOST, all_containers, host_env, injected, names};

pub const RANGE: &str = "169.254.169.254/32";
pub const WAIT: &str = "gke-metadata-wait";
pub const ALL: &str = "metadata-wait,metadata-host,istio";

pub fn c<'a>(pod: &'a Value, field: &str, name: &str) -> Option<&'a Value> {
    pod["spec"][field]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

/// The value after `flag` in a container's args.
pub fn arg_after<'a>(container: &'a Value, flag: &str) -> Option<&'a str> {
    let args = container["args"].as_array()?;
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1)?.as_str()
}

/// The excluded outbound ranges (`-x`) of `istio-init` (or of `istio-validation`, with CNI),
/// split.
pub fn excluded(pod: &Value) -> Result<Vec<String>> {
    let init = c(pod, "initContainers", "istio-init")
        .or_else(|| c(pod, "initContainers", "istio-validation"))
        .with_context(|| {
            format!(
                "no istio-init (init containers {:?})",
                names(pod, "initContainers")
            )
        })?;
    let x = arg_after(init, "-x").context("istio-init has no -x argument")?;
    Ok(x.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The ProxyConfig Istio computed for the Pod (`PROXY_CONFIG` on `istio-proxy`).
pub fn proxy_config(pod: &Value, proxy: &Value) -> Result<Value> {
    let text = proxy["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == "PROXY_CONFIG"))
        .and_then(|v| v["value"].as_str())
        .with_context(|| format!("istio-proxy has no PROXY_CONFIG: {}", pod["metadata"]))?;
    Ok(serde_json::from_str(text)?)
}

/// The `istio-proxy` container, wherever Istio put it: (field, index, container).
pub fn proxy(pod: &Value) -> Result<(&'static str, usize, &Value)> {
    for field in ["containers", "initContainers"] {
        if let Some(i) = names(pod, field).iter().position(|n| n == "istio-proxy") {
            return Ok((field, i, &pod["spec"][field][i]));
        }
    }
    bail!(
        "Istio did not inject: containers {:?}, init containers {:?}, annotations {}",
        names(pod, "containers"),
        names(pod, "initContainers"),
        pod["metadata"]["annotations"]
    )
}

/// Our part, after Istio's: the wait container exactly once, `GCE_METADATA_HOST` exactly once
/// on every container and init container, Istio's included (reinvocation).
pub fn ours_once_everywhere(pod: &Value, features: &str) -> Result<()> {
    ensure!(
        injected(pod) == Some(features),
        "injected {:?}, want {features}",
        injected(pod)
    );
    let waits = names(pod, "initContainers")
        .iter()
        .filter(|n| *n == WAIT)
        .count();
    ensure!(
        waits == usize::from(features.contains("metadata-wait")),
        "{waits} {WAIT} init containers: {:?}",
        names(pod, "initContainers")
    );
    for container in all_containers(pod) {
        ensure!(
            host_env(container) == [&json!(HOST)],
            "container {} has GCE_METADATA_HOST {:?}",
            container["name"],
            host_env(container)
        );
    }
    Ok(())
}

/// Classic sidecars with our annotations: `istio-init` excludes our range, `istio-proxy` is the
/// first container with the `pilot-agent wait` postStart hook, the ProxyConfig holds the app.
pub fn assert_classic_hold(pod: &Value) -> Result<Value> {
    let x = excluded(pod)?;
    ensure!(
        x.iter().any(|r| r == RANGE),
        "istio-init -x {x:?} lacks {RANGE}"
    );
    let (field, i, proxy) = proxy(pod)?;
    ensure!(
        field == "containers" && i == 0,
        "istio-proxy is {field}[{i}], want containers[0]: {:?}",
        names(pod, "containers")
    );
    let hook = &proxy["lifecycle"]["postStart"]["exec"]["command"];
    ensure!(
        *hook == json!(["pilot-agent", "wait"]),
        "istio-proxy postStart hook is {hook}"
    );
    let pc = proxy_config(pod, proxy)?;
    ensure!(
        pc["holdApplicationUntilProxyStarts"] == true,
        "PROXY_CONFIG lacks holdApplicationUntilProxyStarts: {pc}"
    );
    // iptables last, after every other init container (ours included): Istio's own order.
    let inits = names(pod, "initContainers");
    ensure!(
        inits.last().map(String::as_str) == Some("istio-init"),
        "istio-init is not the last init container: {inits:?}"
    );
    Ok(pc)
}

/// The README's quick-start Pod.
pub fn quick_start_pod() -> Value {
    quick_start_pod_named("web")
}

/// The quick-start Pod with `serviceAccountName: default`, which a cluster's ServiceAccount
/// admission plugin sets (the suite's API server runs without it): the API server refuses the
/// projected token volume Istio adds to a Pod that names no service account.
pub fn quick_start_pod_named(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": "default",
                 "containers": [{"name": "web", "image": "web:1.4.2"}]}
    })
}
