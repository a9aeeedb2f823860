//! Pushing to registries in every mode the harness offers: plain HTTP, TLS trusted with
//! `--ca-cert` or unchecked with `--skip-tls`, htpasswd Basic auth and Docker token auth
//! (tokens shared across requests and workers, renewed on a 401, denials explained).

use std::path::PathBuf;

use crate::fixtures::*;
use crate::support;
use crate::support::revoking_proxy::RevokingProxy;
use crate::support::verify::*;
use crate::support::{
    Auth, Grant, RegistryClient, RegistryOptions, TestRegistry, TokenOptions, pusher,
};

/// A Docker 25+ archive of a small image and what pushing it must produce.
fn archive(dir: &tempfile::TempDir, seed: u64, layers: &[usize]) -> (PathBuf, ExpectedTarget) {
    let path = dir.path().join(format!("image-{seed}.tar"));
    let exp = write_docker25(&path, &[(image(seed, layers, false), vec![])]).unwrap();
    (path, exp.targets[0].clone())
}

fn token_registry(lifetime_seconds: u64) -> TestRegistry {
    let opts = TokenOptions::new()
        .user("alice", "alice-pw")
        .user("reader", "reader-pw")
        .grant(Grant::user("alice", "*", &["pull", "push"]))
        .grant(Grant::user("reader", "team/*", &["pull"]))
        .lifetime(std::time::Duration::from_secs(lifetime_seconds));
    TestRegistry::start(RegistryOptions::plain().auth(Auth::Token(opts)))
}

// ---------------------------------------------------------------- TLS

#[test]
fn tls_registry_is_trusted_with_ca_cert() {
    let registry = TestRegistry::start(RegistryOptions::plain().tls(true));
    let dir = support::workspace_tmp();
    let (file, expected) = archive(&dir, 1, &[20_000, 3_000]);
    let ca = registry.ca_cert_path().unwrap();
    let run = pusher()
        .args(["push", "--source"])
        .arg(&file)
        .arg("--target")
        .arg(format!("https://{}/tls/app:1", registry.host()))
        .arg("--ca-cert")
        .arg(ca)
        .run()
        .success();
    assert!(!run.stderr.contains("warning"), "{run}");
    let client = RegistryClient::new(&registry);
    let digest = verify_target(&client, "tls/app", "1", &expected);
    assert_eq!(run.pushed().1, digest);
    skopeo_verify(
        &registry,
        &SkopeoAccess::new(&registry),
        "tls/app:1",
        &digest,
        false,
    );

    // A bare reference means HTTPS too.
    let run = pusher()
        .args(["push", "-f"])
        .arg(&file)
        .arg("-r")
        .arg(format!("{}/tls/bare:2", registry.host()))
        .arg("--ca-cert")
        .arg(ca)
        .run()
        .success();
    assert_eq!(
        run.pushed().1,
        verify_target(&client, "tls/bare", "2", &expected)
    );
}

#[test]
fn tls_registry_with_an_unknown_ca_fails_with_a_hint_and_uploads_nothing() {
    let registry = TestRegistry::start(RegistryOptions::plain().tls(true));
    let dir = support::workspace_tmp();
    let (file, _) = archive(&dir, 2, &[5_000]);
    let run = pusher()
        .args(["push", "--source"])
        .arg(&file)
        .arg("--target")
        .arg(format!("https://{}/tls/app:1", registry.host()))
        .run()
        .failure(5);
    let error = run.stderr.lines().last().unwrap_or_default();
    assert!(error.contains("--ca-cert"), "hint names the fix\n{run}");
    assert!(
        !error.contains("does not speak TLS"),
        "it does speak TLS\n{run}"
    );
    assert!(stored_blobs(&registry).is_empty());
}

