//! `pull` against the real registry: into an empty cache with every digest checked,
//! platform selection from an index, resuming after a cut connection (counting the bytes
//! the proxy forwarded), surviving SIGKILL, redirects to blob storage without credentials,
//! anonymous token pulls, corrupt content refused, and two pulls into one cache at once.

use std::collections::HashMap;
use std::time::Duration;

use crate::fixtures::{TestImage, TestLayer, digest, oci_manifest, skopeo_inspect_raw};
use crate::support::cache::*;
use crate::support::pull_proxy::{Faults, Proxy, Storage};
use crate::support::{
    Auth, Grant, Pusher, RegistryClient, RegistryOptions, Run, TestRegistry, TokenOptions,
    workspace_tmp,
};

fn small_image(seed: u64) -> TestImage {
    TestImage::new(seed, &[20_000, 60_000], true, ("linux", "amd64"))
}

#[test]
fn pull_into_an_empty_cache_stores_every_blob_verified_and_skopeo_reads_it() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let image = small_image(1);
    let manifest_digest = upload_image(&client, "team/app", "1.0", &image);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let reference = format!("{}/team/app:1.0", registry.host());

    let report = pull_report(&reference, &cache, &[]);
    assert_eq!(report["digest"], manifest_digest.as_str());
    assert_eq!(report["reference"], reference.as_str());
    assert_eq!(report["blobs_downloaded"], 3);
    for digest in image_digests(&image) {
        assert_cached(&cache, &digest);
    }
    assert_eq!(
        cached_names(&cache),
        vec![(reference.clone(), manifest_digest.clone())]
    );
    assert!(temp_files(&cache).is_empty(), "{:?}", temp_files(&cache));

    // An independent reader finds the image by its full reference.
    let raw = skopeo_inspect_raw(&format!("oci:{}:{reference}", cache.display())).unwrap();
    assert_eq!(digest(&raw), manifest_digest);

    // A second pull finds everything cached and downloads nothing.
    let again = json(
        &run_ok(&[
            "p",
            &reference,
            "--insecure",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ])
        .stdout,
    );
    assert_eq!(again["blobs_downloaded"], 0);
    assert_eq!(again["blobs_cached"], 3);
}

#[test]
fn an_index_is_narrowed_to_each_platform_or_kept_whole() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let base = TestLayer::new(77, 30_000, true);
    let amd = TestImage::from_layers(
        2,
        vec![base.clone(), TestLayer::new(78, 10_000, true)],
        ("linux", "amd64"),
    );
    let arm = TestImage::from_layers(
        3,
        vec![base, TestLayer::new(79, 10_000, true)],
        ("linux", "arm64"),
    )
    .with_variant("v8");
    let index_digest = upload_index(&client, "multi/app", "2.0", &[amd.clone(), arm.clone()]);
    let reference = format!("{}/multi/app:2.0", registry.host());
    let dir = workspace_tmp();

    for (platform, image) in [
        ("linux/amd64", &amd),
        ("linux/arm64", &arm),
        ("linux/arm64/v8", &arm),
    ] {
        let cache = dir.path().join(platform.replace('/', "-"));
        let report = pull_report(&reference, &cache, &["--platform", platform]);
        let expected = digest(&oci_manifest(image));
        assert_eq!(report["digest"], expected.as_str(), "{platform}");
        assert_eq!(cached_names(&cache), vec![(reference.clone(), expected)]);
        for blob in image_digests(image) {
            assert_cached(&cache, &blob);
        }
        let other = if std::ptr::eq(image, &amd) {
            &arm
        } else {
            &amd
        };
        let own_layer = &other.layers[1].digest;
        assert!(
            !blob_path(&cache, own_layer).exists(),
            "{platform} pulled the other platform's layer"
        );
    }

    let whole = dir.path().join("all");
    let report = pull_report(&reference, &whole, &["--all-platforms"]);
    assert_eq!(report["digest"], index_digest.as_str());
    assert_eq!(
        report["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );
    for blob in image_digests(&amd).into_iter().chain(image_digests(&arm)) {
        assert_cached(&whole, &blob);
    }
    assert_cached(&whole, &index_digest);

    let missing = run(&pull_args(
        &reference,
        &dir.path().join("none"),
        &["--platform", "linux/s390x"],
    ));
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("linux/amd64, linux/arm64/v8"),
        "{}",
        missing.stderr
    );
}

