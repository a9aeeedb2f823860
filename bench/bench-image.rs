//! Writes a benchmark image archive in the Docker 25+ `docker save` layout (an OCI layout
//! plus `manifest.json`), streaming to disk so a 4 GiB layer never sits in memory:
//!
//! `bench-image OUT.tar NAME:TAG [--blobs DIR] [--compressible] SIZE...`
//!
//! Each SIZE (bytes; K, M, G suffixes are binary) becomes one uncompressed layer of exactly
//! that size (a multiple of 512, at least 2048), holding one file of pseudo-random bytes.
//! The bytes are incompressible, so no client gains by compressing, and deterministic
//! (seeded by the image name and the layer's position), so every run pushes the same
//! digests. With `--compressible` the file is text instead (lines of words and numbers
//! drawn from the same generator), which gzip shrinks to about a third, like the files of
//! real layers: what the compression rows push. With `--blobs DIR`, every blob is also written to `DIR/<hex digest>`, the OCI
//! manifest to `DIR/manifest.json` and one `digest size` line per blob to `DIR/list`: what
//! the curl ceiling uploads.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use docker_image_pusher::digest::{Digest, Hasher};
use serde_json::json;

const BLOCK: u64 = 512;
/// One tar header before the layer's file, two zero blocks after it.
const LAYER_TAR_OVERHEAD: u64 = 3 * BLOCK;
const BUFFER: usize = 1 << 20;

fn main() {
    if let Err(message) = run() {
        eprintln!("bench-image: {message}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (Some(out), Some(name)) = (args.next(), args.next()) else {
        return Err("usage: bench-image OUT.tar NAME:TAG [--blobs DIR] SIZE...".into());
    };
    let mut blobs_dir = None;
    let mut sizes = Vec::new();
    let mut content = Content::Random;
    while let Some(arg) = args.next() {
        if arg == "--compressible" {
            content = Content::Text;
        } else if arg == "--blobs" {
            blobs_dir = Some(PathBuf::from(
                args.next().ok_or("--blobs needs a directory")?,
            ));
        } else {
            sizes.push(parse_layer_size(&arg)?);
        }
    }
    if sizes.is_empty() {
        return Err("name at least one layer size".into());
    }
    let (repo, tag) = name.rsplit_once(':').unwrap_or((&name, "latest"));
    write_image(
        Path::new(&out),
        repo,
        tag,
        &sizes,
        content,
        blobs_dir.as_deref(),
    )
    .map_err(|e| format!("writing {out}: {e}"))
}

/// What the layers' files hold.
#[derive(Clone, Copy)]
enum Content {
    Random,
    Text,
}

fn parse_layer_size(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    let size = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("not a size: {text}"))?;
    if size % BLOCK != 0 || size < LAYER_TAR_OVERHEAD + BLOCK {
        return Err(format!(
            "layer size {text} must be a multiple of 512 and at least 2048"
        ));
    }
    Ok(size)
}

