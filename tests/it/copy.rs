//! `copy SRC DST` between two real registries: an index copied whole with its digest, one
//! platform out of it, a download cut mid-blob continued by range, an upload cut mid-blob
//! continued from the destination's offset, a copy within one registry done by mounts, and
//! a killed copy continued by the next run. No blob lands in the cache directory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fixtures::{OCI_CONFIG, TestImage, oci_manifest};
use crate::support::cache::{image_digests, json, run, run_ok, upload_image, upload_index};
use crate::support::pull_proxy::{Faults, Proxy};
use crate::support::pusher::read_tree;
use crate::support::verify::ACCEPT_ALL;
use crate::support::{
    Auth, Fault, FaultProxy, Match, Mode, Pusher, RegistryClient, RegistryOptions, Rule, Run,
    TestRegistry, send_signal, workspace_tmp,
};

const CHUNK: u64 = 1 << 20;

fn image(seed: u64, platform: (&str, &str)) -> TestImage {
    TestImage::new(seed, &[300_000, 2_500_000], true, platform)
}

/// `copy SRC DST --cache-dir CACHE --json EXTRA...`, both ends over plain HTTP.
fn copy_args<'a>(source: &'a str, destination: &'a str, cache: &'a Path) -> Vec<&'a str> {
    vec![
        "copy",
        source,
        destination,
        "--src-insecure",
        "--dest-insecure",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--json",
    ]
}

fn assert_has_image(client: &RegistryClient, repo: &str, image: &TestImage) {
    for digest in image_digests(image) {
        if digest == crate::fixtures::digest(&oci_manifest(image)) {
            let (_, _, served) = client.get_manifest(repo, &digest, &ACCEPT_ALL);
            assert_eq!(served, digest);
        } else {
            assert!(client.blob_exists(repo, &digest), "{repo} lacks {digest}");
        }
    }
}

/// Only upload state may be in the cache directory: no `blobs/`, no partial files.
fn assert_no_blobs_stored(cache: &Path) {
    let stored: Vec<_> = read_tree(cache)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| !path.starts_with(cache.join("uploads")))
        .collect();
    assert!(stored.is_empty(), "copy stored files: {stored:?}");
}

#[test]
fn an_index_is_copied_whole_with_the_same_digests() {
    let (source, destination) = (
        TestRegistry::start(RegistryOptions::plain()),
        TestRegistry::start(RegistryOptions::plain()),
    );
    let images = [image(1, ("linux", "amd64")), image(2, ("linux", "arm64"))];
    let index = upload_index(&RegistryClient::new(&source), "team/app", "1.0", &images);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let (from, to) = (
        format!("{}/team/app:1.0", source.host()),
        format!("{}/mirror/app", destination.host()),
    );

    let report = json(&run_ok(&copy_args(&from, &to, &cache)).stdout);

    assert_eq!(report["digest"], index.as_str());
    let client = RegistryClient::new(&destination);
    let (_, _, served) = client.get_manifest("mirror/app", "1.0", &ACCEPT_ALL);
    assert_eq!(
        served, index,
        "the tag comes from the source, the digest too"
    );
    for image in &images {
        assert_has_image(&client, "mirror/app", image);
    }
    assert_eq!(report["blobs_uploaded"], 6);
    assert_no_blobs_stored(&cache);
}

#[test]
fn platform_copies_one_image_of_an_index() {
    let (source, destination) = (
        TestRegistry::start(RegistryOptions::plain()),
        TestRegistry::start(RegistryOptions::plain()),
    );
    let (amd, arm) = (image(3, ("linux", "amd64")), image(4, ("linux", "arm64")));
    upload_index(
        &RegistryClient::new(&source),
        "team/app",
        "2",
        &[amd.clone(), arm.clone()],
    );
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let from = format!("{}/team/app:2", source.host());
    let to = format!("{}/one/app:2", destination.host());
    let mut args = copy_args(&from, &to, &cache);
    args.extend(["--platform", "linux/arm64"]);

    let report = json(&run_ok(&args).stdout);

    let arm_manifest = crate::fixtures::digest(&oci_manifest(&arm));
    assert_eq!(report["digest"], arm_manifest.as_str());
    let client = RegistryClient::new(&destination);
    assert_has_image(&client, "one/app", &arm);
    assert!(!client.blob_exists("one/app", &amd.config_blob(OCI_CONFIG).digest));
}

