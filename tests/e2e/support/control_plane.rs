//! A real etcd + kube-apiserver for integration tests, envtest-style.
//!
//! The binaries come from `tests/e2e/build-control-plane.sh` (built from Go modules, cached;
//! `KUBEBUILDER_ASSETS` can point at prebuilt ones). Everything else — certificates, keys,
//! kubeconfigs, etcd data and process logs — lives in a temporary directory owned by the
//! [`ControlPlane`], and both processes are killed when it is dropped.
//!
//! Set `GKE_WI_E2E_KEEP_DIR=1` to keep that directory (logs!) after the test.
//!
//! Include it from a test with
//! `#[path = "e2e/support/control_plane.rs"] mod control_plane;`.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SigningKey,
};

const HOST: &str = "127.0.0.1";
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(250);
const LOG_TAIL_LINES: usize = 30;

/// A running etcd + kube-apiserver pair. Dropping it kills both.
pub struct ControlPlane {
    // Declared first so it is dropped (and the processes killed) before `dir` is removed.
    apiserver: Option<Supervised>,
    etcd: Option<Supervised>,
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
    etcd_url: String,
    apiserver_port: u16,
    apiserver_args: Vec<String>,
    client_ca: Issuer<'static, KeyPair>,
    serving_ca_pem: String,
    admin_kubeconfig: PathBuf,
    kubeconfig_counter: AtomicUsize,
}

impl ControlPlane {
    /// Finds the binaries (runs `tests/e2e/build-control-plane.sh`, taking its last stdout
    /// line), starts etcd and kube-apiserver, and waits for `/readyz`.
    ///
    /// Ports are picked free and bound by etcd and kube-apiserver seconds later; in between,
    /// another test's process (the e2e tests run in parallel) or an outgoing connection can take
    /// one. A start that fails for that reason is retried with new ports.
    pub async fn start() -> Result<ControlPlane> {
        retry_taken_ports("control plane", ControlPlane::start_once).await
    }

    async fn start_once() -> Result<ControlPlane> {
        let bin_dir = binaries_dir().await?;
        let dir = tempfile::Builder::new()
            .prefix("gke-wi-e2e-cp-")
            .tempdir()
            .context("creating the control plane temp dir")?;
        let root = dir.path().to_path_buf();

        // --- PKI -------------------------------------------------------------------------
        let serving_ca = new_ca("gke-wi-e2e serving CA")?;
        let serving_ca_pem = serving_ca.cert_pem.clone();
        let mut serving = CertificateParams::new(vec!["localhost".to_string(), HOST.to_string()])?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        serving.use_authority_key_identifier_extension = true;
        let serving_key = KeyPair::generate()?;
        let serving_cert = serving.signed_by(&serving_key, &serving_ca.issuer)?;

        let client_ca = new_ca("gke-wi-e2e client CA")?;
        let sa_key = KeyPair::generate()?; // ECDSA P-256: ES256 service account tokens

        let pki = root.join("pki");
        fs::create_dir_all(&pki)?;
        write(&pki.join("serving-ca.crt"), &serving_ca_pem)?;
        let tls_cert = write(&pki.join("apiserver.crt"), &serving_cert.pem())?;
        let tls_key = write(&pki.join("apiserver.key"), &serving_key.serialize_pem())?;
        let client_ca_file = write(&pki.join("client-ca.crt"), &client_ca.cert_pem)?;
        let sa_priv = write(&pki.join("sa.key"), &sa_key.serialize_pem())?;
        let sa_pub = write(&pki.join("sa.pub"), &sa_key.public_key_pem())?;

        // --- etcd ------------------------------------------------------------------------
        let [client_port, peer_port, apiserver_port] = free_ports::<3>()?;
        let etcd_url = format!("http://{HOST}:{client_port}");
        let peer_url = format!("http://{HOST}:{peer_port}");
        let etcd_args = vec![
            "--name=default".to_string(),
            format!("--data-dir={}", root.join("etcd-data").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true".to_string(),
        ];
        let mut etcd = Supervised::spawn(
            "etcd",
            &bin_dir.join("etcd"),
            &etcd_args,
            &root.join("etcd.log"),
        )?;
        wait_etcd_healthy(&mut etcd, client_port).await?;

        // --- kube-apiserver --------------------------------------------------------------
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={HOST}"),
            format!("--secure-port={apiserver_port}"),
            format!("--tls-cert-file={}", tls_cert.display()),
            format!("--tls-private-key-file={}", tls_key.display()),
            format!("--client-ca-file={}", client_ca_file.display()),
            "--authorization-mode=RBAC".to_string(),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--allow-privileged=true".to_string(),
            "--disable-admission-plugins=ServiceAccount".to_string(),
            format!("--service-account-issuer=https://{HOST}:{apiserver_port}/"),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_priv.display()),
        ];

