//! Proves the test harness in `tests/common` against the real registry:
//! every mode (plain, TLS, htpasswd, token) and the lifecycle operations
//! other tests rely on (restart, kill, parallel instances).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::registry::require_registry_binary;
use crate::support::{
    Auth, Grant, RegistryClient, RegistryOptions, TestRegistry, TokenOptions, same_scope,
    sha256_digest,
};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A minimal but valid OCI image; `seed` makes contents (and digests) unique.
struct Image {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

fn tiny_image(seed: &str) -> Image {
    let layer = format!("layer content for {seed}\n")
        .repeat(64)
        .into_bytes();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&layer)] },
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len() },
        "layers": [{ "mediaType": OCI_LAYER, "digest": sha256_digest(&layer), "size": layer.len() }],
    })
    .to_string()
    .into_bytes();
    Image {
        config,
        layer,
        manifest,
    }
}

/// Pushes blobs then manifest; returns the manifest digest.
fn push_image(client: &RegistryClient, repo: &str, tag: &str, image: &Image) -> String {
    client.put_blob(repo, &image.config);
    client.put_blob(repo, &image.layer);
    client.put_manifest(repo, tag, OCI_MANIFEST, &image.manifest)
}

/// Pulls the image back by tag and checks every byte.
fn assert_image_pullable(client: &RegistryClient, repo: &str, tag: &str, image: &Image) {
    let (body, content_type, digest) = client.get_manifest(repo, tag, &[OCI_MANIFEST]);
    assert_eq!(body, image.manifest);
    assert_eq!(content_type, OCI_MANIFEST);
    assert_eq!(digest, sha256_digest(&image.manifest));
    assert_eq!(
        client.get_blob(repo, &sha256_digest(&image.config)),
        image.config
    );
    assert_eq!(
        client.get_blob(repo, &sha256_digest(&image.layer)),
        image.layer
    );
}

fn token_registry(lifetime: Duration) -> TestRegistry {
    let opts = TokenOptions::new()
        .user("alice", "alice-pw")
        .user("reader", "reader-pw")
        .grant(Grant::user("alice", "*", &["pull", "push"]))
        .grant(Grant::user("reader", "team/*", &["pull"]))
        .grant(Grant::anonymous("public/*", &["pull"]))
        .lifetime(lifetime);
    TestRegistry::start(RegistryOptions::plain().auth(Auth::Token(opts)))
}

// ---- plain HTTP -----------------------------------------------------------

#[test]
fn plain_registry_round_trips_blobs_and_manifest() {
    let reg = TestRegistry::start(RegistryOptions::plain());
    assert!(reg.url().starts_with("http://127.0.0.1:"), "{}", reg.url());
    assert_eq!(reg.url(), format!("http://{}", reg.host()));
    assert!(reg.ca_cert_path().is_none());

    let client = RegistryClient::new(&reg);
    let image = tiny_image("plain");
    let manifest_digest = push_image(&client, "selftest/plain", "v1", &image);
    assert_eq!(manifest_digest, sha256_digest(&image.manifest));

    assert_image_pullable(&client, "selftest/plain", "v1", &image);
    // By digest as well as by tag.
    let (by_digest, _, _) =
        client.get_manifest("selftest/plain", &manifest_digest, &[OCI_MANIFEST]);
    assert_eq!(by_digest, image.manifest);
    assert_eq!(client.tags("selftest/plain"), vec!["v1".to_string()]);
    assert!(client.blob_exists("selftest/plain", &sha256_digest(&image.layer)));
    assert!(!client.blob_exists("selftest/plain", &sha256_digest(b"never uploaded")));

    // Storage really is on disk in the instance's directory, and the log is captured.
    assert!(
        reg.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .is_dir()
    );
    assert!(
        reg.log().contains(&format!("listening on {}", reg.host())),
        "log:\n{}",
        reg.log()
    );
}

// ---- TLS ------------------------------------------------------------------

