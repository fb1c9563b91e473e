//! Cases 1-5, 8 and 9: what a Pod created through the real API server looks like afterwards.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gke_wi_injector::engine::yaml;
use serde_json::{Value, json};

use crate::{
    Env, HOST, P, all_containers, assert_not_stored, create_pod, host_env, injected, kubectl,
    names, namespace, pod,
};

/// A label key and value.
type Label<'a> = (&'a str, &'a str);

const MUTATED: &str = "gke_wi_injector_admission_requests_total{outcome=\"mutated\"}";
const EXCLUDE: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
const PROXY: &str = "proxy.istio.io/config";

/// The wait init container exactly as SPEC §4.1 describes it with the default flags.
fn expected_wait(with_env: bool) -> Value {
    let mut c = json!({
        "name": "gke-metadata-wait",
        "image": "gke-wi-injector:latest",
        "args": ["wait"],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
        "securityContext": {
            "runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        }
    });
    if with_env {
        c["env"] = json!([{"name": "GCE_METADATA_HOST", "value": HOST}]);
    }
    c
}

/// Every field of `expected` is in `actual` with the same value, and `actual` has no field
/// outside `expected` except those the API server defaults.
fn assert_container(actual: &Value, expected: &Value) -> Result<()> {
    const DEFAULTED: [&str; 3] = [
        "imagePullPolicy",
        "terminationMessagePath",
        "terminationMessagePolicy",
    ];
    let a = actual.as_object().context("container is not an object")?;
    let e = expected.as_object().context("expected is not an object")?;
    for (k, v) in e {
        ensure!(
            a.get(k) == Some(v),
            "container field {k}: {:?} != {v}",
            a.get(k)
        );
    }
    for k in a.keys() {
        ensure!(
            e.contains_key(k) || DEFAULTED.contains(&k.as_str()),
            "unexpected container field {k} in {actual}"
        );
    }
    Ok(())
}

/// The Pod carries the wait container first (exactly once), GCE_METADATA_HOST exactly once on
/// every container, and the Istio annotations, as `features` say.
fn assert_features(pod: &Value, wait: bool, host: bool, istio: bool) -> Result<()> {
    let inits = names(pod, "initContainers");
    let waits = inits.iter().filter(|n| *n == "gke-metadata-wait").count();
    if wait {
        ensure!(
            inits.first().map(String::as_str) == Some("gke-metadata-wait") && waits == 1,
            "wait container must be the first and only one: {inits:?}"
        );
        assert_container(&pod["spec"]["initContainers"][0], &expected_wait(host))?;
    } else {
        ensure!(waits == 0, "no wait container expected: {inits:?}");
    }
    for c in all_containers(pod) {
        let env = host_env(c);
        if host {
            ensure!(
                env == [&json!(HOST)],
                "container {} GCE_METADATA_HOST: {env:?}",
                c["name"]
            );
        } else {
            ensure!(
                env.is_empty(),
                "container {} has GCE_METADATA_HOST",
                c["name"]
            );
        }
    }
    let ann = &pod["metadata"]["annotations"];
    if istio {
        ensure!(
            ann[EXCLUDE] == "169.254.169.254/32",
            "{EXCLUDE}: {}",
            ann[EXCLUDE]
        );
        let cfg: Value = serde_json::from_str(ann[PROXY].as_str().context("no proxy config")?)?;
        ensure!(
            cfg == json!({"holdApplicationUntilProxyStarts": true}),
            "{PROXY}: {cfg}"
        );
    } else {
        ensure!(
            ann.get(EXCLUDE).is_none() && ann.get(PROXY).is_none(),
            "no Istio annotations expected: {ann}"
        );
    }
    let want: Vec<&str> = [
        (wait, "metadata-wait"),
        (host, "metadata-host"),
        (istio, "istio"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, f)| *f)
    .collect();
    if want.is_empty() {
        ensure!(injected(pod).is_none(), "{P}/injected on an untouched Pod");
    } else {
        ensure!(
            injected(pod) == Some(want.join(",").as_str()),
            "{P}/injected = {:?}, want {:?}",
            injected(pod),
            want.join(",")
        );
    }
    Ok(())
}

/// The Pod is exactly as sent, apart from API-server defaulting.
fn assert_untouched(stored: &Value, sent: &Value) -> Result<()> {
    ensure!(
        stored["metadata"]["annotations"] == sent["metadata"]["annotations"],
        "annotations changed: {}",
        stored["metadata"]["annotations"]
    );
    ensure!(
        names(stored, "initContainers") == names(sent, "initContainers"),
        "init containers changed: {:?}",
        names(stored, "initContainers")
    );
    for (s, o) in all_containers(stored).iter().zip(all_containers(sent)) {
        ensure!(
            s["env"] == o["env"],
            "env of {} changed: {}",
            s["name"],
            s["env"]
        );
    }
    Ok(())
}

pub fn all_three_mutations(env: &Env) -> Result<()> {
    let cp = &env.cp;
    namespace(
        cp,
        "e2e-c1",
        &[
            (&format!("{P}/inject"), "enabled"),
            (&format!("{P}/istio"), "enabled"),
        ],
    )?;
    let sent = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "c1"},
        "spec": {
            "initContainers": [{"name": "setup", "image": "setup:1"}],
            "containers": [
                {"name": "app", "image": "app:1"},
                {"name": "helper", "image": "helper:1", "env": [{"name": "A", "value": "1"}]}
            ]
        }
    });
    let before = env.inj.sample(MUTATED)?;
    let stored = create_pod(cp, "e2e-c1", &sent)?;
    assert_features(&stored, true, true, true)?;
    ensure!(
        names(&stored, "initContainers") == ["gke-metadata-wait", "setup"],
        "{:?}",
        names(&stored, "initContainers")
    );
    ensure!(
        stored["spec"]["containers"][1]["env"]
            == json!([{"name": "A", "value": "1"}, {"name": "GCE_METADATA_HOST", "value": HOST}]),
        "helper env: {}",
        stored["spec"]["containers"][1]["env"]
    );
    // What the API server stored is what it answered.
    let got = crate::get(cp, &["get", "pod", "-n", "e2e-c1", "c1"])?;
    ensure!(
        got["spec"] == stored["spec"],
        "stored spec differs from the create answer"
    );
    let after = env.inj.sample(MUTATED)?;
    ensure!(after == before + 1.0, "mutated counter {before} -> {after}");
    Ok(())
}

