use super::*;
use json_patch::PatchOperation;
use rstest::rstest;

fn opts(labels: &str, output: OutputFormat) -> Options {
    Options {
        config: Config::default(),
        namespace_labels: crate::commands::shared::parse_labels(labels).unwrap(),
        default_namespace: "default".into(),
        output,
    }
}

const ON: &str = "gke-wi-injector.dev/inject=enabled";

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: app\n    image: app:1\n";
const SERVICE: &str =
    "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n";

#[test]
fn documents_pass_through_in_order() {
    let text = format!(
        "{SERVICE}---\n{POD}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n"
    );
    let r = inject(&text, &opts(ON, OutputFormat::Yaml)).unwrap();
    let docs = parse_documents(&r.output).unwrap();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0], parse_documents(SERVICE).unwrap()[0]);
    assert_eq!(
        docs[1]["spec"]["initContainers"][0]["name"],
        "gke-metadata-wait"
    );
    assert_eq!(docs[2]["data"]["k"], "v");
    assert_eq!((r.pods, r.mutated), (1, 1));
}

#[rstest]
#[case::deployment("apps/v1", "Deployment", "/spec/template")]
#[case::statefulset("apps/v1", "StatefulSet", "/spec/template")]
#[case::daemonset("apps/v1", "DaemonSet", "/spec/template")]
#[case::replicaset("apps/v1", "ReplicaSet", "/spec/template")]
#[case::job("batch/v1", "Job", "/spec/template")]
fn workload_templates_are_mutated(#[case] api: &str, #[case] kind: &str, #[case] at: &str) {
    let text = format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: w\nspec:\n  template:\n    metadata:\n      labels:\n        app: w\n    spec:\n      containers:\n      - name: app\n        image: a\n"
    );
    let r = inject(&text, &opts(ON, OutputFormat::Patch)).unwrap();
    let ops: Value = serde_json::from_str(r.output.trim()).unwrap();
    let paths: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.iter().all(|p| p.starts_with(&format!("{at}/"))),
        "{paths:?}"
    );
    assert!(
        paths.contains(&format!("{at}/spec/initContainers").as_str()),
        "{paths:?}"
    );
}

#[test]
fn cronjob_template_is_two_levels_down() {
    let text = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: c\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: job\n            image: j\n";
    let r = inject(text, &opts(ON, OutputFormat::Yaml)).unwrap();
    let out = &parse_documents(&r.output).unwrap()[0];
    let tmpl = &out["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(
        tmpl["spec"]["initContainers"][0]["name"],
        "gke-metadata-wait"
    );
    assert_eq!(
        tmpl["metadata"]["annotations"]["gke-wi-injector.dev/injected"],
        "metadata-wait,metadata-host"
    );
}

#[test]
fn list_items_are_mutated_with_item_paths() {
    let text = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}},
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}]}"#;
    let r = inject(text, &opts(ON, OutputFormat::Patch)).unwrap();
    let ops: Value = serde_json::from_str(r.output.trim()).unwrap();
    assert!(
        ops.as_array()
            .unwrap()
            .iter()
            .all(|o| o["path"].as_str().unwrap().starts_with("/items/1/"))
    );
}

#[test]
fn patch_output_applies_to_each_input_document() {
    let text = format!("{SERVICE}---\n{POD}");
    let r = inject(&text, &opts(ON, OutputFormat::Patch)).unwrap();
    let inputs = parse_documents(&text).unwrap();
    let lines: Vec<&str> = r.output.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], "[]");
    let mut pod = inputs[1].clone();
    let ops: Vec<PatchOperation> = serde_json::from_str(lines[1]).unwrap();
    json_patch::patch(&mut pod, &ops).unwrap();
    assert_eq!(
        pod["spec"]["containers"][0]["env"][0]["name"],
        "GCE_METADATA_HOST"
    );
}

#[test]
fn admission_review_in_gives_the_response_out() {
    let review = crate::admission::tests::pod_review(
        "team",
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
        false,
    );
    let r = inject(&review.to_string(), &opts(ON, OutputFormat::Review)).unwrap();
    let out: Value = serde_json::from_str(&r.output).unwrap();
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(out["response"]["uid"], review["request"]["uid"]);
    assert_eq!(out["response"]["allowed"], true);
    assert_eq!(out["response"]["patchType"], "JSONPatch");
    assert!(out.get("request").is_none());
}

#[test]
fn review_output_for_a_deployment_answers_for_its_pod() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\n  namespace: team\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n";
    let r = inject(text, &opts(ON, OutputFormat::Review)).unwrap();
    let out: Value = serde_json::from_str(&r.output).unwrap();
    assert_eq!(
        out["response"]["auditAnnotations"]["injected"],
        "metadata-wait,metadata-host"
    );
}

