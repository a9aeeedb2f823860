//! Test images: layers, config, manifests and indexes.

use sha2::{Digest, Sha256};

use super::expect::*;
use super::json::J;
use super::rng::layer_tar;
use super::tarw::gzip_bytes;

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// The hex part of a `sha256:<hex>` digest.
pub fn digest_hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One layer. `bytes` is the blob as an OCI/registry push stores it;
/// `tar` is the uncompressed form that `docker save` (graphdriver) writes.
#[derive(Debug, Clone)]
pub struct TestLayer {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
    pub media_type_oci: String,
    pub media_type_docker: String,
    pub gzipped: bool,
    pub tar: Vec<u8>,
}

impl TestLayer {
    /// Layer of about `size` content bytes; more files for bigger layers so
    /// large fixtures also have realistic entry counts.
    pub fn new(seed: u64, size: usize, gzip: bool) -> Self {
        let files = (size / 65_536).clamp(1, 16);
        Self::from_tar(layer_tar(seed, size, files), gzip)
    }

    pub fn from_tar(tar: Vec<u8>, gzip: bool) -> Self {
        let bytes = if gzip { gzip_bytes(&tar) } else { tar.clone() };
        let (oci, docker) = if gzip {
            (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP)
        } else {
            (OCI_LAYER, DOCKER_LAYER)
        };
        TestLayer {
            digest: digest(&bytes),
            diff_id: digest(&tar),
            bytes,
            media_type_oci: oci.into(),
            media_type_docker: docker.into(),
            gzipped: gzip,
            tar,
        }
    }

    /// The stored blob with its OCI media type.
    pub fn oci_blob(&self) -> BlobRef {
        BlobRef::of(&self.bytes, &self.media_type_oci)
    }

    pub fn docker_blob(&self) -> BlobRef {
        BlobRef::of(&self.bytes, &self.media_type_docker)
    }

    /// The uncompressed tar as a blob (digest == diff_id).
    pub fn tar_blob(&self, media_type: &str) -> BlobRef {
        BlobRef::of(&self.tar, media_type)
    }
}

#[derive(Debug, Clone)]
pub struct TestImage {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layers: Vec<TestLayer>,
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
    pub seed: u64,
}

impl TestImage {
    /// Layer `i` is seeded from `seed` and `i`, so two images built with the
    /// same seed share identical layers (useful for dedup tests).
    pub fn new(
        seed: u64,
        layer_sizes: &[usize],
        gzip_layers: bool,
        platform: (&str, &str),
    ) -> Self {
        let layers = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                TestLayer::new(
                    seed.wrapping_mul(1000).wrapping_add(i as u64),
                    size,
                    gzip_layers,
                )
            })
            .collect();
        Self::from_layers(seed, layers, platform)
    }

    /// Image over given layers, e.g. a base layer shared with another image.
    pub fn from_layers(seed: u64, layers: Vec<TestLayer>, platform: (&str, &str)) -> Self {
        Self::build(seed, layers, platform.0, platform.1, None)
    }

    /// Same image for an arch variant (`arm64` + `v8`); the config changes.
    pub fn with_variant(self, variant: &str) -> Self {
        Self::build(
            self.seed,
            self.layers,
            &self.os,
            &self.arch,
            Some(variant.to_string()),
        )
    }

    fn build(
        seed: u64,
        layers: Vec<TestLayer>,
        os: &str,
        arch: &str,
        variant: Option<String>,
    ) -> Self {
        let config = image_config(seed, os, arch, variant.as_deref(), &layers);
        TestImage {
            config_digest: digest(&config),
            config,
            layers,
            os: os.to_string(),
            arch: arch.to_string(),
            variant,
            seed,
        }
    }

    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.arch.clone(),
            variant: self.variant.clone(),
        }
    }

    pub fn config_blob(&self, media_type: &str) -> BlobRef {
        BlobRef::of(&self.config, media_type)
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// Expectation for pushing this image's own OCI manifest as stored.
    pub fn expected_oci(&self) -> ExpectedManifest {
        let m = oci_manifest(self);
        ExpectedManifest {
            digest: Some(digest(&m)),
            media_type: OCI_MANIFEST.into(),
            platform: Some(self.platform()),
            config: self.config_blob(OCI_CONFIG),
            layers: self.layers.iter().map(TestLayer::oci_blob).collect(),
        }
    }
}

