//! OCI image layouts and `oci-archive:` tars, plus the real containers/image
//! writer via skopeo.
//!
//! The archive mirrors what skopeo 1.9.3 writes (observed on this machine):
//! a lexical walk of the layout directory (`blobs/`, `blobs/sha256/`, blobs
//! sorted, `index.json`, `oci-layout`), files 0644 owned by `root`,
//! `oci-layout` = `{"imageLayoutVersion": "1.0.0"}`, and an `index.json`
//! without top-level mediaType whose descriptors carry only the
//! `org.opencontainers.image.ref.name` annotation (no platform).

use std::io;
use std::path::Path;
use std::process::Command;

use super::docker::Blobs;
use super::expect::*;
use super::image::{
    ImageRef, IndexEntry, TestImage, TestLayer, index_json, oci_index, oci_manifest,
};
use super::tarw::{Kind, TarEntry, sort_walk_order, write_tar};

/// What an OCI layout / archive entry holds.
#[derive(Debug, Clone)]
pub enum OciEntry {
    Image(TestImage),
    /// Multi-platform image: an OCI index over each image's manifest.
    Index(Vec<TestImage>),
}

/// Fixed mtime for layout files (skopeo uses the wall clock; fixtures must
/// not).
const MTIME: u64 = 1_710_460_800;

fn add_image(blobs: &mut Blobs, img: &TestImage) -> ExpectedManifest {
    blobs.add(&img.config, MTIME, 0o644);
    for l in &img.layers {
        blobs.add(&l.bytes, MTIME, 0o644);
    }
    blobs.add(&oci_manifest(img), MTIME, 0o644);
    img.expected_oci()
}

/// Blobs and `index.json` descriptor for one entry.
fn add_entry(blobs: &mut Blobs, entry: &OciEntry, ref_name: &str) -> (IndexEntry, ExpectedTarget) {
    let (top, manifests) = match entry {
        OciEntry::Image(img) => {
            let m = add_image(blobs, img);
            (BlobRef::of(&oci_manifest(img), OCI_MANIFEST), vec![m])
        }
        OciEntry::Index(imgs) => {
            let manifests: Vec<ExpectedManifest> =
                imgs.iter().map(|i| add_image(blobs, i)).collect();
            let pairs: Vec<(Vec<u8>, &TestImage)> =
                imgs.iter().map(|i| (oci_manifest(i), i)).collect();
            let index = oci_index(&pairs);
            blobs.add(&index, MTIME, 0o644);
            (BlobRef::of(&index, OCI_INDEX), manifests)
        }
    };
    let desc = IndexEntry {
        blob: top.clone(),
        annotations: vec![("org.opencontainers.image.ref.name".into(), ref_name.into())],
        platform: None,
    };
    let target = ExpectedTarget {
        refs: vec![ref_name.to_string()],
        media_type: top.media_type,
        digest: Some(top.digest),
        manifests,
        absent_manifests: vec![],
    };
    (desc, target)
}

/// Layout members in skopeo's order (dirs, sorted blobs, index, oci-layout).
fn layout_entries(entries: &[(OciEntry, &str)]) -> (Vec<TarEntry>, Expected) {
    let mut blobs = Blobs::default();
    let mut descs = Vec::new();
    let mut exp = Expected::default();
    for (entry, ref_name) in entries {
        let (desc, target) = add_entry(&mut blobs, entry, ref_name);
        descs.push(desc);
        exp.push_target(target);
    }
    let mut out = vec![
        TarEntry::dir("blobs/", MTIME),
        TarEntry::dir("blobs/sha256/", MTIME),
    ];
    out.extend(blobs.entries);
    out.push(TarEntry::file(
        "index.json",
        index_json(&descs, None),
        MTIME,
    ));
    out.push(TarEntry::file(
        "oci-layout",
        br#"{"imageLayoutVersion": "1.0.0"}"#.to_vec(),
        MTIME,
    ));
    let mut out: Vec<TarEntry> = out.into_iter().map(|e| e.with_owner("root")).collect();
    sort_walk_order(&mut out);
    (out, exp)
}

/// `skopeo copy ... oci-archive:PATH:REF`-shaped archive.
pub fn write_oci_archive(path: &Path, entries: &[(OciEntry, &str)]) -> io::Result<Expected> {
    let (files, exp) = layout_entries(entries);
    write_tar(path, &files)?;
    Ok(exp)
}

