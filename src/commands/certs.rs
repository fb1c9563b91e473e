//! `gke-wi-injector certs`: writes a CA and a serving certificate for the webhook Service.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use clap::Args;

use super::shared::parse_duration;
use crate::server::certs::{CA_FILE, CERT_FILE, Ca, KEY_FILE, service_names};

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook Service.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_CERTS_SERVICE",
        default_value = "gke-wi-injector"
    )]
    pub service: String,

    /// Namespace of the webhook Service.
    #[arg(
        long,
        env = "GKE_WI_INJECTOR_CERTS_NAMESPACE",
        default_value = "gke-wi-injector"
    )]
    pub namespace: String,

    /// Directory to write ca.crt, tls.crt and tls.key to.
    #[arg(long, env = "GKE_WI_INJECTOR_CERTS_OUT")]
    pub out: PathBuf,

    /// Validity of the serving certificate.
    #[arg(long, env = "GKE_WI_INJECTOR_CERTS_VALIDITY", default_value = "365d", value_parser = parse_duration)]
    pub validity: Duration,

    /// Overwrite existing keys.
    #[arg(long, env = "GKE_WI_INJECTOR_CERTS_FORCE")]
    pub force: bool,
}

/// The `certs` subcommand: writes `ca.crt`, `tls.crt`, `tls.key` (0600) to `--out` and prints
/// the base64 `caBundle` on stdout.
pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    let names = service_names(&args.service, &args.namespace)?;
    let targets = [CA_FILE, CERT_FILE, KEY_FILE].map(|f| args.out.join(f));
    // The key first: it is the file an operator would least like to lose.
    let check_order = [&targets[2], &targets[1], &targets[0]];
    if !args.force
        && let Some(existing) = check_order.iter().find(|p| p.exists())
    {
        anyhow::bail!(
            "{} already exists; pass --force to replace it",
            existing.display()
        );
    }
    let ca = Ca::new(
        &format!("{}.{} webhook CA", args.service, args.namespace),
        args.validity,
    )?;
    let leaf = ca.issue(&names, args.validity)?;
    fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", args.out.display()))?;
    write_all_atomically(&[
        (&targets[0], ca.pem().as_bytes(), 0o644),
        (&targets[1], leaf.cert_pem.as_bytes(), 0o644),
        (&targets[2], leaf.key_pem.as_bytes(), 0o600),
    ])?;
    eprintln!(
        "wrote {CA_FILE}, {CERT_FILE} and {KEY_FILE} to {} (serving certificate for {}); caBundle:",
        args.out.display(),
        names.join(", ")
    );
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(ca.pem())
    );
    Ok(())
}

/// Writes every file to a temporary sibling first and renames them into place only once all
/// are written, so an error never leaves a half-written file or a key without its certificate.
fn write_all_atomically(files: &[(&PathBuf, &[u8], u32)]) -> anyhow::Result<()> {
    let mut temps: Vec<(PathBuf, &Path)> = Vec::new();
    let result = (|| {
        for (path, contents, mode) in files {
            let tmp = temp_sibling(path);
            temps.push((tmp.clone(), path.as_path()));
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(*mode)
                .open(&tmp)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", tmp.display()))?;
            f.write_all(contents)
                .and_then(|()| f.sync_all())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
        }
        for (tmp, path) in &temps {
            fs::rename(tmp, path)
                .map_err(|e| anyhow::anyhow!("replacing {}: {e}", path.display()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for (tmp, _) in &temps {
            let _ = fs::remove_file(tmp);
        }
    }
    result
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
