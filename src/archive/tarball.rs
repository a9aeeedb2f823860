//! Reading a tar archive in place: one scan records where each entry's bytes are, then
//! any entry can be streamed from its offset without unpacking anything to disk. Works on
//! plain tar files (seek) and on whole-archive gzip (`docker save | gzip`, read front to
//! back by decoders handed from one reader to the next, see `stream`).

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use super::headers::HeaderGuard;
use super::stream::{Announcement, GzipStream};
use super::volume::Volume;
use crate::error::{Error, Result, io_error};
use crate::text::sanitize::sanitize;

/// Where an entry's bytes are in the (decompressed) tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// Entries up to this size are kept in memory during the scan of a compressed archive,
/// so manifests and configs never need a second decompression pass.
const CAPTURE_LIMIT: u64 = 1 << 20;
const CAPTURE_BUDGET: u64 = 64 << 20;

/// An image archive holds a few entries per layer and blob; far more is a crafted archive
/// (a small `.tar.gz` can expand to millions of tiny entries), and each one is remembered.
const MAX_ENTRIES: usize = 100_000;
/// Bytes of entry names and link targets remembered, for the same reason.
const MAX_NAME_BYTES: usize = 32 << 20;

pub struct Tarball {
    path: PathBuf,
    volume: Volume,
    compression: Compression,
    files: HashMap<String, Entry>,
    links: HashMap<String, String>,
    captured: HashMap<String, Vec<u8>>,
    /// Set for a gzipped archive: the one decompressed stream every reader shares.
    stream: Option<Arc<GzipStream>>,
}

