//! Byte-level tar writing.
//!
//! The `tar` crate refuses `..` and absolute member names, which the hostile
//! fixtures need, and its writers return `Result` even for in-memory output.
//! This encoder builds USTAR headers by hand (as Go's archive/tar does for
//! Docker, containerd and containers/image), so it is infallible and can emit
//! any name at all.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

const BLOCK: usize = 512;

#[derive(Debug, Clone)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
}

/// One archive member. `name` is written verbatim: no normalisation.
#[derive(Debug, Clone)]
pub struct TarEntry {
    pub name: String,
    pub kind: Kind,
    pub mode: u32,
    pub mtime: u64,
    /// Owner name; empty like Go's `tar.FileInfoHeader` without lookups.
    pub uname: &'static str,
}

impl TarEntry {
    pub fn file(name: &str, data: Vec<u8>, mtime: u64) -> Self {
        Self::new(name, Kind::File(data), 0o644, mtime)
    }

    pub fn dir(name: &str, mtime: u64) -> Self {
        Self::new(name, Kind::Dir, 0o755, mtime)
    }

    pub fn symlink(name: &str, target: &str, mtime: u64) -> Self {
        Self::new(name, Kind::Symlink(target.to_string()), 0o777, mtime)
    }

    fn new(name: &str, kind: Kind, mode: u32, mtime: u64) -> Self {
        TarEntry {
            name: name.to_string(),
            kind,
            mode,
            mtime,
            uname: "",
        }
    }

    pub fn with_mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    pub fn with_owner(mut self, uname: &'static str) -> Self {
        self.uname = uname;
        self
    }

    fn data(&self) -> &[u8] {
        match &self.kind {
            Kind::File(d) => d,
            _ => &[],
        }
    }

    fn spec(&self) -> HeaderSpec<'_> {
        let (typeflag, link) = match &self.kind {
            Kind::File(_) => (b'0', ""),
            Kind::Dir => (b'5', ""),
            Kind::Symlink(t) => (b'2', t.as_str()),
        };
        HeaderSpec {
            name: &self.name,
            typeflag,
            size: self.data().len() as u64,
            mode: self.mode,
            mtime: self.mtime,
            link,
            uname: self.uname,
        }
    }
}

/// Everything a header needs; also used to stream entries whose data is
/// never held in memory (the huge-manifest fixture).
pub struct HeaderSpec<'a> {
    pub name: &'a str,
    pub typeflag: u8,
    pub size: u64,
    pub mode: u32,
    pub mtime: u64,
    pub link: &'a str,
    pub uname: &'a str,
}

/// Header block(s) for one member: a GNU long-name record first when the
/// name cannot fit USTAR's name/prefix split.
pub fn header_blocks(spec: &HeaderSpec) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK);
    let (name, prefix) = match split_ustar_name(spec.name) {
        Some(parts) => parts,
        None => {
            out.extend(long_name_record(spec.name.as_bytes(), b'L'));
            (truncate(spec.name, 100), "")
        }
    };
    if spec.link.len() > 100 {
        out.extend(long_name_record(spec.link.as_bytes(), b'K'));
    }
    let mut h = [0u8; BLOCK];
    put(&mut h[0..100], name.as_bytes());
    put_octal(&mut h[100..108], u64::from(spec.mode));
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    put_octal(&mut h[124..136], spec.size);
    put_octal(&mut h[136..148], spec.mtime);
    h[156] = spec.typeflag;
    put(&mut h[157..257], truncate(spec.link, 100).as_bytes());
    put(&mut h[257..265], b"ustar\x0000");
    put(&mut h[265..297], spec.uname.as_bytes());
    put(&mut h[297..329], spec.uname.as_bytes());
    put(&mut h[345..500], prefix.as_bytes());
    set_checksum(&mut h);
    out.extend_from_slice(&h);
    out
}

/// GNU `././@LongLink` record carrying a name that does not fit 100 bytes.
fn long_name_record(name: &[u8], typeflag: u8) -> Vec<u8> {
    let mut data = name.to_vec();
    data.push(0);
    let mut h = [0u8; BLOCK];
    put(&mut h[0..100], b"././@LongLink");
    put_octal(&mut h[100..108], 0o644);
    put_octal(&mut h[124..136], data.len() as u64);
    h[156] = typeflag;
    put(&mut h[257..265], b"ustar  \0");
    set_checksum(&mut h);
    let mut out = h.to_vec();
    out.extend(data);
    out.resize(out.len().next_multiple_of(BLOCK), 0);
    out
}

