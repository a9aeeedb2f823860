//! The command-line surface of `push` as scripts use it: both forms (subcommand and the
//! older flat `-r URL -f FILE`), the `ps` alias, the environment (and that a flag beats
//! it), docker config credentials and credential helpers, `--password-stdin`, argh's
//! usage errors, `--dry-run`, chunked uploads, `--force-upload`, `--skip-existing`,
//! `--quiet`, and the docker-push-style result line.

use std::path::{Path, PathBuf};

use crate::fixtures::*;
use crate::support;
use crate::support::verify::*;
use crate::support::{
    Auth, Grant, Pusher, RegistryClient, RegistryOptions, Run, TestRegistry, TokenOptions, pusher,
};
use base64::Engine as _;

struct Fixture {
    _dir: tempfile::TempDir,
    file: PathBuf,
    image: TestImage,
    expected: ExpectedTarget,
}

/// A Docker 25+ archive of an uncompressed image (layers of the given sizes).
fn fixture(seed: u64, layers: &[usize]) -> Fixture {
    let dir = support::workspace_tmp();
    let file = dir.path().join("image.tar");
    let image = image(seed, layers, false);
    let exp = write_docker25(&file, &[(image.clone(), vec!["app:1".into()])]).unwrap();
    Fixture {
        _dir: dir,
        file,
        image,
        expected: exp.targets[0].clone(),
    }
}

fn plain() -> (TestRegistry, RegistryClient) {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    (registry, client)
}

fn basic() -> (TestRegistry, RegistryClient) {
    let registry =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("bob", "bob-pw")));
    let client = RegistryClient::with_credentials(&registry, "bob", "bob-pw");
    (registry, client)
}

fn url(registry: &TestRegistry, path: &str) -> String {
    format!("{}/{path}", registry.url())
}

/// `push --source FILE --target URL` with nothing else.
fn push_cmd(f: &Fixture, target: &str) -> Pusher {
    pusher()
        .args(["push", "--source"])
        .arg(&f.file)
        .args(["--target", target])
}

/// Lines of the `-v` request log for `method` on blob uploads.
fn upload_requests(run: &Run, method: &str) -> usize {
    run.stderr
        .lines()
        .filter(|l| l.starts_with(&format!("[http] {method} ")) && l.contains("/blobs/uploads/"))
        .count()
}

// ---------------------------------------------------------------- forms and output

#[test]
fn subcommand_form_prints_the_docker_push_result_line_last() {
    let f = fixture(1, &[9_000, 1_000]);
    let (registry, client) = plain();
    let run = push_cmd(&f, &url(&registry, "forms/sub:1.0"))
        .run()
        .success();
    let (name, digest, size) = run.pushed();
    assert_eq!(name, "1.0");
    let served = verify_target(&client, "forms/sub", "1.0", &f.expected);
    assert_eq!(digest, served);
    let (body, _) = fetch_manifest(&client, "forms/sub", "1.0");
    assert_eq!(size, body.len() as u64);
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "stdout is only the result\n{run}"
    );
    assert_eq!(
        run.stdout,
        format!("1.0: digest: {digest} size: {size}\n"),
        "exactly docker push's shape"
    );

    // No tag means latest, and the line says so.
    let run = push_cmd(&f, &url(&registry, "forms/notag")).run().success();
    assert_eq!(run.pushed().0, "latest");
    verify_target(&client, "forms/notag", "latest", &f.expected);
}

#[test]
fn flat_form_with_http_url_and_credentials_pushes() {
    let f = fixture(2, &[7_000]);
    let (registry, client) = basic();
    let run = pusher()
        .args(["-r", &url(&registry, "flat/app:2"), "-f"])
        .arg(&f.file)
        .args(["-u", "bob", "-p", "bob-pw"])
        .run()
        .success();
    assert_eq!(
        run.pushed().1,
        verify_target(&client, "flat/app", "2", &f.expected)
    );
}

