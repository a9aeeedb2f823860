//! The cache as hostile input and deletion as a danger: `clean` and `verify
//! --remove-damaged` delete only what the tool made, in a directory it made, never through
//! a symlink; a home directory's `.cache` of other programs is refused untouched; a cache
//! from before the marker is adopted only when everything in it is the tool's; an oversized
//! `index.json` is refused; `pull` replaces a cached blob damaged in place.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::fixtures::*;
use crate::support::cache::*;
use crate::support::{Pusher, RegistryClient, RegistryOptions, TestRegistry, workspace_tmp};

const MARKER: &str = "docker-image-pusher-cache";

/// Two images sharing a base layer, extracted into `cache`.
fn two_images(dir: &Path, cache: &Path) -> (TestImage, TestImage) {
    extract_two_images(dir, cache, 60, [30_000, 20_000, 10_000])
}

/// Every entry under `root` (not followed): relative path -> content, link target or "dir".
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(relative, format!("-> {}", target.display()).into_bytes());
            } else if kind.is_dir() {
                out.insert(relative, b"dir".to_vec());
                walk(root, &path, out);
            } else {
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A home directory whose `.cache` belongs to other programs.
fn foreign_home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    let cache = home.join(".cache");
    std::fs::create_dir_all(cache.join("pip/http/1/2")).unwrap();
    std::fs::write(cache.join("pip/http/1/2/wheel"), b"a wheel").unwrap();
    std::fs::create_dir_all(cache.join("mozilla/firefox")).unwrap();
    std::fs::write(cache.join("mozilla/firefox/cookies"), b"session").unwrap();
    std::fs::write(cache.join("fontconfig-cache"), b"fonts").unwrap();
    // Even names the tool uses do not make it a cache of the tool's.
    std::fs::create_dir_all(cache.join("tmp")).unwrap();
    std::fs::write(cache.join("tmp/build.tmp"), b"someone's build").unwrap();
    std::fs::write(
        cache.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    home
}

#[test]
fn clean_run_in_a_home_directory_refuses_its_foreign_cache_and_changes_nothing() {
    let dir = workspace_tmp();
    let home = foreign_home(dir.path());
    let before = snapshot(&home);

    for args in [
        &["clean"][..],
        &["clean", "--dry-run"],
        &["clean", "example.com/team/a:1"],
        &["verify", "--remove-damaged"],
    ] {
        // The default cache directory: `./.cache`, here the home directory's.
        let run = Pusher::without_credentials(args)
            .current_dir(&home)
            .env("HOME", &home)
            .run();
        assert_eq!(run.code, Some(3), "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("is not a docker-image-pusher cache")
                && run.stderr.contains("nothing was removed"),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
        assert_eq!(snapshot(&home), before, "{args:?} changed the directory");
    }
}

#[test]
fn a_cache_made_by_the_tool_carries_its_marker_and_clean_leaves_foreign_files() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    two_images(dir.path(), &cache);
    assert!(cache.join(MARKER).is_file());
    // Someone keeps notes in the cache directory; clean removes only the tool's files.
    std::fs::write(cache.join("NOTES.txt"), b"mine").unwrap();
    std::fs::write(cache.join("blobs/sha256/README"), b"mine too").unwrap();
    std::fs::create_dir_all(cache.join("uploads/sessions/keep")).unwrap();
    std::fs::write(cache.join("uploads/sessions/keep/x.json"), b"{}").unwrap();

    let report = json(&run_ok(&["clean", "--json", "--cache-dir", cache.to_str().unwrap()]).stdout);
    assert_eq!(report["images"].as_array().unwrap().len(), 2);
    assert_eq!(report["blobs_removed"], 7);
    assert_eq!(report["foreign_kept"], 3);
    assert_eq!(std::fs::read(cache.join("NOTES.txt")).unwrap(), b"mine");
    assert_eq!(
        std::fs::read(cache.join("blobs/sha256/README")).unwrap(),
        b"mine too"
    );
    assert!(cache.join("uploads/sessions/keep/x.json").exists());
    let left: Vec<String> = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["README"]);
    // The emptied directory is still the tool's: cleaning again is fine.
    assert!(cache.join(MARKER).is_file() && cache.join("oci-layout").is_file());
    run_ok(&["clean", "--cache-dir", cache.to_str().unwrap()]);
}

