//! Hostile and broken input, one table: broken and crafted archives, invalid
//! references, unreachable and misconfigured registries, refusals, and a registry
//! that misreports what it stored. Every case must end with exactly one clear line on
//! stderr, the exit code of its class (2 usage, 3 input, 4 auth, 5 network,
//! 6 registry), no panic, and nothing written to the registry.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::fixtures as fx;
use crate::support;
use crate::support::{
    Auth, Fault, FaultProxy, Grant, Match, Mode, Pusher, RegistryOptions, Rule, TcpRelay,
    TestRegistry, TokenOptions,
};

const USAGE: i32 = 2;
const INPUT: i32 = 3;
const AUTH: i32 = 4;
const NETWORK: i32 = 5;
const REGISTRY: i32 = 6;

/// The registries the cases run against, started once for the whole table.
struct World {
    dir: tempfile::TempDir,
    plain: TestRegistry,
    proxy: FaultProxy,
    basic: TestRegistry,
    token: TestRegistry,
    tls: TestRegistry,
    relay: Option<TcpRelay>,
    good_archive: PathBuf,
}

/// What must not have happened at the registry after a case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Untouched {
    /// Not one request reached the (proxied) registry: the input was refused first.
    NoRequest,
    /// Requests went out, but the repository holds no blob and no manifest.
    NothingStored,
    /// A layer turned out corrupt while uploading: no manifest or tag, and not the
    /// corrupt layer. Intact blobs uploaded before it may remain, unreferenced (the
    /// registry's garbage collection removes them; a later push reuses them).
    NoManifestNoCorruptBlob,
    /// The case is about what the registry answered after storing (a rewritten
    /// answer); only the refusal is checked.
    AnswerRefused,
}

struct Case {
    name: &'static str,
    exit: i32,
    untouched: Untouched,
    /// Words the error line must contain (what went wrong, in the user's terms).
    says: &'static str,
    run: fn(&World, &Path) -> support::Run,
}

fn write(world: &World, name: &str, fixture: fn(&Path) -> std::io::Result<()>) -> PathBuf {
    let path = world.dir.path().join(name);
    fixture(&path).expect("write hostile fixture");
    path
}

fn push_to_proxy(world: &World, dir: &Path, archive: &Path, repository: &str) -> support::Run {
    let target = format!("http://{}/{repository}:1", world.proxy.host());
    Pusher::push(dir, archive, &target, &["-q", "--retry-attempts", "1"]).run()
}

/// Each case pushes to its own repository, named after its directory.
fn repo(dir: &Path) -> String {
    format!("hostile/{}", dir.file_name().unwrap().to_string_lossy())
}

fn archive_case(
    world: &World,
    dir: &Path,
    fixture: fn(&Path) -> std::io::Result<()>,
) -> support::Run {
    let archive = write(
        world,
        &format!("{}.tar", dir.file_name().unwrap().to_string_lossy()),
        fixture,
    );
    push_to_proxy(world, dir, &archive, &repo(dir))
}

/// A Docker 25 archive whose index.json is not JSON.
fn invalid_index_json(path: &Path) -> std::io::Result<()> {
    let good = path.with_extension("good.tar");
    let (image, names) = fx::hostile_image();
    fx::write_docker25(&good, &[(image, names)])?;
    let mut archive = tar::Archive::new(std::fs::File::open(&good)?);
    let mut builder = tar::Builder::new(std::fs::File::create(path)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        if name == "index.json" {
            data = b"{\"schemaVersion\": 2, \"manifests\": [".to_vec();
        }
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append_data(&mut header, &name, data.as_slice())?;
    }
    builder.finish()
}

