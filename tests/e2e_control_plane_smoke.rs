//! Smoke test of the e2e control plane harness: a real etcd + kube-apiserver (built from Go
//! modules by tests/e2e/build-control-plane.sh) start, serve kubectl, survive an apiserver
//! restart, and authenticate client-certificate users with their groups.

#[path = "e2e/support/control_plane.rs"]
mod control_plane;

use std::process::Command;

use anyhow::{Context, Result, ensure};
use control_plane::ControlPlane;

fn run(mut cmd: Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn namespace_names(cp: &ControlPlane) -> Result<Vec<String>> {
    let out = run(cp.kubectl(&["get", "ns", "-o", "json"]))?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn control_plane_starts_serves_kubectl_and_survives_apiserver_restart() -> Result<()> {
    let mut cp = ControlPlane::start().await?;
    eprintln!(
        "control plane at {} (dir {})",
        cp.server_url(),
        cp.dir().display()
    );
    assert!(cp.server_url().starts_with("https://127.0.0.1:"));

    // The server reports the pinned version.
    let version: serde_json::Value =
        serde_json::from_str(&run(cp.kubectl(&["version", "-o", "json"]))?)?;
    assert_eq!(
        version["serverVersion"]["gitVersion"], "v1.36.3",
        "{version}"
    );
    assert_eq!(
        version["clientVersion"]["gitVersion"], "v1.36.3",
        "{version}"
    );

    // Create a namespace and see it listed.
    let before = namespace_names(&cp)?;
    assert!(!before.iter().any(|n| n == "e2e-smoke"), "{before:?}");
    run(cp.kubectl(&["create", "namespace", "e2e-smoke"]))?;
    let after = namespace_names(&cp)?;
    assert!(
        after.iter().any(|n| n == "e2e-smoke"),
        "namespace missing: {after:?}"
    );
    let plain = run(cp.kubectl(&["get", "ns", "e2e-smoke", "-o", "name"]))?;
    assert_eq!(plain.trim(), "namespace/e2e-smoke");

    // Client-cert users carry their name and every group.
    let kc = cp.kubeconfig_for(
        "system:serviceaccount:e2e:injector",
        &["e2e-group-a", "e2e-group-b"],
    )?;
    let mut whoami = cp.kubectl(&["auth", "whoami", "-o", "json"]);
    whoami.arg(format!("--kubeconfig={}", kc.display()));
    let review: serde_json::Value = serde_json::from_str(&run(whoami)?)?;
    let info = &review["status"]["userInfo"];
    assert_eq!(
        info["username"], "system:serviceaccount:e2e:injector",
        "{review}"
    );
    let groups: Vec<&str> = info["groups"]
        .as_array()
        .context("groups")?
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    for g in ["e2e-group-a", "e2e-group-b", "system:authenticated"] {
        assert!(groups.contains(&g), "group {g} missing from {groups:?}");
    }
    // ...and RBAC applies to them: no binding, so listing namespaces is forbidden.
    let mut forbidden = cp.kubectl(&["get", "ns"]);
    forbidden.arg(format!("--kubeconfig={}", kc.display()));
    let out = forbidden.output()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{out:?}"
    );

    // Restart the apiserver on the same port; state (in etcd) and kubeconfigs still work.
    let url = cp.server_url();
    cp.restart_apiserver().await?;
    assert_eq!(cp.server_url(), url);
    let again = namespace_names(&cp)?;
    assert!(
        again.iter().any(|n| n == "e2e-smoke"),
        "namespace missing after restart: {again:?}"
    );
    run(cp.kubectl(&["create", "namespace", "e2e-smoke-after-restart"]))?;
    let last = namespace_names(&cp)?;
    assert!(
        last.iter().any(|n| n == "e2e-smoke-after-restart"),
        "{last:?}"
    );

    // Drop kills both processes: nothing listens on the apiserver port any more.
    let port: u16 = url.rsplit(':').next().unwrap().parse()?;
    drop(cp);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "apiserver outlived Drop"
    );
    Ok(())
}
