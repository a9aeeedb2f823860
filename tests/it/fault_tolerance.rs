//! Faults during one run of a push, injected by the proxy in `tests/it/support/faults.rs`
//! between the product and the real registry. Each test: the push completes, the image
//! verifies digest by digest, and the bytes sent again are bounded and asserted. The
//! bound is one chunk per fault whenever the registry kept its upload session.
//!
//! distribution (the reference registry) drops a session whose stored size differs from
//! the offset in the client's signed `_state`: a chunk it received only in part, or whose
//! answer was lost, costs the whole blob so far. Tests in streaming mode (client talks to
//! distribution directly) pin that down with the looser bound it allows; tests in
//! buffering mode (a front end such as nginx that forwards only complete requests, the
//! usual production set-up) hold the one-chunk bound.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fixtures::{Expected, TestImage, write_docker25};
use crate::support;
use crate::support::pusher::ONE_CHUNKED_UPLOAD_AT_A_TIME;
use crate::support::{
    Auth, Fault, FaultProxy, Grant, Match, Mode, Pusher, RegistryClient, RegistryOptions, Rule,
    Run, TestRegistry, TokenOptions, verify_reported_image,
};

const CHUNK: u64 = 1 << 20;
const LAYER: usize = 6 << 20;

struct Setup {
    registry: Arc<Mutex<TestRegistry>>,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
    archive: PathBuf,
    expected: Expected,
}

impl Setup {
    fn new(mode: Mode, options: RegistryOptions) -> Setup {
        let registry = TestRegistry::start(options);
        let proxy = FaultProxy::start(&registry.host(), mode);
        let dir = support::workspace_tmp();
        let archive = dir.path().join("image.tar");
        let image = TestImage::new(7, &[LAYER], false, ("linux", "amd64"));
        let expected =
            write_docker25(&archive, &[(image, vec!["faults/app:1".into()])]).expect("fixture");
        Setup {
            registry: Arc::new(Mutex::new(registry)),
            proxy,
            dir,
            archive,
            expected,
        }
    }

    fn plain(mode: Mode) -> Setup {
        Setup::new(mode, RegistryOptions::plain())
    }

    fn pusher(&self, repository: &str, extra: &[&str]) -> Pusher {
        let target = format!("http://{}/{repository}:1", self.proxy.host());
        let args = [ONE_CHUNKED_UPLOAD_AT_A_TIME, extra].concat();
        Pusher::push(self.dir.path(), &self.archive, &target, &args)
    }

    fn total_blob_bytes(&self) -> u64 {
        self.expected.blobs.iter().map(|b| b.size).sum()
    }

    /// Blob bytes the proxy received beyond one copy of every blob.
    fn resent_on_the_wire(&self) -> u64 {
        self.proxy
            .blob_bytes_received()
            .saturating_sub(self.total_blob_bytes())
    }

    fn client(&self) -> RegistryClient {
        RegistryClient::new(&self.registry.lock().unwrap())
    }

    /// The push landed and verifies digest by digest; returns the re-sent bytes
    /// measured on the wire, after checking the product reports at least as many.
    fn assert_landed(&self, run: &Run, repository: &str) -> u64 {
        run.expect_success();
        verify_reported_image(
            &self.client(),
            run,
            repository,
            "1",
            &self.expected.blob_digests(),
        );
        let on_wire = self.resent_on_the_wire();
        let reported = run.report_u64("bytes_resent");
        eprintln!("{repository}: {on_wire} bytes re-sent on the wire, {reported} reported");
        // The product counts bytes handed to the socket, a cut request's unsent tail
        // included, so it never reports less than arrived.
        assert!(
            reported >= on_wire,
            "reported {reported} re-sent bytes, the wire saw {on_wire}\n{}",
            self.proxy.describe()
        );
        on_wire
    }
}

fn assert_at_most(resent: u64, bound: u64, what: &str, setup: &Setup, run: &Run) {
    assert!(
        resent <= bound,
        "{what}: {resent} bytes re-sent, bound {bound}\n{}\n{run}",
        setup.proxy.describe()
    );
}