        let mut cp = ControlPlane {
            apiserver: None,
            etcd: Some(etcd),
            dir,
            bin_dir,
            etcd_url,
            apiserver_port,
            apiserver_args,
            client_ca: client_ca.issuer,
            serving_ca_pem,
            admin_kubeconfig: PathBuf::new(),
            kubeconfig_counter: AtomicUsize::new(0),
        };
        cp.admin_kubeconfig = cp.write_kubeconfig("admin", &["system:masters"], "admin")?;
        cp.start_apiserver().await?;
        Ok(cp)
    }

    /// Kubeconfig of a client-cert user `admin` in group `system:masters`.
    pub fn kubeconfig_admin(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Writes a kubeconfig for a client-cert user with the given name (CN) and groups (O).
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let n = self.kubeconfig_counter.fetch_add(1, Ordering::Relaxed);
        let safe: String = user
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.write_kubeconfig(user, groups, &format!("{safe}-{n}"))
    }

    /// `kubectl --kubeconfig <admin> <args...>`.
    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()));
        cmd.args(args);
        cmd
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        format!("https://{HOST}:{}", self.apiserver_port)
    }

    /// PEM of the CA that signed the apiserver's serving certificate.
    pub fn serving_ca_pem(&self) -> &str {
        &self.serving_ca_pem
    }

    /// Directory holding kube-apiserver, etcd and kubectl.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The temp dir holding certificates, kubeconfigs, etcd data and the process logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn apiserver_log(&self) -> PathBuf {
        self.dir.path().join("kube-apiserver.log")
    }

    pub fn etcd_log(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// Kills kube-apiserver and starts it again on the same port with the same certificates
    /// and etcd, then waits for `/readyz`.
    pub async fn restart_apiserver(&mut self) -> Result<()> {
        if let Some(mut old) = self.apiserver.take() {
            old.kill();
        }
        self.start_apiserver().await
    }

    async fn start_apiserver(&mut self) -> Result<()> {
        let log = self.apiserver_log();
        let mut proc = Supervised::spawn(
            "kube-apiserver",
            &self.bin_dir.join("kube-apiserver"),
            &self.apiserver_args,
            &log,
        )?;
        let kubectl = self.bin_dir.join("kubectl");
        let kubeconfig = self.admin_kubeconfig.clone();
        let deadline = Instant::now() + APISERVER_READY_TIMEOUT;
        loop {
            if let Some(status) = proc.child.try_wait()? {
                let err = anyhow!(
                    "kube-apiserver exited with {status} before becoming ready\n{}",
                    proc.log_tail()
                );
                proc.kill();
                return Err(err);
            }
            let (k, c) = (kubectl.clone(), kubeconfig.clone());
            let out = tokio::task::spawn_blocking(move || {
                Command::new(k)
                    .arg(format!("--kubeconfig={}", c.display()))
                    .args(["get", "--raw=/readyz", "--request-timeout=5s"])
                    .stdin(Stdio::null())
                    .output()
            })
            .await??;
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                self.apiserver = Some(proc);
                return Ok(());
            }
            let last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if Instant::now() >= deadline {
                let err = anyhow!(
                    "kube-apiserver not ready after {:?} (last /readyz: {})\n{}",
                    APISERVER_READY_TIMEOUT,
                    last.trim(),
                    proc.log_tail()
                );
                proc.kill();
                return Err(err);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn write_kubeconfig(&self, user: &str, groups: &[&str], file_stem: &str) -> Result<PathBuf> {
        let key = KeyPair::generate()?;
        let cert_pem = client_cert_pem(&self.client_ca, &key, user, groups)?;
        let cfg = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "e2e",
                "cluster": {
                    "server": self.server_url(),
                    "certificate-authority-data": base64(self.serving_ca_pem.as_bytes()),
                }
            }],
            "users": [{
                "name": user,
                "user": {
                    "client-certificate-data": base64(cert_pem.as_bytes()),
                    "client-key-data": base64(key.serialize_pem().as_bytes()),
                }
            }],
            "contexts": [{
                "name": "e2e",
                "context": { "cluster": "e2e", "user": user, "namespace": "default" }
            }],
            "current-context": "e2e",
        });
        let dir = self.dir.path().join("kubeconfigs");
        fs::create_dir_all(&dir)?;
        write(
            &dir.join(format!("{file_stem}.kubeconfig")),
            &serde_json::to_string_pretty(&cfg)?,
        )
    }
}