#[test]
fn tls_registry_is_trusted_with_the_test_ca_only() {
    let reg = TestRegistry::start(RegistryOptions::plain().tls(true));
    assert!(reg.url().starts_with("https://127.0.0.1:"), "{}", reg.url());
    let ca = reg.ca_cert_path().expect("TLS registry has a CA");
    assert!(ca.is_file());

    let client = RegistryClient::new(&reg);
    let image = tiny_image("tls");
    push_image(&client, "selftest/tls", "v1", &image);
    assert_image_pullable(&client, "selftest/tls", "v1", &image);

    // The certificate also names `localhost`.
    let via_localhost = format!("https://localhost:{}/v2/", reg.port());
    let resp = reg
        .agent()
        .get(&via_localhost)
        .call()
        .expect("https via localhost");
    assert_eq!(resp.status().as_u16(), 200);

    // Without the CA the handshake must fail: proves it is real TLS with an untrusted cert.
    let untrusting = support::http_agent(None);
    assert!(untrusting.get(format!("{}/v2/", reg.url())).call().is_err());
}

// ---- htpasswd -------------------------------------------------------------

#[test]
fn htpasswd_registry_accepts_right_password_and_rejects_wrong_one() {
    let reg = TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("alice", "s3cret")));
    assert_eq!(
        reg.htpasswd_credentials(),
        Some(("alice".into(), "s3cret".into()))
    );

    let good = RegistryClient::with_credentials(&reg, "alice", "s3cret");
    let image = tiny_image("htpasswd");
    push_image(&good, "selftest/basic", "v1", &image);
    assert_image_pullable(&good, "selftest/basic", "v1", &image);

    let wrong = RegistryClient::with_credentials(&reg, "alice", "wrong");
    let err = wrong.try_put_blob("selftest/basic", b"x").unwrap_err();
    assert_eq!(err.status, 401, "{err}");
    let err = wrong
        .try_get_blob("selftest/basic", &sha256_digest(&image.layer))
        .unwrap_err();
    assert_eq!(err.status, 401, "{err}");

    let anonymous = RegistryClient::new(&reg);
    let err = anonymous
        .try_blob_exists("selftest/basic", &sha256_digest(&image.layer))
        .unwrap_err();
    assert_eq!(err.status, 401, "{err}");
    assert!(
        err.www_authenticate
            .unwrap_or_default()
            .starts_with("Basic")
    );
}

// ---- token auth -----------------------------------------------------------

#[test]
fn token_auth_push_grant_allows_push_and_pull() {
    let reg = token_registry(Duration::from_secs(300));
    let alice = RegistryClient::with_credentials(&reg, "alice", "alice-pw");
    let image = tiny_image("token-push");
    push_image(&alice, "team/app", "v1", &image);
    assert_image_pullable(&alice, "team/app", "v1", &image);

    let ts = reg.token_server().expect("token server");
    assert!(ts.tokens_issued() >= 1);
    let log = ts.request_log();
    assert!(
        log.iter().any(|r| r.account.as_deref() == Some("alice")
            && r.scopes.len() == 1
            && same_scope(&r.scopes[0], "repository:team/app:pull,push")
            && r.granted == ["repository:team/app:pull,push"]),
        "{log:#?}"
    );
    let log = ts.requests();
    assert!(
        !log.iter().any(|r| r.contains("alice-pw")),
        "passwords must not be logged"
    );
}

#[test]
fn token_response_carries_docker_token_fields() {
    let reg = token_registry(Duration::from_secs(120));
    let ts = reg.token_server().unwrap();
    let url = format!(
        "{}?service={}&scope=repository%3Apublic%2Fx%3Apull",
        ts.realm(),
        ts.service()
    );
    let mut resp = reg.agent().get(&url).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let json: serde_json::Value =
        serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(json["token"], json["access_token"]);
    assert_eq!(json["token"].as_str().unwrap().split('.').count(), 3);
    assert_eq!(json["expires_in"], 120);
    let issued_at = json["issued_at"].as_str().unwrap();
    assert!(
        issued_at.len() == 20 && issued_at.ends_with('Z'),
        "{issued_at}"
    );
    assert_eq!(ts.request_log()[0].account, None);
    assert_eq!(
        ts.request_log()[0].granted,
        vec!["repository:public/x:pull".to_string()]
    );
}

