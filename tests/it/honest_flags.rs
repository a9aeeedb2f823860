//! Flags that do what they say, against the real registry: `--force-upload` sends every
//! blob even where a mount would do, the seeds' `push -s` and `-h` everywhere, `list
//! --verbose` with each image's blobs, short names that find a cached image from any
//! registry, one error line when credentials are missing, `--insecure` against a TLS port,
//! counted nouns in the singular, and a pull that finds everything cached saying so.

use std::path::{Path, PathBuf};

use crate::fixtures::*;
use crate::support::cache::{image_digests, json, run, run_ok, upload_image};
use crate::support::verify::image;
use crate::support::{
    Auth, Fault, FaultProxy, Match, Mode, Pusher, RegistryClient, RegistryOptions, Rule,
    TestRegistry, TokenOptions, workspace_tmp,
};

/// A Docker 25+ archive of one uncompressed image with layers of `sizes`, named `app:1`.
fn archive(dir: &Path, seed: u64, sizes: &[usize]) -> (PathBuf, TestImage) {
    let file = dir.join(format!("image-{seed}.tar"));
    let image = image(seed, sizes, false);
    write_docker25(&file, &[(image.clone(), vec!["app:1".into()])]).unwrap();
    (file, image)
}

/// Every blob the archive's image has: its config and layers.
fn blob_bytes(image: &TestImage) -> u64 {
    image.config.len() as u64
        + image
            .layers
            .iter()
            .map(|l| l.bytes.len() as u64)
            .sum::<u64>()
}

#[test]
fn force_upload_sends_every_blob_where_a_mount_would_have_sent_nothing() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let dir = workspace_tmp();
    let (file, image) = archive(dir.path(), 1, &[40_000, 30_000]);
    let target = |repo: &str| format!("http://{}/{repo}:1", proxy.host());
    // The first push teaches the cache where the blobs live on this registry.
    Pusher::push(dir.path(), &file, &target("first/app"), &["--json"])
        .run()
        .success();

    // Without the flag, a push to another repository mounts: no blob bytes go up.
    proxy.clear_log();
    let mounted = Pusher::push(dir.path(), &file, &target("second/app"), &["--json"])
        .run()
        .success();
    assert_eq!(mounted.report_u64("blobs_mounted"), 3, "{mounted}");
    assert_eq!(proxy.blob_bytes_received(), 0, "{}", proxy.describe());

    // With it, every blob's bytes go up: no HEAD check, no mount.
    proxy.clear_log();
    let forced = Pusher::push(
        dir.path(),
        &file,
        &target("third/app"),
        &["--json", "--force-upload"],
    )
    .run()
    .success();
    assert_eq!(forced.report_u64("blobs_uploaded"), 3, "{forced}");
    assert_eq!(forced.report_u64("blobs_mounted"), 0, "{forced}");
    assert_eq!(forced.report_u64("blobs_existing"), 0, "{forced}");
    assert_eq!(
        proxy.blob_bytes_received(),
        blob_bytes(&image),
        "{}",
        proxy.describe()
    );
    let exchanges = proxy.exchanges();
    assert!(
        !exchanges.iter().any(|e| e.request.query.contains("mount=")),
        "no mount was tried\n{}",
        proxy.describe()
    );
    assert!(
        !exchanges
            .iter()
            .any(|e| e.request.method == "HEAD" && e.request.path.contains("/blobs/")),
        "no blob was checked for\n{}",
        proxy.describe()
    );
    let client = RegistryClient::new(&registry);
    for digest in image_digests(&image).iter().skip(1) {
        assert!(client.blob_exists("third/app", digest), "{digest}");
    }

    // A dry run says what the real run would do: with the flag, every blob would go up.
    let dry = |extra: &[&str]| {
        let mut args = vec!["--json", "--dry-run"];
        args.extend_from_slice(extra);
        Pusher::push(dir.path(), &file, &target("first/app"), &args)
            .run()
            .success()
    };
    assert_eq!(dry(&[]).report_u64("blobs_existing"), 3);
    let forced_dry = dry(&["--force-upload"]);
    assert_eq!(forced_dry.report_u64("blobs_uploaded"), 3, "{forced_dry}");
    assert_eq!(forced_dry.report_u64("blobs_existing"), 0, "{forced_dry}");
}

