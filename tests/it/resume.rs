//! Resuming across runs (the state directory next to the cache), Ctrl-C, SIGKILL, and
//! cross-repository mounts. Faults are placed with the fault proxy's hooks at exact
//! points of a push (when the nth chunk arrives), so nothing depends on timing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::fixtures::{Expected, TestImage, write_docker25};
use crate::support::pusher::{ONE_CHUNKED_UPLOAD_AT_A_TIME, read_tree};
use crate::support::{
    Auth, Fault, FaultProxy, Grant, Match, Mode, Pusher, RegistryClient, RegistryOptions, Rule,
    Run, TestRegistry, TokenOptions, send_signal, verify_reported_image,
};
use crate::{fixtures, support};

const CHUNK: u64 = 1 << 20;

struct Setup {
    registry: TestRegistry,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
    archive: PathBuf,
    expected: Expected,
}

impl Setup {
    fn new(mode: Mode) -> Setup {
        Setup::with_registry(mode, TestRegistry::start(RegistryOptions::plain()))
    }

    fn with_registry(mode: Mode, registry: TestRegistry) -> Setup {
        let proxy = FaultProxy::start(&registry.host(), mode);
        let dir = support::workspace_tmp();
        let archive = dir.path().join("image.tar");
        let image = TestImage::new(11, &[6 << 20], false, ("linux", "amd64"));
        let expected =
            write_docker25(&archive, &[(image, vec!["resume/app:1".into()])]).expect("fixture");
        Setup {
            registry,
            proxy,
            dir,
            archive,
            expected,
        }
    }

    fn pusher(&self, repository: &str, extra: &[&str]) -> Pusher {
        let target = format!("http://{}/{repository}:1", self.proxy.host());
        let args = [ONE_CHUNKED_UPLOAD_AT_A_TIME, extra].concat();
        Pusher::push(self.dir.path(), &self.archive, &target, &args)
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("cache").join("uploads")
    }

    /// The saved sessions, as the product wrote them.
    fn saved_sessions(&self) -> Vec<serde_json::Value> {
        read_tree(&self.state_dir().join("sessions"))
            .into_iter()
            .filter(|(path, _)| path.extension().is_some_and(|e| e == "json"))
            .map(|(_, text)| serde_json::from_str(&text).expect("session file is JSON"))
            .collect()
    }

    fn verify(&self, run: &Run, repository: &str) {
        verify_reported_image(
            &RegistryClient::new(&self.registry),
            run,
            repository,
            "1",
            &self.expected.blob_digests(),
        );
    }

    fn layer_size(&self) -> u64 {
        self.expected.blobs.iter().map(|b| b.size).max().unwrap()
    }

    fn total(&self) -> u64 {
        self.expected.blobs.iter().map(|b| b.size).sum()
    }
}

/// A hook that signals the product (whose pid is filled in after it starts).
fn signal_hook(pid: &Arc<AtomicU32>, signal: &'static str, forward: bool) -> Fault {
    let pid = Arc::clone(pid);
    Fault::hook(move |_| {
        send_signal(pid.load(Ordering::SeqCst), signal);
        forward
    })
}

#[test]
fn push_killed_with_sigkill_continues_mid_layer_on_the_next_run() {
    let setup = Setup::new(Mode::Buffering);
    let pid = Arc::new(AtomicU32::new(0));
    // The product dies as its fourth chunk arrives: three are confirmed and saved.
    setup.proxy.add(Rule::new(
        Match::patch().nth(4),
        signal_hook(&pid, "KILL", false),
    ));
    let child = setup.pusher("resume/killed", &[]).spawn();
    pid.store(child.id(), Ordering::SeqCst);
    let first = Run::wait(child);
    assert_eq!(first.signal, Some(9), "{first}");

    let sessions = setup.saved_sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["offset"], 3 * CHUNK, "{sessions:?}");
    assert_eq!(sessions[0]["repository"], "resume/killed");
    assert_eq!(sessions[0]["size"], setup.layer_size());

    setup.proxy.clear_rules();
    setup.proxy.clear_log();
    let second = setup.pusher("resume/killed", &[]).run();
    second.expect_success();
    setup.verify(&second, "resume/killed");
    assert_eq!(second.report_u64("bytes_reused"), 3 * CHUNK, "{second}");
    assert_eq!(second.report_u64("bytes_resent"), 0, "{second}");
    assert_eq!(
        setup.proxy.blob_bytes_received(),
        setup.total() - 3 * CHUNK,
        "the second run sends only what the registry lacks\n{}",
        setup.proxy.describe()
    );
    assert!(
        second
            .stderr
            .contains("resume: 3.1 MB reused from earlier runs, 0 B re-sent"),
        "{second}"
    );
    assert!(
        setup.saved_sessions().is_empty(),
        "finished uploads are forgotten"
    );
}

