//! Where an archive's bytes are: one file, or the parts of a split archive (`FILE.001`,
//! `FILE.002`, ... written by `save --split`, described by `FILE.parts`) read in order as
//! one stream, in place. Every part is checked against `FILE.parts` (sizes, then sha256)
//! when the volume is opened, so a missing, short, damaged or renamed part is found before
//! anything reads, writes or uploads a byte of it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result, io_error};
use crate::image::digest::{Digest, Hasher};

/// Suffix of the file that lists the parts of a split archive.
pub const PARTS_SUFFIX: &str = ".parts";
/// More parts than this is a mistake (a split size far too small for the archive).
pub const MAX_PARTS: usize = 9999;
/// `FILE.parts` lists at most `MAX_PARTS` short records.
const MAX_PARTS_FILE_BYTES: u64 = 2 << 20;
/// What `FILE.parts` says it is, so an unrelated JSON file is not taken for one.
pub const PARTS_FORMAT: &str = "docker-image-pusher split archive v1";

/// `FILE.parts`: how the archive was cut.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartsManifest {
    pub format: String,
    /// Bytes of the whole archive (the sum of the parts).
    pub total: u64,
    pub parts: Vec<PartRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartRecord {
    /// The part's file name (no directory): `FILE.001`.
    pub name: String,
    pub size: u64,
    /// `sha256:<hex>` of the part's bytes.
    pub sha256: String,
}

/// The path of part `number` (from 1) of the archive `base`. Numbers are padded to the
/// same width in one archive (3 digits, 4 beyond 999 parts) so that `cat FILE.*` in a shell
/// takes them in order.
pub fn part_path(base: &Path, number: usize, count: usize) -> PathBuf {
    let width = if count > 999 { 4 } else { 3 };
    let mut name = base.as_os_str().to_os_string();
    name.push(format!(".{number:0width$}"));
    PathBuf::from(name)
}

pub fn parts_path(base: &Path) -> PathBuf {
    let mut name = base.as_os_str().to_os_string();
    name.push(PARTS_SUFFIX);
    PathBuf::from(name)
}

/// The archive a path names when it is split: `FILE.001`, `FILE.parts`, or `FILE` when only
/// its parts exist. `None` for anything else (a plain archive, or nothing at all).
pub fn split_base(path: &Path) -> Result<Option<PathBuf>> {
    let text = path.as_os_str().to_string_lossy();
    if let Some(base) = text.strip_suffix(PARTS_SUFFIX) {
        return Ok(Some(PathBuf::from(base)));
    }
    if let Some((base, number)) = text.rsplit_once('.')
        && !number.is_empty()
        && number.len() <= 4
        && number.bytes().all(|b| b.is_ascii_digit())
        && parts_path(Path::new(base)).exists()
    {
        let number: u32 = number.parse().unwrap_or(0);
        if number != 1 {
            return Err(Error::usage(format!(
                "{} is part {number} of a split archive",
                path.display(),
            ))
            .hint(format!(
                "pass the first part, {}",
                part_path(Path::new(base), 1, 1).display()
            )));
        }
        return Ok(Some(PathBuf::from(base)));
    }
    if !path.exists() && parts_path(path).exists() {
        return Ok(Some(path.to_path_buf()));
    }
    // Parts carried without their list: reading them as one file would only report a
    // truncated archive.
    let orphan = match text.rsplit_once('.') {
        Some((base, number)) if number.len() == 3 && number.bytes().all(|b| b.is_ascii_digit()) => {
            Some(PathBuf::from(base)).filter(|base| part_path(base, 2, 2).exists())
        }
        _ => Some(path.to_path_buf()).filter(|_| !path.exists() && part_path(path, 1, 1).exists()),
    };
    if let Some(base) = orphan {
        return Err(Error::input(format!(
            "{} is missing: the parts of a split archive cannot be checked without it",
            parts_path(&base).display()
        ))
        .hint("copy the .parts file that save --split wrote beside the parts"));
    }
    Ok(None)
}

/// Whether `path` names an archive: a file, or a split archive's parts.
pub fn exists(path: &Path) -> bool {
    path.exists() || matches!(split_base(path), Ok(Some(_)) | Err(_))
}

#[derive(Debug)]
struct Part {
    path: PathBuf,
    /// Where the part starts in the whole archive.
    start: u64,
    size: u64,
}

/// The bytes of an archive, whole or in parts; cheap to clone, each reader independent.
#[derive(Debug, Clone)]
pub struct Volume {
    parts: Arc<[Part]>,
}

impl Volume {
    /// One plain file.
    pub fn file(path: &Path) -> Result<Volume> {
        let size = std::fs::metadata(path)
            .map_err(|e| io_error("open", path, e))?
            .len();
        Ok(Volume {
            parts: Arc::from(vec![Part {
                path: path.to_path_buf(),
                start: 0,
                size,
            }]),
        })
    }

