use super::*;
use crate::engine::yaml::{self, FILE_LIMITS};
use rstest::rstest;
use serde_json::{Value, json};

const NS: &str = "app";
/// 169.254.169.254 TCP 80.
const MD: Destination = METADATA_DESTINATIONS[0];
/// 169.254.169.252 TCP 988.
const GKE: Destination = METADATA_DESTINATIONS[1];

fn policy(name: &str, namespace: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .expect("a NetworkPolicy")
}

/// An Egress policy in `NS` selecting every Pod, with these egress rules.
fn egress(name: &str, rules: Value) -> NetworkPolicy {
    policy(
        name,
        NS,
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}),
    )
}

fn deny_all(name: &str) -> NetworkPolicy {
    egress(name, json!([]))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn web_pod() -> BTreeMap<String, String> {
    labels(&[("app", "web"), ("tier", "front")])
}

fn selector(value: Value) -> LabelSelector {
    serde_json::from_value(value).expect("a LabelSelector")
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// One policy's rules, both destinations: allowed (by it) or blocked (by it).
#[rstest]
#[case::no_rules(json!([]), false, false)]
#[case::empty_rule(json!([{}]), true, true)]
#[case::to_empty_is_any(json!([{"to": [], "ports": [{"port": 80}]}]), true, false)]
#[case::ports_empty_is_any(
    json!([{"to": [{"ipBlock": {"cidr": "169.254.169.252/32"}}], "ports": []}]),
    false,
    true
)]
#[case::everything(json!([{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]), true, true)]
#[case::link_local(json!([{"to": [{"ipBlock": {"cidr": "169.254.0.0/16"}}]}]), true, true)]
#[case::except_md(
    json!([{"to": [{"ipBlock": {"cidr": "169.254.0.0/16", "except": ["169.254.169.254/32"]}}]}]),
    false,
    true
)]
#[case::except_larger_range(
    json!([{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16"]}}]}]),
    false,
    false
)]
#[case::exact_32(json!([{"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]}]), true, false)]
#[case::wrong_32(json!([{"to": [{"ipBlock": {"cidr": "169.254.169.253/32"}}]}]), false, false)]
#[case::ipv6_everything(json!([{"to": [{"ipBlock": {"cidr": "::/0"}}]}]), false, false)]
#[case::ipv4_mapped_ipv6(
    json!([{"to": [{"ipBlock": {"cidr": "::ffff:169.254.0.0/112"}}]}]),
    false,
    false
)]
#[case::host_bits_set(json!([{"to": [{"ipBlock": {"cidr": "169.254.1.1/16"}}]}]), true, true)]
#[case::leading_zeros(
    json!([{"to": [{"ipBlock": {"cidr": "169.254.169.0254/32"}}]}]),
    true,
    false
)]
#[case::bare_address(json!([{"to": [{"ipBlock": {"cidr": "169.254.169.254"}}]}]), false, false)]
#[case::garbage_cidr(json!([{"to": [{"ipBlock": {"cidr": "metadata"}}]}]), false, false)]
#[case::prefix_too_long(
    json!([{"to": [{"ipBlock": {"cidr": "169.254.169.254/33"}}]}]),
    false,
    false
)]
#[case::garbage_except_excludes_nothing(
    json!([{"to": [{"ipBlock": {"cidr": "169.254.0.0/16", "except": ["nope"]}}]}]),
    true,
    true
)]
#[case::port_80_tcp(json!([{"ports": [{"protocol": "TCP", "port": 80}]}]), true, false)]
#[case::port_80_udp(json!([{"ports": [{"protocol": "UDP", "port": 80}]}]), false, false)]
#[case::port_988_sctp(json!([{"ports": [{"protocol": "SCTP", "port": 988}]}]), false, false)]
#[case::protocol_absent_is_tcp(json!([{"ports": [{"port": 988}]}]), false, true)]
#[case::all_tcp_ports(json!([{"ports": [{"protocol": "TCP"}]}]), true, true)]
#[case::all_udp_ports(json!([{"ports": [{"protocol": "UDP"}]}]), false, false)]
#[case::range_covering(json!([{"ports": [{"port": 1, "endPort": 1024}]}]), true, true)]
#[case::range_inclusive_ends(json!([{"ports": [{"port": 80, "endPort": 988}]}]), true, true)]
#[case::range_excluding(json!([{"ports": [{"port": 81, "endPort": 987}]}]), false, false)]
#[case::range_above(json!([{"ports": [{"port": 989, "endPort": 65535}]}]), false, false)]
#[case::second_port_matches(json!([{"ports": [{"port": 443}, {"port": 988}]}]), false, true)]
#[case::named_port(json!([{"ports": [{"port": "http"}]}]), false, false)]
#[case::named_port_of_digits(json!([{"ports": [{"port": "80"}]}]), false, false)]
#[case::namespace_selector_all(json!([{"to": [{"namespaceSelector": {}}]}]), false, false)]
#[case::pod_selector_all(json!([{"to": [{"podSelector": {}}]}]), false, false)]
#[case::both_selectors(
    json!([{"to": [{"namespaceSelector": {}, "podSelector": {}}]}]),
    false,
    false
)]
#[case::ip_block_beside_selector(
    json!([{"to": [{"namespaceSelector": {}, "ipBlock": {"cidr": "169.254.0.0/16"}}]}]),
    true,
    true
)]
#[case::second_peer_matches(
    json!([{"to": [{"podSelector": {}}, {"ipBlock": {"cidr": "169.254.169.252/32"}}]}]),
    false,
    true
)]
#[case::to_and_ports_both_needed(
    json!([{"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}], "ports": [{"port": 988}]}]),
    false,
    false
)]
#[case::second_rule_allows(
    json!([
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        {"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}], "ports": [{"port": 80}]},
    ]),
    true,
    false
)]
#[case::one_rule_each(
    json!([
        {"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}], "ports": [{"port": 80}]},
        {"to": [{"ipBlock": {"cidr": "169.254.169.252/32"}}], "ports": [{"port": 988}]},
    ]),
    true,
    true
)]
fn rule_cases(#[case] rules: Value, #[case] md: bool, #[case] gke: bool) {
    let policies = [egress("p", rules)];
    for (dest, allowed) in [(MD, md), (GKE, gke)] {
        let want = if allowed {
            Verdict::Allowed(names(&["p"]))
        } else {
            Verdict::Blocked(names(&["p"]))
        };
        assert_eq!(
            egress_verdict(NS, &web_pod(), &policies, &dest),
            want,
            "{dest:?}"
        );
    }
}

