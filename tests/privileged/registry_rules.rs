//! The per-registry upload rules (`src/registry/rules.rs`) are chosen by host name. These
//! tests give the loopback registry the names of GitHub's, Amazon's and Google's registries
//! through a private `/etc/hosts` (the product runs in a mount namespace of its own, with a
//! hosts file bound over the real one), push through the recording proxy, and check the
//! shape of every upload request and the image that lands.
//!
//! Needs root (mount namespaces), so every test is `#[ignore]`d: `make test` runs them as
//! root. Run where the namespace cannot be made, they fail with the reason.

use std::path::PathBuf;
use std::process::Command;

use crate::fixtures::{Expected, TestImage, write_docker25};
use crate::support;
use crate::support::faults::Exchange;
use crate::support::pusher::ONE_CHUNKED_UPLOAD_AT_A_TIME;
use crate::support::{
    FaultProxy, Mode, Pusher, RegistryClient, RegistryOptions, Run, TestRegistry,
    verify_reported_image,
};

const MIB: u64 = 1 << 20;
const GHCR: &str = "ghcr.io";
const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const GOOGLE: &str = "us-docker.pkg.dev";
const QUAY: &str = "quay.io";
/// One blob at a time, and every blob over 1 MiB chunked, at the size each test asks for.
const RULES_TEST_FLAGS: &[&str] = &[
    "--max-concurrent",
    "1",
    "--json",
    "--large-layer-threshold",
    "1M",
];

fn mount_namespaces_unavailable() -> Option<String> {
    match Command::new("unshare").args(["--mount", "true"]).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

struct Setup {
    registry: TestRegistry,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
    archive: PathBuf,
    expected: Expected,
    hosts: PathBuf,
}

impl Setup {
    /// A registry behind the recording proxy, an archive with one 12 MiB layer, and a
    /// hosts file naming 127.0.0.1 as each of the hosted registries.
    fn new() -> Setup {
        let registry = TestRegistry::start(RegistryOptions::plain());
        let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
        let dir = support::workspace_tmp();
        let archive = dir.path().join("image.tar");
        let image = TestImage::new(23, &[12 << 20], false, ("linux", "amd64"));
        let expected =
            write_docker25(&archive, &[(image, vec!["rules/app:1".into()])]).expect("fixture");
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n127.0.0.1 {GHCR} {ECR} {GOOGLE} {QUAY}\n"),
        )
        .expect("write hosts file");
        Setup {
            registry,
            proxy,
            dir,
            archive,
            expected,
            hosts,
        }
    }

    fn port(&self) -> String {
        let host = self.proxy.host();
        host.rsplit_once(':').expect("host:port").1.to_string()
    }

    /// Pushes to `http://NAME:PORT/REPOSITORY:1`, NAME resolved by the private hosts file;
    /// returns the run and the upload requests it made.
    fn push_as(&self, name: &str, repository: &str, extra: &[&str]) -> (Run, Vec<Exchange>) {
        self.proxy.clear_log();
        let target = format!("http://{name}:{}/{repository}:1", self.port());
        let args = [RULES_TEST_FLAGS, extra].concat();
        let hosts = self.hosts.display().to_string();
        let run = Pusher::push(self.dir.path(), &self.archive, &target, &args)
            .wrapped(&[
                "unshare",
                "--mount",
                "--",
                "sh",
                "-c",
                r#"mount --bind "$0" /etc/hosts && exec "$@""#,
                &hosts,
            ])
            .run();
        let uploads = self
            .proxy
            .exchanges()
            .into_iter()
            .filter(|e| e.request.is_blob_upload())
            .collect();
        (run, uploads)
    }

    fn assert_landed(&self, run: &Run, repository: &str) {
        run.expect_success();
        verify_reported_image(
            &RegistryClient::new(&self.registry),
            run,
            repository,
            "1",
            &self.expected.blob_digests(),
        );
    }

    fn layer_size(&self) -> u64 {
        self.expected.blobs.iter().map(|b| b.size).max().unwrap()
    }
}

fn patches(uploads: &[Exchange]) -> Vec<u64> {
    uploads
        .iter()
        .filter(|e| e.request.method == "PATCH")
        .map(|e| e.body_received)
        .collect()
}