#[test]
fn skip_tls_pushes_without_checking_and_warns() {
    let registry = TestRegistry::start(RegistryOptions::plain().tls(true));
    let dir = support::workspace_tmp();
    let (file, expected) = archive(&dir, 3, &[8_000]);
    let run = pusher()
        .args(["push", "--source"])
        .arg(&file)
        .arg("--target")
        .arg(format!("https://{}/skip/app:1", registry.host()))
        .arg("--skip-tls")
        .run()
        .success();
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains("--skip-tls"),
        "{run}"
    );
    let digest = verify_target(&RegistryClient::new(&registry), "skip/app", "1", &expected);
    assert_eq!(run.pushed().1, digest);

    // The environment switch does the same and warns the same.
    let run = pusher()
        .args(["push", "--source"])
        .arg(&file)
        .arg("--target")
        .arg(format!("https://{}/skip/env:1", registry.host()))
        .env("DOCKER_PUSHER_SKIP_TLS", "true")
        .run()
        .success();
    assert!(run.stderr.contains("warning:"), "{run}");
}

#[test]
fn plain_http_registry_needs_http_scheme_or_insecure() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let dir = support::workspace_tmp();
    let (file, expected) = archive(&dir, 4, &[4_000]);
    let bare = format!("{}/plain/app:1", registry.host());
    let run = pusher()
        .args(["push", "--source"])
        .arg(&file)
        .args(["--target", &bare])
        .run()
        .failure(5);
    assert!(
        run.stderr.contains("http://") && run.stderr.contains("--insecure"),
        "hint names both ways to ask for plain HTTP\n{run}"
    );
    let run = pusher()
        .args(["push", "--source"])
        .arg(&file)
        .args(["--target", &bare, "--insecure"])
        .run()
        .success();
    let digest = verify_target(&RegistryClient::new(&registry), "plain/app", "1", &expected);
    assert_eq!(run.pushed().1, digest);

    // `--insecure` allows plain HTTP but an https:// target still starts with TLS
    // (see tests/it/no_downgrade.rs), so a plain registry is a network error naming the fix.
    let run = pusher()
        .args(["push", "--source"])
        .arg(&file)
        .args(["--target", &format!("https://{bare}"), "--insecure"])
        .run()
        .failure(5);
    assert!(
        run.stderr.contains("does not speak TLS") && run.stderr.contains("http://"),
        "{run}"
    );
}

// ---------------------------------------------------------------- htpasswd

#[test]
fn htpasswd_registry_takes_basic_credentials() {
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("bob", "bob-pw")));
    let dir = support::workspace_tmp();
    let (file, expected) = archive(&dir, 5, &[10_000, 2_000]);
    let run = push(
        &registry,
        &file,
        "basic/app:1",
        &["-u", "bob", "-p", "bob-pw"],
    )
    .success();
    assert!(
        !run.stdout.contains("bob-pw") && !run.stderr.contains("bob-pw"),
        "the password is never printed\n{run}"
    );
    let client = RegistryClient::with_credentials(&registry, "bob", "bob-pw");
    let digest = verify_target(&client, "basic/app", "1", &expected);
    assert_eq!(run.pushed().1, digest);
    skopeo_verify(
        &registry,
        &SkopeoAccess::new(&registry).with_creds("bob", "bob-pw"),
        "basic/app:1",
        &digest,
        false,
    );
}

#[test]
fn htpasswd_wrong_password_is_an_auth_error() {
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("bob", "bob-pw")));
    let dir = support::workspace_tmp();
    let (file, _) = archive(&dir, 6, &[3_000]);
    let run = push(
        &registry,
        &file,
        "basic/app:1",
        &["-u", "bob", "-p", "wrong-pw", "-v"],
    )
    .failure(4);
    assert!(
        !run.stderr.contains("[http] HEAD") && !run.stderr.contains("[http] POST"),
        "found out at the API check, before touching any blob\n{run}"
    );
    assert!(
        run.stderr.contains("bob") && !run.stderr.contains("wrong-pw"),
        "names the user, never the password\n{run}"
    );
    let error = run.stderr.lines().last().unwrap_or_default();
    assert!(
        error.contains("rejected") && error.contains("check the username and password"),
        "says the credentials were refused, not that they lack permission\n{run}"
    );
    assert!(stored_blobs(&registry).is_empty());

    let run = push(&registry, &file, "basic/app:1", &[]).failure(4);
    assert!(
        run.stderr.contains("-u"),
        "says how to give credentials\n{run}"
    );
}

// ---------------------------------------------------------------- token auth

