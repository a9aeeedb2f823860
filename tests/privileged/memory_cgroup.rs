//! A compressing push on a small edge box: the product runs inside a memory cgroup of
//! 32 MiB (v2 `memory.max`, or v1 `memory.limit_in_bytes`, whichever the machine has),
//! with default flags, and must finish without the OOM killer, pushing the manifest an
//! unconstrained run pushes.
//!
//! Needs root (it makes and removes a cgroup), so it is `#[ignore]`d: `make test` runs it
//! as root. Run as root where no memory cgroup can be made, it fails with the reason.

use std::fs;
use std::path::{Path, PathBuf};

use crate::fixtures::{Rng, TarEntry, TestImage, TestLayer, tar_bytes, write_docker25};
use crate::support;
use crate::support::{Pusher, RegistryOptions, TestRegistry};

const LIMIT: u64 = 32 << 20;

/// A memory cgroup of the test's own, removed on drop.
struct MemoryCgroup {
    dir: PathBuf,
    /// `memory.max_usage_in_bytes` (v1) or `memory.peak` (v2, newer kernels).
    peak_file: Option<PathBuf>,
}

impl MemoryCgroup {
    fn create(limit: u64) -> Result<MemoryCgroup, String> {
        let membership = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let name = format!("dip-memory-test-{}", std::process::id());
        let unified = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let v1 = membership.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        });
        let (dir, limit_file, peak) = if let Some(path) = v1 {
            let base = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            (
                base.join(&name),
                "memory.limit_in_bytes",
                "memory.max_usage_in_bytes",
            )
        } else if fs::read_to_string(unified)
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        {
            // Below the root, where the memory controller is enabled for children: the
            // test's own cgroup may be an inner one that cannot take processes.
            (
                Path::new("/sys/fs/cgroup").join(&name),
                "memory.max",
                "memory.peak",
            )
        } else {
            return Err("neither cgroup v1 nor v2 offers the memory controller here".into());
        };
        fs::create_dir(&dir).map_err(|e| format!("cannot make cgroup {}: {e}", dir.display()))?;
        let cgroup = MemoryCgroup {
            peak_file: Some(dir.join(peak)).filter(|p| p.exists()),
            dir,
        };
        fs::write(cgroup.dir.join(limit_file), limit.to_string())
            .map_err(|e| format!("cannot set {limit_file}: {e}"))?;
        // No swap to escape into, where the kernel offers the knob.
        for swap in ["memory.swap.max", "memory.memsw.limit_in_bytes"] {
            let file = cgroup.dir.join(swap);
            if file.exists() {
                let value = if swap.ends_with(".max") {
                    "0".to_string()
                } else {
                    limit.to_string()
                };
                let _ = fs::write(file, value);
            }
        }
        Ok(cgroup)
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    fn peak(&self) -> Option<u64> {
        fs::read_to_string(self.peak_file.as_ref()?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Text lines: compresses like real files do, so the compressor has work.
fn text_layer(seed: u64, size: usize) -> TestLayer {
    let mut rng = Rng::new(seed);
    let mut text = String::with_capacity(size + 64);
    while text.len() < size {
        text.push_str(&format!(
            "{:08x} line {} of the cgroup test\n",
            rng.next_u64() >> 32,
            rng.below(10_000)
        ));
    }
    text.truncate(size);
    let entries = vec![TarEntry::file("data.txt", text.into_bytes(), 1_704_067_200)];
    TestLayer::from_tar(tar_bytes(&entries), false)
}

#[test]
#[ignore = "needs root (makes a memory cgroup)"]
fn a_gzip_push_of_a_multi_layer_image_completes_inside_a_32_mib_memory_cgroup() {
    let cgroup = MemoryCgroup::create(LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let registry = TestRegistry::start(RegistryOptions::plain());
    let dir = support::workspace_tmp();
    let archive = dir.path().join("image.tar");
    let layers = (1..=4).map(|seed| text_layer(seed, 20 << 20)).collect();
    let image = TestImage::from_layers(31, layers, ("linux", "amd64"));
    write_docker25(&archive, &[(image, vec!["edge/app:1".into()])]).expect("fixture");
    let push = |repository: &str, cache: &str, wrapper: &[&str]| {
        let target = format!("http://{}/{repository}:1", registry.host());
        let run = Pusher::push(
            &dir.path().join(cache),
            &archive,
            &target,
            &["--json", "--compress", "gzip"],
        )
        .wrapped(wrapper)
        .run();
        run.expect_success();
        run.report()["digest"].as_str().unwrap().to_string()
    };
    let expected = push("edge/free", "free", &[]);
    let script = format!("echo $$ > {} && exec \"$@\"", cgroup.procs().display());
    let constrained = push("edge/small", "small", &["sh", "-c", &script, "sh"]);
    assert_eq!(constrained, expected, "the same manifest inside the cgroup");
    if let Some(peak) = cgroup.peak() {
        assert!(peak > 0, "the push ran inside the cgroup");
    }
}