pub fn unlabelled_namespace_untouched(env: &Env) -> Result<()> {
    let cp = &env.cp;
    namespace(cp, "e2e-c2", &[])?;
    namespace(cp, "e2e-c2-off", &[(&format!("{P}/inject"), "disabled")])?;
    for ns in ["e2e-c2", "e2e-c2-off"] {
        let sent = pod("c2");
        let before = env.inj.requests_total()?;
        let stored = create_pod(cp, ns, &sent)?;
        let after = env.inj.requests_total()?;
        ensure!(
            before == after,
            "{ns}: injector called ({before} -> {after})"
        );
        ensure!(
            before > 0.0,
            "the counter must have seen earlier cases' Pods"
        );
        assert_untouched(&stored, &sent).with_context(|| ns.to_string())?;
        assert_features(&stored, false, false, false).with_context(|| ns.to_string())?;
    }
    Ok(())
}

pub fn per_feature_labels_and_annotations(env: &Env) -> Result<()> {
    let cp = &env.cp;
    let inject = format!("{P}/inject");
    let wait = format!("{P}/metadata-wait");
    let host = format!("{P}/metadata-host");
    let istio = format!("{P}/istio");
    let on = (inject.as_str(), "enabled");
    // (namespace, labels, [wait, host, istio] expected)
    let nowait = [on, (wait.as_str(), "disabled"), (istio.as_str(), "enabled")];
    let nohost = [on, (host.as_str(), "disabled")];
    let noistio = [
        on,
        (istio.as_str(), "disabled"),
        ("istio-injection", "enabled"),
    ];
    let auto = [on, ("istio-injection", "enabled")];
    let rev = [on, ("istio.io/rev", "stable")];
    let auto_off = [
        on,
        ("istio.io/rev", "stable"),
        ("istio-injection", "disabled"),
    ];
    let table: [(&str, &[Label], [bool; 3]); 6] = [
        ("e2e-c3-nowait", &nowait, [false, true, true]),
        ("e2e-c3-nohost", &nohost, [true, false, false]),
        ("e2e-c3-noistio", &noistio, [true, true, false]),
        ("e2e-c3-auto", &auto, [true, true, true]),
        ("e2e-c3-rev", &rev, [true, true, true]),
        ("e2e-c3-auto-off", &auto_off, [true, true, false]),
    ];
    for (ns, labels, [w, h, i]) in table {
        namespace(cp, ns, labels)?;
        let stored = create_pod(cp, ns, &pod("c3"))?;
        assert_features(&stored, w, h, i).with_context(|| format!("namespace {ns}"))?;
    }

    // Pod annotations override the namespace feature by feature.
    let mut p = pod("c3-annotated");
    p["metadata"]["annotations"] = json!({&wait: "enabled", &host: "disabled", &istio: "disabled"});
    let stored = create_pod(cp, "e2e-c3-nowait", &p)?;
    assert_features(&stored, true, false, false).context("annotated Pod in e2e-c3-nowait")?;

    let mut p = pod("c3-istio-on");
    p["metadata"]["annotations"] = json!({&istio: "enabled"});
    let stored = create_pod(cp, "e2e-c3-nohost", &p)?;
    assert_features(&stored, true, false, true).context("istio-annotated Pod in e2e-c3-nohost")?;

    // inject: disabled skips the Pod entirely.
    let mut p = pod("c3-skipped");
    p["metadata"]["annotations"] = json!({&inject: "disabled"});
    let stored = create_pod(cp, "e2e-c3-auto", &p)?;
    assert_untouched(&stored, &p).context("inject: disabled")?;
    assert_features(&stored, false, false, false).context("inject: disabled")?;

    // Existing Istio annotations are extended, not replaced.
    let mut p = pod("c3-istio-existing");
    p["metadata"]["annotations"] = json!({EXCLUDE: "10.0.0.0/8", PROXY: "concurrency: 2\n"});
    let stored = create_pod(cp, "e2e-c3-auto", &p)?;
    let ann = &stored["metadata"]["annotations"];
    ensure!(
        ann[EXCLUDE] == "10.0.0.0/8,169.254.169.254/32",
        "{EXCLUDE}: {}",
        ann[EXCLUDE]
    );
    let limits = &gke_wi_injector::engine::istio::PROXY_CONFIG_LIMITS;
    let cfg = yaml::value(ann[PROXY].as_str().context("proxy config")?, limits)?;
    let want = yaml::value(
        "{concurrency: 2, holdApplicationUntilProxyStarts: true}",
        limits,
    )?;
    ensure!(cfg == want, "{PROXY}: {:?}", ann[PROXY]);
    Ok(())
}

