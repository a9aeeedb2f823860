//! `--compress`: layers compressed on the way up, against the real registry. Every test
//! checks the result the way a client would: the manifest the registry serves, blobs that
//! decompress to the config's diff_ids, skopeo copying the image (it verifies every
//! digest), and the digests staying the same across runs, cuts and resumes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fixtures::{
    OciEntry, Rng, TarEntry, TestImage, TestLayer, digest, tar_bytes, write_docker_legacy,
    write_docker25, write_oci_archive,
};
use crate::support;
use crate::support::pusher::read_tree;
use crate::support::{
    Fault, FaultProxy, Match, Mode, Pusher, RegistryClient, RegistryOptions, Rule, Run,
    TestRegistry, send_signal,
};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ACCEPT: [&str; 3] = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST];

/// A layer of text files: compresses to roughly a third, like most real layers.
pub(crate) fn text_layer(seed: u64, size: usize) -> TestLayer {
    const WORDS: [&str; 12] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima",
    ];
    let mut rng = Rng::new(seed);
    let mut entries = vec![TarEntry::dir("usr/", 1_704_067_200)];
    let mut written = 0;
    let mut file = 0;
    while written < size {
        let want = (size - written).min(1 << 20);
        let mut text = String::with_capacity(want + 64);
        while text.len() < want {
            let word = WORDS[rng.below(WORDS.len() as u64) as usize];
            text.push_str(&format!(
                "{:08x} {word} {}\n",
                rng.next_u64() >> 40,
                rng.below(1000)
            ));
        }
        text.truncate(want);
        written += want;
        entries.push(TarEntry::file(
            &format!("usr/file-{file}.txt"),
            text.into_bytes(),
            1_704_067_200,
        ));
        file += 1;
    }
    TestLayer::from_tar(tar_bytes(&entries), false)
}

struct Setup {
    registry: TestRegistry,
    dir: tempfile::TempDir,
    archive: PathBuf,
    image: TestImage,
}

impl Setup {
    /// A Docker 25+ archive (OCI manifest) with a 10 MiB text layer (streamed in 1 MiB
    /// chunks), a 300 kB text layer (compressed in memory) and a layer that is gzip
    /// already.
    fn new() -> Setup {
        let layers = vec![
            text_layer(1, 10 << 20),
            text_layer(2, 300_000),
            TestLayer::new(3, 200_000, true),
        ];
        Setup::with_image(TestImage::from_layers(7, layers, ("linux", "amd64")), false)
    }

    fn with_image(image: TestImage, legacy: bool) -> Setup {
        let images = [(image.clone(), vec!["compress/app:1".to_string()])];
        Setup::writing(image, |archive| {
            if legacy {
                write_docker_legacy(archive, &images).map(|_| ())
            } else {
                write_docker25(archive, &images).map(|_| ())
            }
        })
    }

    /// An OCI archive (its gzip layers stay gzip) holding `entry`; `image` is the one
    /// the test looks at first.
    fn oci(image: TestImage, entry: OciEntry) -> Setup {
        Setup::writing(image, |archive| {
            write_oci_archive(archive, &[(entry, "compress/app:1")]).map(|_| ())
        })
    }

    fn writing(image: TestImage, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Setup {
        let registry = TestRegistry::start(RegistryOptions::plain());
        let dir = support::workspace_tmp();
        let archive = dir.path().join("image.tar");
        write(&archive).expect("fixture");
        Setup {
            registry,
            dir,
            archive,
            image,
        }
    }

    /// A push with its own cache directory `cache` (under the test's directory).
    fn push(&self, host: &str, repository: &str, cache: &str, extra: &[&str]) -> Pusher {
        let target = format!("http://{host}/{repository}:1");
        let mut args = vec![
            "--json",
            "-v",
            "--chunk-size",
            "1M",
            "--large-layer-threshold",
            "1M",
        ];
        args.extend_from_slice(extra);
        let home = self.dir.path().join(cache);
        Pusher::push(&home, &self.archive, &target, &args)
    }

    fn client(&self) -> RegistryClient {
        RegistryClient::new(&self.registry)
    }

    fn manifest(&self, repository: &str) -> (serde_json::Value, String) {
        self.manifest_at(repository, "1")
    }

    fn manifest_at(&self, repository: &str, reference: &str) -> (serde_json::Value, String) {
        let (body, content_type, digest) =
            self.client().get_manifest(repository, reference, &ACCEPT);
        assert_eq!(support::sha256_digest(&body), digest);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["mediaType"].as_str().unwrap(), content_type);
        (value, digest)
    }
}