#[test]
fn patch_cut_at_several_offsets_behind_a_buffering_front_end_costs_at_most_one_chunk_each() {
    let setup = Setup::plain(Mode::Buffering);
    for (nth, after) in [(2, 0), (4, CHUNK / 3), (6, CHUNK - 1)] {
        setup.proxy.add(Rule::new(
            Match::patch().nth(nth),
            Fault::CutRequestBody { after },
        ));
    }
    let run = setup.pusher("faults/buffered", &[]).run();
    let resent = setup.assert_landed(&run, "faults/buffered");
    assert_eq!(setup.proxy.fired(), [1, 1, 1], "{}", setup.proxy.describe());
    assert_at_most(resent, 3 * CHUNK, "three cut PATCHes", &setup, &run);
    assert!(
        resent > 0,
        "the faults cost nothing?\n{}",
        setup.proxy.describe()
    );
    assert_eq!(run.report_u64("resumes"), 3, "{run}");
    assert!(
        !run.stderr.contains("lost the upload session"),
        "a buffering front end keeps the session\n{run}"
    );
}

#[test]
fn patch_cut_before_its_body_reaches_distribution_resumes_in_place() {
    let setup = Setup::plain(Mode::Streaming);
    setup.proxy.add(Rule::new(
        Match::patch().nth(3),
        Fault::CutRequestBody { after: 0 },
    ));
    let run = setup.pusher("faults/cut-at-zero", &[]).run();
    let resent = setup.assert_landed(&run, "faults/cut-at-zero");
    assert_at_most(resent, CHUNK, "one PATCH cut at byte 0", &setup, &run);
}

#[test]
fn patch_cut_mid_body_against_distribution_directly_restarts_the_blob_and_still_lands() {
    let setup = Setup::plain(Mode::Streaming);
    setup.proxy.add(Rule::new(
        Match::patch().nth(3),
        Fault::CutRequestBody { after: CHUNK / 2 },
    ));
    let run = setup.pusher("faults/direct", &[]).run();
    let resent = setup.assert_landed(&run, "faults/direct");
    // distribution stored half a chunk and then refuses the stale session: everything
    // sent before the fault goes again, plus the cut chunk. Never more.
    assert!(run.stderr.contains("lost the upload session"), "{run}");
    assert_at_most(
        resent,
        3 * CHUNK,
        "a cut distribution rejects",
        &setup,
        &run,
    );
}

#[test]
fn lost_answer_to_a_patch_restarts_the_blob_on_distribution() {
    let setup = Setup::plain(Mode::Buffering);
    setup
        .proxy
        .add(Rule::new(Match::patch().nth(3), Fault::CutResponse));
    let run = setup.pusher("faults/lost-answer", &[]).run();
    let resent = setup.assert_landed(&run, "faults/lost-answer");
    assert_at_most(resent, 3 * CHUNK, "a lost PATCH answer", &setup, &run);
}

#[test]
fn cut_closing_put_is_checked_and_retried_without_resending_the_layer() {
    let setup = Setup::plain(Mode::Buffering);
    // The layer's empty closing PUT, lost on the way; then the config's one-request
    // PUT, cut mid-body (it continues in chunks).
    setup.proxy.add(Rule::new(
        Match::blob_commit().nth(1),
        Fault::CutRequestBody { after: 0 },
    ));
    setup.proxy.add(Rule::new(
        Match::blob_commit().nth(3),
        Fault::CutRequestBody { after: 100 },
    ));
    let run = setup.pusher("faults/commit", &[]).run();
    let resent = setup.assert_landed(&run, "faults/commit");
    assert_eq!(setup.proxy.fired(), [1, 1], "{}", setup.proxy.describe());
    let config = setup.expected.blobs.iter().map(|b| b.size).min().unwrap();
    assert_at_most(resent, config, "two cut PUTs", &setup, &run);
}

#[test]
fn closing_put_whose_client_vanishes_still_lands_on_distribution() {
    // The whole (empty) PUT reaches distribution, then the connection drops. The
    // registry may finish the commit, or cancel it and delete the upload when it sees
    // the client gone; the push lands either way, at worst sending the layer again.
    let setup = Setup::plain(Mode::Streaming);
    setup.proxy.add(Rule::new(
        Match::blob_commit().nth(1),
        Fault::CutRequestBody { after: 0 },
    ));
    let run = setup.pusher("faults/commit-race", &[]).run();
    let resent = setup.assert_landed(&run, "faults/commit-race");
    assert_at_most(
        resent,
        LAYER as u64 + CHUNK,
        "a vanished committer",
        &setup,
        &run,
    );
}

