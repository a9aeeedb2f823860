//! A blob on its way into the cache: `tmp/<hex>.partial`, named by its digest so that a
//! later run finds what an interrupted one had received, locked while written so that two
//! processes never write the same blob at once (the second waits, then finds the blob
//! there), hashed as it grows, and renamed into `blobs/sha256/` only once its content
//! hashes to its digest.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io_error};
use crate::image::Blob;
use crate::image::digest::{Digest, Hasher};

pub const PARTIAL_SUFFIX: &str = ".partial";

pub fn partial_path(temp_dir: &Path, digest: &Digest) -> PathBuf {
    temp_dir.join(format!("{}{PARTIAL_SUFFIX}", digest.hex()))
}

/// What starting to write a blob found.
pub enum Begun {
    /// The blob is already in the cache (perhaps another process just finished it).
    Present,
    Partial(Box<PartialBlob>),
}

pub struct PartialBlob {
    path: PathBuf,
    writer: BufWriter<File>,
    hasher: Hasher,
    blob: Blob,
}

impl PartialBlob {
    /// Opens (or creates) the partial file for `blob` and locks it, waiting while another
    /// process writes it. `present` says whether the blob has meanwhile entered the cache.
    pub fn begin(
        temp_dir: &Path,
        blob: &Blob,
        present: &dyn Fn() -> bool,
        waiting: &dyn Fn(),
    ) -> Result<Begun> {
        fs::create_dir_all(temp_dir).map_err(|e| io_error("create", temp_dir, e))?;
        let path = partial_path(temp_dir, &blob.digest);
        loop {
            if present() {
                return Ok(Begun::Present);
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_error("create", &path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    waiting();
                    file.lock().map_err(|e| io_error("lock", &path, e))?;
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_error("lock", &path, e)),
            }
            // The previous holder may have renamed the file into the cache or removed it;
            // then this lock is on a file nobody else will look at. Start over.
            if !same_file(&file, &path) {
                continue;
            }
            if present() {
                let _ = fs::remove_file(&path);
                return Ok(Begun::Present);
            }
            return Ok(Begun::Partial(Box::new(PartialBlob {
                path,
                // Small, so a killed process loses little of what it had received.
                writer: BufWriter::with_capacity(1 << 16, file),
                hasher: Hasher::new(),
                blob: blob.clone(),
            })));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far (after [`PartialBlob::resume`], what earlier runs left).
    pub fn len(&self) -> u64 {
        self.hasher.position()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes over what an earlier run wrote: hashes it and continues after it. Content
    /// longer than the blob cannot be a prefix of it and is dropped.
    pub fn resume(&mut self) -> Result<u64> {
        let file = self.writer.get_mut();
        let length = file
            .metadata()
            .map_err(|e| io_error("read", &self.path, e))?
            .len();
        if length > self.blob.size {
            return self.restart().map(|()| 0);
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io_error("read", &self.path, e))?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut reader = (&*file).take(length);
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| io_error("read", &self.path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        if hasher.position() != length {
            return self.restart().map(|()| 0);
        }
        file.seek(SeekFrom::Start(length))
            .map_err(|e| io_error("write", &self.path, e))?;
        self.hasher = hasher;
        Ok(length)
    }

    /// Drops whatever was written and starts from the first byte.
    pub fn restart(&mut self) -> Result<()> {
        let _ = self.writer.flush();
        let file = self.writer.get_mut();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(|e| io_error("write", &self.path, e))?;
        self.hasher = Hasher::new();
        Ok(())
    }

    /// Flushes what was received, so an interruption loses nothing already read.
    pub fn flush_to_file(&mut self) -> Result<()> {
        self.writer
            .flush()
            .map_err(|e| io_error("write", &self.path, e))
    }

    /// Checks size and digest and moves the blob into the cache at `destination`. On a
    /// mismatch the partial file stays for the caller to restart or discard.
    pub fn commit(&mut self, destination: &Path) -> Result<()> {
        self.flush_to_file()?;
        let actual = self.hasher.digest();
        if self.hasher.position() != self.blob.size {
            return Err(Error::input(format!(
                "blob {} has {} bytes, expected {}",
                self.blob.digest,
                self.hasher.position(),
                self.blob.size
            )));
        }
        if actual != self.blob.digest {
            return Err(Error::input(format!(
                "blob {} arrived with content that hashes to {actual}",
                self.blob.digest
            )));
        }
        self.writer
            .get_ref()
            .sync_all()
            .map_err(|e| io_error("write", &self.path, e))?;
        fs::rename(&self.path, destination).map_err(|e| io_error("write", destination, e))?;
        super::files::sync_parent(destination);
        Ok(())
    }

    /// Removes the partial file (its content is wrong).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Write for PartialBlob {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.writer.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::test_doubles::blob;

    fn begin(dir: &Path, blob: &Blob) -> Box<PartialBlob> {
        match PartialBlob::begin(dir, blob, &|| false, &|| {}).unwrap() {
            Begun::Partial(p) => p,
            Begun::Present => panic!("not present"),
        }
    }

    #[test]
    fn an_interrupted_blob_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"0123456789abcdef";
        let blob = blob(content);
        let mut first = begin(dir.path(), &blob);
        first.write_all(&content[..6]).unwrap();
        first.flush_to_file().unwrap();
        drop(first);

        let mut second = begin(dir.path(), &blob);
        assert_eq!(second.resume().unwrap(), 6);
        second.write_all(&content[6..]).unwrap();
        let destination = dir.path().join("blob");
        second.commit(&destination).unwrap();
        assert_eq!(fs::read(&destination).unwrap(), content);
        assert!(!partial_path(dir.path(), &blob.digest).exists());
    }

    #[test]
    fn wrong_content_is_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let blob = blob(b"right");
        let mut partial = begin(dir.path(), &blob);
        partial.write_all(b"wrong").unwrap();
        let destination = dir.path().join("blob");
        let error = partial.commit(&destination).unwrap_err();
        assert!(error.message.contains("hashes to"), "{error}");
        assert!(!destination.exists());
        partial.discard();
        assert!(!partial_path(dir.path(), &blob.digest).exists());
    }

    #[test]
    fn a_leftover_longer_than_the_blob_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let blob = blob(b"abc");
        fs::write(partial_path(dir.path(), &blob.digest), b"abcdef").unwrap();
        let mut partial = begin(dir.path(), &blob);
        assert_eq!(partial.resume().unwrap(), 0);
        assert!(partial.is_empty());
    }

    #[test]
    fn a_blob_that_appeared_meanwhile_is_reported_present() {
        let dir = tempfile::tempdir().unwrap();
        let blob = blob(b"abc");
        let begun = PartialBlob::begin(dir.path(), &blob, &|| true, &|| {}).unwrap();
        assert!(matches!(begun, Begun::Present));
    }
}
