//! Broken and hostile archives for error-path tests. Each is a valid
//! Docker archive (legacy or 25+ layout of `hostile_image()`) with exactly
//! one defect, so a test failure points at one missing check.

use std::fs::File;
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::path::Path;

use super::docker::{docker25_entries, legacy_entries, v1_layers};
use super::image::{TestImage, digest_hex};
use super::rng::{Rng, layer_tar};
use super::tarw::{
    HeaderSpec, Kind, TarEntry, data_offset, gzip_bytes, sort_walk_order, tar_bytes, trailer,
    write_streamed, write_tar,
};

/// The image every hostile archive is built from (two small layers).
pub fn hostile_image() -> (TestImage, Vec<String>) {
    let img = TestImage::new(0xBAD, &[16_384, 8_192], false, ("linux", "amd64"));
    (img, vec!["hostile/test:latest".to_string()])
}

fn docker25_sorted() -> Vec<TarEntry> {
    let (mut e, _) = docker25_entries(&[hostile_image()]);
    sort_walk_order(&mut e);
    e
}

fn legacy_sorted() -> Vec<TarEntry> {
    let (mut e, _) = legacy_entries(&[hostile_image()]);
    sort_walk_order(&mut e);
    e
}

fn position(entries: &[TarEntry], name: &str) -> io::Result<usize> {
    entries
        .iter()
        .position(|e| e.name == name)
        .ok_or_else(|| io::Error::other(format!("fixture bug: no member {name}")))
}

/// Member name of layer `i` in each layout.
fn docker25_layer_name(i: usize) -> String {
    let (img, _) = hostile_image();
    let id = img.layers.get(i).map_or("", |l| digest_hex(&l.diff_id));
    format!("blobs/sha256/{id}")
}

fn legacy_layer_name(i: usize) -> String {
    let (img, _) = hostile_image();
    let ids = v1_layers(&img);
    format!("{}/layer.tar", ids.get(i).map_or("", |l| l.id.as_str()))
}

/// Random bytes; the first byte is not gzip's 0x1f, so it is not mistaken
/// for a compressed stream either.
pub fn hostile_not_a_tar(path: &Path) -> io::Result<()> {
    let mut data = Rng::new(7).bytes(8192);
    data[0] = b'N';
    std::fs::write(path, data)
}

/// A zero-byte file.
pub fn hostile_empty(path: &Path) -> io::Result<()> {
    std::fs::write(path, b"")
}

/// Docker 25 archive cut in the middle of the first layer's data.
pub fn hostile_truncated_tar(path: &Path) -> io::Result<()> {
    let entries = docker25_sorted();
    let i = position(&entries, &docker25_layer_name(0))?;
    let size = match &entries[i].kind {
        Kind::File(d) => d.len() as u64,
        _ => 0,
    };
    // Off the 512-byte grid too, so the last header block is also partial.
    let cut = data_offset(&entries, i) + (size / 2 + 123).min(size.saturating_sub(1));
    let bytes = tar_bytes(&entries);
    std::fs::write(path, &bytes[..cut as usize])
}

/// `docker save | gzip` cut at half: the gzip trailer (CRC, size) is gone.
pub fn hostile_truncated_gzip(path: &Path) -> io::Result<()> {
    let gz = gzip_bytes(&tar_bytes(&docker25_sorted()));
    std::fs::write(path, &gz[..gz.len() / 2])
}

/// Blobs, `oci-layout` and `repositories`, but neither `manifest.json` nor
/// `index.json`.
pub fn hostile_no_manifest(path: &Path) -> io::Result<()> {
    let mut entries = docker25_sorted();
    entries.retain(|e| e.name != "manifest.json" && e.name != "index.json");
    write_tar(path, &entries)
}

/// Legacy archive whose `manifest.json` is cut mid-array.
pub fn hostile_invalid_json_manifest(path: &Path) -> io::Result<()> {
    let mut entries = legacy_sorted();
    let i = position(&entries, "manifest.json")?;
    entries[i].kind = Kind::File(
        br#"[{"Config":"x.json","RepoTags":["hostile/test:latest"],"Layers":["#.to_vec(),
    );
    write_tar(path, &entries)
}

/// Docker 25 archive missing the first layer blob that both `manifest.json`
/// and the OCI manifest reference.
pub fn hostile_missing_layer(path: &Path) -> io::Result<()> {
    let mut entries = docker25_sorted();
    let i = position(&entries, &docker25_layer_name(0))?;
    entries.remove(i);
    write_tar(path, &entries)
}

/// Docker 25 archive whose first layer blob has one byte flipped (in the
/// tar's end-of-archive zeros, so it is still a valid tar of the same
/// size): only verifying the digest catches it.
pub fn hostile_layer_digest_mismatch(path: &Path) -> io::Result<()> {
    let mut entries = docker25_sorted();
    let i = position(&entries, &docker25_layer_name(0))?;
    flip_last_byte(&mut entries[i].kind);
    write_tar(path, &entries)
}

