//! The `docker save` `manifest.json` format (legacy, before Docker 25): a list of images,
//! each a config file and layer files named by path. There is no registry manifest in the
//! archive, so one is built here: Docker schema 2, layers with the media type their bytes
//! have (uncompressed tar stays uncompressed, so digests equal the config's diff_ids).

use std::collections::HashMap;
use std::io::Read;

use serde::Deserialize;

use super::files::Files;
use crate::error::{Error, Result};
use crate::image::digest::{Digest, Hasher};
use crate::image::{self, Artifact, Blob, Descriptor, MAX_JSON_BYTES, RawManifest, media};

#[derive(Debug, Clone, Deserialize)]
pub struct LegacyImage {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(
        rename = "Layers",
        default,
        deserialize_with = "crate::image::nullable::or_empty"
    )]
    pub layers: Vec<String>,
    /// Non-distributable (foreign) layers, keyed by diff_id; their bytes are not in the archive.
    #[serde(rename = "LayerSources", default)]
    pub layer_sources: Option<HashMap<Digest, Descriptor>>,
}

pub fn parse_manifest_json(bytes: &[u8]) -> Result<Vec<LegacyImage>> {
    let images: Vec<LegacyImage> = serde_json::from_slice(bytes).map_err(|e| {
        Error::input(format!(
            "manifest.json is not a valid docker save manifest: {e}"
        ))
    })?;
    if images.is_empty() {
        return Err(Error::input("manifest.json lists no images"));
    }
    Ok(images)
}

/// The artifact for one legacy image, plus where each of its blobs lives in the archive.
pub fn build_artifact(
    files: &Files,
    image: &LegacyImage,
) -> Result<(Artifact, Vec<(Digest, String)>)> {
    let config_bytes = files.read_small(&image.config, MAX_JSON_BYTES)?;
    let config = image::parse_config(&config_bytes).map_err(|e| e.context(&image.config))?;
    let diff_ids = config.diff_ids();
    if diff_ids.len() != image.layers.len() {
        return Err(Error::input(format!(
            "manifest.json lists {} for {} but the config has {} diff_ids",
            crate::text::plural::count(image.layers.len() as u64, "layer"),
            image.config,
            diff_ids.len()
        )));
    }
    let config_blob = Blob {
        digest: Digest::of(&config_bytes),
        size: config_bytes.len() as u64,
        media_type: media::DOCKER_CONFIG.to_string(),
    };
    let mut locations = vec![(config_blob.digest.clone(), image.config.clone())];
    let mut layers = Vec::new();
    for (path, diff_id) in image.layers.iter().zip(diff_ids) {
        let foreign = image.layer_sources.as_ref().and_then(|s| s.get(diff_id));
        match (files.size(path), foreign) {
            (None, Some(descriptor)) => layers.push(descriptor.clone()),
            (None, None) => {
                return Err(Error::input(format!(
                    "manifest.json names layer \"{path}\" but the archive has no such entry"
                ))
                .hint("the archive is incomplete; save it again"));
            }
            (Some(_), _) => {
                let layer = describe_layer(files, path, diff_id)?;
                locations.push((layer.digest.clone(), path.clone()));
                layers.push(layer);
            }
        }
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::DOCKER_MANIFEST,
        "config": {
            "mediaType": config_blob.media_type,
            "size": config_blob.size,
            "digest": config_blob.digest,
        },
        "layers": layers,
    });
    let mut raw = RawManifest::new(media::DOCKER_MANIFEST, docker_json(&manifest));
    raw.platform = Some(config.platform());
    let mut artifact = Artifact {
        blobs: vec![config_blob],
        manifests: vec![raw],
        notes: Vec::new(),
    };
    for layer in &layers {
        if layer.urls.is_none() {
            artifact.add_blob(Blob::from_descriptor(layer));
        }
    }
    Ok((artifact, locations))
}

/// Docker writes manifests indented by three spaces; matching it keeps our manifests
/// byte-for-byte like the ones `docker push` would have written for the same content.
fn docker_json(value: &serde_json::Value) -> Vec<u8> {
    use serde::Serialize;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut serializer)
        .expect("JSON values always serialize");
    out
}

/// Works out a layer's digest and media type. Uncompressed layers are what `docker save`
/// writes, and their digest is the diff_id (checked while uploading). Compressed ones
/// (written by other tools) are hashed here, and their diff_id checked at the same time.
fn describe_layer(files: &Files, path: &str, diff_id: &Digest) -> Result<Descriptor> {
    let read_error = |e: std::io::Error| Error::input(format!("cannot read layer \"{path}\": {e}"));
    let size = files
        .size(path)
        .ok_or_else(|| read_error(std::io::ErrorKind::NotFound.into()))?;
    let mut head = [0u8; 4];
    let mut reader = files.open(path, 0).map_err(read_error)?;
    let filled = read_prefix(&mut reader, &mut head).map_err(read_error)?;
    let descriptor = |media_type: &str, digest: Digest| Descriptor {
        media_type: media_type.to_string(),
        digest,
        size,
        platform: None,
        annotations: None,
        urls: None,
    };
    match &head[..filled] {
        [0x1f, 0x8b, ..] => {
            let digest = hash_and_check_diff_id(files, path, diff_id)?;
            Ok(descriptor(media::DOCKER_LAYER_GZIP, digest))
        }
        [0x28, 0xb5, 0x2f, 0xfd] => Err(Error::input(format!(
            "layer \"{path}\" is zstd-compressed, which Docker schema 2 manifests cannot describe"
        ))),
        _ => Ok(descriptor(
            media::DOCKER_LAYER,
            digest_hint(path).unwrap_or_else(|| diff_id.clone()),
        )),
    }
}

/// `blobs/sha256/<hex>` paths (Docker 25+) name their digest; older layouts do not.
fn digest_hint(path: &str) -> Option<Digest> {
    let hex = path.strip_prefix("blobs/sha256/")?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

fn read_prefix(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn hash_and_check_diff_id(files: &Files, path: &str, diff_id: &Digest) -> Result<Digest> {
    let read_error = |e: std::io::Error| Error::input(format!("cannot read layer \"{path}\": {e}"));
    let reader = files.open(path, 0).map_err(read_error)?;
    let mut compressed = crate::image::digest::HashingReader::new(reader);
    let mut uncompressed = Hasher::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(&mut compressed);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = decoder.read(&mut buf).map_err(|e| {
            Error::input(format!("layer \"{path}\" is not valid gzip: {e}"))
                .hint("the archive is damaged")
        })?;
        if n == 0 {
            break;
        }
        uncompressed.update(&buf[..n]);
    }
    drop(decoder);
    // Trailing bytes after the gzip stream still belong to the blob's digest.
    std::io::copy(&mut compressed, &mut std::io::sink()).map_err(read_error)?;
    if uncompressed.digest() != *diff_id {
        return Err(Error::input(format!(
            "layer \"{path}\" does not match its diff_id {diff_id} (content is {})",
            uncompressed.digest()
        ))
        .hint("the archive is damaged; save it again"));
    }
    Ok(compressed.hasher().digest())
}
