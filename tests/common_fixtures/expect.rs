//! What a correct push of a fixture archive must produce.

use super::json::J;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// A content-addressed blob as a descriptor sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

impl BlobRef {
    pub fn of(bytes: &[u8], media_type: &str) -> Self {
        BlobRef {
            digest: super::image::digest(bytes),
            size: bytes.len() as u64,
            media_type: media_type.to_string(),
        }
    }

    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// OCI descriptor field order (image-spec `Descriptor` struct).
    pub fn oci_json(&self) -> J {
        J::obj([
            ("mediaType", J::s(&self.media_type)),
            ("digest", J::s(&self.digest)),
            ("size", J::Num(self.size)),
        ])
    }

    /// docker/distribution descriptor order: `size` comes before `digest`.
    pub fn docker_json(&self) -> J {
        J::obj([
            ("mediaType", J::s(&self.media_type)),
            ("size", J::Num(self.size)),
            ("digest", J::s(&self.digest)),
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// image-spec `Platform` field order: architecture, os, ..., variant.
    pub fn json(&self) -> J {
        let mut f = vec![
            ("architecture".to_string(), J::s(&self.architecture)),
            ("os".to_string(), J::s(&self.os)),
        ];
        if let Some(v) = &self.variant {
            f.push(("variant".to_string(), J::s(v)));
        }
        J::Obj(f)
    }
}

/// One image manifest the push must make available.
#[derive(Debug, Clone)]
pub struct ExpectedManifest {
    /// `Some` when the archive carries this manifest's exact bytes, so the
    /// registry must end up with exactly this digest. `None` when the pusher
    /// has to synthesise a manifest (legacy / ggcr `manifest.json` only).
    pub digest: Option<String>,
    pub media_type: String,
    pub platform: Option<Platform>,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

/// One thing to tag: an image manifest or an index.
#[derive(Debug, Clone)]
pub struct ExpectedTarget {
    /// Names as the archive records them (`RepoTags`, ref-name annotation,
    /// or `io.containerd.image.name`).
    pub refs: Vec<String>,
    pub media_type: String,
    pub digest: Option<String>,
    /// Manifests present in the archive (one for a plain image).
    pub manifests: Vec<ExpectedManifest>,
    /// Manifest digests an index references but the archive lacks.
    pub absent_manifests: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub targets: Vec<ExpectedTarget>,
    /// Every config/layer blob a full push uploads, sorted and deduplicated.
    pub blobs: Vec<BlobRef>,
    /// Blobs stored in the archive that belong to no image (Docker 25+'s
    /// per-layer v1 JSON). A pusher must not need them.
    pub unreferenced_blobs: Vec<String>,
}

impl Expected {
    pub fn push_target(&mut self, t: ExpectedTarget) {
        for m in &t.manifests {
            self.blobs.push(m.config.clone());
            self.blobs.extend(m.layers.iter().cloned());
        }
        self.targets.push(t);
        self.blobs.sort();
        self.blobs.dedup_by(|a, b| a.digest == b.digest);
    }

    pub fn blob_digests(&self) -> Vec<String> {
        self.blobs.iter().map(|b| b.digest.clone()).collect()
    }
}
