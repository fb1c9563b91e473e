//! The GKE metadata server's address as `GCE_METADATA_HOST` holds it, shared by the mutation
//! (which writes it into Pods) and the wait program (which connects to it). Parsing only: no I/O.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// What the wait program (and the curl command of `--wait-mode=curl`) prints when it gives up,
/// word for word from GKE's troubleshooting guide.
pub const WAIT_FAILURE_MESSAGE: &str = "Retry limit exceeded. Failed to wait for metadata server to be available. Check if the gke-metadata-server Pod in the kube-system namespace is healthy.";

/// The token endpoint; the wait container succeeds once it answers 2xx.
pub const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// The GKE metadata server's link-local address.
pub const DEFAULT_METADATA_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);

/// Address of the metadata server as `GCE_METADATA_HOST` holds it: `host`, `host:port`,
/// `[v6]`, `[v6]:port` or a bare IPv6 address. No scheme, no path; the port defaults to 80.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataAddr {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The host part of a [`MetadataAddr`].
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("metadata host is empty")]
    Empty,
    #[error("metadata host {0:?} must be host or host:port, without scheme or path")]
    SchemeOrPath(String),
    #[error("metadata host {0:?} has an invalid IPv6 address in brackets")]
    BadIpv6(String),
    #[error("metadata host {0:?} has an invalid port (1-65535)")]
    BadPort(String),
    #[error("metadata host {0:?} is not a valid host name or IP address")]
    BadHost(String),
}

impl MetadataAddr {
    pub fn new_ip(ip: IpAddr, port: u16) -> Self {
        MetadataAddr {
            host: Host::Ip(ip),
            port,
        }
    }

    /// The host: an IP address or a lower-cased DNS name.
    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` header value: the host, bracketed if IPv6, with the port unless it is 80.
    pub fn authority(&self) -> String {
        let host = match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The token URL, for logs.
    pub fn url(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.authority())
    }
}

impl FromStr for MetadataAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AddrError::Empty);
        }
        if s.contains('/') || s.contains('?') || s.contains('#') || s.contains('@') {
            return Err(AddrError::SchemeOrPath(s.into()));
        }
        let port = |p: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 && !p.starts_with('+') => Ok(n),
            _ => Err(AddrError::BadPort(s.into())),
        };
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, after) = rest
                .split_once(']')
                .ok_or_else(|| AddrError::BadIpv6(s.into()))?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| AddrError::BadIpv6(s.into()))?;
            let port = match after {
                "" => 80,
                _ => port(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| AddrError::BadPort(s.into()))?,
                )?,
            };
            return Ok(MetadataAddr::new_ip(IpAddr::V6(ip), port));
        }
        // A bare IP literal, including an unbracketed IPv6 address (which cannot carry a port).
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(MetadataAddr::new_ip(ip, 80));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((host, p)) => (host, port(p)?),
            None => (s, 80),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            if ip.is_ipv6() {
                // `fe80::1:8080` is ambiguous; brackets are required to give an IPv6 port.
                return Err(AddrError::BadIpv6(s.into()));
            }
            return Ok(MetadataAddr::new_ip(ip, port));
        }
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_name {
            return Err(AddrError::BadHost(s.into()));
        }
        Ok(MetadataAddr {
            host: Host::Name(host.to_ascii_lowercase()),
            port,
        })
    }
}

/// The metadata server's address; empty means the default, as in Google's client libraries
/// (which ignore an empty `GCE_METADATA_HOST`).
pub fn parse_metadata_host(s: &str) -> Result<MetadataAddr, AddrError> {
    if s.trim().is_empty() {
        return Ok(MetadataAddr::new_ip(IpAddr::V4(DEFAULT_METADATA_IP), 80));
    }
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::default_ip("169.254.169.254", "169.254.169.254", 80)]
    #[case::ip_port("127.0.0.1:8080", "127.0.0.1:8080", 8080)]
    #[case::explicit_80("169.254.169.254:80", "169.254.169.254", 80)]
    #[case::name("metadata.google.internal", "metadata.google.internal", 80)]
    #[case::name_port("Metadata.Google.Internal:8080", "metadata.google.internal:8080", 8080)]
    #[case::localhost("localhost:1", "localhost:1", 1)]
    #[case::bare_v6("fd00:ec2::254", "[fd00:ec2::254]", 80)]
    #[case::bracketed_v6("[::1]", "[::1]", 80)]
    #[case::bracketed_v6_port("[::1]:8080", "[::1]:8080", 8080)]
    #[case::spaces("  127.0.0.1:9  ", "127.0.0.1:9", 9)]
    fn addresses_parse(#[case] input: &str, #[case] authority: &str, #[case] port: u16) {
        let addr: MetadataAddr = input.parse().unwrap();
        assert_eq!(addr.authority(), authority);
        assert_eq!(addr.port(), port);
    }

    #[rstest]
    #[case::empty("", AddrError::Empty)]
    #[case::blank("  ", AddrError::Empty)]
    #[case::scheme("http://169.254.169.254", AddrError::SchemeOrPath("http://169.254.169.254".into()))]
    #[case::path("169.254.169.254/computeMetadata", AddrError::SchemeOrPath("169.254.169.254/computeMetadata".into()))]
    #[case::port_zero("127.0.0.1:0", AddrError::BadPort("127.0.0.1:0".into()))]
    #[case::port_too_big("127.0.0.1:65536", AddrError::BadPort("127.0.0.1:65536".into()))]
    #[case::port_empty("127.0.0.1:", AddrError::BadPort("127.0.0.1:".into()))]
    #[case::port_sign("127.0.0.1:+80", AddrError::BadPort("127.0.0.1:+80".into()))]
    #[case::v6_unclosed("[::1:80", AddrError::BadIpv6("[::1:80".into()))]
    #[case::v6_not_ip("[nope]:80", AddrError::BadIpv6("[nope]:80".into()))]
    #[case::v6_junk_after("[::1]x", AddrError::BadPort("[::1]x".into()))]
    #[case::underscore("meta_data", AddrError::BadHost("meta_data".into()))]
    #[case::empty_label("a..b", AddrError::BadHost("a..b".into()))]
    #[case::empty_host(":80", AddrError::BadHost(":80".into()))]
    fn addresses_reject(#[case] input: &str, #[case] want: AddrError) {
        assert_eq!(input.parse::<MetadataAddr>().unwrap_err(), want);
    }

    #[rstest]
    #[case::empty("")]
    #[case::blank(" ")]
    fn an_empty_metadata_host_means_the_default(#[case] input: &str) {
        assert_eq!(
            parse_metadata_host(input).unwrap().authority(),
            "169.254.169.254"
        );
    }

    #[test]
    fn address_errors_quote_the_input() {
        let err = "http://x".parse::<MetadataAddr>().unwrap_err().to_string();
        assert_eq!(
            err,
            r#"metadata host "http://x" must be host or host:port, without scheme or path"#
        );
    }
}