#[test]
fn ctrl_c_finishes_the_chunk_in_flight_saves_state_and_exits_130() {
    let setup = Setup::new(Mode::Streaming);
    let pid = Arc::new(AtomicU32::new(0));
    setup.proxy.add(Rule::new(
        Match::patch().nth(4),
        signal_hook(&pid, "INT", true),
    ));
    let child = setup.pusher("resume/ctrl-c", &[]).spawn();
    pid.store(child.id(), Ordering::SeqCst);
    let first = Run::wait(child);
    first.expect_code(130);
    let errors = first.error_lines();
    assert_eq!(errors.len(), 1, "{first}");
    assert!(
        errors[0].contains("run the same command again to resume"),
        "{first}"
    );
    assert!(!first.panicked(), "{first}");
    // The fourth chunk went through after the signal, and the session says so. The signal
    // thread may be scheduled late on a loaded machine, so a later chunk boundary is fine;
    // what matters is that the saved offset is a boundary the registry confirmed.
    let sessions = setup.saved_sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let saved = sessions[0]["offset"].as_u64().expect("offset is a number");
    assert!(
        saved >= 4 * CHUNK && saved.is_multiple_of(CHUNK) && saved < setup.layer_size(),
        "{sessions:?}"
    );
    let tags = RegistryClient::new(&setup.registry).try_tags("resume/ctrl-c");
    assert!(
        tags.is_err() || tags.unwrap().is_empty(),
        "no manifest is pushed by an interrupted run"
    );

    setup.proxy.clear_rules();
    setup.proxy.clear_log();
    let second = setup.pusher("resume/ctrl-c", &[]).run();
    second.expect_success();
    setup.verify(&second, "resume/ctrl-c");
    assert_eq!(second.report_u64("bytes_reused"), saved, "{second}");
    assert_eq!(second.report_u64("bytes_resent"), 0, "{second}");
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    let setup = Setup::new(Mode::Buffering);
    let pid = Arc::new(AtomicU32::new(0));
    setup.proxy.add(Rule::new(
        Match::patch().nth(2),
        signal_hook(&pid, "TERM", true),
    ));
    let child = setup.pusher("resume/term", &[]).spawn();
    pid.store(child.id(), Ordering::SeqCst);
    let run = Run::wait(child);
    run.expect_code(130);
    let saved = setup.saved_sessions()[0]["offset"]
        .as_u64()
        .expect("offset is a number");
    assert!(
        saved >= 2 * CHUNK && saved.is_multiple_of(CHUNK),
        "saved offset {saved}"
    );
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_the_next_run_still_resumes() {
    let setup = Setup::new(Mode::Buffering);
    let pid = Arc::new(AtomicU32::new(0));
    let signalled = Arc::clone(&pid);
    // The fourth chunk hangs (the proxy never answers it); the user presses Ctrl-C,
    // then again when nothing seems to happen.
    setup.proxy.add(Rule::new(
        Match::patch().nth(4),
        Fault::hook(move |_| {
            let pid = signalled.load(Ordering::SeqCst);
            send_signal(pid, "INT");
            std::thread::sleep(Duration::from_secs(1));
            send_signal(pid, "INT");
            std::thread::sleep(Duration::from_secs(2));
            false
        }),
    ));
    let child = setup.pusher("resume/twice", &[]).spawn();
    pid.store(child.id(), Ordering::SeqCst);
    let first = Run::wait(child);
    first.expect_code(130);
    let errors = first.error_lines();
    assert_eq!(errors.len(), 1, "{first}");
    assert!(
        errors[0].contains("run the same command again to resume"),
        "{first}"
    );
    assert_eq!(setup.saved_sessions()[0]["offset"], 3 * CHUNK);

    setup.proxy.clear_rules();
    let second = setup.pusher("resume/twice", &[]).run();
    second.expect_success();
    setup.verify(&second, "resume/twice");
    assert_eq!(second.report_u64("bytes_reused"), 3 * CHUNK, "{second}");
}

#[test]
fn a_saved_session_the_registry_lost_is_started_over() {
    let setup = Setup::new(Mode::Buffering);
    let pid = Arc::new(AtomicU32::new(0));
    setup.proxy.add(Rule::new(
        Match::patch().nth(3),
        signal_hook(&pid, "KILL", false),
    ));
    let child = setup.pusher("resume/lost", &[]).spawn();
    pid.store(child.id(), Ordering::SeqCst);
    assert_eq!(Run::wait(child).signal, Some(9));
    // The registry's upload purging (or an operator) removed the partial upload.
    let uploads = setup
        .registry
        .storage_dir()
        .join("docker/registry/v2/repositories/resume/lost/_uploads");
    std::fs::remove_dir_all(&uploads).expect("remove the registry's upload directory");

    setup.proxy.clear_rules();
    let second = setup.pusher("resume/lost", &[]).run();
    second.expect_success();
    setup.verify(&second, "resume/lost");
    assert!(
        second.stderr.contains("no longer holds the upload"),
        "{second}"
    );
    assert_eq!(second.report_u64("bytes_reused"), 0, "{second}");
    assert!(setup.saved_sessions().is_empty());
}

#[test]
fn state_files_are_small_json_with_the_documented_fields() {
    let setup = Setup::new(Mode::Buffering);
    let pid = Arc::new(AtomicU32::new(0));
    setup.proxy.add(Rule::new(
        Match::patch().nth(2),
        signal_hook(&pid, "KILL", false),
    ));
    let child = setup.pusher("resume/format", &[]).spawn();
    pid.store(child.id(), Ordering::SeqCst);
    Run::wait(child);
    let sessions = setup.saved_sessions();
    let session = sessions[0].as_object().expect("an object");
    let mut fields: Vec<&str> = session.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "digest",
            "location",
            "offset",
            "registry",
            "repository",
            "size",
            "updated",
            "version"
        ]
    );
    assert_eq!(session["version"], 1);
    assert_eq!(session["registry"], setup.proxy.host());
    assert!(
        session["location"]
            .as_str()
            .unwrap()
            .contains("/v2/resume/format/blobs/uploads/")
    );
    let leftovers: Vec<_> = read_tree(&setup.state_dir())
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