#[test]
fn flat_form_long_names_and_bare_reference_with_insecure() {
    let f = fixture(3, &[6_000]);
    let (registry, client) = plain();
    let run = pusher()
        .args([
            "--repository-url",
            &format!("{}/flat/bare:3", registry.host()),
            "--insecure",
            "--file",
        ])
        .arg(&f.file)
        .run()
        .success();
    assert_eq!(
        run.pushed().1,
        verify_target(&client, "flat/bare", "3", &f.expected)
    );
}

#[test]
fn flat_form_with_https_url_uses_tls() {
    let f = fixture(4, &[5_000]);
    let registry = TestRegistry::start(RegistryOptions::plain().tls(true));
    let run = pusher()
        .args([
            "-r",
            &format!("https://{}/flat/tls:4", registry.host()),
            "-f",
        ])
        .arg(&f.file)
        .arg("--ca-cert")
        .arg(registry.ca_cert_path().unwrap())
        .run()
        .success();
    let client = RegistryClient::new(&registry);
    assert_eq!(
        run.pushed().1,
        verify_target(&client, "flat/tls", "4", &f.expected)
    );
    // http:// to a TLS registry is refused by the registry, not silently upgraded.
    let run = pusher()
        .args([
            "-r",
            &format!("http://{}/flat/tls:5", registry.host()),
            "-f",
        ])
        .arg(&f.file)
        .run();
    assert_ne!(run.code, Some(0), "{run}");
}

#[test]
fn ps_alias_means_push() {
    let f = fixture(5, &[4_000]);
    let (registry, client) = plain();
    let run = pusher()
        .args(["ps", "-f"])
        .arg(&f.file)
        .args(["-r", &url(&registry, "alias/app:1")])
        .run()
        .success();
    assert_eq!(
        run.pushed().1,
        verify_target(&client, "alias/app", "1", &f.expected)
    );
}

#[test]
fn quiet_prints_only_the_result_line() {
    let f = fixture(6, &[4_000]);
    let (registry, _) = plain();
    let run = push_cmd(&f, &url(&registry, "quiet/app:1"))
        .arg("--quiet")
        .run()
        .success();
    assert!(run.stderr.is_empty(), "{run}");
    run.pushed();
}

#[test]
fn json_summary_replaces_the_result_line() {
    let f = fixture(7, &[4_000, 2_000]);
    let (registry, client) = plain();
    let run = push_cmd(&f, &url(&registry, "json/app:1"))
        .arg("--json")
        .run()
        .success();
    let summary: serde_json::Value =
        serde_json::from_str(run.stdout.trim()).expect("JSON on stdout");
    let served = verify_target(&client, "json/app", "1", &f.expected);
    assert_eq!(summary["digest"], served.as_str());
    assert_eq!(summary["blobs"], 3);
    assert_eq!(summary["blobs_uploaded"], 3);
}

#[test]
fn a_reader_that_closes_stdout_early_is_no_error() {
    // `... | head -1`: the reader has what it wanted; no panic, no message, exit 0.
    let quiet = |run: &Run, what: &str| {
        assert_eq!(run.code, Some(0), "{what}\n{run}");
        assert!(!run.panicked(), "{what}\n{run}");
        assert!(run.stderr.trim().is_empty(), "{what}\n{run}");
    };
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["push", "--help"],
        vec!["pull", "--help"],
        vec!["extract", "--help"],
        vec!["list", "--help"],
        vec!["clean", "--help"],
        vec!["save", "--help"],
        vec!["verify", "--help"],
    ] {
        quiet(
            &pusher().args(&args).run_with_stdout_closed(),
            &args.join(" "),
        );
    }

    let f = fixture(9, &[3_000]);
    let (registry, client) = plain();
    let run = push_cmd(&f, &url(&registry, "closed/app:1"))
        .arg("-q")
        .run_with_stdout_closed();
    quiet(&run, "push");
    verify_target(&client, "closed/app", "1", &f.expected);
    let run = push_cmd(&f, &url(&registry, "closed/json:1"))
        .args(["-q", "--json"])
        .run_with_stdout_closed();
    quiet(&run, "push --json");
    verify_target(&client, "closed/json", "1", &f.expected);
}

