//! `list`, `clean`, `save`, `verify` and `push --source NAME`, with skopeo reading both
//! the cache and the saved archive, and the air-gapped round trip: pull from registry A,
//! save to one file, extract into a fresh cache, push to registry B, and B serves the
//! same manifest digests A does.

use std::path::Path;
use std::process::Command;

use crate::fixtures::*;
use crate::support::cache::*;
use crate::support::verify::ACCEPT_ALL;
use crate::support::{Auth, Pusher, RegistryClient, RegistryOptions, TestRegistry, workspace_tmp};

/// Two images sharing a base layer, extracted into `cache` from a Docker 25 archive.
fn two_images(dir: &Path, cache: &Path) -> (TestImage, TestImage) {
    extract_two_images(dir, cache, 10, [50_000, 20_000, 30_000])
}

#[test]
fn cache_commands_whose_reader_closes_stdout_early_exit_zero_quietly() {
    // `list --json | head -c1` and the like: a broken pipe is no error and no panic.
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    two_images(dir.path(), &cache);
    let cache_arg = cache.to_str().unwrap();
    let saved = dir.path().join("saved.tar");
    for args in [
        vec!["list", "--cache-dir", cache_arg],
        vec!["list", "--json", "--cache-dir", cache_arg],
        vec!["verify", "--json", "--cache-dir", cache_arg],
        vec!["verify", "--cache-dir", cache_arg],
        vec![
            "save",
            "--json",
            "--cache-dir",
            cache_arg,
            "-o",
            saved.to_str().unwrap(),
            "example.com/team/a:1",
        ],
        vec!["clean", "--json", "--cache-dir", cache_arg],
    ] {
        let run = Pusher::bare(&args).run_with_stdout_closed();
        assert_eq!(run.code, Some(0), "{args:?}\n{run}");
        assert!(!run.panicked(), "{args:?}\n{run}");
        assert!(run.stderr.trim().is_empty(), "{args:?}\n{run}");
    }
}

#[test]
fn list_shows_every_image_as_a_table_or_json() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let (a, b) = two_images(dir.path(), &cache);
    let cache_arg = cache.to_str().unwrap();

    let table = run_ok(&["ls", "--cache-dir", cache_arg]).stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("REFERENCE") && lines[0].contains("PLATFORM"),
        "{table}"
    );
    let row_a = lines
        .iter()
        .find(|l| l.starts_with("example.com/team/a:1"))
        .expect("row for a");
    let a_digest = digest(&oci_manifest(&a));
    assert!(row_a.contains(&a_digest[..19]), "{row_a}");
    assert!(row_a.contains("linux/amd64"), "{row_a}");

    let listed = json(&run_ok(&["list", "--json", "--cache-dir", cache_arg]).stdout);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let entry_b = listed
        .iter()
        .find(|e| e["reference"] == "example.com/team/b:1")
        .unwrap();
    assert_eq!(entry_b["digest"], digest(&oci_manifest(&b)).as_str());
    assert_eq!(entry_b["platforms"], serde_json::json!(["linux/arm64"]));
    assert_eq!(entry_b["layers"], 2);
    let size: u64 = b.config.len() as u64
        + b.layers.iter().map(|l| l.bytes.len() as u64).sum::<u64>()
        + oci_manifest(&b).len() as u64;
    assert_eq!(entry_b["size"], size);
    assert!(entry_b["added"].as_str().unwrap().ends_with('Z'));

    // An empty or missing cache lists nothing (and is not created by listing).
    let empty = dir.path().join("nothing");
    assert_eq!(
        run_ok(&["l", "--json", "--cache-dir", empty.to_str().unwrap()])
            .stdout
            .trim(),
        "[]"
    );
    assert!(!empty.exists());
}

#[test]
fn clean_removes_an_image_and_only_the_blobs_no_other_image_uses() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let (a, b) = two_images(dir.path(), &cache);
    let cache_arg = cache.to_str().unwrap();
    // A leftover partial download from an interrupted run.
    std::fs::write(
        cache
            .join("tmp")
            .join(format!("{}.partial", "ab".repeat(32))),
        vec![0u8; 1000],
    )
    .unwrap();
    // State other parts of the tool keep beside the layout survives cleaning one image.
    std::fs::create_dir_all(cache.join("uploads")).unwrap();
    std::fs::write(cache.join("uploads/state.json"), b"{}").unwrap();

    let dry = run_ok(&[
        "clean",
        "--dry-run",
        "--json",
        "--cache-dir",
        cache_arg,
        "example.com/team/a:1",
    ]);
    assert_eq!(json(&dry.stdout)["blobs_removed"], 3);
    assert_eq!(cached_names(&cache).len(), 2, "a dry run changes nothing");

    let report = json(
        &run_ok(&[
            "c",
            "--json",
            "--cache-dir",
            cache_arg,
            "example.com/team/a:1",
        ])
        .stdout,
    );
    assert_eq!(
        report["images"],
        serde_json::json!(["example.com/team/a:1"])
    );
    // a's manifest, config and own layer go; the shared base layer stays for b.
    assert_eq!(report["blobs_removed"], 3);
    assert_eq!(report["leftovers_removed"], 1);
    let own: u64 =
        oci_manifest(&a).len() as u64 + a.config.len() as u64 + a.layers[1].bytes.len() as u64;
    assert_eq!(report["bytes_freed"], own + 1000);
    for digest in image_digests(&b) {
        assert_cached(&cache, &digest);
    }
    assert!(!blob_path(&cache, &a.layers[1].digest).exists());
    assert!(temp_files(&cache).is_empty());
    assert!(cache.join("uploads/state.json").exists());
    run_ok(&["verify", "--cache-dir", cache_arg]);

    let unknown = run(&["clean", "--cache-dir", cache_arg, "example.com/team/zzz:1"]);
    assert_eq!(unknown.code, Some(3), "{}", unknown.stderr);

    let everything = run_ok(&["clean", "--cache-dir", cache_arg]);
    assert!(everything.stdout.contains("freed"), "{}", everything.stdout);
    assert!(cached_names_or_empty(&cache).is_empty());
    assert!(!cache.join("blobs").exists() && !cache.join("uploads").exists());
}

