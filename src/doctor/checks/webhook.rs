//! The injector's own installation: `webhook-registered`, `webhook-order`, `live-injection`,
//! `certificate`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;

use super::{Finding, Options, Severity, meta_name, opted_in};
use crate::doctor::netpol::selector_matches;
use crate::doctor::snapshot::{Snapshot, needed};
use crate::engine::policy::{self, Decision};
use crate::engine::warnings::Warnings;

const REGISTERED: &str = "webhook-registered";
const ORDER: &str = "webhook-order";
const LIVE: &str = "live-injection";
const CERTIFICATE: &str = "certificate";

/// A certificate expiring sooner than this is a warning.
pub const CERT_WARNING_DAYS: i64 = 14;

const INSTALL_FIX: &str = "kubectl apply -k deploy/ (or helm upgrade --install gke-wi-injector deploy/helm/gke-wi-injector -n gke-wi-injector)";

/// Whether a webhook is called for Pod CREATE.
pub fn matches_pod_create(hook: &MutatingWebhook) -> bool {
    let has = |list: &Option<Vec<String>>, want: &[&str]| {
        list.iter().flatten().any(|v| want.contains(&v.as_str()))
    };
    hook.rules.iter().flatten().any(|r| {
        has(&r.api_groups, &["", "*"])
            && has(&r.operations, &["CREATE", "*"])
            && has(&r.resources, &["pods", "*", "*/*"])
    })
}

fn ours<'a>(
    configs: &'a [MutatingWebhookConfiguration],
    opts: &Options,
) -> Option<&'a MutatingWebhookConfiguration> {
    configs
        .iter()
        .find(|c| meta_name(&c.metadata) == opts.webhook_configuration)
}

pub fn registered(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let configs = needed(
        &snap.webhook_configurations,
        "mutatingwebhookconfigurations",
    )?;
    let name = &opts.webhook_configuration;
    let object = format!("MutatingWebhookConfiguration/{name}");
    let Some(config) = ours(configs, opts) else {
        return Ok(vec![
            Finding::new(
                REGISTERED,
                Severity::Error,
                format!("{object} does not exist: no Pod is injected"),
            )
            .object(object)
            .fix(INSTALL_FIX),
        ]);
    };
    let hooks: Vec<&MutatingWebhook> = config
        .webhooks
        .iter()
        .flatten()
        .filter(|h| matches_pod_create(h))
        .collect();
    let mut out = Vec::new();
    if hooks.is_empty() {
        out.push(
            Finding::new(
                REGISTERED,
                Severity::Error,
                format!("{object} has no webhook for Pod CREATE: no Pod is injected"),
            )
            .object(&object)
            .fix("rules: [{apiGroups: [\"\"], apiVersions: [\"v1\"], operations: [\"CREATE\"], resources: [\"pods\"]}] (as in deploy/base/mutatingwebhookconfiguration.yaml)"),
        );
    }
    let inject = opts.cfg.prefix.key("inject");
    for hook in hooks {
        let at = format!("{object} webhook {}", hook.name);
        if hook.failure_policy.as_deref() == Some("Fail") {
            out.push(
                Finding::new(
                    REGISTERED,
                    Severity::Warning,
                    format!("{at}: failurePolicy Fail: while the injector is down, no Pod can be created in any opted-in namespace"),
                )
                .object(&object)
                .fix("failurePolicy: Ignore"),
            );
        }
        if hook.reinvocation_policy.as_deref() != Some("IfNeeded") {
            out.push(
                Finding::new(
                    REGISTERED,
                    Severity::Warning,
                    format!("{at}: reinvocationPolicy is not IfNeeded: containers a later webhook (Istio) adds get no GCE_METADATA_HOST"),
                )
                .object(&object)
                .fix("reinvocationPolicy: IfNeeded"),
            );
        }
        let selector = hook.namespace_selector.clone().unwrap_or_default();
        for protected in ["kube-system", opts.cfg.injector_namespace.as_str()] {
            let labels = BTreeMap::from([
                (
                    "kubernetes.io/metadata.name".to_string(),
                    protected.to_string(),
                ),
                (inject.clone(), "enabled".to_string()),
            ]);
            if selector_matches(&selector, &labels) {
                out.push(
                    Finding::new(
                        REGISTERED,
                        Severity::Error,
                        format!("{at}: namespaceSelector does not exclude {protected}: its Pods (the injector's own among them) would wait on the webhook"),
                    )
                    .object(&object)
                    .fix(format!(
                        "namespaceSelector.matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, {}]}}]",
                        opts.cfg.injector_namespace
                    )),
                );
            }
        }
        let unlabelled = BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            "some-namespace".to_string(),
        )]);
        if selector_matches(&selector, &unlabelled) {
            out.push(
                Finding::new(
                    REGISTERED,
                    Severity::Warning,
                    format!("{at}: namespaceSelector does not require {inject}=enabled: every namespace's Pods are sent to the injector"),
                )
                .object(&object)
                .fix(format!("namespaceSelector.matchLabels: {{{inject}: enabled}}")),
            );
        }
        out.extend(ca_bundle(hook, &at, &object));
        out.extend(service(snap, hook, &at, &object));
    }
    Ok(out)
}

