//! Credentials never leak: not to any output stream or state file (verbose runs,
//! failing runs and interrupted runs are searched for the password and every bearer
//! token the registry saw), not to another host on a redirect. `--password-stdin`
//! works, `-p` warns, and TLS verification stays on unless `--skip-tls`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fixtures::{TestImage, write_docker25};
use crate::support;
use crate::support::pusher::read_tree;
use crate::support::{
    Auth, Fault, FaultProxy, Grant, Match, Mode, Pusher, RecordingServer, RegistryClient,
    RegistryOptions, Rule, Run, TestRegistry, TokenOptions, send_signal, verify_image,
    verify_reported_image,
};
use base64::Engine as _;

const PASSWORD: &str = "Sup3r-s3cret-pw-7f3a";

fn fixture(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    let archive = dir.join("image.tar");
    let image = TestImage::new(21, &[3 << 20], false, ("linux", "amd64"));
    let expected =
        write_docker25(&archive, &[(image, vec!["secret/app:1".into()])]).expect("fixture");
    (archive, expected.blob_digests())
}

/// Bearer tokens and Basic credentials the product sent, as the proxy saw them.
fn credentials_on_the_wire(proxy: &FaultProxy) -> Vec<String> {
    let mut seen: Vec<String> = proxy
        .exchanges()
        .iter()
        .filter_map(|e| e.request.header("authorization").map(str::to_string))
        .filter_map(|v| v.split_once(' ').map(|(_, value)| value.to_string()))
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

fn assert_nothing_contains(
    secrets: &[String],
    runs: &[&Run],
    cache: &std::path::Path,
    snapshots: &[(std::path::PathBuf, String)],
) {
    let mut files = read_tree(cache);
    files.extend_from_slice(snapshots);
    assert!(!files.is_empty(), "the runs left no state to search");
    for secret in secrets {
        for run in runs {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "a credential appears in the output\n{run}"
            );
        }
        for (path, text) in &files {
            assert!(
                !text.contains(secret),
                "a credential appears in {}",
                path.display()
            );
        }
    }
}

#[test]
fn verbose_failing_and_interrupted_token_runs_never_show_the_password_or_tokens() {
    let tokens = TokenOptions::new()
        .user("alice", PASSWORD)
        .grant(Grant::user("alice", "*", &["pull", "push"]));
    let registry = TestRegistry::start(RegistryOptions::plain().auth(Auth::Token(tokens)));
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let dir = support::workspace_tmp();
    let (archive, blobs) = fixture(dir.path());
    let target = format!("http://{}/secret/app:1", proxy.host());
    let args = [
        "-v",
        "--json",
        "-u",
        "alice",
        "--password-stdin",
        "--chunk-size",
        "1M",
        "--large-layer-threshold",
        "1M",
    ];
    let pusher = Pusher::push(dir.path(), &archive, &target, &args).stdin(PASSWORD);

    // 1. Interrupted by SIGKILL mid-layer: a session is saved. (Spawned runs have
    // no stdin, so this one takes its credentials from the environment.)
    let pid = Arc::new(AtomicU32::new(0));
    let pusher_env = Pusher::push(
        dir.path(),
        &archive,
        &target,
        &[
            "-v",
            "--json",
            "--chunk-size",
            "1M",
            "--large-layer-threshold",
            "1M",
        ],
    )
    .env("DOCKER_PUSHER_USERNAME", "alice")
    .env("DOCKER_PUSHER_PASSWORD", PASSWORD);
    let victim = Arc::clone(&pid);
    proxy.add(Rule::new(
        Match::patch().nth(2),
        Fault::hook(move |_| {
            send_signal(victim.load(Ordering::SeqCst), "KILL");
            false
        }),
    ));
    let child = pusher_env.spawn();
    pid.store(child.id(), Ordering::SeqCst);
    let killed = Run::wait(child);
    assert_eq!(killed.signal, Some(9), "{killed}");
    proxy.clear_rules();
    let saved_state = read_tree(&dir.path().join("cache"));
    assert!(
        saved_state
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains("sessions")),
        "the killed run saved its session: {saved_state:?}"
    );

    // 2. A failing run: wrong password, verbose.
    let failing = Pusher::push(dir.path(), &archive, &target, &args)
        .stdin("wrong-password")
        .run();
    failing.expect_code(4);

    // 3. A verbose run with a fault, resuming the saved session.
    proxy.add(Rule::new(
        Match::patch().nth(1),
        Fault::CutRequestBody { after: 1000 },
    ));
    let resumed = pusher.run();
    resumed.expect_success();
    let digest = resumed.report()["digest"].as_str().unwrap().to_string();
    let client = RegistryClient::with_credentials(&registry, "alice", PASSWORD);
    verify_image(&client, "secret/app", "1", &digest, &blobs);
    assert!(
        resumed.stderr.contains("[http] PATCH"),
        "verbose log expected"
    );

    let mut secrets = credentials_on_the_wire(&proxy);
    assert!(
        secrets.iter().any(|s| s.starts_with("ey")),
        "no bearer token was seen: {secrets:?}"
    );
    secrets.push(PASSWORD.to_string());
    secrets.push(base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}")));
    assert_nothing_contains(
        &secrets,
        &[&killed, &failing, &resumed],
        &dir.path().join("cache"),
        &saved_state,
    );
}

