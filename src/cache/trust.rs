//! Which files deletion may touch. `clean` and `verify --remove-damaged` run on whatever
//! directory the cache setting names (by default `./.cache`, which in a home directory is
//! the XDG cache of every other program), and caches arrive on USB sticks, so deletion
//! trusts nothing it did not make:
//!
//! - The directory must be a cache this tool made: its `oci-layout` and its marker file
//!   [`MARKER`] (written by `Cache::create`). A directory without the marker is adopted
//!   (the marker is written) only when everything in it is a name the tool makes, in the
//!   shape it makes it: a cache made by a version before the marker existed. Anything
//!   else is refused, untouched.
//! - Inside, only the tool's own names are removed ([`owned`]); anything else stays.
//! - Nothing is followed: walks use the entry's own type (`symlink_metadata`), a symlink
//!   is removed as a link, and a file is deleted only when every directory above it, up to
//!   the cache root, is a real directory.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io_error};

/// The marker file: says "docker-image-pusher made this directory" to the tool and to a
/// person listing it.
pub const MARKER: &str = "docker-image-pusher-cache";
const MARKER_FIRST_LINE: &str = "docker-image-pusher cache";
pub const MARKER_CONTENT: &[u8] = b"docker-image-pusher cache\n\
This directory is an OCI image layout made by docker-image-pusher. Its `clean` removes\n\
only the files the tool creates here (blobs/, tmp/, uploads/, compressed/, index.json).\n";
/// The marker is a few lines; a large file of that name was not written by us.
const MAX_MARKER: u64 = 4096;

/// Entries that must survive `clean` of everything: other processes may be waiting on
/// the locks, and the layout file and marker keep the emptied directory a trusted cache.
pub const KEPT_BY_CLEAN: [&str; 4] = [super::LOCK, super::INDEX_LOCK, super::OCI_LAYOUT, MARKER];

/// What a directory entry is, read without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Link,
    Other,
}

impl Kind {
    fn of(file_type: fs::FileType) -> Kind {
        if file_type.is_symlink() {
            Kind::Link
        } else if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }
}

/// Whether the tool makes an entry called `name` of this kind in the directory `parent`
/// (components below the cache root). What a file holds does not matter, its name does.
pub fn owned(parent: &[&str], name: &str, kind: Kind) -> bool {
    match (parent, kind) {
        ([], Kind::File) => [
            super::OCI_LAYOUT,
            super::INDEX,
            super::LOCK,
            super::INDEX_LOCK,
            MARKER,
        ]
        .contains(&name),
        ([], Kind::Dir) => ["blobs", super::TEMP, "uploads", "compressed"].contains(&name),
        (["blobs"], Kind::Dir) => name == "sha256",
        (["blobs", "sha256"], Kind::File) => is_hex(name, 64),
        // `<hex>.partial` downloads, `*.tmp` atomic writes.
        ([super::TEMP], Kind::File) => {
            name.strip_suffix(super::partial::PARTIAL_SUFFIX)
                .is_some_and(|hex| is_hex(hex, 64))
                || name.ends_with(super::files::TEMP_SUFFIX)
        }
        // `uploads/<kind>/<key>.json` (sessions, locations, links, choices, ...); state
        // files directly in `uploads/` are the tool's too.
        (["uploads"], Kind::Dir) => {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase())
        }
        (["uploads"] | ["uploads", _] | ["compressed"], Kind::File) => {
            name.ends_with(".json") || name.ends_with(super::files::TEMP_SUFFIX)
        }
        _ => false,
    }
}

fn is_hex(text: &str, length: usize) -> bool {
    text.len() == length && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `root` carries the tool's marker (a regular file, with the tool's first line).
pub fn has_marker(root: &Path) -> bool {
    let path = root.join(MARKER);
    if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() <= MAX_MARKER) {
        return false;
    }
    let mut text = String::new();
    fs::File::open(&path)
        .and_then(|f| f.take(MAX_MARKER).read_to_string(&mut text))
        .is_ok_and(|_| text.lines().next() == Some(MARKER_FIRST_LINE))
}

