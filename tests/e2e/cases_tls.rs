//! Case 13: `--tls-cert`/`--tls-key` files rotated under a live API server (SPEC §6): the new
//! certificate is served without a restart and no admission call fails meanwhile.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use gke_wi_injector::server::certs::{Ca, Leaf};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::json;

use crate::harness::{Injector, served_certificate};
use crate::{
    Env, INJECTOR_USER, P, create_pod, injected, namespace, register_webhook, wait_webhook_active,
};

const VALIDITY: Duration = Duration::from_secs(3600);

/// Writes both files through renames, so the injector never reads a half-written file.
fn write_pair(dir: &Path, leaf: &Leaf) -> Result<()> {
    for (name, pem) in [("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, pem)?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

fn der(leaf: &Leaf) -> Result<Vec<u8>> {
    Ok(CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())?.to_vec())
}

pub fn certificate_rotation(env: &Env) -> Result<()> {
    let cp = &env.cp;
    let ca = Ca::new("e2e rotation CA", VALIDITY)?;
    let dir = cp.dir().join("rotation");
    std::fs::create_dir_all(&dir)?;
    let ip = vec!["127.0.0.1".to_string()];
    let first = ca.issue(&ip, VALIDITY)?;
    write_pair(&dir, &first)?;

    let kubeconfig = cp.kubeconfig_for(INJECTOR_USER, &[])?;
    let files = Injector::start_with(
        cp.dir(),
        &kubeconfig,
        "injector-files",
        Some((&dir.join("tls.crt"), &dir.join("tls.key"), ca.pem())),
    )?;
    ensure!(
        served_certificate(files.port, ca.pem())? == der(&first)?,
        "the first certificate is not the one served"
    );
    register_webhook(cp, &files)?;
    let result = rotate_while_creating(env, &files, &ca, &dir);
    // Back to the main injector for the cases that follow, whatever happened.
    register_webhook(cp, &env.inj)?;
    wait_webhook_active(cp, &env.inj)?;
    result
}

fn rotate_while_creating(env: &Env, files: &Injector, ca: &Ca, dir: &Path) -> Result<()> {
    let cp = &env.cp;
    wait_webhook_active(cp, files)?;
    namespace(cp, "e2e-c13", &[(&format!("{P}/inject"), "enabled")])?;
    let before = files.requests_total()?;
    let second = ca.issue(&["127.0.0.1".to_string()], VALIDITY)?;
    // Pods are created back to back for 2 s while the files change 0.5 s in: every one is
    // mutated (an admission call that failed, e.g. on a handshake, would leave it unmutated
    // under failurePolicy Ignore).
    let creating = Duration::from_secs(2);
    let (pods, swapped) = std::thread::scope(|s| -> Result<(u32, Duration)> {
        let creator = s.spawn(|| -> Result<u32> {
            let t = Instant::now();
            let mut n = 0;
            while t.elapsed() < creating {
                n += 1;
                let p = json!({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": format!("c13-{n}")},
                               "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
                let stored = create_pod(cp, "e2e-c13", &p)?;
                ensure!(
                    injected(&stored).is_some(),
                    "Pod {n} not mutated during the rotation"
                );
            }
            Ok(n)
        });
        std::thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        write_pair(dir, &second)?;
        let swapped = loop {
            if served_certificate(files.port, ca.pem())? == der(&second)? {
                break t0.elapsed();
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("the new certificate is not served 10 s after the files changed");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let pods = creator
            .join()
            .map_err(|_| anyhow::anyhow!("creator panicked"))??;
        Ok((pods, swapped))
    })?;
    eprintln!(
        "e2e:   new certificate served {swapped:?} after the files changed; {pods} Pods created \
         around it, all mutated"
    );
    let calls = files.requests_total()? - before;
    ensure!(
        calls == f64::from(pods),
        "the file-certificate injector answered {calls} reviews for {pods} Pods"
    );
    ensure!(
        files.sample("gke_wi_injector_reload_failures_total{source=\"tls\"}")? == 0.0,
        "a reload of the renamed pair failed"
    );
    Ok(())
}
