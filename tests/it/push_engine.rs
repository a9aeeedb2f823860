//! The transfer engine end to end, running the real binary against the real registry:
//! dynamic concurrency and size-class caps push correct images, `--json` is a summary a
//! script can trust, `--quiet` prints only the digest line, and output that is not a
//! terminal carries no control codes.

use std::path::{Path, PathBuf};

use crate::fixtures::{Expected, OCI_MANIFEST, TestImage, write_docker25};
use crate::support::{
    Pusher, RegistryClient, RegistryOptions, Run, TestRegistry, sha256_digest, workspace_tmp,
};
use serde_json::Value;

/// Runs the pusher with a clean environment (see `scrub_env`), an empty docker config, and
/// a terminal type that would invite colour if the tool (wrongly) drew a live display on a
/// pipe.
fn pusher(args: &[&str], docker_config: &Path) -> Run {
    Pusher::bare(args)
        .env("DOCKER_CONFIG", docker_config)
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "80")
        .env_remove("NO_COLOR")
        .run()
}

/// A workspace with a Docker 25 archive of a five-layer image.
struct Setup {
    _dir: tempfile::TempDir,
    archive: PathBuf,
    docker_config: PathBuf,
    expected: Expected,
}

fn setup(seed: u64) -> Setup {
    let dir = workspace_tmp();
    let archive = dir.path().join("image.tar");
    let image = TestImage::new(
        seed,
        &[300_000, 180_000, 90_000, 40_000, 6_000],
        false,
        ("linux", "amd64"),
    );
    let expected =
        write_docker25(&archive, &[(image, vec!["app:1".to_string()])]).expect("write the archive");
    let docker_config = dir.path().join("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    Setup {
        _dir: dir,
        archive,
        docker_config,
        expected,
    }
}

impl Setup {
    fn push(&self, registry: &TestRegistry, repo_tag: &str, extra: &[&str]) -> Run {
        let target = format!("{}/{repo_tag}", registry.url());
        let mut args = vec![
            "push",
            "--source",
            self.archive.to_str().unwrap(),
            "--target",
            &target,
        ];
        args.extend_from_slice(extra);
        pusher(&args, &self.docker_config)
    }

    fn manifest_digest(&self) -> String {
        self.expected.targets[0].manifests[0]
            .digest
            .clone()
            .expect("Docker 25 archives carry their manifest")
    }

    /// The registry serves the archive's manifest under `tag` and every blob, byte for byte.
    fn assert_pushed(&self, registry: &TestRegistry, repo: &str, tag: &str) {
        let client = RegistryClient::new(registry);
        let (body, _, digest) = client.get_manifest(repo, tag, &[OCI_MANIFEST]);
        assert_eq!(digest, self.manifest_digest());
        assert_eq!(sha256_digest(&body), digest);
        assert_eq!(self.expected.blobs.len(), 6, "config and five layers");
        for blob in &self.expected.blobs {
            let bytes = client.get_blob(repo, &blob.digest);
            assert_eq!(bytes.len() as u64, blob.size, "{}", blob.digest);
            assert_eq!(sha256_digest(&bytes), blob.digest);
        }
    }

    fn total_blob_bytes(&self) -> u64 {
        self.expected.blobs.iter().map(|b| b.size).sum()
    }
}

#[test]
fn dynamic_concurrency_pushes_every_layer_of_a_multi_layer_image() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let setup = setup(301);
    let output = setup.push(
        &registry,
        "engine/dynamic:1",
        &["--enable-dynamic-concurrency", "--max-concurrent", "4"],
    );
    output.expect_success();
    setup.assert_pushed(&registry, "engine/dynamic", "1");
    assert_eq!(
        output.stdout,
        format!(
            "1: digest: {} size: {}\n",
            setup.manifest_digest(),
            RegistryClient::new(&registry)
                .get_manifest("engine/dynamic", "1", &[OCI_MANIFEST])
                .0
                .len()
        )
    );
}

#[test]
fn size_class_caps_still_push_every_layer() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let setup = setup(302);
    // Every blob here is small: one at a time, whatever the gate allows.
    let output = setup.push(
        &registry,
        "engine/capped:1",
        &[
            "--enable-dynamic-concurrency",
            "--small-file-concurrent",
            "1",
            "--large-file-concurrent",
            "1",
            "--json",
        ],
    );
    output.expect_success();
    setup.assert_pushed(&registry, "engine/capped", "1");
    let summary: Value = serde_json::from_str(&output.stdout).expect("JSON summary");
    assert_eq!(summary["concurrency"]["mode"], "dynamic");
    assert_eq!(summary["concurrency"]["max"], 8);
}