fn cached_names_or_empty(cache: &Path) -> Vec<(String, String)> {
    if cache.join("index.json").exists() {
        cached_names(cache)
    } else {
        Vec::new()
    }
}

#[test]
fn save_writes_an_archive_that_skopeo_reads_and_extract_restores() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let (a, _b) = two_images(dir.path(), &cache);
    let cache_arg = cache.to_str().unwrap();
    let out = dir.path().join("usb").join("a.tar");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    run_ok(&[
        "save",
        "example.com/team/a:1",
        "-o",
        out.to_str().unwrap(),
        "--cache-dir",
        cache_arg,
    ]);
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the archive, no temporary file: {leftovers:?}"
    );

    // skopeo's docker-archive reader (manifest.json) sees the same config and layers.
    let inspected = Command::new("skopeo")
        .args([
            "inspect",
            "--config",
            "--raw",
            &format!("docker-archive:{}", out.display()),
        ])
        .output()
        .unwrap();
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    assert_eq!(
        digest(&inspected.stdout),
        a.config_digest,
        "skopeo read a different config"
    );
    let layers = Command::new("skopeo")
        .args(["inspect", &format!("docker-archive:{}", out.display())])
        .output()
        .unwrap();
    let layers = json(&String::from_utf8_lossy(&layers.stdout));
    // docker-archive reports uncompressed layers, i.e. the diff_ids.
    assert_eq!(layers["Layers"], serde_json::json!(a.diff_ids()));
    let raw = skopeo_inspect_raw(&format!("docker-archive:{}", out.display())).unwrap();
    let manifest = json(&String::from_utf8_lossy(&raw));
    assert_eq!(manifest["config"]["digest"], a.config_digest.as_str());

    // Extracting the saved archive into a fresh cache restores name and digest.
    let fresh = dir.path().join("fresh");
    run_ok(&[
        "extract",
        "-f",
        out.to_str().unwrap(),
        "--cache-dir",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(
        cached_names(&fresh),
        vec![(
            "example.com/team/a:1".to_string(),
            digest(&oci_manifest(&a))
        )]
    );
    run_ok(&["verify", "--cache-dir", fresh.to_str().unwrap()]);

    let missing = run(&[
        "save",
        "example.com/nope:1",
        "-o",
        out.to_str().unwrap(),
        "--cache-dir",
        cache_arg,
    ]);
    assert_eq!(missing.code, Some(3), "{}", missing.stderr);
}

#[test]
fn verify_reports_damage_with_the_images_it_breaks_and_can_remove_it() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let (a, b) = two_images(dir.path(), &cache);
    let cache_arg = cache.to_str().unwrap();
    run_ok(&["verify", "--cache-dir", cache_arg]);

    // The shared base layer rots on the USB stick: same size, one byte different.
    let shared = blob_path(&cache, &a.layers[0].digest);
    let mut bytes = std::fs::read(&shared).unwrap();
    bytes[100] ^= 0x55;
    std::fs::write(&shared, &bytes).unwrap();

    let damaged = run(&["verify", "--cache-dir", cache_arg, "--json"]);
    assert_eq!(damaged.code, Some(3), "{}", damaged.stderr);
    let report = json(&damaged.stdout);
    assert_eq!(report["damaged"][0]["digest"], a.layers[0].digest.as_str());
    let users = report["damaged"][0]["images"].as_array().unwrap();
    assert_eq!(users.len(), 2, "both images use the base layer: {users:?}");
    // Checking only b's blobs finds it too; save refuses to carry it.
    assert_eq!(
        run(&["verify", "--cache-dir", cache_arg, "example.com/team/b:1"]).code,
        Some(3)
    );
    let out = dir.path().join("out.tar");
    let refused = run(&[
        "save",
        "example.com/team/b:1",
        "-o",
        out.to_str().unwrap(),
        "--cache-dir",
        cache_arg,
    ]);
    assert_eq!(refused.code, Some(3), "{}", refused.stderr);
    assert!(!out.exists());

    let removed = run(&["verify", "--remove-damaged", "--cache-dir", cache_arg]);
    assert_eq!(removed.code, Some(3));
    assert!(!shared.exists());
    let listed = json(&run_ok(&["list", "--json", "--cache-dir", cache_arg]).stdout);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["problem"].is_null()),
        "{listed}"
    );
    // Extracting again repairs the cache.
    two_images(dir.path(), &cache);
    run_ok(&["verify", "--cache-dir", cache_arg]);
    for digest in image_digests(&b) {
        assert_cached(&cache, &digest);
    }
}

