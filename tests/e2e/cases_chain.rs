//! Cases 6, 7 and 11: a later webhook, the namespace cache (fresh namespaces, API server
//! restarts) and the injector being down.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::harness::{b64, http_get, kubectl_obj, run_stdin};
use crate::late_webhook::{ANNOTATION, CONTAINER, LateWebhook, Mode};
use crate::{
    Env, HOST, P, all_containers, create_pod, host_env, injected, kubectl, names, namespace, pod,
};

const LOOKUP_GET: &str = "gke_wi_injector_namespace_lookups_total{result=\"get\"}";
const LOOKUP_CACHE: &str = "gke_wi_injector_namespace_lookups_total{result=\"cache\"}";
const LOOKUP_UNKNOWN: &str = "gke_wi_injector_namespace_lookups_total{result=\"unknown\"}";

/// Polls server-side dry-run creates in `ns` (at most `limit`) until `done` holds for the answer.
fn poll_dry_run(
    env: &Env,
    ns: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        let out = kubectl_obj(
            &env.cp,
            &["create", "-n", ns, "--dry-run=server"],
            &pod("poll"),
        );
        if let Ok(out) = &out
            && done(out)
        {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() >= limit {
            bail!("condition not met in {ns} after {limit:?}; last answer: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn has_wait(pod: &Value) -> bool {
    names(pod, "initContainers")
        .iter()
        .any(|n| n == "gke-metadata-wait")
}

/// Namespace lookups so far: (from the cache, by GET, unknown).
fn lookups(env: &Env) -> Result<[f64; 3]> {
    Ok([
        env.inj.sample(LOOKUP_CACHE)?,
        env.inj.sample(LOOKUP_GET)?,
        env.inj.sample(LOOKUP_UNKNOWN)?,
    ])
}

/// Creates a labelled namespace and a Pod in it with one `kubectl create` (a List): the Pod's
/// review arrives milliseconds after the Namespace exists, racing the injector's watch. Asserts
/// the Pod got exactly what the namespace's labels ask for.
fn namespace_and_pod_at_once(env: &Env, ns: &str) -> Result<()> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {
            format!("{P}/inject"): "enabled",
            format!("{P}/metadata-wait"): "disabled",
            format!("{P}/istio"): "enabled"}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c11", "namespace": ns},
         "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    ]});
    // kubectl prints one JSON document per created object.
    let out = run_stdin(
        env.cp.kubectl(&["create", "-f", "-", "-o", "json"]),
        &list.to_string(),
    )?;
    let objs = serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()?;
    let stored = objs
        .iter()
        .find(|o| o["kind"] == "Pod")
        .with_context(|| format!("no Pod in {out}"))?;
    ensure!(
        injected(stored) == Some("metadata-host,istio") && !has_wait(stored),
        "{ns}: wrong mutation: {:?} init {:?}",
        injected(stored),
        names(stored, "initContainers")
    );
    ensure!(
        host_env(&stored["spec"]["containers"][0]) == [&json!(HOST)],
        "{ns}: env"
    );
    Ok(())
}

pub fn fresh_namespace(env: &Env) -> Result<()> {
    let before = lookups(env)?;
    for i in 0..3 {
        namespace_and_pod_at_once(env, &format!("e2e-c11-fresh-{i}"))?;
    }
    let after = lookups(env)?;
    eprintln!(
        "e2e:   3 fresh namespaces: lookups from cache +{}, by GET +{}, unknown +{}",
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2]
    );
    ensure!(
        after[2] == before[2],
        "a fresh namespace was unknown to the injector"
    );
    Ok(())
}

pub async fn reinvocation_after_later_webhook(env: &Env) -> Result<()> {
    let cp = &env.cp;
    let late = LateWebhook::start(Mode::AddContainer)?;
    namespace(
        cp,
        "e2e-c6",
        &[(&format!("{P}/inject"), "enabled"), ("e2e-late", "yes")],
    )?;
    // Sorts after "gke-wi-injector", so the API server calls it second.
    let mwc = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-add-container"},
        "webhooks": [{
            "name": "late.e2e.gke-wi-injector.dev",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": late.url, "caBundle": b64(late.ca_pem.as_bytes())},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"e2e-late": "yes"}},
            "failurePolicy": "Fail", "sideEffects": "None", "timeoutSeconds": 5,
            "reinvocationPolicy": "Never"
        }]
    });
    kubectl_obj(cp, &["apply"], &mwc)?;
    let took = tokio::task::block_in_place(|| {
        poll_dry_run(env, "e2e-c6", Duration::from_secs(20), |p| {
            names(p, "containers").iter().any(|n| n == CONTAINER)
        })
    })?;
    eprintln!("e2e:   zz-add-container active after {took:?}");

    let before = env.inj.requests_total()?;
    let late_before = late.seen.calls.load(Ordering::SeqCst);
    let stored = tokio::task::block_in_place(|| create_pod(cp, "e2e-c6", &pod("c6")))?;
    let after = env.inj.requests_total()?;
    let late_calls = late.seen.calls.load(Ordering::SeqCst) - late_before;

    ensure!(
        names(&stored, "containers") == ["app", CONTAINER],
        "containers: {:?}",
        names(&stored, "containers")
    );
    ensure!(
        names(&stored, "initContainers") == ["gke-metadata-wait"],
        "init containers (exactly one wait): {:?}",
        names(&stored, "initContainers")
    );
    for c in all_containers(&stored) {
        ensure!(
            host_env(c) == [&json!(HOST)],
            "container {}: GCE_METADATA_HOST entries {:?}",
            c["name"],
            host_env(c)
        );
        let env_len = c["env"].as_array().map_or(0, Vec::len);
        ensure!(env_len == 1, "container {}: env {}", c["name"], c["env"]);
    }
    ensure!(
        injected(&stored) == Some("metadata-wait,metadata-host"),
        "{P}/injected: {:?}",
        injected(&stored)
    );
    // Ours ran first (the late webhook saw our wait container), then once more (reinvocation).
    ensure!(late_calls == 1, "late webhook called {late_calls} times");
    let seen = late
        .seen
        .pods
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let last = seen.last().context("late webhook saw nothing")?;
    ensure!(has_wait(last), "the late webhook ran before ours");
    ensure!(
        after - before == 2.0,
        "injector reviews for one Pod: {} (want 2: first pass + reinvocation)",
        after - before
    );
    drop(seen);
    kubectl(
        cp,
        &["delete", "mutatingwebhookconfiguration", "zz-add-container"],
    )?;
    Ok(())
}