#[test]
fn a_cache_from_before_the_marker_is_adopted_only_when_everything_in_it_is_the_tools() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let (a, b) = two_images(dir.path(), &cache);
    let cache_arg = cache.to_str().unwrap();

    // As the previous version left it: no marker, only the tool's names.
    std::fs::remove_file(cache.join(MARKER)).unwrap();
    run_ok(&["clean", "--cache-dir", cache_arg, "example.com/team/a:1"]);
    assert!(
        cache.join(MARKER).is_file(),
        "adopted: the marker is written"
    );
    assert!(!blob_path(&cache, &a.layers[1].digest).exists());
    for digest in image_digests(&b) {
        assert_cached(&cache, &digest);
    }

    // Without the marker and with a file the tool never makes, it is not adopted.
    std::fs::remove_file(cache.join(MARKER)).unwrap();
    std::fs::write(cache.join("blobs/sha256/photo.jpg"), b"jpeg").unwrap();
    let before = snapshot(&cache);
    for args in [
        &["clean", "--cache-dir", cache_arg][..],
        &["verify", "--remove-damaged", "--cache-dir", cache_arg],
    ] {
        let refused = run(args);
        assert_eq!(refused.code, Some(3), "{}", refused.stderr);
        assert!(refused.stderr.contains("photo.jpg"), "{}", refused.stderr);
        assert_eq!(snapshot(&cache), before);
    }
    // A pull or extract into it does not mark it either.
    two_images(dir.path(), &cache);
    assert!(!cache.join(MARKER).exists());
}

/// Files outside the cache that symlinks inside it point to.
struct Outside {
    root: PathBuf,
}

impl Outside {
    fn new(dir: &Path, name: &str) -> Outside {
        let root = dir.join(name);
        std::fs::create_dir_all(&root).unwrap();
        Outside { root }
    }

    fn file(&self, relative: &str, content: &[u8]) -> PathBuf {
        let path = self.root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }
}

/// A way to plant a symlink in a fresh cache, pointing at files outside it shaped like
/// what the tool would delete there.
type Plant = fn(&Path, &Outside, &TestImage);

fn plants() -> Vec<(&'static str, Plant)> {
    vec![
        ("tmp", |cache, outside, _| {
            outside.file(&format!("tmp/{}.partial", "cd".repeat(32)), b"partial");
            outside.file("tmp/write-1-2-3.tmp", b"temp");
            std::fs::remove_dir_all(cache.join("tmp")).unwrap();
            symlink(outside.root.join("tmp"), cache.join("tmp")).unwrap();
        }),
        ("blobs", |cache, outside, _| {
            // The blobs themselves live outside, reached through the link.
            std::fs::rename(cache.join("blobs"), outside.root.join("blobs")).unwrap();
            symlink(outside.root.join("blobs"), cache.join("blobs")).unwrap();
        }),
        ("blobs/sha256", |cache, outside, _| {
            std::fs::rename(cache.join("blobs/sha256"), outside.root.join("sha256")).unwrap();
            symlink(outside.root.join("sha256"), cache.join("blobs/sha256")).unwrap();
        }),
        ("uploads", |cache, outside, _| {
            outside.file("uploads/sessions/k.json", b"{}");
            symlink(outside.root.join("uploads"), cache.join("uploads")).unwrap();
        }),
        ("uploads/sessions", |cache, outside, _| {
            outside.file("sessions/k.json", b"{}");
            std::fs::create_dir_all(cache.join("uploads")).unwrap();
            symlink(
                outside.root.join("sessions"),
                cache.join("uploads/sessions"),
            )
            .unwrap();
        }),
        ("compressed", |cache, outside, _| {
            outside.file("compressed/k.json", b"{}");
            symlink(outside.root.join("compressed"), cache.join("compressed")).unwrap();
        }),
        ("a blob file", |cache, outside, image| {
            // a's own layer is a link to a file outside: clean a removes the link only.
            let layer = blob_path(cache, &image.layers[1].digest);
            let target = outside.file("layer", &std::fs::read(&layer).unwrap());
            std::fs::remove_file(&layer).unwrap();
            symlink(target, &layer).unwrap();
        }),
        ("a damaged blob file", |cache, outside, image| {
            // verify --remove-damaged removes the link, not the damaged file it points to.
            let layer = blob_path(cache, &image.layers[1].digest);
            let mut bytes = std::fs::read(&layer).unwrap();
            bytes[10] ^= 0xff;
            let target = outside.file("damaged-layer", &bytes);
            std::fs::remove_file(&layer).unwrap();
            symlink(target, &layer).unwrap();
        }),
        ("index.json", |cache, outside, _| {
            let target = outside.file(
                "index.json",
                &std::fs::read(cache.join("index.json")).unwrap(),
            );
            std::fs::remove_file(cache.join("index.json")).unwrap();
            symlink(target, cache.join("index.json")).unwrap();
        }),
    ]
}

