//! Pushing every archive format to the real registry, then reading the image back through
//! the registry API (every manifest and blob digest, media types, Docker v2 vs OCI) and
//! through skopeo as an independent client. Each format is also pushed gzipped whole and
//! must land the same image.

use std::path::{Path, PathBuf};

use crate::fixtures::*;
use crate::support;
use crate::support::verify::*;
use crate::support::{RegistryClient, RegistryOptions, TestRegistry};

/// One plain-HTTP registry and a scratch directory for a test.
struct Setup {
    registry: TestRegistry,
    client: RegistryClient,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    Setup {
        registry,
        client,
        dir: support::workspace_tmp(),
    }
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `archive` and its whole-file gzip, as `[(label, path)]`.
    fn with_gzip(&self, archive: &Path) -> Vec<(&'static str, PathBuf)> {
        let gz = archive.with_extension("tar.gz");
        gzip_file(archive, &gz).expect("gzip archive");
        vec![("tar", archive.to_path_buf()), ("tar.gz", gz)]
    }

    /// Pushes `archive` to `repo:tag`, checks the result line and what the registry
    /// serves, and returns the pushed digest.
    fn push_and_verify(
        &self,
        archive: &Path,
        repo: &str,
        tag: &str,
        expected: &ExpectedTarget,
        extra: &[&str],
    ) -> String {
        let run = push(&self.registry, archive, &format!("{repo}:{tag}"), extra).success();
        let (name, digest, size) = run.pushed();
        assert_eq!(name, tag, "result line names the tag\n{run}");
        let served = verify_target(&self.client, repo, tag, expected);
        assert_eq!(
            digest, served,
            "result line digest is what the registry serves"
        );
        let (body, _) = fetch_manifest(&self.client, repo, tag);
        assert_eq!(
            size,
            body.len() as u64,
            "result line size is the manifest's"
        );
        digest
    }

    fn skopeo(&self, image: &str, digest: &str, all: bool) {
        skopeo_verify(
            &self.registry,
            &SkopeoAccess::new(&self.registry),
            image,
            digest,
            all,
        );
    }
}

#[test]
fn legacy_docker_save_pushes_a_docker_v2_manifest_with_uncompressed_layers() {
    let s = setup();
    let img = image(1, &[40_000, 9_000, 300], false);
    let archive = s.path("legacy.tar");
    let exp = write_docker_legacy(&archive, &[(img.clone(), vec!["app:1.0".into()])]).unwrap();
    let target = &exp.targets[0];
    assert_eq!(target.manifests[0].layers[0].media_type, DOCKER_LAYER);

    let mut digests = Vec::new();
    for (label, file) in s.with_gzip(&archive) {
        let repo = format!("legacy/{}", label.replace('.', "-"));
        let digest = s.push_and_verify(&file, &repo, "1.0", target, &[]);
        s.skopeo(&format!("{repo}:1.0"), &digest, false);
        digests.push(digest);
    }
    assert_eq!(
        digests[0], digests[1],
        "gzipping the archive does not change the image"
    );
    // The layers went up as the uncompressed tars docker saved: digest == diff_id.
    for layer in &img.layers {
        assert!(s.client.blob_exists("legacy/tar", &layer.diff_id));
    }
}

#[test]
fn legacy_docker_save_with_a_shared_layer_symlink_pushes_both_images() {
    let s = setup();
    let base = TestLayer::new(77, 4000, false);
    let solo = TestImage::from_layers(20, vec![base.clone()], ("linux", "amd64"));
    let duo = TestImage::from_layers(
        21,
        vec![base, TestLayer::new(78, 100, false)],
        ("linux", "amd64"),
    );
    let archive = s.path("shared.tar");
    let exp = write_docker_legacy(
        &archive,
        &[(solo, vec!["solo:1".into()]), (duo, vec!["duo:1".into()])],
    )
    .unwrap();
    s.push_and_verify(
        &archive,
        "shared/solo",
        "1",
        &exp.targets[0],
        &["--source-tag", "solo:1"],
    );
    // duo's first layer.tar is a symlink to solo's copy.
    s.push_and_verify(
        &archive,
        "shared/duo",
        "1",
        &exp.targets[1],
        &["--source-tag", "duo:1"],
    );
}

