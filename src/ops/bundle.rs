//! An incremental bundle completed from a cache: the layers `save --exclude-from` left out
//! must be in the cache, checked before anything is written or uploaded, and are then read
//! from there while everything else comes from the bundle.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::archive::Archive;
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::image::digest::Digest;
use crate::image::{Artifact, Blob, BlobSource};

/// How many missing layers one error line names.
const LISTED: usize = 3;

/// Fails, naming the layers and the images that need them, when the bundle leaves out
/// layers of `images` (label, artifact) that `cache` does not hold.
pub fn require_excluded(
    archive: &Archive,
    cache: &Cache,
    images: &[(String, &Artifact)],
) -> Result<()> {
    let mut missing: BTreeMap<&Digest, Vec<&str>> = BTreeMap::new();
    for (label, artifact) in images {
        for blob in &artifact.blobs {
            if archive.excluded().contains_key(&blob.digest) && !cache.has_blob(blob) {
                let needers = missing.entry(&blob.digest).or_default();
                if !needers.contains(&label.as_str()) {
                    needers.push(label);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut listed: Vec<String> = missing
        .iter()
        .take(LISTED)
        .map(|(digest, needers)| format!("{digest} (needed by {})", needers.join(", ")))
        .collect();
    if missing.len() > LISTED {
        listed.push(format!("and {} more", missing.len() - LISTED));
    }
    Err(Error::input(format!(
        "this incremental bundle leaves out {} layers that the cache {} lacks: {}",
        missing.len(),
        cache.root().display(),
        listed.join(", ")
    ))
    .hint("extract the earlier bundle into this cache first, or save a bundle against this cache's `list --blobs`"))
}

/// Blobs from the bundle, and the layers it left out from the cache.
pub struct CompletedBundle {
    pub archive: Archive,
    pub cache: Cache,
}

impl BlobSource for CompletedBundle {
    fn open_blob(&self, blob: &Blob, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        match self.archive.excluded().contains_key(&blob.digest)
            && self.archive.blob_position(&blob.digest).is_none()
        {
            true => self.cache.open_blob(blob, offset),
            false => self.archive.open_blob(blob, offset),
        }
    }

    fn stream_position(&self, blob: &Blob) -> Option<u64> {
        self.archive.stream_position(blob)
    }

    fn announce(&self, blob: &Blob) -> Option<Box<dyn Send>> {
        self.archive.announce(blob)
    }
}