#[test]
fn token_auth_push_shares_one_token_across_workers() {
    let registry = token_registry(300);
    let dir = support::workspace_tmp();
    let sizes: Vec<usize> = (0..11).map(|i| 2_000 + i * 700).collect();
    let (file, expected) = archive(&dir, 7, &sizes);
    let run = push(
        &registry,
        &file,
        "tok/app:1",
        &[
            "-u",
            "alice",
            "-p",
            "alice-pw",
            "--max-concurrent",
            "4",
            "-v",
        ],
    )
    .success();
    assert!(
        run.stderr.contains("[http] PUT"),
        "the request log is on\n{run}"
    );
    // JWTs start with base64 of `{"`: no token, password or header in the log.
    for secret in ["eyJ", "alice-pw", "Bearer", "Basic "] {
        assert!(
            !run.stderr.contains(secret),
            "{secret} in the output\n{run}"
        );
    }
    // Read before anything else asks the token server.
    let by_pusher = registry.token_server().unwrap().request_log();
    // 12 blobs (config + 11 layers) and a manifest, four workers: a token per request or
    // per worker would show here. One token checks the credentials at the ping, one
    // carries the push.
    assert!(
        !by_pusher.is_empty() && by_pusher.len() <= 2,
        "the pusher fetched {} tokens: {by_pusher:?}",
        by_pusher.len()
    );
    for request in &by_pusher {
        assert_eq!(request.status, 200);
        assert_eq!(request.account.as_deref(), Some("alice"));
    }
    let client = RegistryClient::with_credentials(&registry, "alice", "alice-pw");
    let digest = verify_target(&client, "tok/app", "1", &expected);
    assert_eq!(run.pushed().1, digest);
    skopeo_verify(
        &registry,
        &SkopeoAccess::new(&registry).with_creds("alice", "alice-pw"),
        "tok/app:1",
        &digest,
        false,
    );
}

#[test]
fn token_auth_wrong_password_is_an_auth_error() {
    let registry = token_registry(300);
    let dir = support::workspace_tmp();
    let (file, _) = archive(&dir, 8, &[3_000]);
    let run = push(
        &registry,
        &file,
        "tok/app:1",
        &["-u", "alice", "-p", "nope"],
    )
    .failure(4);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line\n{run}");
    assert!(
        errors[0].contains("alice") && errors[0].contains("rejected"),
        "{run}"
    );
    assert!(!run.stderr.contains("nope"), "{run}");
    assert!(stored_blobs(&registry).is_empty());
}

#[test]
fn read_only_token_on_an_unknown_repository_is_a_clear_denial() {
    let registry = token_registry(300);
    let dir = support::workspace_tmp();
    let (file, _) = archive(&dir, 9, &[3_000]);
    let run = push(
        &registry,
        &file,
        "team/new-repo:1",
        &["-u", "reader", "-p", "reader-pw"],
    )
    .failure(4);
    let error = run.stderr.lines().last().unwrap_or_default();
    assert!(error.starts_with("error:"), "{run}");
    assert!(
        error.contains("access denied for user \"reader\""),
        "says who was denied\n{run}"
    );
    assert!(error.contains("permission"), "says why\n{run}");
    assert!(stored_blobs(&registry).is_empty());
    assert!(!run.stderr.contains("reader-pw"));
}

#[test]
fn anonymous_push_to_a_token_registry_asks_for_credentials() {
    let registry = token_registry(300);
    let dir = support::workspace_tmp();
    let (file, _) = archive(&dir, 10, &[3_000]);
    let run = push(&registry, &file, "tok/app:1", &[]).failure(4);
    let error = run.stderr.lines().last().unwrap_or_default();
    assert!(
        error.contains("authentication required") && error.contains("-u/--username"),
        "{run}"
    );
}

#[test]
fn anonymous_tokens_suffice_where_the_registry_grants_anonymous_push() {
    let opts = TokenOptions::new().grant(Grant::anonymous("open/*", &["pull", "push"]));
    let registry = TestRegistry::start(RegistryOptions::plain().auth(Auth::Token(opts)));
    let dir = support::workspace_tmp();
    let (file, expected) = archive(&dir, 12, &[3_000, 1_000]);
    let run = push(&registry, &file, "open/app:1", &[]).success();
    let log = registry.token_server().unwrap().request_log();
    assert!(
        log.iter().all(|r| r.account.is_none() && r.status == 200),
        "{log:?}"
    );
    let digest = verify_target(&RegistryClient::new(&registry), "open/app", "1", &expected);
    assert_eq!(run.pushed().1, digest);
}