fn decompress(media_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if media_type.ends_with("gzip") {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid multi-member gzip");
    } else if media_type.ends_with("zstd") {
        zstd::stream::read::Decoder::new(bytes)
            .unwrap()
            .read_to_end(&mut out)
            .expect("valid zstd frames");
    } else {
        out = bytes.to_vec();
    }
    out
}

/// Every layer of `manifest`, read from `blob`, decompresses to its config diff_id.
fn assert_layers_match_diff_ids(
    manifest: &serde_json::Value,
    image: &TestImage,
    blob: impl Fn(&str) -> Vec<u8>,
) {
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), image.layers.len());
    for (layer, expected) in layers.iter().zip(&image.layers) {
        let digest_text = layer["digest"].as_str().unwrap();
        let bytes = blob(digest_text);
        assert_eq!(digest(&bytes), digest_text, "blob content");
        assert_eq!(bytes.len() as u64, layer["size"].as_u64().unwrap());
        let media_type = layer["mediaType"].as_str().unwrap();
        assert_eq!(
            digest(&decompress(media_type, &bytes)),
            expected.diff_id,
            "layer {digest_text} ({media_type}) decompresses to its diff_id"
        );
    }
    assert_eq!(manifest["config"]["digest"], image.config_digest.as_str());
}

fn skopeo_copies(registry: &str, repository: &str, into: &Path) {
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{registry}/{repository}:1"),
            &format!("dir:{}", into.display()),
        ])
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two platforms sharing a 10 MiB text base layer, each with a small text layer of its
/// own and a gzip layer, in an OCI archive: an index over two manifests.
fn two_platforms() -> (TestImage, TestImage) {
    let base = text_layer(1, 10 << 20);
    let amd = TestImage::from_layers(
        7,
        vec![
            base.clone(),
            text_layer(2, 300_000),
            TestLayer::new(3, 200_000, true),
        ],
        ("linux", "amd64"),
    );
    let arm = TestImage::from_layers(
        8,
        vec![
            base,
            text_layer(4, 300_000),
            TestLayer::new(5, 200_000, true),
        ],
        ("linux", "arm64"),
    );
    (amd, arm)
}

