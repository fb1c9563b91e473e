use super::*;
use crate::yaml::Bound;
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
    let v = yaml::value(&out, &PROXY_CONFIG_LIMITS).unwrap();
    assert_eq!(v["concurrency"], Value::from(2));
    assert_eq!(v["tracing"]["sampling"], Value::from(10));
    assert_eq!(v["proxyMetadata"]["A"], Value::from("b"));
    assert_eq!(v[HOLD], Value::from(true));
    assert!(out.starts_with(text), "user text kept as written: {out}");
}

/// `holdApplicationUntilProxyStarts` (or its proto name) set to `value`, as Istio reads it.
#[rstest]
#[case::yes("yes", ProxyConfigMerge::Unchanged)]
#[case::yes_capitalized("Yes", ProxyConfigMerge::Unchanged)]
#[case::yes_upper("YES", ProxyConfigMerge::Unchanged)]
#[case::y("y", ProxyConfigMerge::Unchanged)]
#[case::y_upper("Y", ProxyConfigMerge::Unchanged)]
#[case::on("on", ProxyConfigMerge::Unchanged)]
#[case::on_capitalized("On", ProxyConfigMerge::Unchanged)]
#[case::on_upper("ON", ProxyConfigMerge::Unchanged)]
#[case::true_capitalized("True", ProxyConfigMerge::Unchanged)]
#[case::true_upper("TRUE", ProxyConfigMerge::Unchanged)]
// go-yaml reads `yEs` as a string (Istio then rejects the config); serde-saphyr as `true`.
#[case::mixed_case_deviation("yEs", ProxyConfigMerge::Unchanged)]
#[case::no("no", ProxyConfigMerge::ExplicitlyOff)]
#[case::n("n", ProxyConfigMerge::ExplicitlyOff)]
#[case::off("off", ProxyConfigMerge::ExplicitlyOff)]
#[case::off_upper("OFF", ProxyConfigMerge::ExplicitlyOff)]
#[case::false_capitalized("False", ProxyConfigMerge::ExplicitlyOff)]
#[case::quoted_yes("'yes'", ProxyConfigMerge::ExplicitlyOff)]
#[case::quoted_true("\"true\"", ProxyConfigMerge::ExplicitlyOff)]
#[case::tagged_string("!!str true", ProxyConfigMerge::ExplicitlyOff)]
#[case::one("1", ProxyConfigMerge::ExplicitlyOff)]
#[case::null("~", ProxyConfigMerge::ExplicitlyOff)]
fn yaml_1_1_booleans(#[case] value: &str, #[case] want: ProxyConfigMerge) {
    for key in [HOLD, HOLD_SNAKE] {
        let text = format!("concurrency: 2\n{key}: {value}\n");
        assert_eq!(merge_proxy_config(Some(&text)), want, "{text}");
        let flow = format!("{{concurrency: 2, {key}: {value}}}");
        assert_eq!(merge_proxy_config(Some(&flow)), want, "{flow}");
    }
}

#[rstest]
#[case::snake_true_json(
    r#"{"hold_application_until_proxy_starts": true}"#,
    ProxyConfigMerge::Unchanged
)]
#[case::snake_false(
    "hold_application_until_proxy_starts: false",
    ProxyConfigMerge::ExplicitlyOff
)]
#[case::both_true(
    "holdApplicationUntilProxyStarts: true\nhold_application_until_proxy_starts: true",
    ProxyConfigMerge::Unchanged
)]
#[case::both_differ(
    "holdApplicationUntilProxyStarts: true\nhold_application_until_proxy_starts: false",
    ProxyConfigMerge::ExplicitlyOff
)]
#[case::other_spelling_is_another_key(
    "HoldApplicationUntilProxyStarts: true\n",
    set("HoldApplicationUntilProxyStarts: true\nholdApplicationUntilProxyStarts: true\n")
)]
fn snake_case_key(#[case] text: &str, #[case] want: ProxyConfigMerge) {
    assert_eq!(merge_proxy_config(Some(text)), want);
}