/// Which policies select the Pod and isolate it, to 169.254.169.254 TCP 80.
#[rstest]
#[case::no_policies(vec![], Verdict::NotIsolated)]
#[case::other_namespace(
    vec![policy("deny", "other", json!({"policyTypes": ["Egress"]}))],
    Verdict::NotIsolated
)]
#[case::pod_selector_not_matching(
    vec![policy("deny", NS, json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"]}))],
    Verdict::NotIsolated
)]
#[case::pod_selector_matching(
    vec![policy("deny", NS, json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]}))],
    Verdict::Blocked(names(&["deny"]))
)]
#[case::empty_pod_selector(vec![deny_all("deny")], Verdict::Blocked(names(&["deny"])))]
#[case::pod_selector_absent(
    vec![policy("deny", NS, json!({"policyTypes": ["Egress"]}))],
    Verdict::Blocked(names(&["deny"]))
)]
#[case::pod_selector_expressions(
    vec![policy("deny", NS, json!({"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": ["web", "api"]},
        {"key": "tier", "operator": "NotIn", "values": ["back"]},
        {"key": "tier", "operator": "Exists"},
        {"key": "legacy", "operator": "DoesNotExist"},
    ]}, "policyTypes": ["Egress"]}))],
    Verdict::Blocked(names(&["deny"]))
)]
#[case::pod_selector_expressions_not_matching(
    vec![policy("deny", NS, json!({"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": ["web"]},
        {"key": "tier", "operator": "DoesNotExist"},
    ]}, "policyTypes": ["Egress"]}))],
    Verdict::NotIsolated
)]
#[case::ingress_only(
    vec![policy("ing", NS, json!({"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}))],
    Verdict::NotIsolated
)]
#[case::ingress_and_egress_no_rules(
    vec![policy("both", NS, json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))],
    Verdict::Blocked(names(&["both"]))
)]
#[case::egress_absent(
    vec![policy("deny", NS, json!({"podSelector": {}, "policyTypes": ["Egress"]}))],
    Verdict::Blocked(names(&["deny"]))
)]
#[case::types_absent_with_rules(
    vec![policy("old", NS, json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}))],
    Verdict::Blocked(names(&["old"]))
)]
#[case::types_absent_with_allowing_rule(
    vec![policy("old", NS, json!({"podSelector": {}, "egress": [{"ports": [{"port": 80}]}]}))],
    Verdict::Allowed(names(&["old"]))
)]
#[case::types_absent_egress_empty(
    vec![policy("old", NS, json!({"podSelector": {}, "egress": []}))],
    Verdict::NotIsolated
)]
#[case::types_empty_egress_empty(
    vec![policy("old", NS, json!({"podSelector": {}, "policyTypes": [], "egress": []}))],
    Verdict::NotIsolated
)]
#[case::types_empty_with_rules(
    vec![policy("old", NS, json!({"podSelector": {}, "policyTypes": [], "egress": [{"ports": [{"port": 53}]}]}))],
    Verdict::Blocked(names(&["old"]))
)]
#[case::ingress_policy_only_selects(
    vec![
        policy("ing", NS, json!({"podSelector": {}})),
        policy("deny-db", NS, json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"]})),
    ],
    Verdict::NotIsolated
)]
#[case::union_one_allows(
    vec![deny_all("a-deny"), egress("b-allow", json!([{"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]}]))],
    Verdict::Allowed(names(&["b-allow"]))
)]
#[case::union_names_all_allowing(
    vec![
        egress("z-allow", json!([{}])),
        deny_all("m-deny"),
        egress("a-allow", json!([{"ports": [{"port": 80}]}])),
    ],
    Verdict::Allowed(names(&["a-allow", "z-allow"]))
)]
#[case::blocked_names_sorted(
    vec![
        deny_all("zeta"),
        egress("alpha", json!([{"ports": [{"port": 988}]}])),
        policy("other-ns", "other", json!({"policyTypes": ["Egress"], "egress": [{}]})),
        deny_all("mid"),
        policy("ingress", NS, json!({"policyTypes": ["Ingress"]})),
    ],
    Verdict::Blocked(names(&["alpha", "mid", "zeta"]))
)]
#[case::other_namespace_allowing_ignored(
    vec![deny_all("deny"), policy("allow", "other", json!({"policyTypes": ["Egress"], "egress": [{}]}))],
    Verdict::Blocked(names(&["deny"]))
)]
fn policy_cases(#[case] policies: Vec<NetworkPolicy>, #[case] want: Verdict) {
    assert_eq!(egress_verdict(NS, &web_pod(), &policies, &MD), want);
}