#[test]
fn token_auth_read_only_user_is_denied_push() {
    let reg = token_registry(Duration::from_secs(300));
    let alice = RegistryClient::with_credentials(&reg, "alice", "alice-pw");
    let image = tiny_image("token-ro");
    push_image(&alice, "team/app", "v1", &image);

    let reader = RegistryClient::with_credentials(&reg, "reader", "reader-pw");
    assert_image_pullable(&reader, "team/app", "v1", &image);

    let err = reader.try_put_blob("team/app", b"not allowed").unwrap_err();
    assert_eq!(err.status, 401, "{err}");
    assert!(err.is_insufficient_scope(), "{err}");
    let err = reader
        .try_put_manifest("team/app", "v2", OCI_MANIFEST, &image.manifest)
        .unwrap_err();
    assert_eq!(err.status, 401, "{err}");

    // The token server narrowed the requested pull,push down to pull.
    let log = reg.token_server().unwrap().request_log();
    assert!(
        log.iter().any(|r| r.account.as_deref() == Some("reader")
            && r.scopes.len() == 1
            && same_scope(&r.scopes[0], "repository:team/app:pull,push")
            && r.granted == ["repository:team/app:pull"]),
        "{log:#?}"
    );
}

#[test]
fn token_server_rejects_wrong_password_with_401() {
    let reg = token_registry(Duration::from_secs(300));
    let ts = reg.token_server().unwrap();
    let mallory = RegistryClient::with_credentials(&reg, "alice", "guess");

    let err = mallory.try_put_blob("team/app", b"x").unwrap_err();
    assert_eq!(err.status, 401, "{err}");
    assert!(
        err.context.contains("/token"),
        "the 401 must come from the realm: {err}"
    );
    let err = mallory.fetch_token("repository:team/app:pull").unwrap_err();
    assert_eq!(err.status, 401, "{err}");

    assert_eq!(ts.tokens_issued(), 0);
    let log = ts.requests();
    assert!(
        log.iter()
            .all(|r| r.contains("status=401") && !r.contains("guess")),
        "{log:#?}"
    );
}

#[test]
fn token_auth_anonymous_pull_grant_allows_pull_only() {
    let reg = token_registry(Duration::from_secs(300));
    let alice = RegistryClient::with_credentials(&reg, "alice", "alice-pw");
    let public = tiny_image("public");
    let private = tiny_image("private");
    push_image(&alice, "public/app", "v1", &public);
    push_image(&alice, "team/app", "v1", &private);

    let anonymous = RegistryClient::new(&reg);
    assert_image_pullable(&anonymous, "public/app", "v1", &public);

    let err = anonymous.try_put_blob("public/app", b"x").unwrap_err();
    assert_eq!(err.status, 401, "{err}");
    assert!(err.is_insufficient_scope(), "{err}");
    let err = anonymous
        .try_get_manifest("team/app", "v1", &[OCI_MANIFEST])
        .unwrap_err();
    assert_eq!(err.status, 401, "{err}");
}

#[test]
fn client_reuses_its_token_for_the_same_scope() {
    let reg = token_registry(Duration::from_secs(300));
    let ts = reg.token_server().unwrap();
    let alice = RegistryClient::with_credentials(&reg, "alice", "alice-pw");

    alice.put_blob("team/reuse", b"one");
    assert_eq!(ts.tokens_issued(), 1, "{:#?}", ts.requests());
    alice.put_blob("team/reuse", b"two");
    alice.put_blob("team/reuse", b"three");
    assert_eq!(ts.tokens_issued(), 1, "{:#?}", ts.requests());

    // A new scope (pull only) needs a new token; forgetting forces one too.
    assert!(alice.blob_exists("team/reuse", &sha256_digest(b"one")));
    assert_eq!(ts.tokens_issued(), 2);
    alice.forget_tokens();
    alice.put_blob("team/reuse", b"four");
    assert_eq!(ts.tokens_issued(), 3);
}