#[test]
fn every_command_help_lists_the_exit_codes_it_can_return_with_one_meaning_each() {
    use docker_image_pusher::error::Class;
    // The word each code's line starts with, and the code the error type gives it.
    let meaning = |class: Class| {
        let word = match class {
            Class::Usage => "usage",
            Class::Input => "input",
            Class::Auth => "authentication",
            Class::Network => "network",
            Class::Registry => "registry",
            Class::Interrupted => "stopped",
        };
        (class.exit_code(), word)
    };
    let local = [Class::Usage, Class::Input];
    let remote = [
        Class::Usage,
        Class::Input,
        Class::Auth,
        Class::Network,
        Class::Registry,
        Class::Interrupted,
    ];
    let commands: [(&str, &[Class]); 8] = [
        ("push", &remote),
        ("pull", &remote),
        ("copy", &remote),
        ("extract", &local),
        ("list", &local),
        ("clean", &local),
        ("save", &local),
        ("verify", &local),
    ];
    for (command, classes) in commands {
        let run = pusher().args([command, "--help"]).run().success();
        let listed: Vec<(i32, String)> = run
            .stdout
            .split("Error codes:")
            .nth(1)
            .unwrap_or_else(|| panic!("{command} --help lists no exit codes\n{run}"))
            .lines()
            .filter_map(|line| {
                let (code, text) = line.trim().split_once(' ')?;
                Some((code.parse().ok()?, text.to_string()))
            })
            .collect();
        let expected: Vec<(i32, &str)> = classes.iter().map(|&c| meaning(c)).collect();
        assert_eq!(
            listed.iter().map(|(code, _)| *code).collect::<Vec<_>>(),
            expected.iter().map(|(code, _)| *code).collect::<Vec<_>>(),
            "{command} --help\n{run}"
        );
        for ((code, text), (_, word)) in listed.iter().zip(&expected) {
            assert!(
                text.starts_with(&format!("{word}: ")),
                "{command} --help: {code} should mean {word}: {text}"
            );
        }
    }
}

// ---------------------------------------------------------------- usage errors

#[test]
fn unknown_flag_is_argh_usage_error_with_exit_2() {
    let f = fixture(8, &[1_000]);
    for args in [
        vec!["push", "--bogus"],
        vec!["--bogus"],
        vec!["push", "--max-concurrent", "many"],
    ] {
        let run = pusher()
            .args(&args)
            .args(["--source"])
            .arg(&f.file)
            .args(["--target", "127.0.0.1:1/x:1"])
            .run()
            .failure(2);
        assert!(run.stdout.is_empty(), "{run}");
        assert!(
            run.stderr.contains("Unrecognized argument: --bogus")
                || run.stderr.contains("--max-concurrent"),
            "{args:?}: argh names the problem\n{run}"
        );
    }
}

#[test]
fn missing_required_flags_are_argh_usage_errors_with_exit_2() {
    let f = fixture(9, &[1_000]);
    let run = pusher()
        .args(["push", "--source"])
        .arg(&f.file)
        .run()
        .failure(2);
    assert!(
        run.stderr.contains("Required options not provided") && run.stderr.contains("--target"),
        "{run}"
    );
    let run = pusher()
        .args(["push", "--target", "r.example/x:1"])
        .run()
        .failure(2);
    assert!(run.stderr.contains("--source"), "{run}");
    let run = pusher().args(["-r", "r.example/x:1"]).run().failure(2);
    assert!(run.stderr.contains("--source"), "flat form too\n{run}");
    let run = pusher().run().failure(2);
    assert!(!run.stderr.is_empty(), "{run}");
}