/// The first entry under `root` the tool would not have made, if any (walked without
/// following anything; a symlink is never something the tool made).
pub fn first_foreign(root: &Path) -> io::Result<Option<PathBuf>> {
    fn walk(dir: &Path, parent: &mut Vec<String>) -> io::Result<Option<PathBuf>> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let path = entry.path();
            let Some(name) = name.to_str() else {
                return Ok(Some(path));
            };
            let kind = Kind::of(entry.file_type()?);
            let components: Vec<&str> = parent.iter().map(String::as_str).collect();
            if !owned(&components, name, kind) {
                return Ok(Some(path));
            }
            if kind == Kind::Dir {
                parent.push(name.to_string());
                let found = walk(&path, parent)?;
                parent.pop();
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        Ok(None)
    }
    walk(root, &mut Vec::new())
}

/// Makes sure deletion may run in `root`: it is a cache the tool made, or one it adopts
/// (see the module comment). A directory that does not exist passes (nothing to delete).
/// Never changes anything but, on adoption, the marker.
pub fn check_deletable(root: &Path, temp_dir: &Path) -> Result<()> {
    let meta = match fs::metadata(root) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("read", root, e)),
    };
    if !meta.is_dir() {
        return Err(not_a_cache(root, "it is not a directory"));
    }
    let layout = fs::symlink_metadata(root.join(super::OCI_LAYOUT)).is_ok_and(|m| m.is_file());
    if layout && has_marker(root) {
        return Ok(());
    }
    match first_foreign(root).map_err(|e| io_error("read", root, e))? {
        Some(foreign) => Err(not_a_cache(
            root,
            &format!(
                "{} holds {}, which docker-image-pusher did not create",
                if layout {
                    "it"
                } else {
                    "it has no oci-layout and"
                },
                foreign.display()
            ),
        )),
        None => {
            // A cache from before the marker existed: everything in it is ours.
            if layout {
                super::files::write_atomic(temp_dir, &root.join(MARKER), MARKER_CONTENT)?;
            }
            Ok(())
        }
    }
}

fn not_a_cache(root: &Path, why: &str) -> Error {
    Error::input(format!(
        "{} is not a docker-image-pusher cache ({why}); nothing was removed",
        root.display()
    ))
    .hint("clean and verify --remove-damaged touch only caches this tool made; check --cache-dir and DOCKER_PUSHER_CACHE_DIR; the default is ./.cache in the current directory")
}

/// Refuses when a directory the tool would delete in (`components` below `root`) is a
/// symlink or not a directory: deleting there would reach outside the cache.
pub fn real_dir(root: &Path, components: &[&str]) -> Result<Option<PathBuf>> {
    own_dir(root, components, "nothing was removed")
}

/// Refuses when a directory the tool writes into is a symlink: a cache from a USB stick
/// whose `tmp` or `blobs/sha256` points elsewhere would have downloads written (and
/// unfinished ones removed) outside the cache.
pub fn writable_dirs(root: &Path) -> Result<()> {
    for components in [
        &["blobs"][..],
        &["blobs", "sha256"],
        &["tmp"],
        &["uploads"],
        &["compressed"],
    ] {
        own_dir(root, components, "nothing was written")?;
    }
    Ok(())
}

fn own_dir(root: &Path, components: &[&str], consequence: &str) -> Result<Option<PathBuf>> {
    let mut path = root.to_path_buf();
    for component in components {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::input(format!(
                    "{} is a symbolic link or a file, not the cache's own directory; {consequence}",
                    path.display()
                ))
                .hint("the tool never deletes or writes through links: replace the link with a real directory, or move the cache away"));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, e)),
        }
    }
    Ok(Some(path))
}

/// Removes one entry the tool made, without following it: a symlink goes as a link.
/// Returns the bytes freed (0 for a link, or when it was already gone).
pub fn remove_entry(path: &Path) -> Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error("read", path, e)),
    };
    if meta.is_dir() {
        return Ok(0);
    }
    fs::remove_file(path).map_err(|e| io_error("remove", path, e))?;
    Ok(if meta.is_file() { meta.len() } else { 0 })
}

