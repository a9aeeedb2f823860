//! Input shaped to explode a reader: image graphs that a tree walk or recursion cannot
//! survive (an archive index nested 20,000 levels, an 8-level index naming each level 10
//! times, a registry index of four levels naming each level 60 times), oversized tar
//! extension headers, duplicate entries, and a dry run over a damaged layer. Each must
//! end in bounded time and memory, cleanly: refused with one line and its exit code, or
//! done.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::fixtures as fx;
use crate::support;
use crate::support::{Pusher, RegistryClient, RegistryOptions, TestRegistry, workspace_tmp};

const INPUT: i32 = 3;
/// Far above what these take (well under a second in a release build), far below the
/// minutes a tree walk takes, with room for a debug build on a loaded machine.
const BOUND: Duration = Duration::from_secs(15);

fn timed(pusher: &Pusher) -> (support::Run, Duration) {
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

#[test]
fn a_dry_run_push_hashes_the_layers_it_would_send_and_refuses_a_corrupt_one() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let dir = workspace_tmp();
    let archive = dir.path().join("corrupt.tar");
    fx::hostile_layer_digest_mismatch(&archive).unwrap();
    let target = format!("{}/hostile/corrupt:1", registry.host());
    let pusher = Pusher::push(
        dir.path(),
        &archive,
        &target,
        &["--insecure", "--dry-run", "-q"],
    );
    let run = pusher.run();
    assert_eq!(run.code, Some(INPUT), "{run:?}");
    assert!(run.stderr.contains("is corrupt"), "{run:?}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");
    assert!(
        RegistryClient::new(&registry)
            .try_tags("hostile/corrupt")
            .is_err()
    );
}

#[test]
fn two_symlink_entries_named_manifest_json_are_refused() {
    let dir = workspace_tmp();
    let archive = dir.path().join("links.tar");
    let (image, names) = fx::hostile_image();
    let good = dir.path().join("good.tar");
    fx::write_docker_legacy(&good, &[(image, names)]).unwrap();
    // The good archive's manifest.json moved aside, and two links to it by that name.
    let mut entries = Vec::new();
    let mut tar = tar::Archive::new(std::fs::File::open(&good).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let name = if name == "manifest.json" {
            "real.json".to_string()
        } else {
            name
        };
        entries.push(fx::TarEntry::file(&name, data, 0));
    }
    entries.push(fx::TarEntry::symlink("manifest.json", "real.json", 0));
    entries.push(fx::TarEntry::symlink("manifest.json", "real.json", 0));
    fx::write_tar(&archive, &entries).unwrap();
    let run = extract(dir.path(), &archive).run();
    assert_eq!(run.code, Some(INPUT), "{run:?}");
    assert!(
        run.stderr.contains("two entries named \"manifest.json\""),
        "{run:?}"
    );
}

#[test]
fn a_gzipped_archive_with_a_500_mb_long_name_header_is_refused_at_once() {
    let dir = workspace_tmp();
    let archive = dir.path().join("longname.tar.gz");
    let mut header = tar::Header::new_gnu();
    header.set_path("././@LongLink").unwrap();
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(500 << 20);
    header.set_cksum();
    let file = std::fs::File::create(&archive).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, header.as_bytes()).unwrap();
    // Only the start of the "name": the header alone must be refused.
    std::io::copy(&mut std::io::repeat(b'a').take(1 << 20), &mut gz).unwrap();
    gz.finish().unwrap();
    let (run, took) = timed(&extract(dir.path(), &archive));
    assert_eq!(run.code, Some(INPUT), "{run:?}");
    assert!(
        run.stderr
            .contains("GNU long name header of 524288000 bytes"),
        "{run:?}"
    );
    assert!(took < BOUND, "took {took:?}");
}

/// A registry image whose one layer's descriptor says `declared` bytes; pulls it into
/// a fresh cache and returns the run, how long it took, and the files left in `tmp/`.
fn pull_declaring(declared: u64) -> (support::Run, Duration, usize) {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let repo = "hostile/huge";
    let leaf = fx::graph_leaf();
    client.put_blob(repo, &leaf.config);
    let layer = &leaf.layers[0];
    client.put_blob(repo, &layer.bytes);
    let manifest = String::from_utf8(fx::oci_manifest(&leaf)).unwrap().replace(
        &format!("\"size\":{}", layer.bytes.len()),
        &format!("\"size\":{declared}"),
    );
    assert!(manifest.contains(&declared.to_string()));
    client.put_manifest(repo, "1", fx::OCI_MANIFEST, manifest.as_bytes());

    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let reference = format!("{}/{repo}:1", registry.host());
    let args = [
        "pull",
        "-i",
        &reference,
        "--insecure",
        "-q",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let (run, took) = timed(&Pusher::new(dir.path(), &args));
    let partials = std::fs::read_dir(cache.join("tmp")).map_or(0, |d| d.count());
    (run, took, partials)
}

#[test]
fn pull_refuses_a_manifest_declaring_a_2_pow_63_minus_1_byte_layer_before_writing() {
    let (run, took, partials) = pull_declaring(i64::MAX as u64);
    assert_eq!(run.code, Some(6), "{run:?}");
    assert!(run.stderr.contains("9223372036854775807 bytes"), "{run:?}");
    assert!(took < BOUND, "took {took:?}");
    assert_eq!(partials, 0);
}

#[test]
fn pull_refuses_an_image_larger_than_the_free_space_before_writing() {
    let declared = docker_image_pusher::cache::space::MAX_BLOB_BYTES;
    let free = docker_image_pusher::cache::space::free_bytes(Path::new(env!("CARGO_MANIFEST_DIR")));
    if free.is_none_or(|free| free >= declared) {
        eprintln!("skipped: this file system has more than 1 TiB free");
        return;
    }
    let (run, took, partials) = pull_declaring(declared);
    assert_eq!(run.code, Some(INPUT), "{run:?}");
    assert!(run.stderr.contains("free"), "{run:?}");
    assert!(took < BOUND, "took {took:?}");
    assert_eq!(partials, 0);
}