#[test]
fn no_deletion_follows_a_symlink_at_any_level_of_the_cache() {
    let dir = workspace_tmp();
    for (level, plant) in plants() {
        for args in [
            &["clean"][..],
            &["clean", "example.com/team/a:1"],
            &["verify", "--remove-damaged"],
        ] {
            let case = dir
                .path()
                .join(format!("case-{}", level.replace(['/', ' '], "-")));
            let _ = std::fs::remove_dir_all(&case);
            std::fs::create_dir_all(&case).unwrap();
            let cache = case.join("cache");
            let (a, _) = two_images(&case, &cache);
            let outside = Outside::new(&case, "outside");
            plant(&cache, &outside, &a);
            let before = snapshot(&outside.root);
            assert!(!before.is_empty());

            let mut full = args.to_vec();
            full.extend(["--cache-dir", cache.to_str().unwrap()]);
            let run = run(&full);
            assert_eq!(
                snapshot(&outside.root),
                before,
                "{args:?} with a symlinked {level} deleted outside the cache: {}",
                run.stderr
            );
            // Refused with a clear line, or done, or (verify) damage reported: never a crash.
            assert!(
                [Some(0), Some(3)].contains(&run.code),
                "{args:?} {level}: {}",
                run.stderr
            );
            if args == ["clean"] {
                assert_eq!(run.code, Some(0), "{level}: {}", run.stderr);
                // Links at the tool's names go as links.
                let link = cache.join(level);
                if !level.contains(' ') {
                    assert!(
                        std::fs::symlink_metadata(&link).is_err(),
                        "{level} link kept"
                    );
                }
            }
        }
    }
}

#[test]
fn clean_of_one_image_refuses_a_symlinked_blob_directory_before_changing_the_index() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    two_images(dir.path(), &cache);
    let outside = dir.path().join("elsewhere");
    std::fs::rename(cache.join("blobs/sha256"), &outside).unwrap();
    symlink(&outside, cache.join("blobs/sha256")).unwrap();
    let names = cached_names(&cache);
    let refused = run(&[
        "clean",
        "--cache-dir",
        cache.to_str().unwrap(),
        "example.com/team/a:1",
    ]);
    assert_eq!(refused.code, Some(3), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("symbolic link"),
        "{}",
        refused.stderr
    );
    assert_eq!(cached_names(&cache), names);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 7);
}