/// Corrupts a layer tar in its end-of-archive zeros: same size, still a
/// valid tar, different digest.
fn flip_last_byte(kind: &mut Kind) {
    if let Kind::File(d) = kind
        && let Some(last) = d.last_mut()
    {
        *last ^= 0x01;
    }
}

/// Legacy archive whose first `layer.tar` is a different valid tar, so its
/// sha256 does not match `rootfs.diff_ids[0]` in the config.
pub fn hostile_diffid_mismatch_legacy(path: &Path) -> io::Result<()> {
    let mut entries = legacy_sorted();
    let i = position(&entries, &legacy_layer_name(0))?;
    entries[i].kind = Kind::File(layer_tar(0xE71, 4096, 1));
    write_tar(path, &entries)
}

/// Legacy archive whose first layer lives at `name` (stored under that
/// literal member name) and is referenced by that path in `manifest.json`.
fn legacy_with_layer_at(path: &Path, name: &str) -> io::Result<()> {
    let mut entries = legacy_sorted();
    let old = legacy_layer_name(0);
    let i = position(&entries, &old)?;
    entries[i].name = name.to_string();
    let m = position(&entries, "manifest.json")?;
    if let Kind::File(d) = &mut entries[m].kind {
        let text =
            String::from_utf8_lossy(d).replace(&format!("\"{old}\""), &format!("\"{name}\""));
        *d = text.into_bytes();
    }
    write_tar(path, &entries)
}

/// A member named `../evil`, used as the first layer path.
pub fn hostile_dotdot_entry(path: &Path) -> io::Result<()> {
    legacy_with_layer_at(path, "../evil")
}

/// A member named `/etc/x`, used as the first layer path.
pub fn hostile_absolute_entry(path: &Path) -> io::Result<()> {
    legacy_with_layer_at(path, "/etc/x")
}

/// Legacy archive whose first `<v1id>/layer.tar` is a symlink to
/// `../../etc/passwd` (outside the archive root). Real legacy archives do
/// use in-archive `../<id>/layer.tar` symlinks, so they cannot just be
/// rejected wholesale.
pub fn hostile_symlink_escape(path: &Path) -> io::Result<()> {
    let mut entries = legacy_sorted();
    let i = position(&entries, &legacy_layer_name(0))?;
    entries[i] = TarEntry::symlink(&entries[i].name, "../../etc/passwd", entries[i].mtime);
    write_tar(path, &entries)
}

/// Docker 25 archive where the first layer blob appears twice: the first
/// copy is correct, the second (same name, same size) is not. Readers that
/// keep the last copy see a digest mismatch; the right answer is to reject
/// the ambiguity.
pub fn hostile_duplicate_entries(path: &Path) -> io::Result<()> {
    let mut entries = docker25_sorted();
    let i = position(&entries, &docker25_layer_name(0))?;
    let mut dup = entries[i].clone();
    flip_last_byte(&mut dup.kind);
    entries.insert(i + 1, dup);
    write_tar(path, &entries)
}

/// Legacy archive whose `manifest.json` is a valid JSON array padded with
/// `whitespace_bytes` spaces before its single item (e.g. 200 MB). Written
/// streaming, so the fixture itself never holds it in memory.
pub fn hostile_huge_manifest(path: &Path, whitespace_bytes: u64) -> io::Result<()> {
    let entries = legacy_sorted();
    let i = position(&entries, "manifest.json")?;
    let item = match &entries[i].kind {
        Kind::File(d) => d.strip_prefix(b"[").unwrap_or(d).to_vec(),
        _ => Vec::new(),
    };
    // `item` still ends with "]\n" from the original array.
    let size = 1 + whitespace_bytes + item.len() as u64;
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    write_members(&mut w, &entries[..i])?;
    let spec = HeaderSpec {
        name: "manifest.json",
        typeflag: b'0',
        size,
        mode: 0o644,
        mtime: 0,
        link: "",
        uname: "",
    };
    let mut data = Cursor::new(b"[".to_vec())
        .chain(io::repeat(b' ').take(whitespace_bytes))
        .chain(Cursor::new(item));
    write_streamed(&mut w, &spec, &mut data)?;
    write_members(&mut w, &entries[i + 1..])?;
    w.write_all(&trailer())?;
    w.flush()
}

fn write_members(w: &mut BufWriter<File>, entries: &[TarEntry]) -> io::Result<()> {
    for e in entries {
        let bytes = tar_bytes(std::slice::from_ref(e));
        // Drop the per-call trailer: members are concatenated.
        w.write_all(&bytes[..bytes.len() - trailer().len()])?;
    }
    Ok(())
}