// Tests may hold a ControlPlane across `.await`s on a multi-threaded runtime.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ControlPlane>();
};

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(mut p) = self.apiserver.take() {
            p.kill();
        }
        if let Some(mut p) = self.etcd.take() {
            p.kill();
        }
        if std::env::var_os("GKE_WI_E2E_KEEP_DIR").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("control plane: keeping {}", self.dir.path().display());
        }
    }
}

/// A child process plus a watchdog that SIGKILLs it if this test process dies without
/// running `Drop` (abort, `process::exit`, SIGKILL): the watchdog reads a pipe whose write
/// end only we hold (close-on-exec), so it sees EOF exactly when we are gone.
struct Supervised {
    name: &'static str,
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
    log: PathBuf,
}

impl Supervised {
    fn spawn(name: &'static str, bin: &Path, args: &[String], log: &Path) -> Result<Supervised> {
        let mut logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        writeln!(logf, "===== starting {name} {}", args.join(" "))?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child.id().to_string();
        let watchdog = Command::new("sh")
            .args([
                "-c",
                "while read -r _; do :; done; kill -KILL \"$1\" 2>/dev/null",
                "gke-wi-e2e-watchdog",
                &pid,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
            .and_then(|mut w| w.stdin.take().map(|s| (w, s)));
        Ok(Supervised {
            name,
            child,
            watchdog,
            log: log.to_path_buf(),
        })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The child is reaped; stop the watchdog without letting it signal a reused pid.
        if let Some((mut w, stdin)) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
            drop(stdin);
        }
    }

    fn log_tail(&self) -> String {
        format!(
            "--- last {LOG_TAIL_LINES} lines of {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, LOG_TAIL_LINES)
        )
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

fn new_ca(cn: &str) -> Result<Ca> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Ca {
        issuer: Issuer::new(params, key),
        cert_pem: cert.pem(),
    })
}

/// A client certificate for `user` (CN) in `groups` (one O attribute each), signed by `ca`.
///
/// rcgen's `DistinguishedName` holds at most one value per attribute type, but Kubernetes
/// reads every O attribute as a group. So rcgen builds the certificate with a CN-only
/// subject, and the subject is then replaced by a DER Name carrying all the O attributes and
/// the TBSCertificate re-signed with the CA key.
fn client_cert_pem(
    ca: &Issuer<'static, KeyPair>,
    key: &KeyPair,
    user: &str,
    groups: &[&str],
) -> Result<String> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, user);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let der = params.signed_by(key, ca)?.der().to_vec();

    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let cert = der_children(der_content(&der, 0x30)?)?;
    let [tbs, sig_alg, _sig] = cert.as_slice() else {
        bail!("unexpected certificate structure from rcgen");
    };
    // TBSCertificate ::= SEQUENCE { [0] version, serial, signature, issuer, validity,
    //                               subject, subjectPublicKeyInfo, [3] extensions }
    let mut fields = der_children(der_content(tbs, 0x30)?)?;
    if fields.len() < 7 || fields[0].first() != Some(&0xa0) {
        bail!("unexpected TBSCertificate structure from rcgen");
    }
    // id-at-commonName 2.5.4.3, id-at-organizationName 2.5.4.10
    let mut rdns = vec![der_rdn(&[0x55, 0x04, 0x03], user)];
    rdns.extend(groups.iter().map(|g| der_rdn(&[0x55, 0x04, 0x0a], g)));
    let subject = der_tlv(0x30, &rdns.concat());
    fields[5] = &subject;
    let new_tbs = der_tlv(0x30, &fields.concat());
    let signature = ca.key().sign(&new_tbs)?;
    let mut bits = vec![0u8]; // no unused bits
    bits.extend_from_slice(&signature);
    let new_cert = der_tlv(
        0x30,
        &[new_tbs, sig_alg.to_vec(), der_tlv(0x03, &bits)].concat(),
    );

    let b64 = base64(&new_cert);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line)?);
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    Ok(pem)
}

