//! Reading an OCI image layout (`index.json` + `blobs/sha256/...`), wherever it is stored:
//! inside a Docker 25+ `docker save` archive, an OCI archive, or the local cache directory.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{
    self, Artifact, Blob, Descriptor, Index, MAX_JSON_BYTES, ManifestKind, RawManifest, media,
};
use crate::sanitize::sanitize;

/// Content-addressed read access, the one thing layout reading needs from its storage.
pub trait BlobStore {
    /// The stored size of a blob, or `None` when the store does not have it.
    fn blob_size(&self, digest: &Digest) -> Option<u64>;
    /// Reads a small blob whole (manifests, configs), at most `limit` bytes.
    fn read_small_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>>;
}

/// Reads a small blob and checks it against its descriptor, so a damaged manifest or config
/// is reported as such instead of producing a confusing parse error or a wrong push.
pub fn read_verified(store: &dyn BlobStore, descriptor: &Descriptor) -> Result<Vec<u8>> {
    let bytes = store.read_small_blob(&descriptor.digest, MAX_JSON_BYTES)?;
    let actual = Digest::of(&bytes);
    if actual != descriptor.digest {
        return Err(Error::input(format!(
            "blob {} is corrupt: its content hashes to {actual}",
            descriptor.digest
        ))
        .hint("the archive is damaged; save or copy it again"));
    }
    if bytes.len() as u64 != descriptor.size {
        return Err(Error::input(format!(
            "blob {} is {} bytes but its descriptor says {}",
            descriptor.digest,
            bytes.len(),
            descriptor.size
        )));
    }
    Ok(bytes)
}

/// Parses `index.json`, the entry point of a layout.
pub fn parse_top_index(bytes: &[u8]) -> Result<Index> {
    let index: Index = serde_json::from_slice(bytes)
        .map_err(|e| Error::input(format!("index.json is not a valid OCI index: {e}")))?;
    if index.schema_version != 2 {
        return Err(Error::input(format!(
            "index.json has schemaVersion {}, expected 2",
            index.schema_version
        )));
    }
    Ok(index)
}

/// The names a top-level `index.json` entry is known by (full reference and/or tag).
pub fn descriptor_names(descriptor: &Descriptor) -> Vec<String> {
    [
        image::ANNOTATION_CONTAINERD_NAME,
        image::ANNOTATION_REF_NAME,
    ]
    .iter()
    .filter_map(|key| descriptor.annotation(key))
    .map(str::to_string)
    .collect()
}

/// What resolving a descriptor found: everything, or which blobs the store lacks.
enum Resolved {
    Complete(Artifact),
    Missing(Vec<Digest>),
}

/// Builds the artifact a descriptor names. An index whose platforms are all present is
/// pushed whole (same digest as the source). Docker's containerd image store saves only the
/// local platform of a multi-platform index; then the platforms that are present are pushed
/// and the artifact says so in its notes.
pub fn resolve(store: &dyn BlobStore, descriptor: &Descriptor) -> Result<Artifact> {
    match resolve_descriptor(store, descriptor)? {
        Resolved::Complete(artifact) => Ok(artifact),
        Resolved::Missing(missing) => Err(missing_error(descriptor, &missing)),
    }
}

fn missing_error(descriptor: &Descriptor, missing: &[Digest]) -> Error {
    let list: Vec<String> = missing.iter().take(3).map(|d| d.to_string()).collect();
    let more = missing.len().saturating_sub(3);
    let suffix = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Error::input(format!(
        "image {} is incomplete: the source lacks blob {}{suffix}",
        descriptor.digest,
        list.join(", ")
    ))
    .hint("the archive or cache was written partially; save or pull the image again")
}

fn resolve_descriptor(store: &dyn BlobStore, descriptor: &Descriptor) -> Result<Resolved> {
    if store.blob_size(&descriptor.digest).is_none() {
        return Ok(Resolved::Missing(vec![descriptor.digest.clone()]));
    }
    let bytes = read_verified(store, descriptor)?;
    let (media_type, kind) = image::parse_manifest(&bytes, &descriptor.media_type)
        .map_err(|e| e.context(format!("manifest {}", descriptor.digest)))?;
    match kind {
        ManifestKind::Image(manifest) => resolve_image(store, media_type, bytes, &manifest),
        ManifestKind::Index(index) => resolve_index(store, media_type, bytes, &index),
    }
}