#[test]
fn force_upload_with_mount_from_is_refused_as_contradictory() {
    let dir = workspace_tmp();
    let (file, _) = archive(dir.path(), 2, &[1_000]);
    let run = Pusher::push(
        dir.path(),
        &file,
        "http://127.0.0.1:9/a/b:1",
        &["--force-upload", "--mount-from", "other/repo"],
    )
    .run()
    .failure(2);
    assert_eq!(run.error_lines().len(), 1, "{run}");
    assert!(run.stderr.contains("contradict"), "{run}");
}

#[test]
fn push_takes_dash_s_for_its_source_as_the_seeds_wrote_it() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let dir = workspace_tmp();
    let (file, image) = archive(dir.path(), 3, &[5_000]);
    let target = format!("{}/seeds/app:1", registry.url());
    let file = file.to_str().unwrap();
    let run = Pusher::new(dir.path(), &["push", "-s", file, "-r", &target, "--json"])
        .run()
        .success();
    let client = RegistryClient::new(&registry);
    let digest = run.report()["digest"].as_str().unwrap().to_string();
    assert_eq!(
        client
            .get_manifest("seeds/app", "1", &[OCI_MANIFEST, DOCKER_MANIFEST])
            .2,
        digest
    );
    assert!(client.blob_exists("seeds/app", &image.layers[0].digest));
    // The older spellings still work, and one source given twice is refused.
    Pusher::new(dir.path(), &["push", "-f", file, "-r", &target])
        .run()
        .success();
    Pusher::new(dir.path(), &["-r", &target, "--file", file])
        .run()
        .success();
    let twice = Pusher::new(dir.path(), &["push", "-s", file, "-f", file, "-r", &target])
        .run()
        .failure(2);
    assert_eq!(twice.error_lines().len(), 1, "{twice}");
}

#[test]
fn dash_h_prints_the_same_help_as_dash_dash_help_everywhere() {
    let forms: &[&[&str]] = &[
        &[],
        &["push"],
        &["ps"],
        &["pull"],
        &["extract"],
        &["list"],
        &["clean"],
        &["save"],
        &["verify"],
        // The older flat form means push.
        &["-r", "127.0.0.1:9/a:1", "-f", "x.tar"],
    ];
    for form in forms {
        let with = |flag: &str| {
            let mut args = form.to_vec();
            args.push(flag);
            run(&args)
        };
        let long = with("--help");
        let short = with("-h");
        assert_eq!(short.code, Some(0), "{form:?} -h\n{short}");
        assert!(short.stdout.starts_with("Usage: "), "{form:?} -h\n{short}");
        assert_eq!(short.stdout, long.stdout, "{form:?}");
        assert!(short.stdout.contains("-h, --help"), "{form:?}\n{short}");
    }
}

#[test]
fn dash_h_as_a_flag_value_is_that_value_not_a_help_request() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let dir = workspace_tmp();
    let (file, _) = archive(dir.path(), 4, &[2_000]);
    let target = format!("{}/value/app:1", registry.url());
    // `-h` is the password here; a registry without auth never asks for it.
    let file = file.to_str().unwrap();
    let run = Pusher::new(
        dir.path(),
        &["push", "-s", file, "-r", &target, "-u", "me", "-p", "-h"],
    )
    .run()
    .success();
    assert!(!run.stdout.contains("Usage:"), "{run}");
    run.pushed();
}

/// Pulls `reference` into `cache`; returns the `--json` report.
fn pull(reference: &str, cache: &Path) -> serde_json::Value {
    json(
        &run_ok(&[
            "pull",
            reference,
            "--insecure",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ])
        .stdout,
    )
}

