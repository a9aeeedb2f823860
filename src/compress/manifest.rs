//! Manifests around compressed layers. Once the layers are done, every image manifest that
//! names a compressed layer gets its descriptor (media type, digest, size) and every index
//! gets the new digests of its children; the config is never touched, so its `diff_ids`
//! keep naming the uncompressed layers, as they must. Manifests with nothing to change
//! keep their exact bytes (and digest).
//!
//! Docker schema 2 has no zstd layer type: an image manifest that gets a zstd layer becomes
//! an OCI manifest (its config and other layers take the OCI types, which name the same
//! formats), and an index over such a child becomes an OCI index. This is what skopeo does
//! when asked for zstd with a Docker source.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Algorithm;
use crate::error::{Error, Result};
use crate::image::digest::Digest;
use crate::image::{RawManifest, media};

/// A layer replaced by its compressed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    pub digest: Digest,
    pub size: u64,
    pub algorithm: Algorithm,
}

/// The manifests after compression, in the same (push) order, and which old manifest
/// digest became which new one.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub manifests: Vec<RawManifest>,
    #[cfg(test)]
    pub renamed: BTreeMap<Digest, Digest>,
    /// Manifests that became OCI because of zstd layers.
    pub converted: usize,
}

/// Docker media types and their OCI equivalents (same bytes, other name).
const TO_OCI: [(&str, &str); 6] = [
    (media::DOCKER_MANIFEST, media::OCI_MANIFEST),
    (media::DOCKER_MANIFEST_LIST, media::OCI_INDEX),
    (media::DOCKER_CONFIG, media::OCI_CONFIG),
    (media::DOCKER_LAYER, media::OCI_LAYER),
    (media::DOCKER_LAYER_GZIP, media::OCI_LAYER_GZIP),
    (
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    ),
];

fn oci_equivalent(media_type: &str) -> Option<&'static str> {
    TO_OCI
        .iter()
        .find(|(docker, _)| *docker == media_type)
        .map(|(_, oci)| *oci)
}

/// Rebuilds `manifests` (children before the indexes naming them) around `layers`: old
/// layer digest -> its compressed form.
pub fn rewrite(
    manifests: &[RawManifest],
    layers: &BTreeMap<Digest, Compressed>,
) -> Result<Rewritten> {
    #[cfg(test)]
    let mut renamed: BTreeMap<Digest, Digest> = BTreeMap::new();
    // New descriptor fields of rewritten children: digest, size, media type.
    let mut children: BTreeMap<Digest, (Digest, u64, String)> = BTreeMap::new();
    let mut converted = 0;
    let mut out = Vec::with_capacity(manifests.len());
    for manifest in manifests {
        let mut value: Value = serde_json::from_slice(&manifest.bytes).map_err(|e| {
            Error::input(format!(
                "manifest {} is not valid JSON: {e}",
                manifest.digest
            ))
        })?;
        let changed = if media::is_index(&manifest.media_type) {
            rewrite_index(&mut value, &manifest.media_type, &children)
        } else {
            rewrite_image(&mut value, &manifest.media_type, layers)
        };
        let Some(media_type) = changed else {
            out.push(manifest.clone());
            continue;
        };
        if media_type != manifest.media_type && !media::is_index(&media_type) {
            converted += 1;
        }
        let bytes = serde_json::to_vec(&value).expect("a JSON value always serializes");
        let mut new = RawManifest::new(media_type.clone(), bytes);
        new.platform = manifest.platform.clone();
        #[cfg(test)]
        renamed.insert(manifest.digest.clone(), new.digest.clone());
        children.insert(
            manifest.digest.clone(),
            (new.digest.clone(), new.bytes.len() as u64, media_type),
        );
        out.push(new);
    }
    Ok(Rewritten {
        manifests: out,
        #[cfg(test)]
        renamed,
        converted,
    })
}

