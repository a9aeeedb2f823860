//! The local image cache: an OCI image layout that skopeo, crane and oras can read.
//!
//! ```text
//! CACHE_DIR/
//!   oci-layout            {"imageLayoutVersion": "1.0.0"}
//!   index.json            one entry per cached image, named by the
//!                         org.opencontainers.image.ref.name annotation (full reference)
//!   blobs/sha256/<hex>    manifests, configs, layers; each stored once, always complete
//!                         and verified (it got there by a rename after hashing)
//!   lock                  shared by commands that add or read images, exclusive for
//!                         `clean`, so blobs are never collected under a running pull
//!   index.json.lock       serializes read-modify-write of index.json
//!   tmp/                  files being written: `<hex>.partial` (resumable downloads and
//!                         copies, locked by their writer) and `*.tmp` (atomic writes)
//!   docker-image-pusher-cache   the marker: this tool made the directory (see `trust`)
//! ```
//!
//! Other state (upload sessions of resumable pushes, compressed variants) lives in its own
//! subdirectories beside these. The cache code leaves every name it does not own alone;
//! deletion (`clean`, `verify --remove-damaged`) runs only in a directory the tool made and
//! never follows a symlink (`trust`).

pub(crate) mod clean;
pub(crate) mod files;
pub(crate) mod index;
pub(crate) mod lookup;
pub(crate) mod partial;
pub(crate) mod reach;
pub mod space;
pub(crate) mod state;
pub(crate) mod trust;
pub(crate) mod variants;

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io_error};
use crate::image::digest::Digest;
use crate::image::layout::BlobStore;
use crate::image::{Blob, BlobSource};
use files::{Lock, LockMode};
pub use index::{CacheIndex, Entry};
use partial::{Begun, PartialBlob};

pub const DEFAULT_DIR: &str = ".cache";
pub const ENV_DIR: &str = "DOCKER_PUSHER_CACHE_DIR";

const OCI_LAYOUT: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}\n";
const INDEX: &str = "index.json";
const LOCK: &str = "lock";
const INDEX_LOCK: &str = "index.json.lock";
const TEMP: &str = "tmp";
/// Index entries are a few hundred bytes: this is room for tens of thousands of images.
/// A bigger `index.json` (from a USB stick, say) is refused rather than read whole.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;

pub struct Cache {
    root: PathBuf,
}

/// A file in `blobs/sha256/` as found on disk.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub path: PathBuf,
    /// `None` when the entry is not one the tool makes: its name is not a digest, or it
    /// is a directory (something else put it there).
    pub digest: Option<Digest>,
    pub size: u64,
}

impl Cache {
    /// The cache at `root`. Nothing is read or created until a command needs it.
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    pub fn temp_dir(&self) -> PathBuf {
        self.root.join(TEMP)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join(INDEX)
    }

    /// Whether there is a cache here at all (read-only commands do not create one).
    pub fn exists(&self) -> bool {
        self.index_path().is_file()
    }

