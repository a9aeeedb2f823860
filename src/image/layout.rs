//! Reading an OCI image layout (`index.json` + `blobs/sha256/...`), wherever it is stored:
//! inside a Docker 25+ `docker save` archive, an OCI archive, or the local cache directory.

use std::collections::{HashMap, HashSet};

use crate::error::{Cause, Error, Result};
use crate::image::digest::Digest;
use crate::image::walk::{self, Graph, Parsed};
use crate::image::{
    self, Artifact, Blob, Descriptor, Index, MAX_JSON_BYTES, ManifestKind, RawManifest, media,
};
use crate::text::sanitize::sanitize;

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

/// Reads one manifest of a layout for the graph walk: `None` when the store lacks it.
pub fn read_node(store: &dyn BlobStore, descriptor: &Descriptor) -> Result<Option<Parsed>> {
    if store.blob_size(&descriptor.digest).is_none() {
        return Ok(None);
    }
    let bytes = read_verified(store, descriptor)?;
    let (media_type, kind) = image::parse_manifest(&bytes, &descriptor.media_type)
        .map_err(|e| e.context(format!("manifest {}", descriptor.digest)))?;
    Ok(Some(Parsed {
        media_type,
        bytes,
        kind,
    }))
}

/// Every manifest the image `descriptor` names reaches in `store`, each read once.
pub fn walk_store(store: &dyn BlobStore, descriptor: &Descriptor) -> Result<Graph> {
    walk::walk(descriptor, Error::input, &mut |d| read_node(store, d))
}

/// What resolving one manifest of the graph found.
enum Outcome {
    /// The store lacks these blobs (the manifest itself or what it names).
    Missing(Vec<Digest>),
    /// Pushed as `manifest`, after the entries `children` stand for; `blobs` for an image.
    Complete {
        manifest: RawManifest,
        children: Vec<Digest>,
        blobs: Vec<Blob>,
        note: Option<String>,
    },
    /// An index of which one image is present stands for that image.
    Replaced { by: Digest, note: String },
}

/// Missing digests kept per manifest: enough for the message, bounded however the
/// graph is shaped.
const MAX_MISSING_LISTED: usize = 1000;

