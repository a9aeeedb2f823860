//! Incremental bundles: `list --blobs` on the far side, `save --exclude-from` on the
//! connected side, and the bundle completed from the far side's cache by `extract` and
//! `push`, or refused before anything is written when that cache lacks a layer it left out.

use std::path::{Path, PathBuf};

use crate::fixtures::*;
use crate::support::cache::*;
use crate::support::verify::ACCEPT_ALL;
use crate::support::{RegistryClient, RegistryOptions, TestRegistry, workspace_tmp};

const MARKER: &str =
    "INCREMENTAL-BUNDLE-docker-load-cannot-read-it-use-docker-image-pusher-extract";

/// Version 1 and 2 of one image: the same two base layers, a different top layer.
fn two_versions() -> (TestImage, TestImage) {
    let base = TestLayer::new(300, 400_000, true);
    let middle = TestLayer::new(301, 300_000, true);
    let v1 = TestImage::from_layers(
        302,
        vec![
            base.clone(),
            middle.clone(),
            TestLayer::new(303, 50_000, true),
        ],
        ("linux", "amd64"),
    );
    let v2 = TestImage::from_layers(
        304,
        vec![base, middle, TestLayer::new(305, 60_000, true)],
        ("linux", "amd64"),
    );
    (v1, v2)
}

fn extract(archive: &Path, cache: &Path) -> crate::support::Run {
    run(&[
        "extract",
        "-f",
        archive.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ])
}