/// What removing the tool's files from a tree did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub bytes: u64,
    /// Files removed from `blobs/sha256/` and from `tmp/`.
    pub blobs: usize,
    pub leftovers: usize,
    /// Entries left because the tool did not make them.
    pub kept: Vec<PathBuf>,
}

/// Removes every entry the tool makes under `root` except [`KEPT_BY_CLEAN`], each without
/// following it; directories it owns go once they are empty. Foreign entries stay and are
/// listed. With `dry_run`, only counts.
pub fn sweep(root: &Path, dry_run: bool) -> Result<Sweep> {
    let mut sweep = Sweep::default();
    sweep_dir(root, &mut Vec::new(), dry_run, &mut sweep)?;
    Ok(sweep)
}

fn sweep_dir(dir: &Path, parent: &mut Vec<String>, dry_run: bool, sweep: &mut Sweep) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("read", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", dir, e))?;
        let path = entry.path();
        let kind = Kind::of(entry.file_type().map_err(|e| io_error("read", &path, e))?);
        let name = entry.file_name().to_string_lossy().into_owned();
        if parent.is_empty() && KEPT_BY_CLEAN.contains(&name.as_str()) {
            continue;
        }
        let components: Vec<&str> = parent.iter().map(String::as_str).collect();
        // A link where the tool keeps a file or directory of its own goes as a link.
        let as_target = if kind == Kind::Link {
            [Kind::File, Kind::Dir]
                .into_iter()
                .any(|k| owned(&components, &name, k))
        } else {
            owned(&components, &name, kind)
        };
        if !as_target {
            sweep.kept.push(path);
            continue;
        }
        if kind == Kind::Dir {
            parent.push(name);
            sweep_dir(&path, parent, dry_run, sweep)?;
            parent.pop();
            if !dry_run {
                match fs::remove_dir(&path) {
                    Ok(()) => {}
                    // Foreign entries inside keep it.
                    Err(_) if fs::read_dir(&path).is_ok_and(|mut e| e.next().is_some()) => {}
                    Err(e) => return Err(io_error("remove", &path, e)),
                }
            }
        } else {
            sweep.bytes += if dry_run {
                entry
                    .metadata()
                    .map_or(0, |m| if kind == Kind::File { m.len() } else { 0 })
            } else {
                remove_entry(&path)?
            };
            match components.as_slice() {
                ["blobs", "sha256"] => sweep.blobs += 1,
                [super::TEMP] => sweep.leftovers += 1,
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tools_own_names_and_shapes_are_owned() {
        let hex = "ab".repeat(32);
        assert!(owned(&[], "index.json", Kind::File));
        assert!(!owned(&[], "index.json", Kind::Dir));
        assert!(!owned(&[], "pip", Kind::Dir));
        assert!(owned(&["blobs", "sha256"], &hex, Kind::File));
        assert!(!owned(&["blobs", "sha256"], "notes.txt", Kind::File));
        assert!(!owned(&["blobs", "sha256"], &hex, Kind::Dir));
        assert!(owned(&["tmp"], &format!("{hex}.partial"), Kind::File));
        assert!(owned(&["tmp"], "write-1-2-3.tmp", Kind::File));
        assert!(!owned(&["tmp"], "x.partial", Kind::File));
        assert!(owned(&["uploads", "sessions"], "k.json", Kind::File));
        assert!(!owned(
            &["uploads", "sessions", "deeper"],
            "k.json",
            Kind::File
        ));
        assert!(!owned(&["blobs"], "sha512", Kind::Dir));
        for kind in [Kind::Link, Kind::Other] {
            assert!(!owned(&[], "index.json", kind));
        }
    }

    #[test]
    fn a_marker_of_another_shape_or_content_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_marker(dir.path()));
        fs::write(dir.path().join(MARKER), b"something else\n").unwrap();
        assert!(!has_marker(dir.path()));
        fs::write(dir.path().join(MARKER), MARKER_CONTENT).unwrap();
        assert!(has_marker(dir.path()));
    }
}
