//! NetworkPolicy egress evaluation for the `network-policy-egress` check: whether the
//! NetworkPolicies that select a Pod let it reach the GKE metadata server
//! ([`METADATA_DESTINATIONS`]). Pure: it reads only the objects it is given.
//!
//! The semantics are those of the Kubernetes NetworkPolicy documentation and the networking/v1
//! API reference:
//!
//! - a policy selects a Pod when it is in the Pod's namespace and its `podSelector` matches the
//!   Pod's labels (an absent or empty selector matches every Pod of the namespace);
//! - a policy affects egress when `policyTypes` lists `Egress`; when `policyTypes` is absent or
//!   empty it is defaulted as kube-apiserver does, `Egress` only when `egress` has at least one
//!   rule (so `egress: []` alone does not make a policy affect egress);
//! - a Pod that no egress policy selects is not isolated: all egress is allowed. An isolated Pod
//!   may reach a destination only when some rule of some selecting egress policy allows it (the
//!   rules of all those policies add up; an egress policy without rules allows nothing);
//! - a rule allows a destination when it matches one of `to` (absent or empty: any destination)
//!   and one of `ports` (absent or empty: any port and protocol);
//! - an `ipBlock` peer matches an address inside `cidr` and outside every `except` (an IPv4
//!   address is never inside an IPv6 block, nor the other way round; a CIDR that cannot be read
//!   contains nothing, see [`invalid_cidrs`]). `podSelector` and `namespaceSelector` peers select
//!   Pods, and the metadata server is not a Pod (it is node-local): they match no address;
//! - a port entry matches its `protocol` (default `TCP`) and its `port`: absent, any port; a
//!   number, that port, or with `endPort` the inclusive range `port..=endPort`; a name, only a
//!   destination Pod's named container port, so never an address.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// One place a Pod sends traffic to: an address, a port and a protocol (`"TCP"`, `"UDP"` or
/// `"SCTP"`, spelt as in NetworkPolicy `protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: &'static str,
}

/// What a Workload Identity Pod must reach on GKE: the metadata server at
/// `169.254.169.254` TCP 80 and the GKE metadata server at `169.254.169.252` TCP 988.
pub const METADATA_DESTINATIONS: [Destination; 2] = [
    Destination {
        ip: IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
        port: 80,
        protocol: "TCP",
    },
    Destination {
        ip: IpAddr::V4(Ipv4Addr::new(169, 254, 169, 252)),
        port: 988,
        protocol: "TCP",
    },
];

/// Whether the NetworkPolicies that select a Pod let it reach one [`Destination`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No policy selecting the Pod has Egress in its policyTypes.
    NotIsolated,
    /// Allowed by these policies (names, sorted).
    Allowed(Vec<String>),
    /// Isolated for egress by these policies (names, sorted), and none allows the destination.
    Blocked(Vec<String>),
}

/// Evaluates the egress of a Pod in `namespace` with `pod_labels` to `dest` under `policies`.
/// Policies of other namespaces (or with no namespace) in the slice are ignored.
pub fn egress_verdict(
    namespace: &str,
    pod_labels: &BTreeMap<String, String>,
    policies: &[NetworkPolicy],
    dest: &Destination,
) -> Verdict {
    let isolating: Vec<&NetworkPolicy> = policies
        .iter()
        .filter(|p| selects(p, namespace, pod_labels) && affects_egress(p))
        .collect();
    if isolating.is_empty() {
        return Verdict::NotIsolated;
    }
    let allowing: Vec<&NetworkPolicy> = isolating
        .iter()
        .copied()
        .filter(|p| egress_rules(p).iter().any(|r| rule_allows(r, dest)))
        .collect();
    if allowing.is_empty() {
        Verdict::Blocked(names(&isolating))
    } else {
        Verdict::Allowed(names(&allowing))
    }
}

/// Whether `selector` matches a set of labels: every `matchLabels` pair is present and every
/// `matchExpressions` requirement holds (`In`, `NotIn`, `Exists`, `DoesNotExist`; `NotIn` and
/// `DoesNotExist` hold when the key is absent). An empty selector matches everything; a
/// requirement with any other operator is invalid, and the selector then matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_match
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|r| requirement_matches(r, labels))
}

/// The CIDRs in the egress `ipBlock`s of `policy` that cannot be read as an address and a
/// prefix length (`cidr` and `except` alike), in order. The evaluator treats such a block as
/// containing nothing: an unreadable `cidr` matches no address and an unreadable `except`
/// excludes none. The API server rejects them, so they are worth a finding of their own.
pub fn invalid_cidrs(policy: &NetworkPolicy) -> Vec<&str> {
    egress_rules(policy)
        .iter()
        .flat_map(|r| r.to.iter().flatten())
        .filter_map(|peer| peer.ip_block.as_ref())
        .flat_map(|b| std::iter::once(&b.cidr).chain(b.except.iter().flatten()))
        .filter(|c| Cidr::parse(c).is_none())
        .map(String::as_str)
        .collect()
}

/// The egress rule to add to a policy so that it allows both [`METADATA_DESTINATIONS`], as YAML
/// text: one `- to: [ipBlock...] ports: [...]` list item, every line indented by two spaces to
/// go under `spec.egress:` (as `kubectl get -o yaml` writes it), ending with a newline.
///
/// The rule allows the ports of both destinations on both addresses; both are the node-local
/// metadata server, so the extra two combinations open nothing else.
pub fn allow_rule_yaml() -> String {
    let mut out = String::from("  - to:\n");
    for d in &METADATA_DESTINATIONS {
        let prefix = if d.ip.is_ipv4() { 32 } else { 128 };
        out.push_str(&format!(
            "    - ipBlock:\n        cidr: {}/{prefix}\n",
            d.ip
        ));
    }
    out.push_str("    ports:\n");
    for d in &METADATA_DESTINATIONS {
        out.push_str(&format!(
            "    - protocol: {}\n      port: {}\n",
            d.protocol, d.port
        ));
    }
    out
}