#[test]
fn a_download_cut_mid_blob_continues_from_the_byte_reached() {
    let (source, destination) = (
        TestRegistry::start(RegistryOptions::plain()),
        TestRegistry::start(RegistryOptions::plain()),
    );
    let single = image(5, ("linux", "amd64"));
    let manifest = upload_image(&RegistryClient::new(&source), "team/app", "3", &single);
    let layer = single.layers[1].clone();
    let proxy = Proxy::start(&source.host());
    proxy.set_faults(Faults {
        target: Some(layer.digest.clone()),
        cut_after: Some(1_000_000),
        cut_times: 1,
        ..Faults::default()
    });
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let from = format!("{}/team/app:3", proxy.host());
    let to = format!("{}/cut/app:3", destination.host());

    let report = json(&run_ok(&copy_args(&from, &to, &cache)).stdout);

    assert_eq!(report["digest"], manifest.as_str());
    assert_has_image(&RegistryClient::new(&destination), "cut/app", &single);
    let gets = proxy.blob_gets(&layer.digest);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[1].range.as_deref(), Some("bytes=1000000-"));
    assert_eq!(
        proxy.blob_bytes_sent(&layer.digest),
        layer.bytes.len() as u64,
        "no byte of the source was read twice"
    );
    assert_eq!(report["bytes_resent"], 0, "the upload never saw the cut");
}

#[test]
fn a_source_that_keeps_cutting_the_download_fails_within_the_retry_budget() {
    let (source, destination) = (
        TestRegistry::start(RegistryOptions::plain()),
        TestRegistry::start(RegistryOptions::plain()),
    );
    let single = image(11, ("linux", "amd64"));
    upload_image(&RegistryClient::new(&source), "team/app", "9", &single);
    let layer = single.layers[1].clone();
    let proxy = Proxy::start(&source.host());
    proxy.set_faults(Faults {
        target: Some(layer.digest.clone()),
        cut_after: Some(100_000),
        cut_times: usize::MAX,
        ..Faults::default()
    });
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let from = format!("{}/team/app:9", proxy.host());
    let to = format!("{}/flaky/app:9", destination.host());
    let mut args = copy_args(&from, &to, &cache);
    args.extend(["--retry-attempts", "1"]);

    let failed = run(&args);

    assert_eq!(failed.code, Some(5), "{failed}");
    let gets = proxy.blob_gets(&layer.digest).len();
    assert!(
        (2..=12).contains(&gets),
        "bounded reopening: {gets} GETs\n{failed}"
    );
    assert!(
        RegistryClient::new(&destination)
            .try_get_manifest("flaky/app", "9", &ACCEPT_ALL)
            .is_err()
    );
}

#[test]
fn a_source_serving_bytes_that_do_not_match_the_digest_fails_and_tags_nothing() {
    let (source, destination) = (
        TestRegistry::start(RegistryOptions::plain()),
        TestRegistry::start(RegistryOptions::plain()),
    );
    let single = image(10, ("linux", "amd64"));
    upload_image(&RegistryClient::new(&source), "team/app", "8", &single);
    let proxy = Proxy::start(&source.host());
    proxy.set_faults(Faults {
        target: Some(single.layers[1].digest.clone()),
        corrupt: true,
        ..Faults::default()
    });
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let from = format!("{}/team/app:8", proxy.host());
    let to = format!("{}/bad/app:8", destination.host());

    let failed = run(&copy_args(&from, &to, &cache));

    assert_eq!(failed.code, Some(6), "{failed}");
    assert!(
        failed.stderr.contains("does not match its digest"),
        "{failed}"
    );
    let client = RegistryClient::new(&destination);
    assert!(
        client
            .try_get_manifest("bad/app", "8", &ACCEPT_ALL)
            .is_err()
    );
    assert!(!client.blob_exists("bad/app", &single.layers[1].digest));
}

#[test]
fn an_upload_cut_mid_blob_continues_from_the_destination_offset() {
    let (source, destination) = (
        TestRegistry::start(RegistryOptions::plain()),
        TestRegistry::start(RegistryOptions::plain()),
    );
    let big = TestImage::new(6, &[5 << 20], true, ("linux", "amd64"));
    let manifest = upload_image(&RegistryClient::new(&source), "team/app", "4", &big);
    // A front end that buffers request bodies (nginx, most production set-ups): the cut
    // chunk never reaches the registry, which keeps the session at two chunks.
    let proxy = FaultProxy::start(&destination.host(), Mode::Buffering);
    proxy.add(Rule::new(
        Match::patch().nth(3),
        Fault::CutRequestBody { after: CHUNK / 2 },
    ));
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let from = format!("{}/team/app:4", source.host());
    let to = format!("{}/cut/app:4", proxy.host());
    let mut args = copy_args(&from, &to, &cache);
    args.extend(["--large-layer-threshold", "1M", "--chunk-size", "1M"]);

    let report = json(&run_ok(&args).stdout);

    assert_eq!(report["digest"], manifest.as_str());
    assert_has_image(&RegistryClient::new(&destination), "cut/app", &big);
    assert_eq!(proxy.fired(), vec![1], "{}", proxy.describe());
    assert!(report["resumes"].as_u64().unwrap() >= 1, "{report}");
    let status_checks = proxy
        .exchanges()
        .iter()
        .filter(|e| e.request.method == "GET" && e.request.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(
        status_checks,
        1,
        "the offset is asked for once\n{}",
        proxy.describe()
    );
    let total: u64 = big.layers[0].bytes.len() as u64 + big.config.len() as u64;
    assert!(
        proxy.blob_bytes_received() < total + CHUNK,
        "at most the chunk in flight is sent again\n{}",
        proxy.describe()
    );
    assert_no_blobs_stored(&cache);
}

#[test]
fn a_copy_within_one_registry_mounts_instead_of_copying() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let single = image(7, ("linux", "amd64"));
    let manifest = upload_image(&RegistryClient::new(&registry), "team/app", "5", &single);
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let from = format!("{}/team/app:5", proxy.host());
    let to = format!("{}/other/app:5", proxy.host());

    let report = json(&run_ok(&copy_args(&from, &to, &cache)).stdout);

    assert_eq!(report["digest"], manifest.as_str());
    assert_eq!(report["blobs_mounted"], 3, "{report}");
    assert_eq!(proxy.blob_bytes_received(), 0, "{}", proxy.describe());
    let blob_reads = proxy
        .exchanges()
        .iter()
        .filter(|e| e.request.method == "GET" && e.request.path.contains("/blobs/sha256:"))
        .count();
    assert_eq!(blob_reads, 0, "no blob was read: {}", proxy.describe());
    assert_has_image(&RegistryClient::new(&registry), "other/app", &single);
}

