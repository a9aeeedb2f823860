//! What an image consists of in a store: every blob it reaches (manifests, configs,
//! layers, through nested indexes), which of them are missing, its platforms and layer
//! count. `clean` keeps what some image reaches, `save` and `verify` walk one image's
//! blobs, `list` shows the totals.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::image::digest::Digest;
use crate::image::layout::{self, BlobStore};
use crate::image::{self, Descriptor, ManifestKind, Platform};

#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// Every blob the image needs, with the size its descriptor gives.
    pub blobs: BTreeMap<Digest, u64>,
    /// Blobs named by a descriptor that the store lacks (and has no URL for).
    pub missing: Vec<Digest>,
    /// Platforms of the image manifests, in index order.
    pub platforms: Vec<Platform>,
    /// Layers of every image manifest (attestations excluded).
    pub layers: usize,
    /// Every blob once, in the order the walk met it: each manifest, then its config and
    /// layers (`list --verbose` shows them so).
    pub in_order: Vec<Descriptor>,
}

impl Reach {
    pub fn size(&self) -> u64 {
        self.blobs.values().sum()
    }

    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }

    fn add(&mut self, descriptor: &Descriptor) {
        let new = self
            .blobs
            .insert(descriptor.digest.clone(), descriptor.size)
            .is_none();
        if new {
            self.in_order.push(descriptor.clone());
        }
    }
}

/// Walks the image `descriptor` names (each manifest once, however often it is named).
/// A manifest that is present but unreadable is an error: what it references cannot be
/// known, so nothing may be decided from the walk.
pub fn reach(store: &dyn BlobStore, descriptor: &Descriptor) -> Result<Reach> {
    let graph = layout::walk_store(store, descriptor)?;
    let mut reach = Reach::default();
    for node in &graph.nodes {
        reach.add(&node.descriptor);
        let Some(parsed) = &node.content else {
            reach.missing.push(node.descriptor.digest.clone());
            continue;
        };
        let ManifestKind::Image(manifest) = &parsed.kind else {
            continue;
        };
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let foreign = blob.urls.as_ref().is_some_and(|u| !u.is_empty());
            match store.blob_size(&blob.digest) {
                Some(_) => reach.add(blob),
                None if foreign => {}
                None => {
                    reach.add(blob);
                    reach.missing.push(blob.digest.clone());
                }
            }
        }
        if let Some(platform) = image_platform(store, &manifest.config, &node.descriptor) {
            reach.layers += manifest.layers.len();
            reach.platforms.push(platform);
        }
    }
    reach.missing.sort();
    reach.missing.dedup();
    Ok(reach)
}

/// The platform of an image manifest: from its config, else from the descriptor that
/// names it. Attestations (`unknown/unknown`, non-image configs) have none.
fn image_platform(
    store: &dyn BlobStore,
    config: &Descriptor,
    manifest: &Descriptor,
) -> Option<Platform> {
    let from_descriptor = manifest
        .platform
        .clone()
        .filter(|p| p.os != "unknown" && !p.os.is_empty());
    let is_image_config = config.media_type == image::media::OCI_CONFIG
        || config.media_type == image::media::DOCKER_CONFIG;
    if !is_image_config {
        return None;
    }
    store
        .blob_size(&config.digest)
        .and_then(|_| layout::read_verified(store, config).ok())
        .and_then(|bytes| image::parse_config(&bytes).ok())
        .map(|c| c.platform())
        .filter(|p| !p.os.is_empty())
        .or(from_descriptor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::test_doubles::{MemoryStore, descriptor};

    fn image(store: &mut MemoryStore, arch: &str, layer: &[u8]) -> Descriptor {
        let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).into_bytes();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": image::media::OCI_MANIFEST,
            "config": descriptor(image::media::OCI_CONFIG, &config),
            "layers": [descriptor(image::media::OCI_LAYER, layer)],
        })
        .to_string()
        .into_bytes();
        store.0.insert(Digest::of(&config), config);
        store.0.insert(Digest::of(layer), layer.to_vec());
        store.0.insert(Digest::of(&manifest), manifest.clone());
        descriptor(image::media::OCI_MANIFEST, &manifest)
    }

    #[test]
    fn an_index_reaches_every_platform_and_shared_layers_once() {
        let mut store = MemoryStore::default();
        let amd = image(&mut store, "amd64", b"shared");
        let arm = image(&mut store, "arm64", b"shared");
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [amd, arm]})
            .to_string()
            .into_bytes();
        store.0.insert(Digest::of(&index), index.clone());
        let reach = reach(&store, &descriptor(image::media::OCI_INDEX, &index)).unwrap();
        // index + 2 manifests + 2 configs + 1 shared layer
        assert_eq!(reach.blobs.len(), 6);
        assert_eq!(reach.layers, 2);
        let platforms: Vec<String> = reach.platforms.iter().map(|p| p.to_string()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
        assert!(reach.is_complete());
    }

    #[test]
    fn missing_blobs_are_listed_and_a_corrupt_manifest_is_an_error() {
        let mut store = MemoryStore::default();
        let amd = image(&mut store, "amd64", b"layer");
        store.0.remove(&Digest::of(b"layer"));
        let reach = reach(&store, &amd).unwrap();
        assert_eq!(reach.missing, vec![Digest::of(b"layer")]);
        store.0.insert(amd.digest.clone(), b"{}".to_vec());
        assert!(super::reach(&store, &amd).is_err());
    }
}
