//! The analytics of a push against the real registry: the `analytics` object of `--json`
//! with every figure, the `--verbose` report's sections, no colour where it does not
//! belong, and a measured decision even in a push of a few seconds.

use std::path::PathBuf;
use std::time::Duration;

use crate::fixtures::{TestImage, write_docker25};
use crate::support::{
    Fault, FaultProxy, Match, Mode, Pusher, RegistryOptions, Rule, Run, TestRegistry, workspace_tmp,
};
use serde_json::Value;

struct Setup {
    dir: tempfile::TempDir,
    archive: PathBuf,
    blobs: usize,
}

/// An archive of one image with `layers` layers of `size` bytes each.
fn setup(seed: u64, layers: usize, size: usize) -> Setup {
    let dir = workspace_tmp();
    let archive = dir.path().join("image.tar");
    let sizes = vec![size; layers];
    let image = TestImage::new(seed, &sizes, false, ("linux", "amd64"));
    write_docker25(&archive, &[(image, vec!["app:1".to_string()])]).expect("write the archive");
    Setup {
        dir,
        archive,
        blobs: layers + 1,
    }
}

impl Setup {
    fn push(&self, host: &str, repo_tag: &str, extra: &[&str]) -> Pusher {
        let target = format!("http://{host}/{repo_tag}");
        Pusher::push(self.dir.path(), &self.archive, &target, extra)
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
    }
}

fn object<'a>(value: &'a Value, field: &str) -> &'a serde_json::Map<String, Value> {
    value[field]
        .as_object()
        .unwrap_or_else(|| panic!("no {field} object in {value}"))
}

fn number(value: &Value, path: &[&str]) -> f64 {
    let mut at = value;
    for field in path {
        at = &at[field];
    }
    at.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {value}"))
}

#[test]
fn json_report_has_the_analytics_object_with_every_figure() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let setup = setup(1401, 6, 400_000);
    let run = setup
        .push(&registry.host(), "analytics/json:1", &["--json"])
        .run();
    run.expect_success();
    let report = run.report();
    let a = &report["analytics"];
    for field in [
        "tasks",
        "priority",
        "speed",
        "trend",
        "bottleneck",
        "resources",
    ] {
        object(a, field);
    }
    assert_eq!(
        a["tasks"],
        serde_json::json!({"total": setup.blobs, "done": setup.blobs, "active": 0}),
        "{run}"
    );
    // Every blob is small: all of them wait in the low-priority class.
    assert_eq!(
        a["priority"],
        serde_json::json!({"high": 0, "medium": 0, "low": setup.blobs})
    );
    for field in ["current", "average", "peak", "variance_pct"] {
        assert!(number(a, &["speed", field]) >= 0.0, "{field}: {a}");
    }
    assert!(number(a, &["speed", "average"]) > 0.0, "{a}");
    assert!(number(a, &["speed", "peak"]) >= number(a, &["speed", "average"]));
    assert!(
        ["stable", "variable", "unstable"].contains(&a["speed"]["stability"].as_str().unwrap()),
        "{a}"
    );
    assert!(a["trend"]["slope"].is_number(), "{a}");
    let r2 = number(a, &["trend", "r_squared"]);
    assert!((0.0..=1.0).contains(&r2), "{a}");
    assert!(["high", "medium", "low"].contains(&a["trend"]["confidence"].as_str().unwrap()));
    let kind = a["bottleneck"]["kind"].as_str().unwrap();
    assert!(
        ["network", "registry", "source", "compression", "none"].contains(&kind),
        "{a}"
    );
    let share = number(a, &["bottleneck", "share"]);
    assert!((0.0..=1.0).contains(&share), "{a}");
    if kind != "none" {
        // The verdict is the largest of the measured shares beside it.
        let measured = object(&a["bottleneck"], "measured");
        let largest = measured
            .values()
            .filter_map(Value::as_f64)
            .fold(0.0, f64::max);
        assert_eq!(measured[kind].as_f64(), Some(share), "{a}");
        assert_eq!(share, largest, "{a}");
    }
    assert!(number(a, &["resources", "cpu_percent"]) >= 0.0, "{a}");
    // The process holds at least its own code and buffers, and far less than a gigabyte.
    let rss = number(a, &["resources", "peak_rss_bytes"]);
    assert!(rss > 1_000_000.0 && rss < 1e9, "{a}");
    assert!(a["recommendations"].is_array(), "{a}");
}

