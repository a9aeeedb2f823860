//! A guard on the tar stream that refuses oversized extension headers before the tar
//! reader sees them. GNU long names (`L`, `K`) and PAX records (`x`) are read whole by the
//! tar crate, so a 2 MB `.tar.gz` carrying a 500 MB "name" would cost 1.5 GB of memory.
//! The guard follows the header positions in the bytes it passes on (header, data
//! rounded to 512, next header; a PAX `size` record moves the next one) and fails the
//! read that would deliver such a header. Where it cannot follow the stream (a sparse
//! entry, a seek it did not expect, a block that is not a valid header) it steps aside:
//! the tar reader then reports whatever is wrong, and it never refuses a valid archive.

use std::io::{self, Read, Seek, SeekFrom};

/// Real extension headers are a few hundred bytes (a long path, a few PAX records).
pub const MAX_EXTENSION_BYTES: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// The error a guard fails a read with; [`HeaderGuard::refusal`] finds it again.
#[derive(Debug)]
pub struct ExtensionTooLarge {
    pub kind: &'static str,
    pub size: u64,
}

impl std::fmt::Display for ExtensionTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a {} header of {} bytes (more than {MAX_EXTENSION_BYTES})",
            self.kind, self.size
        )
    }
}

impl std::error::Error for ExtensionTooLarge {}

pub struct HeaderGuard<R> {
    inner: R,
    /// Position in the tar stream of the next byte `inner` delivers.
    position: u64,
    /// Where the next header starts; `None` once the guard stepped aside.
    next_header: Option<u64>,
    header: Vec<u8>,
    /// The data of a PAX header being collected (its `size` record moves the next header).
    pax: Option<(u64, Vec<u8>)>,
    /// A PAX `size` that applies to the next entry.
    pax_size: Option<u64>,
}

impl<R> HeaderGuard<R> {
    pub fn new(inner: R) -> HeaderGuard<R> {
        HeaderGuard {
            inner,
            position: 0,
            next_header: Some(0),
            header: Vec::with_capacity(BLOCK as usize),
            pax: None,
            pax_size: None,
        }
    }

    /// The guard's refusal, if `err` is one.
    pub fn refusal(err: &io::Error) -> Option<&ExtensionTooLarge> {
        err.get_ref()?.downcast_ref::<ExtensionTooLarge>()
    }

    /// Whether the stream is in the middle of a header or of an entry's data.
    fn inside_an_entry(&self) -> bool {
        !self.header.is_empty() || self.next_header.is_some_and(|next| self.position < next)
    }

    fn step_aside(&mut self) {
        self.next_header = None;
        self.pax = None;
    }

    /// Looks at `bytes`, which start at `self.position`.
    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let mut at = self.position;
        while !bytes.is_empty() {
            let Some(next) = self.next_header else {
                return Ok(());
            };
            if let Some((start, data)) = &mut self.pax {
                let end = *start + data.capacity() as u64;
                if at < end {
                    let take = ((end - at) as usize).min(bytes.len());
                    data.extend_from_slice(&bytes[..take]);
                    at += take as u64;
                    bytes = &bytes[take..];
                    if at == end {
                        let (_, data) = self.pax.take().expect("checked above");
                        self.pax_size = pax_size(&data);
                    }
                    continue;
                }
            }
            if at < next {
                let skip = (next - at).min(bytes.len() as u64);
                at += skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            let take = (BLOCK as usize - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            at += take as u64;
            bytes = &bytes[take..];
            if self.header.len() == BLOCK as usize {
                let header = std::mem::take(&mut self.header);
                self.header_complete(&header, next)?;
            }
        }
        Ok(())
    }

    fn header_complete(&mut self, header: &[u8], start: u64) -> io::Result<()> {
        let data_start = start + BLOCK;
        if header.iter().all(|&b| b == 0) {
            self.next_header = Some(data_start);
            return Ok(());
        }
        let (Some(stated), true) = (header_size(header), checksum_ok(header)) else {
            self.step_aside();
            return Ok(());
        };
        let typeflag = header[156];
        let extension = match typeflag {
            b'L' => Some("GNU long name"),
            b'K' => Some("GNU long link name"),
            b'x' | b'g' => Some("PAX extended"),
            _ => None,
        };
        let size = match extension {
            Some(kind) => {
                if stated > MAX_EXTENSION_BYTES {
                    self.step_aside();
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        ExtensionTooLarge { kind, size: stated },
                    ));
                }
                if typeflag == b'x' {
                    self.pax = Some((data_start, Vec::with_capacity(stated as usize)));
                    if stated == 0 {
                        self.pax = None;
                    }
                }
                stated
            }
            None => {
                if typeflag == b'S' {
                    // Sparse entries carry further header blocks; the tar reader knows them.
                    self.step_aside();
                    return Ok(());
                }
                self.pax_size.take().unwrap_or(stated)
            }
        };
        let padded = size.checked_add(BLOCK - 1).map(|s| s & !(BLOCK - 1));
        match padded.and_then(|p| data_start.checked_add(p)) {
            Some(next) => self.next_header = Some(next),
            None => self.step_aside(),
        }
        Ok(())
    }
}