fn entry_names(archive: &Path) -> Vec<String> {
    let file = std::fs::File::open(archive).unwrap();
    tar::Archive::new(file)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

struct Sides {
    dir: tempfile::TempDir,
    connected: PathBuf,
    far: PathBuf,
    v1: TestImage,
    v2: TestImage,
}

/// The connected cache holds v1 and v2; the far cache got v1 in a full bundle.
fn sides() -> Sides {
    let dir = workspace_tmp();
    let (v1, v2) = two_versions();
    let source = dir.path().join("source.tar");
    write_oci_archive(
        &source,
        &[
            (OciEntry::Image(v1.clone()), "example.com/team/model:1"),
            (OciEntry::Image(v2.clone()), "example.com/team/model:2"),
        ],
    )
    .unwrap();
    let connected = dir.path().join("connected");
    assert_eq!(extract(&source, &connected).code, Some(0));
    let full = dir.path().join("v1.tar");
    run_ok(&[
        "save",
        "example.com/team/model:1",
        "-o",
        full.to_str().unwrap(),
        "--cache-dir",
        connected.to_str().unwrap(),
    ]);
    let far = dir.path().join("far");
    assert_eq!(extract(&full, &far).code, Some(0));
    Sides {
        dir,
        connected,
        far,
        v1,
        v2,
    }
}

fn save_update(sides: &Sides, list: &Path, output: &Path) -> crate::support::Run {
    run_ok(&[
        "save",
        "example.com/team/model:2",
        "-o",
        output.to_str().unwrap(),
        "--exclude-from",
        list.to_str().unwrap(),
        "--cache-dir",
        sides.connected.to_str().unwrap(),
    ])
}

#[test]
fn list_blobs_prints_every_cached_digest_one_a_line() {
    let sides = sides();
    let listed = run_ok(&[
        "list",
        "--blobs",
        "--cache-dir",
        sides.far.to_str().unwrap(),
    ])
    .stdout;
    let mut lines: Vec<&str> = listed.lines().collect();
    lines.sort();
    let mut expected = image_digests(&sides.v1);
    expected.sort();
    assert_eq!(lines, expected);
}

#[test]
fn an_update_carries_only_new_layers_and_completes_in_the_far_cache() {
    let sides = sides();
    let dir = sides.dir.path();
    let list = dir.join("far-blobs.txt");
    let listed = run_ok(&[
        "list",
        "--blobs",
        "--cache-dir",
        sides.far.to_str().unwrap(),
    ])
    .stdout;
    std::fs::write(&list, listed).unwrap();
    let update = dir.join("v2-update.tar");
    save_update(&sides, &list, &update);

    let names = entry_names(&update);
    let has = |digest: &str| names.contains(&format!("blobs/sha256/{}", digest_hex(digest)));
    let (base, middle, top) = (
        &sides.v2.layers[0].digest,
        &sides.v2.layers[1].digest,
        &sides.v2.layers[2].digest,
    );
    assert!(
        !has(base) && !has(middle),
        "shared layers were carried: {names:?}"
    );
    assert!(has(top), "the new layer is missing: {names:?}");
    assert!(has(&digest(&oci_manifest(&sides.v2))) && has(&sides.v2.config_digest));
    // docker load reads manifest.json first; without it, its legacy loader opens
    // `<directory>/json` of the first directory, the marker, and names it in its error.
    assert!(!names.iter().any(|n| n == "manifest.json"), "{names:?}");
    let first_directory = names
        .iter()
        .filter_map(|n| n.split('/').next())
        .filter(|top| names.iter().any(|n| n.starts_with(&format!("{top}/"))))
        .min()
        .unwrap();
    assert_eq!(first_directory, MARKER);

    // An earlier bundle names the same blobs as the far side's list, whole or in parts.
    let from_bundle = dir.join("v2-from-bundle.tar");
    save_update(&sides, &dir.join("v1.tar"), &from_bundle);
    assert_eq!(entry_names(&from_bundle), names);
    let split = dir.join("v1-split.tar");
    run_ok(&[
        "save",
        "example.com/team/model:1",
        "-o",
        split.to_str().unwrap(),
        "--split",
        "1M",
        "--cache-dir",
        sides.connected.to_str().unwrap(),
    ]);
    for list in [dir.join("v1-split.tar.001"), split] {
        let from_parts = dir.join("v2-from-parts.tar");
        save_update(&sides, &list, &from_parts);
        assert_eq!(entry_names(&from_parts), names, "{}", list.display());
    }

    let full = dir.join("v2-full.tar");
    run_ok(&[
        "save",
        "example.com/team/model:2",
        "-o",
        full.to_str().unwrap(),
        "--cache-dir",
        sides.connected.to_str().unwrap(),
    ]);
    let (full_size, update_size) = (
        std::fs::metadata(&full).unwrap().len(),
        std::fs::metadata(&update).unwrap().len(),
    );
    assert!(update_size * 5 < full_size, "{update_size} vs {full_size}");

    let done = extract(&update, &sides.far);
    assert_eq!(done.code, Some(0), "{done}");
    run_ok(&["verify", "--cache-dir", sides.far.to_str().unwrap()]);
    let registry = TestRegistry::start(RegistryOptions::plain());
    let target = format!("{}/team/model:2", registry.host());
    run_ok(&[
        "push",
        "--source",
        "example.com/team/model:2",
        "--target",
        &target,
        "--insecure",
        "--cache-dir",
        sides.far.to_str().unwrap(),
    ]);
    let (_, _, served) =
        RegistryClient::new(&registry).get_manifest("team/model", "2", &ACCEPT_ALL);
    assert_eq!(served, digest(&oci_manifest(&sides.v2)));
}

#[test]
fn an_update_into_a_cache_without_the_old_layers_fails_before_writing_naming_them() {
    let sides = sides();
    let dir = sides.dir.path();
    let list = dir.join("far-blobs.txt");
    let listed = run_ok(&[
        "list",
        "--blobs",
        "--cache-dir",
        sides.far.to_str().unwrap(),
    ])
    .stdout;
    std::fs::write(&list, listed).unwrap();
    let update = dir.join("v2-update.tar");
    save_update(&sides, &list, &update);

    let empty = dir.join("empty-cache");
    let run = extract(&update, &empty);
    assert_eq!(run.code, Some(3), "{run}");
    for layer in &sides.v2.layers[..2] {
        assert!(run.stderr.contains(&layer.digest), "{run}");
    }
    assert!(run.stderr.contains("example.com/team/model:2"), "{run}");
    assert!(!run.stderr.contains(&sides.v2.layers[2].digest), "{run}");
    assert!(!empty.exists(), "extract wrote into the cache");
}

#[test]
fn push_from_an_update_reads_left_out_layers_from_the_cache_or_fails_before_uploading() {
    let sides = sides();
    let dir = sides.dir.path();
    let list = dir.join("far-blobs.txt");
    let listed = run_ok(&[
        "list",
        "--blobs",
        "--cache-dir",
        sides.far.to_str().unwrap(),
    ])
    .stdout;
    std::fs::write(&list, listed).unwrap();
    let update = dir.join("v2-update.tar");
    save_update(&sides, &list, &update);
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let push = |repo: &str, cache: &Path| {
        let target = format!("{}/{repo}:2", registry.host());
        run(&[
            "push",
            "--source",
            update.to_str().unwrap(),
            "--target",
            &target,
            "--insecure",
            "--cache-dir",
            cache.to_str().unwrap(),
        ])
    };

    let done = push("with/cache", &sides.far);
    assert_eq!(done.code, Some(0), "{done}");
    let (_, _, served) = client.get_manifest("with/cache", "2", &ACCEPT_ALL);
    assert_eq!(served, digest(&oci_manifest(&sides.v2)));

    let refused = push("without/cache", &dir.join("empty-cache"));
    assert_eq!(refused.code, Some(3), "{refused}");
    assert!(
        refused.stderr.contains(&sides.v2.layers[0].digest),
        "{refused}"
    );
    for digest in image_digests(&sides.v2).iter().skip(1) {
        assert!(
            !client.blob_exists("without/cache", digest),
            "{digest} uploaded"
        );
    }
}

#[test]
fn exclude_from_refuses_a_list_with_a_line_that_is_no_digest() {
    let sides = sides();
    let list = sides.dir.path().join("bad.txt");
    std::fs::write(&list, format!("{}\nnot-a-digest\n", sides.v1.config_digest)).unwrap();
    let out = sides.dir.path().join("out.tar");
    let refused = run(&[
        "save",
        "example.com/team/model:2",
        "-o",
        out.to_str().unwrap(),
        "--exclude-from",
        list.to_str().unwrap(),
        "--cache-dir",
        sides.connected.to_str().unwrap(),
    ]);
    assert_eq!(refused.code, Some(3), "{refused}");
    assert!(refused.stderr.contains("line 2"), "{refused}");
    assert!(!out.exists());
}

#[test]
fn an_exclude_list_naming_none_of_the_layers_gives_a_full_archive_docker_load_reads() {
    let sides = sides();
    let list = sides.dir.path().join("unrelated.txt");
    std::fs::write(
        &list,
        format!("# nothing of model:2\n{}\n", sides.v1.layers[2].digest),
    )
    .unwrap();
    let out = sides.dir.path().join("out.tar");
    let saved = save_update(&sides, &list, &out);
    assert!(saved.stderr.contains("full archive"), "{saved}");
    let names = entry_names(&out);
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with(MARKER)), "{names:?}");
}