fn write_image(
    out: &Path,
    repo: &str,
    tag: &str,
    sizes: &[u64],
    content: Content,
    blobs_dir: Option<&Path>,
) -> io::Result<()> {
    if let Some(dir) = blobs_dir {
        std::fs::create_dir_all(dir)?;
    }
    let mut archive = File::create(out)?;
    let mut layers = Vec::new();
    for (index, &size) in sizes.iter().enumerate() {
        let seed = seed_for(repo, tag, index);
        let digest = write_layer(&mut archive, size, seed, index, content, blobs_dir)?;
        layers.push((digest, size));
    }

    let diff_ids: Vec<&Digest> = layers.iter().map(|(d, _)| d).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created_by": "bench-image"})).collect::<Vec<_>>(),
    }))?;
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|(d, size)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size
        })).collect::<Vec<_>>(),
    }))?;
    let manifest_digest = Digest::of(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"io.containerd.image.name": format!("docker.io/{repo}:{tag}"), "org.opencontainers.image.ref.name": tag},
        }],
    }))?;
    let docker_manifest = serde_json::to_vec(&json!([{
        "Config": blob_path(&config_digest),
        "RepoTags": [format!("{repo}:{tag}")],
        "Layers": layers.iter().map(|(d, _)| blob_path(d)).collect::<Vec<_>>(),
    }]))?;

    let small_entries = [
        (blob_path(&config_digest), &config),
        (blob_path(&manifest_digest), &manifest),
        ("index.json".to_string(), &index),
        ("manifest.json".to_string(), &docker_manifest),
    ];
    for (path, data) in small_entries {
        append_entry(&mut archive, &path, data)?;
    }
    append_entry(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    archive.write_all(&[0u8; 2 * BLOCK as usize])?;
    archive.sync_all()?;

    if let Some(dir) = blobs_dir {
        std::fs::write(dir.join(config_digest.hex()), &config)?;
        std::fs::write(dir.join("manifest.json"), &manifest)?;
        let mut list = String::new();
        for (digest, size) in &layers {
            list.push_str(&format!("{digest} {size}\n"));
        }
        list.push_str(&format!("{config_digest} {}\n", config.len()));
        std::fs::write(dir.join("list"), list)?;
    }
    println!(
        "{}: {repo}:{tag} ({manifest_digest}), {} layers, {} bytes of blobs",
        out.display(),
        layers.len(),
        layers.iter().map(|(_, s)| s).sum::<u64>() + config.len() as u64
    );
    Ok(())
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Writes one layer blob as an archive entry. Its name is its digest, known only once the
/// bytes are written, so the entry's header is written last, in the space left for it.
fn write_layer(
    archive: &mut File,
    size: u64,
    seed: u64,
    index: usize,
    content: Content,
    blobs_dir: Option<&Path>,
) -> io::Result<Digest> {
    let header_at = archive.stream_position()?;
    archive.write_all(&[0u8; BLOCK as usize])?;
    let mut copy = match blobs_dir {
        Some(dir) => Some((dir.join(".partial"), File::create(dir.join(".partial"))?)),
        None => None,
    };
    let mut hasher = Hasher::new();
    let mut emit = |bytes: &[u8]| -> io::Result<()> {
        hasher.update(bytes);
        archive.write_all(bytes)?;
        if let Some((_, file)) = copy.as_mut() {
            file.write_all(bytes)?;
        }
        Ok(())
    };

    let payload = size - LAYER_TAR_OVERHEAD;
    let mut file_header = tar::Header::new_gnu();
    file_header.set_path(format!("data/layer-{index}.bin"))?;
    file_header.set_size(payload);
    file_header.set_mode(0o644);
    file_header.set_mtime(1_700_000_000);
    file_header.set_cksum();
    emit(file_header.as_bytes())?;
    let mut random = XorShift(seed | 1);
    let mut buffer = vec![0u8; BUFFER];
    let mut left = payload;
    while left > 0 {
        let n = left.min(BUFFER as u64) as usize;
        match content {
            Content::Random => random.fill(&mut buffer[..n]),
            Content::Text => random.fill_text(&mut buffer[..n]),
        }
        emit(&buffer[..n])?;
        left -= n as u64;
    }
    emit(&[0u8; 2 * BLOCK as usize])?;
    let digest = hasher.digest();

    if let Some((partial, file)) = copy {
        file.sync_all()?;
        std::fs::rename(
            partial,
            blobs_dir.unwrap_or(Path::new(".")).join(digest.hex()),
        )?;
    }
    let end = archive.stream_position()?;
    archive.seek(SeekFrom::Start(header_at))?;
    archive.write_all(entry_header(&blob_path(&digest), size)?.as_bytes())?;
    archive.seek(SeekFrom::Start(end))?;
    Ok(digest)
}

fn append_entry(archive: &mut File, path: &str, data: &[u8]) -> io::Result<()> {
    archive.write_all(entry_header(path, data.len() as u64)?.as_bytes())?;
    archive.write_all(data)?;
    let padding = (BLOCK - data.len() as u64 % BLOCK) % BLOCK;
    archive.write_all(&vec![0u8; padding as usize])
}

fn entry_header(path: &str, size: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_gnu();
    header.set_path(path)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    Ok(header)
}

/// Distinct per image and layer, so no two layers share a digest.
fn seed_for(repo: &str, tag: &str, index: usize) -> u64 {
    let digest = Digest::of(format!("{repo}:{tag}#{index}").as_bytes());
    u64::from_str_radix(&digest.hex()[..16], 16).unwrap_or(0x9e37_79b9_7f4a_7c15)
}

/// xorshift64: fast enough to outrun the disk, and incompressible to gzip.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Lines of words and numbers: text that compresses about as well as real layers.
    fn fill_text(&mut self, buffer: &mut [u8]) {
        const WORDS: [&str; 32] = [
            "the", "image", "layer", "registry", "push", "config", "manifest", "digest", "blob",
            "upload", "chunk", "session", "token", "archive", "index", "platform", "linux",
            "amd64", "arm64", "library", "binary", "shared", "object", "symbol", "section",
            "header", "offset", "length", "value", "error", "return", "result",
        ];
        let mut at = 0;
        while at < buffer.len() {
            let x = self.next();
            let line = format!(
                "{} {} {}={:x} {}\n",
                WORDS[(x & 31) as usize],
                WORDS[((x >> 5) & 31) as usize],
                WORDS[((x >> 10) & 31) as usize],
                (x >> 16) & 0xffff,
                (x >> 32) % 100_000
            );
            let n = line.len().min(buffer.len() - at);
            buffer[at..at + n].copy_from_slice(&line.as_bytes()[..n]);
            at += n;
        }
    }

    fn fill(&mut self, buffer: &mut [u8]) {
        for word in buffer.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            word.copy_from_slice(&self.0.to_le_bytes()[..word.len()]);
        }
    }
}