#[test]
fn list_verbose_shows_every_blob_and_the_platforms_of_each_image() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let image = TestImage::new(5, &[20_000, 9_000], true, ("linux", "arm64"));
    upload_image(&client, "team/app", "1.0", &image);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    pull(&format!("{}/team/app:1.0", registry.host()), &cache);
    let cache = cache.to_str().unwrap();

    let text = run_ok(&["list", "--verbose", "--cache-dir", cache]).stdout;
    assert!(text.contains("platforms: linux/arm64"), "{text}");
    assert!(text.contains("4 blobs:"), "{text}");
    let manifest = oci_manifest(&image);
    let blobs = [
        (digest(&manifest), manifest.len(), OCI_MANIFEST),
        (image.config_digest.clone(), image.config.len(), OCI_CONFIG),
        (
            image.layers[0].digest.clone(),
            image.layers[0].bytes.len(),
            OCI_LAYER_GZIP,
        ),
        (
            image.layers[1].digest.clone(),
            image.layers[1].bytes.len(),
            OCI_LAYER_GZIP,
        ),
    ];
    // The manifest counts among the blobs too: four lines, manifest first.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("    sha256:"))
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    for ((digest, _, media_type), line) in blobs.iter().zip(&lines) {
        assert!(
            line.contains(digest.as_str()) && line.contains(media_type),
            "{line}\n{text}"
        );
    }
    let short = run_ok(&["list", "-v", "--cache-dir", cache]).stdout;
    assert_eq!(short, text);
    // Without --verbose the table stays as it was.
    let plain = run_ok(&["list", "--cache-dir", cache]).stdout;
    assert!(!plain.contains(&image.config_digest), "{plain}");

    let listed = json(&run_ok(&["list", "-v", "--json", "--cache-dir", cache]).stdout);
    assert_eq!(listed[0]["platforms"][0], "linux/arm64");
    let listed_blobs = listed[0]["blobs"].as_array().expect("blobs with --verbose");
    assert_eq!(listed_blobs.len(), 4, "{listed}");
    for ((digest, size, media_type), blob) in blobs.iter().zip(listed_blobs) {
        assert_eq!(blob["digest"], digest.as_str());
        assert_eq!(blob["size"], *size as u64);
        assert_eq!(blob["media_type"], *media_type);
    }
    let terse = json(&run_ok(&["list", "--json", "--cache-dir", cache]).stdout);
    assert!(terse[0].get("blobs").is_none(), "{terse}");
}

/// A registry holding `image` as `library/postgres:13`, pulled into `cache` by its full
/// name; returns the registry (which must live as long as the test).
fn pulled_postgres(cache: &Path, image: &TestImage) -> TestRegistry {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    upload_image(&client, "library/postgres", "13", image);
    pull(&format!("{}/library/postgres:13", registry.host()), cache);
    registry
}

fn push_cached(dir: &Path, cache: &Path, source: &str, target: &str) -> crate::support::Run {
    let cache = cache.to_str().unwrap();
    Pusher::new(
        dir,
        &[
            "push",
            "--source",
            source,
            "--target",
            target,
            "--cache-dir",
            cache,
        ],
    )
    .run()
}

#[test]
fn a_short_name_finds_a_cached_image_whatever_registry_it_came_from() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let image = TestImage::new(6, &[15_000], true, ("linux", "amd64"));
    let _source = pulled_postgres(&cache, &image);
    let target_registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&target_registry);
    let manifest_digest = digest(&oci_manifest(&image));
    for (n, short) in ["postgres:13", "library/postgres:13"].iter().enumerate() {
        let target = format!("{}/mirror/pg{n}:13", target_registry.url());
        let run = push_cached(dir.path(), &cache, short, &target).success();
        assert_eq!(run.pushed().1, manifest_digest, "{short}\n{run}");
        let (_, _, served) = client.get_manifest(&format!("mirror/pg{n}"), "13", &[OCI_MANIFEST]);
        assert_eq!(served, manifest_digest);
        assert!(client.blob_exists(&format!("mirror/pg{n}"), &image.layers[0].digest));
    }
    // `clean` finds it by the same short name.
    let cache = cache.to_str().unwrap();
    run_ok(&["clean", "postgres:13", "--cache-dir", cache]);
    let listed = json(&run_ok(&["list", "--json", "--cache-dir", cache]).stdout);
    assert_eq!(listed, serde_json::json!([]));
}