fn bound_of(m: &ProxyConfigMerge) -> Option<Bound> {
    match m {
        ProxyConfigMerge::OverLimit(l) => Some(l.bound),
        _ => None,
    }
}

/// `levels` anchors, each a list of `width` aliases of the one before: `width^levels` leaves.
pub(crate) fn alias_bomb(levels: usize, width: usize) -> String {
    let mut s = format!("a0: &a0 [{}]\n", vec!["lol"; width].join(","));
    for i in 1..levels {
        let refs = vec![format!("*a{}", i - 1); width].join(",");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s
}

/// An ordinary block mapping of exactly `bytes` bytes (the last line a comment as padding).
fn ordinary(bytes: usize) -> String {
    let mut s = String::from("concurrency: 2\nproxyMetadata:\n");
    for i in 0.. {
        let line = format!("  ISTIO_META_KEY_{i:05}: \"value-{i:05}\"\n");
        if s.len() + line.len() + 3 > bytes {
            break;
        }
        s.push_str(&line);
    }
    s.push_str(&format!("#{}\n", "x".repeat(bytes - s.len() - 2)));
    assert_eq!(s.len(), bytes);
    s
}

fn nested_block(depth: usize) -> String {
    (0..depth)
        .map(|d| format!("{}k{d}:\n", " ".repeat(d)))
        .collect::<String>()
        + &" ".repeat(depth)
        + "leaf: 1\n"
}

#[rstest]
#[case::alias_bomb_9x9(alias_bomb(9, 9), Bound::Aliases)]
#[case::alias_expansion_8x8(alias_bomb(8, 8), Bound::Aliases)]
#[case::aliases_65(
    format!("x: &x 1\n{}", (0..65).map(|i| format!("k{i}: *x\n")).collect::<String>()),
    Bound::Aliases
)]
#[case::anchors_65((0..65).map(|i| format!("k{i}: &a{i} 1\n")).collect::<String>(), Bound::Aliases)]
#[case::big_scalar_aliased(
    format!("a: &a {}\nb: [*a, *a, *a]\n", "x".repeat(20_000)),
    Bound::Size
)]
#[case::flow_seq_10k(format!("a: {}{}", "[".repeat(10_000), "]".repeat(10_000)), Bound::Depth)]
#[case::flow_map_10k(format!("{}{}", "{".repeat(10_000), "}".repeat(10_000)), Bound::Depth)]
#[case::flow_map_keys_10k(format!("{}1{}", "{a: ".repeat(10_000), "}".repeat(10_000)), Bound::Size)]
#[case::flow_depth_33(format!("a: {}{}", "[".repeat(32), "]".repeat(32)), Bound::Depth)]
#[case::block_depth_33(nested_block(33), Bound::Depth)]
#[case::ordinary_300_kib(ordinary(300 * 1024), Bound::Size)]
#[case::just_over_size(ordinary(MAX_PROXY_CONFIG_BYTES + 40), Bound::Size)]
#[case::no_room_for_the_entry(ordinary(MAX_PROXY_CONFIG_BYTES - HOLD.len() - 6), Bound::Size)]
#[case::many_nodes(format!("a: [{}]", "1,".repeat(9000)), Bound::Size)]
#[case::no_room_for_two_nodes(format!("a: [{}1]", "1,".repeat(MAX_PROXY_CONFIG_NODES - 5)), Bound::Size)]
fn over_a_bound_is_left_alone(#[case] text: String, #[case] bound: Bound) {
    let started = std::time::Instant::now();
    let got = merge_proxy_config(Some(&text));
    assert_eq!(bound_of(&got), Some(bound), "{got:?}");
    // Generous: the bounds keep this to milliseconds even in debug builds.
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[rstest]
// The merged text (`\nholdApplicationUntilProxyStarts: true\n` replacing the last newline)
// is exactly MAX_PROXY_CONFIG_BYTES long.
#[case::ordinary_just_under(ordinary(MAX_PROXY_CONFIG_BYTES - HOLD.len() - 7))]
#[case::flow_depth_32(format!("a: {}1{}", "[".repeat(31), "]".repeat(31)))]
#[case::block_depth_32(nested_block(31))]
#[case::aliases_64(format!("x: &x 1\n{}", (0..64).map(|i| format!("k{i}: *x\n")).collect::<String>()))]
#[case::small_expansion(alias_bomb(3, 8))]
#[case::merge_key("base: &b {concurrency: 2}\nmine:\n  <<: *b\n")]
// Root, key, list and N - 5 items: with our key and value, exactly MAX_PROXY_CONFIG_NODES nodes.
#[case::nodes_just_under(format!("a: [{}1]", "1,".repeat(MAX_PROXY_CONFIG_NODES - 6)))]
fn just_under_the_bounds_still_merges(#[case] text: String) {
    assert!(text.len() <= MAX_PROXY_CONFIG_BYTES, "{}", text.len());
    let ProxyConfigMerge::Set(out) = merge_proxy_config(Some(&text)) else {
        panic!("not merged: {:?}", merge_proxy_config(Some(&text)))
    };
    assert!(
        out.starts_with(text.trim_end()),
        "user text kept as written"
    );
    let v = yaml::value(&out, &PROXY_CONFIG_LIMITS).unwrap();
    assert_eq!(v[HOLD], Value::Bool(true));
    let mut before = yaml::value(&text, &PROXY_CONFIG_LIMITS).unwrap();
    before[HOLD] = Value::Bool(true);
    assert_eq!(v, before, "every other key kept");
    assert_eq!(merge_proxy_config(Some(&out)), ProxyConfigMerge::Unchanged);
}

#[test]
fn over_a_bound_warns_and_keeps_the_annotation() {
    use crate::policy::{Config, Labels};
    let bomb = alias_bomb(9, 9);
    let pod = serde_json::json!({
        "metadata": {"name": "p", "annotations": {PROXY_CONFIG: bomb}},
        "spec": {"containers": [{"name": "a"}]}
    });
    let labels: Labels = [
        (
            "gke-wi-injector.dev/inject".to_string(),
            "enabled".to_string(),
        ),
        (
            "gke-wi-injector.dev/istio".to_string(),
            "enabled".to_string(),
        ),
    ]
    .into();
    let plan = crate::mutate::plan(&Config::default(), "team", &labels, &pod).unwrap();
    let mut out = pod.clone();
    json_patch::patch(&mut out, &plan.ops).unwrap();
    assert_eq!(out["metadata"]["annotations"][PROXY_CONFIG], bomb.as_str());
    let w: Vec<&String> = plan
        .warnings
        .as_slice()
        .iter()
        .filter(|w| w.contains(PROXY_CONFIG))
        .collect();
    assert_eq!(
        w,
        [&format!(
            "annotation {PROXY_CONFIG} hits the aliases bound: over the alias expansion limit of \
             {MAX_PROXY_CONFIG_ALIAS_EVENTS}; left as is"
        )]
    );
    assert!(w[0].chars().count() <= crate::warnings::MAX_WARNING_CHARS);
}

/// The server reads proxy configs on tokio workers (2 MiB stacks): the deepest configs, aliases
/// replaying deep anchors included, fit in half of that even in debug builds.
#[test]
fn deepest_configs_fit_a_small_stack() {
    let d = MAX_PROXY_CONFIG_DEPTH;
    let deep_anchor = format!("a: &a {}1{}\n", "[".repeat(d - 1), "]".repeat(d - 1));
    let inputs = [
        (
            format!("a: {}1{}", "[".repeat(d - 1), "]".repeat(d - 1)),
            None,
        ),
        (
            format!("a: {}1{}", "{k: ".repeat(d - 1), "}".repeat(d - 1)),
            None,
        ),
        (nested_block(d - 1), None),
        (
            format!("a: {}1{}", "[".repeat(d), "]".repeat(d)),
            Some(Bound::Depth),
        ),
        (format!("{deep_anchor}b: [[*a]]\n"), Some(Bound::Depth)),
    ];
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            for (text, bound) in inputs {
                let got = merge_proxy_config(Some(&text));
                assert_eq!(bound_of(&got), bound, "{text}: {got:?}");
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