fn big_image() -> TestImage {
    // An uncompressed layer keeps the byte counts exact and the transfer long enough.
    TestImage::new(40, &[3_000_000], false, ("linux", "amd64"))
}

#[test]
fn a_cut_connection_resumes_with_a_range_request_and_fetches_nothing_twice() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let image = big_image();
    let manifest_digest = upload_image(&client, "big/app", "1", &image);
    let layer = &image.layers[0];
    let size = layer.bytes.len() as u64;
    let proxy = Proxy::start(&registry.host());
    let dir = workspace_tmp();
    let reference = format!("{}/big/app:1", proxy.host());

    // Within one run: the first GET is cut after 1 MB, the retry asks for the rest.
    proxy.set_faults(Faults {
        target: Some(layer.digest.clone()),
        cut_after: Some(1_000_000),
        cut_times: 1,
        ..Faults::default()
    });
    let cache = dir.path().join("one-run");
    let report = pull_report(&reference, &cache, &[]);
    assert_eq!(report["digest"], manifest_digest.as_str());
    assert_cached(&cache, &layer.digest);
    let gets = proxy.blob_gets(&layer.digest);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=1000000-"));
    assert_eq!(proxy.blob_bytes_sent(&layer.digest), size);

    // Across runs: the first run gives up with the partial blob kept; the next continues.
    let proxy = Proxy::start(&registry.host());
    let reference = format!("{}/big/app:1", proxy.host());
    proxy.set_faults(Faults {
        target: Some(layer.digest.clone()),
        cut_after: Some(1_200_000),
        cut_times: usize::MAX,
        ..Faults::default()
    });
    let cache = dir.path().join("two-runs");
    let args = [
        "pull",
        "-i",
        &reference,
        "--insecure",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--json",
        "--retry-attempts",
        "0",
    ];
    let failed = run(&args);
    assert_eq!(failed.code, Some(5), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("run the same command again"),
        "{}",
        failed.stderr
    );
    assert!(
        cached_names(&cache).is_empty(),
        "an incomplete image must not be listed"
    );
    let partial = cache.join("tmp").join(format!(
        "{}.partial",
        layer.digest.trim_start_matches("sha256:")
    ));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 1_200_000);

    proxy.set_faults(Faults::default());
    let report = json(&run_ok(&args).stdout);
    assert_eq!(report["bytes_resumed"], 1_200_000);
    assert_eq!(report["bytes_downloaded"], size - 1_200_000);
    let gets = proxy.blob_gets(&layer.digest);
    assert_eq!(
        gets.last().unwrap().range.as_deref(),
        Some("bytes=1200000-")
    );
    assert_eq!(proxy.blob_bytes_sent(&layer.digest), size);
    assert_cached(&cache, &layer.digest);
    assert!(!partial.exists());
}

#[test]
fn a_pull_killed_mid_blob_is_finished_by_the_next_run_and_verifies_clean() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let image = big_image();
    upload_image(&client, "big/app", "1", &image);
    let layer = &image.layers[0];
    let proxy = Proxy::start(&registry.host());
    proxy.set_faults(Faults {
        target: Some(layer.digest.clone()),
        stall_after: Some(2_000_000),
        ..Faults::default()
    });
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let reference = format!("{}/big/app:1", proxy.host());
    let args = [
        "pull",
        "-i",
        &reference,
        "--insecure",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--json",
    ];
    let mut child = spawn(&args);
    let partial = cache.join("tmp").join(format!(
        "{}.partial",
        layer.digest.trim_start_matches("sha256:")
    ));
    // The stalled transfer holds 2 MB; wait until most of it reached the partial file.
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 1_500_000 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.release();
    proxy.set_faults(Faults::default());
    assert!(cached_names(&cache).is_empty());

    let report = json(&run_ok(&args).stdout);
    assert!(
        report["bytes_resumed"].as_u64().unwrap() >= 1_500_000,
        "{report}"
    );
    for digest in image_digests(&image) {
        assert_cached(&cache, &digest);
    }
    run_ok(&["verify", "--cache-dir", cache.to_str().unwrap()]);
    assert!(temp_files(&cache).is_empty(), "{:?}", temp_files(&cache));
}

