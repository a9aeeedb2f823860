//! Every retry loop has a budget: a registry that never lets a blob finish (it answers
//! every PATCH with `Range: 0-0`, or "progresses" one byte and loses it again), a body
//! trickled one byte at a time, and a `--deadline` each end the run in bounded time and
//! bytes with their own one-line error. The fault proxy in front of the real registry
//! counts the bytes the client sent.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::fixtures::{Expected, TestImage, write_docker25};
use crate::support;
use crate::support::pusher::ONE_CHUNKED_UPLOAD_AT_A_TIME;
use crate::support::{
    Fault, FaultProxy, Match, Mode, Pusher, RegistryOptions, Rule, Run, TestRegistry,
};

/// `ONE_CHUNKED_UPLOAD_AT_A_TIME` sends 1 MiB chunks.
const CHUNK: u64 = 1 << 20;
const LAYER: usize = 2 << 20;

struct Setup {
    _registry: TestRegistry,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
    archive: PathBuf,
    expected: Expected,
}

impl Setup {
    fn new(layer: usize) -> Setup {
        let registry = TestRegistry::start(RegistryOptions::plain());
        let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
        let dir = support::workspace_tmp();
        let archive = dir.path().join("image.tar");
        let image = TestImage::new(11, &[layer], false, ("linux", "amd64"));
        let expected =
            write_docker25(&archive, &[(image, vec!["budget/app:1".into()])]).expect("fixture");
        Setup {
            _registry: registry,
            proxy,
            dir,
            archive,
            expected,
        }
    }

    fn target(&self, repository: &str) -> String {
        format!("http://{}/{repository}:1", self.proxy.host())
    }

    fn push(&self, repository: &str, extra: &[&str]) -> (Run, Duration) {
        let args = [ONE_CHUNKED_UPLOAD_AT_A_TIME, extra].concat();
        let pusher = Pusher::push(
            self.dir.path(),
            &self.archive,
            &self.target(repository),
            &args,
        );
        let started = Instant::now();
        let run = pusher.run();
        (run, started.elapsed())
    }

    fn total_blob_bytes(&self) -> u64 {
        self.expected.blobs.iter().map(|b| b.size).sum()
    }
}

/// The one error line, which must say `what`.
fn assert_one_error_line(run: &Run, what: &str) {
    let lines = run.error_lines();
    assert_eq!(lines.len(), 1, "one error line\n{run}");
    assert!(lines[0].contains(what), "error says {what:?}\n{run}");
    assert!(!run.panicked(), "{run}");
}

