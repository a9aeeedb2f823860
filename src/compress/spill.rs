//! Compressed bytes kept in a file rather than in memory: chunks on their way to the
//! registry (written as they are compressed, read back for their request and again for a
//! retry), and the part of a frame that outgrew the memory its block was given. The file
//! is unlinked as soon as it is created: it lives as long as something holds it open, and
//! a crash leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// An open, nameless file of compressed bytes; clones share it.
#[derive(Clone)]
pub struct Spill {
    file: Arc<File>,
}

impl Spill {
    /// A new spill file in `dir` (made if missing), else in the system's temporary
    /// directory.
    pub fn create(dir: Option<&Path>) -> io::Result<Spill> {
        let temp = std::env::temp_dir();
        let first = dir.map(Path::to_path_buf);
        let mut last_error = None;
        for dir in first.iter().chain(std::iter::once(&temp)) {
            match Spill::create_in(dir) {
                Ok(spill) => return Ok(spill),
                Err(e) => {
                    last_error = Some(io::Error::new(
                        e.kind(),
                        format!(
                            "cannot make a file for compressed bytes in {}: {e}",
                            dir.display()
                        ),
                    ))
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no directory for compressed bytes")))
    }

    fn create_in(dir: &Path) -> io::Result<Spill> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(dir)?;
        let name: PathBuf = dir.join(format!(
            ".spill-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&name)?;
        std::fs::remove_file(&name)?;
        Ok(Spill {
            file: Arc::new(file),
        })
    }

    pub fn write_at(&self, bytes: &[u8], at: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, at)
    }

    /// The `length` bytes at `at`.
    pub fn reader(&self, at: u64, length: u64) -> SpillReader {
        SpillReader {
            file: self.file.clone(),
            position: at,
            end: at.saturating_add(length),
        }
    }
}

/// Reads a range of a spill file; readers of one file do not move each other.
pub struct SpillReader {
    file: Arc<File>,
    position: u64,
    end: u64,
}

impl Read for SpillReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.position).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.position)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file of compressed bytes is shorter than what was written to it",
            ));
        }
        self.position += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_written_are_read_back_from_any_offset_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::create(Some(dir.path())).unwrap();
        spill.write_at(b"hello, ", 0).unwrap();
        spill.write_at(b"world", 7).unwrap();
        let mut text = String::new();
        spill.reader(3, 9).read_to_string(&mut text).unwrap();
        assert_eq!(text, "lo, world");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut past_end = Vec::new();
        assert!(spill.reader(10, 5).read_to_end(&mut past_end).is_err());
    }

    #[test]
    fn an_unusable_directory_falls_back_to_the_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let spill = Spill::create(Some(&file.join("below"))).unwrap();
        spill.write_at(b"x", 0).unwrap();
    }
}