#[test]
fn docker25_save_keeps_the_stored_oci_manifest_digest() {
    let s = setup();
    let img = image(2, &[30_000, 5_000], false);
    let archive = s.path("d25.tar");
    let exp = write_docker25(
        &archive,
        &[(
            img,
            vec!["web:1".into(), "registry.example:5000/web:stable".into()],
        )],
    )
    .unwrap();
    let target = &exp.targets[0];
    let stored = target.digest.clone().unwrap();
    assert_eq!(target.manifests[0].media_type, OCI_MANIFEST);
    assert_eq!(target.manifests[0].layers[0].media_type, OCI_LAYER);

    for (label, file) in s.with_gzip(&archive) {
        let repo = format!("d25/{}", label.replace('.', "-"));
        let digest = s.push_and_verify(&file, &repo, "1", target, &[]);
        assert_eq!(digest, stored, "{label}: same digest as in the archive");
        s.skopeo(&format!("{repo}:1"), &digest, false);
    }
    // The per-layer v1 JSON blobs Docker 25 also stores belong to no image.
    for unreferenced in &exp.unreferenced_blobs {
        assert!(!s.client.blob_exists("d25/tar", unreferenced));
    }
}

#[test]
fn docker25_0_0_save_without_manifest_layers_is_pushed_from_manifest_json() {
    let s = setup();
    let img = image(3, &[20_000, 7_000], false);
    let archive = s.path("d2500.tar");
    write_docker25_0_0(&archive, &[(img.clone(), vec!["old:1".into()])]).unwrap();

    let run = push(&s.registry, &archive, "d2500/old:1", &[]).success();
    assert!(
        run.stderr.contains("built one from manifest.json"),
        "says which manifest it used\n{run}"
    );
    let (_, digest, _) = run.pushed();
    for layer in &img.layers {
        assert!(s.client.blob_exists("d2500/old", &layer.diff_id), "{run}");
    }
    s.skopeo("d2500/old:1", &digest, false);
}

#[test]
fn oci_archive_single_image_keeps_its_digest_and_gzip_layer_types() {
    let s = setup();
    let img = image(3, &[20_000, 700], true);
    let archive = s.path("oci.tar");
    let exp = write_oci_archive(&archive, &[(OciEntry::Image(img), "v1")]).unwrap();
    let target = &exp.targets[0];
    assert_eq!(target.manifests[0].layers[0].media_type, OCI_LAYER_GZIP);
    for (label, file) in s.with_gzip(&archive) {
        let repo = format!("oci/{}", label.replace('.', "-"));
        let digest = s.push_and_verify(&file, &repo, "v1", target, &[]);
        assert_eq!(Some(&digest), target.digest.as_ref());
        s.skopeo(&format!("{repo}:v1"), &digest, false);
    }
}

#[test]
fn oci_archive_with_an_uncompressed_layer_keeps_the_uncompressed_type() {
    let s = setup();
    let img = image(4, &[12_000], false);
    let archive = s.path("oci-raw.tar");
    let exp = write_oci_archive(&archive, &[(OciEntry::Image(img), "raw")]).unwrap();
    let target = &exp.targets[0];
    assert_eq!(target.manifests[0].layers[0].media_type, OCI_LAYER);
    let digest = s.push_and_verify(&archive, "oci/raw", "raw", target, &[]);
    s.skopeo("oci/raw:raw", &digest, false);
}

#[test]
fn oci_archive_index_is_pushed_whole_and_serves_the_same_index_digest() {
    let s = setup();
    let archive = s.path("multi.tar");
    let exp = write_oci_archive(&archive, &[(OciEntry::Index(platforms(10)), "multi")]).unwrap();
    let target = &exp.targets[0];
    assert_eq!(target.media_type, OCI_INDEX);
    assert_eq!(target.manifests.len(), 3);
    for (label, file) in s.with_gzip(&archive) {
        let repo = format!("multi/{}", label.replace('.', "-"));
        let digest = s.push_and_verify(&file, &repo, "multi", target, &[]);
        assert_eq!(Some(&digest), target.digest.as_ref(), "{label}");
        s.skopeo(&format!("{repo}:multi"), &digest, true);
    }
}