impl Tarball {
    /// Opens a file, or a split archive's parts as one (see `volume`).
    pub fn open(path: &Path) -> Result<Tarball> {
        let volume = Volume::open(path)?;
        let mut file = volume.reader().map_err(|e| io_error("open", path, e))?;
        let compression = sniff_compression(&mut file, path)?;
        let length = volume.length();
        let mut tarball = Tarball {
            path: path.to_path_buf(),
            compression,
            files: HashMap::new(),
            links: HashMap::new(),
            captured: HashMap::new(),
            stream: (compression == Compression::Gzip).then(|| GzipStream::new(volume.clone())),
            volume,
        };
        match compression {
            Compression::None => {
                // Seeking past entry data keeps the scan cheap even for a 15 GB archive.
                let mut archive = tar::Archive::new(HeaderGuard::new(BufReader::new(file)));
                let entries = archive
                    .entries_with_seek()
                    .map_err(|e| tarball.not_a_tar(e))?;
                tarball.scan(entries, Some(length))?
            }
            Compression::Gzip => {
                let decoder = MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file));
                let mut archive = tar::Archive::new(HeaderGuard::new(decoder));
                let entries = archive.entries().map_err(|e| tarball.not_a_tar(e))?;
                tarball.scan(entries, None)?
            }
        }
        if tarball.files.is_empty() {
            return Err(
                Error::input(format!("{} is an empty archive", path.display()))
                    .hint("expected the output of docker save, skopeo copy or an OCI archive"),
            );
        }
        Ok(tarball)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Records every entry. `plain_length` is the file size of an uncompressed archive,
    /// where a truncation shows only as an entry reaching past the end of the file.
    fn scan<R: Read>(
        &mut self,
        entries: tar::Entries<'_, R>,
        plain_length: Option<u64>,
    ) -> Result<()> {
        let mut budget = CAPTURE_BUDGET;
        let mut name_bytes = 0usize;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.not_a_tar(e))?;
            let name = normalize_entry_path(&entry.path_bytes())?;
            name_bytes = name_bytes.saturating_add(name.len());
            if self.files.len() + self.links.len() >= MAX_ENTRIES || name_bytes > MAX_NAME_BYTES {
                return Err(Error::input(format!(
                    "{} has more than {MAX_ENTRIES} entries (or {} MiB of names); refusing a crafted archive",
                    self.path.display(),
                    MAX_NAME_BYTES >> 20
                ))
                .hint("image archives hold a few entries per layer; get the archive from its source again"));
            }
            let location = Entry {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            if let Some(length) = plain_length
                && location.offset.saturating_add(location.size) > length
            {
                return Err(self.truncated());
            }
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    self.refuse_duplicate(&name)?;
                    if plain_length.is_none()
                        && location.size <= CAPTURE_LIMIT
                        && location.size <= budget
                    {
                        budget -= location.size;
                        let mut bytes = Vec::with_capacity(location.size as usize);
                        entry
                            .read_to_end(&mut bytes)
                            .map_err(|e| self.read_failed(e))?;
                        self.captured.insert(name.clone(), bytes);
                    }
                    self.files.insert(name, location);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    name_bytes = name_bytes.saturating_add(target.len());
                    let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                        resolve_symlink(&name, &target)
                    } else {
                        normalize_entry_path(target.as_bytes()).ok()
                    };
                    self.refuse_duplicate(&name)?;
                    let Some(resolved) = resolved else {
                        return Err(Error::input(format!(
                            "{}: link \"{}\" points outside the archive (\"{}\"); refusing a crafted archive",
                            self.path.display(),
                            sanitize(&name),
                            sanitize(&target)
                        )));
                    };
                    self.links.insert(name, resolved);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Two entries of one name (files or links, in any mix) are read differently by
    /// different tools; which one is "the" entry is the attacker's choice.
    fn refuse_duplicate(&self, name: &str) -> Result<()> {
        if self.files.contains_key(name) || self.links.contains_key(name) {
            return Err(Error::input(format!(
                "{} has two entries named \"{}\"; refusing an ambiguous archive",
                self.path.display(),
                sanitize(name)
            )));
        }
        Ok(())
    }

    fn not_a_tar(&self, err: io::Error) -> Error {
        if let Some(refusal) = HeaderGuard::<io::Empty>::refusal(&err) {
            return Error::input(format!(
                "{} has {refusal}; refusing a crafted archive",
                self.path.display()
            ))
            .hint("image tools never write such headers; get the archive from its source again");
        }
        if err.kind() == io::ErrorKind::UnexpectedEof {
            return self.truncated();
        }
        // The tar reader quotes header fields it could not parse; for a file that is not a
        // tar at all that would print pieces of its content, so only the kind is kept.
        let why = match err.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::Other => {
                "its headers are not tar headers".to_string()
            }
            _ => err.to_string(),
        };
        Error::input(format!(
            "{} is not a tar archive ({why})",
            self.path.display()
        ))
        .hint("expected the output of docker save, skopeo copy or an OCI archive")
    }

    fn truncated(&self) -> Error {
        Error::input(format!("{} is truncated", self.path.display()))
            .hint("the copy is incomplete; copy or save the archive again")
    }

    fn read_failed(&self, err: io::Error) -> Error {
        match err.kind() {
            io::ErrorKind::UnexpectedEof => self.truncated(),
            _ => io_error("read", &self.path, err),
        }
    }

    /// Follows links (at most a few hops, so a link loop cannot hang us) to a regular file.
    pub fn entry(&self, name: &str) -> Option<(String, Entry)> {
        let mut name = name.trim_start_matches("./").to_string();
        for _ in 0..8 {
            if let Some(entry) = self.files.get(&name) {
                return Some((name, *entry));
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }

    /// Reads a whole small entry (JSON documents), refusing anything over `limit` bytes.
    pub fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let Some((resolved, entry)) = self.entry(name) else {
            return Err(Error::input(format!(
                "{} has no entry \"{name}\"",
                self.path.display()
            )));
        };
        if entry.size > limit {
            return Err(Error::input(format!(
                "{}: \"{name}\" is {} bytes, larger than the {} bytes any real image metadata needs",
                self.path.display(),
                entry.size,
                limit
            ))
            .hint("the archive is damaged or was not written by an image tool"));
        }
        if let Some(bytes) = self.captured.get(&resolved) {
            return Ok(bytes.clone());
        }
        let mut bytes = Vec::with_capacity(entry.size as usize);
        self.open_entry(entry, 0)
            .and_then(|mut r| r.read_to_end(&mut bytes))
            .map_err(|e| self.read_failed(e))?;
        if bytes.len() as u64 != entry.size {
            return Err(self.truncated());
        }
        Ok(bytes)
    }

    /// A reader over an entry's bytes starting `skip` bytes in.
    pub fn open_entry(&self, entry: Entry, skip: u64) -> io::Result<Box<dyn Read + Send>> {
        let start = entry.offset + skip.min(entry.size);
        let length = entry.size - skip.min(entry.size);
        match self.compression {
            Compression::None => {
                let mut file = self.volume.reader()?;
                file.seek(SeekFrom::Start(start))?;
                Ok(Box::new(ExactReader::new(
                    BufReader::with_capacity(1 << 16, file).take(length),
                    length,
                )))
            }
            Compression::Gzip => {
                let stream = self
                    .stream
                    .as_ref()
                    .expect("a gzipped archive has a stream");
                Ok(Box::new(ExactReader::new(
                    stream.reader(entry.offset, start, length)?,
                    length,
                )))
            }
        }
    }

    /// Says that `entry` will be read soon, so that in a gzipped archive the decoder
    /// coming its way waits for it instead of being carried past. `None` for a plain tar.
    pub fn announce(&self, entry: Entry) -> Option<Announcement> {
        self.stream.as_ref().map(|s| s.announce(entry.offset))
    }

    /// Bytes decompressed so far to serve entry reads (0 for a plain tar).
    pub fn inflated_bytes(&self) -> u64 {
        self.stream.as_ref().map_or(0, |s| s.inflated())
    }
}