#[test]
fn gzip_layers_pulled_back_decompress_to_their_diff_ids() {
    let (amd, arm) = two_platforms();
    let setup = Setup::oci(amd.clone(), OciEntry::Index(vec![amd.clone(), arm.clone()]));
    let host = setup.registry.host();
    let run = setup
        .push(&host, "compress/gzip", "a", &["--compress", "gzip"])
        .run();
    run.expect_success();
    let report = run.report();
    let compression = &report["compression"];
    assert_eq!(compression["algorithm"], "gzip", "{run}");
    // The shared base layer once, and each platform's small text layer.
    assert_eq!(compression["layers_compressed"], 3, "{run}");
    assert!(
        compression["bytes_compressed"].as_u64().unwrap() * 2
            < compression["bytes_uncompressed"].as_u64().unwrap()
    );
    let (index, digest_served) = setup.manifest("compress/gzip");
    assert_eq!(report["digest"], digest_served.as_str());
    assert_eq!(index["mediaType"], OCI_INDEX);
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    let client = setup.client();
    let mut manifests = Vec::new();
    for (child, image) in children.iter().zip([&amd, &arm]) {
        let (manifest, served) =
            setup.manifest_at("compress/gzip", child["digest"].as_str().unwrap());
        assert_eq!(child["digest"], served.as_str());
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(
                layer["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
        }
        // The gzip layer of the archive went up as it was.
        assert_eq!(
            manifest["layers"][2]["digest"],
            image.layers[2].digest.as_str()
        );
        assert_layers_match_diff_ids(&manifest, image, |d| client.get_blob("compress/gzip", d));
        manifests.push(manifest);
    }
    // Pulled back with the product (this machine's platform), every layer decompresses
    // to its diff_id.
    let pulled = setup.dir.path().join("pulled");
    Pusher::new(
        setup.dir.path(),
        &[
            "pull",
            "-i",
            &format!("http://{host}/compress/gzip:1"),
            "--cache-dir",
            &pulled.display().to_string(),
        ],
    )
    .run()
    .expect_success();
    assert_layers_match_diff_ids(&manifests[0], &amd, |d| {
        std::fs::read(
            pulled
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .expect("pulled blob")
    });
    skopeo_copies(&host, "compress/gzip", &setup.dir.path().join("skopeo"));
}

#[test]
fn zstd_turns_a_docker_manifest_into_an_oci_one_that_skopeo_reads() {
    let layers = vec![text_layer(4, 6 << 20), text_layer(5, 100_000)];
    let setup = Setup::with_image(TestImage::from_layers(8, layers, ("linux", "amd64")), true);
    let host = setup.registry.host();
    let run = setup
        .push(&host, "compress/zstd", "a", &["--compress", "zstd"])
        .run();
    run.expect_success();
    assert!(run.stderr.contains("1 manifest converted to OCI"), "{run}");
    assert_eq!(run.report()["compression"]["manifests_converted"], 1);
    let (manifest, _) = setup.manifest("compress/zstd");
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    let client = setup.client();
    assert_layers_match_diff_ids(&manifest, &setup.image, |d| {
        client.get_blob("compress/zstd", d)
    });
    skopeo_copies(&host, "compress/zstd", &setup.dir.path().join("skopeo"));
}

#[test]
fn two_runs_without_shared_state_push_one_manifest_digest() {
    let setup = Setup::new();
    let host = setup.registry.host();
    let mut digests = Vec::new();
    for (repository, cache, threads) in [("compress/one", "a", "1"), ("compress/two", "b", "3")] {
        let run = setup
            .push(
                &host,
                repository,
                cache,
                &["--compress", "gzip", "--compress-threads", threads],
            )
            .run();
        run.expect_success();
        digests.push(run.report()["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(
        digests[0], digests[1],
        "same image, same compressed manifest"
    );
    // The same run again with its cache: known compressed forms, same manifest.
    let again = setup
        .push(&host, "compress/one", "a", &["--compress", "gzip"])
        .run();
    again.expect_success();
    assert_eq!(again.report()["digest"], digests[0].as_str());
}

#[test]
fn skip_existing_with_compression_uploads_nothing_the_second_time() {
    let setup = Setup::new();
    let proxy = FaultProxy::start(&setup.registry.host(), Mode::Buffering);
    let first = setup
        .push(&proxy.host(), "compress/skip", "a", &["--compress", "gzip"])
        .run();
    first.expect_success();
    proxy.clear_log();
    let second = setup
        .push(
            &proxy.host(),
            "compress/skip",
            "a",
            &["--compress", "gzip", "--skip-existing"],
        )
        .run();
    second.expect_success();
    assert_eq!(second.report()["up_to_date"], true, "{second}");
    assert_eq!(second.report()["digest"], first.report()["digest"]);
    assert_eq!(proxy.blob_bytes_received(), 0, "{}", proxy.describe());
    // Without --skip-existing the compressed blobs are found by HEAD: nothing is sent.
    proxy.clear_log();
    let third = setup
        .push(&proxy.host(), "compress/skip", "a", &["--compress", "gzip"])
        .run();
    third.expect_success();
    assert_eq!(third.report_u64("bytes_sent"), 0, "{third}");
    assert_eq!(third.report()["digest"], first.report()["digest"]);
}

/// The digest an uninterrupted compressed push gives, for comparing with faulty runs.
fn reference_digest(setup: &Setup) -> String {
    let run = setup
        .push(
            &setup.registry.host(),
            "compress/reference",
            "reference",
            &["--compress", "gzip"],
        )
        .run();
    run.expect_success();
    run.report()["digest"].as_str().unwrap().to_string()
}

#[test]
fn a_cut_mid_layer_resumes_within_the_run_to_the_same_digest() {
    let setup = Setup::new();
    let expected = reference_digest(&setup);
    for (mode, repository) in [
        (Mode::Buffering, "compress/cut-buffered"),
        (Mode::Streaming, "compress/cut-streaming"),
    ] {
        let proxy = FaultProxy::start(&setup.registry.host(), mode);
        proxy.add(Rule::new(
            Match::patch().nth(3),
            Fault::CutRequestBody { after: 100_000 },
        ));
        let run = setup
            .push(
                &proxy.host(),
                repository,
                repository,
                &["--compress", "gzip"],
            )
            .run();
        run.expect_success();
        assert_eq!(proxy.fired(), vec![1], "{mode:?}: {}", proxy.describe());
        assert_eq!(run.report()["digest"], expected.as_str(), "{mode:?}\n{run}");
        assert!(run.report_u64("resumes") >= 1, "{run}");
        let (_, served) = setup.manifest(repository);
        assert_eq!(served, expected);
    }
}

#[test]
fn a_killed_push_continues_the_compressed_layer_in_the_next_run() {
    let setup = Setup::new();
    let expected = reference_digest(&setup);
    let proxy = FaultProxy::start(&setup.registry.host(), Mode::Buffering);
    let pid = Arc::new(AtomicU32::new(0));
    let hook_pid = pid.clone();
    // The product dies as its fourth chunk arrives: three are confirmed and saved.
    proxy.add(Rule::new(
        Match::patch().nth(4),
        Fault::hook(move |_| {
            send_signal(hook_pid.load(Ordering::SeqCst), "KILL");
            false
        }),
    ));
    let pusher = setup.push(
        &proxy.host(),
        "compress/killed",
        "a",
        &["--compress", "gzip"],
    );
    let child = pusher.spawn();
    pid.store(child.id(), Ordering::SeqCst);
    let first = Run::wait(child);
    assert_eq!(first.signal, Some(9), "{first}");
    let sessions: Vec<serde_json::Value> = read_tree(&pusher.cache_dir().join("uploads/sessions"))
        .into_iter()
        .map(|(_, text)| serde_json::from_str(&text).unwrap())
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let saved = &sessions[0];
    assert_eq!(saved["digest"], setup.image.layers[0].diff_id.as_str());
    assert!(saved["offset"].as_u64().unwrap() >= 3 << 20, "{saved}");
    assert!(
        !saved["compression"]["frames"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let second = pusher.run();
    second.expect_success();
    assert!(
        second
            .stderr
            .contains("continuing the compressed upload of an earlier run"),
        "{second}"
    );
    assert!(second.report_u64("bytes_reused") >= 3 << 20, "{second}");
    assert_eq!(second.report()["digest"], expected.as_str(), "{second}");
    assert!(read_tree(&pusher.cache_dir().join("uploads/sessions")).is_empty());
    let (manifest, _) = setup.manifest("compress/killed");
    let client = setup.client();
    assert_layers_match_diff_ids(&manifest, &setup.image, |d| {
        client.get_blob("compress/killed", d)
    });
}

#[test]
fn layers_that_are_compressed_already_keep_their_bytes() {
    // In an OCI archive: one gzip layer with its proper type, and one gzip stream
    // mislabelled as a plain tar.
    let gzip = TestLayer::new(9, 300_000, true);
    let mislabelled = TestLayer::from_tar(TestLayer::new(10, 200_000, true).bytes, false);
    let image = TestImage::from_layers(9, vec![gzip, mislabelled], ("linux", "amd64"));
    let setup = Setup::oci(image.clone(), OciEntry::Image(image));
    let plain = setup
        .push(&setup.registry.host(), "compress/plain", "a", &[])
        .run();
    plain.expect_success();
    let run = setup
        .push(
            &setup.registry.host(),
            "compress/as-is",
            "b",
            &["--compress", "gzip"],
        )
        .run();
    run.expect_success();
    assert_eq!(run.report()["digest"], plain.report()["digest"], "{run}");
    assert!(run.stderr.contains("compressed already"), "{run}");
    assert_eq!(run.report()["compression"]["layers_compressed"], 0);
}

#[test]
fn auto_sends_incompressible_layers_raw_and_says_why() {
    let setup = Setup::with_image(
        TestImage::new(12, &[6 << 20], false, ("linux", "amd64")),
        false,
    );
    let plain = setup
        .push(&setup.registry.host(), "compress/raw", "a", &[])
        .run();
    plain.expect_success();
    let run = setup
        .push(&setup.registry.host(), "compress/auto", "b", &[])
        .env("DOCKER_PUSHER_COMPRESS", "auto")
        .run();
    run.expect_success();
    let compression = &run.report()["compression"];
    assert_eq!(compression["mode"], "auto");
    assert_eq!(compression["algorithm"], "none", "{run}");
    assert!(
        compression["reason"]
            .as_str()
            .unwrap()
            .contains("barely compress"),
        "{run}"
    );
    assert_eq!(run.report()["digest"], plain.report()["digest"]);
    // The next run of the same push keeps the choice.
    let again = setup
        .push(
            &setup.registry.host(),
            "compress/auto",
            "b",
            &["--compress", "auto"],
        )
        .run();
    again.expect_success();
    assert!(
        again.report()["compression"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("as chosen for this image before"),
        "{again}"
    );
}

#[test]
fn an_unknown_compression_is_a_usage_error() {
    let setup = Setup::with_image(
        TestImage::new(13, &[1000], false, ("linux", "amd64")),
        false,
    );
    let run = setup
        .push(
            &setup.registry.host(),
            "compress/bad",
            "a",
            &["--compress", "brotli"],
        )
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("auto, gzip, zstd, none"), "{run}");
}

#[test]
fn save_compress_gzip_writes_an_archive_skopeo_accepts_and_pushes_to_the_same_digest() {
    let setup = Setup::new();
    let cache = setup.dir.path().join("store");
    let cache_arg = cache.display().to_string();
    let archive = setup.archive.display().to_string();
    Pusher::new(
        setup.dir.path(),
        &["extract", "-f", &archive, "--cache-dir", &cache_arg],
    )
    .run()
    .expect_success();
    let saved = setup.dir.path().join("saved.tar");
    let saved_arg = saved.display().to_string();
    let run = Pusher::new(
        setup.dir.path(),
        &[
            "save",
            "compress/app:1",
            "-o",
            &saved_arg,
            "--cache-dir",
            &cache_arg,
            "--compress",
            "gzip",
            "--json",
        ],
    )
    .run();
    run.expect_success();
    let report = run.report();
    assert_eq!(report["compression"]["layers_compressed"], 3, "{run}");
    // skopeo reads it both ways: docker-archive (manifest.json) and oci-archive.
    for source in [
        format!("docker-archive:{saved_arg}"),
        format!("oci-archive:{saved_arg}"),
    ] {
        let into = setup.dir.path().join(format!("copy-{}", source.len()));
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                &source,
                &format!("dir:{}", into.display()),
            ])
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Pushed as it is, the saved archive is the image `push --compress gzip` makes.
    let host = setup.registry.host();
    let from_saved = Pusher::push(
        &setup.dir.path().join("p"),
        &saved,
        &format!("http://{host}/compress/saved:1"),
        &["--json"],
    )
    .run();
    from_saved.expect_success();
    let direct = setup
        .push(&host, "compress/direct", "d", &["--compress", "gzip"])
        .run();
    direct.expect_success();
    assert_eq!(from_saved.report()["digest"], direct.report()["digest"]);
    let (manifest, _) = setup.manifest("compress/saved");
    let client = setup.client();
    assert_layers_match_diff_ids(&manifest, &setup.image, |d| {
        client.get_blob("compress/saved", d)
    });
}

#[test]
fn a_zstd_archive_from_save_extracts_with_its_diff_ids_checked() {
    let setup = Setup::new();
    let cache = setup.dir.path().join("store").display().to_string();
    let archive = setup.archive.display().to_string();
    let home = setup.dir.path();
    Pusher::new(home, &["extract", "-f", &archive, "--cache-dir", &cache])
        .run()
        .expect_success();
    let saved = setup.dir.path().join("zstd.tar").display().to_string();
    Pusher::new(
        home,
        &[
            "save",
            "compress/app:1",
            "-o",
            &saved,
            "--cache-dir",
            &cache,
            "--compress",
            "zstd",
        ],
    )
    .run()
    .expect_success();
    let other = setup.dir.path().join("other").display().to_string();
    let run = Pusher::new(
        home,
        &["extract", "-f", &saved, "--cache-dir", &other, "--json"],
    )
    .run();
    run.expect_success();
    // The image in the second cache is the zstd one: an OCI manifest with zstd layers.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&other).join("index.json")).unwrap())
            .unwrap();
    let root = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(&other)
                .join("blobs/sha256")
                .join(root.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
}

#[test]
fn auto_measures_a_fast_link_sends_raw_and_leaves_no_probe_behind() {
    let layers = vec![text_layer(14, 6 << 20)];
    let setup = Setup::with_image(
        TestImage::from_layers(14, layers, ("linux", "amd64")),
        false,
    );
    let run = setup
        .push(
            &setup.registry.host(),
            "compress/fast",
            "a",
            &["--compress", "auto"],
        )
        .run();
    run.expect_success();
    let compression = &run.report()["compression"];
    assert_eq!(compression["algorithm"], "none", "{run}");
    let reason = compression["reason"].as_str().unwrap();
    assert!(
        reason.contains("compressing would not make the push faster"),
        "{reason}"
    );
    assert!(run.stderr.contains("measured the link to"), "{run}");
    // The probe's upload session was cancelled: the registry keeps none of its bytes.
    // (distribution leaves an empty hash state behind a cancelled session: not data.)
    let uploads: Vec<PathBuf> = read_tree(setup.registry.storage_dir())
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| path.components().any(|c| c.as_os_str() == "_uploads"))
        .filter(|path| path.file_name().is_some_and(|name| name == "data"))
        .collect();
    assert!(uploads.is_empty(), "{uploads:?}");
    // The measurement is remembered: the next push to this registry does not probe.
    let other = setup
        .push(
            &setup.registry.host(),
            "compress/fast-again",
            "a",
            &["--compress", "auto"],
        )
        .run();
    other.expect_success();
    assert!(!other.stderr.contains("measured the link to"), "{other}");
}