/// Whether `policy` is in `namespace` and its `podSelector` matches the Pod.
fn selects(policy: &NetworkPolicy, namespace: &str, pod_labels: &BTreeMap<String, String>) -> bool {
    policy.metadata.namespace.as_deref() == Some(namespace)
        && policy
            .spec
            .as_ref()
            .and_then(|s| s.pod_selector.as_ref())
            .is_none_or(|sel| selector_matches(sel, pod_labels))
}

/// Whether `policy` has Egress among its policyTypes, defaulted as kube-apiserver does
/// (pkg/apis/networking/v1/defaults.go): when `policyTypes` is absent or empty, Egress only if
/// there is at least one egress rule.
fn affects_egress(policy: &NetworkPolicy) -> bool {
    let Some(spec) = policy.spec.as_ref() else {
        return false;
    };
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => types.iter().any(|t| t == "Egress"),
        _ => spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
    }
}

fn egress_rules(policy: &NetworkPolicy) -> &[NetworkPolicyEgressRule] {
    policy
        .spec
        .as_ref()
        .and_then(|s| s.egress.as_deref())
        .unwrap_or_default()
}

fn names(policies: &[&NetworkPolicy]) -> Vec<String> {
    let mut names: Vec<String> = policies
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn rule_allows(rule: &NetworkPolicyEgressRule, dest: &Destination) -> bool {
    let to_ok = match rule.to.as_deref() {
        None | Some([]) => true,
        Some(peers) => peers.iter().any(|p| peer_matches(p, dest.ip)),
    };
    let ports_ok = match rule.ports.as_deref() {
        None | Some([]) => true,
        Some(ports) => ports.iter().any(|p| port_matches(p, dest)),
    };
    to_ok && ports_ok
}

/// Only `ipBlock` peers can match an address; the API forbids combining `ipBlock` with the
/// selectors, and where it is present anyway, it alone decides.
fn peer_matches(peer: &NetworkPolicyPeer, ip: IpAddr) -> bool {
    peer.ip_block
        .as_ref()
        .is_some_and(|b| ip_block_contains(b, ip))
}

fn ip_block_contains(block: &IPBlock, ip: IpAddr) -> bool {
    Cidr::parse(&block.cidr).is_some_and(|c| c.contains(ip))
        && !block
            .except
            .iter()
            .flatten()
            .filter_map(|e| Cidr::parse(e))
            .any(|c| c.contains(ip))
}

fn port_matches(port: &NetworkPolicyPort, dest: &Destination) -> bool {
    if port.protocol.as_deref().unwrap_or("TCP") != dest.protocol {
        return false;
    }
    let wanted = i32::from(dest.port);
    match &port.port {
        None => true,
        Some(IntOrString::Int(p)) => match port.end_port {
            None => wanted == *p,
            Some(end) => (*p..=end).contains(&wanted),
        },
        // A named port resolves against the destination Pod's container ports only.
        Some(IntOrString::String(_)) => false,
    }
}

fn requirement_matches(req: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let in_values = |v: &String| req.values.iter().flatten().any(|x| x == v);
    match req.operator.as_str() {
        "In" => value.is_some_and(in_values),
        "NotIn" => !value.is_some_and(in_values),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// A CIDR block: the network address (host bits cleared) and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cidr {
    V4(u32, u32),
    V6(u128, u32),
}

impl Cidr {
    /// Reads `address/prefix`. Like Kubernetes' own (legacy-tolerant) parsing, host bits may be
    /// set (they are cleared) and IPv4 octets may have leading zeros (read as decimal). A bare
    /// address, without a prefix, is not a CIDR.
    fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let prefix = decimal(prefix)?;
        if addr.contains(':') {
            let ip: Ipv6Addr = addr.parse().ok()?;
            (prefix <= 128).then(|| Cidr::V6(u128::from(ip) & mask128(prefix), prefix))
        } else {
            let ip = ipv4_sloppy(addr)?;
            (prefix <= 32).then(|| Cidr::V4(ip & mask32(prefix), prefix))
        }
    }

    fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4(net, prefix), IpAddr::V4(ip)) => u32::from(ip) & mask32(prefix) == net,
            (Cidr::V6(net, prefix), IpAddr::V6(ip)) => u128::from(ip) & mask128(prefix) == net,
            _ => false,
        }
    }
}

fn mask32(prefix: u32) -> u32 {
    u32::MAX.checked_shl(32 - prefix).unwrap_or(0)
}

fn mask128(prefix: u32) -> u128 {
    u128::MAX.checked_shl(128 - prefix).unwrap_or(0)
}

/// A non-empty run of ASCII digits, at most 255 by value (enough for prefixes and octets).
fn decimal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.bytes().try_fold(0u32, |n, b| {
        let n = n * 10 + u32::from(b - b'0');
        (n <= 255).then_some(n)
    })
}

/// Four dot-separated decimal octets, leading zeros allowed.
fn ipv4_sloppy(text: &str) -> Option<u32> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        *octet = u8::try_from(decimal(parts.next()?)?).ok()?;
    }
    parts
        .next()
        .is_none()
        .then(|| u32::from(Ipv4Addr::from(octets)))
}

#[cfg(test)]
#[path = "netpol_tests.rs"]
mod tests;
