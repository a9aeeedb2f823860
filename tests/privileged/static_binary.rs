//! The static binary on a bare system: a root file system holding only the binary,
//! `/etc/hosts`, `/etc/resolv.conf`, a CA bundle and an image archive, entered with
//! `chroot` inside a network namespace of the test's own. There it pushes over TLS to a
//! real registry by a name from `/etc/hosts` and by a name only DNS (dnsmasq) knows.
//!
//! Needs root (chroot, network namespaces), so the test is `#[ignore]`d: `make test` runs it
//! as root. Run where the machine does not allow them, it fails with the reason.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::fixtures::{TestImage, write_docker25};
use crate::support;
use crate::support::pki;

const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the binary exactly as `make static` does, in its own target directory so it
/// does not disturb the normal build.
fn build_static_binary() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = manifest_dir.join("target").join("static-test");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            STATIC_TARGET,
            "--target-dir",
        ])
        .arg(&target_dir)
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        )
        .current_dir(&manifest_dir)
        .status()
        .expect("run cargo to build the static binary");
    assert!(status.success(), "building the static binary failed");
    target_dir
        .join(STATIC_TARGET)
        .join("release")
        .join("docker-image-pusher")
}

fn output(command: &mut Command) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Why this machine cannot run the bare-system proof, if it cannot.
fn missing_privileges() -> Option<String> {
    let (_, uid) = output(Command::new("id").arg("-u"));
    if uid.trim() != "0" {
        return Some(format!(
            "needs root for chroot and network namespaces (uid {})",
            uid.trim()
        ));
    }
    let probe = format!("dip-probe-{}", std::process::id());
    let (ok, text) = output(Command::new("ip").args(["netns", "add", &probe]));
    let _ = output(Command::new("ip").args(["netns", "del", &probe]));
    if !ok {
        return Some(format!(
            "cannot create a network namespace: {}",
            text.trim()
        ));
    }
    None
}

/// A network namespace that is deleted (with what runs in it) when dropped.
struct Namespace {
    name: String,
    children: Vec<Child>,
}

impl Namespace {
    fn create() -> Namespace {
        let name = format!("dip-static-{}", std::process::id());
        let _ = output(Command::new("ip").args(["netns", "del", &name]));
        let (ok, text) = output(Command::new("ip").args(["netns", "add", &name]));
        assert!(ok, "ip netns add: {text}");
        let (ok, text) = output(
            Command::new("ip").args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]),
        );
        assert!(ok, "bring up lo: {text}");
        Namespace {
            name,
            children: Vec::new(),
        }
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    fn spawn(&mut self, mut command: Command, log: &Path) {
        let log = std::fs::File::create(log).expect("create log");
        let child = command
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        self.children.push(child);
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = output(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by make test as root"]
fn static_binary_pushes_over_tls_by_hosts_and_dns_names_inside_a_bare_chroot() {
    if let Some(reason) = missing_privileges() {
        panic!("this machine cannot run the bare-system proof: {reason}");
    }
    support::registry::require_registry_binary(Path::new(support::registry::REGISTRY_BIN));
    assert!(
        Path::new("/usr/sbin/dnsmasq").exists(),
        "dnsmasq not found: install the Debian package dnsmasq-base (make test does this)"
    );

    let binary = build_static_binary();
    let (_, described) = output(Command::new("file").arg(&binary));
    assert!(
        described.contains("statically linked"),
        "file says: {described}"
    );
    let (dynamic, ldd) = output(Command::new("ldd").arg(&binary));
    assert!(
        !dynamic && ldd.contains("not a dynamic executable"),
        "ldd says: {ldd}"
    );

    let work = support::workspace_tmp();
    let certs = pki::make_server_certs_for(
        &work.path().join("pki"),
        &["registry.test", "dns-registry.test"],
    );

    // The bare root: nothing but what the issue allows.
    let root = work.path().join("root");
    for dir in ["etc/ssl/certs", "data"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy(&binary, root.join("docker-image-pusher")).unwrap();
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost registry.test\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n",
    )
    .unwrap();
    std::fs::copy(
        &certs.ca_cert,
        root.join("etc/ssl/certs/ca-certificates.crt"),
    )
    .unwrap();
    let image = TestImage::new(61, &[300_000, 80_000], false, ("linux", "amd64"));
    let expected = write_docker25(
        &root.join("data/image.tar"),
        &[(image, vec!["static/app:1".into()])],
    )
    .unwrap();
    let digest = expected.targets[0]
        .digest
        .clone()
        .expect("Docker 25 archives carry their manifest digest");

    let mut namespace = Namespace::create();
    let storage = work.path().join("storage");
    let config = work.path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp:\n  addr: 127.0.0.1:443\n  tls:\n    certificate: {}\n    key: {}\n",
            storage.display(),
            certs.cert.display(),
            certs.key.display()
        ),
    )
    .unwrap();
    let mut registry = namespace.command(support::registry::REGISTRY_BIN);
    registry.arg("serve").arg(&config);
    namespace.spawn(registry, &work.path().join("registry.log"));
    let mut dns = namespace.command("/usr/sbin/dnsmasq");
    dns.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--port=53",
        "--pid-file=",
        "--address=/dns-registry.test/127.0.0.1",
    ]);
    namespace.spawn(dns, &work.path().join("dnsmasq.log"));
    wait_until("the registry", || {
        let mut curl = namespace.command("curl");
        curl.args(["-s", "-o", "/dev/null", "--cacert"])
            .arg(&certs.ca_cert)
            .arg("https://127.0.0.1/v2/");
        output(&mut curl).0
    });

    for (host, repository) in [
        ("registry.test", "static/hosts"),
        ("dns-registry.test", "static/dns"),
    ] {
        let mut push = namespace.command("chroot");
        push.arg(&root).args([
            "/docker-image-pusher",
            "push",
            "--source",
            "/data/image.tar",
            "--target",
            &format!("{host}/{repository}:1"),
        ]);
        let (ok, text) = output(&mut push);
        assert!(ok, "push to {host} inside the chroot failed:\n{text}");
        assert!(
            text.contains(&format!("1: digest: {digest} size: ")),
            "unexpected output:\n{text}"
        );

        let mut fetch = namespace.command("curl");
        fetch
            .args(["-fs", "--cacert"])
            .arg(&certs.ca_cert)
            .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
            .arg(format!("https://127.0.0.1/v2/{repository}/manifests/1"));
        let served = fetch.output().expect("curl");
        assert!(
            served.status.success(),
            "the registry does not serve {repository}:1"
        );
        assert_eq!(support::sha256_digest(&served.stdout), digest);
    }

    // The bundled C zstd library works in the static binary too.
    let mut push = namespace.command("chroot");
    push.arg(&root).args([
        "/docker-image-pusher",
        "push",
        "--source",
        "/data/image.tar",
        "--target",
        "registry.test/static/zstd:1",
        "--compress",
        "zstd",
    ]);
    let (ok, text) = output(&mut push);
    assert!(ok, "zstd push inside the chroot failed:\n{text}");
    let mut fetch = namespace.command("curl");
    fetch
        .args(["-fs", "--cacert"])
        .arg(&certs.ca_cert)
        .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .arg("https://127.0.0.1/v2/static/zstd/manifests/1");
    let served = fetch.output().expect("curl");
    let manifest = String::from_utf8_lossy(&served.stdout);
    assert!(
        manifest.contains("application/vnd.oci.image.layer.v1.tar+zstd"),
        "{manifest}"
    );
}