fn huge_manifest(path: &Path) -> std::io::Result<()> {
    // Just over the 16 MiB any real image metadata fits in.
    fx::hostile_huge_manifest(path, 17 << 20)
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "not a tar",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "not a tar archive",
            run: |w, d| archive_case(w, d, fx::hostile_not_a_tar),
        },
        Case {
            name: "empty file",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "is empty",
            run: |w, d| archive_case(w, d, fx::hostile_empty),
        },
        Case {
            name: "truncated tar",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "truncated",
            run: |w, d| archive_case(w, d, fx::hostile_truncated_tar),
        },
        Case {
            name: "truncated gzip",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "truncated",
            run: |w, d| archive_case(w, d, fx::hostile_truncated_gzip),
        },
        Case {
            name: "neither manifest.json nor index.json",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "neither manifest.json",
            run: |w, d| archive_case(w, d, fx::hostile_no_manifest),
        },
        Case {
            name: "invalid manifest.json",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "manifest.json",
            run: |w, d| archive_case(w, d, fx::hostile_invalid_json_manifest),
        },
        Case {
            name: "invalid index.json",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "index.json",
            run: |w, d| archive_case(w, d, invalid_index_json),
        },
        Case {
            name: "manifest names an absent layer",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "",
            run: |w, d| archive_case(w, d, fx::hostile_missing_layer),
        },
        Case {
            name: "layer bytes do not match the digest",
            exit: INPUT,
            untouched: Untouched::NoManifestNoCorruptBlob,
            says: "corrupt",
            run: |w, d| archive_case(w, d, fx::hostile_layer_digest_mismatch),
        },
        Case {
            name: "layer bytes do not match the diff_id",
            exit: INPUT,
            untouched: Untouched::NoManifestNoCorruptBlob,
            says: "corrupt",
            run: |w, d| archive_case(w, d, fx::hostile_diffid_mismatch_legacy),
        },
        Case {
            name: "entry climbing out with ..",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "refusing a crafted archive",
            run: |w, d| archive_case(w, d, fx::hostile_dotdot_entry),
        },
        Case {
            name: "entry with an absolute path",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "absolute path",
            run: |w, d| archive_case(w, d, fx::hostile_absolute_entry),
        },
        Case {
            name: "symlink pointing outside the archive",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "points outside the archive",
            run: |w, d| archive_case(w, d, fx::hostile_symlink_escape),
        },
        Case {
            name: "duplicate entries",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "two entries",
            run: |w, d| archive_case(w, d, fx::hostile_duplicate_entries),
        },
        Case {
            name: "enormous manifest.json",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "larger than",
            run: |w, d| archive_case(w, d, huge_manifest),
        },
        Case {
            name: "missing archive file",
            exit: INPUT,
            untouched: Untouched::NoRequest,
            says: "neither a file nor an image",
            run: |w, d| push_to_proxy(w, d, &d.join("nowhere.tar"), &repo(d)),
        },
        Case {
            name: "reference with upper-case repository",
            exit: USAGE,
            untouched: Untouched::NoRequest,
            says: "",
            run: |w, d| {
                let target = format!("http://{}/Hostile/App:1", w.proxy.host());
                Pusher::push(d, &w.good_archive, &target, &["-q"]).run()
            },
        },
        Case {
            name: "reference with an invalid tag",
            exit: USAGE,
            untouched: Untouched::NoRequest,
            says: "",
            run: |w, d| {
                let target = format!("{}/hostile/app:bad!tag", w.proxy.host());
                Pusher::push(d, &w.good_archive, &target, &["-q", "--insecure"]).run()
            },
        },
        Case {
            name: "reference with an unsupported scheme",
            exit: USAGE,
            untouched: Untouched::NoRequest,
            says: "scheme",
            run: |w, d| {
                let target = format!("ftp://{}/hostile/app:1", w.proxy.host());
                Pusher::push(d, &w.good_archive, &target, &["-q"]).run()
            },
        },
        Case {
            name: "empty reference",
            exit: USAGE,
            untouched: Untouched::NoRequest,
            says: "",
            run: |w, d| Pusher::push(d, &w.good_archive, "", &["-q"]).run(),
        },
        Case {
            name: "unreachable host",
            exit: NETWORK,
            untouched: Untouched::NoRequest,
            says: "127.0.0.1:1",
            run: |w, d| {
                Pusher::push(
                    d,
                    &w.good_archive,
                    "http://127.0.0.1:1/hostile/app:1",
                    &["-q", "--retry-attempts", "1"],
                )
                .run()
            },
        },
        Case {
            name: "DNS failure",
            exit: NETWORK,
            untouched: Untouched::NoRequest,
            says: "cannot resolve",
            run: |w, d| {
                Pusher::push(
                    d,
                    &w.good_archive,
                    "http://registry.does-not-exist.invalid:5000/hostile/app:1",
                    &["-q", "--retry-attempts", "1"],
                )
                .run()
            },
        },
        Case {
            name: "TLS certificate for another name",
            exit: NETWORK,
            untouched: Untouched::NoRequest,
            says: "TLS",
            run: |w, d| {
                let relay = w.relay.as_ref().expect("127.0.0.2 relay");
                let target = format!("https://{}/hostile/app:1", relay.addr());
                let ca = w.tls.ca_cert_path().unwrap().display().to_string();
                Pusher::push(d, &w.good_archive, &target, &["-q", "--ca-cert", &ca]).run()
            },
        },
        Case {
            name: "untrusted TLS certificate",
            exit: NETWORK,
            untouched: Untouched::NoRequest,
            says: "not trusted",
            run: |w, d| {
                let target = format!("https://{}/hostile/app:1", w.tls.host());
                Pusher::push(d, &w.good_archive, &target, &["-q"]).run()
            },
        },
        Case {
            name: "401: wrong password",
            exit: AUTH,
            untouched: Untouched::NothingStored,
            says: "rejected the credentials",
            run: |w, d| {
                let target = format!("http://{}/{}:1", w.basic.host(), repo(d));
                Pusher::push(
                    d,
                    &w.good_archive,
                    &target,
                    &["-q", "-u", "alice", "--password-stdin"],
                )
                .stdin("wrong-password")
                .run()
            },
        },
        Case {
            name: "401: token without push (insufficient scope)",
            exit: AUTH,
            untouched: Untouched::NothingStored,
            says: "access denied",
            run: |w, d| {
                let target = format!("http://{}/{}:1", w.token.host(), repo(d));
                Pusher::push(
                    d,
                    &w.good_archive,
                    &target,
                    &["-q", "-u", "reader", "--password-stdin"],
                )
                .stdin("reader-pw")
                .run()
            },
        },
        Case {
            name: "403 DENIED",
            exit: AUTH,
            untouched: Untouched::NothingStored,
            says: "DENIED",
            run: |w, d| {
                w.proxy.add(
                    Rule::new(
                        Match::method("POST"),
                        Fault::respond_error(
                            403,
                            "DENIED",
                            "requested access to the resource is denied",
                        ),
                    )
                    .always(),
                );
                push_to_proxy(w, d, &w.good_archive, &repo(d))
            },
        },
        Case {
            name: "404 NAME_UNKNOWN",
            exit: REGISTRY,
            untouched: Untouched::NothingStored,
            says: "repository not found",
            run: |w, d| {
                w.proxy.add(
                    Rule::new(
                        Match::method("POST"),
                        Fault::respond_error(
                            404,
                            "NAME_UNKNOWN",
                            "repository name not known to registry",
                        ),
                    )
                    .always(),
                );
                push_to_proxy(w, d, &w.good_archive, &repo(d))
            },
        },
        Case {
            name: "registry answers an upload Location that is not a URL",
            exit: REGISTRY,
            untouched: Untouched::NothingStored,
            says: "upload Location that is not a URL",
            run: |w, d| {
                w.proxy.add(
                    Rule::new(
                        Match::method("POST"),
                        Fault::RewriteHeader {
                            name: "Location".into(),
                            value: "http://[::1/v2/hostile/app/blobs/uploads/u1".into(),
                        },
                    )
                    .always(),
                );
                push_to_proxy(w, d, &w.good_archive, &repo(d))
            },
        },
        Case {
            name: "registry answers the manifest PUT with another digest",
            exit: REGISTRY,
            untouched: Untouched::AnswerRefused,
            says: "rewrote the manifest",
            run: |w, d| {
                w.proxy.add(Rule::new(
                    Match::manifest_put(),
                    Fault::RewriteHeader {
                        name: "Docker-Content-Digest".into(),
                        value: fx::digest(b"something else"),
                    },
                ));
                push_to_proxy(w, d, &w.good_archive, &repo(d))
            },
        },
    ]
}