/// Replaces compressed layers' descriptors; returns the manifest's media type when
/// anything changed.
fn rewrite_image(
    value: &mut Value,
    media_type: &str,
    layers: &BTreeMap<Digest, Compressed>,
) -> Option<String> {
    let descriptors = value.get_mut("layers")?.as_array_mut()?;
    let replaced: Vec<(usize, &Compressed)> = descriptors
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let digest = Digest::parse(d.get("digest")?.as_str()?).ok()?;
            layers.get(&digest).map(|c| (i, c))
        })
        .collect();
    if replaced.is_empty() {
        return None;
    }
    let to_oci = media_type == media::DOCKER_MANIFEST
        && replaced.iter().any(|(_, c)| c.algorithm == Algorithm::Zstd);
    let oci = media_type == media::OCI_MANIFEST || to_oci;
    for (i, compressed) in &replaced {
        let descriptor = &mut descriptors[*i];
        descriptor["mediaType"] = compressed.algorithm.media_type(oci).into();
        descriptor["digest"] = compressed.digest.as_str().into();
        descriptor["size"] = compressed.size.into();
    }
    if !to_oci {
        return Some(media_type.to_string());
    }
    for descriptor in descriptors.iter_mut() {
        convert_media_type(descriptor);
    }
    if let Some(config) = value.get_mut("config") {
        convert_media_type(config);
    }
    value["mediaType"] = media::OCI_MANIFEST.into();
    Some(media::OCI_MANIFEST.to_string())
}

fn convert_media_type(descriptor: &mut Value) {
    let oci = descriptor
        .get("mediaType")
        .and_then(Value::as_str)
        .and_then(oci_equivalent);
    if let Some(oci) = oci {
        descriptor["mediaType"] = oci.into();
    }
}