/// The caBundle's certificates, or the finding that it has none.
fn ca_certificates(hook: &MutatingWebhook) -> Result<Vec<CertificateDer<'static>>, String> {
    let bundle = hook
        .client_config
        .ca_bundle
        .as_ref()
        .map(|b| b.0.as_slice())
        .unwrap_or_default();
    if bundle.is_empty() {
        return Err(
            "caBundle is empty: the API server cannot verify the injector's certificate".into(),
        );
    }
    let certs = CertificateDer::pem_slice_iter(bundle)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("caBundle is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("caBundle holds no PEM certificate".into());
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert)
            .map_err(|e| format!("caBundle holds a certificate that does not parse: {e}"))?;
    }
    Ok(certs)
}

fn ca_bundle(hook: &MutatingWebhook, at: &str, object: &str) -> Option<Finding> {
    let problem = ca_certificates(hook).err()?;
    Some(
        Finding::new(REGISTERED, Severity::Error, format!("{at}: {problem}"))
            .object(object)
            .fix("cert-manager fills it (annotation cert-manager.io/inject-ca-from); self-managed: kubectl apply -k deploy/overlays/self-managed after gke-wi-injector certs"),
    )
}

fn service(snap: &Snapshot, hook: &MutatingWebhook, at: &str, object: &str) -> Vec<Finding> {
    let Some(svc) = &hook.client_config.service else {
        let url = hook.client_config.url.as_deref().unwrap_or("");
        return vec![
            Finding::new(
                REGISTERED,
                Severity::Info,
                format!("{at}: calls {url} directly; no Service to check"),
            )
            .object(object),
        ];
    };
    let svc_object = format!("Service/{}", svc.name);
    let finding = |severity, message: String, fix: String| {
        Finding::new(REGISTERED, severity, message)
            .namespace(&svc.namespace)
            .object(&svc_object)
            .fix(fix)
    };
    match needed(&snap.service, "services") {
        Err(reason) => {
            return vec![finding(
                Severity::Info,
                format!("{at}: the Service was not checked: {reason}"),
                String::new(),
            )];
        }
        Ok(None) => {
            return vec![finding(
                Severity::Error,
                format!(
                    "{at}: names Service {}/{}, which does not exist",
                    svc.namespace, svc.name
                ),
                INSTALL_FIX.to_string(),
            )];
        }
        Ok(Some(_)) => {}
    }
    match needed(&snap.endpoint_slices, "endpointslices") {
        Err(reason) => vec![finding(
            Severity::Info,
            format!("{at}: endpoints were not checked: {reason}"),
            String::new(),
        )],
        Ok(slices) => {
            let ready = slices
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .any(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
            if ready {
                Vec::new()
            } else {
                vec![finding(
                    Severity::Error,
                    format!(
                        "{at}: Service {}/{} has no ready endpoint: the API server cannot reach the injector",
                        svc.namespace, svc.name
                    ),
                    format!(
                        "kubectl -n {0} rollout status deploy/{1}; kubectl -n {0} get pods -l app.kubernetes.io/name={1}; kubectl -n {0} logs deploy/{1}",
                        svc.namespace, svc.name
                    ),
                )]
            }
        }
    }
}

/// Whether a webhook configuration belongs to Istio's sidecar injector.
pub fn is_istio(config: &MutatingWebhookConfiguration) -> bool {
    let name = meta_name(&config.metadata);
    name.starts_with("istio-sidecar-injector")
        || name.starts_with("istio-revision-tag-")
        || config
            .webhooks
            .iter()
            .flatten()
            .any(|h| h.name.ends_with("sidecar-injector.istio.io"))
}

pub fn order(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let configs = needed(
        &snap.webhook_configurations,
        "mutatingwebhookconfigurations",
    )?;
    let Some(ours) = ours(configs, opts) else {
        return Err(format!(
            "MutatingWebhookConfiguration/{} does not exist (see webhook-registered)",
            opts.webhook_configuration
        ));
    };
    let our_name = meta_name(&ours.metadata);
    let reinvoked = ours
        .webhooks
        .iter()
        .flatten()
        .any(|h| h.reinvocation_policy.as_deref() == Some("IfNeeded"));
    let mut out = Vec::new();
    for config in configs {
        let name = meta_name(&config.metadata);
        if name == our_name || !config.webhooks.iter().flatten().any(matches_pod_create) {
            continue;
        }
        let object = format!("MutatingWebhookConfiguration/{name}");
        let before = name < our_name;
        if is_istio(config) {
            if before {
                out.push(
                    Finding::new(
                        ORDER,
                        Severity::Error,
                        format!("{name} (Istio's sidecar injector) sorts before {our_name}: the API server calls it first, so Istio never sees the excludeOutboundIPRanges and holdApplicationUntilProxyStarts annotations"),
                    )
                    .object(object)
                    .fix(format!("name the injector's MutatingWebhookConfiguration so that it sorts before {name} (the default, gke-wi-injector, does), or install Istio's under its default name istio-sidecar-injector")),
                );
            }
            continue;
        }
        let (severity, note) = if reinvoked {
            (
                Severity::Info,
                "containers it adds get GCE_METADATA_HOST, as ours runs again (reinvocationPolicy IfNeeded)",
            )
        } else {
            (
                Severity::Warning,
                "containers it adds after ours get no GCE_METADATA_HOST: set reinvocationPolicy IfNeeded on ours",
            )
        };
        out.push(
            Finding::new(
                ORDER,
                severity,
                format!(
                    "{name} also mutates Pods, {} ours; {note}",
                    if before { "before" } else { "after" }
                ),
            )
            .object(object),
        );
    }
    Ok(out)
}

/// A Pod for the server-side dry run: restricted Pod Security, the namespace's default service
/// account.
pub fn dry_run_pod() -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "gke-wi-injector-doctor-"},
        "spec": {
            "containers": [{
                "name": "check",
                "image": "registry.k8s.io/pause:3.10",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": true,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"}
                }
            }]
        }
    })
}