/// RelativeDistinguishedName ::= SET { SEQUENCE { OID, UTF8String } }
fn der_rdn(oid: &[u8], value: &str) -> Vec<u8> {
    let atv = [der_tlv(0x06, oid), der_tlv(0x0c, value.as_bytes())].concat();
    der_tlv(0x31, &der_tlv(0x30, &atv))
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Splits one DER TLV off the front of `buf`: (whole TLV, content, rest).
fn der_split(buf: &[u8]) -> Result<(&[u8], &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first().ok_or_else(|| anyhow!("DER: empty"))?;
    if tag & 0x1f == 0x1f {
        bail!("DER: multi-byte tags are not supported");
    }
    let (&l0, rest) = rest
        .split_first()
        .ok_or_else(|| anyhow!("DER: no length"))?;
    let (len, header) = if l0 < 0x80 {
        (usize::from(l0), 2)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            bail!("DER: bad length");
        }
        (
            rest[..n]
                .iter()
                .fold(0usize, |a, b| (a << 8) | usize::from(*b)),
            2 + n,
        )
    };
    let end = header + len;
    if buf.len() < end {
        bail!("DER: truncated");
    }
    Ok((&buf[..end], &buf[header..end], &buf[end..]))
}

fn der_content(buf: &[u8], tag: u8) -> Result<&[u8]> {
    let (_, content, rest) = der_split(buf)?;
    if buf[0] != tag || !rest.is_empty() {
        bail!("DER: expected a single element with tag {tag:#x}");
    }
    Ok(content)
}

fn der_children(mut content: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, _, rest) = der_split(content)?;
        out.push(tlv);
        content = rest;
    }
    Ok(out)
}

async fn wait_etcd_healthy(etcd: &mut Supervised, port: u16) -> Result<()> {
    let deadline = Instant::now() + ETCD_READY_TIMEOUT;
    loop {
        if let Some(status) = etcd.child.try_wait()? {
            bail!(
                "etcd exited with {status} before becoming healthy\n{}",
                etcd.log_tail()
            );
        }
        let probe = tokio::time::timeout(Duration::from_secs(2), http_get(port, "/health")).await;
        if let Ok(Ok(body)) = probe
            && body.contains("\"health\":\"true\"")
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "etcd not healthy after {ETCD_READY_TIMEOUT:?}\n{}",
                etcd.log_tail()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Minimal plain-HTTP GET against 127.0.0.1:port (etcd's client port); returns the raw response.
async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {HOST}:{port}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Runs the build script once per test process and caches the directory it reports.
async fn binaries_dir() -> Result<PathBuf> {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    tokio::task::spawn_blocking(|| {
        let mut guard = DIR.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = guard.as_ref() {
            return Ok(d.clone());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/build-control-plane.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!("{} failed with {}", script.display(), out.status);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = PathBuf::from(
            stdout
                .lines()
                .last()
                .ok_or_else(|| anyhow!("{} printed nothing", script.display()))?
                .trim(),
        );
        for b in ["kube-apiserver", "etcd", "kubectl"] {
            if !dir.join(b).is_file() {
                bail!("{} has no {b} (from {})", dir.display(), script.display());
            }
        }
        *guard = Some(dir.clone());
        Ok(dir)
    })
    .await?
}

/// Runs `start` up to three times while it fails because a port it picked was taken.
async fn retry_taken_ports<T, F, Fut>(what: &str, mut start: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match start().await {
            Err(e)
                if attempt < 3
                    && format!("{e:#}")
                        .to_lowercase()
                        .contains("address already in use") =>
            {
                eprintln!("{what}: a port was taken before it was bound; retrying with new ports");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// N distinct free loopback ports (all listeners are held until every port is picked).
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}

fn write(path: &Path, contents: &str) -> Result<PathBuf> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_path_buf())
}

fn tail(path: &Path, n: usize) -> String {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("<cannot open: {e}>"),
    };
    // Logs can be large; the last 64 KiB hold far more than n lines.
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut s = String::new();
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_ok() {
        s = String::from_utf8_lossy(&buf).into_owned();
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}