#[test]
fn absurd_numeric_flags_are_usage_errors_naming_the_allowed_range() {
    let f = fixture(10, &[1_000]);
    let source = f.file.to_str().unwrap();
    let push = |flag: &'static str, value: &'static str| {
        vec![
            "push",
            "--source",
            source,
            "--target",
            "127.0.0.1:1/x:1",
            "--dry-run",
            flag,
            value,
        ]
    };
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            push("--compress-threads", "1000000"),
            "--compress-threads 1000000",
            "1 to 256",
        ),
        (
            push("--max-concurrent", "1000000"),
            "--max-concurrent 1000000",
            "1 to 64",
        ),
        (
            push("--max-concurrent", "0"),
            "--max-concurrent 0",
            "1 to 64",
        ),
        (
            push("--small-file-concurrent", "100000"),
            "--small-file-concurrent",
            "1 to 64",
        ),
        (
            push("--large-file-concurrent", "0"),
            "--large-file-concurrent",
            "1 to 64",
        ),
        (
            push("--retry-attempts", "4000000000"),
            "--retry-attempts",
            "0 to 100",
        ),
        (
            push("--timeout", "18446744073709551615"),
            "--timeout",
            "1 to 86400",
        ),
        (push("--timeout", "0"), "--timeout 0", "1 to 86400"),
        (
            push("--chunk-size", "1T"),
            "--chunk-size",
            "512 to 4294967296",
        ),
        (push("--chunk-size", "1"), "--chunk-size 1 ", "512 to"),
        (
            push("--large-layer-threshold", "1000T"),
            "--large-layer-threshold",
            "1 to",
        ),
        (
            vec![
                "push",
                "--source",
                source,
                "--target",
                "127.0.0.1:1/x:1",
                "--dry-run",
                "--enable-dynamic-concurrency",
                "--speed-threshold",
                "1e300",
            ],
            "--speed-threshold",
            "up to 100000",
        ),
        (
            vec!["pull", "--max-concurrent", "1000000", "x:1"],
            "--max-concurrent",
            "1 to 64",
        ),
        (
            vec!["verify", "--max-concurrent", "1000000"],
            "--max-concurrent",
            "1 to 64",
        ),
        (
            vec![
                "save",
                "-o",
                "/nonexistent/out.tar",
                "--compress",
                "gzip",
                "--compress-threads",
                "1000000",
                "x:1",
            ],
            "--compress-threads",
            "1 to 256",
        ),
    ];
    for (args, names, range) in cases {
        let run = pusher().args(&args).run();
        let run = run.failure(2);
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(
            lines.iter().any(|l| l.contains(names) && l.contains(range)),
            "{args:?}: the error names the flag and its range\n{run}"
        );
    }
}

#[test]
fn help_prints_usage_and_exits_0() {
    let run = pusher().args(["push", "--help"]).run().success();
    for flag in [
        "--source",
        "--target",
        "--dry-run",
        "--skip-existing",
        "DOCKER_PUSHER_USERNAME",
    ] {
        assert!(run.stdout.contains(flag), "{flag}\n{run}");
    }
}

#[test]
fn target_by_digest_pushes_untagged_and_checks_the_digest() {
    let f = fixture(26, &[4_000]);
    let (registry, client) = plain();
    let digest = f.expected.digest.clone().unwrap();
    let run = push_cmd(&f, &url(&registry, &format!("bydigest/app@{digest}")))
        .run()
        .success();
    let (name, pushed, _) = run.pushed();
    assert_eq!((name, pushed), (digest.clone(), digest.clone()), "{run}");
    verify_target(&client, "bydigest/app", &digest, &f.expected);
    // distribution answers 404 for the tag list of a repository without tags.
    let tags = client.try_tags("bydigest/app").unwrap_or_default();
    assert!(tags.is_empty(), "no tag was made: {tags:?}");

    let other = format!("sha256:{}", "0".repeat(64));
    let run = push_cmd(&f, &url(&registry, &format!("bydigest/other@{other}")))
        .run()
        .failure(2);
    assert!(
        run.stderr.contains(&other) && run.stderr.contains(&digest),
        "{run}"
    );
}

#[test]
fn malformed_target_is_rejected_before_any_io() {
    let f = fixture(10, &[1_000]);
    let run = push_cmd(&f, "127.0.0.1:1/UPPER/case:1").run().failure(2);
    assert!(run.stderr.contains("UPPER/case"), "echoes the input\n{run}");
    assert!(!run.stderr.contains("connect"), "{run}");
}

#[test]
fn missing_source_is_an_input_error() {
    let run = pusher()
        .args([
            "push",
            "--source",
            "/nonexistent/image.tar",
            "--target",
            "127.0.0.1:1/x:1",
        ])
        .run()
        .failure(3);
    assert!(run.stderr.contains("/nonexistent/image.tar"), "{run}");
}