/// Creates `pod` in `ns`: (stored Pod, kubectl's stderr, where the API server's warnings go).
fn create_warned(env: &Env, ns: &str, pod: &Value) -> Result<(Value, String)> {
    let out = crate::harness::output(
        &mut env
            .cp
            .kubectl(&["create", "-n", ns, "-f", "-", "-o", "json"]),
        &pod.to_string(),
    )?;
    ensure!(out.status.success(), "create in {ns} failed: {out:?}");
    Ok((
        serde_json::from_slice(&out.stdout)?,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Admission warnings travel through the real API server to kubectl.
pub fn warnings_reach_the_user(env: &Env) -> Result<()> {
    let cp = &env.cp;
    let wait = format!("{P}/metadata-wait");
    namespace(
        cp,
        "e2e-c3-bogus",
        &[(&format!("{P}/inject"), "enabled"), (&wait, "sometimes")],
    )?;
    let (stored, err) = create_warned(env, "e2e-c3-bogus", &pod("c3-bogus"))?;
    assert_features(&stored, true, true, false).context("unknown label value")?;
    let want = format!(
        "Warning: namespace label {wait}=\"sometimes\" is not enabled/disabled; using the default"
    );
    ensure!(
        err.contains(&want),
        "want {want:?} in kubectl stderr: {err}"
    );

    let mut p = pod("c3-own-host");
    p["spec"]["containers"][0]["env"] = json!([{"name": "GCE_METADATA_HOST", "value": "10.0.0.1"}]);
    let (stored, err) = create_warned(env, "e2e-c3-auto", &p)?;
    ensure!(
        stored["spec"]["containers"][0]["env"] == p["spec"]["containers"][0]["env"],
        "user's GCE_METADATA_HOST changed: {}",
        stored["spec"]["containers"][0]["env"]
    );
    ensure!(
        host_env(&stored["spec"]["initContainers"][0]) == [&json!(HOST)],
        "wait container env"
    );
    let want = "Warning: spec.containers[app].env GCE_METADATA_HOST=\"10.0.0.1\" differs from 169.254.169.254; left as is";
    ensure!(err.contains(want), "want {want:?} in kubectl stderr: {err}");

    let mut p = pod("c3-host-network");
    p["spec"]["hostNetwork"] = json!(true);
    let (stored, err) = create_warned(env, "e2e-c3-auto", &p)?;
    assert_features(&stored, false, false, false).context("hostNetwork Pod")?;
    ensure!(
        err.contains("Warning: spec.hostNetwork is true"),
        "no hostNetwork warning in kubectl stderr: {err}"
    );
    Ok(())
}

pub fn server_dry_run(env: &Env) -> Result<()> {
    let cp = &env.cp;
    for (verb, name) in [("create", "c4-create"), ("apply", "c4-apply")] {
        let before = env.inj.sample(MUTATED)?;
        let shown = crate::harness::kubectl_obj(
            cp,
            &[verb, "-n", "e2e-c1", "--dry-run=server"],
            &pod(name),
        )?;
        // The dry-run request reached the injector and got the same answer as a real one.
        ensure!(
            env.inj.sample(MUTATED)? == before + 1.0,
            "{verb} --dry-run=server did not reach the injector"
        );
        assert_features(&shown, true, true, true)
            .with_context(|| format!("{verb} --dry-run=server"))?;
        assert_not_stored(cp, "e2e-c1", name)?;
    }
    Ok(())
}

pub fn label_change_applies_quickly(env: &Env) -> Result<()> {
    let cp = &env.cp;
    let wait = format!("{P}/metadata-wait");
    namespace(cp, "e2e-c5", &[(&format!("{P}/inject"), "enabled")])?;
    let first = create_pod(cp, "e2e-c5", &pod("c5-before"))?;
    assert_features(&first, true, true, false).context("before the label change")?;

    let mut pod_n = 0;
    for (value, want_wait) in [("disabled", false), ("enabled", true)] {
        let t0 = Instant::now();
        kubectl(
            cp,
            &[
                "label",
                "--overwrite",
                "ns",
                "e2e-c5",
                &format!("{wait}={value}"),
            ],
        )?;
        let labelled = t0.elapsed();
        loop {
            pod_n += 1;
            let stored = create_pod(cp, "e2e-c5", &pod(&format!("c5-{pod_n}")))?;
            let has_wait = names(&stored, "initContainers").contains(&"gke-metadata-wait".into());
            let took = t0.elapsed();
            if has_wait == want_wait {
                eprintln!(
                    "e2e:   {wait}={value}: applied to Pod {pod_n} {took:?} after the label \
                     command started (label command took {labelled:?})"
                );
                ensure!(
                    took <= Duration::from_secs(2),
                    "{wait}={value} took {took:?} to apply"
                );
                assert_features(&stored, want_wait, true, false)?;
                break;
            }
            if took > Duration::from_secs(5) {
                bail!("{wait}={value} not applied after {took:?}");
            }
        }
    }
    Ok(())
}

pub fn pod_security_restricted(env: &Env) -> Result<()> {
    let cp = &env.cp;
    namespace(
        cp,
        "e2e-c8",
        &[
            (&format!("{P}/inject"), "enabled"),
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ],
    )?;
    // The control: a Pod without a security context is refused, so enforcement is on.
    let out = crate::harness::output(
        &mut cp.kubectl(&["create", "-n", "e2e-c8", "-f", "-"]),
        &pod("c8-bad").to_string(),
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("violates PodSecurity \"restricted:latest\""),
        "non-compliant Pod should be refused: {out:?}"
    );

    let compliant = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "c8"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "app:1",
                            "securityContext": {"allowPrivilegeEscalation": false,
                                                "capabilities": {"drop": ["ALL"]}}}]
        }
    });
    let out = crate::harness::output(
        &mut cp.kubectl(&["create", "-n", "e2e-c8", "-f", "-", "-o", "json"]),
        &compliant.to_string(),
    )?;
    ensure!(out.status.success(), "compliant Pod refused: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!err.contains("PodSecurity"), "PodSecurity warning: {err}");
    let stored: Value = serde_json::from_slice(&out.stdout)?;
    assert_features(&stored, true, true, false)
}

