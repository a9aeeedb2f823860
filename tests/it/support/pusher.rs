//! Running the product binary from integration tests, isolated from the
//! caller's environment, and checking what it left in a registry.

use std::ffi::OsString;
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

/// Removes from `command` every variable of the caller's that could steer the product or
/// the registry: `DOCKER_PUSHER_*` settings, `REGISTRY_*` overrides (distribution reads them
/// as config) and `DOCKER_CONFIG` (stored credentials). What the host user has set can then
/// neither help nor break a test; each test sets what it means to.
pub fn scrub_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("DOCKER_PUSHER_")
            || name.starts_with("REGISTRY_")
            || name == "DOCKER_CONFIG"
        {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// A command line for the product in an environment of the test's making (see
/// [`scrub_env`]), built up and then run, spawned or run under a wrapper.
#[derive(Debug)]
pub struct Pusher {
    args: Vec<OsString>,
    /// Set (or, for `None`, removed) after scrubbing, in this order.
    env: Vec<(String, Option<OsString>)>,
    stdin: Option<String>,
    /// A command the product runs under (its arguments end with the product's path).
    wrapper: Vec<String>,
    current_dir: Option<PathBuf>,
    /// An empty `$HOME` of the run's own, removed with the `Pusher`.
    home: Option<tempfile::TempDir>,
    path_prefix: Option<PathBuf>,
}

/// A run with no arguments yet, an empty `$HOME` of its own and no `DOCKER_CONFIG`: no
/// stored credentials and no cache from the machine.
pub fn pusher() -> Pusher {
    Pusher {
        home: Some(super::workspace_tmp()),
        ..Pusher::bare(&[])
    }
}

impl Pusher {
    /// `docker-image-pusher ARGS...` with nothing set but what [`scrub_env`] leaves. Give it
    /// `DOCKER_CONFIG` or a `--cache-dir` before relying on what is in `$HOME`.
    pub fn bare(args: &[&str]) -> Pusher {
        Pusher {
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
            stdin: None,
            wrapper: Vec::new(),
            current_dir: None,
            home: None,
            path_prefix: None,
        }
    }

    /// `docker-image-pusher ARGS...` with no docker credentials: `DOCKER_CONFIG` names a
    /// directory that does not exist. The cache tests name the cache on the command line.
    pub fn without_credentials(args: &[&str]) -> Pusher {
        Pusher::bare(args).env("DOCKER_CONFIG", "/nonexistent-docker-config")
    }

    /// `docker-image-pusher ARGS...` with `DOCKER_PUSHER_CACHE_DIR=<dir>/cache`
    /// and `DOCKER_CONFIG=<dir>/docker` (empty: no stored credentials).
    pub fn new(dir: &Path, args: &[&str]) -> Pusher {
        let docker = dir.join("docker");
        std::fs::create_dir_all(&docker).expect("create docker config dir");
        Pusher::bare(args)
            .env("DOCKER_PUSHER_CACHE_DIR", dir.join("cache"))
            .env("DOCKER_CONFIG", docker)
    }

    /// `push -f ARCHIVE -r TARGET` plus `extra`.
    pub fn push(dir: &Path, archive: &Path, target: &str, extra: &[&str]) -> Pusher {
        let archive = archive.display().to_string();
        let mut args = vec!["push", "-f", &archive, "-r", target];
        args.extend_from_slice(extra);
        Pusher::new(dir, &args)
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Pusher {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Pusher {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> Pusher {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_string(), Some(value.into())));
        self
    }

    pub fn env_remove(mut self, name: &str) -> Pusher {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_string(), None));
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

    pub fn current_dir(mut self, dir: &Path) -> Pusher {
        self.current_dir = Some(dir.to_path_buf());
        self
    }

    /// Puts `dir` first on `PATH` (for fake credential helpers).
    pub fn path_prefix(mut self, dir: &Path) -> Pusher {
        self.path_prefix = Some(dir.to_path_buf());
        self
    }

    /// The empty home directory the run gets (`$HOME`, with no `.docker` in it).
    pub fn home(&self) -> &Path {
        self.home
            .as_ref()
            .expect("a home of its own comes with pusher()")
            .path()
    }

    pub fn cache_dir(&self) -> PathBuf {
        PathBuf::from(
            self.env
                .iter()
                .find_map(|(k, v)| v.as_ref().filter(|_| k == "DOCKER_PUSHER_CACHE_DIR"))
                .expect("cache dir is set by Pusher::new"),
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
        scrub_env(&mut cmd);
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        if let Some(home) = &self.home {
            cmd.env("HOME", home.path());
        }
        if let Some(dir) = &self.path_prefix {
            let mut path = OsString::from(dir);
            if let Some(old) = std::env::var_os("PATH") {
                path.push(":");
                path.push(old);
            }
            cmd.env("PATH", path);
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
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
        Run::wait(child)
    }

    /// Runs with a stdout whose reader is already gone, as in `... | head -c1` once head
    /// has its byte: every write to stdout fails with a broken pipe. stdout is not captured.
    pub fn run_with_stdout_closed(&self) -> Run {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-image-pusher");
        Run::wait(child)
    }

    /// Starts the product without waiting, for tests that signal it or run several at once.
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
    /// The exit code; `None` when a signal ended the process.
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

    /// [`Run::expect_success`] that hands the run on, for `pusher()...run().success()`.
    pub fn success(self) -> Run {
        self.expect_success();
        self
    }

    /// [`Run::expect_code`] that hands the run on.
    pub fn failure(self, code: i32) -> Run {
        self.expect_code(code);
        self
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
            "exit code {:?} signal {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.signal, self.stdout, self.stderr
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