#[test]
fn a_killed_copy_continues_where_it_stopped_on_the_next_run() {
    let (source, destination) = (
        TestRegistry::start(RegistryOptions::plain()),
        TestRegistry::start(RegistryOptions::plain()),
    );
    let big = TestImage::new(8, &[6 << 20], true, ("linux", "amd64"));
    let manifest = upload_image(&RegistryClient::new(&source), "team/app", "6", &big);
    let proxy = FaultProxy::start(&destination.host(), Mode::Buffering);
    let pid = Arc::new(AtomicU32::new(0));
    let killer = Arc::clone(&pid);
    // The copy dies as its fourth chunk arrives: three are confirmed and saved.
    proxy.add(Rule::new(
        Match::patch().nth(4),
        Fault::hook(move |_| {
            send_signal(killer.load(Ordering::SeqCst), "KILL");
            false
        }),
    ));
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let from = format!("{}/team/app:6", source.host());
    let to = format!("{}/killed/app:6", proxy.host());
    let mut args = copy_args(&from, &to, &cache);
    args.extend([
        "--large-layer-threshold",
        "1M",
        "--chunk-size",
        "1M",
        "--max-concurrent",
        "1",
    ]);
    let child = Pusher::without_credentials(&args).spawn();
    pid.store(child.id(), Ordering::SeqCst);
    let first = Run::wait(child);
    assert_eq!(first.signal, Some(9), "{first}");

    proxy.clear_rules();
    proxy.clear_log();
    let second = run(&args);
    second.expect_success();
    let report = json(&second.stdout);
    assert_eq!(report["digest"], manifest.as_str());
    assert_eq!(report["bytes_reused"], 3 * CHUNK, "{second}");
    let total: u64 = big.layers[0].bytes.len() as u64 + big.config.len() as u64;
    assert_eq!(
        proxy.blob_bytes_received(),
        total - 3 * CHUNK,
        "the second run sends only what the destination lacks\n{}",
        proxy.describe()
    );
    assert_has_image(&RegistryClient::new(&destination), "killed/app", &big);
    assert_no_blobs_stored(&cache);
}

#[test]
fn each_side_has_its_own_credentials_and_tls_and_one_password_comes_from_stdin() {
    let source =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("alice", "a-secret")));
    let destination = TestRegistry::start(
        RegistryOptions::plain()
            .tls(true)
            .auth(Auth::htpasswd("bob", "b-secret")),
    );
    let single = image(9, ("linux", "amd64"));
    let manifest = upload_image(
        &RegistryClient::with_credentials(&source, "alice", "a-secret"),
        "team/app",
        "7",
        &single,
    );
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let from = format!("http://{}/team/app:7", source.host());
    let to = format!("https://{}/secure/app:7", destination.host());
    let ca = destination
        .ca_cert_path()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let args = [
        "copy",
        &from,
        &to,
        "--src-creds",
        "alice:a-secret",
        "--dest-creds",
        "bob",
        "--dest-ca-cert",
        &ca,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--json",
    ];

    let copied = Pusher::without_credentials(&args).stdin("b-secret\n").run();
    copied.expect_success();
    assert_eq!(json(&copied.stdout)["digest"], manifest.as_str());
    assert_has_image(
        &RegistryClient::with_credentials(&destination, "bob", "b-secret"),
        "secure/app",
        &single,
    );

    let both_from_stdin = run(&[
        "copy",
        &from,
        &to,
        "--src-creds",
        "alice",
        "--dest-creds",
        "bob",
    ]);
    assert_eq!(both_from_stdin.code, Some(2), "{both_from_stdin}");
    let wrong = Pusher::without_credentials(&args).stdin("not-it\n").run();
    assert_eq!(wrong.code, Some(4), "{wrong}");
}