    /// `path` as a file, or as the split archive it names, its parts checked.
    pub fn open(path: &Path) -> Result<Volume> {
        match split_base(path)? {
            Some(base) => Volume::split(&base),
            None => Volume::file(path),
        }
    }

    /// The parts of the split archive `base`, each checked against `base.parts`: sizes
    /// first (cheap, finds a short copy at once), then the sha256 of every part.
    pub fn split(base: &Path) -> Result<Volume> {
        let manifest = read_manifest(base)?;
        let count = manifest.parts.len();
        let mut parts = Vec::with_capacity(count);
        let mut start = 0u64;
        for (i, record) in manifest.parts.iter().enumerate() {
            let path = part_path(base, i + 1, count);
            if path.file_name().map(|n| n.to_string_lossy()) != Some(record.name.as_str().into()) {
                return Err(bad_manifest(base, "names its parts unlike save --split"));
            }
            let size = match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => meta.len(),
                Ok(_) => return Err(bad_manifest(base, "names a part that is not a file")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::input(format!(
                        "{} is missing (part {} of {count})",
                        path.display(),
                        i + 1
                    ))
                    .hint("copy every part of the archive"));
                }
                Err(e) => return Err(io_error("open", &path, e)),
            };
            if size != record.size {
                let how = if size < record.size {
                    "short"
                } else {
                    "too long"
                };
                return Err(Error::input(format!(
                    "{} is {how}: {size} bytes, {} says {} (part {} of {count})",
                    path.display(),
                    parts_path(base).display(),
                    record.size,
                    i + 1
                ))
                .hint("copy that part again"));
            }
            parts.push(Part { path, start, size });
            start = start
                .checked_add(size)
                .ok_or_else(|| bad_manifest(base, "adds up to more bytes than a file can hold"))?;
        }
        if start != manifest.total {
            return Err(bad_manifest(
                base,
                "has parts that do not add up to its total",
            ));
        }
        for (i, part) in parts.iter().enumerate() {
            check_part(part, &manifest, i)?;
        }
        Ok(Volume {
            parts: Arc::from(parts),
        })
    }

    /// Bytes of the whole archive.
    pub fn length(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.start + p.size)
    }

    pub fn reader(&self) -> io::Result<VolumeReader> {
        let mut reader = VolumeReader {
            parts: self.parts.clone(),
            index: 0,
            file: None,
            position: 0,
        };
        reader.open_part(0, 0)?;
        Ok(reader)
    }
}

fn read_manifest(base: &Path) -> Result<PartsManifest> {
    let path = parts_path(base);
    let file = File::open(&path).map_err(|e| io_error("open", &path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_PARTS_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("read", &path, e))?;
    if bytes.len() as u64 > MAX_PARTS_FILE_BYTES {
        return Err(bad_manifest(base, "is larger than any list of parts"));
    }
    let manifest: PartsManifest = serde_json::from_slice(&bytes)
        .map_err(|_| bad_manifest(base, "is not a list of parts written by save --split"))?;
    if manifest.format != PARTS_FORMAT {
        return Err(bad_manifest(
            base,
            "is not a list of parts written by save --split",
        ));
    }
    if manifest.parts.is_empty() || manifest.parts.len() > MAX_PARTS {
        return Err(bad_manifest(base, "lists no parts, or more than 9999"));
    }
    Ok(manifest)
}

fn bad_manifest(base: &Path, problem: &str) -> Error {
    Error::input(format!("{} {problem}", parts_path(base).display()))
        .hint("copy the .parts file again from where the archive was saved")
}

/// Hashes a part; a mismatch says whether the part is another part under this name.
fn check_part(part: &Part, manifest: &PartsManifest, index: usize) -> Result<()> {
    let mut file = File::open(&part.path).map_err(|e| io_error("open", &part.path, e))?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error("read", &part.path, e)),
        };
        hasher.update(&buffer[..n]);
    }
    let digest: Digest = hasher.digest();
    let count = manifest.parts.len();
    if digest.as_str() == manifest.parts[index].sha256 {
        return Ok(());
    }
    let problem = match manifest
        .parts
        .iter()
        .position(|r| r.sha256 == digest.as_str())
    {
        Some(other) => format!(
            "holds part {} of {count}, not part {}: the parts were renamed or reordered",
            other + 1,
            index + 1
        ),
        None => format!(
            "is damaged (part {} of {count}): its sha256 differs from the .parts file",
            index + 1
        ),
    };
    Err(Error::input(format!("{} {problem}", part.path.display()))
        .hint("copy that part again from where the archive was saved"))
}

/// Reads a volume's parts as one stream; seeking moves across parts.
pub struct VolumeReader {
    parts: Arc<[Part]>,
    index: usize,
    file: Option<File>,
    /// Position in the whole archive.
    position: u64,
}