#[test]
fn verbose_report_has_every_section() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let setup = setup(1402, 4, 300_000);
    let run = setup
        .push(&registry.host(), "analytics/verbose:1", &["--verbose"])
        .run();
    run.expect_success();
    let lines: Vec<&str> = run.stderr.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "transfer report:")
        .unwrap_or_else(|| panic!("no report:\n{}", run.stderr));
    let sections: Vec<&str> = lines[start..]
        .iter()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.trim())
        .collect();
    for section in [
        "pipeline",
        "concurrency",
        "network and regression",
        "bottleneck",
        "resources",
        "recommendations",
    ] {
        assert!(
            sections.contains(&section),
            "{section} missing:\n{}",
            run.stderr
        );
    }
    let report = lines[start..].join("\n");
    for figure in [
        "tasks            5 of 5 done",
        "efficiency",
        "utilization",
        "priority queue   low 5",
        "trend",
        "R²",
        "variance",
        "verdict",
        "cpu",
        "peak memory",
    ] {
        assert!(report.contains(figure), "{figure} missing:\n{report}");
    }
}

#[test]
fn output_that_is_not_a_terminal_has_no_escape_codes_even_with_verbose() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let setup = setup(1403, 3, 200_000);
    let run = setup
        .push(&registry.host(), "analytics/plain:1", &["--verbose"])
        .run();
    run.expect_success();
    assert!(run.stderr.contains("transfer report:"), "{run}");
    for stream in [&run.stdout, &run.stderr] {
        assert!(!stream.contains('\x1b'), "{stream:?}");
    }
}

/// Runs the push on a pseudo-terminal (`script`), so the live display is drawn; returns
/// everything the terminal received.
fn on_a_terminal(pusher: Pusher) -> Run {
    pusher
        .env("COLUMNS", "100")
        .wrapped(&["sh", "-c", r#"exec script -qefc "$*" /dev/null"#, "sh"])
        .run()
}

#[test]
fn colour_on_a_terminal_only_without_no_color() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let setup = setup(1404, 3, 200_000);
    let colour = |text: &str| text.contains("\x1b[36m") || text.contains("\x1b[32m");
    let run = on_a_terminal(setup.push(&registry.host(), "analytics/tty:1", &[]));
    run.expect_success();
    assert!(
        colour(&run.stdout),
        "no colour on a terminal:\n{:?}",
        run.stdout
    );
    assert!(run.stdout.contains("T:"), "{:?}", run.stdout);
    let run = on_a_terminal(
        setup
            .push(&registry.host(), "analytics/tty:2", &["--force-upload"])
            .env("NO_COLOR", "1"),
    );
    run.expect_success();
    assert!(run.stdout.contains("T:"), "no live line:\n{:?}", run.stdout);
    assert!(
        !colour(&run.stdout),
        "colour despite NO_COLOR:\n{:?}",
        run.stdout
    );
    assert!(!run.stdout.contains("m\x1b[0m"), "{:?}", run.stdout);
}

/// A measured decision is a change of the worker limit with the throughput behind it.
fn measured_moves(report: &Value) -> Vec<String> {
    report["concurrency"]["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {report}"))
        .iter()
        // Every move the controller makes is read from measured throughput: the probe of a
        // lower level as much as a step down after a fall (which a loaded machine may
        // show first).
        .filter(|c| c["from"] != c["to"])
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn a_short_push_gets_a_measured_decision() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    // Many small blobs behind a slow front: a push of several seconds (far below the old
    // 30-second first move) whose queue outlasts a noisy first measurement on a busy machine.
    let setup = setup(1405, 150, 60_000);
    let proxy = FaultProxy::start(&registry.host(), Mode::Streaming);
    proxy.add(Rule::new(Match::any(), Fault::Delay(Duration::from_millis(120))).always());
    let run = setup
        .push(
            &proxy.host(),
            "analytics/short:1",
            &[
                "--enable-dynamic-concurrency",
                "--speed-check-interval",
                "0.5",
                "--json",
            ],
        )
        .run();
    run.expect_success();
    let report = run.report();
    assert!(
        !measured_moves(&report).is_empty(),
        "no measured decision in {}s:\n{}",
        report["duration_seconds"],
        report["concurrency"]
    );
}
