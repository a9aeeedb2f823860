//! Running the product binary from integration tests, isolated from the
//! caller's environment, and checking what it left in a registry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::client::RegistryClient;

pub const BIN: &str = env!("CARGO_BIN_EXE_docker-image-pusher");

/// Push flags of the fault and resume tests. One upload at a time: faults then hit the
/// request the test aimed at, and the bytes each fault costs can be counted exactly.
/// Every blob over 1 MiB goes up in 1 MiB chunks; the JSON summary carries the counts.
pub const ONE_CHUNKED_UPLOAD_AT_A_TIME: &[&str] = &[
    "--max-concurrent",
    "1",
    "--json",
    "-v",
    "--chunk-size",
    "1M",
    "--large-layer-threshold",
    "1M",
];

/// A command line for the product with a private cache dir and docker config.
#[derive(Clone, Debug)]
pub struct Pusher {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
    /// A command the product runs under (its arguments end with the product's path).
    wrapper: Vec<String>,
}

impl Pusher {
    /// `docker-image-pusher ARGS...` with `DOCKER_PUSHER_CACHE_DIR=<dir>/cache`
    /// and `DOCKER_CONFIG=<dir>/docker` (empty: no stored credentials).
    pub fn new(dir: &Path, args: &[&str]) -> Pusher {
        let docker = dir.join("docker");
        std::fs::create_dir_all(&docker).expect("create docker config dir");
        Pusher {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![
                (
                    "DOCKER_PUSHER_CACHE_DIR".into(),
                    dir.join("cache").display().to_string(),
                ),
                ("DOCKER_CONFIG".into(), docker.display().to_string()),
            ],
            stdin: None,
            wrapper: Vec::new(),
        }
    }

    /// `push -f ARCHIVE -r TARGET` plus `extra`.
    pub fn push(dir: &Path, archive: &Path, target: &str, extra: &[&str]) -> Pusher {
        let archive = archive.display().to_string();
        let mut args = vec!["push", "-f", &archive, "-r", target];
        args.extend_from_slice(extra);
        Pusher::new(dir, &args)
    }

    pub fn arg(mut self, arg: &str) -> Pusher {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Pusher {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Runs the product as `WRAPPER... BIN ARGS...` (for example inside `unshare`).
    pub fn wrapped(mut self, wrapper: &[&str]) -> Pusher {
        self.wrapper = wrapper.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn stdin(mut self, text: &str) -> Pusher {
        self.stdin = Some(text.to_string());
        self
    }

    pub fn cache_dir(&self) -> PathBuf {
        PathBuf::from(
            &self
                .env
                .iter()
                .find(|(k, _)| k == "DOCKER_PUSHER_CACHE_DIR")
                .expect("cache dir is always set")
                .1,
        )
    }

    fn command(&self) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(BIN);
                cmd
            }
            None => Command::new(BIN),
        };
        cmd.args(&self.args);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("DOCKER_PUSHER_") || k.starts_with("REGISTRY_") || k == "DOCKER_CONFIG"
            {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self) -> Run {
        let mut cmd = self.command();
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start docker-image-pusher");
        if let Some(text) = &self.stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        Run::from(
            child
                .wait_with_output()
                .expect("wait for docker-image-pusher"),
        )
    }

    /// Starts the product without waiting, for tests that signal it.
    pub fn spawn(&self) -> Child {
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-image-pusher")
    }
}

/// What one run of the product did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: out.status.code(),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn wait(child: Child) -> Run {
        Run::from(
            child
                .wait_with_output()
                .expect("wait for docker-image-pusher"),
        )
    }

    /// Panics with both streams unless the run exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "unexpected exit\n{self}");
        self
    }

    pub fn expect_success(&self) -> &Run {
        self.expect_code(0)
    }

    /// The `--json` summary on stdout.
    pub fn report(&self) -> serde_json::Value {
        let line = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| panic!("no JSON report ({e})\n{self}"))
    }

    pub fn report_u64(&self, field: &str) -> u64 {
        self.report()[field]
            .as_u64()
            .unwrap_or_else(|| panic!("report has no {field}\n{self}"))
    }

    /// Lines on stderr starting with `error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }

    pub fn panicked(&self) -> bool {
        self.stderr.contains("panicked") || self.code == Some(101)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?} signal {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.signal, self.stdout, self.stderr
        )
    }
}

/// Sends `signal` (`INT`, `TERM`, `KILL`) to a process with kill(1), as the
/// harness does, to avoid a libc dependency in tests.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
    assert!(
        status.success() || signal == "KILL",
        "kill -{signal} {pid} failed"
    );
}

/// Checks the image under `repo:tag` digest by digest: the manifest's content
/// hashes to `manifest_digest`, every blob it names downloads with the right
/// digest and size, and the set of blobs is exactly `expected_blobs`.
pub fn verify_image(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    manifest_digest: &str,
    expected_blobs: &[String],
) {
    let accept = [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ];
    let (body, _, header_digest) = client.get_manifest(repo, tag, &accept);
    assert_eq!(
        super::sha256_digest(&body),
        manifest_digest,
        "manifest content"
    );
    assert_eq!(header_digest, manifest_digest, "Docker-Content-Digest");
    let manifest: serde_json::Value = serde_json::from_slice(&body).expect("manifest JSON");
    let mut descriptors = vec![manifest["config"].clone()];
    descriptors.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
    let mut seen = Vec::new();
    for descriptor in descriptors {
        let digest = descriptor["digest"].as_str().expect("descriptor digest");
        let size = descriptor["size"].as_u64().expect("descriptor size");
        let bytes = client.get_blob(repo, digest);
        assert_eq!(bytes.len() as u64, size, "size of {digest}");
        seen.push(digest.to_string());
    }
    seen.sort();
    let mut expected = expected_blobs.to_vec();
    expected.sort();
    assert_eq!(seen, expected, "blobs of {repo}:{tag}");
}

/// Checks the image a `--json` push reported, as `verify_image` does.
pub fn verify_reported_image(
    client: &RegistryClient,
    run: &Run,
    repo: &str,
    tag: &str,
    expected_blobs: &[String],
) {
    let report = run.report();
    let digest = report["digest"].as_str().expect("digest in the report");
    verify_image(client, repo, tag, digest, expected_blobs);
}

/// Every file under `dir`, recursively, with its content (lossy UTF-8).
pub fn read_tree(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(read_tree(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}
