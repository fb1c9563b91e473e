//! TLS of the admission endpoint (SPEC §6): rustls with the ring provider, TLS 1.2 and 1.3 only,
//! ALPN `h2` and `http/1.1`. The certificate is served by a resolver backed by an `ArcSwap`, so a
//! rotated pair takes effect on the next handshake without a restart, whatever SNI the client
//! sent (or none, as Go sends for IP URLs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::server::certs;
use crate::server::metrics::Metrics;
use crate::server::reload;

/// Label of this source in `reload_failures_total`.
pub const RELOAD_SOURCE: &str = "tls";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: no PEM CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: {problem}", path.display())]
    BadCertificate { path: PathBuf, problem: String },
    #[error("{}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {problem}", path.display())]
    BadKey { path: PathBuf, problem: String },
    #[error("{} does not match the certificate in {}: {problem}", key.display(), cert.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        problem: String,
    },
    #[error("generating the development certificate: {0}")]
    Generate(certs::CertsError),
    #[error("writing --dev-ca-out {}: {error}", path.display())]
    WriteCa {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// A certificate chain with its key, ready to serve, and when it expires.
#[derive(Debug, Clone)]
pub struct LoadedPair {
    pub key: Arc<CertifiedKey>,
    /// `notAfter` of the end-entity certificate, Unix seconds.
    pub not_after: i64,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM chain and key; `cert_path`/`key_path` only name them in errors.
pub fn parse_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<LoadedPair, TlsError> {
    let bad_cert = |problem: String| TlsError::BadCertificate {
        path: cert_path.to_path_buf(),
        problem,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(format!("unreadable PEM: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| bad_cert(format!("not an X.509 certificate: {e}")))?;
    let not_after = parsed.validity().not_after.timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_path_buf(),
        problem: e.to_string(),
    })?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            problem: e.to_string(),
        },
        other => TlsError::BadKey {
            path: key_path.to_path_buf(),
            problem: other.to_string(),
        },
    })?;
    Ok(LoadedPair {
        key: Arc::new(key),
        not_after,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Serves the current pair to every handshake.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(pair: &LoadedPair) -> Self {
        CertResolver {
            current: ArcSwap::new(pair.key.clone()),
        }
    }

    pub fn swap(&self, pair: &LoadedPair) {
        self.current.store(pair.key.clone());
    }

    /// DER of the end-entity certificate now served.
    pub fn current_cert(&self) -> CertificateDer<'static> {
        self.current
            .load()
            .cert
            .first()
            .cloned()
            .unwrap_or_else(|| CertificateDer::from(Vec::new()))
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// `--tls-cert`/`--tls-key`, re-read when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// A development certificate generated at start; its CA PEM goes to `ca_out` if given.
    Generated { ca_out: Option<PathBuf> },
}

/// The TLS side of the server: the resolver, plus the files and contents to watch.
#[derive(Debug)]
pub struct Tls {
    pub resolver: Arc<CertResolver>,
    /// PEM of the generated development CA (None with `--tls-cert`).
    pub dev_ca_pem: Option<String>,
    watched: Option<(Vec<PathBuf>, Vec<Vec<u8>>)>,
}

impl Tls {
    /// Loads and validates the certificate (before anything binds); records its expiry.
    pub fn load(source: &CertSource, metrics: &Metrics) -> Result<Tls, TlsError> {
        match source {
            CertSource::Files { cert, key } => {
                let (cert_pem, key_pem) = (read(cert)?, read(key)?);
                let pair = parse_pair(&cert_pem, &key_pem, cert, key)?;
                metrics.set_cert_not_after(pair.not_after);
                Ok(Tls {
                    resolver: Arc::new(CertResolver::new(&pair)),
                    dev_ca_pem: None,
                    watched: Some((vec![cert.clone(), key.clone()], vec![cert_pem, key_pem])),
                })
            }
            // The CA goes to `ca_out` through `write_dev_ca`, once the listeners are bound: a
            // server that fails to start leaves the CA of the one already running in place.
            CertSource::Generated { .. } => {
                let (ca, leaf) = certs::dev_certificate().map_err(TlsError::Generate)?;
                let here = Path::new("(generated)");
                let pair = parse_pair(
                    leaf.cert_pem.as_bytes(),
                    leaf.key_pem.as_bytes(),
                    here,
                    here,
                )?;
                metrics.set_cert_not_after(pair.not_after);
                Ok(Tls {
                    resolver: Arc::new(CertResolver::new(&pair)),
                    dev_ca_pem: Some(ca.pem().to_string()),
                    watched: None,
                })
            }
        }
    }

    /// Writes the development CA to `path` (a temporary file renamed into place, so a reader
    /// never sees half a certificate); nothing to do with `--tls-cert`.
    pub fn write_dev_ca(&self, path: &Path) -> Result<(), TlsError> {
        let Some(pem) = &self.dev_ca_pem else {
            return Ok(());
        };
        let err = |error| TlsError::WriteCa {
            path: path.to_path_buf(),
            error,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, pem).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(|error| {
            let _ = std::fs::remove_file(&tmp);
            err(error)
        })
    }

    /// The rustls configuration: TLS 1.3 and 1.2, no client certificates, ALPN h2 and http/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Re-reads `--tls-cert`/`--tls-key` every `interval` until `stop`; nothing to do for a
    /// generated certificate.
    pub fn spawn_reloader(
        &mut self,
        interval: Duration,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) {
        let Some((paths, initial)) = self.watched.take() else {
            return;
        };
        let resolver = self.resolver.clone();
        let (cert, key) = (paths[0].clone(), paths[1].clone());
        let m = metrics.clone();
        tokio::spawn(reload::poll(
            RELOAD_SOURCE,
            paths,
            initial,
            interval,
            metrics,
            stop,
            move |c, _stable| {
                let pair = parse_pair(&c[0], &c[1], &cert, &key).map_err(|e| e.to_string())?;
                resolver.swap(&pair);
                m.set_cert_not_after(pair.not_after);
                tracing::info!(cert = %cert.display(), not_after = pair.not_after, "serving the rotated certificate");
                Ok(())
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (certs::Leaf, certs::Leaf) {
        let ca = certs::Ca::new("t", Duration::from_secs(3600)).unwrap();
        let names = vec!["localhost".to_string()];
        (
            ca.issue(&names, Duration::from_secs(3600)).unwrap(),
            ca.issue(&names, Duration::from_secs(7200)).unwrap(),
        )
    }

    #[test]
    fn a_matching_pair_loads_with_its_expiry() {
        let (a, _) = pair();
        let p = Path::new("c.pem");
        let loaded = parse_pair(a.cert_pem.as_bytes(), a.key_pem.as_bytes(), p, p).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (loaded.not_after - now - 3600).abs() < 60,
            "{} vs {now}",
            loaded.not_after
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let (a, b) = pair();
        let err = parse_pair(
            a.cert_pem.as_bytes(),
            b.key_pem.as_bytes(),
            Path::new("tls.crt"),
            Path::new("tls.key"),
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        assert_eq!(
            err.to_string().split(':').next().unwrap(),
            "tls.key does not match the certificate in tls.crt"
        );
    }

    #[test]
    fn garbage_is_refused_naming_the_file() {
        let (a, _) = pair();
        let err = parse_pair(
            b"hello",
            a.key_pem.as_bytes(),
            Path::new("tls.crt"),
            Path::new("tls.key"),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "tls.crt: no PEM CERTIFICATE block");
        let err = parse_pair(
            a.cert_pem.as_bytes(),
            b"",
            Path::new("tls.crt"),
            Path::new("tls.key"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tls.key: no usable PEM private key"),
            "{err}"
        );
    }

    #[test]
    fn missing_files_are_named() {
        let source = CertSource::Files {
            cert: "/nonexistent/tls.crt".into(),
            key: "/nonexistent/tls.key".into(),
        };
        let err = Tls::load(&source, &Metrics::new()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/tls.crt"),
            "{err}"
        );
    }

    #[test]
    fn the_resolver_serves_the_swapped_pair() {
        let (a, b) = pair();
        let p = Path::new("x");
        let (a, b) = (
            parse_pair(a.cert_pem.as_bytes(), a.key_pem.as_bytes(), p, p).unwrap(),
            parse_pair(b.cert_pem.as_bytes(), b.key_pem.as_bytes(), p, p).unwrap(),
        );
        let resolver = CertResolver::new(&a);
        assert_eq!(resolver.current_cert(), a.key.cert[0]);
        resolver.swap(&b);
        assert_eq!(resolver.current_cert(), b.key.cert[0]);
    }
}