#[test]
fn not_opted_in_says_so() {
    let r = inject(POD, &opts("", OutputFormat::Yaml)).unwrap();
    assert_eq!(r.mutated, 0);
    assert!(
        r.warnings[0].contains("gke-wi-injector.dev/inject=enabled"),
        "{:?}",
        r.warnings
    );
    assert_eq!(
        parse_documents(&r.output).unwrap(),
        parse_documents(POD).unwrap()
    );
}

#[rstest]
#[case::broken_yaml("apiVersion: v1\nkind: Pod\nspec: [\n", 1, "(yaml)")]
#[case::containers_not_list(
    "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: app\n",
    1,
    "spec.containers"
)]
#[case::second_document(&format!("{POD}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\nspec:\n  template:\n    spec:\n      containers: {{}}\n"), 2, "spec.template.spec.containers")]
#[case::unknown_kind_in_list(
    "apiVersion: v1\nkind: List\nitems:\n- apiVersion: example.com/v1\n  kind: Widget\n",
    1,
    "items[0].kind"
)]
#[case::missing_kind("apiVersion: v1\nmetadata: {name: a}\n", 1, "kind")]
#[case::deployment_without_template(
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n",
    1,
    "spec.template"
)]
#[case::broken_json("{\"kind\": \"Pod\",", 1, "(json)")]
#[case::list_item_bad_pod(
    "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  spec:\n    containers:\n    - image: x\n",
    1,
    "items[0].spec.containers[0].name"
)]
fn bad_input_names_document_and_field(#[case] text: &str, #[case] doc: usize, #[case] field: &str) {
    let err = inject(text, &opts(ON, OutputFormat::Yaml)).unwrap_err();
    assert_eq!((err.doc, err.field.as_str()), (doc, field), "{err}");
}

/// `levels` anchors, each a list of 9 aliases of the one before: `9^levels` leaves.
fn alias_bomb(levels: usize) -> String {
    let mut s = String::from("a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..levels {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s
}

const ISTIO_ON: &str = "gke-wi-injector.dev/inject=enabled,gke-wi-injector.dev/istio=enabled";

#[test]
fn proxy_config_bomb_is_left_alone_with_a_warning() {
    let bomb = alias_bomb(9);
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "a", "annotations": {crate::engine::istio::PROXY_CONFIG: bomb}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    });
    let text = yaml::to_string(&pod).unwrap();
    let started = std::time::Instant::now();
    let r = inject(&text, &opts(ISTIO_ON, OutputFormat::Yaml)).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let out = &parse_documents(&r.output).unwrap()[0];
    assert_eq!(
        out["metadata"]["annotations"][crate::engine::istio::PROXY_CONFIG],
        bomb.as_str()
    );
    assert_eq!(
        out["spec"]["initContainers"][0]["name"],
        "gke-metadata-wait"
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains(crate::engine::istio::PROXY_CONFIG) && w.contains("aliases bound")),
        "{:?}",
        r.warnings
    );
}

#[rstest]
#[case::alias_bomb(&format!("{POD}---\n{}", alias_bomb(10)), 2, "alias expansion limit")]
#[case::deep_flow(&format!("{POD}---\nx: {}{}", "[".repeat(10_000), "]".repeat(10_000)), 2, "depth limit of 64")]
#[case::deep_block(&nested_block(65), 1, "depth limit of 64")]
fn input_over_a_bound_names_the_document(
    #[case] text: &str,
    #[case] doc: usize,
    #[case] problem: &str,
) {
    let started = std::time::Instant::now();
    let err = inject(text, &opts(ON, OutputFormat::Yaml)).unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!((err.doc, err.field.as_str()), (doc, "(yaml)"), "{err}");
    assert!(err.problem.contains(problem), "{err}");
}

fn nested_block(depth: usize) -> String {
    (0..depth)
        .map(|d| format!("{}k:\n", " ".repeat(d)))
        .collect()
}

/// The deepest input accepted is read (on a test thread's 2 MiB stack, in debug builds too) and
/// reported as what it is: not a Kubernetes object.
#[test]
fn input_at_the_depth_limit_is_read() {
    let err = inject(&nested_block(64), &opts(ON, OutputFormat::Yaml)).unwrap_err();
    assert_eq!((err.doc, err.field.as_str()), (1, "kind"), "{err}");
}

#[test]
fn input_over_the_size_limit_is_refused_before_parsing() {
    let text = " ".repeat(MAX_INPUT_BYTES + 1);
    let err = parse_documents(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("(input): over the byte limit of {MAX_INPUT_BYTES}")
    );
}