/// USTAR stores long names as `prefix/name` (prefix <= 155, name <= 100).
fn split_ustar_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some((name, ""));
    }
    name.char_indices()
        .filter(|&(i, c)| c == '/' && i <= 155 && name.len() - i - 1 <= 100 && i + 1 < name.len())
        .map(|(i, _)| (&name[i + 1..], &name[..i]))
        .next()
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put(field: &mut [u8], bytes: &[u8]) {
    let n = bytes.len().min(field.len());
    field[..n].copy_from_slice(&bytes[..n]);
}

/// Octal with a trailing NUL; base-256 (GNU) when the value is too wide.
fn put_octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let text = format!("{v:0width$o}");
    if text.len() <= width {
        put(field, text.as_bytes());
        field[width] = 0;
        return;
    }
    field.fill(0);
    let be = v.to_be_bytes();
    let n = be.len().min(field.len() - 1);
    let start = field.len() - n;
    field[start..].copy_from_slice(&be[be.len() - n..]);
    field[0] = 0x80;
}

fn set_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    put(&mut h[148..156], format!("{sum:06o}\0 ").as_bytes());
}

/// Zero padding that completes a member of `size` bytes to a whole block.
pub fn padding(size: u64) -> Vec<u8> {
    let rem = (size % BLOCK as u64) as usize;
    vec![0u8; if rem == 0 { 0 } else { BLOCK - rem }]
}

/// End-of-archive marker: two zero blocks, as Go's `tar.Writer.Close` writes
/// (no padding to GNU tar's 10 KiB record).
pub fn trailer() -> Vec<u8> {
    vec![0u8; 2 * BLOCK]
}

fn append_entry(out: &mut Vec<u8>, e: &TarEntry) {
    out.extend(header_blocks(&e.spec()));
    out.extend_from_slice(e.data());
    out.extend(padding(e.data().len() as u64));
}

/// A whole archive in memory.
pub fn tar_bytes(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        append_entry(&mut out, e);
    }
    out.extend(trailer());
    out
}

pub fn write_tar(path: &Path, entries: &[TarEntry]) -> io::Result<()> {
    std::fs::write(path, tar_bytes(entries))
}

/// Write one member whose data comes from a reader, without buffering it:
/// used for the 200 MB manifest fixture.
pub fn write_streamed(
    w: &mut BufWriter<File>,
    spec: &HeaderSpec,
    data: &mut dyn Read,
) -> io::Result<()> {
    w.write_all(&header_blocks(spec))?;
    let copied = io::copy(data, w)?;
    if copied != spec.size {
        return Err(io::Error::other(format!(
            "streamed {copied} bytes for {}, header says {}",
            spec.name, spec.size
        )));
    }
    w.write_all(&padding(spec.size))
}

/// Order of moby's `archive.Tar(dir)`: a lexical `filepath.Walk`, so a
/// directory's children come right after it, before any sibling that sorts
/// later (`<id>/layer.tar` before `<id>.json`).
pub fn sort_walk_order(entries: &mut [TarEntry]) {
    entries.sort_by(|a, b| components(&a.name).cmp(&components(&b.name)));
}

/// Order of containerd's exporter: plain byte order of the member names.
pub fn sort_name_order(entries: &mut [TarEntry]) {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
}

fn components(name: &str) -> Vec<&str> {
    name.trim_end_matches('/').split('/').collect()
}

/// gzip in memory. Writing into a `Vec` cannot fail, so an error is mapped
/// to an empty result rather than a panic; the self-test's digest checks
/// would expose it.
pub fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    use flate2::{Compression, write::GzEncoder};
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data)
        .and_then(|_| enc.finish())
        .unwrap_or_default()
}

/// `docker save | gzip > dst`: whole-archive compression, streamed.
pub fn gzip_file(src: &Path, dst: &Path) -> io::Result<()> {
    use flate2::{Compression, write::GzEncoder};
    let mut input = File::open(src)?;
    let mut enc = GzEncoder::new(BufWriter::new(File::create(dst)?), Compression::fast());
    io::copy(&mut input, &mut enc)?;
    enc.finish()?.flush()
}

/// Byte offset where member `index`'s data starts once `entries` are
/// written with `tar_bytes`; used to cut an archive mid-member.
pub fn data_offset(entries: &[TarEntry], index: usize) -> u64 {
    let mut out = Vec::new();
    for e in entries.iter().take(index) {
        append_entry(&mut out, e);
    }
    let header = entries
        .get(index)
        .map_or(0, |e| header_blocks(&e.spec()).len());
    (out.len() + header) as u64
}
