//! Helpers shared by the cache tests: running the real binary with a clean environment,
//! putting test images into a registry with the harness's own client (independent of the
//! product code), and reading a cache directory back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::fixtures::{
    IndexEntry, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, TestImage, index_json, oci_manifest,
};
use crate::support::RegistryClient;

pub const BIN: &str = env!("CARGO_BIN_EXE_docker-image-pusher");

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The binary with no inherited `DOCKER_PUSHER_*` settings and no docker credentials.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("DOCKER_PUSHER_") || key.starts_with("REGISTRY_") {
            command.env_remove(key);
        }
    }
    command.env("DOCKER_CONFIG", "/nonexistent-docker-config");
    command
}

pub fn run(args: &[&str]) -> Run {
    finish(command(args).output().expect("run the binary"))
}

pub fn finish(output: Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs and insists on success, showing what the tool said otherwise.
pub fn run_ok(args: &[&str]) -> Run {
    let run = run(args);
    assert_eq!(
        run.code, 0,
        "{args:?} failed\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run
}

pub fn spawn(args: &[&str]) -> Child {
    command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary")
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