pub fn native_sidecar_survives(env: &Env) -> Result<()> {
    let cp = &env.cp;
    let sidecar = json!({
        "name": "log-shipper", "image": "fluent-bit:3.1", "restartPolicy": "Always",
        "env": [{"name": "LEVEL", "value": "info"}],
        "ports": [{"containerPort": 2020, "protocol": "TCP", "name": "metrics"}],
        "startupProbe": {"httpGet": {"path": "/", "port": 2020, "scheme": "HTTP"},
                         "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                         "failureThreshold": 3},
        "resources": {"requests": {"cpu": "5m"}},
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File"
    });
    let web = json!({
        "name": "web", "image": "nginx:1.27", "command": ["nginx"], "args": ["-g", "daemon off;"],
        "env": [{"name": "PORT", "value": "8080"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "48Mi"}, "limits": {"memory": "64Mi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File"
    });
    let spec_extra = json!({
        "volumes": [{"name": "data", "emptyDir": {}}],
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
        "nodeSelector": {"pool": "web"},
        "terminationGracePeriodSeconds": 17,
        "hostname": "web-0"
    });
    let mut sent = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "c9", "labels": {"app": "web", "tier": "front"},
                     "annotations": {"owner": "team-a", "team.acme/owner": "a~b/c"}},
        "spec": {"initContainers": [sidecar], "containers": [web]}
    });
    for (k, v) in spec_extra.as_object().context("spec")? {
        sent["spec"][k] = v.clone();
    }
    let stored = create_pod(cp, "e2e-c1", &sent)?;
    assert_features(&stored, true, true, true)?;
    ensure!(
        names(&stored, "initContainers") == ["gke-metadata-wait", "log-shipper"],
        "{:?}",
        names(&stored, "initContainers")
    );
    let with_host = |c: &Value| {
        let mut c = c.clone();
        c["env"]
            .as_array_mut()
            .expect("env")
            .push(json!({"name": "GCE_METADATA_HOST", "value": HOST}));
        c
    };
    let got_sidecar = &stored["spec"]["initContainers"][1];
    let want_sidecar = with_host(&sent["spec"]["initContainers"][0]);
    ensure!(
        got_sidecar == &want_sidecar,
        "sidecar changed:\n got {got_sidecar}\nwant {want_sidecar}"
    );
    let got_web = &stored["spec"]["containers"][0];
    let want_web = with_host(&sent["spec"]["containers"][0]);
    ensure!(
        got_web == &want_web,
        "web changed:\n got {got_web}\nwant {want_web}"
    );
    for (k, v) in spec_extra.as_object().context("spec")? {
        let got = &stored["spec"][k];
        if k == "tolerations" {
            // DefaultTolerationSeconds appends the not-ready/unreachable tolerations.
            let got = got.as_array().context("tolerations")?;
            ensure!(
                got.starts_with(&[v[0].clone()]),
                "spec.tolerations: {got:?}"
            );
        } else {
            ensure!(got == v, "spec.{k}: {got} != {v}");
        }
    }
    ensure!(
        stored["metadata"]["labels"] == sent["metadata"]["labels"],
        "labels: {}",
        stored["metadata"]["labels"]
    );
    for (k, v) in sent["metadata"]["annotations"].as_object().context("ann")? {
        ensure!(
            &stored["metadata"]["annotations"][k] == v,
            "annotation {k}: {}",
            stored["metadata"]["annotations"][k]
        );
    }
    Ok(())
}

