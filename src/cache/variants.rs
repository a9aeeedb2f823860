//! Compressed forms of uncompressed layers, remembered so that a later push (or `save`)
//! knows a layer's compressed digest before compressing anything: it can ask the registry
//! whether it has that blob, build the same manifest as the earlier run, and upload by
//! recompressing from any offset. One small JSON file per layer and recipe:
//!
//! ```text
//! CACHE_DIR/compressed/<layer hex>-<recipe key>.json
//! ```
//!
//! holding the layer digest and size, the recipe (algorithm, level, block size, encoder),
//! the compressed digest and size, and each block's compressed size. The layer media type
//! follows from the algorithm and the manifest it goes into (gzip: the Docker or OCI gzip
//! type, zstd: the OCI zstd type). A mapping is written only after its compressed blob was
//! completely produced and hashed; a file that does not parse, does not add up, or names
//! another encoder is ignored.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Cache;
use crate::compress::{Algorithm, Recipe};
use crate::image::digest::Digest;

const VERSION: u32 = 1;
const DIRECTORY: &str = "compressed";
/// A mapping holds one number per 4 MiB block: even a 100 GiB layer stays far below this.
const MAX_FILE: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub version: u32,
    /// The uncompressed layer.
    pub layer: Digest,
    pub layer_size: u64,
    /// `Recipe::id()`: what promises the same bytes.
    pub recipe: String,
    pub algorithm: Algorithm,
    pub level: i32,
    pub block_size: u64,
    /// The compressed blob.
    pub digest: Digest,
    pub size: u64,
    /// Compressed size of each block, in order.
    pub frames: Vec<u64>,
}

impl Variant {
    pub fn new(
        layer: &Digest,
        layer_size: u64,
        recipe: &Recipe,
        digest: Digest,
        frames: Vec<u64>,
    ) -> Variant {
        Variant {
            version: VERSION,
            layer: layer.clone(),
            layer_size,
            recipe: recipe.id(),
            algorithm: recipe.algorithm,
            level: recipe.level,
            block_size: recipe.block_size,
            size: frames.iter().sum(),
            digest,
            frames,
        }
    }

    fn is_consistent(&self, layer: &Digest, recipe: &Recipe) -> bool {
        self.version == VERSION
            && self.layer == *layer
            && self.recipe == recipe.id()
            && self.frames.len() as u64 == recipe.blocks(self.layer_size)
            && self.frames.iter().sum::<u64>() == self.size
    }
}

impl Cache {
    fn variant_path(&self, layer: &Digest, recipe: &Recipe) -> PathBuf {
        let recipe_digest = Digest::of(recipe.id().as_bytes());
        let key = &recipe_digest.hex()[..16];
        self.root()
            .join(DIRECTORY)
            .join(format!("{}-{key}.json", layer.hex()))
    }

    /// The remembered compressed form of `layer` made with `recipe`.
    pub fn variant(&self, layer: &Digest, recipe: &Recipe) -> Option<Variant> {
        let path = self.variant_path(layer, recipe);
        let file = fs::File::open(&path).ok()?;
        if file.metadata().ok()?.len() > MAX_FILE {
            return None;
        }
        // The length checked above can lie (a FIFO, a device): read no further than the cap.
        let variant: Variant =
            serde_json::from_reader(io::BufReader::new(io::Read::take(file, MAX_FILE))).ok()?;
        variant.is_consistent(layer, recipe).then_some(variant)
    }

    pub fn record_variant(&self, variant: &Variant) -> io::Result<()> {
        let recipe = Recipe {
            algorithm: variant.algorithm,
            level: variant.level,
            block_size: variant.block_size,
        };
        let mut bytes = serde_json::to_vec(variant).map_err(io::Error::other)?;
        bytes.push(b'\n');
        crate::cache::state::store(&self.variant_path(&variant.layer, &recipe), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_round_trip_per_recipe_and_reject_nonsense() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let gzip = Recipe::of(Algorithm::Gzip);
        let zstd = Recipe::of(Algorithm::Zstd);
        let layer = Digest::of(b"layer");
        let variant = Variant::new(&layer, 5 << 20, &gzip, Digest::of(b"gz"), vec![100, 20]);
        assert_eq!(variant.size, 120);
        cache.record_variant(&variant).unwrap();
        assert_eq!(cache.variant(&layer, &gzip), Some(variant.clone()));
        assert_eq!(cache.variant(&layer, &zstd), None);
        assert_eq!(cache.variant(&Digest::of(b"other"), &gzip), None);
        // A mapping whose frames do not add up is not trusted.
        let mut broken = variant.clone();
        broken.size = 999;
        cache.record_variant(&broken).unwrap();
        assert_eq!(cache.variant(&layer, &gzip), None);
        fs::write(cache.variant_path(&layer, &gzip), b"{\"version\":1,").unwrap();
        assert_eq!(cache.variant(&layer, &gzip), None);
    }
}