#[test]
fn a_short_name_matching_images_from_several_registries_lists_them() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let one = pulled_postgres(
        &cache,
        &TestImage::new(7, &[4_000], true, ("linux", "amd64")),
    );
    let two = pulled_postgres(
        &cache,
        &TestImage::new(8, &[4_000], true, ("linux", "amd64")),
    );
    let run = push_cached(
        dir.path(),
        &cache,
        "postgres:13",
        "http://127.0.0.1:9/x/y:1",
    )
    .failure(2);
    assert_eq!(run.error_lines().len(), 1, "{run}");
    let error = run.error_lines()[0];
    for registry in [&one, &two] {
        let name = format!("{}/library/postgres:13", registry.host());
        assert!(error.contains(&name), "names {name}\n{run}");
    }
    assert!(error.contains("several"), "{run}");
}

#[test]
fn a_name_matching_nothing_lists_the_nearest_cached_names() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let source = pulled_postgres(
        &cache,
        &TestImage::new(9, &[4_000], true, ("linux", "amd64")),
    );
    let run = push_cached(
        dir.path(),
        &cache,
        "postgres:14",
        "http://127.0.0.1:9/x/y:1",
    )
    .failure(3);
    assert_eq!(run.error_lines().len(), 1, "{run}");
    let error = run.error_lines()[0];
    assert!(error.contains("postgres:14"), "{run}");
    assert!(
        error.contains(&format!("{}/library/postgres:13", source.host())),
        "suggests the near name\n{run}"
    );
    assert!(!error.trim_end().ends_with(':'), "{run}");
    // A name that is near nothing suggests nothing, but still says how to see the cache.
    let far = push_cached(
        dir.path(),
        &cache,
        "zzzzzz/qqqqqq:9",
        "http://127.0.0.1:9/x/y:1",
    )
    .failure(3);
    assert!(!far.stderr.contains("postgres"), "{far}");
    assert!(far.stderr.contains("list"), "{far}");
}

/// Pushes a six-layer image to `registry` with no credentials, four uploads at once.
fn push_without_credentials(registry: &TestRegistry) -> crate::support::Run {
    let dir = workspace_tmp();
    let (file, _) = archive(dir.path(), 10, &[3_000, 3_100, 3_200, 3_300, 3_400, 3_500]);
    let target = format!("{}/locked/app:1", registry.url());
    Pusher::push(dir.path(), &file, &target, &["--max-concurrent", "4"]).run()
}

fn assert_one_auth_error_line(run: &crate::support::Run) {
    assert_eq!(run.code, Some(4), "{run}");
    assert_eq!(run.error_lines().len(), 1, "{run}");
    assert!(
        !run.stderr.contains("failed: "),
        "no per-blob failures\n{run}"
    );
    let error = run.error_lines()[0];
    assert!(error.contains("authentication required"), "{run}");
    assert!(error.contains("-u/--username"), "the hint\n{run}");
}

#[test]
fn a_registry_wanting_basic_credentials_stops_at_the_first_401_with_one_error_line() {
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("bob", "bob-pw")));
    let run = push_without_credentials(&registry);
    assert_one_auth_error_line(&run);
}

#[test]
fn a_registry_wanting_a_token_stops_at_the_first_401_with_one_error_line() {
    let registry = TestRegistry::start(
        RegistryOptions::plain().auth(Auth::Token(TokenOptions::new().user("bob", "bob-pw"))),
    );
    let run = push_without_credentials(&registry);
    assert_one_auth_error_line(&run);
}