    /// Creates the layout's skeleton where missing. Safe to run concurrently: every file
    /// is created atomically and never overwritten.
    pub fn create(&self) -> Result<()> {
        trust::writable_dirs(&self.root)?;
        let blobs = self.root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| {
            io_error("create the cache directory", &blobs, e)
                .hint("choose a writable place with --cache-dir or DOCKER_PUSHER_CACHE_DIR")
        })?;
        fs::create_dir_all(self.temp_dir()).map_err(|e| io_error("create", &self.temp_dir(), e))?;
        for (name, content) in [
            (OCI_LAYOUT, OCI_LAYOUT_CONTENT.to_vec()),
            (INDEX, CacheIndex::default().to_bytes()),
        ] {
            let path = self.root.join(name);
            if !path.exists() {
                let _index_lock = self.lock_index()?;
                if !path.exists() {
                    files::write_atomic(&self.temp_dir(), &path, &content)?;
                }
            }
        }
        // The marker says "the tool made this": not written into a directory that also
        // holds other programs' files (`./.cache` in a home directory), so that deletion
        // there is refused later.
        if !trust::has_marker(&self.root)
            && trust::first_foreign(&self.root).is_ok_and(|f| f.is_none())
        {
            files::write_atomic(
                &self.temp_dir(),
                &self.root.join(trust::MARKER),
                trust::MARKER_CONTENT,
            )?;
        }
        Ok(())
    }

    /// Prepares the cache for adding images: creates it where missing and takes the shared
    /// lock, re-creating the skeleton under the lock in case a `clean` of everything ran
    /// just before. Hold the returned lock until the index is updated.
    pub fn open_for_adding(&self, waiting: &dyn Fn()) -> Result<Lock> {
        fs::create_dir_all(&self.root).map_err(|e| {
            io_error("create the cache directory", &self.root, e)
                .hint("choose a writable place with --cache-dir or DOCKER_PUSHER_CACHE_DIR")
        })?;
        let lock = self.lock(LockMode::Shared, waiting)?;
        self.create()?;
        Ok(lock)
    }

    /// Takes the cache lock: shared to add or read images, exclusive to remove them.
    /// `waiting` is told when another process holds it (say so to the user).
    pub fn lock(&self, mode: LockMode, waiting: &dyn Fn()) -> Result<Lock> {
        if !self.root.is_dir() {
            return Ok(Lock::unlocked());
        }
        Lock::acquire(&self.root.join(LOCK), mode, waiting)
    }

    fn lock_index(&self) -> Result<Lock> {
        Lock::acquire(&self.root.join(INDEX_LOCK), LockMode::Exclusive, &|| {})
    }

    /// The index as it is now; an absent cache is an empty one.
    pub fn read_index(&self) -> Result<CacheIndex> {
        let path = self.index_path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CacheIndex::default()),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_INDEX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error("read", &path, e))?;
        if bytes.len() as u64 > MAX_INDEX_BYTES {
            return Err(Error::input(format!(
                "the cache's index.json is larger than {} MiB, more than any cache this tool writes",
                MAX_INDEX_BYTES >> 20
            ))
            .hint("the cache is damaged or not a docker-image-pusher cache; move it away and pull or extract the images again"));
        }
        CacheIndex::parse(&bytes)
    }

    /// Changes the index under its lock: read, change, write atomically. Two processes
    /// adding images at once both end up in the index.
    pub fn update_index<T>(&self, change: impl FnOnce(&mut CacheIndex) -> T) -> Result<T> {
        let _index_lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let result = change(&mut index);
        files::write_atomic(&self.temp_dir(), &self.index_path(), &index.to_bytes())?;
        Ok(result)
    }

    /// Whether the cache holds `blob` (a stored blob is always complete and verified).
    pub fn has_blob(&self, blob: &Blob) -> bool {
        self.blob_size(&blob.digest) == Some(blob.size)
    }

    /// What the cache holds for `blob`: nothing, a copy of the right size (and, with
    /// `rehash`, the right content), or a damaged copy to replace.
    pub fn cached_copy(&self, blob: &Blob, rehash: bool) -> CachedCopy {
        match self.blob_size(&blob.digest) {
            None => CachedCopy::Absent,
            Some(size) if size != blob.size => {
                CachedCopy::Damaged(format!("it has {size} bytes, expected {}", blob.size))
            }
            Some(_) if !rehash => CachedCopy::Intact,
            Some(_) => match hash_file(&self.blob_path(&blob.digest)) {
                Ok(actual) if actual == blob.digest => CachedCopy::Intact,
                Ok(actual) => CachedCopy::Damaged(format!("its content hashes to {actual}")),
                Err(e) => CachedCopy::Damaged(format!("cannot read it: {e}")),
            },
        }
    }

    /// Starts writing `blob` over a damaged copy: the copy stays readable until the good
    /// one replaces it by a rename.
    pub fn begin_replacing_blob(&self, blob: &Blob, waiting: &dyn Fn()) -> Result<Begun> {
        PartialBlob::begin(&self.temp_dir(), blob, &|| false, waiting)
    }

    /// Stores a small blob (a manifest) unless it is already there.
    pub fn write_small_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let path = self.blob_path(&digest);
        if fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(digest);
        }
        files::write_atomic(&self.temp_dir(), &path, bytes)?;
        Ok(digest)
    }

    /// Starts writing `blob`: its partial file, locked, or `Present` when the cache has it.
    pub fn begin_blob(&self, blob: &Blob, waiting: &dyn Fn()) -> Result<Begun> {
        PartialBlob::begin(&self.temp_dir(), blob, &|| self.has_blob(blob), waiting)
    }

    /// Moves a finished partial blob into place (see [`PartialBlob::commit`]).
    pub fn commit_blob(&self, partial: &mut PartialBlob, digest: &Digest) -> Result<()> {
        partial.commit(&self.blob_path(digest))
    }

    /// The artifact of a cached image, for pushing it (`push --source NAME`).
    pub fn artifact(&self, entry: &Entry) -> Result<crate::image::Artifact> {
        if self.blob_size(&entry.digest).is_none() {
            return Err(Error::input(format!(
                "the cache names {} but lacks its manifest {}",
                entry.label(),
                entry.digest
            ))
            .hint("pull or extract the image again"));
        }
        crate::image::layout::resolve(self, &entry.descriptor())
    }

    /// Every file in `blobs/sha256/`.
    pub fn stored_blobs(&self) -> Result<Vec<StoredBlob>> {
        let dir = self.root.join("blobs").join("sha256");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("read", &dir, e)),
        };
        let mut blobs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Not followed: a symlink reports its own size and is never taken for a directory.
            let meta = entry.metadata().ok();
            let is_blob = meta.as_ref().is_some_and(|m| !m.is_dir())
                && trust::owned(&["blobs", "sha256"], &name, trust::Kind::File);
            blobs.push(StoredBlob {
                path: entry.path(),
                digest: is_blob
                    .then(|| Digest::parse(&format!("sha256:{name}")).ok())
                    .flatten(),
                size: meta.map_or(0, |m| m.len()),
            });
        }
        blobs.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(blobs)
    }

    /// Files in the temporary area that no running process is writing: partial downloads
    /// and temporary files left by interrupted or killed runs.
    pub fn leftovers(&self) -> Vec<(PathBuf, u64)> {
        let Ok(entries) = fs::read_dir(self.temp_dir()) else {
            return Vec::new();
        };
        let mut found: Vec<(PathBuf, u64)> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                trust::owned(&[TEMP], &name, trust::Kind::File)
            })
            .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
            .filter(|(path, _)| !files::in_use(path))
            .collect();
        found.sort();
        found
    }
}

/// See [`Cache::cached_copy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedCopy {
    Absent,
    Intact,
    /// What is wrong with it.
    Damaged(String),
}

fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut file = File::open(path)?;
    let mut hasher = crate::image::digest::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(hasher.digest()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl BlobStore for Cache {
    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    fn read_small_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| io_error("read", &path, e))?;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error("read", &path, e))?;
        if bytes.len() as u64 > limit {
            return Err(Error::input(format!(
                "blob {digest} in the cache is larger than the {limit} bytes image metadata may have"
            )));
        }
        Ok(bytes)
    }
}

impl BlobSource for Cache {
    fn open_blob(&self, blob: &Blob, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let mut file = File::open(self.blob_path(&blob.digest)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("blob {} is not in the cache: {e}", blob.digest),
            )
        })?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(
            io::BufReader::with_capacity(1 << 16, file).take(blob.size - offset.min(blob.size)),
        ))
    }
}
