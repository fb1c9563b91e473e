//! Merging our values into Istio's two annotations (SPEC §4.3), keeping every user value.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use crate::yaml::{self, Limit, YamlLimits};

pub const EXCLUDE_OUTBOUND: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
pub const PROXY_CONFIG: &str = "proxy.istio.io/config";
pub const HOLD: &str = "holdApplicationUntilProxyStarts";

/// The new `excludeOutboundIPRanges` value, or `None` when a listed range already covers `host`.
/// Entries are comma-separated with optional spaces; `*` covers every address; entries that do
/// not parse (Istio rejects them itself) cover nothing and are kept as written.
pub fn merge_exclude_ranges(existing: Option<&str>, host: IpAddr) -> Option<String> {
    let ours = IpNet::from(host).to_string();
    let Some(existing) = existing.filter(|e| !e.trim().is_empty()) else {
        return Some(ours);
    };
    let covered = existing.split(',').map(str::trim).any(|entry| {
        entry == "*"
            || entry.parse::<IpNet>().is_ok_and(|net| net.contains(&host))
            || entry.parse::<IpAddr>().is_ok_and(|ip| ip == host)
    });
    if covered {
        return None;
    }
    let kept = existing.trim_end().trim_end_matches(',').trim_end();
    Some(format!("{kept},{ours}"))
}

/// The proto (snake_case) name of [`HOLD`]: Istio reads the annotation with protojson, which
/// accepts both names (and rejects a config that holds both).
pub const HOLD_SNAKE: &str = "hold_application_until_proxy_starts";

/// Longest `proxy.istio.io/config` we read, in bytes (checked before parsing). Real proxy
/// configs are a few hundred bytes; Kubernetes caps all annotations of an object at 256 KiB.
pub const MAX_PROXY_CONFIG_BYTES: usize = 32 * 1024;
/// Deepest nesting of mappings and sequences, block or flow.
pub const MAX_PROXY_CONFIG_DEPTH: usize = 32;
/// Most nodes (scalars, mappings, sequences, keys), aliases expanded.
pub const MAX_PROXY_CONFIG_NODES: usize = 4 * 1024;
/// Most aliases, anchors and merge keys, each.
pub const MAX_PROXY_CONFIG_ALIASES: usize = 64;
/// Most parser events replayed or recorded through aliases and anchors, in total.
pub const MAX_PROXY_CONFIG_ALIAS_EVENTS: usize = 4 * 1024;

/// The bounds `proxy.istio.io/config` is read under; over any of them it is left as written.
pub const PROXY_CONFIG_LIMITS: YamlLimits = YamlLimits {
    max_bytes: MAX_PROXY_CONFIG_BYTES,
    max_depth: MAX_PROXY_CONFIG_DEPTH,
    max_nodes: MAX_PROXY_CONFIG_NODES,
    max_value_bytes: 2 * MAX_PROXY_CONFIG_BYTES,
    max_aliases: MAX_PROXY_CONFIG_ALIASES,
    max_alias_events: MAX_PROXY_CONFIG_ALIAS_EVENTS,
    max_documents: 2,
};

/// What to do with `proxy.istio.io/config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyConfigMerge {
    /// Set the annotation to this value.
    Set(String),
    /// Already holds the application until the proxy starts.
    Unchanged,
    /// `holdApplicationUntilProxyStarts` is explicitly false (or not a boolean): left alone.
    ExplicitlyOff,
    /// Not a YAML or JSON mapping: left alone.
    Unparsable,
    /// Over one of the [`PROXY_CONFIG_LIMITS`]: left alone.
    OverLimit(Limit),
}

/// Adds `holdApplicationUntilProxyStarts: true` to a proxy config written in YAML or JSON,
/// keeping every other key and the text around them as written.
///
/// Values are read as Istio reads them (sigs.k8s.io/yaml, YAML 1.1): plain `yes`, `on`, `y`
/// are `true`, `no`, `off`, `n` are `false`; a quoted `"yes"` is a string, which is not `true`.
/// One deviation (see [`crate::yaml`]): mixed-case spellings such as `yEs` are `true` here, where
/// go-yaml reads a string; such a config is then `Unchanged` without a warning, while Istio rejects
/// it. Either way the annotation is left as written.
pub fn merge_proxy_config(existing: Option<&str>) -> ProxyConfigMerge {
    let Some(text) = existing.filter(|t| !t.trim().is_empty()) else {
        return ProxyConfigMerge::Set(format!("{{\"{HOLD}\":true}}"));
    };
    let parsed = match yaml::value(text, &PROXY_CONFIG_LIMITS) {
        Ok(v) => v,
        Err(e) => {
            return e
                .limit()
                .map_or(ProxyConfigMerge::Unparsable, ProxyConfigMerge::OverLimit);
        }
    };
    let map = match parsed {
        Value::Object(m) => m,
        Value::Null => return ProxyConfigMerge::Set(format!("{{\"{HOLD}\":true}}")),
        _ => return ProxyConfigMerge::Unparsable,
    };
    // Either name counts; with both (which Istio rejects) every one must be true.
    let values: Vec<&Value> = [HOLD, HOLD_SNAKE]
        .iter()
        .filter_map(|k| map.get(*k))
        .collect();
    if !values.is_empty() {
        return if values.iter().all(|v| **v == Value::Bool(true)) {
            ProxyConfigMerge::Unchanged
        } else {
            ProxyConfigMerge::ExplicitlyOff
        };
    }
    let mut want = map;
    want.insert(HOLD.into(), Value::Bool(true));
    let want = Value::Object(want);

    // Edit the text in place and keep the result only if it parses to exactly the wanted map.
    let trimmed = text.trim_end();
    let candidate = if let Some(body) = trimmed.strip_suffix('}') {
        let empty = body.trim_end().ends_with('{');
        let json_style = trimmed.trim_start().starts_with('{') && (empty || body.contains('"'));
        let entry = if json_style {
            format!("\"{HOLD}\":true")
        } else {
            format!("{HOLD}: true")
        };
        let sep = if empty { "" } else { "," };
        format!("{body}{sep}{entry}}}")
    } else {
        let indent: String = text
            .lines()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---")
            .map(|l| l.chars().take_while(|c| *c == ' ').collect())
            .unwrap_or_default();
        format!("{trimmed}\n{indent}{HOLD}: true\n")
    };
    // The result must read back under the same bounds, or the next pass would warn.
    match yaml::value(&candidate, &PROXY_CONFIG_LIMITS) {
        Ok(v) if v == want => return ProxyConfigMerge::Set(candidate),
        Err(e) if e.limit().is_some() => {
            return e
                .limit()
                .map_or(ProxyConfigMerge::Unparsable, ProxyConfigMerge::OverLimit);
        }
        _ => {}
    }
    // The text could not be edited in place (unusual layout): write the merged map as JSON,
    // which Istio reads as YAML.
    ProxyConfigMerge::Set(want.to_string())
}

#[cfg(test)]
#[path = "istio_tests.rs"]
mod tests;
