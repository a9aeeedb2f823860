//! `docker save` with the containerd image store (default in Docker 29).
//!
//! Mirrored from moby `daemon/containerd/image_exporter.go` (calls
//! containerd's exporter with `WithPlatform(match-all, host preferred)` and
//! `WithSkipMissing`) and containerd `core/images/archive/exporter.go`:
//! - `index.json` (no top-level mediaType) lists the image's *target*, i.e.
//!   its multi-platform index, once per name, annotated with
//!   `io.containerd.image.name` and `org.opencontainers.image.ref.name`,
//!   plus `containerd.io/distribution.source.<registry>` for pulled images;
//! - the index blob is always exported; each child manifest is exported
//!   only if present locally (`WithSkipMissing`), so a pulled image carries
//!   only the host platform; children of present manifests follow;
//! - `manifest.json` (compact, no newline, no `LayerSources`) points at the
//!   host platform's manifest, layers are the stored (gzip) blobs;
//! - no `repositories`; entries sorted by name; blobs and `oci-layout`
//!   mode 0444, JSON files 0644, directories 0755, mtime 0.

use std::io;
use std::path::Path;

use super::docker::Blobs;
use super::expect::*;
use super::image::{ImageRef, IndexEntry, TestImage, digest, digest_hex, index_json, oci_manifest};
use super::json::J;
use super::tarw::{TarEntry, sort_name_order, write_tar};

/// BuildKit attestation manifests (`unknown/unknown` platform entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attestations {
    /// Index has no attestation entries (e.g. built without provenance).
    None,
    /// Listed in the index but absent from the archive: a pulled image
    /// (the pull only fetched the host platform's manifest).
    ListedAbsent,
    /// Listed, and the host's attestation with its blobs is in the archive:
    /// an image built locally by BuildKit.
    Present,
}

#[derive(Debug, Clone)]
pub struct ContainerdOpts {
    /// `(os, arch)` of the daemon; that platform is present in the archive.
    pub host: (String, String),
    pub attestations: Attestations,
    /// Whether non-host platforms are present too (multi-platform local
    /// build, or pull with `--platform` for each).
    pub others_present: bool,
    /// Pulled images carry a distribution-source annotation in index.json.
    pub pulled: bool,
}

impl Default for ContainerdOpts {
    fn default() -> Self {
        ContainerdOpts {
            host: ("linux".into(), "amd64".into()),
            attestations: Attestations::ListedAbsent,
            others_present: false,
            pulled: true,
        }
    }
}

/// An attestation manifest for one platform image.
struct Attestation {
    manifest: Vec<u8>,
    config: Vec<u8>,
    statement: Vec<u8>,
}

const PROVENANCE: &str = "https://slsa.dev/provenance/v0.2";

/// In-toto provenance statement whose subject is the image manifest.
fn provenance_statement(subject: &[u8], img: &TestImage) -> Vec<u8> {
    let name = format!(
        "pkg:docker/fixture@latest?platform={}%2F{}",
        img.os, img.arch
    );
    let digest = J::obj([("sha256", J::s(super::image::sha256_hex(subject)))]);
    let subject = J::obj([("name", J::s(name)), ("digest", digest)]);
    let predicate = J::obj([("buildType", J::s("https://mobyproject.org/buildkit@v1"))]);
    J::obj([
        ("_type", J::s("https://in-toto.io/Statement/v0.1")),
        ("predicateType", J::s(PROVENANCE)),
        ("subject", J::Arr(vec![subject])),
        ("predicate", predicate),
    ])
    .compact()
}