/// Every manifest revision stored in a registry's filesystem.
fn stored_manifests(registry: &TestRegistry) -> Vec<PathBuf> {
    support::pusher::read_tree(
        &registry
            .storage_dir()
            .join("docker/registry/v2/repositories"),
    )
    .into_iter()
    .map(|(p, _)| p)
    .filter(|p| p.to_string_lossy().contains("/_manifests/"))
    .collect()
}

/// Blob links and manifests a repository holds (upload sessions do not count).
fn stored_in(registry: &TestRegistry, repository: &str) -> Vec<PathBuf> {
    let root = registry
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(repository);
    support::pusher::read_tree(&root)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            let text = p.to_string_lossy();
            text.contains("/_layers/") || text.contains("/_manifests/")
        })
        .collect()
}

#[test]
fn every_hostile_or_broken_input_fails_with_one_line_its_exit_code_and_no_writes() {
    let dir = support::workspace_tmp();
    let plain = TestRegistry::start(RegistryOptions::plain());
    let proxy = FaultProxy::start(&plain.host(), Mode::Buffering);
    let basic =
        TestRegistry::start(RegistryOptions::plain().auth(Auth::htpasswd("alice", "alice-pw")));
    let token = TestRegistry::start(
        RegistryOptions::plain().auth(Auth::Token(
            TokenOptions::new()
                .user("reader", "reader-pw")
                .grant(Grant::user("reader", "*", &["pull"])),
        )),
    );
    let tls = TestRegistry::start(RegistryOptions::plain().tls(true));
    // The whole 127/8 is loopback on Linux; the certificate names only 127.0.0.1.
    let relay = TcpRelay::start("127.0.0.2:0", &tls.host()).ok();
    let good_archive = dir.path().join("good.tar");
    fx::write_docker25(&good_archive, &[fx::hostile_image()]).expect("good archive");
    let world = World {
        dir,
        plain,
        proxy,
        basic,
        token,
        tls,
        relay,
        good_archive,
    };

    let mut failures = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        if case.name.starts_with("TLS certificate for another name") && world.relay.is_none() {
            failures.push(format!("{}: cannot listen on 127.0.0.2", case.name));
            continue;
        }
        world.proxy.clear_rules();
        world.proxy.clear_log();
        let before: Vec<usize> = [&world.plain, &world.basic, &world.token, &world.tls]
            .iter()
            .map(|r| stored_manifests(r).len())
            .collect();
        let case_dir = world.dir.path().join(format!("case-{i}"));
        std::fs::create_dir_all(&case_dir).unwrap();
        let run = (case.run)(&world, &case_dir);

        let mut problems = Vec::new();
        if run.panicked() {
            problems.push("panicked".to_string());
        }
        if run.code != Some(case.exit) {
            problems.push(format!("exit code {:?}, expected {}", run.code, case.exit));
        }
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.len() != 1 || !lines[0].starts_with("error: ") {
            problems.push(format!("stderr is not one error line: {lines:?}"));
        } else if !lines[0].contains(case.says) {
            problems.push(format!(
                "the error does not say \"{}\": {}",
                case.says, lines[0]
            ));
        }
        if !run.stdout.trim().is_empty() {
            problems.push(format!("stdout is not empty: {:?}", run.stdout));
        }
        let after: Vec<usize> = [&world.plain, &world.basic, &world.token, &world.tls]
            .iter()
            .map(|r| stored_manifests(r).len())
            .collect();
        match case.untouched {
            Untouched::NoRequest => {
                if !world.proxy.exchanges().is_empty() {
                    problems.push(format!("requests were sent:\n{}", world.proxy.describe()));
                }
                if before != after {
                    problems.push("a manifest was stored".into());
                }
            }
            Untouched::NothingStored => {
                if before != after {
                    problems.push("a manifest was stored".into());
                }
                let repository = repo(&case_dir);
                for registry in [&world.plain, &world.basic, &world.token] {
                    let stored = stored_in(registry, &repository);
                    if !stored.is_empty() {
                        problems.push(format!("{repository} holds {stored:?}"));
                    }
                }
            }
            Untouched::NoManifestNoCorruptBlob => {
                if before != after {
                    problems.push("a manifest was stored".into());
                }
                let (image, _) = fx::hostile_image();
                let corrupt = &image.layers[0].diff_id;
                let stored = stored_in(&world.plain, &repo(&case_dir));
                if stored
                    .iter()
                    .any(|p| p.to_string_lossy().contains(fx::digest_hex(corrupt)))
                {
                    problems.push(format!("the corrupt layer {corrupt} was stored"));
                }
            }
            Untouched::AnswerRefused => {}
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}:\n  {}\n{run}",
                case.name,
                problems.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases misbehaved:\n\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n\n")
    );
}
