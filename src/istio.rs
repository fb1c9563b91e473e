//! Merging our values into Istio's two annotations (SPEC §4.3), keeping every user value.

use std::net::IpAddr;

use ipnet::IpNet;

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
}

/// Adds `holdApplicationUntilProxyStarts: true` to a proxy config written in YAML or JSON,
/// keeping every other key and the text around them as written.
pub fn merge_proxy_config(existing: Option<&str>) -> ProxyConfigMerge {
    let Some(text) = existing.filter(|t| !t.trim().is_empty()) else {
        return ProxyConfigMerge::Set(format!("{{\"{HOLD}\":true}}"));
    };
    let parsed: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(_) => return ProxyConfigMerge::Unparsable,
    };
    let map = match &parsed {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => return ProxyConfigMerge::Set(format!("{{\"{HOLD}\":true}}")),
        _ => return ProxyConfigMerge::Unparsable,
    };
    match map.get(HOLD) {
        Some(serde_yaml::Value::Bool(true)) => return ProxyConfigMerge::Unchanged,
        Some(_) => return ProxyConfigMerge::ExplicitlyOff,
        None => {}
    }
    let mut want = map.clone();
    want.insert(HOLD.into(), true.into());
    let want = serde_yaml::Value::Mapping(want);

    // Edit the text in place and keep the result only if it parses to exactly the wanted map.
    let trimmed = text.trim_end();
    let candidates = if let Some(body) = trimmed.strip_suffix('}') {
        let empty = body.trim_end().ends_with('{');
        let json_style = trimmed.trim_start().starts_with('{') && (empty || body.contains('"'));
        let entry = if json_style {
            format!("\"{HOLD}\":true")
        } else {
            format!("{HOLD}: true")
        };
        let sep = if empty { "" } else { "," };
        vec![format!("{body}{sep}{entry}}}")]
    } else {
        let indent: String = text
            .lines()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---")
            .map(|l| l.chars().take_while(|c| *c == ' ').collect())
            .unwrap_or_default();
        vec![format!("{trimmed}\n{indent}{HOLD}: true\n")]
    };
    for candidate in candidates {
        if serde_yaml::from_str::<serde_yaml::Value>(&candidate).is_ok_and(|v| v == want) {
            return ProxyConfigMerge::Set(candidate);
        }
    }
    // The text could not be edited in place (unusual layout): write the merged map as JSON,
    // which Istio reads as YAML.
    match serde_json::to_string(&want) {
        Ok(json) => ProxyConfigMerge::Set(json),
        Err(_) => ProxyConfigMerge::Unparsable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const MD: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 169, 254));

    #[rstest]
    #[case::absent(None, Some("169.254.169.254/32"))]
    #[case::empty(Some(""), Some("169.254.169.254/32"))]
    #[case::other(Some("10.0.0.0/8"), Some("10.0.0.0/8,169.254.169.254/32"))]
    #[case::spaces(
        Some("10.0.0.0/8, 192.168.0.0/16"),
        Some("10.0.0.0/8, 192.168.0.0/16,169.254.169.254/32")
    )]
    #[case::trailing_comma(Some("10.0.0.0/8,"), Some("10.0.0.0/8,169.254.169.254/32"))]
    #[case::exact(Some("169.254.169.254/32"), None)]
    #[case::exact_spaced(Some("10.0.0.0/8 , 169.254.169.254/32"), None)]
    #[case::link_local(Some("169.254.0.0/16"), None)]
    #[case::everything(Some("0.0.0.0/0"), None)]
    #[case::star(Some("*"), None)]
    #[case::star_in_list(Some("10.0.0.0/8, *"), None)]
    #[case::bare_ip(Some("169.254.169.254"), None)]
    #[case::near_miss(Some("169.254.169.0/32"), Some("169.254.169.0/32,169.254.169.254/32"))]
    #[case::ipv6_only(Some("fd00::/8,::/0"), Some("fd00::/8,::/0,169.254.169.254/32"))]
    #[case::garbage_kept(Some("not-a-cidr"), Some("not-a-cidr,169.254.169.254/32"))]
    fn exclude_ranges(#[case] existing: Option<&str>, #[case] want: Option<&str>) {
        assert_eq!(merge_exclude_ranges(existing, MD).as_deref(), want);
    }

    #[test]
    fn exclude_ranges_ipv6_host() {
        let host: IpAddr = "fd20::254".parse().unwrap();
        assert_eq!(
            merge_exclude_ranges(None, host).as_deref(),
            Some("fd20::254/128")
        );
        assert_eq!(merge_exclude_ranges(Some("fd20::/16"), host), None);
        assert_eq!(
            merge_exclude_ranges(Some("10.0.0.0/8"), host).as_deref(),
            Some("10.0.0.0/8,fd20::254/128")
        );
    }

    fn set(s: &str) -> ProxyConfigMerge {
        ProxyConfigMerge::Set(s.to_string())
    }

    #[rstest]
    #[case::absent(None, set(r#"{"holdApplicationUntilProxyStarts":true}"#))]
    #[case::blank(Some("  "), set(r#"{"holdApplicationUntilProxyStarts":true}"#))]
    #[case::json(
        Some(r#"{"concurrency": 2}"#),
        set(r#"{"concurrency": 2,"holdApplicationUntilProxyStarts":true}"#)
    )]
    #[case::json_empty(Some("{}"), set(r#"{"holdApplicationUntilProxyStarts":true}"#))]
    #[case::json_nested(
        Some(r#"{"proxyMetadata":{"A":"b"}}"#),
        set(r#"{"proxyMetadata":{"A":"b"},"holdApplicationUntilProxyStarts":true}"#)
    )]
    #[case::yaml(
        Some("concurrency: 2\n"),
        set("concurrency: 2\nholdApplicationUntilProxyStarts: true\n")
    )]
    #[case::yaml_nested(
        Some("proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\nconcurrency: 2"),
        set(
            "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\nconcurrency: 2\nholdApplicationUntilProxyStarts: true\n"
        )
    )]
    #[case::yaml_comment(
        Some("# tuned\nconcurrency: 2\n"),
        set("# tuned\nconcurrency: 2\nholdApplicationUntilProxyStarts: true\n")
    )]
    #[case::yaml_flow(
        Some("{concurrency: 2}"),
        set("{concurrency: 2,holdApplicationUntilProxyStarts: true}")
    )]
    #[case::already_true_json(
        Some(r#"{"holdApplicationUntilProxyStarts": true}"#),
        ProxyConfigMerge::Unchanged
    )]
    #[case::already_true_yaml(
        Some("holdApplicationUntilProxyStarts: true"),
        ProxyConfigMerge::Unchanged
    )]
    #[case::explicit_false(
        Some("holdApplicationUntilProxyStarts: false"),
        ProxyConfigMerge::ExplicitlyOff
    )]
    #[case::string_true(
        Some(r#"{"holdApplicationUntilProxyStarts": "yes"}"#),
        ProxyConfigMerge::ExplicitlyOff
    )]
    #[case::broken(Some("{concurrency: "), ProxyConfigMerge::Unparsable)]
    #[case::list(Some("- a\n- b"), ProxyConfigMerge::Unparsable)]
    #[case::scalar(Some("hello"), ProxyConfigMerge::Unparsable)]
    fn proxy_config(#[case] existing: Option<&str>, #[case] want: ProxyConfigMerge) {
        assert_eq!(merge_proxy_config(existing), want);
    }

    #[test]
    fn merged_proxy_config_keeps_every_key() {
        let text = "concurrency: 2\ntracing:\n  sampling: 10\nproxyMetadata:\n  A: b\n";
        let ProxyConfigMerge::Set(out) = merge_proxy_config(Some(text)) else {
            panic!()
        };
        let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v["concurrency"], serde_yaml::Value::from(2));
        assert_eq!(v["tracing"]["sampling"], serde_yaml::Value::from(10));
        assert_eq!(v["proxyMetadata"]["A"], serde_yaml::Value::from("b"));
        assert_eq!(v[HOLD], serde_yaml::Value::from(true));
        assert!(out.starts_with(text), "user text kept as written: {out}");
    }
}
