//! Shared helpers for the push integration tests: run the real binary in a clean
//! environment, and check what a registry serves after a push against what the fixture
//! archive says a correct push produces, both through the harness's own client and
//! through skopeo as an independent reader.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::fixtures::{
    BlobRef, DOCKER_MANIFEST, ExpectedManifest, ExpectedTarget, OCI_INDEX, OCI_MANIFEST, TestImage,
};
use crate::support::{RegistryClient, TestRegistry, sha256_digest};

pub const BIN: &str = env!("CARGO_BIN_EXE_docker-image-pusher");

/// Every manifest type a registry may answer with.
pub const ACCEPT_ALL: [&str; 4] = [
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with everything the binary printed unless it exited 0.
    pub fn success(self) -> Run {
        assert_eq!(self.code, 0, "pusher failed:\n{self}");
        self
    }

    /// Panics unless the binary exited with `code`.
    pub fn failure(self, code: i32) -> Run {
        assert_eq!(self.code, code, "expected exit code {code}:\n{self}");
        self
    }

    /// The last non-empty stdout line: the `TAG: digest: ... size: N` result.
    pub fn result_line(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no stdout:\n{self}"))
    }

    /// Parses the result line into `(name, digest, size)`, checking its exact shape.
    pub fn pushed(&self) -> (String, String, u64) {
        parse_result_line(self.result_line()).unwrap_or_else(|| {
            panic!(
                "result line is not `TAG: digest: sha256:... size: N`: {:?}\n{self}",
                self.result_line()
            )
        })
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `NAME: digest: sha256:<64 hex> size: N`, as `docker push` prints it.
pub fn parse_result_line(line: &str) -> Option<(String, String, u64)> {
    let (name, rest) = line.split_once(": digest: ")?;
    let (digest, size) = rest.split_once(" size: ")?;
    let hex = digest.strip_prefix("sha256:")?;
    let hex_ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let size = size.parse().ok()?;
    (hex_ok && !name.is_empty() && !name.contains(' '))
        .then(|| (name.to_string(), digest.to_string(), size))
}

/// A run of the real binary in an environment of the test's making: no `DOCKER_PUSHER_*`
/// or `REGISTRY_*` variables and no docker config from the machine, so what the host
/// user has set can neither help nor break a test.
pub struct Pusher {
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    stdin: Option<String>,
    home: tempfile::TempDir,
    path_prefix: Option<PathBuf>,
}

pub fn pusher() -> Pusher {
    Pusher {
        args: Vec::new(),
        env: Vec::new(),
        stdin: None,
        home: crate::support::workspace_tmp(),
        path_prefix: None,
    }
}

impl Pusher {
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> Self {
        self.env.push((name.to_string(), value.into()));
        self
    }

    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_string());
        self
    }

    /// Puts `dir` first on `PATH` (for fake credential helpers).
    pub fn path_prefix(mut self, dir: &Path) -> Self {
        self.path_prefix = Some(dir.to_path_buf());
        self
    }

    /// The empty home directory the run gets (`$HOME`, with no `.docker` in it).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn run(self) -> Run {
        let mut command = Command::new(BIN);
        command.args(&self.args);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("DOCKER_PUSHER_") || name.starts_with("REGISTRY_") {
                command.env_remove(name.as_ref());
            }
        }
        command.env_remove("DOCKER_CONFIG");
        command.env("HOME", self.home.path());
        if let Some(dir) = &self.path_prefix {
            let mut path = OsString::from(dir);
            if let Some(old) = std::env::var_os("PATH") {
                path.push(":");
                path.push(old);
            }
            command.env("PATH", path);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start docker-image-pusher");
        if let (Some(text), Some(mut stdin)) = (&self.stdin, child.stdin.take()) {
            stdin.write_all(text.as_bytes()).expect("write stdin");
        }
        let output = child
            .wait_with_output()
            .expect("wait for docker-image-pusher");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

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