/// Attestation manifest as BuildKit writes it: `unknown/unknown` config
/// whose single "layer" is the in-toto statement.
fn attestation(subject: &[u8], img: &TestImage) -> Attestation {
    let statement = provenance_statement(subject, img);
    let layer = BlobRef::of(&statement, IN_TOTO);
    let rootfs = J::obj([
        ("type", J::s("layers")),
        ("diff_ids", J::strs(std::slice::from_ref(&layer.digest))),
    ]);
    let config = J::obj([
        ("architecture", J::s("unknown")),
        ("os", J::s("unknown")),
        ("config", J::Obj(vec![])),
        ("rootfs", rootfs),
    ])
    .compact();
    let layer_desc = IndexEntry {
        blob: layer,
        annotations: vec![("in-toto.io/predicate-type".into(), PROVENANCE.into())],
        platform: None,
    };
    let manifest = J::obj([
        ("schemaVersion", J::Num(2)),
        ("mediaType", J::s(OCI_MANIFEST)),
        ("config", BlobRef::of(&config, OCI_CONFIG).oci_json()),
        ("layers", J::Arr(vec![layer_desc.json()])),
    ])
    .compact();
    Attestation {
        manifest,
        config,
        statement,
    }
}

/// One platform of the multi-platform image.
struct PlatformImage<'a> {
    img: &'a TestImage,
    manifest: Vec<u8>,
    att: Option<Attestation>,
    is_host: bool,
}

fn platform_images<'a>(
    images: &'a [TestImage],
    opts: &ContainerdOpts,
) -> io::Result<Vec<PlatformImage<'a>>> {
    let host = images
        .iter()
        .position(|i| i.os == opts.host.0 && i.arch == opts.host.1)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "no image matches the host platform",
            )
        })?;
    Ok(images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let manifest = oci_manifest(img);
            let att =
                (opts.attestations != Attestations::None).then(|| attestation(&manifest, img));
            PlatformImage {
                img,
                manifest,
                att,
                is_host: i == host,
            }
        })
        .collect())
}

/// The image index BuildKit pushes: platform manifests first, then one
/// attestation manifest per platform pointing back via annotations.
fn image_index(plats: &[PlatformImage]) -> Vec<u8> {
    let mut entries: Vec<IndexEntry> = plats
        .iter()
        .map(|p| IndexEntry {
            blob: BlobRef::of(&p.manifest, OCI_MANIFEST),
            annotations: vec![],
            platform: Some(p.img.platform()),
        })
        .collect();
    for p in plats {
        if let Some(a) = &p.att {
            entries.push(IndexEntry {
                blob: BlobRef::of(&a.manifest, OCI_MANIFEST),
                annotations: vec![
                    ("vnd.docker.reference.digest".into(), digest(&p.manifest)),
                    (
                        "vnd.docker.reference.type".into(),
                        "attestation-manifest".into(),
                    ),
                ],
                platform: Some(Platform {
                    os: "unknown".into(),
                    architecture: "unknown".into(),
                    variant: None,
                }),
            });
        }
    }
    index_json(&entries, Some(OCI_INDEX))
}

/// Adds present manifests and their children; returns what was exported.
fn export_children(
    blobs: &mut Blobs,
    plats: &[PlatformImage],
    opts: &ContainerdOpts,
) -> (Vec<ExpectedManifest>, Vec<String>) {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for p in plats {
        let here = p.is_host || opts.others_present;
        if here {
            blobs.add(&p.manifest, 0, 0o444);
            blobs.add(&p.img.config, 0, 0o444);
            for l in &p.img.layers {
                blobs.add(&l.bytes, 0, 0o444);
            }
            present.push(p.img.expected_oci());
        } else {
            absent.push(digest(&p.manifest));
        }
        if let Some(a) = &p.att {
            if here && opts.attestations == Attestations::Present {
                present.push(export_attestation(blobs, a));
            } else {
                absent.push(digest(&a.manifest));
            }
        }
    }
    (present, absent)
}

fn export_attestation(blobs: &mut Blobs, a: &Attestation) -> ExpectedManifest {
    blobs.add(&a.manifest, 0, 0o444);
    blobs.add(&a.config, 0, 0o444);
    blobs.add(&a.statement, 0, 0o444);
    ExpectedManifest {
        digest: Some(digest(&a.manifest)),
        media_type: OCI_MANIFEST.into(),
        platform: Some(Platform {
            os: "unknown".into(),
            architecture: "unknown".into(),
            variant: None,
        }),
        config: BlobRef::of(&a.config, OCI_CONFIG),
        layers: vec![BlobRef::of(&a.statement, IN_TOTO)],
    }
}

