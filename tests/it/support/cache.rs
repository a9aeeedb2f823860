//! Helpers shared by the cache tests: short forms of running the real binary without
//! credentials, putting test images into a registry with the harness's own client (independent of the
//! product code), and reading a cache directory back.

use std::path::{Path, PathBuf};
use std::process::Child;

use crate::fixtures::{
    IndexEntry, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, OciEntry, TestImage, TestLayer, index_json,
    oci_manifest, write_oci_archive,
};
use crate::support::{Pusher, RegistryClient, Run};

/// `docker-image-pusher ARGS...` with no credentials (see [`Pusher::without_credentials`]).
pub fn run(args: &[&str]) -> Run {
    Pusher::without_credentials(args).run()
}

/// Runs and insists on success, showing what the tool said otherwise.
pub fn run_ok(args: &[&str]) -> Run {
    let run = run(args);
    assert_eq!(
        run.code,
        Some(0),
        "{args:?} failed\nstdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    run
}

pub fn spawn(args: &[&str]) -> Child {
    Pusher::without_credentials(args).spawn()
}

/// Two images, `linux/amd64` and `linux/arm64`, sharing a base layer, extracted into `cache`
/// from an OCI archive as `example.com/team/a:1` and `b:1`. The seeds count up from `seed`;
/// `sizes` are the base layer's and each image's own layer's.
pub fn extract_two_images(
    dir: &Path,
    cache: &Path,
    seed: u64,
    sizes: [usize; 3],
) -> (TestImage, TestImage) {
    let base = TestLayer::new(seed, sizes[0], true);
    let a = TestImage::from_layers(
        seed + 1,
        vec![base.clone(), TestLayer::new(seed + 2, sizes[1], true)],
        ("linux", "amd64"),
    );
    let b = TestImage::from_layers(
        seed + 3,
        vec![base, TestLayer::new(seed + 4, sizes[2], true)],
        ("linux", "arm64"),
    );
    let path = dir.join("two.tar");
    write_oci_archive(
        &path,
        &[
            (OciEntry::Image(a.clone()), "example.com/team/a:1"),
            (OciEntry::Image(b.clone()), "example.com/team/b:1"),
        ],
    )
    .unwrap();
    run_ok(&[
        "extract",
        "-f",
        path.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    (a, b)
}

/// Puts an image's blobs and OCI manifest into `repo` under `tag`; returns the digest.
pub fn upload_image(client: &RegistryClient, repo: &str, tag: &str, image: &TestImage) -> String {
    client.put_blob(repo, &image.config);
    for layer in &image.layers {
        client.put_blob(repo, &layer.bytes);
    }
    client.put_manifest(repo, tag, OCI_MANIFEST, &oci_manifest(image))
}

/// Puts a multi-platform index over `images` under `tag`; returns the index digest.
pub fn upload_index(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    images: &[TestImage],
) -> String {
    let mut entries = Vec::new();
    for image in images {
        let digest = upload_image(
            client,
            repo,
            &crate::fixtures::digest(&oci_manifest(image)),
            image,
        );
        entries.push(IndexEntry {
            blob: crate::fixtures::BlobRef {
                digest,
                size: oci_manifest(image).len() as u64,
                media_type: OCI_MANIFEST.to_string(),
            },
            annotations: vec![],
            platform: Some(image.platform()),
        });
    }
    let index = index_json(&entries, Some(OCI_INDEX));
    client.put_manifest(repo, tag, OCI_INDEX, &index)
}

/// Every digest an image consists of (manifest, config, layers).
pub fn image_digests(image: &TestImage) -> Vec<String> {
    let mut digests = vec![
        crate::fixtures::digest(&oci_manifest(image)),
        image.config_blob(OCI_CONFIG).digest,
    ];
    digests.extend(image.layers.iter().map(|l| l.digest.clone()));
    digests
}

pub fn index_json_of(cache: &Path) -> serde_json::Value {
    let bytes = std::fs::read(cache.join("index.json")).expect("read the cache's index.json");
    serde_json::from_slice(&bytes).expect("index.json is JSON")
}

/// `(ref.name, digest)` of every cache entry.
pub fn cached_names(cache: &Path) -> Vec<(String, String)> {
    index_json_of(cache)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn blob_path(cache: &Path, digest: &str) -> PathBuf {
    cache
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Checks a blob is in the cache with exactly the expected content hash.
pub fn assert_cached(cache: &Path, digest: &str) {
    let bytes = std::fs::read(blob_path(cache, digest))
        .unwrap_or_else(|e| panic!("blob {digest} is not in the cache: {e}"));
    assert_eq!(crate::support::sha256_digest(&bytes), digest);
}

/// Files in the cache's temporary area (partial downloads, temp files).
pub fn temp_files(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache.join("tmp"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `pull -i REFERENCE --insecure --cache-dir CACHE EXTRA...`.
pub fn pull_args<'a>(reference: &'a str, cache: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let cache = cache.to_str().unwrap();
    let base = ["pull", "-i", reference, "--insecure", "--cache-dir", cache];
    [&base[..], extra].concat()
}

/// The JSON report of `pull_args(...) --json`, which must succeed.
pub fn pull_report(reference: &str, cache: &Path, extra: &[&str]) -> serde_json::Value {
    json(&run_ok(&pull_args(reference, cache, &[extra, &["--json"]].concat())).stdout)
}