fn require_mount_namespaces() {
    if let Some(reason) = mount_namespaces_unavailable() {
        panic!("needs root and mount namespaces, which this machine does not give: {reason}");
    }
}

#[test]
#[ignore = "needs root and mount namespaces: run by make test as root"]
fn ghcr_gets_patch_bodies_of_at_most_four_mib() {
    require_mount_namespaces();
    let setup = Setup::new();
    let (run, uploads) = setup.push_as(GHCR, "rules/ghcr", &["--chunk-size", "8M"]);
    setup.assert_landed(&run, "rules/ghcr");
    let patches = patches(&uploads);
    assert!(patches.len() >= 3, "{patches:?}\n{run}");
    assert!(patches.iter().all(|&n| n <= 4 * MIB), "{patches:?}");
}

#[test]
#[ignore = "needs root and mount namespaces: run by make test as root"]
fn ecr_gets_parts_of_five_to_twenty_mib_and_the_last_in_the_closing_put() {
    require_mount_namespaces();
    let setup = Setup::new();
    let (run, uploads) = setup.push_as(ECR, "rules/ecr", &["--chunk-size", "1M"]);
    setup.assert_landed(&run, "rules/ecr");
    assert_eq!(patches(&uploads), [5 * MIB, 5 * MIB], "{run}");
    let tail = setup.layer_size() - 10 * MIB;
    assert!(
        uploads
            .iter()
            .any(|e| e.request.method == "PUT" && e.body_received == tail),
        "no closing PUT carried the last {tail} bytes\n{}",
        setup.proxy.describe()
    );
}

#[test]
#[ignore = "needs root and mount namespaces: run by make test as root"]
fn google_gets_no_patch_and_compressed_layers_keep_their_digest() {
    require_mount_namespaces();
    let setup = Setup::new();
    let (run, uploads) = setup.push_as(GOOGLE, "rules/google", &["--chunk-size", "1M"]);
    setup.assert_landed(&run, "rules/google");
    assert_eq!(patches(&uploads), Vec::<u64>::new(), "{run}");
    assert!(
        uploads
            .iter()
            .any(|e| e.request.method == "PUT" && e.body_received == setup.layer_size()),
        "the layer went up in one PUT\n{}",
        setup.proxy.describe()
    );

    // Compressed: Google needs the digest before the upload, so the layer is compressed
    // once to learn it and again while it goes up; both give the bytes a registry that
    // takes chunks receives.
    // Separate caches: neither push may reuse the other's remembered compressed digest.
    let cache = |name: &str| setup.dir.path().join(name).display().to_string();
    let (cache_a, cache_b) = (cache("cache-a"), cache("cache-b"));
    let generic = Pusher::push(
        setup.dir.path(),
        &setup.archive,
        &format!("http://{}/rules/generic-gzip:1", setup.proxy.host()),
        &[
            ONE_CHUNKED_UPLOAD_AT_A_TIME,
            &["--compress", "gzip", "--cache-dir", &cache_a],
        ]
        .concat(),
    )
    .run();
    generic.expect_success();
    let (google, uploads) = setup.push_as(
        GOOGLE,
        "rules/google-gzip",
        &[
            "--chunk-size",
            "1M",
            "--compress",
            "gzip",
            "--cache-dir",
            &cache_b,
        ],
    );
    google.expect_success();
    assert_eq!(patches(&uploads), Vec::<u64>::new(), "{google}");
    assert_eq!(
        google.report()["digest"],
        generic.report()["digest"],
        "the same compressed image whatever the upload path\n{google}\n{generic}"
    );
}

#[test]
#[ignore = "needs root and mount namespaces: run by make test as root"]
fn quay_gets_gzip_layers_from_compress_auto() {
    require_mount_namespaces();
    let setup = Setup::new();
    let (run, _) = setup.push_as(
        QUAY,
        "rules/quay",
        &["--chunk-size", "1M", "--compress", "auto"],
    );
    run.expect_success();
    let report = run.report();
    let layers: Vec<&str> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["media_type"].as_str())
        .filter(|t| t.contains("layer"))
        .collect();
    assert_eq!(
        layers,
        ["application/vnd.oci.image.layer.v1.tar+gzip"],
        "{run}"
    );
    assert!(
        report["compression"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("quay")),
        "{run}"
    );
}