/// `index.json` descriptors for one image: one per name (annotations as
/// `addNameAnnotation` + `copySourceLabels` produce), or one bare
/// descriptor when the image is saved by ID.
fn name_descriptors(index: &BlobRef, names: &[String], pulled: bool) -> Vec<IndexEntry> {
    let desc = |annotations| IndexEntry {
        blob: index.clone(),
        annotations,
        platform: None,
    };
    if names.is_empty() {
        return vec![desc(vec![])];
    }
    names
        .iter()
        .map(|n| desc(name_annotations(n, pulled)))
        .collect()
}

fn name_annotations(name: &str, pulled: bool) -> Vec<(String, String)> {
    let r = ImageRef::parse(name);
    let mut a = vec![
        ("io.containerd.image.name".to_string(), r.full()),
        (
            "org.opencontainers.image.ref.name".to_string(),
            r.tag.clone(),
        ),
    ];
    if pulled {
        // Content labels record the source repository per registry host.
        let (host, path) = r.name.split_once('/').unwrap_or(("docker.io", &r.name));
        a.push((
            format!("containerd.io/distribution.source.{host}"),
            path.to_string(),
        ));
    }
    a
}

/// `manifest.json` item for the host manifest (containerd's choice).
fn manifest_item(host: &TestImage, names: &[String]) -> J {
    let layers: Vec<String> = host
        .layers
        .iter()
        .map(|l| format!("blobs/sha256/{}", digest_hex(&l.digest)))
        .collect();
    let tags: Vec<String> = names
        .iter()
        .map(|n| ImageRef::parse(n).familiar())
        .collect();
    J::obj([
        (
            "Config",
            J::s(format!("blobs/sha256/{}", digest_hex(&host.config_digest))),
        ),
        (
            "RepoTags",
            if tags.is_empty() {
                J::Null
            } else {
                J::strs(&tags)
            },
        ),
        ("Layers", J::strs(&layers)),
    ])
}

/// Docker 29 (containerd store) `docker save NAME...`. Each entry is one
/// multi-platform image (all its platforms) with its names.
pub fn write_docker_containerd_store(
    path: &Path,
    images: &[(Vec<TestImage>, Vec<String>)],
    opts: &ContainerdOpts,
) -> io::Result<Expected> {
    let mut blobs = Blobs::default();
    let mut descs = Vec::new();
    let mut items = Vec::new();
    let mut exp = Expected::default();
    for (platforms, names) in images {
        let plats = platform_images(platforms, opts)?;
        let iblob = export_index(&mut blobs, &plats);
        descs.extend(name_descriptors(&iblob, names, opts.pulled));
        let (manifests, absent_manifests) = export_children(&mut blobs, &plats, opts);
        if let Some(h) = plats.iter().find(|p| p.is_host) {
            items.push(manifest_item(h.img, names));
        }
        let refs = names
            .iter()
            .map(|n| ImageRef::parse(n).familiar())
            .collect();
        let (media_type, digest) = (iblob.media_type, Some(iblob.digest));
        exp.push_target(ExpectedTarget {
            refs,
            media_type,
            digest,
            manifests,
            absent_manifests,
        });
    }
    let mut entries = top_level_files(&descs, items);
    entries.extend(blobs.entries);
    sort_name_order(&mut entries);
    write_tar(path, &entries)?;
    Ok(exp)
}

/// `oci-layout` (0444, compact JSON), `index.json` without mediaType,
/// `manifest.json` without trailing newline, and the blob directories.
fn top_level_files(descs: &[IndexEntry], items: Vec<J>) -> Vec<TarEntry> {
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();
    vec![
        TarEntry::file("oci-layout", layout, 0).with_mode(0o444),
        TarEntry::file("index.json", index_json(descs, None), 0),
        TarEntry::file("manifest.json", J::Arr(items).compact(), 0),
        TarEntry::dir("blobs/", 0),
        TarEntry::dir("blobs/sha256/", 0),
    ]
}

/// The image index blob (always exported, even with children missing).
fn export_index(blobs: &mut Blobs, plats: &[PlatformImage]) -> BlobRef {
    let index = image_index(plats);
    blobs.add(&index, 0, 0o444);
    BlobRef::of(&index, OCI_INDEX)
}