/// `created` timestamp derived from the seed: stable, but distinct per image.
pub fn created_at(seed: u64) -> String {
    let minute = seed % 60;
    let hour = (seed / 60) % 24;
    format!("2024-03-15T{hour:02}:{minute:02}:00Z")
}

/// `created_at(seed)` as Unix seconds (2024-03-15T00:00:00Z is 1710460800),
/// used where Docker stamps files with the image's creation time.
pub fn created_unix(seed: u64) -> u64 {
    1_710_460_800 + ((seed / 60) % 24) * 3600 + (seed % 60) * 60
}

/// A config shaped like what `docker build` produces (keys in the sorted
/// order Docker's image store emits them).
fn image_config(
    seed: u64,
    os: &str,
    arch: &str,
    variant: Option<&str>,
    layers: &[TestLayer],
) -> Vec<u8> {
    let created = created_at(seed);
    let mut fields = vec![
        ("architecture".to_string(), J::s(arch)),
        ("config".to_string(), container_config(seed)),
        ("created".to_string(), J::s(&created)),
        ("history".to_string(), history(&created, layers)),
        ("os".to_string(), J::s(os)),
        ("rootfs".to_string(), rootfs(layers)),
    ];
    if let Some(v) = variant {
        fields.push(("variant".to_string(), J::s(v)));
    }
    J::Obj(fields).compact()
}

pub fn container_config(seed: u64) -> J {
    J::obj([
        (
            "Env",
            J::strs(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
        ),
        ("Cmd", J::strs(&["/bin/sh"])),
        ("WorkingDir", J::s("/")),
        (
            "Labels",
            J::obj([("org.example.fixture-seed", J::s(seed.to_string()))]),
        ),
    ])
}

/// One history entry per layer plus a trailing empty-layer CMD, as builds do.
fn history(created: &str, layers: &[TestLayer]) -> J {
    let mut items: Vec<J> = layers
        .iter()
        .map(|l| {
            let by = format!(
                "/bin/sh -c #(nop) ADD file:{} in / ",
                digest_hex(&l.diff_id).get(..12).unwrap_or_default()
            );
            J::obj([("created", J::s(created)), ("created_by", J::s(by))])
        })
        .collect();
    items.push(J::obj([
        ("created", J::s(created)),
        ("created_by", J::s("/bin/sh -c #(nop)  CMD [\"/bin/sh\"]")),
        ("empty_layer", J::Bool(true)),
    ]));
    J::Arr(items)
}

fn rootfs(layers: &[TestLayer]) -> J {
    let ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    J::obj([("type", J::s("layers")), ("diff_ids", J::strs(&ids))])
}

/// OCI image manifest over explicit descriptors, compact like Go's
/// `json.Marshal(ocispec.Manifest)`.
pub fn oci_manifest_from(config: &BlobRef, layers: &[BlobRef]) -> Vec<u8> {
    J::obj([
        ("schemaVersion", J::Num(2)),
        ("mediaType", J::s(OCI_MANIFEST)),
        ("config", config.oci_json()),
        (
            "layers",
            J::Arr(layers.iter().map(BlobRef::oci_json).collect()),
        ),
    ])
    .compact()
}

/// OCI manifest of the image with its layers as stored.
pub fn oci_manifest(img: &TestImage) -> Vec<u8> {
    let layers: Vec<BlobRef> = img.layers.iter().map(TestLayer::oci_blob).collect();
    oci_manifest_from(&img.config_blob(OCI_CONFIG), &layers)
}

/// Docker schema 2 manifest, indented with three spaces as
/// docker/distribution marshals it (and registries therefore serve it).
pub fn docker_manifest(img: &TestImage) -> Vec<u8> {
    let layers = img
        .layers
        .iter()
        .map(|l| l.docker_blob().docker_json())
        .collect();
    J::obj([
        ("schemaVersion", J::Num(2)),
        ("mediaType", J::s(DOCKER_MANIFEST)),
        ("config", img.config_blob(DOCKER_CONFIG).docker_json()),
        ("layers", J::Arr(layers)),
    ])
    .pretty("   ")
}

/// A descriptor inside an index (or `index.json`).
#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub blob: BlobRef,
    pub annotations: Vec<(String, String)>,
    pub platform: Option<Platform>,
}

