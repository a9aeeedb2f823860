//! `save --exclude-from LIST`: which blobs the far side already has. LIST is what
//! `list --blobs` prints there (one digest a line), or an earlier bundle carried across
//! (every blob its images use counts as present, the layers an incremental bundle left out
//! included: the far side needed them to extract it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::archive::Archive;
use crate::archive::volume;
use crate::error::{Error, Result, io_error};
use crate::image::digest::Digest;
use crate::image::{self, Artifact, ManifestKind};

/// A digest list of a million blobs is about 72 MB; more is not a list of a cache.
const MAX_LIST_BYTES: u64 = 80 << 20;

/// The blobs every file in `lists` says are present.
pub fn present_blobs(lists: &[String]) -> Result<BTreeSet<Digest>> {
    let mut present = BTreeSet::new();
    for list in lists {
        let path = Path::new(list);
        if is_digest_list(path)? {
            present.extend(read_digest_list(path)?);
        } else {
            present.extend(bundle_blobs(path)?);
        }
    }
    Ok(present)
}

/// A digest list starts with a digest or a comment; anything else is taken for an archive.
fn is_digest_list(path: &Path) -> Result<bool> {
    if !volume::exists(path) {
        return Err(Error::input(format!("{} does not exist", path.display()))
            .hint("pass the output of `list --blobs` or an earlier bundle to --exclude-from"));
    }
    if !path.is_file() {
        return Ok(false);
    }
    let mut head = [0u8; 7];
    let mut file = File::open(path).map_err(|e| io_error("open", path, e))?;
    let n = file
        .read(&mut head)
        .map_err(|e| io_error("read", path, e))?;
    let head = &head[..n];
    Ok(head.is_empty() || head.starts_with(b"sha256:") || head.starts_with(b"#"))
}

fn read_digest_list(path: &Path) -> Result<Vec<Digest>> {
    let file = File::open(path).map_err(|e| io_error("open", path, e))?;
    let mut text = String::new();
    file.take(MAX_LIST_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| io_error("read", path, e))?;
    if text.len() as u64 > MAX_LIST_BYTES {
        return Err(Error::input(format!(
            "{} is larger than any list of blobs",
            path.display()
        )));
    }
    let mut digests = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let digest = Digest::parse(line).map_err(|_| {
            Error::input(format!(
                "{} line {}: not a digest",
                path.display(),
                number + 1
            ))
            .hint("the list holds one sha256:<64 hex digits> a line, as `list --blobs` prints")
        })?;
        digests.push(digest);
    }
    Ok(digests)
}

fn bundle_blobs(path: &Path) -> Result<Vec<Digest>> {
    let mut archive = Archive::open(path)?;
    let mut digests = Vec::new();
    for index in 0..archive.candidates().len() {
        let artifact = archive.artifact(index)?;
        digests.extend(artifact.blobs.iter().map(|b| b.digest.clone()));
        digests.extend(artifact.manifests.iter().map(|m| m.digest.clone()));
    }
    Ok(digests)
}

/// The layers (not configs, not manifests) of these images, with their sizes.
pub fn layers(artifacts: &[Artifact]) -> Result<BTreeMap<Digest, u64>> {
    let mut layers = BTreeMap::new();
    for artifact in artifacts {
        for raw in &artifact.manifests {
            if let ManifestKind::Image(manifest) =
                image::parse_manifest(&raw.bytes, &raw.media_type)?.1
            {
                for layer in &manifest.layers {
                    layers.insert(layer.digest.clone(), layer.size);
                }
            }
        }
    }
    Ok(layers)
}
