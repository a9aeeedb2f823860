//! Once a target is `https://`, nothing the registry answers moves credentials or layer
//! data onto plain HTTP: not an upload `Location` from distribution behind a TLS proxy
//! without X-Forwarded-Proto, not a redirect, not a Bearer realm. Each is refused with a
//! one-line error naming the misconfiguration (exit 6), and the plain-HTTP listener it
//! pointed to sees nothing; `--insecure` on the `https://` target follows it with a
//! warning. Also here: answers that merely look odd (a HEAD of the wrong size, a token
//! that claims to live for 2^64 seconds) and a password typed into the target.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fixtures::{TestImage, write_docker25};
use crate::support;
use crate::support::pki::{ServerCerts, make_server_certs};
use crate::support::{
    Auth, Fault, FaultProxy, Grant, Match, Mode, Pusher, RecordingServer, RegistryOptions, Rule,
    Run, TestRegistry, TlsFront, TokenOptions, verify_reported_image,
};

const PASSWORD: &str = "Pl41n-http-n3ver-9c1e";

fn fixture(dir: &Path) -> (PathBuf, Vec<String>) {
    let archive = dir.join("image.tar");
    let image = TestImage::new(31, &[200_000], false, ("linux", "amd64"));
    let expected = write_docker25(&archive, &[(image, vec!["tls/app:1".into()])]).expect("fixture");
    (archive, expected.blob_digests())
}

fn certs(dir: &Path) -> ServerCerts {
    make_server_certs(&dir.join("front-tls"))
}

/// `push` to `https://<front>/tls/app:1`, trusting the front's CA, as alice.
fn push_through(dir: &Path, archive: &Path, front: &TlsFront, certs: &ServerCerts) -> Pusher {
    let target = format!("https://{}/tls/app:1", front.host());
    let ca = certs.ca_cert.display().to_string();
    Pusher::push(
        dir,
        archive,
        &target,
        &["-q", "--ca-cert", &ca, "-u", "alice", "--password-stdin"],
    )
    .stdin(PASSWORD)
}

/// The run failed with exit 6 and exactly one error line holding every `fragment`.
fn assert_refused(run: &Run, fragments: &[&str]) {
    run.expect_code(6);
    assert!(!run.panicked(), "{run}");
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "one error line\n{run}");
    for fragment in fragments {
        assert!(errors[0].contains(fragment), "{fragment:?} missing\n{run}");
    }
    assert!(
        !run.stderr.contains(PASSWORD) && !run.stdout.contains(PASSWORD),
        "{run}"
    );
}

#[test]
fn an_upload_location_on_plain_http_is_refused_before_credentials_or_layers_reach_it() {
    let dir = support::workspace_tmp();
    let (archive, _) = fixture(dir.path());
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("alice", PASSWORD)));
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let plain = RecordingServer::start(202);
    proxy.add(
        Rule::new(
            Match::method("POST"),
            Fault::RewriteHeader {
                name: "Location".into(),
                value: format!("{}/v2/tls/app/blobs/uploads/u1?_state=s", plain.url()),
            },
        )
        .always(),
    );
    let certs = certs(dir.path());
    let front = TlsFront::start(&certs, &proxy.host());

    let run = push_through(dir.path(), &archive, &front, &certs).run();
    assert_refused(
        &run,
        &[
            "answered an upload Location on plain http://",
            "X-Forwarded-Proto",
            "refusing to send credentials and layer data without TLS",
            "--insecure",
        ],
    );
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
}

#[test]
fn distribution_behind_a_tls_proxy_without_forwarded_proto_is_named_as_the_cause() {
    let dir = support::workspace_tmp();
    let (archive, _) = fixture(dir.path());
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("alice", PASSWORD)));
    let certs = certs(dir.path());
    // No rewriting: the registry itself answers http://<front>/... as it sees no TLS.
    let front = TlsFront::start(&certs, &registry.host());

    let run = push_through(dir.path(), &archive, &front, &certs).run();
    assert_refused(
        &run,
        &[
            &format!(
                "{} answered an upload Location on plain http://{}/v2/tls/app/blobs/uploads/",
                front.host(),
                front.host()
            ),
            "X-Forwarded-Proto",
        ],
    );
    assert!(
        !run.stderr.contains("_state"),
        "no upload state in messages\n{run}"
    );
}

#[test]
fn insecure_on_an_https_target_follows_a_plain_location_with_a_warning_even_when_quiet() {
    let dir = support::workspace_tmp();
    let (archive, _) = fixture(dir.path());
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("alice", PASSWORD)));
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let plain = RecordingServer::start(400);
    proxy.add(
        Rule::new(
            Match::method("POST"),
            Fault::RewriteHeader {
                name: "Location".into(),
                value: format!("{}/v2/tls/app/blobs/uploads/u1", plain.url()),
            },
        )
        .always(),
    );
    let certs = certs(dir.path());
    let front = TlsFront::start(&certs, &proxy.host());

    let run = push_through(dir.path(), &archive, &front, &certs)
        .arg("--insecure")
        .run();
    assert!(!run.panicked(), "{run}");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("warning: --insecure:") && l.contains("plain")),
        "the downgrade is warned about under -q\n{run}"
    );
    let followed = plain.requests();
    assert!(!followed.is_empty(), "the Location was followed\n{run}");
    // Another port is another origin: the credentials stay with the registry.
    assert!(
        followed.iter().all(|r| r.header("authorization").is_none()),
        "{followed:?}"
    );
}