#[test]
fn lost_answer_to_the_closing_put_counts_as_done_when_the_blob_exists() {
    let setup = Setup::plain(Mode::Buffering);
    setup
        .proxy
        .add(Rule::new(Match::blob_commit().nth(1), Fault::CutResponse));
    let run = setup.pusher("faults/commit-answer", &[]).run();
    let resent = setup.assert_landed(&run, "faults/commit-answer");
    assert_eq!(resent, 0, "{}", setup.proxy.describe());
}

#[test]
fn manifest_put_cut_at_several_offsets_is_retried() {
    let setup = Setup::plain(Mode::Streaming);
    setup.proxy.add(Rule::new(
        Match::manifest_put().nth(1),
        Fault::CutRequestBody { after: 0 },
    ));
    setup.proxy.add(Rule::new(
        Match::manifest_put().nth(2),
        Fault::CutRequestBody { after: 100 },
    ));
    setup
        .proxy
        .add(Rule::new(Match::manifest_put().nth(3), Fault::CutResponse));
    let run = setup.pusher("faults/manifest", &[]).run();
    let resent = setup.assert_landed(&run, "faults/manifest");
    assert_eq!(setup.proxy.fired(), [1, 1, 1], "{}", setup.proxy.describe());
    assert_eq!(resent, 0, "blobs are not sent again for a manifest fault");
    let manifest_puts = setup
        .proxy
        .exchanges()
        .iter()
        .filter(|e| e.request.is_manifest_put())
        .count();
    assert_eq!(manifest_puts, 4, "{}", setup.proxy.describe());
}

#[test]
fn bursts_of_server_errors_are_survived() {
    let setup = Setup::plain(Mode::Buffering);
    let gateway = Fault::Respond {
        status: 502,
        headers: vec![("Content-Type".into(), "text/html".into())],
        body: "<html><body><h1>502 Bad Gateway</h1></body></html>".into(),
    };
    let unavailable = || Fault::respond_error(503, "UNAVAILABLE", "try later");
    setup
        .proxy
        .add(Rule::new(Match::method("HEAD"), Fault::respond(500)).times(2));
    setup
        .proxy
        .add(Rule::new(Match::method("POST"), gateway.clone()).times(2));
    setup
        .proxy
        .add(Rule::new(Match::patch().nth(2), unavailable()).times(2));
    setup
        .proxy
        .add(Rule::new(Match::blob_commit().nth(1), gateway).times(1));
    setup.proxy.add(Rule::new(
        Match::manifest_put(),
        Fault::respond_error(500, "UNKNOWN", "boom"),
    ));
    let run = setup.pusher("faults/5xx", &[]).run();
    let resent = setup.assert_landed(&run, "faults/5xx");
    assert_eq!(
        setup.proxy.fired(),
        [2, 2, 2, 1, 1],
        "{}",
        setup.proxy.describe()
    );
    assert_at_most(resent, 2 * CHUNK, "two refused PATCHes", &setup, &run);
}

#[test]
fn rate_limits_are_waited_out_as_long_as_retry_after_says() {
    let setup = Setup::plain(Mode::Buffering);
    setup.proxy.add(Rule::new(
        Match::method("HEAD"),
        Fault::too_many_requests(2),
    ));
    setup.proxy.add(Rule::new(
        Match::patch().nth(2),
        Fault::too_many_requests(2),
    ));
    let run = setup.pusher("faults/429", &[]).run();
    let resent = setup.assert_landed(&run, "faults/429");
    assert_at_most(resent, CHUNK, "one refused PATCH", &setup, &run);
    assert!(run.stderr.contains("in 2.0s: HTTP 429"), "{run}");
    assert!(run.stderr.contains("(HTTP 429); resuming in 2.0s"), "{run}");
    // Lower bounds only: a slow machine can wait longer, never shorter.
    let exchanges = setup.proxy.exchanges();
    for (i, exchange) in exchanges.iter().enumerate() {
        if exchange.status == Some(429) {
            let next = &exchanges[i + 1];
            let waited = next.started.duration_since(exchange.started);
            assert!(
                waited >= Duration::from_secs(2),
                "retried {} after {waited:?}",
                next.request.method
            );
        }
    }
}