#[test]
fn an_oversized_cache_index_is_refused_without_reading_it_whole() {
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    two_images(dir.path(), &cache);
    // 17 MiB of whitespace before a valid index: over the 16 MiB cap.
    let mut bytes = vec![b' '; 17 << 20];
    bytes.extend_from_slice(br#"{"schemaVersion":2,"manifests":[]}"#);
    std::fs::write(cache.join("index.json"), &bytes).unwrap();
    for args in [
        &["list"][..],
        &["verify"],
        &["clean", "example.com/team/a:1"],
    ] {
        let mut full = args.to_vec();
        full.extend(["--cache-dir", cache.to_str().unwrap()]);
        let refused = run(&full);
        assert_eq!(refused.code, Some(3), "{args:?}: {}", refused.stderr);
        assert!(
            refused.stderr.contains("index.json is larger than 16 MiB"),
            "{args:?}: {}",
            refused.stderr
        );
    }
}

#[test]
fn pull_downloads_again_a_cached_blob_damaged_in_place() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let image = TestImage::new(65, &[20_000, 60_000], true, ("linux", "amd64"));
    upload_image(&client, "team/app", "1", &image);
    let dir = workspace_tmp();
    let cache = dir.path().join("cache");
    let reference = format!("{}/team/app:1", registry.host());
    pull_report(&reference, &cache, &[]);

    // Bit rot: same size, other content. Only hashing sees it.
    let layer = blob_path(&cache, &image.layers[1].digest);
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&layer, &bytes).unwrap();
    let trusting = pull_report(&reference, &cache, &[]);
    assert_eq!(trusting["blobs_repaired"], 0);
    assert_eq!(trusting["blobs_cached"], 3);
    let checked = run_ok(&pull_args(&reference, &cache, &["--verify", "--json"]));
    let checked_report = json(&checked.stdout);
    assert_eq!(checked_report["blobs_repaired"], 1);
    assert_eq!(checked_report["blobs_downloaded"], 1);
    assert!(
        checked.stderr.contains("the cached copy is damaged"),
        "{}",
        checked.stderr
    );
    for digest in image_digests(&image) {
        assert_cached(&cache, &digest);
    }

    // A truncated copy is caught by its size, without --verify.
    let config = blob_path(&cache, &image.config_blob(OCI_CONFIG).digest);
    let config_bytes = std::fs::read(&config).unwrap();
    std::fs::write(&config, &config_bytes[..config_bytes.len() / 2]).unwrap();
    let resized = pull_report(&reference, &cache, &[]);
    assert_eq!(resized["blobs_repaired"], 1);
    assert_eq!(resized["blobs_downloaded"], 1);
    for digest in image_digests(&image) {
        assert_cached(&cache, &digest);
    }
    assert!(temp_files(&cache).is_empty());
    run_ok(&["verify", "--cache-dir", cache.to_str().unwrap()]);
}

#[test]
fn clean_of_a_missing_cache_creates_nothing_and_still_names_unknown_images() {
    let dir = workspace_tmp();
    let cache = dir.path().join("absent");
    let cache_arg = cache.to_str().unwrap();
    run_ok(&["clean", "--cache-dir", cache_arg]);
    run_ok(&["verify", "--remove-damaged", "--cache-dir", cache_arg]);
    let unknown = run(&["clean", "--cache-dir", cache_arg, "example.com/team/a:1"]);
    assert_eq!(unknown.code, Some(3), "{}", unknown.stderr);
    assert!(unknown.stderr.contains("no image"), "{}", unknown.stderr);
    assert!(!cache.exists());
}

#[test]
fn nothing_is_written_through_a_symlinked_directory_of_the_cache() {
    let dir = workspace_tmp();
    let writable = ["tmp", "blobs", "blobs/sha256", "uploads", "compressed"];
    for (level, plant) in plants().into_iter().filter(|(l, _)| writable.contains(l)) {
        let case = dir
            .path()
            .join(format!("write-{}", level.replace('/', "-")));
        std::fs::create_dir_all(&case).unwrap();
        let cache = case.join("cache");
        let (a, _) = two_images(&case, &cache);
        let outside = Outside::new(&case, "outside");
        plant(&cache, &outside, &a);
        let before = snapshot(&outside.root);

        let archive = case.join("two.tar");
        let run = run(&[
            "extract",
            "-f",
            archive.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ]);
        assert_eq!(run.code, Some(3), "{level}: {}", run.stderr);
        assert!(
            run.stderr.contains("nothing was written"),
            "{level}: {}",
            run.stderr
        );
        assert_eq!(
            snapshot(&outside.root),
            before,
            "extract wrote through a symlinked {level}"
        );
    }
}