/// The same layout as a directory (`oci:DIR`), e.g. to feed skopeo.
pub fn write_oci_layout_dir(dir: &Path, entries: &[(OciEntry, &str)]) -> io::Result<Expected> {
    let (files, exp) = layout_entries(entries);
    for f in &files {
        let p = dir.join(f.name.trim_end_matches('/'));
        match &f.kind {
            Kind::Dir => std::fs::create_dir_all(&p)?,
            Kind::File(data) => std::fs::write(&p, data)?,
            Kind::Symlink(_) => {}
        }
    }
    Ok(exp)
}

/// Skopeo binary; `SKOPEO` overrides the default `/usr/bin/skopeo` lookup.
fn skopeo_bin() -> String {
    std::env::var("SKOPEO").unwrap_or_else(|_| "skopeo".to_string())
}

pub fn skopeo_available() -> bool {
    Command::new(skopeo_bin())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs skopeo; a failure carries its stderr so tests show the reason.
fn run_skopeo(args: &[&str]) -> io::Result<Vec<u8>> {
    let out = Command::new(skopeo_bin()).args(args).output()?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(io::Error::other(format!(
        "skopeo {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// `--insecure-policy`: no signature policy applies to local fixtures, and
/// the machine's policy.json must not matter.
fn skopeo_copy(src: &str, dst: &str, out: &Path) -> io::Result<()> {
    // Both archive transports refuse to append to an existing file.
    if out.exists() {
        std::fs::remove_file(out)?;
    }
    run_skopeo(&["--insecure-policy", "copy", "--quiet", src, dst]).map(|_| ())
}

fn path_str(p: &Path) -> io::Result<&str> {
    p.to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "non-UTF-8 path"))
}

/// Real containers/image docker-archive writer:
/// `skopeo copy oci:DIR:SRC_REF docker-archive:OUT:REPO_TAG`.
pub fn skopeo_docker_archive(
    layout_dir: &Path,
    src_ref: &str,
    out: &Path,
    repo_tag: &str,
) -> io::Result<()> {
    let src = format!("oci:{}:{src_ref}", path_str(layout_dir)?);
    let dst = format!("docker-archive:{}:{repo_tag}", path_str(out)?);
    skopeo_copy(&src, &dst, out)
}

/// Real containers/image oci-archive writer:
/// `skopeo copy oci:DIR:SRC_REF oci-archive:OUT:REF`.
pub fn skopeo_oci_archive(
    layout_dir: &Path,
    src_ref: &str,
    out: &Path,
    dest_ref: &str,
) -> io::Result<()> {
    let src = format!("oci:{}:{src_ref}", path_str(layout_dir)?);
    let dst = format!("oci-archive:{}:{dest_ref}", path_str(out)?);
    skopeo_copy(&src, &dst, out)
}

/// `skopeo copy [--all] SRC DST` for arbitrary transports, e.g. reading a
/// fixture completely (every blob digest-verified) into `oci:DIR:REF`.
/// Without `all`, an index source yields only the host platform's image.
pub fn skopeo_copy_refs(src: &str, dst: &str, all: bool) -> io::Result<()> {
    let mut args = vec!["--insecure-policy", "copy", "--quiet"];
    if all {
        args.push("--all");
    }
    args.extend([src, dst]);
    run_skopeo(&args).map(|_| ())
}

/// `skopeo inspect --raw TRANSPORT:REF`: the manifest bytes skopeo reads.
pub fn skopeo_inspect_raw(image_ref: &str) -> io::Result<Vec<u8>> {
    run_skopeo(&["--insecure-policy", "inspect", "--raw", image_ref])
}

/// What skopeo's docker-archive output holds for `img` (as verified by the
/// self-test): config bytes unchanged, layers decompressed to
/// `<diffid hex>.tar`, a manifest the pusher must synthesise, and RepoTags
/// fully qualified (`docker.io/library/foo:tag`).
pub fn expected_skopeo_docker_archive(img: &TestImage, repo_tag: &str) -> Expected {
    let r = ImageRef::parse(repo_tag);
    let mut exp = Expected::default();
    exp.push_target(ExpectedTarget {
        refs: vec![r.full()],
        media_type: DOCKER_MANIFEST.into(),
        digest: None,
        manifests: vec![ExpectedManifest {
            digest: None,
            media_type: DOCKER_MANIFEST.into(),
            platform: Some(img.platform()),
            config: img.config_blob(DOCKER_CONFIG),
            layers: img
                .layers
                .iter()
                .map(|l: &TestLayer| l.tar_blob(DOCKER_LAYER))
                .collect(),
        }],
        absent_manifests: vec![],
    });
    exp
}
