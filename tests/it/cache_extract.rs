//! `extract` of every archive format `push` reads: the cache gets every blob, verified,
//! under the archive's names, and pushing from the cache lands exactly what pushing the
//! archive directly lands. Damaged archives are refused without listing anything, and an
//! extract killed midway is finished by the next run.

use std::path::Path;
use std::time::Duration;

use crate::fixtures::*;
use crate::support::cache::*;
use crate::support::verify::ACCEPT_ALL;
use crate::support::{RegistryClient, RegistryOptions, TestRegistry, workspace_tmp};

fn image(seed: u64, gzip: bool) -> TestImage {
    TestImage::new(seed, &[30_000, 90_000], gzip, ("linux", "amd64"))
}

/// Every format, each archive named for what wrote it.
fn archives(dir: &Path) -> Vec<(&'static str, std::path::PathBuf, Expected)> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, write: &dyn Fn(&Path) -> std::io::Result<Expected>| {
        let path = dir.join(format!("{name}.tar"));
        let expected = write(&path).unwrap_or_else(|e| panic!("write {name}: {e}"));
        out.push((name, path, expected));
    };
    add("docker-legacy", &|p| {
        write_docker_legacy(p, &[(image(1, false), vec!["team/legacy:1".into()])])
    });
    add("docker-25", &|p| {
        write_docker25(
            p,
            &[(
                image(2, false),
                vec!["team/d25:1".into(), "team/d25:latest".into()],
            )],
        )
    });
    add("docker-containerd", &|p| {
        let platforms = vec![
            image(3, true),
            TestImage::new(4, &[20_000], true, ("linux", "arm64")),
        ];
        write_docker_containerd_store(
            p,
            &[(platforms, vec!["team/ctr:1".into()])],
            &ContainerdOpts::default(),
        )
    });
    add("oci-index", &|p| {
        let index = OciEntry::Index(vec![
            image(5, true),
            TestImage::new(6, &[25_000], true, ("linux", "arm64")),
        ]);
        write_oci_archive(p, &[(index, "example.com/team/oci:1")])
    });
    add("ggcr", &|p| {
        write_ggcr_tarball(
            p,
            &[(image(7, true), vec!["example.com/team/ggcr:1".into()])],
        )
    });
    add("docker-25-gzipped", &|p| {
        let plain = p.with_extension("plain");
        let expected = write_docker25(&plain, &[(image(8, false), vec!["team/gz:1".into()])])?;
        gzip_file(&plain, p)?;
        Ok(expected)
    });
    add("skopeo-docker-archive", &|p| {
        let layout = p.with_extension("layout");
        std::fs::create_dir_all(&layout)?;
        let img = image(9, true);
        write_oci_layout_dir(&layout, &[(OciEntry::Image(img.clone()), "src")])?;
        skopeo_docker_archive(&layout, "src", p, "team/skopeo:1")?;
        Ok(expected_skopeo_docker_archive(&img, "team/skopeo:1"))
    });
    out
}

#[test]
fn every_format_extracts_verified_and_pushes_from_the_cache_like_the_archive() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let dir = workspace_tmp();
    for (name, path, expected) in archives(dir.path()) {
        let cache = dir.path().join(format!("cache-{name}"));
        let cache_arg = cache.to_str().unwrap();
        let report = json(
            &run_ok(&[
                "extract",
                "-f",
                path.to_str().unwrap(),
                "--cache-dir",
                cache_arg,
                "--json",
            ])
            .stdout,
        );
        for blob in &expected.blobs {
            assert_cached(&cache, &blob.digest);
        }
        let names = cached_names(&cache);
        let target = &expected.targets[0];
        assert!(!names.is_empty(), "{name}: nothing listed");
        for (reference, digest) in &names {
            assert!(
                reference.contains('/') && reference.contains(':'),
                "{name}: {reference} is not a full reference"
            );
            if let Some(expected_digest) = &target.digest {
                // Formats that carry their manifest keep its digest (index or the
                // platform the archive holds whole).
                let kept = expected_digest == digest
                    || target
                        .manifests
                        .iter()
                        .any(|m| m.digest.as_deref() == Some(digest));
                assert!(
                    kept,
                    "{name}: cached {digest}, archive has {expected_digest}"
                );
            }
        }
        assert_eq!(report["images"].as_array().unwrap().len(), 1, "{name}");
        run_ok(&["verify", "--cache-dir", cache_arg]);
        assert!(
            temp_files(&cache).is_empty(),
            "{name}: {:?}",
            temp_files(&cache)
        );

        // Pushing the archive and pushing the cached image land the same manifest.
        let direct = format!("{}/direct/{name}:1", registry.host());
        let cached = format!("{}/cached/{name}:1", registry.host());
        run_ok(&[
            "push",
            "--source",
            path.to_str().unwrap(),
            "--target",
            &direct,
            "--insecure",
        ]);
        run_ok(&[
            "push",
            "--source",
            &names[0].0,
            "--target",
            &cached,
            "--insecure",
            "--cache-dir",
            cache_arg,
        ]);
        let (_, _, direct_digest) =
            client.get_manifest(&format!("direct/{name}"), "1", &ACCEPT_ALL);
        let (_, _, cached_digest) =
            client.get_manifest(&format!("cached/{name}"), "1", &ACCEPT_ALL);
        assert_eq!(direct_digest, cached_digest, "{name}");
        assert_eq!(&cached_digest, &names[0].1, "{name}");
    }
}