#[test]
fn policy_without_namespace_is_ignored() {
    let mut p = deny_all("deny");
    p.metadata.namespace = None;
    assert_eq!(
        egress_verdict(NS, &web_pod(), &[p], &MD),
        Verdict::NotIsolated
    );
}

#[test]
fn policy_without_spec_is_ignored() {
    let mut p = deny_all("deny");
    p.spec = None;
    assert_eq!(
        egress_verdict(NS, &web_pod(), &[p], &MD),
        Verdict::NotIsolated
    );
}

#[rstest]
#[case::empty(json!({}), &[], true)]
#[case::empty_lists(json!({"matchLabels": {}, "matchExpressions": []}), &[("a", "1")], true)]
#[case::labels_match(json!({"matchLabels": {"app": "web"}}), &[("app", "web"), ("x", "y")], true)]
#[case::labels_other_value(json!({"matchLabels": {"app": "web"}}), &[("app", "db")], false)]
#[case::labels_missing_key(json!({"matchLabels": {"app": "web"}}), &[], false)]
#[case::labels_all_needed(
    json!({"matchLabels": {"app": "web", "tier": "front"}}),
    &[("app", "web")],
    false
)]
#[case::in_listed(json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "web"]}]}), &[("app", "web")], true)]
#[case::in_not_listed(json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]}), &[("app", "web")], false)]
#[case::in_absent(json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}), &[], false)]
#[case::not_in_listed(json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}), &[("app", "web")], false)]
#[case::not_in_other(json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}), &[("app", "web")], true)]
#[case::not_in_absent(json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}), &[], true)]
#[case::exists(json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}), &[("app", "")], true)]
#[case::exists_absent(json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}), &[], false)]
#[case::does_not_exist(json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}), &[], true)]
#[case::does_not_exist_present(json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}), &[("app", "web")], false)]
#[case::unknown_operator(json!({"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["web"]}]}), &[("app", "web")], false)]
#[case::operator_case_sensitive(json!({"matchExpressions": [{"key": "app", "operator": "exists"}]}), &[("app", "web")], false)]
#[case::labels_and_expressions(
    json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
    &[("app", "web")],
    false
)]
fn selectors(#[case] sel: Value, #[case] pod: &[(&str, &str)], #[case] want: bool) {
    assert_eq!(selector_matches(&selector(sel), &labels(pod)), want);
}

