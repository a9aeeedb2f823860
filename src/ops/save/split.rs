//! Where `save` writes: one archive file, or (`--split SIZE`) the same bytes cut into
//! `FILE.001`, `FILE.002`, ... of at most SIZE bytes each, with `FILE.parts` listing their
//! sizes and sha256. Every part is a temporary file until the whole archive is written;
//! then the parts are renamed into place and `FILE.parts` is written last, so an
//! interrupted save leaves no set of parts that checks out as complete.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::archive::volume::{
    MAX_PARTS, PARTS_FORMAT, PartRecord, PartsManifest, part_path, parts_path,
};
use crate::cache::files::TempFile;
use crate::error::{Error, Result, io_error};
use crate::image::digest::Hasher;

/// What the archive writer writes into; it seeks back to fill in headers.
pub trait WriteSeek: Write + Seek {}
impl<T: Write + Seek> WriteSeek for T {}

/// The destination of one `save`.
pub enum Sink {
    Whole(TempFile),
    Split(SplitWriter),
}

impl Sink {
    pub fn create(output: &Path, split: Option<u64>) -> Result<Sink> {
        let directory = match output.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let temp = || TempFile::create(directory, ".docker-image-pusher-save");
        Ok(match split {
            None => Sink::Whole(temp()?),
            Some(size) => Sink::Split(SplitWriter {
                directory: directory.to_path_buf(),
                size,
                parts: Vec::new(),
                position: 0,
            }),
        })
    }

    pub fn writer(&mut self) -> &mut dyn WriteSeek {
        match self {
            Sink::Whole(temp) => temp.file(),
            Sink::Split(split) => split,
        }
    }

    /// Moves the finished archive into place; the names of the parts written, if split.
    /// What an earlier save left under the same name in the other form goes: readers
    /// prefer a whole `FILE` to its parts, and would read a stale one.
    pub fn commit(self, output: &Path) -> Result<Vec<String>> {
        match self {
            Sink::Whole(temp) => {
                temp.commit(output)?;
                // Numbered files are taken for parts only beside the list save wrote.
                if parts_path(output).exists() {
                    remove_file_if_present(&parts_path(output))?;
                    remove_stale_parts(output, 0)?;
                }
                Ok(Vec::new())
            }
            Sink::Split(split) => {
                let names = split.commit(output)?;
                if fs::symlink_metadata(output).is_ok_and(|m| m.is_file()) {
                    remove_file_if_present(output)?;
                }
                Ok(names)
            }
        }
    }
}

/// One part being written: a temporary file and the hash of what was appended to it.
struct Part {
    temp: TempFile,
    length: u64,
    hasher: Hasher,
    /// Bytes were overwritten (a header filled in): hash the file again at the end.
    rewritten: bool,
}

/// A seekable writer over parts of at most `size` bytes.
pub struct SplitWriter {
    directory: PathBuf,
    size: u64,
    parts: Vec<Part>,
    position: u64,
}

fn too_many_parts(size: u64) -> io::Error {
    io::Error::other(format!(
        "the archive needs more than {MAX_PARTS} parts of {size} bytes; choose a larger --split"
    ))
}

impl Write for SplitWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let index = usize::try_from(self.position / self.size).unwrap_or(usize::MAX);
        let offset = self.position % self.size;
        if index >= MAX_PARTS {
            return Err(too_many_parts(self.size));
        }
        while self.parts.len() <= index {
            let temp = TempFile::create(&self.directory, ".docker-image-pusher-save-part")
                .map_err(|e| io::Error::other(e.message))?;
            self.parts.push(Part {
                temp,
                length: 0,
                hasher: Hasher::new(),
                rewritten: false,
            });
        }
        let part = &mut self.parts[index];
        let room = usize::try_from(self.size - offset).unwrap_or(usize::MAX);
        let chunk = &buf[..buf.len().min(room)];
        let file = part.temp.file();
        if file.stream_position()? != offset {
            file.seek(SeekFrom::Start(offset))?;
        }
        let n = file.write(chunk)?;
        if offset == part.length {
            part.hasher.update(&chunk[..n]);
        } else {
            part.rewritten = true;
        }
        part.length = part.length.max(offset + n as u64);
        self.position += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SplitWriter {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let end = self.parts.iter().map(|p| p.length).sum::<u64>();
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => end.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        }
        .filter(|&t| t <= end)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek outside the archive"))?;
        self.position = target;
        Ok(target)
    }
}

impl SplitWriter {
    fn commit(self, output: &Path) -> Result<Vec<String>> {
        let count = self.parts.len();
        let mut records = Vec::with_capacity(count);
        let mut total = 0u64;
        let mut moves = Vec::with_capacity(count);
        for (i, mut part) in self.parts.into_iter().enumerate() {
            let destination = part_path(output, i + 1, count);
            let digest = if part.rewritten {
                rehash(part.temp.path()).map_err(|e| io_error("read", part.temp.path(), e))?
            } else {
                part.hasher.digest()
            };
            part.temp
                .file()
                .flush()
                .map_err(|e| io_error("write", &destination, e))?;
            records.push(PartRecord {
                name: file_name(&destination),
                size: part.length,
                sha256: digest.to_string(),
            });
            total += part.length;
            moves.push((part.temp, destination));
        }
        let manifest = PartsManifest {
            format: PARTS_FORMAT.to_string(),
            total,
            parts: records,
        };
        // The old list goes first: until the new one is written, the parts do not check
        // out, whatever mix of old and new parts an interruption leaves.
        let list = parts_path(output);
        remove_file_if_present(&list)?;
        let mut names = Vec::with_capacity(count);
        for (temp, destination) in moves {
            temp.commit(&destination)?;
            names.push(destination.display().to_string());
        }
        remove_stale_parts(output, count)?;
        let mut temp = TempFile::create(&self.directory, ".docker-image-pusher-save-parts")?;
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        temp.file()
            .write_all(&bytes)
            .map_err(|e| io_error("write", &list, e))?;
        temp.commit(&list)?;
        Ok(names)
    }
}