/// Points an index at its rewritten children (and build attestations at the rewritten
/// images they describe); returns the index's media type when anything changed.
fn rewrite_index(
    value: &mut Value,
    media_type: &str,
    children: &BTreeMap<Digest, (Digest, u64, String)>,
) -> Option<String> {
    let descriptors = value.get_mut("manifests")?.as_array_mut()?;
    let mut changed = false;
    let mut child_is_oci = false;
    for descriptor in descriptors.iter_mut() {
        let old = descriptor
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|d| Digest::parse(d).ok());
        if let Some((digest, size, child_type)) = old.and_then(|d| children.get(&d)) {
            descriptor["digest"] = digest.as_str().into();
            descriptor["size"] = (*size).into();
            descriptor["mediaType"] = child_type.as_str().into();
            child_is_oci |= child_type == media::OCI_MANIFEST;
            changed = true;
        }
        let subject = descriptor
            .pointer("/annotations/vnd.docker.reference.digest")
            .and_then(Value::as_str)
            .and_then(|d| Digest::parse(d).ok());
        if let Some((digest, _, _)) = subject.and_then(|d| children.get(&d)) {
            descriptor["annotations"]["vnd.docker.reference.digest"] = digest.as_str().into();
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    if media_type == media::DOCKER_MANIFEST_LIST && child_is_oci {
        value["mediaType"] = media::OCI_INDEX.into();
        return Some(media::OCI_INDEX.to_string());
    }
    Some(media_type.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn image(media_type: &str, layer_type: &str, config_type: &str) -> RawManifest {
        let bytes = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "digest": digest(1), "size": 10},
            "layers": [
                {"mediaType": layer_type, "digest": digest(2), "size": 1000},
                {"mediaType": media::DOCKER_LAYER_GZIP, "digest": digest(3), "size": 50},
            ],
        }))
        .unwrap();
        RawManifest::new(media_type, bytes)
    }

    fn compressed(algorithm: Algorithm) -> BTreeMap<Digest, Compressed> {
        [(
            digest(2),
            Compressed {
                digest: digest(20),
                size: 400,
                algorithm,
            },
        )]
        .into_iter()
        .collect()
    }

    fn parse(manifest: &RawManifest) -> Value {
        serde_json::from_slice(&manifest.bytes).unwrap()
    }

    #[test]
    fn compressed_layers_get_new_descriptors_and_the_config_stays() {
        let original = image(
            media::DOCKER_MANIFEST,
            media::DOCKER_LAYER,
            media::DOCKER_CONFIG,
        );
        let out = rewrite(
            std::slice::from_ref(&original),
            &compressed(Algorithm::Gzip),
        )
        .unwrap();
        let new = &out.manifests[0];
        assert_ne!(new.digest, original.digest);
        assert_eq!(new.media_type, media::DOCKER_MANIFEST);
        assert_eq!(out.renamed[&original.digest], new.digest);
        let value = parse(new);
        assert_eq!(value["layers"][0]["mediaType"], media::DOCKER_LAYER_GZIP);
        assert_eq!(value["layers"][0]["digest"], digest(20).as_str());
        assert_eq!(value["layers"][0]["size"], 400);
        assert_eq!(value["layers"][1]["digest"], digest(3).as_str());
        assert_eq!(value["config"]["digest"], digest(1).as_str());
        assert_eq!(value["config"]["mediaType"], media::DOCKER_CONFIG);
        assert_eq!(out.converted, 0);
        // The same input gives the same bytes: the manifest is stable across runs.
        let again = rewrite(&[original], &compressed(Algorithm::Gzip)).unwrap();
        assert_eq!(again.manifests[0].digest, new.digest);
    }

    #[test]
    fn zstd_turns_a_docker_manifest_into_an_oci_one() {
        let original = image(
            media::DOCKER_MANIFEST,
            media::DOCKER_LAYER,
            media::DOCKER_CONFIG,
        );
        let out = rewrite(&[original], &compressed(Algorithm::Zstd)).unwrap();
        let value = parse(&out.manifests[0]);
        assert_eq!(out.manifests[0].media_type, media::OCI_MANIFEST);
        assert_eq!(value["mediaType"], media::OCI_MANIFEST);
        assert_eq!(value["config"]["mediaType"], media::OCI_CONFIG);
        assert_eq!(value["layers"][0]["mediaType"], media::OCI_LAYER_ZSTD);
        assert_eq!(value["layers"][1]["mediaType"], media::OCI_LAYER_GZIP);
        assert_eq!(out.converted, 1);
    }

    #[test]
    fn untouched_manifests_keep_their_bytes() {
        let original = image(media::OCI_MANIFEST, media::OCI_LAYER, media::OCI_CONFIG);
        let out = rewrite(std::slice::from_ref(&original), &BTreeMap::new()).unwrap();
        assert_eq!(out.manifests[0].bytes, original.bytes);
        assert!(out.renamed.is_empty());
    }

    #[test]
    fn an_index_follows_its_children_and_their_attestations() {
        let child = image(
            media::DOCKER_MANIFEST,
            media::DOCKER_LAYER,
            media::DOCKER_CONFIG,
        );
        let other = RawManifest::new(media::OCI_MANIFEST, b"{\"other\":1}".to_vec());
        let index = RawManifest::new(
            media::DOCKER_MANIFEST_LIST,
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": media::DOCKER_MANIFEST_LIST,
                "manifests": [
                    {"mediaType": media::DOCKER_MANIFEST, "digest": child.digest, "size": child.bytes.len(),
                     "platform": {"architecture": "amd64", "os": "linux"}},
                    {"mediaType": media::OCI_MANIFEST, "digest": other.digest, "size": 11,
                     "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                     "vnd.docker.reference.digest": child.digest}},
                ],
            }))
            .unwrap(),
        );
        let out = rewrite(
            &[child.clone(), other.clone(), index.clone()],
            &compressed(Algorithm::Zstd),
        )
        .unwrap();
        let new_child = &out.manifests[0];
        assert_eq!(out.manifests[1].bytes, other.bytes);
        let value = parse(&out.manifests[2]);
        assert_eq!(out.manifests[2].media_type, media::OCI_INDEX);
        assert_eq!(value["mediaType"], media::OCI_INDEX);
        assert_eq!(value["manifests"][0]["digest"], new_child.digest.as_str());
        assert_eq!(value["manifests"][0]["size"], new_child.bytes.len());
        assert_eq!(value["manifests"][0]["mediaType"], media::OCI_MANIFEST);
        assert_eq!(value["manifests"][0]["platform"]["architecture"], "amd64");
        assert_eq!(
            value["manifests"][1]["annotations"]["vnd.docker.reference.digest"],
            new_child.digest.as_str()
        );
        assert_eq!(out.renamed[&index.digest], out.manifests[2].digest);
    }
}