impl VolumeReader {
    fn open_part(&mut self, index: usize, offset: u64) -> io::Result<()> {
        self.index = index;
        self.file = None;
        if let Some(part) = self.parts.get(index) {
            let mut file = File::open(&part.path)?;
            if offset > 0 {
                file.seek(SeekFrom::Start(offset))?;
            }
            self.file = Some(file);
        }
        Ok(())
    }

    fn total(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.start + p.size)
    }
}

impl Read for VolumeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(part) = self.parts.get(self.index) else {
                return Ok(0);
            };
            let left = (part.start + part.size).saturating_sub(self.position);
            if left == 0 || buf.is_empty() {
                if buf.is_empty() || self.index + 1 >= self.parts.len() {
                    return Ok(0);
                }
                self.open_part(self.index + 1, 0)?;
                continue;
            }
            let Some(file) = self.file.as_mut() else {
                return Ok(0);
            };
            let wanted = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..wanted])?;
            if n == 0 {
                // The part shrank since it was checked: the stream ends here, and the
                // reader above reports a truncated archive.
                return Ok(0);
            }
            self.position += n as u64;
            return Ok(n);
        }
    }
}

impl Seek for VolumeReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.total().checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        // The part holding `target`; at or past the end, the last part's end.
        let index = self
            .parts
            .iter()
            .position(|p| target < p.start + p.size)
            .unwrap_or(self.parts.len().saturating_sub(1));
        let offset = self
            .parts
            .get(index)
            .map_or(0, |p| target.saturating_sub(p.start));
        if index == self.index
            && let Some(file) = self.file.as_mut()
        {
            file.seek(SeekFrom::Start(offset))?;
        } else {
            self.open_part(index, offset)?;
        }
        self.position = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_split(dir: &Path, bytes: &[u8], size: usize) -> PathBuf {
        let base = dir.join("a.tar");
        let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
        let mut records = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let path = part_path(&base, i + 1, chunks.len());
            std::fs::write(&path, chunk).unwrap();
            records.push(PartRecord {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                size: chunk.len() as u64,
                sha256: Digest::of(chunk).to_string(),
            });
        }
        let manifest = PartsManifest {
            format: PARTS_FORMAT.to_string(),
            total: bytes.len() as u64,
            parts: records,
        };
        std::fs::write(parts_path(&base), serde_json::to_vec(&manifest).unwrap()).unwrap();
        base
    }

    #[test]
    fn parts_read_and_seek_as_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let base = write_split(dir.path(), &bytes, 3_000);
        for name in ["a.tar", "a.tar.001", "a.tar.parts"] {
            let volume = Volume::open(&dir.path().join(name)).unwrap();
            assert_eq!(volume.length(), 10_000);
            let mut all = Vec::new();
            volume.reader().unwrap().read_to_end(&mut all).unwrap();
            assert_eq!(all, bytes, "{name}");
        }
        let volume = Volume::open(&base).unwrap();
        let mut reader = volume.reader().unwrap();
        for at in [2_999u64, 3_000, 9_999, 10, 6_500] {
            reader.seek(SeekFrom::Start(at)).unwrap();
            let mut two = Vec::new();
            (&mut reader).take(2).read_to_end(&mut two).unwrap();
            let end = (at as usize + 2).min(bytes.len());
            assert_eq!(two, &bytes[at as usize..end], "at {at}");
        }
        let err = split_base(&dir.path().join("a.tar.002")).err().unwrap();
        assert!(err.message.contains("part 2"), "{err}");
        std::fs::remove_file(parts_path(&base)).unwrap();
        for name in ["a.tar", "a.tar.001"] {
            let err = Volume::open(&dir.path().join(name)).err().unwrap();
            assert!(err.message.contains("a.tar.parts is missing"), "{err}");
        }
    }

    #[test]
    fn missing_short_reordered_and_damaged_parts_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 249) as u8).collect();
        let base = write_split(dir.path(), &bytes, 3_000);
        let part = |n| part_path(&base, n, 4);
        let expect = |needle: &str, names: &Path| {
            let err = Volume::open(&base).err().unwrap();
            assert!(err.message.contains(needle), "{err}");
            assert!(err.message.contains(&names.display().to_string()), "{err}");
        };

        std::fs::rename(part(2), dir.path().join("away")).unwrap();
        expect("missing", &part(2));
        std::fs::rename(dir.path().join("away"), part(2)).unwrap();

        let second = std::fs::read(part(2)).unwrap();
        std::fs::write(part(2), &second[..100]).unwrap();
        expect("short", &part(2));

        let third = std::fs::read(part(3)).unwrap();
        std::fs::write(part(2), &third).unwrap();
        std::fs::write(part(3), &second).unwrap();
        expect("holds part 3 of 4, not part 2", &part(2));

        let mut damaged = second.clone();
        damaged[7] ^= 1;
        std::fs::write(part(2), &damaged).unwrap();
        std::fs::write(part(3), &third).unwrap();
        expect("damaged", &part(2));
    }
}