#[test]
fn every_image_of_a_multi_image_archive_is_extracted_or_just_the_chosen_one() {
    let dir = workspace_tmp();
    let path = dir.path().join("two.tar");
    let shared = TestLayer::new(50, 40_000, false);
    let a = TestImage::from_layers(
        51,
        vec![shared.clone(), TestLayer::new(52, 5_000, false)],
        ("linux", "amd64"),
    );
    let b = TestImage::from_layers(
        53,
        vec![shared, TestLayer::new(54, 5_000, false)],
        ("linux", "amd64"),
    );
    write_docker25(
        &path,
        &[(a, vec!["team/a:1".into()]), (b, vec!["team/b:1".into()])],
    )
    .unwrap();

    let all = dir.path().join("all");
    let report = json(
        &run_ok(&[
            "extract",
            "-f",
            path.to_str().unwrap(),
            "--cache-dir",
            all.to_str().unwrap(),
            "--json",
        ])
        .stdout,
    );
    assert_eq!(report["images"].as_array().unwrap().len(), 2);
    let mut names: Vec<String> = cached_names(&all).into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, ["docker.io/team/a:1", "docker.io/team/b:1"]);

    let one = dir.path().join("one");
    run_ok(&[
        "e",
        "-f",
        path.to_str().unwrap(),
        "--source-tag",
        "team/b:1",
        "--name",
        "registry.example.com/mirror/b:2",
        "--cache-dir",
        one.to_str().unwrap(),
    ]);
    let names: Vec<String> = cached_names(&one).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["registry.example.com/mirror/b:2"]);
}

#[test]
fn damaged_archives_are_refused_and_nothing_is_listed() {
    let dir = workspace_tmp();
    let digest_mismatch = dir.path().join("digest.tar");
    hostile_layer_digest_mismatch(&digest_mismatch).unwrap();
    let legacy_diff_id = dir.path().join("legacy.tar");
    hostile_diffid_mismatch_legacy(&legacy_diff_id).unwrap();
    // A gzip layer whose config claims another diff_id: the digests all match, only
    // decompressing while copying catches it.
    let mut wrong = image(60, true);
    let real = wrong.layers[0].diff_id.clone();
    let config = String::from_utf8(wrong.config.clone()).unwrap();
    wrong.config = config
        .replace(&real, &digest(b"something else"))
        .into_bytes();
    wrong.config_digest = digest(&wrong.config);
    let gzip_diff_id = dir.path().join("gzip.tar");
    write_oci_archive(
        &gzip_diff_id,
        &[(OciEntry::Image(wrong), "example.com/bad:1")],
    )
    .unwrap();

    for (path, expected) in [
        (&digest_mismatch, "hashes to"),
        (&legacy_diff_id, "hashes to"),
        (&gzip_diff_id, "diff_id"),
    ] {
        let cache = dir.path().join(format!(
            "cache-{}",
            path.file_stem().unwrap().to_string_lossy()
        ));
        let run = run(&[
            "extract",
            "-f",
            path.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ]);
        assert_eq!(run.code, Some(3), "{}: {}", path.display(), run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{}: {}",
            path.display(),
            run.stderr
        );
        assert!(cached_names(&cache).is_empty(), "{}", path.display());
        assert!(temp_files(&cache).is_empty(), "{:?}", temp_files(&cache));
        run_ok(&["verify", "--cache-dir", cache.to_str().unwrap()]);
    }
}

#[test]
fn an_extract_killed_midway_is_finished_by_the_next_run() {
    let dir = workspace_tmp();
    let plain = dir.path().join("big.plain");
    let path = dir.path().join("big.tar.gz");
    // Incompressible layers in a gzipped archive: slow enough to be caught mid-copy.
    let big = TestImage::new(
        70,
        &[12_000_000, 12_000_000, 12_000_000],
        false,
        ("linux", "amd64"),
    );
    let expected = write_docker25(&plain, &[(big, vec!["team/big:1".into()])]).unwrap();
    gzip_file(&plain, &path).unwrap();
    let cache = dir.path().join("cache");
    let args = [
        "extract",
        "-f",
        path.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];

    let mut child = spawn(&args);
    let blobs = cache.join("blobs/sha256");
    // Kill once the first blob is in: the others, the manifest and the index are not.
    while std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the extract ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        cached_names(&cache).is_empty(),
        "the killed extract listed an incomplete image"
    );

    run_ok(&args);
    for blob in &expected.blobs {
        assert_cached(&cache, &blob.digest);
    }
    assert_eq!(cached_names(&cache).len(), 1);
    run_ok(&["verify", "--cache-dir", cache.to_str().unwrap()]);
    // What the killed run left in the temporary area is a leftover that clean removes.
    run_ok(&[
        "clean",
        "--cache-dir",
        cache.to_str().unwrap(),
        "docker.io/team/big:1",
    ]);
    assert!(temp_files(&cache).is_empty(), "{:?}", temp_files(&cache));
}