#[test]
fn a_redirect_to_blob_storage_carries_no_registry_credentials() {
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("alice", "s3cret")));
    let client = RegistryClient::with_credentials(&registry, "alice", "s3cret");
    let image = small_image(5);
    let manifest_digest = upload_image(&client, "private/app", "1", &image);
    let mut blobs = HashMap::new();
    blobs.insert(image.config_blob("").digest.clone(), image.config.clone());
    for layer in &image.layers {
        blobs.insert(layer.digest.clone(), layer.bytes.clone());
    }
    let storage = Storage::start(blobs);
    let proxy = Proxy::start(&registry.host());
    proxy.set_faults(Faults {
        redirect_to: Some(storage.url()),
        ..Faults::default()
    });
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let reference = format!("{}/private/app:1", proxy.host());
    let run = Pusher::without_credentials(&[
        "pull",
        "-i",
        &reference,
        "--insecure",
        "--cache-dir",
        cache.to_str().unwrap(),
        "-u",
        "alice",
        "--password-stdin",
        "--json",
    ])
    .stdin("s3cret\n")
    .run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(json(&run.stdout)["digest"], manifest_digest.as_str());

    let seen = storage.seen();
    assert_eq!(seen.len(), 3, "every blob came from storage: {seen:?}");
    assert!(
        seen.iter().all(|(_, auth)| auth.is_none()),
        "credentials leaked to storage: {seen:?}"
    );
    // The registry itself did see (and check) the credentials.
    assert!(
        proxy
            .log()
            .iter()
            .any(|l| l.path.contains("/blobs/") && l.status == 200)
    );
    for digest in image_digests(&image) {
        assert_cached(&cache, &digest);
    }
}

#[test]
fn anonymous_pulls_use_anonymous_tokens() {
    let options = TokenOptions::new()
        .user("alice", "pw")
        .grant(Grant::user("alice", "*", &["pull", "push"]))
        .grant(Grant::anonymous("public/*", &["pull"]));
    let registry = TestRegistry::start(RegistryOptions::plain().auth(Auth::Token(options)));
    let client = RegistryClient::with_credentials(&registry, "alice", "pw");
    let image = small_image(6);
    let manifest_digest = upload_image(&client, "public/tool", "1", &image);
    upload_image(&client, "private/tool", "1", &image);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");

    let public = format!("{}/public/tool:1", registry.host());
    let before = registry.token_server().unwrap().request_log().len();
    let report = pull_report(&public, &cache, &[]);
    assert_eq!(report["digest"], manifest_digest.as_str());
    let tokens = registry.token_server().unwrap().request_log()[before..].to_vec();
    assert!(!tokens.is_empty(), "the pull asked for a token");
    assert!(
        tokens
            .iter()
            .all(|t| t.account.is_none() && t.status == 200),
        "{tokens:?}"
    );

    let private = format!("{}/private/tool:1", registry.host());
    let denied = run(&pull_args(&private, &cache, &[]));
    assert_eq!(denied.code, Some(4), "{}", denied.stderr);
}

#[test]
fn corrupt_blobs_and_altered_manifests_never_enter_the_cache() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let image = small_image(7);
    upload_image(&client, "team/app", "1", &image);
    let proxy = Proxy::start(&registry.host());
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let reference = format!("{}/team/app:1", proxy.host());
    let layer = &image.layers[1];

    proxy.set_faults(Faults {
        target: Some(layer.digest.clone()),
        corrupt: true,
        ..Faults::default()
    });
    let corrupt = run(&pull_args(&reference, &cache, &[]));
    assert_eq!(corrupt.code, Some(6), "{}", corrupt.stderr);
    assert!(corrupt.stderr.contains("corrupt"), "{}", corrupt.stderr);
    assert!(!blob_path(&cache, &layer.digest).exists());
    assert!(cached_names(&cache).is_empty());

    proxy.set_faults(Faults {
        alter_manifests: true,
        ..Faults::default()
    });
    let altered = run(&pull_args(&reference, &cache, &[]));
    assert_eq!(altered.code, Some(6), "{}", altered.stderr);
    assert!(altered.stderr.contains("altered"), "{}", altered.stderr);
    assert!(cached_names(&cache).is_empty());
}