#[test]
fn a_registry_answering_every_patch_with_range_0_0_ends_the_push_with_exit_6_in_bounded_bytes() {
    let setup = Setup::new(LAYER);
    setup.proxy.add(
        Rule::new(
            Match::patch(),
            Fault::Respond {
                status: 202,
                headers: vec![("Range".into(), "0-0".into())],
                body: String::new(),
            },
        )
        .always(),
    );
    let (run, took) = setup.push("zero-range", &[]);
    run.expect_code(6);
    eprintln!("{:?}", run.error_lines());
    assert_one_error_line(&run, "no progress");
    let sent = setup.proxy.blob_bytes_received();
    eprintln!(
        "Range 0-0 registry: {sent} blob bytes sent in {took:?}\n{}",
        setup.proxy.describe()
    );
    // One copy, then at most twice the blob and four chunks again.
    let budget = 3 * LAYER as u64 + 4 * CHUNK;
    assert!(
        sent <= budget,
        "{sent} bytes sent, budget {budget}\n{}",
        setup.proxy.describe()
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn a_registry_whose_progress_alternates_0_0_and_0_1_cannot_reset_the_failures_forever() {
    let setup = Setup::new(LAYER);
    setup
        .proxy
        .add(Rule::new(Match::patch(), Fault::respond(500)).always());
    // Every other status check says the registry holds one byte more, then loses it.
    let checks = Arc::new(AtomicU64::new(0));
    let odd = checks.clone();
    let status_check = move || Match::method("GET").path("/blobs/uploads/");
    setup.proxy.add(
        Rule::new(
            status_check().when(move |_| odd.fetch_add(1, Ordering::SeqCst) % 2 == 1),
            Fault::Respond {
                status: 204,
                headers: vec![("Range".into(), "0-1".into())],
                body: String::new(),
            },
        )
        .always(),
    );
    setup.proxy.add(
        Rule::new(
            status_check(),
            Fault::Respond {
                status: 204,
                headers: vec![("Range".into(), "0-0".into())],
                body: String::new(),
            },
        )
        .always(),
    );
    let (run, took) = setup.push("alternating", &[]);
    eprintln!(
        "alternating registry: failed in {took:?} after {} blob bytes, {} status checks",
        setup.proxy.blob_bytes_received(),
        checks.load(Ordering::SeqCst)
    );
    run.expect_code(6);
    eprintln!("{:?}", run.error_lines());
    assert_one_error_line(&run, "gave up after");
    assert!(
        checks.load(Ordering::SeqCst) >= 2,
        "{}",
        setup.proxy.describe()
    );
    let budget = 3 * LAYER as u64 + 4 * CHUNK;
    assert!(setup.proxy.blob_bytes_received() <= budget);
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn a_blob_trickled_one_byte_at_a_time_is_cut_by_the_minimum_speed_and_the_pull_ends() {
    let setup = Setup::new(256 << 10);
    setup.push("trickle", &[]).0.expect_success();
    setup.proxy.add(
        Rule::new(
            Match::method("GET").path("/blobs/sha256:"),
            Fault::TrickleBody(Duration::from_millis(100)),
        )
        .always(),
    );
    let pull = Pusher::new(
        setup.dir.path(),
        &[
            "pull",
            &setup.target("trickle"),
            "--max-concurrent",
            "1",
            "--retry-attempts",
            "1",
            "--min-speed",
            "1K",
            "--min-speed-window",
            "1",
            "--timeout",
            "30",
        ],
    );
    let started = Instant::now();
    let run = pull.run();
    let took = started.elapsed();
    eprintln!(
        "slow-loris pull: failed in {took:?}\n{}",
        setup.proxy.describe()
    );
    run.expect_code(6);
    eprintln!("{}", run.stderr);
    assert_one_error_line(&run, "--min-speed");
    // Far below what one byte per 100 ms would take for the blobs at hand.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn the_deadline_stops_a_push_cleanly_and_the_next_run_resumes() {
    let setup = Setup::new(6 << 20);
    setup
        .proxy
        .add(Rule::new(Match::patch(), Fault::Delay(Duration::from_millis(1500))).always());
    let (run, took) = setup.push("deadline", &["--deadline", "2s"]);
    run.expect_code(130);
    eprintln!("{:?} in {took:?}", run.error_lines());
    assert_one_error_line(&run, "the --deadline of 2s passed");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let before = setup.proxy.blob_bytes_received();
    setup.proxy.clear_rules();
    let (resumed, _) = setup.push("deadline", &[]);
    resumed.expect_success();
    let second = setup.proxy.blob_bytes_received() - before;
    assert!(
        second < setup.total_blob_bytes(),
        "the second run sent {second} bytes: it resumed rather than starting over\n{}",
        setup.proxy.describe()
    );
}

#[test]
fn absurd_durations_and_speeds_are_usage_errors() {
    let setup = Setup::new(1 << 10);
    for extra in [
        ["--deadline", "0s"],
        ["--deadline", "99999999999999999999h"],
        ["--min-speed-window", "30y"],
        ["--min-speed", "5G"],
    ] {
        let (run, _) = setup.push("usage", &extra);
        run.expect_code(2);
        assert!(!run.panicked(), "{run}");
    }
}