pub fn live(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let namespaces = opted_in(snap, opts)?;
    if snap.live.is_empty() {
        return Ok(Vec::new());
    }
    let pod = dry_run_pod();
    let key = opts.cfg.prefix.key("injected");
    let mut out = Vec::new();
    let mut first_reason = None;
    let mut checked = 0;
    for live in &snap.live {
        let Some(ns) = namespaces.iter().find(|n| n.name == live.namespace) else {
            continue;
        };
        let object = "Pod/gke-wi-injector-doctor-… (dry run)";
        let annotations = match live.annotations.get() {
            Ok(a) => a,
            Err(reason) if reason.starts_with("forbidden") => {
                out.push(
                    Finding::new(LIVE, Severity::Info, format!("not checked: {reason}"))
                        .namespace(&ns.name),
                );
                first_reason.get_or_insert(reason);
                continue;
            }
            Err(reason) => {
                checked += 1;
                out.push(
                    Finding::new(
                        LIVE,
                        Severity::Error,
                        format!("the dry-run Pod create failed: {reason}"),
                    )
                    .namespace(&ns.name)
                    .object(object)
                    .fix(format!(
                        "kubectl -n {} logs deploy/gke-wi-injector; check webhook-registered",
                        opts.cfg.injector_namespace
                    )),
                );
                continue;
            }
        };
        checked += 1;
        let expected = match policy::decide(
            &opts.cfg,
            &ns.name,
            &ns.labels,
            &pod,
            &mut Warnings::default(),
        ) {
            Decision::Inject { features, .. } => features.record(),
            Decision::Skip(_) => continue,
        };
        let got = annotations.get(&key).map(String::as_str).unwrap_or("");
        if got != expected {
            let shown = if got.is_empty() {
                "absent".to_string()
            } else {
                format!("{got:?}")
            };
            out.push(
                Finding::new(
                    LIVE,
                    Severity::Error,
                    format!("a server-side dry-run Pod came back with {key} {shown}; the namespace's labels ask for {expected:?}"),
                )
                .namespace(&ns.name)
                .object(object)
                .fix(format!(
                    "check webhook-registered and webhook-order; kubectl -n {} logs deploy/gke-wi-injector",
                    opts.cfg.injector_namespace
                )),
            );
        }
    }
    match first_reason {
        Some(reason) if checked == 0 => Err(reason),
        _ => Ok(out),
    }
}