/// A header's size field: octal, or GNU base-256 for large sizes.
fn header_size(header: &[u8]) -> Option<u64> {
    let field = &header[124..136];
    if field[0] & 0x80 != 0 {
        let mut value: u64 = 0;
        for &b in &field[4..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return (field[..4] == [0x80, 0, 0, 0]).then_some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

fn checksum_ok(header: &[u8]) -> bool {
    let sum: u32 = header[..148]
        .iter()
        .chain(&header[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * 32;
    let text = String::from_utf8_lossy(&header[148..156]);
    let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
    u32::from_str_radix(digits, 8).is_ok_and(|stated| stated == sum)
}

/// The `size` record of PAX extended header data: `"<len> <key>=<value>\n"` records, each
/// `len` bytes long (values may hold newlines, so records are split by length).
fn pax_size(mut data: &[u8]) -> Option<u64> {
    let mut size = None;
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ')?;
        let length: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        if length <= space || length > data.len() {
            return size;
        }
        let record = &data[space + 1..length];
        if let Some(value) = record.strip_prefix(b"size=") {
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            size = std::str::from_utf8(value).ok()?.parse().ok();
        }
        data = &data[length..];
    }
    size
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.inside_an_entry() {
            // The tar reader reports a short entry as an untyped "unexpected EOF"; the
            // guard knows where the entry ends, so the truncation keeps its kind.
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.observe(&buf[..n])?;
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for HeaderGuard<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let position = self.inner.seek(to)?;
        // The tar reader seeks over entry data to the next header; anything else (or a
        // seek into the middle of a header or PAX record) leaves the guard blind.
        let expected = self.next_header == Some(position) && self.header.is_empty();
        if !expected && (self.pax.is_some() || position > self.next_header.unwrap_or(0)) {
            self.step_aside();
        }
        self.position = position;
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, typeflag: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(typeflag));
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn read_all(bytes: Vec<u8>) -> io::Result<Vec<String>> {
        let mut archive = tar::Archive::new(HeaderGuard::new(io::Cursor::new(bytes)));
        let mut names = Vec::new();
        for entry in archive.entries()? {
            names.push(entry?.path()?.display().to_string());
        }
        Ok(names)
    }

    #[test]
    fn a_long_name_over_the_cap_is_refused_before_it_is_read() {
        let mut tar = header("././@LongLink", b'L', MAX_EXTENSION_BYTES + 1);
        tar.extend(vec![b'a'; 4096]);
        let err = read_all(tar).unwrap_err();
        let refusal = HeaderGuard::<io::Empty>::refusal(&err).expect("the guard's error");
        assert_eq!(refusal.size, MAX_EXTENSION_BYTES + 1);
        assert_eq!(refusal.kind, "GNU long name");
    }

    #[test]
    fn a_pax_header_over_the_cap_is_refused_after_valid_entries() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_cksum();
        builder.append_data(&mut h, "first", &b"abc"[..]).unwrap();
        let mut tar = builder.into_inner().unwrap();
        tar.truncate(tar.len() - 1024);
        tar.extend(header("pax", b'x', 600 << 20));
        let err = read_all(tar).unwrap_err();
        assert_eq!(
            HeaderGuard::<io::Empty>::refusal(&err).unwrap().kind,
            "PAX extended"
        );
    }

    #[test]
    fn valid_long_names_pass() {
        let long = "d/".repeat(200) + "file";
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        builder.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        assert_eq!(read_all(tar).unwrap(), vec![long]);
    }

    #[test]
    fn a_pax_size_moves_the_next_header() {
        // An entry whose header says 0 bytes but whose PAX record says 1 GB: what
        // follows is its data, even when it looks like a huge long-name header.
        let pax = b"19 size=1000000000\n".to_vec();
        let mut pax_block = pax.clone();
        pax_block.resize(512, 0);
        let entry = header("big", b'0', 0);
        let lookalike = header("inside-data", b'L', 900 << 20);
        let read = |parts: &[&[u8]]| {
            let mut guard = HeaderGuard::new(io::Cursor::new(parts.concat()));
            guard.read_to_end(&mut Vec::new())
        };
        let pax_header = header("pax", b'x', pax.len() as u64);
        // Not refused: the lookalike is data, and the stream ends inside that data.
        let err = read(&[&pax_header, &pax_block, &entry, &lookalike]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        let err = read(&[&entry, &lookalike]).unwrap_err();
        assert!(HeaderGuard::<io::Empty>::refusal(&err).is_some(), "{err}");
    }

    #[test]
    fn an_archive_cut_inside_an_entry_reads_as_unexpected_eof() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5000);
        h.set_mode(0o644);
        builder
            .append_data(&mut h, "layer", &[7u8; 5000][..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        for cut in [100, 512 + 4000] {
            let err = read_all(tar[..cut].to_vec()).unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::UnexpectedEof,
                "cut at {cut}: {err}"
            );
        }
        // Ending at an entry boundary without the two zero blocks is how some tools end.
        let whole_entry = 512 + 5000usize.next_multiple_of(512);
        assert_eq!(read_all(tar[..whole_entry].to_vec()).unwrap(), ["layer"]);
    }

    #[test]
    fn size_fields_octal_and_base_256() {
        let h = header("x", b'0', 0o777);
        assert_eq!(header_size(&h), Some(0o777));
        let mut big = tar::Header::new_gnu();
        big.set_size(1 << 40);
        assert_eq!(header_size(big.as_bytes()), Some(1 << 40));
        assert!(checksum_ok(&h));
        assert_eq!(pax_size(b"18 size=123456789\n"), Some(123_456_789));
        let tricky = b"28 path=a\n18 size=999999999\n18 size=000000042\n";
        assert_eq!(pax_size(tricky), Some(42));
    }
}