#[test]
fn json_summary_parses_and_names_the_registry_digest() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let setup = setup(303);
    let output = setup.push(
        &registry,
        "engine/json:2",
        &["--json", "--max-concurrent", "3"],
    );
    output.expect_success();
    let stdout = output.stdout.clone();
    assert_eq!(stdout.lines().count(), 1, "one JSON document: {stdout}");
    let summary: Value = serde_json::from_str(&stdout).expect("stdout is JSON");

    let (_, _, served) =
        RegistryClient::new(&registry).get_manifest("engine/json", "2", &[OCI_MANIFEST]);
    assert_eq!(summary["digest"], served.as_str());
    assert_eq!(summary["bytes_sent"], setup.total_blob_bytes());
    assert_eq!(summary["bytes_skipped"], 0);
    assert_eq!(summary["retries"], 0);
    assert!(summary["duration_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["concurrency"]["mode"], "fixed");
    assert_eq!(summary["concurrency"]["max"], 3);
    let layers = summary["layers"].as_array().expect("layers");
    let mut digests: Vec<&str> = layers
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    digests.sort();
    assert_eq!(digests, setup.expected.blob_digests());
    assert!(layers.iter().all(|l| l["outcome"] == "uploaded"));
    assert!(layers.iter().all(|l| l["bytes_sent"] == l["size"]));

    // Pushed again, nothing goes over the wire and the summary says so.
    let again = setup.push(&registry, "engine/json:2", &["--json"]);
    again.expect_success();
    let summary: Value = serde_json::from_str(&again.stdout).expect("stdout is JSON");
    assert_eq!(summary["digest"], served.as_str());
    assert_eq!(summary["bytes_sent"], 0);
    assert_eq!(summary["bytes_skipped"], setup.total_blob_bytes());
    let layers = summary["layers"].as_array().expect("layers");
    assert!(
        layers.iter().all(|l| l["outcome"] == "existed"),
        "{layers:?}"
    );
}

#[test]
fn quiet_prints_only_the_digest_line() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let setup = setup(304);
    let output = setup.push(
        &registry,
        "engine/quiet:3",
        &["--quiet", "--enable-dynamic-concurrency"],
    );
    output.expect_success();
    assert_eq!(output.stderr, "");
    let stdout = output.stdout.clone();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("3: digest: {} size: ", setup.manifest_digest())),
        "{stdout}"
    );
    setup.assert_pushed(&registry, "engine/quiet", "3");
}

#[test]
fn output_to_a_pipe_has_no_escape_codes() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let setup = setup(305);
    for (tag, extra) in [
        ("4", &["--enable-dynamic-concurrency"][..]),
        (
            "5",
            &[
                "--verbose",
                "--enable-dynamic-concurrency",
                "--force-upload",
            ],
        ),
        ("6", &["--max-concurrent", "2"]),
    ] {
        let output = setup.push(&registry, &format!("engine/plain:{tag}"), extra);
        output.expect_success();
        let (stdout, stderr) = (output.stdout.clone(), output.stderr.clone());
        for (name, stream) in [("stdout", &stdout), ("stderr", &stderr)] {
            assert!(
                !stream.chars().any(|c| c.is_control() && c != '\n'),
                "{tag}: control characters on {name}:\n{stream:?}"
            );
        }
        // One line per layer event: a start and an end for each of the six blobs.
        let events = |word: &str| stderr.lines().filter(|l| l.contains(word)).count();
        assert_eq!(events(": started ("), 6, "{tag}:\n{stderr}");
        assert_eq!(
            events(": pushed (") + events(": already exists"),
            6,
            "{tag}:\n{stderr}"
        );
        if tag == "5" {
            assert!(stderr.contains("[http] "), "{stderr}");
            assert!(stderr.contains("transfer report:"), "{stderr}");
            assert!(stderr.contains("  strategy changes ("), "{stderr}");
        } else {
            assert!(!stderr.contains("transfer report:"), "{stderr}");
        }
    }
    setup.assert_pushed(&registry, "engine/plain", "6");
}