#[test]
fn basic_auth_credentials_never_reach_output_or_state() {
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("bob", PASSWORD)));
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let dir = support::workspace_tmp();
    let (archive, _) = fixture(dir.path());
    let target = format!("http://{}/secret/basic:1", proxy.host());
    proxy.add(Rule::new(
        Match::patch().nth(2),
        Fault::respond_error(500, "UNKNOWN", "boom"),
    ));
    let run = Pusher::push(
        dir.path(),
        &archive,
        &target,
        &[
            "-v",
            "-u",
            "bob",
            "--password-stdin",
            "--chunk-size",
            "1M",
            "--large-layer-threshold",
            "1M",
        ],
    )
    .stdin(PASSWORD)
    .run();
    run.expect_success();
    let mut secrets = credentials_on_the_wire(&proxy);
    assert!(!secrets.is_empty(), "Basic credentials were sent");
    secrets.push(PASSWORD.to_string());
    // Known blob locations are written on success; they must be clean too.
    assert_nothing_contains(&secrets, &[&run], &dir.path().join("cache"), &[]);
}

#[test]
fn authorization_never_follows_a_redirect_to_another_host() {
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("bob", PASSWORD)));
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let elsewhere = RecordingServer::start(404);
    let dir = support::workspace_tmp();
    let (archive, blobs) = fixture(dir.path());
    // The first blob check is sent to another host, as registries do for storage.
    proxy.add(Rule::new(
        Match::method("HEAD").path("/blobs/sha256:"),
        Fault::redirect(307, &format!("{}/storage/blob", elsewhere.url())),
    ));
    let target = format!("http://{}/secret/redirect:1", proxy.host());
    let run = Pusher::push(
        dir.path(),
        &archive,
        &target,
        &["--json", "-u", "bob", "--password-stdin"],
    )
    .stdin(PASSWORD)
    .run();
    run.expect_success();
    verify_reported_image(
        &RegistryClient::with_credentials(&registry, "bob", PASSWORD),
        &run,
        "secret/redirect",
        "1",
        &blobs,
    );
    let redirected = elsewhere.requests();
    assert_eq!(redirected.len(), 1, "the redirect was followed once");
    assert!(
        redirected[0].header("authorization").is_none(),
        "credentials were sent to another host: {:?}",
        redirected[0].headers
    );
    // The same client did send them to the registry itself.
    assert!(
        proxy
            .exchanges()
            .iter()
            .any(|e| e.request.header("authorization").is_some()),
        "no request to the registry carried credentials"
    );
}

#[test]
fn password_stdin_is_quiet_and_password_flag_warns_once() {
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("bob", PASSWORD)));
    let dir = support::workspace_tmp();
    let (archive, _) = fixture(dir.path());
    let target = format!("http://{}/secret/flags:1", registry.host());

    let stdin = Pusher::push(
        dir.path(),
        &archive,
        &target,
        &["-u", "bob", "--password-stdin"],
    )
    .stdin(&format!("{PASSWORD}\n"))
    .run();
    stdin.expect_success();
    assert!(!stdin.stderr.contains("warning:"), "{stdin}");

    let flag = Pusher::push(
        dir.path(),
        &archive,
        &target,
        &["-u", "bob", "-p", PASSWORD],
    )
    .run();
    flag.expect_success();
    let warnings: Vec<&str> = flag
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{flag}");
    assert!(warnings[0].contains("--password-stdin"), "{flag}");
    assert!(!flag.stderr.contains(PASSWORD) && !flag.stdout.contains(PASSWORD));

    // --quiet silences progress, not the warning.
    let quiet = Pusher::push(
        dir.path(),
        &archive,
        &target,
        &["-u", "bob", "-p", PASSWORD, "--quiet"],
    )
    .run();
    quiet.expect_success();
    assert_eq!(quiet.stderr.trim_end().lines().count(), 1, "{quiet}");
    assert!(
        quiet
            .stderr
            .starts_with("warning: a password given with -p"),
        "{quiet}"
    );
}

#[test]
fn tls_is_verified_unless_skip_tls_is_given() {
    let registry = TestRegistry::start(RegistryOptions::plain().tls(true));
    let dir = support::workspace_tmp();
    let (archive, blobs) = fixture(dir.path());
    let target = format!("https://{}/secret/tls:1", registry.host());

    let refused = Pusher::push(dir.path(), &archive, &target, &[]).run();
    refused.expect_code(5);
    assert!(refused.stderr.contains("not trusted"), "{refused}");

    let ca = registry.ca_cert_path().unwrap().display().to_string();
    let trusted = Pusher::push(dir.path(), &archive, &target, &["--ca-cert", &ca]).run();
    trusted.expect_success();
    assert!(!trusted.stderr.contains("warning:"), "{trusted}");

    let insecure = Pusher::push(dir.path(), &archive, &target, &["--skip-tls", "--json"]).run();
    insecure.expect_success();
    assert!(
        insecure
            .stderr
            .lines()
            .any(|l| l.starts_with("warning: --skip-tls")),
        "{insecure}"
    );
    let digest = insecure.report()["digest"].as_str().unwrap().to_string();
    verify_image(
        &RegistryClient::new(&registry),
        "secret/tls",
        "1",
        &digest,
        &blobs,
    );
}