// ---------------------------------------------------------------- environment

#[test]
fn credentials_come_from_docker_pusher_environment() {
    let f = fixture(11, &[3_000]);
    let (registry, client) = basic();
    let run = push_cmd(&f, &url(&registry, "env/app:1"))
        .env("DOCKER_PUSHER_USERNAME", "bob")
        .env("DOCKER_PUSHER_PASSWORD", "bob-pw")
        .run()
        .success();
    assert!(!run.stderr.contains("warning"), "no -p warning\n{run}");
    verify_target(&client, "env/app", "1", &f.expected);
}

#[test]
fn credentials_come_from_registry_environment() {
    let f = fixture(12, &[3_000]);
    let (registry, client) = basic();
    push_cmd(&f, &url(&registry, "env/reg:1"))
        .env("REGISTRY_USERNAME", "bob")
        .env("REGISTRY_PASSWORD", "bob-pw")
        .run()
        .success();
    verify_target(&client, "env/reg", "1", &f.expected);
    // DOCKER_PUSHER_* is the tool's own and wins over the generic names.
    push_cmd(&f, &url(&registry, "env/both:1"))
        .env("REGISTRY_USERNAME", "nobody")
        .env("REGISTRY_PASSWORD", "wrong")
        .env("DOCKER_PUSHER_USERNAME", "bob")
        .env("DOCKER_PUSHER_PASSWORD", "bob-pw")
        .run()
        .success();
}

#[test]
fn credential_flags_beat_the_environment() {
    let f = fixture(13, &[3_000]);
    let (registry, client) = basic();
    push_cmd(&f, &url(&registry, "env/flag:1"))
        .env("DOCKER_PUSHER_USERNAME", "nobody")
        .env("DOCKER_PUSHER_PASSWORD", "wrong")
        .args(["-u", "bob", "-p", "bob-pw"])
        .run()
        .success();
    verify_target(&client, "env/flag", "1", &f.expected);
    // And the environment is really read: the wrong values alone fail.
    push_cmd(&f, &url(&registry, "env/flag:2"))
        .env("DOCKER_PUSHER_USERNAME", "nobody")
        .env("DOCKER_PUSHER_PASSWORD", "wrong")
        .run()
        .failure(4);
}

#[test]
fn password_stdin_is_read() {
    let f = fixture(14, &[3_000]);
    let (registry, client) = basic();
    let run = push_cmd(&f, &url(&registry, "stdin/app:1"))
        .args(["-u", "bob", "--password-stdin"])
        .stdin("bob-pw\n")
        .run()
        .success();
    assert!(!run.stderr.contains("warning"), "{run}");
    verify_target(&client, "stdin/app", "1", &f.expected);
}

#[test]
fn numeric_settings_are_read_from_the_environment_and_flags_win() {
    let f = fixture(15, &[3_000]);
    let (registry, _) = plain();
    for name in [
        "DOCKER_PUSHER_MAX_CONCURRENT",
        "DOCKER_PUSHER_TIMEOUT",
        "DOCKER_PUSHER_RETRY_ATTEMPTS",
        "DOCKER_PUSHER_LARGE_LAYER_THRESHOLD",
        "DOCKER_PUSHER_SKIP_EXISTING",
        "DOCKER_PUSHER_VERBOSE",
    ] {
        let run = push_cmd(&f, &url(&registry, "env/num:1"))
            .env(name, "not-a-number")
            .run()
            .failure(2);
        assert!(run.stderr.contains(name), "names the variable\n{run}");
    }
    // A flag wins, so the environment's bad value is never looked at.
    push_cmd(&f, &url(&registry, "env/num:1"))
        .env("DOCKER_PUSHER_MAX_CONCURRENT", "not-a-number")
        .env("DOCKER_PUSHER_TIMEOUT", "not-a-number")
        .env("DOCKER_PUSHER_RETRY_ATTEMPTS", "not-a-number")
        .env("DOCKER_PUSHER_LARGE_LAYER_THRESHOLD", "not-a-number")
        .args([
            "--max-concurrent",
            "2",
            "--timeout",
            "30",
            "--retry-attempts",
            "1",
            "--large-layer-threshold",
            "1G",
        ])
        .run()
        .success();
}

