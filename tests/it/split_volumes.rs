//! `save --split`: an archive cut into parts that join to the unsplit archive byte for byte,
//! read in place by push and extract, and checked against `FILE.parts` before anything is
//! written: a missing, short, reordered or damaged part is named and nothing reaches the
//! registry or the cache.

use std::path::{Path, PathBuf};

use crate::fixtures::*;
use crate::support::cache::*;
use crate::support::verify::ACCEPT_ALL;
use crate::support::{RegistryClient, RegistryOptions, Run, TestRegistry, workspace_tmp};

/// Two images of about 3.6 MB together, with layers larger than the 1 MiB minimum part.
fn cache_with_two_images(dir: &Path) -> (PathBuf, TestImage, TestImage) {
    let cache = dir.join("cache");
    let (a, b) = extract_two_images(dir, &cache, 200, [1_500_000, 1_200_000, 900_000]);
    (cache, a, b)
}

fn save(cache: &Path, output: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "save",
        "example.com/team/a:1",
        "example.com/team/b:1",
        "-o",
        output.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend(extra);
    run(&args)
}

/// Where each entry's header starts and where its data ends, in a plain tar.
fn entry_spans(tar_bytes: &[u8]) -> Vec<(u64, u64, u64)> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut spans = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let data = entry.raw_file_position();
        spans.push((data - 512, data, data + entry.size()));
    }
    spans
}

/// A part size of at least 1 MiB whose first cut falls inside a tar header and whose
/// second falls inside an entry's data (a layer).
fn awkward_part_size(whole: &[u8]) -> u64 {
    let spans = entry_spans(whole);
    let (header, _, _) = *spans
        .iter()
        .find(|(header, _, _)| *header >= 1 << 20)
        .expect("an entry past the first MiB");
    let size = header + 100;
    let second = 2 * size;
    assert!(
        spans
            .iter()
            .any(|(_, start, end)| *start < second && second < *end && end - start > 100_000),
        "the second cut at {second} should fall inside a layer: {spans:?}"
    );
    assert!((whole.len() as u64) > 2 * size);
    size
}

fn part(base: &Path, n: usize) -> PathBuf {
    PathBuf::from(format!("{}.{n:03}", base.display()))
}

fn parts_of(base: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|n| part(base, n))
        .take_while(|p| p.exists())
        .collect()
}

#[test]
fn split_parts_join_to_the_unsplit_archive_and_push_the_same_digests() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let dir = workspace_tmp();
    let (cache, a, _) = cache_with_two_images(dir.path());
    let whole_path = dir.path().join("whole.tar");
    assert_eq!(save(&cache, &whole_path, &[]).code, Some(0));
    let whole = std::fs::read(&whole_path).unwrap();
    let size = awkward_part_size(&whole);

    let stick = dir.path().join("stick");
    std::fs::create_dir_all(&stick).unwrap();
    let base = stick.join("images.tar");
    let saved = save(&cache, &base, &["--split", &size.to_string()]);
    assert_eq!(saved.code, Some(0), "{saved}");
    assert!(!base.exists(), "only parts are written");
    let parts = parts_of(&base);
    assert!(parts.len() >= 3, "{parts:?}");
    let said = format!("{} parts", parts.len());
    assert!(saved.stdout.contains(&said), "{saved}");
    let mut joined = Vec::new();
    for path in &parts {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.len() as u64 <= size,
            "{} is larger than a part",
            path.display()
        );
        joined.extend(bytes);
    }
    assert!(
        joined == whole,
        "the parts do not join to the unsplit archive"
    );
    let listed = json(&std::fs::read_to_string(stick.join("images.tar.parts")).unwrap());
    assert_eq!(listed["parts"].as_array().unwrap().len(), parts.len());
    assert_eq!(listed["total"].as_u64(), Some(whole.len() as u64));
    let leftovers: Vec<_> = std::fs::read_dir(&stick)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The first part or the archive's own name both read the parts in place.
    let expected = digest(&oci_manifest(&a));
    for (source, repo) in [
        (whole_path.clone(), "from/whole"),
        (part(&base, 1), "from/first-part"),
        (base.clone(), "from/base-name"),
    ] {
        let target = format!("{}/{repo}:1", registry.host());
        let pushed = run(&[
            "push",
            "--source",
            source.to_str().unwrap(),
            "--source-tag",
            "example.com/team/a:1",
            "--target",
            &target,
            "--insecure",
            "--cache-dir",
            dir.path().join("push-state").to_str().unwrap(),
        ]);
        assert_eq!(pushed.code, Some(0), "{pushed}");
        let (_, _, served) = client.get_manifest(repo, "1", &ACCEPT_ALL);
        assert_eq!(served, expected, "{repo}");
    }

    let restored = dir.path().join("restored");
    run_ok(&[
        "extract",
        "-f",
        part(&base, 1).to_str().unwrap(),
        "--cache-dir",
        restored.to_str().unwrap(),
    ]);
    run_ok(&["verify", "--cache-dir", restored.to_str().unwrap()]);
    assert_eq!(cached_names(&restored).len(), 2);
}

