//! The monitoring that ships with both installs: the chart's PrometheusRule passes
//! `promtool check rules` and every alert's unit tests (`tests/monitoring/alerts_test.yaml`, run
//! with a pinned promtool: env `PROMTOOL`, else scripts/install-promtool.sh); the test series,
//! the rules and the dashboard use only metric names, labels and buckets that the injector's real
//! `/metrics` output has; and deploy/components/monitoring carries the same rules and dashboard.

#[path = "monitoring/metrics_text.rs"]
mod metrics_text;
#[path = "helm/tools.rs"]
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use metrics_text::{FAILED_OUTCOMES, OUTCOMES, injector_metrics_in, parse_series, real_metrics};
use serde_json::Value;
use tools::{NAME, ROOT, kustomize_build, promtool, render, run};

/// Labels Prometheus adds when the ServiceMonitor scrapes a replica; the injector sets none of them.
const SCRAPE_LABELS: [&str; 6] = ["namespace", "job", "pod", "instance", "endpoint", "service"];

fn rules() -> Value {
    let r = render("monitoring: {prometheusRule: {enabled: true}}");
    r.get("PrometheusRule", NAME)["spec"].clone()
}

fn alerts_test() -> Value {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("tests/monitoring/alerts_test.yaml")).unwrap();
    tools::docs(&text).remove(0)
}

#[test]
fn the_rules_pass_promtool_check_and_every_alerts_unit_tests() {
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML: the rendered spec is a rule file as it is.
    std::fs::write(dir.path().join("rules.yaml"), rules().to_string()).unwrap();
    std::fs::copy(
        Path::new(ROOT).join("tests/monitoring/alerts_test.yaml"),
        dir.path().join("alerts_test.yaml"),
    )
    .unwrap();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "alerts_test.yaml"],
    ] {
        let out = run(Command::new(promtool()).args(args).current_dir(dir.path()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("SUCCESS") && !text.contains("FAILED"),
            "promtool {args:?}:\n{text}"
        );
    }
}