// ---- cross-repository mounts ----------------------------------------------------

#[test]
fn blobs_pushed_to_one_repository_are_mounted_into_the_next() {
    let setup = Setup::new(Mode::Buffering);
    setup.pusher("mount/first", &[]).run().expect_success();
    setup.proxy.clear_log();
    let second = setup.pusher("mount/second", &[]).run();
    second.expect_success();
    setup.verify(&second, "mount/second");
    assert_eq!(second.report_u64("blobs_mounted"), 2, "{second}");
    assert_eq!(
        setup.proxy.blob_bytes_received(),
        0,
        "{}",
        setup.proxy.describe()
    );
    assert!(
        second.stderr.contains("mounted from mount/first"),
        "{second}"
    );
}

#[test]
fn mount_from_names_a_repository_this_tool_never_saw() {
    let setup = Setup::new(Mode::Buffering);
    // Another tool put the blobs into `other/source`.
    let client = RegistryClient::new(&setup.registry);
    let layer = setup.expected.blobs.iter().max_by_key(|b| b.size).unwrap();
    let fixture = fixtures::TestImage::new(11, &[6 << 20], false, ("linux", "amd64"));
    assert_eq!(fixtures::digest(&fixture.layers[0].tar), layer.digest);
    client.put_blob("other/source", &fixture.layers[0].tar);
    let run = setup
        .pusher("mount/named", &["--mount-from", "other/source"])
        .run();
    run.expect_success();
    setup.verify(&run, "mount/named");
    assert_eq!(run.report_u64("blobs_mounted"), 1, "{run}");
    // Only the config (which `other/source` lacks) was uploaded.
    assert!(
        setup.proxy.blob_bytes_received() < 4096,
        "{}",
        setup.proxy.describe()
    );
}

#[test]
fn a_mount_source_the_user_cannot_read_falls_back_to_uploading() {
    let tokens = TokenOptions::new()
        .user("alice", "alice-pw")
        .user("bob", "bob-pw")
        .grant(Grant::user("alice", "*", &["pull", "push"]))
        .grant(Grant::user("bob", "bob/*", &["pull", "push"]));
    let registry = TestRegistry::start(RegistryOptions::plain().auth(Auth::Token(tokens)));
    let setup = Setup::with_registry(Mode::Buffering, registry);
    // Alice pushes first; the shared cache dir records where the blobs live.
    setup
        .pusher("alice/app", &["-u", "alice", "--password-stdin"])
        .stdin("alice-pw")
        .run()
        .expect_success();
    // Bob may not read alice/app: the mount is refused, the upload goes ahead.
    let run = setup
        .pusher("bob/app", &["-u", "bob", "--password-stdin"])
        .stdin("bob-pw")
        .run();
    run.expect_success();
    assert_eq!(run.report_u64("blobs_mounted"), 0, "{run}");
    assert_eq!(run.report_u64("blobs_uploaded"), 2, "{run}");
    assert!(run.stderr.contains("cannot mount from alice/app"), "{run}");
    verify_reported_image(
        &RegistryClient::with_credentials(&setup.registry, "bob", "bob-pw"),
        &run,
        "bob/app",
        "1",
        &setup.expected.blob_digests(),
    );
}