impl IndexEntry {
    pub fn json(&self) -> J {
        let mut f = vec![
            ("mediaType".to_string(), J::s(&self.blob.media_type)),
            ("digest".to_string(), J::s(&self.blob.digest)),
            ("size".to_string(), J::Num(self.blob.size)),
        ];
        if !self.annotations.is_empty() {
            let ann = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), J::s(v)))
                .collect();
            f.push(("annotations".to_string(), J::map(ann)));
        }
        if let Some(p) = &self.platform {
            f.push(("platform".to_string(), p.json()));
        }
        J::Obj(f)
    }
}

/// Image index (or `index.json`); `media_type` is optional because
/// containerd and containers/image omit it in `index.json`.
pub fn index_json(entries: &[IndexEntry], media_type: Option<&str>) -> Vec<u8> {
    let mut f = vec![("schemaVersion".to_string(), J::Num(2))];
    if let Some(mt) = media_type {
        f.push(("mediaType".to_string(), J::s(mt)));
    }
    let list = entries.iter().map(IndexEntry::json).collect();
    f.push(("manifests".to_string(), J::Arr(list)));
    J::Obj(f).compact()
}

/// Multi-platform OCI image index over already-serialised manifests.
pub fn oci_index(manifests: &[(Vec<u8>, &TestImage)]) -> Vec<u8> {
    let entries: Vec<IndexEntry> = manifests
        .iter()
        .map(|(bytes, img)| IndexEntry {
            blob: BlobRef::of(bytes, &manifest_media_type(bytes)),
            annotations: vec![],
            platform: Some(img.platform()),
        })
        .collect();
    index_json(&entries, Some(OCI_INDEX))
}

/// The `mediaType` a manifest declares (OCI manifest if it declares none).
pub fn manifest_media_type(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| OCI_MANIFEST.to_string())
}

/// A reference split the way distribution/reference normalises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io/library/foo`
    pub name: String,
    /// `foo` (Docker Hub prefixes stripped)
    pub familiar_name: String,
    pub tag: String,
}

impl ImageRef {
    pub fn parse(s: &str) -> Self {
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match s[slash..].rfind(':') {
            Some(i) => (&s[..slash + i], &s[slash + i + 1..]),
            None => (s, "latest"),
        };
        let (domain, path) = split_domain(repo);
        let familiar_name = if domain == "docker.io" {
            path.strip_prefix("library/")
                .filter(|p| !p.contains('/'))
                .unwrap_or(&path)
                .to_string()
        } else {
            format!("{domain}/{path}")
        };
        ImageRef {
            name: format!("{domain}/{path}"),
            familiar_name,
            tag: tag.to_string(),
        }
    }

    /// `docker.io/library/foo:latest`
    pub fn full(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    /// `foo:latest`
    pub fn familiar(&self) -> String {
        format!("{}:{}", self.familiar_name, self.tag)
    }
}

/// A first component with `.`/`:` or equal to `localhost` is a registry.
fn split_domain(repo: &str) -> (String, String) {
    if let Some((first, rest)) = repo.split_once('/') {
        if first.contains('.') || first.contains(':') || first == "localhost" {
            let domain = if first == "index.docker.io" {
                "docker.io"
            } else {
                first
            };
            let rest = if domain == "docker.io" && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_string()
            };
            return (domain.to_string(), rest);
        }
        return ("docker.io".into(), repo.to_string());
    }
    ("docker.io".into(), format!("library/{repo}"))
}
