//! `push --all`: a bundle of three images sharing a base layer mirrored into one registry,
//! each under its own repository path below the prefix; the base goes up once and is
//! mounted into the other two repositories (counted at a proxy in front of the registry).
//! A failing image is reported and the others still land; a cache directory works as the
//! bundle too.

use std::path::Path;

use crate::fixtures::{TestImage, TestLayer, write_docker25};
use crate::support::cache::run_ok;
use crate::support::{
    Fault, FaultProxy, Match, Mode, Pusher, RegistryClient, RegistryOptions, Rule, TestRegistry,
    verify_image, workspace_tmp,
};

/// Three images over one base layer: `example.com/team/a:1`, `example.com/team/b:1` and
/// `c:2` (Docker Hub's `library/c`).
fn bundle(path: &Path) -> (crate::fixtures::Expected, TestLayer) {
    let base = TestLayer::new(100, 900_000, true);
    let image = |seed: u64| {
        TestImage::from_layers(
            seed,
            vec![base.clone(), TestLayer::new(seed * 10, 200_000, true)],
            ("linux", "amd64"),
        )
    };
    let expected = write_docker25(
        path,
        &[
            (image(1), vec!["example.com/team/a:1".into()]),
            (image(2), vec!["example.com/team/b:1".into()]),
            (image(3), vec!["c:2".into()]),
        ],
    )
    .expect("fixture");
    (expected, base)
}

const TARGETS: [(&str, &str); 3] = [
    ("mirror/team/a", "1"),
    ("mirror/team/b", "1"),
    ("mirror/library/c", "2"),
];

fn push_all(source: &Path, target: &str, cache: &Path, extra: &[&str]) -> crate::support::Run {
    let mut args = vec![
        "push",
        "--source",
        source.to_str().unwrap(),
        "--all",
        "--target",
        target,
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Pusher::without_credentials(&args).run()
}

/// The digest each result line gives for `reference`.
fn reported_digest(stdout: &str, reference: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{reference}: digest: ")))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

#[test]
fn a_bundle_is_mirrored_with_a_shared_base_uploaded_once_and_mounted_twice() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let dir = workspace_tmp();
    let archive = dir.path().join("bundle.tar");
    let (expected, _) = bundle(&archive);
    // Docker 25 archives hold layers uncompressed: the base blob is the layer's tar.
    let base = &expected.targets[0].manifests[0].layers[0];
    assert_eq!(base, &expected.targets[2].manifests[0].layers[0]);
    let target = format!("http://{}/mirror", proxy.host());

    let run = push_all(&archive, &target, &dir.path().join("cache"), &[]);
    run.expect_success();

    let client = RegistryClient::new(&registry);
    for (index, (repository, tag)) in TARGETS.iter().enumerate() {
        let reference = format!("{}/{repository}:{tag}", proxy.host());
        let digest = reported_digest(&run.stdout, &reference)
            .unwrap_or_else(|| panic!("no result line for {reference}\n{run}"));
        let manifest = &expected.targets[index].manifests[0];
        let mut blobs = vec![manifest.config.digest.clone()];
        blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        verify_image(&client, repository, tag, &digest, &blobs);
    }
    let base_hex = base.digest.trim_start_matches("sha256:");
    let exchanges = proxy.exchanges();
    let uploads = exchanges
        .iter()
        .filter(|e| e.request.is_blob_upload() && e.request.query.contains(base_hex))
        .count();
    let mounts = exchanges
        .iter()
        .filter(|e| {
            e.request.method == "POST"
                && e.request
                    .query
                    .contains(&format!("mount=sha256:{base_hex}"))
                && e.status == Some(201)
        })
        .count();
    assert_eq!(uploads, 1, "the base goes up once\n{}", proxy.describe());
    assert_eq!(mounts, 2, "and is mounted twice\n{}", proxy.describe());
    assert!(
        run.stderr
            .contains("3 of 3 images pushed; 7 blobs: 7 uploaded"),
        "{run}"
    );
}

#[test]
fn a_failing_image_is_reported_and_the_others_still_land() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    proxy.add(
        Rule::new(
            Match::method("PUT").path("/mirror/team/b/manifests/"),
            Fault::respond(500),
        )
        .always(),
    );
    let dir = workspace_tmp();
    let archive = dir.path().join("bundle.tar");
    bundle(&archive);
    let target = format!("http://{}/mirror", proxy.host());

    let run = push_all(
        &archive,
        &target,
        &dir.path().join("cache"),
        &["--retry-attempts", "0"],
    );

    assert_eq!(run.code, Some(6), "{run}");
    let failed = format!("{}/mirror/team/b:1: failed: ", proxy.host());
    assert!(run.stdout.contains(&failed), "{run}");
    assert!(run.stderr.contains("1 of 3 images failed"), "{run}");
    let client = RegistryClient::new(&registry);
    for (repository, tag) in [TARGETS[0], TARGETS[2]] {
        let reference = format!("{}/{repository}:{tag}", proxy.host());
        assert!(reported_digest(&run.stdout, &reference).is_some(), "{run}");
        assert!(client.tags(repository).contains(&tag.to_string()));
    }
}

#[test]
fn every_image_of_a_cache_directory_is_mirrored() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let dir = workspace_tmp();
    let archive = dir.path().join("bundle.tar");
    bundle(&archive);
    let cache = dir.path().join("usb-cache");
    run_ok(&[
        "extract",
        "-f",
        archive.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);

    let target = format!("http://{}/mirror", registry.host());
    let run = push_all(&cache, &target, &dir.path().join("state"), &["--json"]);
    run.expect_success();

    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["images"].as_array().unwrap().len(), 3, "{run}");
    assert_eq!(report["images_failed"], 0);
    assert_eq!(report["blobs_mounted"], 2, "{run}");
    let client = RegistryClient::new(&registry);
    for (repository, tag) in TARGETS {
        assert!(
            client.tags(repository).contains(&tag.to_string()),
            "{repository}"
        );
    }
}

#[test]
fn a_second_run_sends_no_blob_and_skip_existing_skips_whole_images() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let dir = workspace_tmp();
    let archive = dir.path().join("bundle.tar");
    bundle(&archive);
    let target = format!("http://{}/mirror", proxy.host());
    let cache = dir.path().join("cache");
    push_all(&archive, &target, &cache, &[]).expect_success();

    proxy.clear_log();
    let again = push_all(&archive, &target, &cache, &["--json"]);
    again.expect_success();
    let report: serde_json::Value = serde_json::from_str(again.stdout.trim()).unwrap();
    assert_eq!(report["blobs_existing"], 9, "{again}");
    assert_eq!(proxy.blob_bytes_received(), 0, "{}", proxy.describe());

    proxy.clear_log();
    let skipped = push_all(&archive, &target, &cache, &["--json", "--skip-existing"]);
    skipped.expect_success();
    let report: serde_json::Value = serde_json::from_str(skipped.stdout.trim()).unwrap();
    assert_eq!(report["blobs"], 0, "{skipped}");
    for image in report["images"].as_array().unwrap() {
        assert_eq!(image["up_to_date"], true, "{skipped}");
    }
    assert!(
        proxy.exchanges().iter().all(|e| e.request.method != "PUT"),
        "{}",
        proxy.describe()
    );
}