pub fn certificate(snap: &Snapshot, opts: &Options) -> Result<Vec<Finding>, String> {
    let ns = &opts.cfg.injector_namespace;
    let object = format!("Secret/{}", opts.tls_secret);
    let secret = match needed(&snap.tls_secret, "secrets")? {
        Some(s) => s,
        None => {
            return Ok(vec![
                Finding::new(
                    CERTIFICATE,
                    Severity::Info,
                    format!("{object} does not exist; the serving certificate is not checked (certificates from elsewhere)"),
                )
                .namespace(ns)
                .object(object),
            ]);
        }
    };
    let finding = |severity, message: String, fix: &str| {
        Finding::new(CERTIFICATE, severity, message)
            .namespace(ns)
            .object(&object)
            .fix(fix)
    };
    const RENEW: &str = "cert-manager: kubectl -n gke-wi-injector delete secret gke-wi-injector-tls (it issues a new one); self-managed: gke-wi-injector certs --force, then kubectl apply -k deploy/overlays/self-managed";
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get("tls.crt"))
        .map(|b| b.0.as_slice())
        .unwrap_or_default();
    let chain = match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
        Ok(chain) if !chain.is_empty() => chain,
        Ok(_) => {
            return Ok(vec![finding(
                Severity::Error,
                format!("{object} has no certificate in tls.crt"),
                RENEW,
            )]);
        }
        Err(e) => {
            return Ok(vec![finding(
                Severity::Error,
                format!("{object}: tls.crt is not PEM: {e}"),
                RENEW,
            )]);
        }
    };
    let not_after = match x509_parser::parse_x509_certificate(&chain[0]) {
        Ok((_, cert)) => cert.validity().not_after.timestamp(),
        Err(e) => {
            return Ok(vec![finding(
                Severity::Error,
                format!("{object}: tls.crt does not parse: {e}"),
                RENEW,
            )]);
        }
    };
    // Whole days, rounded up: a 5-day certificate checked a second after it was issued expires
    // "in 5 days", one that expired a second ago did so "1 days ago".
    let left = not_after - opts.now;
    let days_left = (left + 86_399).div_euclid(86_400);
    let mut out = Vec::new();
    if not_after <= opts.now {
        out.push(finding(
            Severity::Error,
            format!("the serving certificate expired {} days ago: the API server's calls fail the TLS handshake", (86_399 - left).div_euclid(86_400)),
            RENEW,
        ));
        return Ok(out);
    }
    if left < CERT_WARNING_DAYS * 86_400 {
        out.push(finding(
            Severity::Warning,
            format!("the serving certificate expires in {days_left} days"),
            RENEW,
        ));
    }
    // The caBundle must verify the served chain for the Service's name, as the API server does.
    let Ok(configs) = needed(
        &snap.webhook_configurations,
        "mutatingwebhookconfigurations",
    ) else {
        return Ok(out);
    };
    let Some(config) = ours(configs, opts) else {
        return Ok(out);
    };
    for hook in config
        .webhooks
        .iter()
        .flatten()
        .filter(|h| matches_pod_create(h))
    {
        let Ok(roots) = ca_certificates(hook) else {
            continue; // reported by webhook-registered
        };
        let host = match (&hook.client_config.service, &hook.client_config.url) {
            (Some(s), _) => format!("{}.{}.svc", s.name, s.namespace),
            (None, Some(url)) => match url_host(url) {
                Some(h) => h.to_string(),
                None => continue,
            },
            (None, None) => continue,
        };
        if let Err(problem) = verify(&roots, &chain, &host, opts.now) {
            out.push(finding(
                Severity::Error,
                format!(
                    "the caBundle of webhook {} does not verify the serving certificate for {host}: {problem}",
                    hook.name
                ),
                "set the caBundle to the CA that issued the Secret's certificate (cert-manager: annotation cert-manager.io/inject-ca-from)",
            ));
        }
    }
    Ok(out)
}

/// The host of an `https://HOST[:PORT]/path` URL (an IPv6 host without its brackets).
fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?']).next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    authority.split(':').next().filter(|h| !h.is_empty())
}

/// Verifies `chain` for `host` against `roots` at `now`, as a TLS client (the API server) does.
fn verify(
    roots: &[CertificateDer<'static>],
    chain: &[CertificateDer<'static>],
    host: &str,
    now: i64,
) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
        .build()
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
