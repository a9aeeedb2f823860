//! Image graphs shaped to explode a reader that walks them as trees or recurses: an
//! archive index nested 20,000 levels, an 8-level index naming each level 10 times, a
//! registry index of four levels naming each level 60 times. Each must end in bounded
//! time, cleanly: refused with one line and the input or registry exit code, or done.

mod common;
mod common_fixtures;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Pusher, RegistryClient, RegistryOptions, TestRegistry, workspace_tmp};
use common_fixtures as fx;

const INPUT: i32 = 3;
/// Far above what these take (well under a second in a release build), far below the
/// minutes a tree walk takes, with room for a debug build on a loaded machine.
const BOUND: Duration = Duration::from_secs(15);

fn timed(pusher: &Pusher) -> (common::Run, Duration) {
    let start = Instant::now();
    let run = pusher.run();
    (run, start.elapsed())
}

fn extract(dir: &Path, archive: &Path) -> Pusher {
    let archive = archive.display().to_string();
    Pusher::new(dir, &["extract", "-f", &archive, "-q"])
}

#[test]
fn an_archive_index_nested_20000_levels_is_refused_without_overflowing_the_stack() {
    let dir = workspace_tmp();
    let archive = dir.path().join("deep.tar");
    fx::write_nested_index_archive(&archive, 20_000, 1).unwrap();
    let (run, took) = timed(&extract(dir.path(), &archive));
    assert_eq!(run.code, Some(INPUT), "{run:?}");
    assert!(run.stderr.contains("nests deeper than 8 levels"), "{run:?}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn an_archive_index_naming_each_of_8_levels_10_times_is_read_once_per_manifest() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let dir = workspace_tmp();
    let archive = dir.path().join("wide.tar");
    fx::write_nested_index_archive(&archive, 8, 10).unwrap();
    assert!(std::fs::metadata(&archive).unwrap().len() < 64 << 10);
    let target = format!("{}/hostile/wide:1", registry.host());
    let pusher = Pusher::push(
        dir.path(),
        &archive,
        &target,
        &["--insecure", "--dry-run", "-q"],
    );
    let (run, took) = timed(&pusher);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(took < BOUND, "took {took:?}");
    // The whole graph is one image: extracting it stores each manifest once.
    let (run, took) = timed(&extract(dir.path(), &archive));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn an_archive_index_wider_than_1024_entries_is_refused() {
    let dir = workspace_tmp();
    let archive = dir.path().join("wide.tar");
    fx::write_nested_index_archive(&archive, 1, 1025).unwrap();
    let (run, took) = timed(&extract(dir.path(), &archive));
    assert_eq!(run.code, Some(INPUT), "{run:?}");
    assert!(run.stderr.contains("lists 1025 entries"), "{run:?}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn pull_all_platforms_fetches_each_manifest_of_a_shared_index_graph_once() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let repo = "hostile/graph";
    let leaf = fx::graph_leaf();
    client.put_blob(repo, &leaf.config);
    for layer in &leaf.layers {
        client.put_blob(repo, &layer.bytes);
    }
    let manifest = fx::oci_manifest(&leaf);
    client.put_manifest(repo, &fx::digest(&manifest), fx::OCI_MANIFEST, &manifest);
    let indexes = fx::nested_indexes(&manifest, 4, 60);
    for index in &indexes {
        client.put_manifest(repo, &fx::digest(index), fx::OCI_INDEX, index);
    }
    let top = indexes.last().unwrap();
    client.put_manifest(repo, "1", fx::OCI_INDEX, top);

    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let reference = format!("{}/{repo}:1", registry.host());
    let args = [
        "pull",
        "-i",
        &reference,
        "--insecure",
        "--all-platforms",
        "--json",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let (run, took) = timed(&Pusher::new(dir.path(), &args));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(took < BOUND, "took {took:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["digest"], fx::digest(top));
    assert_eq!(report["blobs"], 2, "{report}");
}
