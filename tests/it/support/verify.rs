//! Shared helpers for the push integration tests: push with [`pusher()`], and check what
//! a registry serves after a push against what the fixture
//! archive says a correct push produces, both through the harness's own client and
//! through skopeo as an independent reader.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::fixtures::{
    BlobRef, DOCKER_MANIFEST, ExpectedManifest, ExpectedTarget, OCI_INDEX, OCI_MANIFEST, TestImage,
};
use crate::support::{RegistryClient, Run, TestRegistry, pusher, sha256_digest};

/// Every manifest type a registry may answer with.
pub const ACCEPT_ALL: [&str; 4] = [
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// `push --source FILE --target URL/REPO:TAG` plus `extra`, against `registry`.
pub fn push(registry: &TestRegistry, source: &Path, target: &str, extra: &[&str]) -> Run {
    let mut p = pusher()
        .arg("push")
        .arg("--source")
        .arg(source)
        .arg("--target")
        .arg(format!("{}/{target}", registry.url()));
    if let Some(ca) = registry.ca_cert_path() {
        p = p.arg("--ca-cert").arg(ca);
    }
    p.args(extra).run()
}

// ---------------------------------------------------------------- reading back

/// Descriptor fields as a manifest records them.
fn descriptor(value: &Value) -> BlobRef {
    BlobRef {
        digest: value["digest"].as_str().unwrap_or_default().to_string(),
        size: value["size"].as_u64().unwrap_or(u64::MAX),
        media_type: value["mediaType"].as_str().unwrap_or_default().to_string(),
    }
}

/// Fetches `reference` and checks the answer is self-consistent: the body hashes to the
/// `Docker-Content-Digest`, and to `reference` when that is a digest.
pub fn fetch_manifest(client: &RegistryClient, repo: &str, reference: &str) -> (Vec<u8>, String) {
    let (body, content_type, header_digest) = client.get_manifest(repo, reference, &ACCEPT_ALL);
    let digest = sha256_digest(&body);
    assert_eq!(
        header_digest, digest,
        "{repo}:{reference}: Docker-Content-Digest does not match the body"
    );
    if reference.starts_with("sha256:") {
        assert_eq!(digest, reference, "{repo}@{reference}: content digest");
    }
    (body, content_type)
}

/// Checks that `repo` serves `expected` (an image manifest) at `reference`: media type,
/// digest when the source fixed it, config and layer descriptors, and every blob's bytes.
/// Returns the manifest digest.
pub fn verify_manifest(
    client: &RegistryClient,
    repo: &str,
    reference: &str,
    expected: &ExpectedManifest,
) -> String {
    let (body, content_type) = fetch_manifest(client, repo, reference);
    let digest = sha256_digest(&body);
    if let Some(want) = &expected.digest {
        assert_eq!(&digest, want, "{repo}:{reference}: manifest digest");
    }
    assert_eq!(
        content_type, expected.media_type,
        "{repo}:{reference}: Content-Type"
    );
    let manifest: Value = serde_json::from_slice(&body).expect("manifest JSON");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"].as_str(),
        Some(expected.media_type.as_str()),
        "{repo}:{reference}: manifest declares its media type"
    );
    assert_eq!(
        descriptor(&manifest["config"]),
        expected.config,
        "{repo}:{reference}: config descriptor"
    );
    let layers: Vec<BlobRef> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(descriptor)
        .collect();
    assert_eq!(layers, expected.layers, "{repo}:{reference}: layers");
    for blob in std::iter::once(&expected.config).chain(&expected.layers) {
        // get_blob checks the content hashes to the digest.
        let bytes = client.get_blob(repo, &blob.digest);
        assert_eq!(bytes.len() as u64, blob.size, "blob {} size", blob.digest);
    }
    digest
}

/// Checks a whole target: an image, or an index with each present child. Returns the
/// digest served at `reference`.
pub fn verify_target(
    client: &RegistryClient,
    repo: &str,
    reference: &str,
    expected: &ExpectedTarget,
) -> String {
    if expected.media_type != OCI_INDEX {
        assert_eq!(expected.manifests.len(), 1);
        let digest = verify_manifest(client, repo, reference, &expected.manifests[0]);
        if let Some(want) = &expected.digest {
            assert_eq!(&digest, want);
        }
        return digest;
    }
    let (body, content_type) = fetch_manifest(client, repo, reference);
    let digest = sha256_digest(&body);
    assert_eq!(content_type, OCI_INDEX, "{repo}:{reference}: Content-Type");
    if let Some(want) = &expected.digest {
        assert_eq!(&digest, want, "{repo}:{reference}: index digest");
    }
    let index: Value = serde_json::from_slice(&body).expect("index JSON");
    let listed: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|d| d["digest"].as_str().unwrap_or_default().to_string())
        .collect();
    for child in &expected.manifests {
        let child_digest = child
            .digest
            .as_deref()
            .expect("index children have digests");
        assert!(
            listed.iter().any(|d| d == child_digest),
            "index lists {child_digest}"
        );
        verify_manifest(client, repo, child_digest, child);
    }
    digest
}