/// Windows Pods (SPEC §3): the variable and the Istio annotations, no wait container (with the
/// default flags), a warning, and the API server's Windows validation accepts the result.
/// (`--wait-image-windows` is covered by `windows_wait_container_passes_windows_validation`.)
pub fn windows_pods(env: &Env) -> Result<()> {
    for (name, os) in [("c12-os", true), ("c12-selector", false)] {
        let mut p = pod(name);
        if os {
            p["spec"]["os"] = json!({"name": "windows"});
        } else {
            p["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "windows"});
        }
        let (stored, err) = create_warned(env, "e2e-c1", &p)?;
        assert_features(&stored, false, true, true).with_context(|| name.to_string())?;
        ensure!(
            err.contains("Warning: Windows Pod"),
            "{name}: no Windows warning: {err}"
        );
    }
    Ok(())
}

/// Existing user values win (SPEC §4): the user's own wait container, a GCE_METADATA_HOST from
/// `valueFrom`, and `holdApplicationUntilProxyStarts: false`.
pub fn users_values_win(env: &Env) -> Result<()> {
    let mut p = pod("c3c-own-wait");
    p["spec"]["initContainers"] = json!([{"name": "gke-metadata-wait", "image": "mine:1"}]);
    let (stored, _) = create_warned(env, "e2e-c1", &p)?;
    let inits = &stored["spec"]["initContainers"];
    ensure!(
        names(&stored, "initContainers") == ["gke-metadata-wait"] && inits[0]["image"] == "mine:1",
        "the user's wait container must stay the only one: {inits}"
    );
    ensure!(
        host_env(&inits[0]) == [&json!(HOST)],
        "env of the user's wait container"
    );

    let mut p = pod("c3c-value-from");
    let from = json!([{"name": "GCE_METADATA_HOST", "valueFrom": {"configMapKeyRef": {"name": "md", "key": "host"}}}]);
    p["spec"]["containers"][0]["env"] = from.clone();
    let (stored, _) = create_warned(env, "e2e-c1", &p)?;
    ensure!(
        stored["spec"]["containers"][0]["env"] == from,
        "valueFrom entry changed: {}",
        stored["spec"]["containers"][0]["env"]
    );
    assert_container(&stored["spec"]["initContainers"][0], &expected_wait(true))?;

    let mut p = pod("c3c-hold-false");
    p["metadata"]["annotations"] = json!({PROXY: "{\"holdApplicationUntilProxyStarts\":false}"});
    let (stored, err) = create_warned(env, "e2e-c1", &p)?;
    let ann = &stored["metadata"]["annotations"];
    ensure!(
        ann[PROXY] == "{\"holdApplicationUntilProxyStarts\":false}",
        "{PROXY} changed: {}",
        ann[PROXY]
    );
    ensure!(
        ann[EXCLUDE] == "169.254.169.254/32",
        "{EXCLUDE}: {}",
        ann[EXCLUDE]
    );
    ensure!(
        err.contains("Warning:") && err.contains(PROXY),
        "no warning naming {PROXY}: {err}"
    );
    Ok(())
}