#[test]
fn verbose_and_chunking_come_from_the_environment() {
    let f = fixture(16, &[40_000, 3_000]);
    let (registry, client) = plain();
    let run = push_cmd(&f, &url(&registry, "env/chunks:1"))
        .env("DOCKER_PUSHER_VERBOSE", "true")
        .env("DOCKER_PUSHER_LARGE_LAYER_THRESHOLD", "10000")
        .env("DOCKER_PUSHER_CHUNK_SIZE", "16K")
        .env("DOCKER_PUSHER_MAX_CONCURRENT", "2")
        .run()
        .success();
    assert!(run.stderr.contains("[http] GET"), "verbose log on\n{run}");
    // The 40 kB layer goes up in 16 KiB PATCHes; the rest is under the threshold.
    let big = f.expected.manifests[0].layers[0].size;
    assert_eq!(
        upload_requests(&run, "PATCH") as u64,
        big.div_ceil(16 << 10),
        "{run}"
    );
    verify_target(&client, "env/chunks", "1", &f.expected);
}

// ---------------------------------------------------------------- docker config

fn docker_config(dir: &Path, json: &serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
}

#[test]
fn docker_config_auths_entry_is_used() {
    let f = fixture(17, &[3_000]);
    let (registry, client) = basic();
    let config = support::workspace_tmp();
    let auth = base64::engine::general_purpose::STANDARD.encode("bob:bob-pw");
    docker_config(
        config.path(),
        &serde_json::json!({ "auths": { registry.host(): { "auth": auth } } }),
    );
    push_cmd(&f, &url(&registry, "cfg/auths:1"))
        .env("DOCKER_CONFIG", config.path())
        .run()
        .success();
    verify_target(&client, "cfg/auths", "1", &f.expected);

    // Without DOCKER_CONFIG, ~/.docker/config.json.
    let p = push_cmd(&f, &url(&registry, "cfg/home:1"));
    docker_config(
        &p.home().join(".docker"),
        &serde_json::json!({ "auths": { format!("http://{}", registry.host()): { "auth": auth } } }),
    );
    p.run().success();
    verify_target(&client, "cfg/home", "1", &f.expected);
}