/// Blob files the registry stores (`.../blobs/sha256/xx/<hex>/data`), by digest.
pub fn stored_blobs(registry: &TestRegistry) -> Vec<String> {
    let root = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256");
    let mut out = Vec::new();
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return out;
    };
    for prefix in prefixes.flatten() {
        for blob in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if blob.path().join("data").is_file() {
                out.push(format!("sha256:{}", blob.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------- skopeo

/// skopeo must be installed: `make test` installs it, and a test that quietly skips the
/// independent check proves less than it claims.
pub fn require_skopeo() {
    assert!(
        crate::fixtures::skopeo_available(),
        "skopeo not found: install the Debian package skopeo (make test does this)"
    );
}

/// How skopeo reaches a test registry: TLS trust and credentials.
pub struct SkopeoAccess {
    tls_args: Vec<String>,
    creds: Option<String>,
    _cert_dir: Option<tempfile::TempDir>,
}

impl SkopeoAccess {
    pub fn new(registry: &TestRegistry) -> SkopeoAccess {
        let mut access = SkopeoAccess {
            tls_args: Vec::new(),
            creds: None,
            _cert_dir: None,
        };
        match registry.ca_cert_path() {
            // containers/image reads `*.crt` in --cert-dir as extra roots.
            Some(ca) => {
                let dir = crate::support::workspace_tmp();
                std::fs::copy(ca, dir.path().join("ca.crt")).expect("copy CA for skopeo");
                access.tls_args = vec![
                    "--cert-dir".into(),
                    dir.path().display().to_string(),
                    "--tls-verify=true".into(),
                ];
                access._cert_dir = Some(dir);
            }
            // Plain HTTP: skopeo only falls back to http:// with verification off.
            None => access.tls_args = vec!["--tls-verify=false".into()],
        }
        access
    }

    pub fn with_creds(mut self, user: &str, password: &str) -> SkopeoAccess {
        self.creds = Some(format!("{user}:{password}"));
        self
    }

    fn command(&self, home: &Path) -> Command {
        let mut command = Command::new("skopeo");
        // No auth file or registries.conf from the machine.
        command
            .env("HOME", home)
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .env("XDG_RUNTIME_DIR", home);
        command
    }
}

fn run_skopeo(mut command: Command, what: &str) -> Vec<u8> {
    let out = command.output().expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `skopeo inspect --raw docker://HOST/REPO:REF`: the manifest skopeo reads, which must
/// hash to `digest`.
pub fn skopeo_inspect_digest(
    registry: &TestRegistry,
    access: &SkopeoAccess,
    image: &str,
    digest: &str,
) {
    let home = crate::support::workspace_tmp();
    let mut command = access.command(home.path());
    command
        .args(["--insecure-policy", "inspect", "--raw"])
        .args(&access.tls_args);
    if let Some(creds) = &access.creds {
        command.arg("--creds").arg(creds);
    }
    command.arg(format!("docker://{}/{image}", registry.host()));
    let raw = run_skopeo(command, &format!("inspect {image}"));
    assert_eq!(sha256_digest(&raw), digest, "skopeo inspect --raw {image}");
}

/// `skopeo copy [--all] --preserve-digests docker://HOST/REPO:REF dir:DIR`:
/// containers/image fetches and digest-verifies every blob and manifest. The `dir:`
/// transport stores the top manifest unconverted, so its digest is what the registry
/// served; returned for the caller to compare.
pub fn skopeo_copy_out(
    registry: &TestRegistry,
    access: &SkopeoAccess,
    image: &str,
    all: bool,
) -> String {
    let home = crate::support::workspace_tmp();
    let out = home.path().join("out");
    let mut command = access.command(home.path());
    command.args(["--insecure-policy", "copy", "--quiet", "--preserve-digests"]);
    if all {
        command.arg("--all");
    }
    command.args(
        access
            .tls_args
            .iter()
            .map(|a| a.replacen("--", "--src-", 1)),
    );
    if let Some(creds) = &access.creds {
        command.arg("--src-creds").arg(creds);
    }
    command
        .arg(format!("docker://{}/{image}", registry.host()))
        .arg(format!("dir:{}", out.display()));
    run_skopeo(command, &format!("copy {image}"));
    sha256_digest(std::fs::read(out.join("manifest.json")).expect("skopeo wrote manifest.json"))
}

/// Both skopeo checks for a pushed `image` (`repo:tag`) that must serve `digest`.
pub fn skopeo_verify(
    registry: &TestRegistry,
    access: &SkopeoAccess,
    image: &str,
    digest: &str,
    all: bool,
) {
    require_skopeo();
    skopeo_inspect_digest(registry, access, image, digest);
    let copied = skopeo_copy_out(registry, access, image, all);
    assert_eq!(
        copied, digest,
        "skopeo copy read the pushed manifest unchanged"
    );
}

// ---------------------------------------------------------------- fixtures

/// An image for `linux/amd64` with layers of the given sizes.
pub fn image(seed: u64, sizes: &[usize], gzip: bool) -> TestImage {
    TestImage::new(seed, sizes, gzip, ("linux", "amd64"))
}

/// Three platforms, as a multi-platform build makes.
pub fn platforms(seed: u64) -> Vec<TestImage> {
    vec![
        TestImage::new(seed, &[3000, 2000], true, ("linux", "amd64")),
        TestImage::new(seed + 1, &[3100], true, ("linux", "arm64")).with_variant("v8"),
        TestImage::new(seed + 2, &[3200], true, ("linux", "s390x")),
    ]
}
