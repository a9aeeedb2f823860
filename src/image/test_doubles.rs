//! In-memory stand-ins for storage, shared by the unit tests of several modules.

use std::collections::HashMap;
use std::io::{self, Read};

use crate::error::{Error, Result};
use crate::image::digest::Digest;
use crate::image::layout::BlobStore;
use crate::image::{Blob, BlobSource};

/// Blobs held in memory by digest, for code that reads manifests and configs.
#[derive(Default)]
pub struct MemoryStore(pub HashMap<Digest, Vec<u8>>);

impl MemoryStore {
    pub fn add(&mut self, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        self.0.insert(digest.clone(), bytes.to_vec());
        digest
    }
}

impl BlobStore for MemoryStore {
    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.0.get(digest).map(|b| b.len() as u64)
    }
    fn read_small_blob(&self, digest: &Digest, _limit: u64) -> Result<Vec<u8>> {
        self.0
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::input("missing"))
    }
}

/// One layer's bytes in memory, served whatever blob is asked for.
pub struct OneLayer(pub Vec<u8>);

impl BlobSource for OneLayer {
    fn open_blob(&self, _: &Blob, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::Cursor::new(
            self.0[offset as usize..].to_vec(),
        )))
    }
}

/// Deterministic bytes that do not compress: what a layer of random data looks like to gzip.
pub fn noise(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..size)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// The descriptor of `bytes` as a blob of `media_type`.
pub fn descriptor(media_type: &str, bytes: &[u8]) -> crate::image::Descriptor {
    crate::image::Descriptor {
        media_type: media_type.to_string(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        platform: None,
        annotations: None,
        urls: None,
    }
}

/// The blob `bytes` would be.
pub fn blob(bytes: &[u8]) -> Blob {
    Blob {
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        media_type: String::new(),
    }
}
