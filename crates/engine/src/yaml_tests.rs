use super::*;
use rstest::rstest;
use serde_json::json;

const L: YamlLimits = YamlLimits {
    max_bytes: 4096,
    max_depth: 8,
    max_nodes: 256,
    max_value_bytes: 8192,
    max_aliases: 8,
    max_alias_events: 64,
    max_documents: 4,
};

#[rstest]
#[case::empty("", json!(null))]
#[case::comment("# nothing\n", json!(null))]
#[case::json(r#"{"a": [1, "b", true, null]}"#, json!({"a": [1, "b", true, null]}))]
#[case::yaml_1_1_booleans("a: yes\nb: On\nc: n\nd: 'yes'", json!({"a": true, "b": true, "c": false, "d": "yes"}))]
#[case::octal("mode: 0644\nquoted: '0644'", json!({"mode": 420, "quoted": "0644"}))]
#[case::keys_are_text("1: a\n~: b\ntrue: c", json!({"1": "a", "~": "b", "true": "c"}))]
#[case::merge_key("base: &b {x: 1}\nm: {<<: *b, y: 2}", json!({"base": {"x": 1}, "m": {"x": 1, "y": 2}}))]
#[case::depth_8("[[[[[[[[1]]]]]]]]", json!([[[[[[[[1]]]]]]]]))]
fn reads(#[case] text: &str, #[case] want: Value) {
    assert_eq!(value(text, &L), Ok(want));
}

fn limit_of(text: &str) -> Option<Limit> {
    value(text, &L).err().and_then(|e| e.limit())
}

#[rstest]
#[case::bytes(&"a".repeat(4097), Bound::Size, "byte", 4096)]
#[case::flow_depth("[[[[[[[[[1]]]]]]]]]", Bound::Depth, "depth", 8)]
#[case::block_depth(
    "a:\n b:\n  c:\n   d:\n    e:\n     f:\n      g:\n       h:\n        i: 1",
    Bound::Depth,
    "depth",
    8
)]
#[case::nodes(&format!("[{}]", "1,".repeat(300)), Bound::Size, "node", 256)]
#[case::aliases("a: &a 1\nb: [*a,*a,*a,*a,*a,*a,*a,*a,*a]", Bound::Aliases, "alias", 8)]
#[case::anchors(
    "[&a 1, &b 1, &c 1, &d 1, &e 1, &f 1, &g 1, &h 1, &i 1]",
    Bound::Aliases,
    "anchor",
    8
)]
#[case::expansion(
    "a: &a [1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a]\nc: [*b,*b,*b,*b]",
    Bound::Aliases,
    "alias expansion",
    64
)]
#[case::expanded_bytes(
    &format!("a: &a {}\nb: [*a, *a, *a]", "x".repeat(3000)),
    Bound::Size,
    "expanded byte",
    8192
)]
fn bounds(#[case] text: &str, #[case] bound: Bound, #[case] what: &str, #[case] limit: usize) {
    let got = limit_of(text).expect("over a bound");
    assert_eq!((got.bound, got.what, got.limit), (bound, what, limit));
}

#[test]
fn documents_drop_empty_ones_and_keep_order() {
    let docs = documents("a: 1\n---\n---\n# c\n---\nb: 2\n", &L).unwrap();
    assert_eq!(docs, [json!({"a": 1}), json!({"b": 2})]);
}

#[rstest]
#[case::syntax("a: 1\n---\nb: [1,\n", 2, Some(3))]
#[case::duplicate_key("a: 1\n---\nb: 1\nb: 2\n", 2, Some(4))]
#[case::depth_in_third("a: 1\n---\nb: 2\n---\nc: [[[[[[[[[1]]]]]]]]]\n", 3, Some(5))]
fn errors_name_the_document(
    #[case] text: &str,
    #[case] document: usize,
    #[case] line: Option<u64>,
) {
    let e = documents(text, &L).unwrap_err();
    assert_eq!((e.document, e.line), (Some(document), line), "{e}");
    let message = e.to_string();
    assert!(
        message.starts_with(&format!("document {document}, line ")),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn error_messages_are_clear() {
    let e = value("a: [[[[[[[[[1]]]]]]]]]", &L).unwrap_err();
    assert_eq!(e.to_string(), "line 1: over the depth limit of 8");
    let e = value(&"a".repeat(5000), &L).unwrap_err();
    assert_eq!(e.to_string(), "over the byte limit of 4096");
    let e = value("a: 1\n---\nb: 2\n", &L).unwrap_err();
    assert_eq!(e.to_string(), "not valid YAML: more than one document");
}

#[test]
fn the_tally_is_per_parse() {
    // A parse that hit a bound leaves nothing behind for the next one.
    assert!(value(&format!("[{}]", "1,".repeat(300)), &L).is_err());
    assert_eq!(value("[1, 2]", &L), Ok(json!([1, 2])));
}