#[test]
fn a_refused_blob_cancels_the_upload_still_running() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    let dir = workspace_tmp();
    let big = 24 << 20;
    let (file, image) = archive(dir.path(), 14, &[big, 2_000]);
    let big_digest = image.layers[0].digest.clone();
    // Every blob but the big one is refused as if credentials were missing: the big one,
    // first in the queue, is then uploading in 1 MiB chunks.
    let spared = big_digest.clone();
    proxy.add(
        Rule::new(
            Match::method("HEAD").when(move |head| !head.path.contains(&spared)),
            Fault::respond_error(401, "UNAUTHORIZED", "authentication required"),
        )
        .always(),
    );
    let target = format!("http://{}/cancel/app:1", proxy.host());
    let run = Pusher::push(
        dir.path(),
        &file,
        &target,
        &[
            "--max-concurrent",
            "2",
            "--chunk-size",
            "1M",
            "--large-layer-threshold",
            "1M",
        ],
    )
    .run()
    .failure(4);
    assert_eq!(run.error_lines().len(), 1, "{run}");
    assert!(!run.stderr.contains("failed: "), "{run}");
    assert!(
        proxy.blob_bytes_received() < big as u64,
        "the big upload stopped early: {} of {big} bytes\n{run}",
        proxy.blob_bytes_received()
    );
    assert!(
        !RegistryClient::new(&registry).blob_exists("cancel/app", &big_digest),
        "{}",
        proxy.describe()
    );
}

#[test]
fn insecure_against_a_tls_registry_says_it_speaks_tls_and_to_drop_insecure() {
    let registry = TestRegistry::start(RegistryOptions::plain().tls(true));
    let dir = workspace_tmp();
    let (file, _) = archive(dir.path(), 11, &[2_000]);
    let target = format!("{}/tls/app:1", registry.host());
    let run = Pusher::push(dir.path(), &file, &target, &["--insecure"])
        .run()
        .failure(5);
    assert_eq!(run.error_lines().len(), 1, "{run}");
    let error = run.error_lines()[0];
    assert!(error.contains("speaks TLS"), "{run}");
    assert!(error.contains("drop --insecure"), "{run}");
    // The same mistake with an explicit http:// gets the same answer.
    let explicit = format!("http://{}/tls/app:1", registry.host());
    let run = Pusher::push(dir.path(), &file, &explicit, &[])
        .run()
        .failure(5);
    assert!(run.stderr.contains("speaks TLS"), "{run}");
}

#[test]
fn one_of_a_thing_is_counted_in_the_singular() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let image = TestImage::new(12, &[3_000], true, ("linux", "amd64"));
    upload_image(&client, "one/app", "1", &image);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let reference = format!("{}/one/app:1", registry.host());
    pull(&reference, &cache);
    let out = dir.path().join("one.tar");
    let cache = cache.to_str().unwrap();
    let saved = run_ok(&[
        "save",
        &reference,
        "-o",
        out.to_str().unwrap(),
        "--cache-dir",
        cache,
    ]);
    assert!(saved.stdout.contains(": 1 image, "), "{saved}");
    let verified = run_ok(&["verify", &reference, "--cache-dir", cache]);
    assert!(verified.stdout.contains(" intact"), "{verified}");
    let cleaned = run_ok(&["clean", &reference, "--cache-dir", cache]);
    assert!(cleaned.stdout.contains(": 1 image, "), "{cleaned}");
    for run in [&saved, &verified, &cleaned] {
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !all.contains(" 1 images") && !all.contains(" 1 blobs"),
            "{run}"
        );
    }
}

#[test]
fn a_pull_whose_blobs_are_all_cached_says_so() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let image = TestImage::new(
        13,
        &[10_000, 12_000, 14_000, 16_000],
        true,
        ("linux", "amd64"),
    );
    upload_image(&client, "cached/app", "1", &image);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let reference = format!("{}/cached/app:1", registry.host());
    let args = [
        "pull",
        &reference,
        "--insecure",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let first = run_ok(&args);
    assert!(!first.stderr.contains("already in the cache"), "{first}");
    let again = run_ok(&args);
    assert!(
        again.stderr.contains("all 5 blobs already in the cache"),
        "{again}"
    );
}