/// Builds the artifact a descriptor names. An index whose platforms are all present is
/// pushed whole (same digest as the source). Docker's containerd image store saves only the
/// local platform of a multi-platform index; then the platforms that are present are pushed
/// and the artifact says so in its notes.
pub fn resolve(store: &dyn BlobStore, descriptor: &Descriptor) -> Result<Artifact> {
    let graph = walk_store(store, descriptor)?;
    // Children come before their parents, so an index finds every entry decided.
    let mut outcomes: HashMap<Digest, Outcome> = HashMap::new();
    for node in &graph.nodes {
        let outcome = match &node.content {
            None => Outcome::Missing(vec![node.descriptor.digest.clone()]),
            Some(parsed) => match &parsed.kind {
                ManifestKind::Image(manifest) => resolve_image(store, parsed, manifest)?,
                ManifestKind::Index(index) => resolve_index(parsed, index, &outcomes)?,
            },
        };
        outcomes.insert(node.descriptor.digest.clone(), outcome);
    }
    match outcomes.get(&descriptor.digest) {
        Some(Outcome::Missing(missing)) => Err(missing_error(descriptor, missing)),
        _ => Ok(assemble(&outcomes, &descriptor.digest)),
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

/// The artifact of a decided graph: manifests children first (each once), the blobs of
/// every image in that order, and the notes of every index that was narrowed.
fn assemble(outcomes: &HashMap<Digest, Outcome>, root: &Digest) -> Artifact {
    let mut artifact = Artifact {
        blobs: Vec::new(),
        manifests: Vec::new(),
        notes: Vec::new(),
    };
    let mut blobs: HashSet<Digest> = HashSet::new();
    let mut visited: HashSet<&Digest> = HashSet::new();
    // (digest, whether its children are already out)
    let mut stack: Vec<(&Digest, bool)> = vec![(root, false)];
    while let Some((digest, expanded)) = stack.pop() {
        let outcome = outcomes.get(digest);
        if !expanded {
            if !visited.insert(digest) {
                continue;
            }
            stack.push((digest, true));
            match outcome {
                Some(Outcome::Complete { children, .. }) => {
                    stack.extend(children.iter().rev().map(|c| (c, false)))
                }
                Some(Outcome::Replaced { by, .. }) => stack.push((by, false)),
                _ => {}
            }
            continue;
        }
        match outcome {
            Some(Outcome::Complete {
                manifest,
                blobs: own,
                note,
                ..
            }) => {
                for blob in own {
                    if blobs.insert(blob.digest.clone()) {
                        artifact.blobs.push(blob.clone());
                    }
                }
                artifact.manifests.push(manifest.clone());
                artifact.notes.extend(note.clone());
            }
            Some(Outcome::Replaced { note, .. }) => artifact.notes.push(note.clone()),
            _ => {}
        }
    }
    artifact
}

fn resolve_image(
    store: &dyn BlobStore,
    parsed: &Parsed,
    manifest: &image::Manifest,
) -> Result<Outcome> {
    let mut missing = Vec::new();
    let mut blobs: Vec<Blob> = Vec::new();
    // A 16 MiB manifest can list 100,000 layers: no quadratic duplicate check.
    let mut seen: HashSet<&Digest> = HashSet::new();
    for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
        match store.blob_size(&descriptor.digest) {
            Some(size) if size == descriptor.size => {
                if seen.insert(&descriptor.digest) {
                    blobs.push(Blob::from_descriptor(descriptor));
                }
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
        return Ok(Outcome::Missing(missing));
    }
    let mut raw = RawManifest::new(parsed.media_type.clone(), parsed.bytes.clone());
    if is_image_config(&manifest.config.media_type) {
        let config = image::parse_config(&read_verified(store, &manifest.config)?)?;
        let diff_ids = config.diff_ids().len();
        if config.rootfs.is_some() && diff_ids != manifest.layers.len() {
            return Err(Error::caused(
                Cause::LayerCountMismatch,
                format!(
                    "manifest {} lists {} but its config has {diff_ids} diff_ids",
                    raw.digest,
                    crate::text::plural::count(manifest.layers.len() as u64, "layer")
                ),
            ));
        }
        raw.platform = Some(config.platform());
    }
    Ok(Outcome::Complete {
        manifest: raw,
        children: Vec::new(),
        blobs,
        note: None,
    })
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
    parsed: &Parsed,
    index: &Index,
    outcomes: &HashMap<Digest, Outcome>,
) -> Result<Outcome> {
    let mut complete: Vec<&Descriptor> = Vec::new();
    let mut missing: Vec<(&Descriptor, &[Digest])> = Vec::new();
    for child in &index.manifests {
        match outcomes.get(&child.digest) {
            Some(Outcome::Missing(digests)) => missing.push((child, digests)),
            Some(_) => complete.push(child),
            // Only an index that names itself (a hash cycle) could get here.
            None => {
                return Err(Error::input(format!(
                    "image index {} names itself through {}",
                    Digest::of(&parsed.bytes),
                    child.digest
                )));
            }
        }
    }
    let children = |kept: &[&Descriptor]| -> Vec<Digest> {
        let mut digests: Vec<Digest> = Vec::new();
        for d in kept {
            if !digests.contains(&d.digest) {
                digests.push(d.digest.clone());
            }
        }
        digests
    };
    if missing.is_empty() {
        return Ok(Outcome::Complete {
            manifest: RawManifest::new(parsed.media_type.clone(), parsed.bytes.clone()),
            children: children(&complete),
            blobs: Vec::new(),
            note: None,
        });
    }
    // Keep attestations only for images that are kept.
    let kept = complete.clone();
    complete.retain(|d| {
        attestation_subject(d).is_none_or(|subject| {
            kept.iter()
                .any(|k| k.digest.as_str() == subject && attestation_subject(k).is_none())
        })
    });
    let images: Vec<&Descriptor> = complete
        .iter()
        .copied()
        .filter(|d| attestation_subject(d).is_none())
        .collect();
    if images.is_empty() {
        let mut all: Vec<Digest> = Vec::new();
        for digest in missing.iter().flat_map(|(_, d)| d.iter()) {
            if all.len() >= MAX_MISSING_LISTED {
                break;
            }
            if !all.contains(digest) {
                all.push(digest.clone());
            }
        }
        return Ok(Outcome::Missing(all));
    }
    let absent = describe_absent(missing.iter().map(|(d, _)| *d));
    if let [descriptor] = images.as_slice() {
        return Ok(Outcome::Replaced {
            by: descriptor.digest.clone(),
            note: format!(
                "the source lacks {absent} of its multi-platform index; pushing the {} manifest {} instead of the index",
                platform_label(descriptor),
                descriptor.digest
            ),
        });
    }
    let reduced = Index {
        schema_version: 2,
        media_type: Some(parsed.media_type.clone()),
        manifests: complete.iter().map(|d| (*d).clone()).collect(),
    };
    let reduced_bytes = serde_json::to_vec(&reduced).map_err(|e| Error::input(e.to_string()))?;
    Ok(Outcome::Complete {
        manifest: RawManifest::new(parsed.media_type.clone(), reduced_bytes),
        children: children(&complete),
        blobs: Vec::new(),
        note: Some(format!(
            "the source lacks {absent} of its index; pushing a new index of the platforms present"
        )),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::test_doubles::MemoryStore;

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
    fn a_nested_index_named_many_times_is_resolved_once() {
        let mut store = MemoryStore::default();
        let amd = add_image(&mut store, "amd64", true);
        let arm = add_image(&mut store, "arm64", true);
        let inner = add_index(&mut store, vec![amd.clone(), arm.clone(), amd.clone()]);
        let middle = add_index(&mut store, vec![inner.clone(); 50]);
        let top = add_index(&mut store, vec![middle.clone(); 50]);
        let artifact = resolve(&store, &top).unwrap();
        let order: Vec<&Digest> = artifact.manifests.iter().map(|m| &m.digest).collect();
        assert_eq!(
            order,
            vec![
                &amd.digest,
                &arm.digest,
                &inner.digest,
                &middle.digest,
                &top.digest
            ]
        );
        assert_eq!(artifact.blobs.len(), 4);
    }

    #[test]
    fn an_index_missing_one_of_three_platforms_is_pushed_reduced() {
        let mut store = MemoryStore::default();
        let amd = add_image(&mut store, "amd64", true);
        let arm = add_image(&mut store, "arm64", true);
        let s390x = add_image(&mut store, "s390x", false);
        let top = add_index(&mut store, vec![amd.clone(), s390x, arm.clone()]);
        let artifact = resolve(&store, &top).unwrap();
        assert_eq!(artifact.manifests.len(), 3);
        let reduced: Index = serde_json::from_slice(&artifact.root().bytes).unwrap();
        let kept: Vec<&Digest> = reduced.manifests.iter().map(|d| &d.digest).collect();
        assert_eq!(kept, vec![&amd.digest, &arm.digest]);
        assert!(
            artifact.notes[0].contains("linux/s390x"),
            "{:?}",
            artifact.notes
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