#[test]
fn allow_rule_yaml_is_one_rule_allowing_both() {
    let text = allow_rule_yaml();
    assert!(text.starts_with("  - to:\n"), "{text}");
    let value = yaml::value(&text, &FILE_LIMITS).expect("YAML");
    let rules: Vec<NetworkPolicyEgressRule> = serde_json::from_value(value).expect("rules");
    assert_eq!(rules.len(), 1);
    let p = egress("fixed", serde_json::to_value(&rules).expect("JSON"));
    for dest in &METADATA_DESTINATIONS {
        assert_eq!(
            egress_verdict(NS, &web_pod(), std::slice::from_ref(&p), dest),
            Verdict::Allowed(names(&["fixed"]))
        );
    }
}

#[test]
fn allow_rule_yaml_goes_under_spec_egress() {
    let manifest = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: fixed\n  \
         namespace: {NS}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n{}",
        allow_rule_yaml()
    );
    let value = yaml::value(&manifest, &FILE_LIMITS).expect("YAML");
    let p: NetworkPolicy = serde_json::from_value(value).expect("a NetworkPolicy");
    let others = [deny_all("deny"), p];
    for dest in &METADATA_DESTINATIONS {
        assert_eq!(
            egress_verdict(NS, &web_pod(), &others, dest),
            Verdict::Allowed(names(&["fixed"]))
        );
    }
    // Nothing else: another address or port stays blocked.
    let other = Destination {
        ip: "10.0.0.1".parse().expect("an address"),
        ..MD
    };
    let other_port = Destination { port: 443, ..MD };
    for dest in [other, other_port] {
        assert_eq!(
            egress_verdict(NS, &web_pod(), &others, &dest),
            Verdict::Blocked(names(&["deny", "fixed"]))
        );
    }
}

#[test]
fn invalid_cidrs_are_listed() {
    let p = egress(
        "p",
        json!([
            {"to": [{"ipBlock": {"cidr": "169.254.169.254", "except": ["169.254.169.254/32", "x/8"]}}]},
            {"to": [{"podSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}]},
            {"to": [{"ipBlock": {"cidr": "fd00::/129"}}]},
        ]),
    );
    assert_eq!(
        invalid_cidrs(&p),
        vec!["169.254.169.254", "x/8", "fd00::/129"]
    );
    assert!(invalid_cidrs(&deny_all("d")).is_empty());
}

#[rstest]
#[case::v4("10.1.2.3/8", Some(Cidr::V4(0x0a00_0000, 8)))]
#[case::v4_zero("1.2.3.4/0", Some(Cidr::V4(0, 0)))]
#[case::v4_host("169.254.169.254/32", Some(Cidr::V4(0xa9fe_a9fe, 32)))]
#[case::v6("fd00::1/8", Some(Cidr::V6(0xfd << 120, 8)))]
#[case::v6_zero("::/0", Some(Cidr::V6(0, 0)))]
#[case::octet_too_big("256.0.0.0/8", None)]
#[case::three_octets("10.0.0/8", None)]
#[case::five_octets("10.0.0.0.0/8", None)]
#[case::signed_prefix("10.0.0.0/+8", None)]
#[case::empty_prefix("10.0.0.0/", None)]
#[case::v6_prefix_too_long("::/129", None)]
#[case::spaces(" 10.0.0.0/8", None)]
fn cidr_parsing(#[case] text: &str, #[case] want: Option<Cidr>) {
    assert_eq!(Cidr::parse(text), want);
}

#[test]
fn metadata_destinations() {
    assert_eq!(MD.ip, IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)));
    assert_eq!((MD.port, MD.protocol), (80, "TCP"));
    assert_eq!(GKE.ip, IpAddr::V4(Ipv4Addr::new(169, 254, 169, 252)));
    assert_eq!((GKE.port, GKE.protocol), (988, "TCP"));
}