#[test]
fn a_response_stalled_beyond_the_timeout_is_abandoned_and_resumed() {
    let setup = Setup::plain(Mode::Buffering);
    let stall = || Fault::Stall(Duration::from_secs(60));
    setup.proxy.add(Rule::new(Match::method("HEAD"), stall()));
    setup.proxy.add(Rule::new(Match::patch().nth(3), stall()));
    let run = setup.pusher("faults/stall", &["--timeout", "2"]).run();
    let resent = setup.assert_landed(&run, "faults/stall");
    assert_eq!(setup.proxy.fired(), [1, 1], "{}", setup.proxy.describe());
    assert!(run.stderr.contains("did not answer in time"), "{run}");
    assert_at_most(resent, CHUNK, "one stalled PATCH", &setup, &run);
}

#[test]
fn registry_killed_and_restarted_mid_push_resumes_the_layer_in_place() {
    let setup = Setup::plain(Mode::Buffering);
    let registry = Arc::clone(&setup.registry);
    // When the fourth chunk arrives the registry dies (the chunk with it); it comes
    // back on the same storage a moment later.
    setup.proxy.add(Rule::new(
        Match::patch().nth(4),
        Fault::hook(move |_| {
            registry.lock().unwrap().kill();
            let registry = Arc::clone(&registry);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                registry.lock().unwrap().restart();
            });
            false
        }),
    ));
    let run = setup
        .pusher("faults/restart", &["--retry-attempts", "8"])
        .run();
    let resent = setup.assert_landed(&run, "faults/restart");
    assert_eq!(setup.proxy.fired(), [1]);
    assert_at_most(resent, CHUNK, "one registry restart", &setup, &run);
    assert!(!run.stderr.contains("lost the upload session"), "{run}");
}

#[test]
fn a_bearer_token_that_expires_mid_push_is_renewed_and_the_push_lands() {
    // The registry stops accepting each token after 3 s while the token service
    // announces 300 s, so the client learns of the expiry from a refusal mid-upload
    // (revocation and clock skew look the same). The token server back-dates `exp` by
    // distribution's 60 s leeway, so 3 s is what the registry enforces.
    let tokens = TokenOptions::new()
        .user("alice", "alice-pw")
        .grant(Grant::user("alice", "*", &["pull", "push"]))
        .lifetime(Duration::from_secs(3))
        .advertised_lifetime(Duration::from_secs(300));
    let setup = Setup::new(
        Mode::Streaming,
        RegistryOptions::plain().auth(Auth::Token(tokens)),
    );
    // A slow link: every chunk takes a second, so the push outlives several tokens.
    setup
        .proxy
        .add(Rule::new(Match::patch(), Fault::Delay(Duration::from_secs(1))).always());
    let run = setup
        .pusher(
            "faults/token",
            &["-u", "alice", "--password-stdin", "--retry-attempts", "6"],
        )
        .stdin("alice-pw\n")
        .run();
    run.expect_success();
    let client = {
        let registry = setup.registry.lock().unwrap();
        RegistryClient::with_credentials(&registry, "alice", "alice-pw")
    };
    verify_reported_image(
        &client,
        &run,
        "faults/token",
        "1",
        &setup.expected.blob_digests(),
    );
    let issued = setup
        .registry
        .lock()
        .unwrap()
        .token_server()
        .unwrap()
        .tokens_issued();
    let refused = setup
        .proxy
        .exchanges()
        .iter()
        .filter(|e| e.upstream_status == Some(401) && e.request.header("authorization").is_some())
        .count();
    assert!(
        issued >= 2 && refused >= 1,
        "issued {issued}, refused {refused}\n{run}"
    );
    let resent = setup.resent_on_the_wire();
    assert_at_most(
        resent,
        refused as u64 * CHUNK,
        "expired tokens",
        &setup,
        &run,
    );
}