fn remove_file_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("remove", path, e)),
        _ => Ok(()),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn rehash(path: &Path) -> io::Result<crate::image::digest::Digest> {
    let mut file = File::open(path)?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(hasher.digest()),
            n => hasher.update(&buffer[..n]),
        }
    }
}

/// Parts of an earlier, longer save of the same name: left in place, `cat FILE.*` would
/// append them to the new archive.
fn remove_stale_parts(output: &Path, count: usize) -> Result<()> {
    let current: BTreeSet<PathBuf> = (1..=count).map(|n| part_path(output, n, count)).collect();
    // Part names are 3 digits wide up to 999 parts, 4 beyond: look at both forms.
    for wide in [1, 1000] {
        for number in 1..=MAX_PARTS {
            let path = part_path(output, number, wide);
            if current.contains(&path) {
                continue;
            }
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?
                }
                Ok(_) => {}
                Err(_) if number > count => break,
                Err(_) => {}
            }
        }
    }
    Ok(())
}

/// Refuses a save that cannot fit in `MAX_PARTS` parts before a byte is written.
pub fn check_part_count(estimate: u64, size: u64) -> Result<()> {
    if estimate.div_ceil(size) > MAX_PARTS as u64 {
        return Err(Error::usage(format!(
            "the archive (about {estimate} bytes) needs more than {MAX_PARTS} parts of {size} bytes"
        ))
        .hint("choose a larger --split"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::volume::Volume;

    #[test]
    fn parts_join_to_what_was_written_even_after_a_seek_back() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.tar");
        let mut sink = Sink::create(&output, Some(1000)).unwrap();
        let bytes: Vec<u8> = (0..4321u32).map(|i| (i % 253) as u8).collect();
        let writer = sink.writer();
        writer.write_all(&bytes).unwrap();
        // Overwrite bytes across the boundary of parts 1 and 2, as a header fill-in does.
        writer.seek(SeekFrom::Start(990)).unwrap();
        writer.write_all(&[9u8; 20]).unwrap();
        writer.seek(SeekFrom::End(0)).unwrap();
        writer.write_all(b"tail").unwrap();
        let names = sink.commit(&output).unwrap();
        assert_eq!(names.len(), 5);
        let mut expected = bytes.clone();
        expected[990..1010].fill(9);
        expected.extend_from_slice(b"tail");
        let mut joined = Vec::new();
        for n in 1..=5 {
            let part = fs::read(part_path(&output, n, 5)).unwrap();
            assert!(part.len() <= 1000);
            joined.extend(part);
        }
        assert_eq!(joined, expected);
        let mut read = Vec::new();
        Volume::open(&output)
            .unwrap()
            .reader()
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, expected);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_shorter_save_removes_the_parts_a_longer_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.tar");
        for length in [3500usize, 1500] {
            let mut sink = Sink::create(&output, Some(1000)).unwrap();
            sink.writer().write_all(&vec![1u8; length]).unwrap();
            sink.commit(&output).unwrap();
        }
        assert!(part_path(&output, 2, 2).exists());
        assert!(!part_path(&output, 3, 3).exists());
        assert!(!part_path(&output, 4, 4).exists());

        // A whole save of the same name replaces the parts; a split one the whole file.
        let mut sink = Sink::create(&output, None).unwrap();
        sink.writer().write_all(b"whole").unwrap();
        sink.commit(&output).unwrap();
        assert_eq!(fs::read(&output).unwrap(), b"whole");
        assert!(!part_path(&output, 1, 1).exists() && !parts_path(&output).exists());
        let mut sink = Sink::create(&output, Some(1000)).unwrap();
        sink.writer().write_all(b"split").unwrap();
        sink.commit(&output).unwrap();
        assert!(!output.exists() && part_path(&output, 1, 1).exists());
    }

    #[test]
    fn a_save_needing_more_than_the_most_parts_is_refused_up_front() {
        assert!(check_part_count(9999 << 20, 1 << 20).is_ok());
        let err = check_part_count((9999 << 20) + 1, 1 << 20).err().unwrap();
        assert!(err.message.contains("more than 9999 parts"), "{err}");
    }

    #[test]
    fn writing_past_the_most_parts_fails() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.tar");
        let mut sink = Sink::create(&output, Some(1)).unwrap();
        let err = sink
            .writer()
            .write_all(&[0u8; MAX_PARTS + 1])
            .err()
            .unwrap();
        assert!(err.to_string().contains("more than 9999 parts"), "{err}");
    }

    #[test]
    fn an_abandoned_split_save_leaves_no_parts() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.tar");
        let mut sink = Sink::create(&output, Some(1000)).unwrap();
        sink.writer().write_all(&vec![1u8; 2500]).unwrap();
        drop(sink);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