fn resolve_image(
    store: &dyn BlobStore,
    media_type: String,
    bytes: Vec<u8>,
    manifest: &image::Manifest,
) -> Result<Resolved> {
    let mut missing = Vec::new();
    let mut artifact = Artifact {
        blobs: Vec::new(),
        manifests: Vec::new(),
        notes: Vec::new(),
    };
    for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
        match store.blob_size(&descriptor.digest) {
            Some(size) if size == descriptor.size => {
                artifact.add_blob(Blob::from_descriptor(descriptor))
            }
            Some(size) => {
                return Err(Error::input(format!(
                    "blob {} is {size} bytes but the manifest says {}",
                    descriptor.digest, descriptor.size
                ))
                .hint("the source is damaged; save or copy it again"));
            }
            // Non-distributable layers (Windows base layers) live at their URLs, not in
            // archives, and registries are expected to fetch them from there.
            None if descriptor.urls.as_ref().is_some_and(|u| !u.is_empty()) => {}
            None => missing.push(descriptor.digest.clone()),
        }
    }
    if !missing.is_empty() {
        return Ok(Resolved::Missing(missing));
    }
    let mut raw = RawManifest::new(media_type, bytes);
    if is_image_config(&manifest.config.media_type) {
        let config = image::parse_config(&read_verified(store, &manifest.config)?)?;
        let diff_ids = config.diff_ids().len();
        if config.rootfs.is_some() && diff_ids != manifest.layers.len() {
            return Err(Error::input(format!(
                "manifest {} lists {} layers but its config has {diff_ids} diff_ids",
                raw.digest,
                manifest.layers.len()
            )));
        }
        raw.platform = Some(config.platform());
    }
    artifact.manifests.push(raw);
    Ok(Resolved::Complete(artifact))
}

fn is_image_config(media_type: &str) -> bool {
    media_type == media::OCI_CONFIG || media_type == media::DOCKER_CONFIG
}

/// Docker marks build attestations (SBOM, provenance) as index entries of their own that
/// point at the image they describe.
fn attestation_subject(descriptor: &Descriptor) -> Option<&str> {
    match descriptor.annotation("vnd.docker.reference.type") {
        Some("attestation-manifest") => descriptor.annotation("vnd.docker.reference.digest"),
        _ => None,
    }
}

fn resolve_index(
    store: &dyn BlobStore,
    media_type: String,
    bytes: Vec<u8>,
    index: &Index,
) -> Result<Resolved> {
    let mut complete: Vec<(&Descriptor, Artifact)> = Vec::new();
    let mut missing: Vec<(&Descriptor, Vec<Digest>)> = Vec::new();
    for child in &index.manifests {
        match resolve_descriptor(store, child)? {
            Resolved::Complete(artifact) => complete.push((child, artifact)),
            Resolved::Missing(digests) => missing.push((child, digests)),
        }
    }
    if missing.is_empty() {
        let mut artifact = merge(complete.into_iter().map(|(_, a)| a));
        artifact.manifests.push(RawManifest::new(media_type, bytes));
        return Ok(Resolved::Complete(artifact));
    }
    // Keep attestations only for images that are kept.
    let kept: Vec<&Descriptor> = complete.iter().map(|(d, _)| *d).collect();
    complete.retain(|(d, _)| {
        attestation_subject(d).is_none_or(|subject| {
            kept.iter()
                .any(|k| k.digest.as_str() == subject && attestation_subject(k).is_none())
        })
    });
    let images: Vec<&(&Descriptor, Artifact)> = complete
        .iter()
        .filter(|(d, _)| attestation_subject(d).is_none())
        .collect();
    if images.is_empty() {
        return Ok(Resolved::Missing(
            missing.into_iter().flat_map(|(_, d)| d).collect(),
        ));
    }
    let absent = describe_absent(missing.iter().map(|(d, _)| *d));
    if images.len() == 1 {
        let (descriptor, artifact) = images[0];
        let mut artifact = artifact.clone();
        artifact.notes.push(format!(
            "the source lacks {absent} of its multi-platform index; pushing the {} manifest {} instead of the index",
            platform_label(descriptor),
            descriptor.digest
        ));
        return Ok(Resolved::Complete(artifact));
    }
    let descriptors: Vec<Descriptor> = complete.iter().map(|(d, _)| (*d).clone()).collect();
    let mut artifact = merge(complete.into_iter().map(|(_, a)| a));
    let reduced = Index {
        schema_version: 2,
        media_type: Some(media_type.clone()),
        manifests: descriptors,
    };
    let reduced_bytes = serde_json::to_vec(&reduced).map_err(|e| Error::input(e.to_string()))?;
    artifact.notes.push(format!(
        "the source lacks {absent} of its index; pushing a new index of the platforms present"
    ));
    artifact
        .manifests
        .push(RawManifest::new(media_type, reduced_bytes));
    Ok(Resolved::Complete(artifact))
}

/// What an index's absent children are, for the user: platforms by name, attestations
/// (whose platform is `unknown/unknown`) only counted.
fn describe_absent<'a>(absent: impl Iterator<Item = &'a Descriptor>) -> String {
    let (attestations, platforms): (Vec<&Descriptor>, Vec<&Descriptor>) =
        absent.partition(|d| attestation_subject(d).is_some());
    let mut parts = Vec::new();
    if !platforms.is_empty() {
        let labels: Vec<String> = platforms
            .iter()
            .map(|d| sanitize(&platform_label(d)))
            .collect();
        parts.push(format!("platforms {}", labels.join(", ")));
    }
    match attestations.len() {
        0 => {}
        1 => parts.push("1 build attestation".to_string()),
        n => parts.push(format!("{n} build attestations")),
    }
    parts.join(" and ")
}

