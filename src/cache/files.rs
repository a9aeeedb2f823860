//! The file-system moves the cache is built from: writing a file so that readers see the
//! old content or the new, never a mix (temporary file, fsync, rename, fsync of the
//! directory), and advisory locks (`flock`) that the kernel drops when a process dies,
//! so a killed run can never leave the cache locked.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, io_error};

/// Suffix of temporary files that become something else by a rename. A `.tmp` file nobody
/// holds a lock on is debris from a killed process.
pub const TEMP_SUFFIX: &str = ".tmp";

/// A file in the temporary area, locked by this process while it is written, and moved to
/// its final path by [`TempFile::commit`]. Dropped uncommitted, it is removed.
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates a fresh, uniquely named file in `dir` (which must be on the same file system
    /// as the destination, so the final rename is atomic).
    pub fn create(dir: &Path, purpose: &str) -> Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        loop {
            let unique = format!(
                "{purpose}-{}-{}-{}{TEMP_SUFFIX}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                nanos()
            );
            let path = dir.join(unique);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    // Locked so that `clean` in another process knows it is in use.
                    let _ = file.try_lock();
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("create", &path, e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("a temp file is open until committed")
    }

    /// Makes the content durable and moves it to `destination` in one step.
    pub fn commit(mut self, destination: &Path) -> Result<()> {
        let file = self.file.take().expect("a temp file is committed once");
        file.sync_all()
            .map_err(|e| io_error("write", &self.path, e))?;
        drop(file);
        fs::rename(&self.path, destination).map_err(|e| io_error("write", destination, e))?;
        sync_parent(destination);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Writes `bytes` to `destination` atomically through a temporary file in `temp_dir`.
pub fn write_atomic(temp_dir: &Path, destination: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = TempFile::create(temp_dir, "write")?;
    temp.file()
        .write_all(bytes)
        .map_err(|e| io_error("write", destination, e))?;
    temp.commit(destination)
}

/// Makes a rename durable: the directory entry lives in the parent directory.
pub fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

/// Whether another process holds a lock on the file (it is being written).
pub fn in_use(path: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).open(path) else {
        return false;
    };
    matches!(file.try_lock(), Err(TryLockError::WouldBlock))
}

/// A held lock on a lock file; released when dropped (or when the process dies).
pub struct Lock {
    _file: Option<File>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

impl Lock {
    /// No lock at all: for a cache that does not exist yet (nothing to protect).
    pub fn unlocked() -> Lock {
        Lock { _file: None }
    }

    /// Takes the lock, calling `waiting` once when another process holds it first.
    /// A read-only cache (a write-protected USB stick) cannot be changed by anyone, so
    /// readers there go ahead without a lock.
    pub fn acquire(path: &Path, mode: LockMode, waiting: &dyn Fn()) -> Result<Lock> {
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
        {
            Ok(file) => file,
            Err(_) if mode == LockMode::Shared => match File::open(path) {
                Ok(file) => file,
                Err(_) => return Ok(Lock { _file: None }),
            },
            Err(e) => return Err(io_error("open the lock file", path, e)),
        };
        let attempt = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                waiting();
                match mode {
                    LockMode::Shared => file.lock_shared(),
                    LockMode::Exclusive => file.lock(),
                }
                .map_err(|e| io_error("lock", path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(io_error("lock", path, e)),
        }
        Ok(Lock { _file: Some(file) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("tmp");
        let target = dir.path().join("index.json");
        write_atomic(&temp, &target, b"one").unwrap();
        write_atomic(&temp, &target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(fs::read_dir(&temp).unwrap().count(), 0);
    }

    #[test]
    fn an_uncommitted_temp_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let mut temp = TempFile::create(dir.path(), "x").unwrap();
            temp.file().write_all(b"partial").unwrap();
            temp.path.clone()
        };
        assert!(!path.exists());
    }

    #[test]
    fn exclusive_lock_excludes_and_reports_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = Lock::acquire(&path, LockMode::Exclusive, &|| {}).unwrap();
        assert!(in_use(&path));
        drop(held);
        assert!(!in_use(&path));
        let _a = Lock::acquire(&path, LockMode::Shared, &|| {}).unwrap();
        let _b =
            Lock::acquire(&path, LockMode::Shared, &|| panic!("shared locks coexist")).unwrap();
    }
}
