//! Times the `proxy.istio.io/config` merge on inputs just under and over each bound.
//! `cargo run --release --example proxy_config_limits`

use std::time::{Duration, Instant};

use gke_wi_injector::engine::istio::{
    HOLD, MAX_PROXY_CONFIG_ALIASES, MAX_PROXY_CONFIG_BYTES, MAX_PROXY_CONFIG_DEPTH,
    MAX_PROXY_CONFIG_NODES, ProxyConfigMerge, merge_proxy_config,
};

fn alias_bomb(levels: usize, width: usize) -> String {
    let mut s = format!("a0: &a0 [{}]\n", vec!["lol"; width].join(","));
    for i in 1..levels {
        let refs = vec![format!("*a{}", i - 1); width].join(",");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s
}

/// An ordinary block mapping of exactly `bytes` bytes.
fn ordinary(bytes: usize) -> String {
    let mut s = String::from("concurrency: 2\nproxyMetadata:\n");
    for i in 0.. {
        let line = format!("  ISTIO_META_KEY_{i:05}: \"value-{i:05}\"\n");
        if s.len() + line.len() + 3 > bytes {
            break;
        }
        s.push_str(&line);
    }
    s.push_str(&format!("#{}\n", "x".repeat(bytes - s.len() - 2)));
    s
}

fn nested_block(depth: usize) -> String {
    (0..depth)
        .map(|d| format!("{}k{d}:\n", " ".repeat(d)))
        .collect::<String>()
        + &" ".repeat(depth)
        + "leaf: 1\n"
}

fn outcome(m: &ProxyConfigMerge) -> String {
    match m {
        ProxyConfigMerge::Set(_) => "Set".into(),
        ProxyConfigMerge::OverLimit(l) => format!("OverLimit({}: {l})", l.bound),
        other => format!("{other:?}"),
    }
}

fn main() {
    let d = MAX_PROXY_CONFIG_DEPTH;
    let cases: Vec<(&str, String)> = vec![
        (
            "typical (90 B)",
            "concurrency: 2\nterminationDrainDuration: 30s\ntracing:\n  sampling: 10\n".into(),
        ),
        (
            "ordinary, merged to exactly 32 KiB",
            ordinary(MAX_PROXY_CONFIG_BYTES - HOLD.len() - 7),
        ),
        ("ordinary 300 KiB (size)", ordinary(300 * 1024)),
        (
            "flow depth 32",
            format!("a: {}1{}", "[".repeat(d - 1), "]".repeat(d - 1)),
        ),
        ("block depth 32", nested_block(d - 1)),
        (
            "flow depth 33 (depth)",
            format!("a: {}1{}", "[".repeat(d), "]".repeat(d)),
        ),
        (
            "flow depth 10,000 (depth)",
            format!("a: {}{}", "[".repeat(10_000), "]".repeat(10_000)),
        ),
        (
            "map depth 10,000 (depth)",
            format!("{}{}", "{".repeat(10_000), "}".repeat(10_000)),
        ),
        (
            "64 aliases",
            format!(
                "x: &x [1, 2, 3]\n{}",
                (0..MAX_PROXY_CONFIG_ALIASES)
                    .map(|i| format!("k{i}: *x\n"))
                    .collect::<String>()
            ),
        ),
        ("alias tree 3x14 (~3,400 events)", alias_bomb(3, 14)),
        ("alias tree 3x15 (~4,100 events)", alias_bomb(3, 15)),
        ("alias tree 3x16 (aliases)", alias_bomb(3, 16)),
        ("alias bomb 9x9 (aliases)", alias_bomb(9, 9)),
        (
            "3,900-node flow list",
            format!("a: [{}]", "1,".repeat(MAX_PROXY_CONFIG_NODES - 200)),
        ),
        (
            "4,200-node flow list (size)",
            format!("a: [{}]", "1,".repeat(4200)),
        ),
        (
            "20 KB scalar aliased 3 times (size)",
            format!("a: &a {}\nb: [*a, *a, *a]\n", "x".repeat(20_000)),
        ),
    ];
    println!(
        "{:<38} {:>7} {:>10} {:>10}  outcome",
        "input", "bytes", "mean", "max"
    );
    for (name, text) in &cases {
        let mut n = 0u32;
        let mut max = Duration::ZERO;
        let started = Instant::now();
        let mut last = ProxyConfigMerge::Unchanged;
        while n < 5 || (started.elapsed() < Duration::from_millis(300) && n < 10_000) {
            let t = Instant::now();
            last = merge_proxy_config(Some(text));
            max = max.max(t.elapsed());
            n += 1;
        }
        let mean = started.elapsed() / n;
        println!(
            "{name:<38} {:>7} {:>10.1?} {:>10.1?}  {}",
            text.len(),
            mean,
            max,
            outcome(&last)
        );
    }
}
