//! What an image is, independent of where it lives: manifests, configs, descriptors and
//! media types. Archives, the cache and registries all turn into an [`Artifact`], and push
//! is "write this artifact to a repository".

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::digest::Digest;

pub mod digest;
pub mod layout;
pub mod nullable;
pub(crate) mod platform;
pub mod reference;
#[cfg(test)]
pub(crate) mod test_doubles;
pub mod walk;

pub mod media {
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

    /// Every manifest type we can push or pull, for `Accept` headers.
    pub const ACCEPT_MANIFESTS: [&str; 4] = [
        OCI_INDEX,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        DOCKER_MANIFEST,
    ];

    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }

    pub fn is_manifest(media_type: &str) -> bool {
        media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
    }
}

/// Manifests, configs and index files are small; anything bigger is hostile or broken,
/// and reading it whole would let a crafted archive exhaust memory.
pub const MAX_JSON_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]` as docker's `--platform` does.
    pub fn parse(text: &str) -> Result<Platform> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid = |s: &&str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid) {
            return Err(Error::usage(format!("invalid platform \"{text}\""))
                .hint("use os/arch[/variant], for example linux/amd64 or linux/arm64/v8"));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
        })
    }

    /// Whether this image platform satisfies a requested one; arm64's variant is
    /// optional in practice ("v8" is implied), as containerd's matcher treats it.
    pub fn matches(&self, wanted: &Platform) -> bool {
        if self.os != wanted.os || self.architecture != wanted.architecture {
            return false;
        }
        let normalize = |v: &Option<String>| match (self.architecture.as_str(), v.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            _ => v.clone(),
        };
        match wanted.variant {
            None => true,
            Some(_) => normalize(&self.variant) == normalize(&wanted.variant),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// An image manifest (Docker schema 2 or OCI).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default, deserialize_with = "nullable::or_empty")]
    pub layers: Vec<Descriptor>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, deserialize_with = "nullable::or_empty")]
    pub manifests: Vec<Descriptor>,
}

/// The parts of an image config this tool needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    #[serde(default, deserialize_with = "nullable::or_empty")]
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
            os_version: None,
        }
    }

    pub fn diff_ids(&self) -> &[Digest] {
        self.rootfs
            .as_ref()
            .map(|r| r.diff_ids.as_slice())
            .unwrap_or(&[])
    }
}

/// Parsed manifest content: either an image or an index of images.
#[derive(Debug, Clone)]
pub enum ManifestKind {
    Image(Box<Manifest>),
    Index(Index),
}

/// Parses manifest bytes, deciding image vs. index from the declared media type or, for
/// older writers that omit it, from the shape of the document.
pub fn parse_manifest(bytes: &[u8], declared_media_type: &str) -> Result<(String, ManifestKind)> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        /// Present (even as `null`, Go's empty list) only in an index.
        #[serde(default, deserialize_with = "present")]
        manifests: bool,
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
    }
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| Error::input(format!("manifest is not valid JSON: {e}")))?;
    if probe.schema_version != Some(2) {
        return Err(Error::input(format!(
            "manifest schemaVersion {:?} is not supported (only schema 2 manifests)",
            probe.schema_version
        )));
    }
    let is_index = match probe.media_type.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => media::is_index(m),
        None if !declared_media_type.is_empty() => media::is_index(declared_media_type),
        None => probe.manifests,
    };
    let media_type = probe
        .media_type
        .filter(|m| !m.is_empty())
        .or_else(|| Some(declared_media_type.to_string()).filter(|m| !m.is_empty()))
        .unwrap_or_else(|| {
            if is_index {
                media::OCI_INDEX
            } else {
                media::OCI_MANIFEST
            }
            .to_string()
        });
    let kind = if is_index {
        ManifestKind::Index(
            serde_json::from_slice(bytes)
                .map_err(|e| Error::input(format!("invalid image index: {e}")))?,
        )
    } else {
        ManifestKind::Image(Box::new(
            serde_json::from_slice(bytes)
                .map_err(|e| Error::input(format!("invalid image manifest: {e}")))?,
        ))
    };
    Ok((media_type, kind))
}

/// For a probe: true when the field is there at all, whatever its value.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig> {
    serde_json::from_slice(bytes).map_err(|e| Error::input(format!("invalid image config: {e}")))
}

/// A blob to transfer: its identity and the media type it has in its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

impl Blob {
    pub fn from_descriptor(descriptor: &Descriptor) -> Blob {
        Blob {
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            media_type: descriptor.media_type.clone(),
        }
    }
}

/// A manifest exactly as it will be stored: the bytes are pushed unchanged so the
/// registry serves the same digest the source had.
#[derive(Debug, Clone)]
pub struct RawManifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
    /// For image manifests, the platform from the config (shown to the user).
    pub platform: Option<Platform>,
}

impl RawManifest {
    /// The descriptor naming this manifest, for walking from it.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            platform: None,
            annotations: None,
            urls: None,
        }
    }

    pub fn new(media_type: impl Into<String>, bytes: Vec<u8>) -> RawManifest {
        RawManifest {
            media_type: media_type.into(),
            digest: Digest::of(&bytes),
            bytes,
            platform: None,
        }
    }
}

/// Everything one push writes: every blob, then every manifest in `manifests` order
/// (children before the index that names them). The last manifest is the one tagged.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub blobs: Vec<Blob>,
    pub manifests: Vec<RawManifest>,
    /// Things the user should know about how the source was interpreted.
    pub notes: Vec<String>,
}

impl Artifact {
    pub fn root(&self) -> &RawManifest {
        self.manifests
            .last()
            .expect("an artifact always has a root manifest")
    }

    pub fn total_blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    /// Adds blobs, skipping ones already listed (images often share base layers).
    pub fn add_blob(&mut self, blob: Blob) {
        if !self.blobs.iter().any(|b| b.digest == blob.digest) {
            self.blobs.push(blob);
        }
    }
}

/// Where blob bytes come from. Implemented by archives and the cache; each call opens an
/// independent reader so several workers can stream different blobs at once.
pub trait BlobSource: Send + Sync {
    /// A reader over the blob's bytes from `offset` to its end.
    fn open_blob(&self, blob: &Blob, offset: u64) -> std::io::Result<Box<dyn Read + Send>>;

    /// Where the blob starts in a source that can only be read front to back (a
    /// whole-gzipped archive): workers then take blobs in this order instead of largest
    /// first. `None` for sources that seek.
    fn stream_position(&self, _blob: &Blob) -> Option<u64> {
        None
    }

    /// Tells a front-to-back source that a worker is about to read `blob`, so the
    /// stream is kept for it rather than carried past; dropping the guard withdraws it.
    fn announce(&self, _blob: &Blob) -> Option<Box<dyn Send>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parse_and_match() {
        let wanted = Platform::parse("linux/arm64").unwrap();
        let image = Platform::parse("linux/arm64/v8").unwrap();
        assert!(image.matches(&wanted));
        assert!(Platform::parse("linux/arm64").unwrap().matches(&image));
        assert!(!Platform::parse("linux/amd64").unwrap().matches(&wanted));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/amd64/v2/x").is_err());
    }

    #[test]
    fn manifest_kind_comes_from_media_type_or_shape() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(index, "").unwrap().1,
            ManifestKind::Index(_)
        ));
        let digest = Digest::of(b"x");
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"a","digest":"{digest}","size":1}},"layers":[]}}"#
        );
        let (media_type, kind) = parse_manifest(image.as_bytes(), "").unwrap();
        assert_eq!(media_type, media::OCI_MANIFEST);
        assert!(matches!(kind, ManifestKind::Image(_)));
        assert!(parse_manifest(b"{\"schemaVersion\":1}", "").is_err());
        assert!(parse_manifest(b"not json", "").is_err());
    }
}
