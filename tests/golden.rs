//! Golden fixtures: `tests/fixtures/inject/NAME.in.yaml` holds the input, its first line the
//! `inject` flags (`# inject: ...`); `NAME.out.yaml` (or `.out.json` for `--output patch|review`)
//! the expected output, `NAME.warnings.txt` the expected warnings. A mismatch prints a line diff.
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected files (review the diff!).

use std::path::{Path, PathBuf};

use clap::Parser as _;
use gke_wi_injector::cli::{Cli, Command};
use gke_wi_injector::commands::inject::OutputFormat;
use gke_wi_injector::commands::inject::{Options, inject};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inject")
}

fn check(expected_path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(expected_path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(expected_path).unwrap_or_default();
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .header("expected", "actual")
            .to_string();
        failures.push(format!("{}:\n{diff}", expected_path.display()));
    }
}

#[test]
fn golden_fixtures() {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 15, "only {} fixtures", inputs.len());

    let mut failures = Vec::new();
    for input in &inputs {
        let text = std::fs::read_to_string(input).unwrap();
        let header = text.lines().next().unwrap();
        let flags = header
            .strip_prefix("# inject:")
            .unwrap_or_else(|| panic!("{}: first line must be `# inject: FLAGS`", input.display()));
        let mut argv = vec!["gke-wi-injector", "inject", "-f", "fixture"];
        argv.extend(flags.split_whitespace());
        let Command::Inject(args) = Cli::try_parse_from(&argv).unwrap().command else {
            unreachable!()
        };
        let report = inject(&text, &Options::from(&args))
            .unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let stem = input
            .to_string_lossy()
            .trim_end_matches(".in.yaml")
            .to_string();
        let ext = if args.output == OutputFormat::Yaml {
            "yaml"
        } else {
            "json"
        };
        check(
            Path::new(&format!("{stem}.out.{ext}")),
            &report.output,
            &mut failures,
        );
        let warnings: String = report.warnings.iter().map(|w| format!("{w}\n")).collect();
        let warnings_path = PathBuf::from(format!("{stem}.warnings.txt"));
        if warnings.is_empty() && !warnings_path.exists() {
            continue;
        }
        check(&warnings_path, &warnings, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