#[test]
fn a_missing_short_reordered_or_damaged_part_is_named_and_nothing_is_written() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let dir = workspace_tmp();
    let (cache, a, _) = cache_with_two_images(dir.path());
    let good = dir.path().join("good");
    std::fs::create_dir_all(&good).unwrap();
    assert_eq!(
        save(&cache, &good.join("images.tar"), &["--split", "1M"]).code,
        Some(0)
    );
    assert!(parts_of(&good.join("images.tar")).len() >= 3);

    type Damage = fn(&Path);
    let damages: [(&str, Damage, usize); 4] = [
        (
            "missing",
            |base| std::fs::remove_file(part(base, 2)).unwrap(),
            2,
        ),
        (
            "short",
            |base| {
                let bytes = std::fs::read(part(base, 3)).unwrap();
                std::fs::write(part(base, 3), &bytes[..bytes.len() - 1]).unwrap();
            },
            3,
        ),
        (
            "holds part 3",
            |base| {
                std::fs::rename(part(base, 2), base.with_extension("x")).unwrap();
                std::fs::rename(part(base, 3), part(base, 2)).unwrap();
                std::fs::rename(base.with_extension("x"), part(base, 3)).unwrap();
            },
            2,
        ),
        (
            "damaged",
            |base| {
                let mut bytes = std::fs::read(part(base, 2)).unwrap();
                bytes[1000] ^= 0x40;
                std::fs::write(part(base, 2), bytes).unwrap();
            },
            2,
        ),
    ];
    for (problem, damage, named) in damages {
        let copy = dir.path().join(problem.replace(' ', "-"));
        std::fs::create_dir_all(&copy).unwrap();
        for entry in std::fs::read_dir(&good).unwrap().flatten() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        let base = copy.join("images.tar");
        damage(&base);
        let cache_dir = copy.join("cache");
        let repo = format!("damaged/{}", problem.replace(' ', "-"));
        let target = format!("{}/{repo}:1", registry.host());
        let first = part(&base, 1);
        let pushed = run(&[
            "push",
            "--source",
            first.to_str().unwrap(),
            "--source-tag",
            "example.com/team/a:1",
            "--target",
            &target,
            "--insecure",
            "--cache-dir",
            cache_dir.to_str().unwrap(),
        ]);
        let extracted = run(&[
            "extract",
            "-f",
            first.to_str().unwrap(),
            "--cache-dir",
            cache_dir.to_str().unwrap(),
        ]);
        for run in [&pushed, &extracted] {
            assert_eq!(run.code, Some(3), "{problem}: {run}");
            assert!(run.stderr.contains(problem), "{problem}: {run}");
            let named = part(&base, named).display().to_string();
            assert!(run.stderr.contains(&named), "{problem}: {run}");
        }
        assert!(!cache_dir.exists(), "{problem}: the cache was written");
        for digest in image_digests(&a).iter().skip(1) {
            assert!(
                !client.blob_exists(&repo, digest),
                "{problem}: {digest} was uploaded"
            );
        }
    }
}

#[test]
fn a_part_size_below_one_mebibyte_is_a_usage_error() {
    let dir = workspace_tmp();
    let (cache, _, _) = cache_with_two_images(dir.path());
    let out = dir.path().join("small.tar");
    let run = save(&cache, &out, &["--split", "1000K"]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("at least 1M"), "{run}");
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("small.tar"))
    );
}

#[test]
fn a_compressed_save_splits_into_parts_that_join_to_the_compressed_archive() {
    // Uncompressed layers: each is compressed into the archive, its tar header written
    // as a placeholder and filled in afterwards, possibly in an earlier part.
    let dir = workspace_tmp();
    let image = TestImage::new(
        230,
        &[1_300_000, 900_000, 700_000],
        false,
        ("linux", "amd64"),
    );
    let source = dir.path().join("plain-layers.tar");
    write_oci_archive(&source, &[(OciEntry::Image(image), "example.com/team/c:1")]).unwrap();
    let cache = dir.path().join("cache");
    run_ok(&[
        "extract",
        "-f",
        source.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    let save = |output: &Path, extra: &[&str]| {
        let mut args = vec![
            "save",
            "example.com/team/c:1",
            "--compress",
            "gzip",
            "-o",
            output.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ];
        args.extend(extra);
        run_ok(&args);
    };
    let whole = dir.path().join("whole.tar");
    save(&whole, &[]);
    let base = dir.path().join("split.tar");
    save(&base, &["--split", "1M"]);
    let parts = parts_of(&base);
    assert!(parts.len() >= 2, "{parts:?}");
    let joined: Vec<u8> = parts
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(
        joined == std::fs::read(&whole).unwrap(),
        "the parts differ from the archive"
    );
    let restored = dir.path().join("restored");
    run_ok(&[
        "extract",
        "-f",
        base.to_str().unwrap(),
        "--cache-dir",
        restored.to_str().unwrap(),
    ]);
}