fn sniff_compression<R: Read + Seek>(file: &mut R, path: &Path) -> Result<Compression> {
    let mut magic = [0u8; 6];
    let mut filled = 0;
    while filled < magic.len() {
        match file.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("read", path, e)),
        }
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_error("read", path, e))?;
    let unsupported = |what: &str, tool: &str| {
        Err(Error::input(format!(
            "{} is {what}-compressed, which is not supported",
            path.display()
        ))
        .hint(format!("decompress it first ({tool}) or use gzip")))
    };
    match &magic[..filled] {
        [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => unsupported("zstd", "zstd -d"),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => unsupported("xz", "xz -d"),
        [b'B', b'Z', b'h', ..] => unsupported("bzip2", "bzip2 -d"),
        _ if filled == 0 => Err(Error::input(format!("{} is empty", path.display()))),
        _ => Ok(Compression::None),
    }
}

/// Turns a raw tar path into the archive-relative name we look entries up by, refusing
/// names that could only come from a crafted archive.
fn normalize_entry_path(raw: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(raw);
    let hostile = |why: &str| {
        Err(Error::input(format!(
            "archive entry \"{}\" {why}; refusing a crafted archive",
            text.escape_debug()
        )))
    };
    if text.starts_with('/') {
        return hostile("has an absolute path");
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return hostile("climbs out of the archive with \"..\""),
            _ => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink's target relative to the link's directory, or `None` when it
/// points outside the archive.
fn resolve_symlink(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            _ => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// Turns a short read into an error: a truncated archive must not look like a short blob.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R> ExactReader<R> {
    fn new(inner: R, length: u64) -> Self {
        ExactReader {
            inner,
            remaining: length,
        }
    }
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(crate::error::SourceEnded::io_error(
                "archive ended inside an entry",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_normalized_and_hostile_ones_refused() {
        assert_eq!(
            normalize_entry_path(b"./manifest.json").unwrap(),
            "manifest.json"
        );
        assert_eq!(
            normalize_entry_path(b"blobs//sha256/ab").unwrap(),
            "blobs/sha256/ab"
        );
        assert!(normalize_entry_path(b"/etc/passwd").is_err());
        assert!(normalize_entry_path(b"../evil").is_err());
        assert!(normalize_entry_path(b"a/../../evil").is_err());
    }

    #[test]
    fn symlinks_resolve_inside_the_archive_only() {
        assert_eq!(
            resolve_symlink("abc/layer.tar", "../blobs/sha256/ff").unwrap(),
            "blobs/sha256/ff"
        );
        assert_eq!(resolve_symlink("layer.tar", "blobs/x").unwrap(), "blobs/x");
        assert!(resolve_symlink("abc/layer.tar", "../../etc/passwd").is_none());
        assert!(resolve_symlink("abc/layer.tar", "/etc/passwd").is_none());
    }

    fn write_tar(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut builder = tar::Builder::new(file.reopen().unwrap());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.finish().unwrap();
        file
    }

    #[test]
    fn reads_entries_from_plain_and_gzip_archives_at_any_offset() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let plain = write_tar(&[("a.json", b"{}"), ("blob", &big), ("z", b"tail")]);
        let gz = tempfile::NamedTempFile::new().unwrap();
        let mut encoder =
            flate2::write::GzEncoder::new(gz.reopen().unwrap(), flate2::Compression::fast());
        io::copy(
            &mut std::fs::File::open(plain.path()).unwrap(),
            &mut encoder,
        )
        .unwrap();
        encoder.finish().unwrap();

        for path in [plain.path(), gz.path()] {
            let tarball = Tarball::open(path).unwrap();
            assert_eq!(tarball.read_small("./a.json", 10).unwrap(), b"{}");
            let (_, entry) = tarball.entry("blob").unwrap();
            for skip in [0u64, 1, 65_536, 199_999] {
                let mut out = Vec::new();
                tarball
                    .open_entry(entry, skip)
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap();
                assert_eq!(out, big[skip as usize..], "skip {skip}");
            }
            assert!(tarball.read_small("blob", 10).is_err());
            assert_eq!(tarball.read_small("z", 10).unwrap(), b"tail");
        }
    }

    #[test]
    fn truncated_and_non_tar_files_are_input_errors() {
        let big = vec![7u8; 100_000];
        let plain = write_tar(&[("blob", &big)]);
        let bytes = std::fs::read(plain.path()).unwrap();
        let cut = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(cut.path(), &bytes[..50_000]).unwrap();
        let err = Tarball::open(cut.path()).err().unwrap();
        assert!(err.message.contains("truncated"), "{err}");

        let junk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(junk.path(), vec![b'x'; 4096]).unwrap();
        assert!(Tarball::open(junk.path()).is_err());
    }

    #[test]
    fn duplicate_entries_are_refused() {
        let dup = write_tar(&[("manifest.json", b"[]"), ("manifest.json", b"[1]")]);
        let err = Tarball::open(dup.path()).err().unwrap();
        assert!(err.message.contains("two entries"), "{err}");
    }

    fn write_links(entries: &[(&str, Option<&str>)]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut builder = tar::Builder::new(file.reopen().unwrap());
        for (name, target) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            match target {
                Some(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder.append_link(&mut header, name, target).unwrap();
                }
                None => {
                    header.set_size(2);
                    header.set_cksum();
                    builder.append_data(&mut header, name, &b"[]"[..]).unwrap();
                }
            }
        }
        builder.finish().unwrap();
        file
    }

    #[test]
    fn an_archive_of_more_entries_than_any_image_has_is_refused() {
        // Empty files compress to almost nothing: a few hundred KB of .tar.gz.
        let file = tempfile::NamedTempFile::new().unwrap();
        let encoder =
            flate2::write::GzEncoder::new(file.reopen().unwrap(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(encoder);
        for n in 0..=MAX_ENTRIES {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(0);
            header.set_cksum();
            builder
                .append_data(&mut header, format!("f{n}"), &b""[..])
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        let err = Tarball::open(file.path()).err().unwrap();
        assert!(err.message.contains("more than 100000 entries"), "{err}");
    }

    #[test]
    fn duplicate_symlinks_and_mixed_duplicates_are_refused() {
        for entries in [
            vec![
                ("a", None),
                ("manifest.json", Some("a")),
                ("manifest.json", Some("a")),
            ],
            vec![
                ("a", None),
                ("manifest.json", Some("a")),
                ("manifest.json", None),
            ],
            vec![
                ("a", None),
                ("manifest.json", None),
                ("manifest.json", Some("a")),
            ],
        ] {
            let tar = write_links(&entries);
            let err = Tarball::open(tar.path()).err().unwrap();
            assert!(
                err.message.contains("two entries named \"manifest.json\""),
                "{err}"
            );
        }
    }

    #[test]
    fn oversized_long_name_headers_are_refused_in_plain_and_gzip_archives() {
        // A GNU long-name header claiming 500 MB, followed by a little of its "name".
        let mut header = tar::Header::new_gnu();
        header.set_path("././@LongLink").unwrap();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(500 << 20);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend(vec![b'n'; 1 << 16]);
        let plain = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(plain.path(), &bytes).unwrap();
        let gz = tempfile::NamedTempFile::new().unwrap();
        let mut encoder =
            flate2::write::GzEncoder::new(gz.reopen().unwrap(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, &bytes).unwrap();
        encoder.finish().unwrap();
        for path in [plain.path(), gz.path()] {
            let err = Tarball::open(path).err().unwrap();
            assert!(
                err.message
                    .contains("GNU long name header of 524288000 bytes"),
                "{err}"
            );
        }
    }
}