fn platform_label(descriptor: &Descriptor) -> String {
    match &descriptor.platform {
        Some(platform) => platform.to_string(),
        None => descriptor.digest.short().to_string(),
    }
}

fn merge(parts: impl Iterator<Item = Artifact>) -> Artifact {
    let mut merged = Artifact {
        blobs: Vec::new(),
        manifests: Vec::new(),
        notes: Vec::new(),
    };
    for part in parts {
        for blob in part.blobs {
            merged.add_blob(blob);
        }
        for manifest in part.manifests {
            if !merged.manifests.iter().any(|m| m.digest == manifest.digest) {
                merged.manifests.push(manifest);
            }
        }
        merged.notes.extend(part.notes);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_doubles::MemoryStore;

    fn descriptor(
        media_type: &str,
        digest: &Digest,
        size: usize,
        platform: Option<&str>,
    ) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.clone(),
            size: size as u64,
            platform: platform.map(|p| image::Platform::parse(p).unwrap()),
            annotations: None,
            urls: None,
        }
    }

    /// Stores an image (config + one layer) and returns its manifest descriptor.
    fn add_image(store: &mut MemoryStore, arch: &str, with_layer: bool) -> Descriptor {
        let layer = format!("layer for {arch}").into_bytes();
        let layer_digest = Digest::of(&layer);
        if with_layer {
            store.add(&layer);
        }
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
        );
        let config_digest = store.add(config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": descriptor(media::OCI_CONFIG, &config_digest, config.len(), None),
            "layers": [descriptor(media::OCI_LAYER, &layer_digest, layer.len(), None)],
        })
        .to_string();
        let digest = store.add(manifest.as_bytes());
        descriptor(
            media::OCI_MANIFEST,
            &digest,
            manifest.len(),
            Some(&format!("linux/{arch}")),
        )
    }

    fn add_index(store: &mut MemoryStore, children: Vec<Descriptor>) -> Descriptor {
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": children}).to_string();
        let digest = store.add(index.as_bytes());
        descriptor(media::OCI_INDEX, &digest, index.len(), None)
    }

    #[test]
    fn complete_index_is_pushed_whole_children_first() {
        let mut store = MemoryStore::default();
        let amd = add_image(&mut store, "amd64", true);
        let arm = add_image(&mut store, "arm64", true);
        let top = add_index(&mut store, vec![amd.clone(), arm.clone()]);
        let artifact = resolve(&store, &top).unwrap();
        let order: Vec<&Digest> = artifact.manifests.iter().map(|m| &m.digest).collect();
        assert_eq!(order, vec![&amd.digest, &arm.digest, &top.digest]);
        assert_eq!(artifact.blobs.len(), 4);
        assert!(artifact.notes.is_empty());
    }

    #[test]
    fn index_with_one_platform_present_pushes_that_platform() {
        let mut store = MemoryStore::default();
        let amd = add_image(&mut store, "amd64", true);
        let arm = add_image(&mut store, "arm64", false);
        let top = add_index(&mut store, vec![amd.clone(), arm]);
        let artifact = resolve(&store, &top).unwrap();
        assert_eq!(artifact.root().digest, amd.digest);
        assert_eq!(artifact.manifests.len(), 1);
        assert!(
            artifact.notes[0].contains("linux/arm64"),
            "{:?}",
            artifact.notes
        );
    }

    #[test]
    fn absent_attestations_are_counted_not_named_as_platforms() {
        let digest = Digest::of(b"x");
        let platform = descriptor(media::OCI_MANIFEST, &digest, 1, Some("linux/s390x"));
        let mut attestation = descriptor(media::OCI_MANIFEST, &digest, 1, Some("unknown/unknown"));
        attestation.annotations = Some(
            [
                ("vnd.docker.reference.type", "attestation-manifest"),
                ("vnd.docker.reference.digest", digest.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let both = [platform.clone(), attestation.clone(), attestation.clone()];
        assert_eq!(
            describe_absent(both.iter()),
            "platforms linux/s390x and 2 build attestations"
        );
        assert_eq!(
            describe_absent(std::iter::once(&attestation)),
            "1 build attestation"
        );
        assert_eq!(
            describe_absent(std::iter::once(&platform)),
            "platforms linux/s390x"
        );
    }

    #[test]
    fn missing_layer_in_single_image_is_an_input_error() {
        let mut store = MemoryStore::default();
        let amd = add_image(&mut store, "amd64", false);
        let err = resolve(&store, &amd).unwrap_err();
        assert!(err.message.contains("lacks blob"), "{err}");
    }

    #[test]
    fn corrupt_manifest_is_reported() {
        let mut store = MemoryStore::default();
        let amd = add_image(&mut store, "amd64", true);
        store
            .0
            .insert(amd.digest.clone(), b"{\"schemaVersion\":2}".to_vec());
        let err = resolve(&store, &amd).unwrap_err();
        assert!(err.message.contains("corrupt"), "{err}");
    }
}