#[test]
fn push_source_names_a_cached_image_when_no_such_file_exists() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let (a, _) = two_images(dir.path(), &cache);
    let cache_arg = cache.to_str().unwrap();
    let a_digest = digest(&oci_manifest(&a));

    let target = format!("{}/pushed/a:1", registry.host());
    run_ok(&[
        "push",
        "--source",
        "example.com/team/a:1",
        "--target",
        &target,
        "--insecure",
        "--cache-dir",
        cache_arg,
    ]);
    let (_, _, served) = client.get_manifest("pushed/a", "1", &ACCEPT_ALL);
    assert_eq!(served, a_digest);
    // By digest, and through the environment variable for the cache location.
    let by_digest = format!("{}/pushed/a:2", registry.host());
    let run_env = Pusher::without_credentials(&[
        "push",
        "--source",
        &a_digest,
        "--target",
        &by_digest,
        "--insecure",
    ])
    .env("DOCKER_PUSHER_CACHE_DIR", cache_arg)
    .run();
    assert_eq!(run_env.code, Some(0), "{}", run_env.stderr);
    assert_eq!(
        client.get_manifest("pushed/a", "2", &ACCEPT_ALL).2,
        a_digest
    );

    let neither = run(&[
        "push",
        "--source",
        "example.com/team/none:1",
        "--target",
        &target,
        "--insecure",
        "--cache-dir",
        cache_arg,
    ]);
    assert_eq!(neither.code, Some(3), "{}", neither.stderr);
    assert!(
        neither
            .stderr
            .contains("neither a file nor an image in the cache"),
        "{}",
        neither.stderr
    );
}

#[test]
fn air_gapped_round_trip_keeps_every_manifest_digest() {
    let registry_a =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("src", "pw-a")));
    let registry_b = TestRegistry::start(RegistryOptions::plain());
    let client_a = RegistryClient::with_credentials(&registry_a, "src", "pw-a");
    let client_b = RegistryClient::new(&registry_b);
    let single = TestImage::new(30, &[40_000, 80_000], true, ("linux", "amd64"));
    let single_digest = upload_image(&client_a, "apps/web", "3.1", &single);
    let amd = TestImage::new(31, &[30_000], true, ("linux", "amd64"));
    let arm = TestImage::new(32, &[30_000], true, ("linux", "arm64"));
    let index_digest = upload_index(&client_a, "apps/multi", "1", &[amd, arm]);

    // Connected side: pull both into a cache, save them to one file on the "USB stick".
    let dir = workspace_tmp();
    let connected = dir.path().join("connected-cache");
    let stick = dir.path().join("usb/images.tar");
    std::fs::create_dir_all(stick.parent().unwrap()).unwrap();
    let web = format!("{}/apps/web:3.1", registry_a.host());
    let multi = format!("{}/apps/multi:1", registry_a.host());
    for (image, extra) in [(&web, None), (&multi, Some("--all-platforms"))] {
        let mut args = vec![
            "pull",
            "-i",
            image.as_str(),
            "--insecure",
            "-u",
            "src",
            "-p",
            "pw-a",
            "--cache-dir",
            connected.to_str().unwrap(),
        ];
        args.extend(extra);
        run_ok(&args);
    }
    run_ok(&[
        "save",
        &web,
        &multi,
        "-o",
        stick.to_str().unwrap(),
        "--cache-dir",
        connected.to_str().unwrap(),
    ]);

    // Isolated side: verify the copy, extract into a fresh cache, push to registry B.
    let isolated = dir.path().join("isolated-cache");
    run_ok(&[
        "extract",
        "-f",
        stick.to_str().unwrap(),
        "--cache-dir",
        isolated.to_str().unwrap(),
    ]);
    run_ok(&["verify", "--cache-dir", isolated.to_str().unwrap()]);
    for (name, repository, expected) in [
        (&web, "apps/web", &single_digest),
        (&multi, "apps/multi", &index_digest),
    ] {
        let target = format!("{}/{repository}:1", registry_b.host());
        run_ok(&[
            "push",
            "--source",
            name,
            "--target",
            &target,
            "--insecure",
            "--cache-dir",
            isolated.to_str().unwrap(),
        ]);
        let (_, _, served) = client_b.get_manifest(repository, "1", &ACCEPT_ALL);
        assert_eq!(&served, expected, "{name}");
    }
}