/// A `docker-credential-test` helper that logs how it was asked and answers with bob's
/// credentials for exactly `server`.
fn credential_helper(dir: &Path, server: &str) -> PathBuf {
    let log = dir.join("helper.log");
    let script = format!(
        r#"#!/bin/sh
read -r asked
echo "$1 $asked" >> '{log}'
if [ "$asked" = '{server}' ]; then
  printf '{{"ServerURL":"%s","Username":"bob","Secret":"bob-pw"}}\n' "$asked"
else
  echo "credentials not found in native keychain"
  exit 1
fi
"#,
        log = log.display()
    );
    let path = dir.join("docker-credential-test");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

#[test]
fn docker_config_cred_helper_is_run() {
    let f = fixture(18, &[3_000]);
    let (registry, client) = basic();
    let bin = support::workspace_tmp();
    let log = credential_helper(bin.path(), &registry.host());
    let config = support::workspace_tmp();
    docker_config(
        config.path(),
        &serde_json::json!({ "credHelpers": { registry.host(): "test" } }),
    );
    let run = push_cmd(&f, &url(&registry, "cfg/helper:1"))
        .env("DOCKER_CONFIG", config.path())
        .path_prefix(bin.path())
        .run()
        .success();
    assert!(!run.stderr.contains("bob-pw"), "{run}");
    verify_target(&client, "cfg/helper", "1", &f.expected);
    let asked = std::fs::read_to_string(&log).unwrap();
    assert_eq!(asked.trim(), format!("get {}", registry.host()));

    // credsStore is the fallback for registries without their own helper.
    docker_config(config.path(), &serde_json::json!({ "credsStore": "test" }));
    push_cmd(&f, &url(&registry, "cfg/store:1"))
        .env("DOCKER_CONFIG", config.path())
        .path_prefix(bin.path())
        .run()
        .success();
    verify_target(&client, "cfg/store", "1", &f.expected);
}

#[test]
fn missing_credential_helper_is_a_clear_auth_error() {
    let f = fixture(27, &[3_000]);
    let (registry, _) = basic();
    let config = support::workspace_tmp();
    docker_config(
        config.path(),
        &serde_json::json!({ "credHelpers": { registry.host(): "absent-helper" } }),
    );
    let run = push_cmd(&f, &url(&registry, "cfg/absent:1"))
        .env("DOCKER_CONFIG", config.path())
        .run()
        .failure(4);
    assert!(
        run.stderr.contains("docker-credential-absent-helper"),
        "{run}"
    );
}

#[test]
fn flags_beat_docker_config() {
    let f = fixture(19, &[3_000]);
    let (registry, _) = basic();
    let config = support::workspace_tmp();
    let auth = base64::engine::general_purpose::STANDARD.encode("nobody:wrong");
    docker_config(
        config.path(),
        &serde_json::json!({ "auths": { registry.host(): { "auth": auth } } }),
    );
    push_cmd(&f, &url(&registry, "cfg/flag:1"))
        .env("DOCKER_CONFIG", config.path())
        .env("DOCKER_PUSHER_USERNAME", "bob")
        .env("DOCKER_PUSHER_PASSWORD", "bob-pw")
        .run()
        .success();
    push_cmd(&f, &url(&registry, "cfg/flag:2"))
        .env("DOCKER_CONFIG", config.path())
        .run()
        .failure(4);
}

// ---------------------------------------------------------------- dry run

#[test]
fn dry_run_uploads_nothing_but_reports_what_would_go_up() {
    let f = fixture(20, &[30_000, 4_000]);
    let (registry, client) = plain();
    let run = push_cmd(&f, &url(&registry, "dry/app:1"))
        .arg("--dry-run")
        .run()
        .success();
    assert!(stored_blobs(&registry).is_empty(), "no blob stored\n{run}");
    assert!(
        client
            .try_get_manifest("dry/app", "1", &ACCEPT_ALL)
            .is_err()
    );
    let would: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("would upload"))
        .collect();
    assert_eq!(would.len(), 3, "config and two layers\n{run}");
    let total: u64 = f
        .image
        .layers
        .iter()
        .map(|l| l.tar.len() as u64)
        .sum::<u64>()
        + f.image.config.len() as u64;
    // docker's units: base 1000, one decimal.
    let human = format!("{:.1} kB", total as f64 / 1000.0);
    assert!(
        run.stderr
            .contains(&format!("{human} to upload in 3 blobs")),
        "reports the bytes ({human})\n{run}"
    );
    let line = run.result_line();
    assert!(line.starts_with("dry run: "), "{run}");
    let digest = f.expected.digest.clone().unwrap();
    assert!(
        line.contains(&digest),
        "names the digest it would push\n{run}"
    );

    // After a real push, a dry run finds everything in place.
    push_cmd(&f, &url(&registry, "dry/app:1")).run().success();
    let stored = stored_blobs(&registry);
    let run = push_cmd(&f, &url(&registry, "dry/app:1"))
        .arg("--dry-run")
        .run()
        .success();
    assert!(!run.stderr.contains("would upload"), "{run}");
    assert_eq!(run.stderr.matches("already exists").count(), 3, "{run}");
    assert_eq!(stored_blobs(&registry), stored);
}

#[test]
fn dry_run_checks_push_permission() {
    let opts = TokenOptions::new()
        .user("reader", "reader-pw")
        .grant(Grant::user("reader", "*", &["pull"]));
    let registry = TestRegistry::start(RegistryOptions::plain().auth(Auth::Token(opts)));
    let f = fixture(21, &[3_000]);
    let run = push_cmd(&f, &url(&registry, "dry/denied:1"))
        .args(["--dry-run", "-u", "reader", "-p", "reader-pw"])
        .run()
        .failure(4);
    assert!(run.stderr.contains("denied"), "{run}");
    assert!(stored_blobs(&registry).is_empty());
}