#[test]
fn two_pulls_into_one_cache_at_once_both_land() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let shared = TestLayer::new(90, 2_000_000, false);
    let first = TestImage::from_layers(
        91,
        vec![shared.clone(), TestLayer::new(92, 500_000, false)],
        ("linux", "amd64"),
    );
    let second = TestImage::from_layers(
        93,
        vec![shared, TestLayer::new(94, 500_000, false)],
        ("linux", "amd64"),
    );
    let first_digest = upload_image(&client, "team/one", "1", &first);
    let second_digest = upload_image(&client, "team/two", "1", &second);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap();

    for _ in 0..3 {
        let one = format!("{}/team/one:1", registry.host());
        let two = format!("{}/team/two:1", registry.host());
        let children = [
            spawn(&pull_args(&one, &cache, &[])),
            spawn(&pull_args(&two, &cache, &[])),
            spawn(&pull_args(&one, &cache, &[])),
        ];
        for child in children {
            let run = Run::wait(child);
            assert_eq!(run.code, Some(0), "{}", run.stderr);
        }
        let mut names = cached_names(&cache);
        names.sort();
        assert_eq!(
            names,
            vec![
                (one.clone(), first_digest.clone()),
                (two.clone(), second_digest.clone())
            ]
        );
        run_ok(&["verify", "--cache-dir", cache_arg]);
        assert!(temp_files(&cache).is_empty(), "{:?}", temp_files(&cache));
        run_ok(&["clean", "--cache-dir", cache_arg]);
    }
}

#[test]
fn clean_waits_for_a_running_pull_instead_of_collecting_its_blobs() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let image = big_image();
    upload_image(&client, "big/app", "1", &image);
    let other = small_image(8);
    upload_image(&client, "team/other", "1", &other);
    let proxy = Proxy::start(&registry.host());
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let other_reference = format!("{}/team/other:1", proxy.host());
    run_ok(&pull_args(&other_reference, &cache, &[]));

    // A pull stalls mid-layer with its config already stored but not yet listed: exactly
    // what an unlocked garbage collection would delete.
    proxy.set_faults(Faults {
        target: Some(image.layers[0].digest.clone()),
        stall_after: Some(100_000),
        ..Faults::default()
    });
    let reference = format!("{}/big/app:1", proxy.host());
    let mut pull = spawn(&pull_args(&reference, &cache, &[]));
    while !blob_path(&cache, &image.config_digest).exists() {
        assert!(pull.try_wait().unwrap().is_none(), "the pull ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut clean = spawn(&["clean", "--cache-dir", cache_arg, &other_reference]);
    let stderr = clean.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("waiting for other processes"), "{first}");
    assert!(blob_path(&cache, &image.config_digest).exists());

    proxy.set_faults(Faults::default());
    proxy.release();
    let pulled = Run::wait(pull);
    assert_eq!(pulled.code, Some(0), "{}", pulled.stderr);
    assert_eq!(clean.wait().unwrap().code(), Some(0));
    let names: Vec<String> = cached_names(&cache).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [reference]);
    for digest in image_digests(&image) {
        assert_cached(&cache, &digest);
    }
    run_ok(&["verify", "--cache-dir", cache_arg]);
}

#[test]
fn pull_runs_on_the_same_monitored_pool_as_push_with_dynamic_concurrency() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let image = TestImage::new(
        5,
        &[40_000, 30_000, 20_000, 10_000],
        true,
        ("linux", "amd64"),
    );
    let manifest_digest = upload_image(&client, "team/dynamic", "1", &image);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let reference = format!("{}/team/dynamic:1", registry.host());

    let run = run_ok(&[
        "pull",
        &reference,
        "--insecure",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--enable-dynamic-concurrency",
        "--max-concurrent",
        "4",
        "--json",
    ]);
    let report = json(&run.stdout);
    assert_eq!(report["digest"], manifest_digest.as_str());
    assert_eq!(report["blobs_downloaded"], 5);
    assert_eq!(report["concurrency"]["mode"], "dynamic");
    assert_eq!(report["concurrency"]["max"], 4);
    for digest in image_digests(&image) {
        assert_cached(&cache, &digest);
    }
    // Not a terminal: one plain line per finished blob and no control codes.
    assert!(!run.stderr.contains('\u{1b}'), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches(": downloaded (").count(),
        5,
        "{}",
        run.stderr
    );
}