/// A later webhook that changes nothing we care about (an annotation) still triggers our
/// reinvocation (IfNeeded), which must answer with an empty patch.
pub async fn reinvocation_with_nothing_new(env: &Env) -> Result<()> {
    let cp = &env.cp;
    let late = LateWebhook::start(Mode::Annotate)?;
    namespace(
        cp,
        "e2e-c6b",
        &[
            (&format!("{P}/inject"), "enabled"),
            ("e2e-late-annotate", "yes"),
        ],
    )?;
    let mwc = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-annotate"},
        "webhooks": [{
            "name": "annotate.e2e.gke-wi-injector.dev",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": late.url, "caBundle": b64(late.ca_pem.as_bytes())},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"e2e-late-annotate": "yes"}},
            "failurePolicy": "Fail", "sideEffects": "None", "timeoutSeconds": 5,
            "reinvocationPolicy": "Never"
        }]
    });
    kubectl_obj(cp, &["apply"], &mwc)?;
    tokio::task::block_in_place(|| {
        poll_dry_run(env, "e2e-c6b", Duration::from_secs(20), |p| {
            p["metadata"]["annotations"][ANNOTATION] == "yes"
        })
    })?;
    let mutated = "gke_wi_injector_admission_requests_total{outcome=\"mutated\"}";
    let unchanged = "gke_wi_injector_admission_requests_total{outcome=\"unchanged\"}";
    let (m0, u0) = (env.inj.sample(mutated)?, env.inj.sample(unchanged)?);
    let stored = tokio::task::block_in_place(|| create_pod(cp, "e2e-c6b", &pod("c6b")))?;
    let (m1, u1) = (env.inj.sample(mutated)?, env.inj.sample(unchanged)?);
    ensure!(
        (m1 - m0, u1 - u0) == (1.0, 1.0),
        "want one mutated review and one unchanged reinvocation, got +{} mutated, +{} unchanged",
        m1 - m0,
        u1 - u0
    );
    ensure!(
        stored["metadata"]["annotations"][ANNOTATION] == "yes"
            && injected(&stored) == Some("metadata-wait,metadata-host"),
        "annotations: {}",
        stored["metadata"]["annotations"]
    );
    ensure!(
        names(&stored, "initContainers") == ["gke-metadata-wait"],
        "{:?}",
        names(&stored, "initContainers")
    );
    for c in all_containers(&stored) {
        ensure!(
            c["env"].as_array().map_or(0, Vec::len) == 1,
            "env of {}: {}",
            c["name"],
            c["env"]
        );
    }
    kubectl(
        cp,
        &["delete", "mutatingwebhookconfiguration", "zz-annotate"],
    )?;
    Ok(())
}