#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let rules = rules();
    let alerts: BTreeSet<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in alerts_test()["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_string();
            assert!(
                alerts.contains(&name),
                "a test names {name}, which no rule defines"
            );
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected == 0 {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    assert_eq!(fires, alerts, "alerts never tested firing");
    assert_eq!(quiet, alerts, "alerts never tested staying quiet");
}

#[test]
fn test_series_rules_and_dashboard_use_only_what_metrics_exports() {
    let real = real_metrics();
    let mut keys: BTreeMap<&str, BTreeSet<&String>> = BTreeMap::new();
    let mut values: BTreeMap<(&str, &String), BTreeSet<&String>> = BTreeMap::new();
    for s in &real {
        keys.insert(&s.name, s.labels.keys().collect());
        for (k, v) in &s.labels {
            values.entry((&s.name, k)).or_default().insert(v);
        }
    }
    // The exported outcome labels are exactly the documented set.
    let outcomes: BTreeSet<&str> = values[&(
        "gke_wi_injector_admission_requests_total",
        &"outcome".to_string(),
    )]
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(outcomes, OUTCOMES.into_iter().collect());
    // ... and exactly the server's outcomes.
    let server: BTreeSet<&str> = gke_wi_injector::admission::Outcome::ALL
        .iter()
        .map(|o| o.label())
        .collect();
    assert_eq!(server, OUTCOMES.into_iter().collect());

    // Every input series of the promtool tests is shaped like a real sample.
    let mut checked = 0;
    for test in alerts_test()["tests"].as_array().unwrap() {
        for input in test["input_series"].as_array().unwrap() {
            let s = parse_series(input["series"].as_str().unwrap());
            if !s.name.starts_with("gke_wi_injector_") {
                continue;
            }
            let want = keys
                .get(s.name.as_str())
                .unwrap_or_else(|| panic!("{} is not exported; real: {:?}", s.name, keys.keys()));
            let own: BTreeSet<&String> = s
                .labels
                .keys()
                .filter(|k| !SCRAPE_LABELS.contains(&k.as_str()))
                .collect();
            assert_eq!(&own, want, "labels of {}", s.name);
            for (k, v) in &s.labels {
                if let Some(real_values) = values.get(&(s.name.as_str(), k)) {
                    assert!(
                        real_values.contains(v),
                        "{}{{{k}={v:?}}}: real values {real_values:?}",
                        s.name
                    );
                }
            }
            for k in SCRAPE_LABELS {
                assert!(
                    s.labels.contains_key(k),
                    "{} lacks the scrape label {k}",
                    s.name
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} injector series in the tests");

    // Every injector metric the rules and the dashboard read is exported.
    let mut exprs: Vec<String> = rules()["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    for panel in dashboard()["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for name in injector_metrics_in(expr) {
            assert!(
                keys.contains_key(name.as_str()),
                "{name} (in {expr}) is not exported"
            );
            used.insert(name);
        }
    }
    assert!(used.len() >= 10, "{used:?}");

    // The error alert counts exactly the outcomes that are failures.
    let errors = rules()["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "GkeWiInjectorAdmissionErrors")
        .unwrap()["expr"]
        .as_str()
        .unwrap()
        .to_string();
    let regex = errors
        .split("outcome=~\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let counted: BTreeSet<&str> = regex.split('|').collect();
    assert_eq!(counted, FAILED_OUTCOMES.into_iter().collect());
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(
        Path::new(ROOT).join("deploy/components/monitoring/dashboard.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_dashboard_shows_what_the_issue_asks() {
    let chart = std::fs::read(
        Path::new(ROOT)
            .join(tools::CHART)
            .join("files/dashboard.json"),
    )
    .unwrap();
    let component =
        std::fs::read(Path::new(ROOT).join("deploy/components/monitoring/dashboard.json")).unwrap();
    assert!(
        chart == component,
        "the chart's and the component's dashboard.json differ"
    );

    let d = dashboard();
    let panels = d["panels"].as_array().unwrap();
    let find = |title: &str| {
        panels
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title:?}"))
    };
    for (title, kind, metric) in [
        (
            "Admission requests by outcome",
            "timeseries",
            "gke_wi_injector_admission_requests_total",
        ),
        (
            "Features applied",
            "timeseries",
            "gke_wi_injector_admission_features_total",
        ),
        (
            "Admission latency (heatmap)",
            "heatmap",
            "gke_wi_injector_admission_duration_seconds_bucket",
        ),
        (
            "Serving certificate expires in",
            "stat",
            "gke_wi_injector_tls_certificate_not_after_timestamp_seconds",
        ),
        (
            "Namespace cache size",
            "timeseries",
            "gke_wi_injector_namespace_cache_size",
        ),
    ] {
        let p = find(title);
        assert_eq!(p["type"], kind, "{title}");
        let expr = p["targets"][0]["expr"].as_str().unwrap();
        assert!(
            injector_metrics_in(expr).contains(&metric.to_string()),
            "{title}: {expr}"
        );
    }
    assert_eq!(
        find("Admission latency (heatmap)")["targets"][0]["format"],
        "heatmap"
    );
    // Every query reads the chosen data source, namespace and job.
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("namespace=\"$namespace\", job=\"$job\""),
                "{expr}"
            );
        }
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "namespace", "job"]);
}

#[test]
fn the_kustomize_component_ships_the_charts_rules_and_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(ROOT);
    // kustomize takes only relative paths: from the temporary directory up to / and down again.
    let up = "../".repeat(dir.path().components().count() - 1);
    let rel = |p: &str| {
        format!(
            "{up}{}",
            root.join(p).display().to_string().trim_start_matches('/')
        )
    };
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\n\
             components:\n  - {}\n",
            rel("deploy"),
            rel("deploy/components/monitoring")
        ),
    )
    .unwrap();
    let k = kustomize_build(dir.path());
    // deploy/ as it is, plus the three monitoring objects.
    let plain = kustomize_build(&root.join("deploy"));
    let mut want = plain.ids();
    want.extend(
        [
            "ConfigMap/gke-wi-injector-dashboard",
            "PrometheusRule/gke-wi-injector",
            "ServiceMonitor/gke-wi-injector",
        ]
        .map(String::from),
    );
    want.sort();
    assert_eq!(k.ids(), want);
    for d in &plain.docs {
        assert_eq!(
            k.get(
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            ),
            d
        );
    }

    assert_eq!(
        k.get("PrometheusRule", NAME)["spec"],
        rules(),
        "the component's rules differ from the chart's"
    );
    let helm = render("monitoring: {serviceMonitor: {enabled: true}, dashboard: {enabled: true}}");
    let sm = k.get("ServiceMonitor", NAME);
    assert_eq!(
        sm["spec"]["endpoints"],
        helm.get("ServiceMonitor", NAME)["spec"]["endpoints"]
    );
    // It selects deploy/'s Service, whose name is the job label the alerts select on.
    let svc = k.get("Service", NAME);
    for (key, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][key], v);
    }
    assert!(
        rules()["groups"][0]["rules"][1]["expr"]
            .as_str()
            .unwrap()
            .contains("job=\"gke-wi-injector\"")
    );
    let cm = k.get("ConfigMap", "gke-wi-injector-dashboard");
    assert_eq!(cm["metadata"]["namespace"], "gke-wi-injector");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let helm_cm = helm.get("ConfigMap", "gke-wi-injector-dashboard");
    let parse = |v: &Value| serde_json::from_str::<Value>(v.as_str().unwrap()).unwrap();
    assert_eq!(parse(&cm["data"]["gke-wi-injector.json"]), dashboard());
    assert_eq!(parse(&helm_cm["data"]["gke-wi-injector.json"]), dashboard());
}