// ---------------------------------------------------------------- upload modes

#[test]
fn chunked_upload_lands_the_same_digests() {
    let f = fixture(22, &[100_000, 50_001, 7_000]);
    let (registry, client) = plain();
    let run = push_cmd(&f, &url(&registry, "chunk/whole:1"))
        .arg("-v")
        .run()
        .success();
    assert_eq!(upload_requests(&run, "PATCH"), 0, "{run}");
    let whole = verify_target(&client, "chunk/whole", "1", &f.expected);

    // A second registry, so no blob is found already present.
    let (registry, client) = plain();
    let run = push_cmd(&f, &url(&registry, "chunk/parts:1"))
        .args([
            "-v",
            "--large-layer-threshold",
            "8K",
            "--chunk-size",
            "10000",
        ])
        .run()
        .success();
    // Blobs over 8 KiB go up in 10000-byte PATCHes; the config goes up whole.
    let chunks: u64 = f.expected.manifests[0]
        .layers
        .iter()
        .chain(std::iter::once(&f.expected.manifests[0].config))
        .filter(|b| b.size > 8192)
        .map(|b| b.size.div_ceil(10_000))
        .sum();
    assert_eq!(upload_requests(&run, "PATCH") as u64, chunks, "{run}");
    let parts = verify_target(&client, "chunk/parts", "1", &f.expected);
    assert_eq!(whole, parts);
    assert_eq!(run.pushed().1, parts);
}

#[test]
fn existing_blobs_are_skipped_unless_force_upload() {
    let f = fixture(23, &[8_000, 2_000]);
    let (registry, client) = plain();
    push_cmd(&f, &url(&registry, "force/app:1")).run().success();

    let run = push_cmd(&f, &url(&registry, "force/app:1"))
        .arg("-v")
        .run()
        .success();
    assert_eq!(run.stderr.matches("already exists").count(), 3, "{run}");
    assert_eq!(upload_requests(&run, "PUT"), 0, "{run}");

    let run = push_cmd(&f, &url(&registry, "force/app:1"))
        .args(["-v", "--force-upload"])
        .run()
        .success();
    assert!(!run.stderr.contains("already exists"), "{run}");
    assert_eq!(
        upload_requests(&run, "PUT"),
        3,
        "every blob sent again\n{run}"
    );
    verify_target(&client, "force/app", "1", &f.expected);
}

#[test]
fn skip_existing_finishes_at_once_when_the_tag_already_has_the_image() {
    let f = fixture(24, &[8_000]);
    let other = fixture(25, &[6_000]);
    let (registry, client) = plain();
    let first = push_cmd(&f, &url(&registry, "skip/app:1")).run().success();

    let run = push_cmd(&f, &url(&registry, "skip/app:1"))
        .args(["-v", "--skip-existing"])
        .run()
        .success();
    assert!(
        !run.stderr.contains("[http] HEAD") && upload_requests(&run, "POST") == 0,
        "no blob is even checked\n{run}"
    );
    assert!(!run.stderr.contains("[http] PUT"), "{run}");
    assert_eq!(run.result_line(), first.result_line(), "same result line");

    // The tag holds another image: push it.
    let run = push_cmd(&other, &url(&registry, "skip/app:1"))
        .arg("--skip-existing")
        .run()
        .success();
    assert_eq!(
        run.pushed().1,
        verify_target(&client, "skip/app", "1", &other.expected)
    );

    // The environment switch works too.
    let run = push_cmd(&other, &url(&registry, "skip/app:1"))
        .args(["-v"])
        .env("DOCKER_PUSHER_SKIP_EXISTING", "1")
        .run()
        .success();
    assert!(!run.stderr.contains("[http] PUT"), "{run}");
}

#[test]
fn version_prints_the_crate_version_and_no_command_is_a_usage_error() {
    for flag in ["--version", "-V"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_docker-image-pusher"))
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("docker-image-pusher {}", env!("CARGO_PKG_VERSION"))
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_docker-image-pusher"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--help"));
}