pub async fn apiserver_restart(env: &mut Env) -> Result<()> {
    namespace(
        &env.cp,
        "e2e-c11-watch",
        &[(&format!("{P}/inject"), "enabled")],
    )?;
    // Until now the injector worked without a single warning or error (no RBAC denial: the
    // ClusterRole from deploy/ is enough), apart from announcing its development certificate.
    let noisy: Vec<String> = env
        .inj
        .log_text()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| !l.contains("generated development certificate"))
        .map(str::to_owned)
        .collect();
    ensure!(
        noisy.is_empty(),
        "injector warnings/errors before the restart:\n{}",
        noisy.join("\n")
    );

    let t0 = Instant::now();
    env.cp.restart_apiserver().await?;
    eprintln!("e2e:   API server restarted in {:?}", t0.elapsed());

    tokio::task::block_in_place(|| -> Result<()> {
        let env = &*env;
        // The webhook is served again (the new API server loads its configuration).
        let took = poll_dry_run(env, "e2e-c11-watch", Duration::from_secs(30), |p| {
            injected(p).is_some()
        })?;
        eprintln!("e2e:   webhook answering {took:?} after the restart");

        // A namespace and a Pod created at once, while the watch may still be reconnecting.
        let before = lookups(env)?;
        namespace_and_pod_at_once(env, "e2e-c11-restart-fresh")?;
        let after = lookups(env)?;
        eprintln!(
            "e2e:   fresh namespace right after the restart: lookups from cache +{}, by GET +{}, unknown +{}",
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        );

        // A namespace created after the restart, and a Pod in it.
        namespace(
            &env.cp,
            "e2e-c11-after",
            &[
                (&format!("{P}/inject"), "enabled"),
                (&format!("{P}/istio"), "enabled"),
            ],
        )?;
        let stored = create_pod(&env.cp, "e2e-c11-after", &pod("c11"))?;
        ensure!(
            injected(&stored) == Some("metadata-wait,metadata-host,istio"),
            "Pod in a namespace created after the restart: {:?}",
            injected(&stored)
        );

        // The watch itself reconnected: a label change on a namespace already cached (so no
        // GET fallback) reaches the injector.
        let t1 = Instant::now();
        kubectl(
            &env.cp,
            &[
                "label",
                "ns",
                "e2e-c11-watch",
                &format!("{P}/metadata-wait=disabled"),
            ],
        )?;
        let took = poll_dry_run(env, "e2e-c11-watch", Duration::from_secs(30), |p| {
            injected(p) == Some("metadata-host")
        })?;
        eprintln!(
            "e2e:   label change after the restart applied in {:?}",
            t1.elapsed().max(took)
        );
        let (code, _) = http_get(env.inj.admin_port, "/readyz")?;
        ensure!(code == 200, "/readyz {code} after the restart");
        ensure!(
            env.inj.sample("gke_wi_injector_namespace_cache_synced")? == 1.0,
            "namespace cache not synced after the restart"
        );
        Ok(())
    })
}

/// The API server's `apiserver_admission_webhook_fail_open_count` for our webhook.
fn fail_open_count(env: &Env) -> Result<f64> {
    let text = kubectl(&env.cp, &["get", "--raw", "/metrics"])?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_admission_webhook_fail_open_count{")
                && l.contains("name=\"pods.gke-wi-injector.dev\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

pub fn injector_down(env: &mut Env) -> Result<()> {
    let fail_open_before = fail_open_count(env)?;
    env.inj.kill();
    let cp = &env.cp;
    for i in 0..2 {
        let sent = pod(&format!("c7-{i}"));
        let t0 = Instant::now();
        let stored = create_pod(cp, "e2e-c1", &sent)?;
        let took = t0.elapsed();
        eprintln!("e2e:   Pod {i} created in {took:?} with the injector down");
        ensure!(
            took < Duration::from_secs(7),
            "creation took {took:?} (timeoutSeconds 5)"
        );
        ensure!(
            injected(&stored).is_none(),
            "Pod mutated with the injector down"
        );
        ensure!(
            stored["spec"].get("initContainers").is_none()
                && stored["spec"]["containers"][0].get("env").is_none()
                && stored["metadata"].get("annotations").is_none(),
            "Pod changed: {}",
            stored
        );
    }
    let fail_open = fail_open_count(env)? - fail_open_before;
    ensure!(
        fail_open == 2.0,
        "apiserver_admission_webhook_fail_open_count rose by {fail_open}, want 2"
    );
    Ok(())
}