/// Reading a blob from the middle of a whole-gzipped archive (chunk N of a layer) while
/// other workers read other blobs must still give the exact bytes.
#[test]
fn gzipped_archives_stream_chunks_to_parallel_workers() {
    let s = setup();
    let parallel_chunks = [
        "--max-concurrent",
        "4",
        "--large-layer-threshold",
        "1K",
        "--chunk-size",
        "1500",
    ];
    let d25 = s.path("d25.tar");
    let exp = write_docker25(
        &d25,
        &[(image(60, &[30_000, 12_000, 9_000, 2_000], false), vec![])],
    )
    .unwrap();
    let gz = &s.with_gzip(&d25)[1].1;
    s.push_and_verify(gz, "gzchunks/d25", "1", &exp.targets[0], &parallel_chunks);

    let oci = s.path("oci.tar");
    let exp = write_oci_archive(&oci, &[(OciEntry::Index(platforms(61)), "m")]).unwrap();
    let gz = &s.with_gzip(&oci)[1].1;
    let digest = s.push_and_verify(gz, "gzchunks/oci", "m", &exp.targets[0], &parallel_chunks);
    assert_eq!(Some(&digest), exp.targets[0].digest.as_ref());
}

#[test]
fn ggcr_tarball_pushes_gzip_layers_with_the_docker_gzip_type() {
    let s = setup();
    let img = image(5, &[25_000, 1_000], false);
    let archive = s.path("ggcr.tar");
    let exp = write_ggcr_tarball(&archive, &[(img, vec!["gcr.io/proj/app:v3".into()])]).unwrap();
    let target = &exp.targets[0];
    assert_eq!(target.manifests[0].layers[0].media_type, DOCKER_LAYER_GZIP);
    let mut digests = Vec::new();
    for (label, file) in s.with_gzip(&archive) {
        let repo = format!("ggcr/{}", label.replace('.', "-"));
        let digest = s.push_and_verify(&file, &repo, "v3", target, &[]);
        s.skopeo(&format!("{repo}:v3"), &digest, false);
        digests.push(digest);
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn skopeo_written_docker_archive_is_pushed() {
    require_skopeo();
    let s = setup();
    let img = image(6, &[18_000, 2_500], true);
    let layout = s.path("layout");
    write_oci_layout_dir(&layout, &[(OciEntry::Image(img.clone()), "src")]).unwrap();
    let archive = s.path("skopeo-docker.tar");
    skopeo_docker_archive(&layout, "src", &archive, "example.com/ns/app:v2").unwrap();
    let exp = expected_skopeo_docker_archive(&img, "example.com/ns/app:v2");
    let target = &exp.targets[0];
    let mut digests = Vec::new();
    for (label, file) in s.with_gzip(&archive) {
        let repo = format!("skopeo-docker/{}", label.replace('.', "-"));
        let digest = s.push_and_verify(&file, &repo, "v2", target, &[]);
        s.skopeo(&format!("{repo}:v2"), &digest, false);
        digests.push(digest);
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn skopeo_written_oci_archive_keeps_its_digest() {
    require_skopeo();
    let s = setup();
    let img = image(7, &[15_000, 900], true);
    let layout = s.path("layout");
    let lexp = write_oci_layout_dir(&layout, &[(OciEntry::Image(img), "src")]).unwrap();
    let archive = s.path("skopeo-oci.tar");
    skopeo_oci_archive(&layout, "src", &archive, "dst").unwrap();
    let target = &lexp.targets[0];
    for (label, file) in s.with_gzip(&archive) {
        let repo = format!("skopeo-oci/{}", label.replace('.', "-"));
        let digest = s.push_and_verify(&file, &repo, "dst", target, &[]);
        assert_eq!(Some(&digest), target.digest.as_ref());
        s.skopeo(&format!("{repo}:dst"), &digest, false);
    }
}

#[test]
fn skopeo_written_oci_archive_of_an_index_is_pushed_whole() {
    require_skopeo();
    let s = setup();
    let layout = s.path("layout");
    let lexp = write_oci_layout_dir(&layout, &[(OciEntry::Index(platforms(8)), "src")]).unwrap();
    let archive = s.path("skopeo-index.tar");
    skopeo_copy_refs(
        &format!("oci:{}:src", layout.display()),
        &format!("oci-archive:{}:multi", archive.display()),
        true,
    )
    .unwrap();
    let target = &lexp.targets[0];
    let digest = s.push_and_verify(&archive, "skopeo-index/app", "multi", target, &[]);
    assert_eq!(
        Some(&digest),
        target.digest.as_ref(),
        "skopeo kept the index digest"
    );
    s.skopeo("skopeo-index/app:multi", &digest, true);
}

/// Docker's containerd image store saves a pulled multi-platform image as its index plus
/// only the host platform's content. The registry (distribution 2.8 checks an index's
/// children exist) cannot take the index, so the policy is: push the platform that is
/// present, under the tag, with the source's own manifest digest, and warn which
/// platforms were left out.
#[test]
fn containerd_store_with_only_the_host_platform_pushes_that_platform_and_warns() {
    let s = setup();
    let plats = platforms(20);
    let archive = s.path("c8d.tar");
    let exp = write_docker_containerd_store(
        &archive,
        &[(plats.clone(), vec!["nginx:1.27".into()])],
        &ContainerdOpts::default(),
    )
    .unwrap();
    let target = &exp.targets[0];
    assert_eq!(target.manifests.len(), 1);
    let host = &target.manifests[0];
    for (label, file) in s.with_gzip(&archive) {
        let repo = format!("c8d/{}", label.replace('.', "-"));
        let run = push(&s.registry, &file, &format!("{repo}:1.27"), &[]).success();
        let warning = run
            .stderr
            .lines()
            .find(|l| l.starts_with("warning:"))
            .unwrap_or_else(|| panic!("warns about the missing platforms\n{run}"));
        assert!(
            warning.contains("platforms linux/arm64/v8, linux/s390x")
                && warning.contains("3 build attestations")
                && !warning.contains("unknown/unknown"),
            "names the missing platforms, counts the attestations\n{run}"
        );
        let (_, digest, _) = run.pushed();
        let served = verify_manifest(&s.client, &repo, "1.27", host);
        assert_eq!(digest, served);
        assert_eq!(
            Some(&digest),
            host.digest.as_ref(),
            "the host manifest's own digest"
        );
        s.skopeo(&format!("{repo}:1.27"), &digest, false);
    }
}

#[test]
fn containerd_store_local_build_with_attestation_pushes_the_whole_index() {
    let s = setup();
    let opts = ContainerdOpts {
        attestations: Attestations::Present,
        pulled: false,
        ..ContainerdOpts::default()
    };
    let archive = s.path("c8d-built.tar");
    let exp = write_docker_containerd_store(
        &archive,
        &[(vec![image(21, &[6_000], true)], vec!["app:dev".into()])],
        &opts,
    )
    .unwrap();
    let target = &exp.targets[0];
    assert_eq!(target.manifests.len(), 2, "image + attestation");
    let run = push(&s.registry, &archive, "built/app:dev", &[]).success();
    assert!(!run.stderr.contains("warning:"), "nothing left out\n{run}");
    let digest = verify_target(&s.client, "built/app", "dev", target);
    assert_eq!(Some(&digest), target.digest.as_ref());
    assert_eq!(run.pushed().1, digest);
    s.skopeo("built/app:dev", &digest, true);
}

#[test]
fn containerd_store_with_all_platforms_but_no_attestations_pushes_an_index_of_the_present_ones() {
    let s = setup();
    let opts = ContainerdOpts {
        others_present: true,
        ..ContainerdOpts::default()
    };
    let archive = s.path("c8d-all.tar");
    let exp =
        write_docker_containerd_store(&archive, &[(platforms(22), vec!["multi:1".into()])], &opts)
            .unwrap();
    let target = &exp.targets[0];
    assert_eq!(target.manifests.len(), 3);
    assert_eq!(target.absent_manifests.len(), 3, "the attestations");
    let run = push(&s.registry, &archive, "c8d/all:1", &[]).success();
    assert!(
        run.stderr
            .contains("warning: the source lacks 3 build attestations of its index"),
        "{run}"
    );
    // A new index of the three platforms: its digest differs from the source's, but
    // each platform keeps its own.
    let reduced = ExpectedTarget {
        digest: None,
        ..target.clone()
    };
    let digest = verify_target(&s.client, "c8d/all", "1", &reduced);
    assert_ne!(Some(&digest), target.digest.as_ref());
    assert_eq!(run.pushed().1, digest);
    let (body, _) = fetch_manifest(&s.client, "c8d/all", "1");
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(3));
    s.skopeo("c8d/all:1", &digest, true);
}

// ---------------------------------------------------------------- multi-image archives

fn two_image_legacy(s: &Setup) -> (PathBuf, Expected) {
    let archive = s.path("two.tar");
    let exp = write_docker_legacy(
        &archive,
        &[
            (
                image(30, &[5_000], false),
                vec!["alpha:1".into(), "alpha:latest".into()],
            ),
            (
                image(31, &[6_000], false),
                vec!["example.com/team/beta:2".into()],
            ),
        ],
    )
    .unwrap();
    (archive, exp)
}

#[test]
fn multi_image_archive_is_selected_with_source_tag() {
    let s = setup();
    let (archive, exp) = two_image_legacy(&s);
    s.push_and_verify(
        &archive,
        "pick/one",
        "x",
        &exp.targets[0],
        &["--source-tag", "alpha:1"],
    );
    s.push_and_verify(
        &archive,
        "pick/two",
        "y",
        &exp.targets[1],
        &["--source-tag", "example.com/team/beta:2"],
    );
}

#[test]
fn multi_image_archive_is_selected_by_the_target_tag() {
    let s = setup();
    let (archive, exp) = two_image_legacy(&s);
    s.push_and_verify(&archive, "bytag/beta", "2", &exp.targets[1], &[]);
    s.push_and_verify(&archive, "bytag/alpha", "1", &exp.targets[0], &[]);
}

#[test]
fn target_without_a_tag_selects_the_latest_image() {
    let s = setup();
    let (archive, exp) = two_image_legacy(&s);
    let run = push(&s.registry, &archive, "implicit/app", &[]).success();
    assert_eq!(run.pushed().0, "latest");
    verify_target(&s.client, "implicit/app", "latest", &exp.targets[0]);
}

#[test]
fn ambiguous_multi_image_archive_lists_the_choices_and_pushes_nothing() {
    let s = setup();
    let (archive, _) = two_image_legacy(&s);
    let run = push(&s.registry, &archive, "amb/app:none", &[]).failure(2);
    for name in ["alpha:1", "example.com/team/beta:2", "--source-tag"] {
        assert!(run.stderr.contains(name), "mentions {name}\n{run}");
    }
    assert!(run.stdout.is_empty(), "{run}");
    assert!(stored_blobs(&s.registry).is_empty(), "nothing uploaded");

    let run = push(
        &s.registry,
        &archive,
        "amb/app:x",
        &["--source-tag", "gamma:9"],
    )
    .failure(2);
    assert!(
        run.stderr.contains("gamma:9") && run.stderr.contains("alpha:1"),
        "{run}"
    );
}

#[test]
fn multi_image_docker25_and_oci_archives_select_by_tag() {
    let s = setup();
    let d25 = s.path("d25-two.tar");
    let exp = write_docker25(
        &d25,
        &[
            (image(40, &[3_000], false), vec!["one:a".into()]),
            (image(41, &[4_000], false), vec!["two:b".into()]),
        ],
    )
    .unwrap();
    s.push_and_verify(&d25, "d25sel/x", "b", &exp.targets[1], &[]);
    s.push_and_verify(
        &d25,
        "d25sel/y",
        "latest",
        &exp.targets[0],
        &["--source-tag", "one:a"],
    );

    let oci = s.path("oci-two.tar");
    let exp = write_oci_archive(
        &oci,
        &[
            (OciEntry::Image(image(42, &[2_000], true)), "v1"),
            (OciEntry::Index(platforms(43)), "multi"),
        ],
    )
    .unwrap();
    s.push_and_verify(&oci, "ocisel/x", "v1", &exp.targets[0], &[]);
    s.push_and_verify(
        &oci,
        "ocisel/y",
        "latest",
        &exp.targets[1],
        &["--source-tag", "multi"],
    );
    let run = push(&s.registry, &oci, "ocisel/z:other", &[]).failure(2);
    assert!(
        run.stderr.contains("v1") && run.stderr.contains("multi"),
        "{run}"
    );
}

#[test]
fn zero_byte_layer_is_pushed() {
    let s = setup();
    let layers = vec![
        TestLayer::from_tar(Vec::new(), false),
        TestLayer::new(70, 3_000, false),
    ];
    let img = TestImage::from_layers(70, layers, ("linux", "amd64"));
    let archive = s.path("empty-layer.tar");
    let exp = write_oci_archive(&archive, &[(OciEntry::Image(img), "e")]).unwrap();
    assert_eq!(exp.targets[0].manifests[0].layers[0].size, 0);
    s.push_and_verify(&archive, "empty/oci", "e", &exp.targets[0], &[]);
    s.push_and_verify(
        &archive,
        "empty/chunked",
        "e",
        &exp.targets[0],
        &["--large-layer-threshold", "1", "--chunk-size", "1000"],
    );
}