/// The registry refuses a token the pusher still holds (here: one upload PUT answered
/// with the registry's own `invalid_token` challenge): the pusher fetches a new token and
/// carries on, and the image lands intact.
#[test]
fn token_refused_mid_push_is_renewed_and_the_push_completes() {
    let registry = token_registry(300);
    let dir = support::workspace_tmp();
    let (file, expected) = archive(&dir, 11, &[9_000, 4_000, 1_000]);
    let ping = RegistryClient::new(&registry)
        .raw("GET", "/v2/", None)
        .unwrap();
    let challenge = format!(
        "{},scope=\"repository:tok/app:pull,push\",error=\"invalid_token\"",
        ping.header("www-authenticate").unwrap()
    );
    let upstream = registry.host().parse().unwrap();
    let proxy = RevokingProxy::start(upstream, "PUT", "/v2/tok/app/blobs/uploads/", &challenge);
    let run = pusher()
        .args(["push", "--source"])
        .arg(&file)
        .arg("--target")
        .arg(format!("http://{}/tok/app:1", proxy.host()))
        .args(["-u", "alice", "-p", "alice-pw", "-v"])
        .run()
        .success();
    assert!(proxy.refused(), "the refusal happened\n{run}");
    let by_pusher = registry.token_server().unwrap().request_log();
    let for_push = by_pusher
        .iter()
        .filter(|r| {
            r.scopes
                .iter()
                .any(|s| s.starts_with("repository:tok/app:"))
        })
        .count();
    assert_eq!(for_push, 2, "one token, then one renewal: {by_pusher:?}");
    let client = RegistryClient::with_credentials(&registry, "alice", "alice-pw");
    let digest = verify_target(&client, "tok/app", "1", &expected);
    assert_eq!(run.pushed().1, digest);
}

/// Everything at once: TLS, token auth, four workers, chunked uploads read from the
/// middle of a gzipped archive, and a multi-platform index.
#[test]
fn tls_token_auth_chunked_parallel_push_of_a_gzipped_index() {
    let opts = TokenOptions::new()
        .user("alice", "alice-pw")
        .grant(Grant::user("alice", "*", &["pull", "push"]));
    let registry = TestRegistry::start(RegistryOptions::plain().tls(true).auth(Auth::Token(opts)));
    let dir = support::workspace_tmp();
    let tar = dir.path().join("index.tar");
    let exp = write_oci_archive(&tar, &[(OciEntry::Index(platforms(13)), "all")]).unwrap();
    let gz = dir.path().join("index.tar.gz");
    gzip_file(&tar, &gz).unwrap();
    let run = push(
        &registry,
        &gz,
        "combo/app:all",
        &[
            "-u",
            "alice",
            "--password-stdin",
            "--max-concurrent",
            "4",
            "--large-layer-threshold",
            "2K",
            "--chunk-size",
            "1500",
        ],
    );
    // `push` gives no stdin; run again the way a script would.
    assert_eq!(
        run.code,
        Some(2),
        "--password-stdin with nothing on stdin is a usage error\n{run}"
    );
    let run = pusher()
        .args(["push", "--source"])
        .arg(&gz)
        .arg("--target")
        .arg(format!("{}/combo/app:all", registry.url()))
        .arg("--ca-cert")
        .arg(registry.ca_cert_path().unwrap())
        .args(["-u", "alice", "--password-stdin", "--max-concurrent", "4"])
        .args(["--large-layer-threshold", "2K", "--chunk-size", "1500"])
        .stdin("alice-pw\n")
        .run()
        .success();
    let client = RegistryClient::with_credentials(&registry, "alice", "alice-pw");
    let digest = verify_target(&client, "combo/app", "all", &exp.targets[0]);
    assert_eq!(Some(&digest), exp.targets[0].digest.as_ref());
    assert_eq!(run.pushed().1, digest);
    skopeo_verify(
        &registry,
        &SkopeoAccess::new(&registry).with_creds("alice", "alice-pw"),
        "combo/app:all",
        &digest,
        true,
    );
}