#[test]
fn token_older_than_its_lifetime_is_rejected_by_the_registry() {
    let lifetime = Duration::from_secs(2);
    let reg = token_registry(lifetime);
    let alice = RegistryClient::with_credentials(&reg, "alice", "alice-pw");
    let digest = alice.put_blob("team/expiry", b"expiring");
    let path = format!("/v2/team/expiry/blobs/{digest}");

    let token = alice.fetch_token("repository:team/expiry:pull").unwrap();
    // Measured after the token arrived: its effective expiry is strictly
    // before `received + lifetime + 1 s`, however slow the machine.
    let received = Instant::now();
    let bearer = format!("Bearer {token}");
    let fresh = alice.raw("GET", &path, Some(&bearer)).unwrap();
    assert_eq!(fresh.status, 200, "fresh token must work: {}", fresh.text());

    // Valid for at least `lifetime`, rejected at most one second later
    // (exp is whole seconds); despite distribution's 60 s leeway.
    thread::sleep((lifetime + Duration::from_millis(1200)).saturating_sub(received.elapsed()));
    let stale = alice.raw("GET", &path, Some(&bearer)).unwrap();
    assert_eq!(stale.status, 401, "expired token must be rejected");
    assert!(
        stale
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("invalid_token"),
        "{:?}",
        stale.headers
    );
    // ...and for the right reason (distribution logs why it rejects a token).
    assert!(
        reg.log().contains("token not to be used after"),
        "registry log:\n{}",
        reg.log()
    );

    // A fresh token works again.
    let token = alice.fetch_token("repository:team/expiry:pull").unwrap();
    let again = alice
        .raw("GET", &path, Some(&format!("Bearer {token}")))
        .unwrap();
    assert_eq!(again.status, 200);
}

// ---- lifecycle ------------------------------------------------------------

#[test]
fn restart_keeps_port_storage_and_upload_sessions() {
    let mut reg = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&reg);
    let digest = client.put_blob("selftest/restart", b"survives restarts");
    let host = reg.host();
    let pid = reg.pid();

    // An upload begun before the restart can be finished after it, because
    // http.secret is fixed and the session state lives in storage.
    let location = client.try_start_upload("selftest/restart").unwrap();
    reg.restart();
    assert_eq!(reg.host(), host);
    assert_ne!(reg.pid(), pid);
    assert!(reg.is_running());

    assert!(client.blob_exists("selftest/restart", &digest));
    assert_eq!(
        client.get_blob("selftest/restart", &digest),
        b"survives restarts"
    );
    let late = client
        .try_finish_upload("selftest/restart", &location, b"finished after restart")
        .unwrap();
    assert!(client.blob_exists("selftest/restart", &late));
    assert!(reg.log().contains("harness: start #2"));
}

#[test]
fn killed_registry_can_be_restarted_with_data_intact() {
    let mut reg = TestRegistry::start(RegistryOptions::plain().tls(true));
    let client = RegistryClient::new(&reg);
    let digest = client.put_blob("selftest/kill", b"crash me");

    reg.kill();
    assert!(!reg.is_running());
    let down = client.raw("GET", "/v2/", None).unwrap_err();
    assert_eq!(down.status, 0, "expected a connection error: {down}");

    reg.restart(); // same certs: the same client still trusts it
    assert_eq!(client.get_blob("selftest/kill", &digest), b"crash me");
}

#[test]
fn token_registry_restart_keeps_token_server_and_trust() {
    let mut reg = token_registry(Duration::from_secs(300));
    let alice = RegistryClient::with_credentials(&reg, "alice", "alice-pw");
    let digest = alice.put_blob("team/restart", b"tokens survive");
    let realm = reg.token_server().unwrap().realm();

    reg.restart();
    assert_eq!(reg.token_server().unwrap().realm(), realm);
    // The cached token (signed by the same key) is still accepted.
    let issued = reg.token_server().unwrap().tokens_issued();
    alice.put_blob("team/restart", b"after restart");
    assert_eq!(reg.token_server().unwrap().tokens_issued(), issued);
    assert!(alice.blob_exists("team/restart", &digest));
}

#[test]
fn two_registries_run_side_by_side_with_separate_storage() {
    let a = TestRegistry::start(RegistryOptions::plain());
    let b = TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("bob", "pw")));
    assert_ne!(a.port(), b.port());
    assert_ne!(a.storage_dir(), b.storage_dir());

    let ca = RegistryClient::new(&a);
    let cb = RegistryClient::with_credentials(&b, "bob", "pw");
    let da = ca.put_blob("selftest/two", b"only in a");
    let db = cb.put_blob("selftest/two", b"only in b");
    assert!(ca.blob_exists("selftest/two", &da));
    assert!(!ca.blob_exists("selftest/two", &db));
    assert!(cb.blob_exists("selftest/two", &db));
    assert!(!cb.blob_exists("selftest/two", &da));
}

#[test]
#[should_panic(expected = "install the Debian package docker-registry (make test does this)")]
fn missing_registry_binary_fails_loudly_instead_of_skipping() {
    require_registry_binary(Path::new("/nonexistent/docker-registry"));
}
