//! Deterministic content: a seeded PRNG and real tar layers built from it.

use super::tarw::{TarEntry, tar_bytes};

/// SplitMix64: tiny, fast, and every seed (including 0) gives a good stream.
/// Determinism matters more than quality: the same seed must give the same
/// digests on every run so failures are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish value in `0..n` (0 when `n == 0`); bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64().checked_rem(n).unwrap_or(0)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// Fixed layer mtime (2024-01-01T00:00:00Z) so layer digests never depend on
/// the clock.
pub const LAYER_MTIME: u64 = 1_704_067_200;

/// A real tar layer: one directory, `files` regular files whose contents add
/// up to `total_bytes` of random data, and a relative symlink. Data is padded
/// to 512-byte blocks and the archive ends with two zero blocks, as Go's
/// archive/tar (used by Docker and containerd) writes it.
pub fn layer_tar(seed: u64, total_bytes: usize, files: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let files = files.max(1);
    let dir = format!("srv/fixture-{seed}/");
    let mut entries = vec![
        TarEntry::dir("srv/", LAYER_MTIME),
        TarEntry::dir(&dir, LAYER_MTIME),
    ];
    for (i, size) in split_sizes(total_bytes, files).into_iter().enumerate() {
        let name = format!("{dir}file-{i}.bin");
        entries.push(TarEntry::file(&name, rng.bytes(size), LAYER_MTIME));
    }
    entries.push(TarEntry::symlink(
        &format!("{dir}latest"),
        "file-0.bin",
        LAYER_MTIME,
    ));
    tar_bytes(&entries)
}

/// Split `total` into `parts` sizes that differ by at most one byte.
fn split_sizes(total: usize, parts: usize) -> Vec<usize> {
    let base = total / parts;
    let extra = total % parts;
    (0..parts).map(|i| base + usize::from(i < extra)).collect()
}