#[test]
fn a_redirect_to_plain_http_is_refused_and_nothing_reaches_its_target() {
    let dir = support::workspace_tmp();
    let (archive, _) = fixture(dir.path());
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("alice", PASSWORD)));
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let plain = RecordingServer::start(200);
    proxy.add(
        Rule::new(
            Match::method("HEAD"),
            Fault::redirect(307, &format!("{}/v2/tls/app/blobs/x", plain.url())),
        )
        .always(),
    );
    let certs = certs(dir.path());
    let front = TlsFront::start(&certs, &proxy.host());

    let run = push_through(dir.path(), &archive, &front, &certs).run();
    assert_refused(&run, &["redirected to plain http://", "without TLS"]);
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
}

#[test]
fn a_plain_http_token_realm_of_an_https_registry_gets_no_credentials() {
    let dir = support::workspace_tmp();
    let (archive, _) = fixture(dir.path());
    let tokens = TokenOptions::new()
        .user("alice", PASSWORD)
        .grant(Grant::user("alice", "*", &["pull", "push"]));
    // A plain registry's realm is http://; behind the TLS front the client sees https.
    let registry = TestRegistry::start(RegistryOptions::plain().auth(Auth::Token(tokens)));
    let certs = certs(dir.path());
    let front = TlsFront::start(&certs, &registry.host());

    let run = push_through(dir.path(), &archive, &front, &certs).run();
    assert_refused(
        &run,
        &["sent clients to a token service on plain http://", "realm"],
    );
    let seen = registry.token_server().unwrap().request_log();
    assert!(seen.is_empty(), "the plain realm was asked: {seen:?}");
}

#[test]
fn a_tls_registry_with_an_https_realm_takes_the_push() {
    let dir = support::workspace_tmp();
    let (archive, blobs) = fixture(dir.path());
    let tokens = TokenOptions::new()
        .user("alice", PASSWORD)
        .grant(Grant::user("alice", "*", &["pull", "push"]));
    let registry =
        TestRegistry::start(RegistryOptions::plain().tls(true).auth(Auth::Token(tokens)));
    assert!(registry.token_realm().unwrap().starts_with("https://"));
    let ca = registry.ca_cert_path().unwrap().display().to_string();
    let target = format!("https://{}/tls/app:1", registry.host());
    let run = Pusher::push(
        dir.path(),
        &archive,
        &target,
        &[
            "--json",
            "--ca-cert",
            &ca,
            "-u",
            "alice",
            "--password-stdin",
        ],
    )
    .stdin(PASSWORD)
    .run();
    run.expect_success();
    assert!(!run.stderr.contains("warning:"), "{run}");
    let client = support::RegistryClient::with_credentials(&registry, "alice", PASSWORD);
    verify_reported_image(&client, &run, "tls/app", "1", &blobs);
}

#[test]
fn a_token_that_claims_to_live_2_to_the_64_seconds_is_used_not_a_crash() {
    let dir = support::workspace_tmp();
    let (archive, blobs) = fixture(dir.path());
    for lifetime in [u64::MAX, i64::MAX as u64] {
        let tokens = TokenOptions::new()
            .user("alice", PASSWORD)
            .grant(Grant::user("alice", "*", &["pull", "push"]))
            .advertised_lifetime(Duration::from_secs(lifetime));
        let registry = TestRegistry::start(RegistryOptions::plain().auth(Auth::Token(tokens)));
        let target = format!("http://{}/tls/app:1", registry.host());
        let run = Pusher::push(
            dir.path(),
            &archive,
            &target,
            &["--json", "-u", "alice", "--password-stdin"],
        )
        .stdin(PASSWORD)
        .run();
        assert!(!run.panicked(), "expires_in {lifetime}\n{run}");
        run.expect_success();
        let client = support::RegistryClient::with_credentials(&registry, "alice", PASSWORD);
        verify_reported_image(&client, &run, "tls/app", "1", &blobs);
    }
}

#[test]
fn a_blob_the_registry_reports_at_another_size_is_uploaded_again() {
    let dir = support::workspace_tmp();
    let (archive, blobs) = fixture(dir.path());
    let registry = TestRegistry::start(RegistryOptions::plain());
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let target = format!("http://{}/tls/app:1", proxy.host());
    Pusher::push(dir.path(), &archive, &target, &["--json"])
        .run()
        .expect_success();

    proxy.clear_log();
    proxy.add(
        Rule::new(
            Match::method("HEAD").path("/blobs/"),
            Fault::RewriteHeader {
                name: "Content-Length".into(),
                value: "7".into(),
            },
        )
        .always(),
    );
    let run = Pusher::push(dir.path(), &archive, &target, &["--json"]).run();
    run.expect_success();
    assert_eq!(run.report_u64("blobs_existing"), 0, "{run}");
    assert_eq!(
        run.report_u64("blobs_uploaded") as usize,
        blobs.len(),
        "{run}"
    );
    assert!(
        proxy.blob_bytes_received() > 200_000,
        "{}",
        proxy.describe()
    );
    let client = support::RegistryClient::new(&registry);
    verify_reported_image(&client, &run, "tls/app", "1", &blobs);
}

#[test]
fn a_password_in_the_target_url_is_never_echoed() {
    let dir = support::workspace_tmp();
    let (archive, _) = fixture(dir.path());
    for target in [
        format!("https://alice:{PASSWORD}@registry.example.com/app:1"),
        format!("alice:{PASSWORD}@registry.example.com/app:1"),
        format!("https://{PASSWORD}@registry.example.com/app:1"),
    ] {
        let run = Pusher::push(dir.path(), &archive, &target, &[]).run();
        run.expect_code(2);
        assert!(!run.stderr.contains(PASSWORD), "{run}");
        assert!(!run.stdout.contains(PASSWORD), "{run}");
        assert!(run.stderr.contains("***@registry.example.com"), "{run}");
    }
}
