//! Certificates made with rcgen: a CA and serving certificates for the webhook Service (written
//! by the `certs` command) and the development certificate `serve` generates when it is given none.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

/// Names of the files `certs` writes, as a cert-manager / `kubernetes.io/tls` Secret names them.
pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// Names of the development certificate: every way a local client reaches the server.
pub const DEV_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Validity of the development certificate.
pub const DEV_VALIDITY: Duration = Duration::from_secs(365 * 86_400);

/// Certificates start being valid a little before now, for clocks that lag ours.
const BACKDATE: time::Duration = time::Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(
        "--{flag} {value:?} is not a DNS label (lowercase letters, digits and '-', at most 63)"
    )]
    BadName { flag: &'static str, value: String },
    #[error("--validity must be at least one second")]
    BadValidity,
    #[error("generating the certificate: {0}")]
    Generate(rcgen::Error),
}

impl From<rcgen::Error> for CertsError {
    fn from(e: rcgen::Error) -> Self {
        CertsError::Generate(e)
    }
}

/// A certificate authority held in memory.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A serving certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn validity_window(validity: Duration) -> Result<(OffsetDateTime, OffsetDateTime), CertsError> {
    let validity = time::Duration::try_from(validity).map_err(|_| CertsError::BadValidity)?;
    if validity < time::Duration::SECOND {
        return Err(CertsError::BadValidity);
    }
    let now = OffsetDateTime::now_utc();
    Ok((now - BACKDATE, now.saturating_add(validity)))
}

impl Ca {
    /// A new self-signed CA (ECDSA P-256) named `common_name`.
    pub fn new(common_name: &str, validity: Duration) -> Result<Ca, CertsError> {
        let (not_before, not_after) = validity_window(validity)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM: what clients (and `caBundle`) trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A serving certificate for `names` (DNS names or IP addresses), with a fresh key.
    pub fn issue(&self, names: &[String], validity: Duration) -> Result<Leaf, CertsError> {
        let (not_before, not_after) = validity_window(validity)?;
        let mut params = CertificateParams::new(names.to_vec())?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The development certificate of `serve` without `--tls-cert`: a CA and a leaf for
/// `localhost`, `127.0.0.1` and `::1`.
pub fn dev_certificate() -> Result<(Ca, Leaf), CertsError> {
    let ca = Ca::new("gke-wi-injector development CA", DEV_VALIDITY)?;
    let names: Vec<String> = DEV_NAMES.iter().map(|s| s.to_string()).collect();
    let leaf = ca.issue(&names, DEV_VALIDITY)?;
    Ok((ca, leaf))
}

fn check_dns_label(flag: &'static str, value: &str) -> Result<(), CertsError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(CertsError::BadName {
            flag,
            value: value.to_string(),
        })
    }
}

/// Every name the API server or a client in the cluster may use for the Service:
/// `S`, `S.N`, `S.N.svc`, `S.N.svc.cluster.local`.
pub fn service_names(service: &str, namespace: &str) -> Result<Vec<String>, CertsError> {
    check_dns_label("service", service)?;
    check_dns_label("namespace", namespace)?;
    Ok(vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_string(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::upper("Webhook")]
    #[case::dot("a.b")]
    #[case::empty("")]
    #[case::leading_dash("-a")]
    #[case::too_long(&"a".repeat(64))]
    fn bad_service_names_are_refused_naming_the_flag(#[case] service: &str) {
        let err = service_names(service, "ns").unwrap_err().to_string();
        assert!(err.starts_with("--service "), "{err}");
    }

    #[test]
    fn service_names_cover_the_api_server_name_first() {
        assert_eq!(
            service_names("hook", "sys").unwrap(),
            [
                "hook.sys.svc",
                "hook.sys.svc.cluster.local",
                "hook.sys",
                "hook"
            ]
        );
    }

    #[test]
    fn zero_validity_is_refused() {
        assert!(matches!(
            Ca::new("x", Duration::ZERO),
            Err(CertsError::BadValidity)
        ));
    }

    #[test]
    fn issued_leaves_differ_and_are_pem() {
        let ca = Ca::new("test CA", Duration::from_secs(3600)).unwrap();
        let a = ca
            .issue(&["a.example".into()], Duration::from_secs(3600))
            .unwrap();
        let b = ca
            .issue(&["a.example".into()], Duration::from_secs(3600))
            .unwrap();
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(a.cert_pem, b.cert_pem);
        assert!(!format!("{a:?}").contains("PRIVATE KEY"));
    }
}
