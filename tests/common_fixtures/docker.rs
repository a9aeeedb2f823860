//! `docker save` archives from the graphdriver image store (pre-25 legacy
//! layout and the 25+ OCI-compatible layout) plus go-containerregistry's
//! `tarball.Write` (crane, ko).
//!
//! Sources mirrored: moby `image/tarexport/save.go` (pre-25 `saveLayer`
//! writing `<v1id>/{VERSION,json,layer.tar}`; 25+ `saveConfigAndLayer`
//! writing everything under `blobs/sha256/`), moby
//! `image/tarexport/tarexport.go`, go-containerregistry
//! `pkg/v1/tarball/write.go`.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::Path;

use super::expect::*;
use super::image::{
    ImageRef, IndexEntry, TestImage, container_config, created_at, created_unix, digest,
    digest_hex, index_json, oci_manifest_from, sha256_hex,
};
use super::json::J;
use super::tarw::{TarEntry, gzip_bytes, sort_walk_order, write_tar};

/// One pre-25 "v1 image": the per-layer directory docker save emits.
pub(crate) struct V1Layer {
    pub id: String,
    pub json: Vec<u8>,
    pub layer_index: usize,
}

/// Docker's layer ChainIDs: `chain[0] = diff[0]`,
/// `chain[i] = sha256(chain[i-1] + " " + diff[i])`.
fn chain_ids(img: &TestImage) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in img.diff_ids() {
        let next = match out.last() {
            None => d,
            Some(prev) => digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The empty `container_config` Docker writes for intermediate v1 images.
fn empty_container_config() -> J {
    let f = |k: &str, v: J| (k.to_string(), v);
    J::Obj(vec![
        f("Hostname", J::s("")),
        f("Domainname", J::s("")),
        f("User", J::s("")),
        f("AttachStdin", J::Bool(false)),
        f("AttachStdout", J::Bool(false)),
        f("AttachStderr", J::Bool(false)),
        f("Tty", J::Bool(false)),
        f("OpenStdin", J::Bool(false)),
        f("StdinOnce", J::Bool(false)),
        f("Env", J::Null),
        f("Cmd", J::Null),
        f("Image", J::s("")),
        f("Volumes", J::Null),
        f("WorkingDir", J::s("")),
        f("Entrypoint", J::Null),
        f("OnBuild", J::Null),
        f("Labels", J::Null),
    ])
}

/// `image.V1Image` fields (minus id/parent) for layer `i`: intermediate
/// layers get the epoch placeholder, the top layer the image's own data.
fn v1_fields(img: &TestImage, top: bool) -> Vec<(String, J)> {
    let f = |k: &str, v: J| (k.to_string(), v);
    if !top {
        return vec![
            f("created", J::s("1970-01-01T00:00:00Z")),
            f("container_config", empty_container_config()),
            f("os", J::s(&img.os)),
        ];
    }
    let mut v = vec![
        f("created", J::s(created_at(img.seed))),
        f("container_config", empty_container_config()),
        f("config", container_config(img.seed)),
        f("architecture", J::s(&img.arch)),
    ];
    if let Some(var) = &img.variant {
        v.push(f("variant", J::s(var)));
    }
    v.push(f("os", J::s(&img.os)));
    v
}

/// v1 IDs as `image/v1.CreateID` derives them: sha256 of the v1 JSON
/// (map-sorted keys) plus `layer_id` (ChainID) and `parent` (digest).
pub(crate) fn v1_layers(img: &TestImage) -> Vec<V1Layer> {
    let chains = chain_ids(img);
    let mut parent: Option<String> = None;
    let mut out = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        let fields = v1_fields(img, i + 1 == chains.len());
        let mut id_fields = fields.clone();
        id_fields.push(("layer_id".into(), J::s(chain)));
        if let Some(p) = &parent {
            id_fields.push(("parent".into(), J::s(format!("sha256:{p}"))));
        }
        let id = sha256_hex(&J::map(id_fields).compact());
        let mut json = vec![("id".to_string(), J::s(&id))];
        if let Some(p) = &parent {
            json.push(("parent".to_string(), J::s(p)));
        }
        json.extend(fields);
        out.push(V1Layer {
            id: id.clone(),
            json: J::Obj(json).compact(),
            layer_index: i,
        });
        parent = Some(id);
    }
    out
}

fn familiar_tags(tags: &[String]) -> Vec<String> {
    tags.iter().map(|t| ImageRef::parse(t).familiar()).collect()
}

/// `RepoTags` as Go marshals a possibly-nil `[]string`.
fn repo_tags_json(tags: &[String]) -> J {
    if tags.is_empty() {
        J::Null
    } else {
        J::strs(tags)
    }
}

/// The `repositories` file: `{familiar name: {tag: id}}`, map-sorted, with
/// the trailing newline of `json.Encoder.Encode`.
fn repositories_json(repos: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<u8> {
    let outer = repos
        .iter()
        .map(|(name, tags)| {
            let inner = tags.iter().map(|(t, id)| (t.clone(), J::s(id))).collect();
            (name.clone(), J::map(inner))
        })
        .collect();
    let mut b = J::map(outer).compact();
    b.push(b'\n');
    b
}

fn add_repos(repos: &mut BTreeMap<String, BTreeMap<String, String>>, tags: &[String], id: &str) {
    for t in tags {
        let r = ImageRef::parse(t);
        repos
            .entry(r.familiar_name)
            .or_default()
            .insert(r.tag, id.to_string());
    }
}

/// Accumulated output of a `docker save` run over several images.
#[derive(Default)]
struct SaveState {
    entries: Vec<TarEntry>,
    items: Vec<J>,
    repos: BTreeMap<String, BTreeMap<String, String>>,
    exp: Expected,
}

impl SaveState {
    /// Closes the run: `manifest.json`, `repositories`, expectation.
    fn finish(mut self) -> (Vec<TarEntry>, Expected) {
        push_manifest_and_repos(&mut self.entries, self.items, &self.repos, 0);
        (self.entries, self.exp)
    }
}

/// Legacy layout entries, unsorted, plus the expectation.
pub(crate) fn legacy_entries(images: &[(TestImage, Vec<String>)]) -> (Vec<TarEntry>, Expected) {
    let mut st = SaveState::default();
    let mut saved_ids = HashSet::new();
    let mut layer_paths = BTreeMap::new();
    for (img, tags) in images {
        let v1 = v1_layers(img);
        for l in v1.iter().filter(|l| saved_ids.insert(l.id.clone())) {
            legacy_layer_dir(&mut st.entries, &mut layer_paths, img, l);
        }
        legacy_image(&mut st, img, tags, &v1);
    }
    st.finish()
}

/// Config file, manifest item, repositories entry and target of one image.
fn legacy_image(st: &mut SaveState, img: &TestImage, tags: &[String], v1: &[V1Layer]) {
    let config_name = format!("{}.json", digest_hex(&img.config_digest));
    if !st.entries.iter().any(|e| e.name == config_name) {
        let t = created_unix(img.seed);
        st.entries
            .push(TarEntry::file(&config_name, img.config.clone(), t));
    }
    let layers: Vec<String> = v1.iter().map(|l| format!("{}/layer.tar", l.id)).collect();
    let familiar = familiar_tags(tags);
    st.items.push(J::obj([
        ("Config", J::s(&config_name)),
        ("RepoTags", repo_tags_json(&familiar)),
        ("Layers", J::strs(&layers)),
    ]));
    if let Some(top) = v1.last() {
        add_repos(&mut st.repos, tags, &top.id);
    }
    let blobs = img
        .layers
        .iter()
        .map(|l| l.tar_blob(DOCKER_LAYER))
        .collect();
    st.exp
        .push_target(synthesised_target(img, familiar, DOCKER_CONFIG, blobs));
}

/// `<v1id>/`, `VERSION`, `json`, `layer.tar`; a layer whose DiffID was
/// already written becomes a relative symlink to the first copy, exactly
/// as moby's `saveLayer` does with `diffIDPaths`.
fn legacy_layer_dir(
    entries: &mut Vec<TarEntry>,
    paths: &mut BTreeMap<String, String>,
    img: &TestImage,
    l: &V1Layer,
) {
    let t = created_unix(img.seed);
    let layer = &img.layers[l.layer_index];
    let dir = format!("{}/", l.id);
    entries.push(TarEntry::dir(&dir, t));
    entries.push(TarEntry::file(&format!("{dir}VERSION"), b"1.0".to_vec(), t));
    entries.push(TarEntry::file(&format!("{dir}json"), l.json.clone(), t));
    let path = format!("{dir}layer.tar");
    match paths.get(&layer.diff_id) {
        Some(first) => entries.push(TarEntry::symlink(&path, &format!("../{first}"), t)),
        None => {
            entries.push(TarEntry::file(&path, layer.tar.clone(), t));
            paths.insert(layer.diff_id.clone(), path);
        }
    }
}

/// `manifest.json` and (when anything is tagged) `repositories`, both
/// written by `json.NewEncoder(f).Encode`, hence the trailing newline.
fn push_manifest_and_repos(
    entries: &mut Vec<TarEntry>,
    items: Vec<J>,
    repos: &BTreeMap<String, BTreeMap<String, String>>,
    mtime: u64,
) {
    let mut manifest = J::Arr(items).compact();
    manifest.push(b'\n');
    entries.push(TarEntry::file("manifest.json", manifest, mtime));
    if !repos.is_empty() {
        entries.push(TarEntry::file(
            "repositories",
            repositories_json(repos),
            mtime,
        ));
    }
}

/// Target for formats without a stored manifest: the pusher synthesises a
/// Docker schema 2 manifest, so no digest can be predicted.
fn synthesised_target(
    img: &TestImage,
    refs: Vec<String>,
    config_mt: &str,
    layers: Vec<BlobRef>,
) -> ExpectedTarget {
    ExpectedTarget {
        refs,
        media_type: DOCKER_MANIFEST.into(),
        digest: None,
        manifests: vec![ExpectedManifest {
            digest: None,
            media_type: DOCKER_MANIFEST.into(),
            platform: Some(img.platform()),
            config: img.config_blob(config_mt),
            layers,
        }],
        absent_manifests: vec![],
    }
}

/// Pre-25 `docker save`. Members, in moby's lexical walk order: per v1
/// layer `<v1id>/`, `<v1id>/VERSION` ("1.0"), `<v1id>/json`,
/// `<v1id>/layer.tar` (or a `../<other>/layer.tar` symlink for a repeated
/// DiffID); `<config hex>.json`; `manifest.json`; `repositories` (only when
/// something is tagged). Layers are stored uncompressed (graphdriver diffs)
/// whatever `TestLayer::gzipped` says.
pub fn write_docker_legacy(
    path: &Path,
    images: &[(TestImage, Vec<String>)],
) -> io::Result<Expected> {
    let (mut entries, exp) = legacy_entries(images);
    sort_walk_order(&mut entries);
    write_tar(path, &entries)?;
    Ok(exp)
}

/// Collects `blobs/sha256/<hex>` entries once each.
#[derive(Default)]
pub(crate) struct Blobs {
    pub entries: Vec<TarEntry>,
    seen: HashSet<String>,
}

impl Blobs {
    pub fn add(&mut self, bytes: &[u8], mtime: u64, mode: u32) -> BlobRef {
        let b = BlobRef::of(bytes, "");
        if self.seen.insert(b.digest.clone()) {
            let name = format!("blobs/sha256/{}", b.hex());
            self.entries
                .push(TarEntry::file(&name, bytes.to_vec(), mtime).with_mode(mode));
        }
        b
    }
}

/// Docker 25+ (graphdriver store) entries, unsorted, plus the expectation.
pub(crate) fn docker25_entries(images: &[(TestImage, Vec<String>)]) -> (Vec<TarEntry>, Expected) {
    let mut st = SaveState::default();
    let mut blobs = Blobs::default();
    let mut descs = Vec::new();
    for (img, tags) in images {
        docker25_image(&mut st, &mut blobs, &mut descs, img, tags);
    }
    st.exp.unreferenced_blobs.sort();
    st.exp.unreferenced_blobs.dedup();
    st.entries.push(TarEntry::dir("blobs/", 0));
    st.entries.push(TarEntry::dir("blobs/sha256/", 0));
    st.entries.extend(std::mem::take(&mut blobs.entries));
    let index = index_json(&descs, Some(OCI_INDEX));
    st.entries.push(TarEntry::file("index.json", index, 0));
    let layout = br#"{"imageLayoutVersion": "1.0.0"}"#.to_vec();
    st.entries.push(TarEntry::file("oci-layout", layout, 0));
    st.finish()
}

/// Blobs (v1 JSONs, uncompressed layers, config, OCI manifest), index
/// descriptors, manifest item, repositories entry and target of one image.
fn docker25_image(
    st: &mut SaveState,
    blobs: &mut Blobs,
    descs: &mut Vec<IndexEntry>,
    img: &TestImage,
    tags: &[String],
) {
    let t = created_unix(img.seed);
    for l in v1_layers(img) {
        let b = blobs.add(&l.json, t, 0o644);
        st.exp.unreferenced_blobs.push(b.digest);
    }
    for l in &img.layers {
        blobs.add(&l.tar, t, 0o644);
    }
    blobs.add(&img.config, t, 0o644);
    let layers: Vec<BlobRef> = img.layers.iter().map(|l| l.tar_blob(OCI_LAYER)).collect();
    let config = img.config_blob(OCI_CONFIG);
    let manifest = oci_manifest_from(&config, &layers);
    blobs.add(&manifest, 0, 0o644);
    let mblob = BlobRef::of(&manifest, OCI_MANIFEST);
    push_docker25_descs(descs, &mblob, tags);
    let familiar = familiar_tags(tags);
    st.items.push(docker25_item(img, &familiar, &layers));
    if let Some(top) = img.layers.last() {
        add_repos(&mut st.repos, tags, digest_hex(&top.diff_id));
    }
    st.exp
        .push_target(stored_target(img, familiar, &mblob, config, layers));
}

/// One `index.json` descriptor per tag, annotated with the full name and
/// the tag. moby adds the untagged descriptor only while the shared list is
/// still empty (`if len(manifestDescriptors) == 0`), so only the first
/// untagged image appears; mirrored on purpose.
fn push_docker25_descs(descs: &mut Vec<IndexEntry>, mblob: &BlobRef, tags: &[String]) {
    for t in tags {
        let r = ImageRef::parse(t);
        descs.push(IndexEntry {
            blob: mblob.clone(),
            annotations: vec![
                ("io.containerd.image.name".into(), r.full()),
                ("org.opencontainers.image.ref.name".into(), r.tag.clone()),
            ],
            platform: None,
        });
    }
    if descs.is_empty() {
        descs.push(IndexEntry {
            blob: mblob.clone(),
            annotations: vec![],
            platform: None,
        });
    }
}

/// `manifest.json` item with `blobs/sha256/...` paths and `LayerSources`
/// (Docker 25.0.1+ records every layer there, not only foreign ones).
fn docker25_item(img: &TestImage, familiar: &[String], layers: &[BlobRef]) -> J {
    // A map in Go: a layer repeated in one image appears once.
    let sources: BTreeMap<String, J> = layers
        .iter()
        .map(|b| (b.digest.clone(), b.docker_json()))
        .collect();
    let paths: Vec<String> = layers
        .iter()
        .map(|b| format!("blobs/sha256/{}", b.hex()))
        .collect();
    J::obj([
        (
            "Config",
            J::s(format!("blobs/sha256/{}", digest_hex(&img.config_digest))),
        ),
        ("RepoTags", repo_tags_json(familiar)),
        ("Layers", J::strs(&paths)),
        ("LayerSources", J::map(sources.into_iter().collect())),
    ])
}

/// Target whose manifest bytes are in the archive: digest is fixed.
pub(crate) fn stored_target(
    img: &TestImage,
    refs: Vec<String>,
    mblob: &BlobRef,
    config: BlobRef,
    layers: Vec<BlobRef>,
) -> ExpectedTarget {
    ExpectedTarget {
        refs,
        media_type: mblob.media_type.clone(),
        digest: Some(mblob.digest.clone()),
        manifests: vec![ExpectedManifest {
            digest: Some(mblob.digest.clone()),
            media_type: mblob.media_type.clone(),
            platform: Some(img.platform()),
            config,
            layers,
        }],
        absent_manifests: vec![],
    }
}

/// Docker 25+ `docker save` with the classic (graphdriver) image store.
///
/// Members, in moby's lexical walk order: `blobs/`, `blobs/sha256/`, the
/// blobs (image config, uncompressed layer tars named by DiffID, the OCI
/// manifest, and one legacy v1 JSON per layer that nothing references),
/// `index.json`, `manifest.json`, `oci-layout`, `repositories`.
/// 25+ writes **no** `<v1id>/` directories, `VERSION` files or
/// `layer.tar` symlinks (moby `saveConfigAndLayer`; confirmed by the
/// hello-world listing in moby#47065). Mirrors 25.0.1+: 25.0.0 shipped an
/// OCI manifest without layers (moby#47065) and a config descriptor with a
/// `platform`; layer order was fixed in moby#47160.
pub fn write_docker25(path: &Path, images: &[(TestImage, Vec<String>)]) -> io::Result<Expected> {
    let (mut entries, exp) = docker25_entries(images);
    sort_walk_order(&mut entries);
    write_tar(path, &entries)?;
    Ok(exp)
}

/// The gzip blob ggcr writes for a layer (`Layer.Compressed()`).
fn compressed(l: &super::image::TestLayer) -> Vec<u8> {
    if l.gzipped {
        l.bytes.clone()
    } else {
        gzip_bytes(&l.tar)
    }
}

/// go-containerregistry `tarball.MultiRefWrite` (crane pull, ko, jib's
/// tar output): per image `sha256:<config hex>` then `<layer hex>.tar.gz`
/// (compressed digest), `manifest.json` last, sorted by joined RepoTags.
/// Modes 0644, mtime 0, no directories. Tags without one get `:latest`.
pub fn write_ggcr_tarball(
    path: &Path,
    images: &[(TestImage, Vec<String>)],
) -> io::Result<Expected> {
    let mut entries = Vec::new();
    let mut items: Vec<(String, J)> = Vec::new();
    let mut exp = Expected::default();
    for (img, tags) in images {
        entries.push(TarEntry::file(&img.config_digest, img.config.clone(), 0));
        let blobs = ggcr_layers(&mut entries, img);
        let files: Vec<String> = blobs
            .iter()
            .map(|b| format!("{}.tar.gz", b.hex()))
            .collect();
        let tags: Vec<String> = tags.iter().map(|t| with_default_tag(t)).collect();
        items.push((tags.join(","), ggcr_item(img, &tags, &files)));
        exp.push_target(synthesised_target(img, tags, DOCKER_CONFIG, blobs));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let manifest = J::Arr(items.into_iter().map(|(_, j)| j).collect()).compact();
    entries.push(TarEntry::file("manifest.json", manifest, 0));
    write_tar(path, &entries)?;
    Ok(exp)
}

/// `<hex>.tar.gz` members for layers not written yet (ggcr's
/// `seenLayerDigests`); returns every layer's compressed blob.
fn ggcr_layers(entries: &mut Vec<TarEntry>, img: &TestImage) -> Vec<BlobRef> {
    let mut blobs = Vec::new();
    for l in &img.layers {
        let gz = compressed(l);
        let b = BlobRef::of(&gz, DOCKER_LAYER_GZIP);
        let name = format!("{}.tar.gz", b.hex());
        if !entries.iter().any(|e| e.name == name) {
            entries.push(TarEntry::file(&name, gz, 0));
        }
        blobs.push(b);
    }
    blobs
}

fn ggcr_item(img: &TestImage, tags: &[String], files: &[String]) -> J {
    J::obj([
        ("Config", J::s(&img.config_digest)),
        ("RepoTags", repo_tags_json(tags)),
        ("Layers", J::strs(files)),
    ])
}

fn with_default_tag(t: &str) -> String {
    let slash = t.rfind('/').map_or(0, |i| i + 1);
    if t[slash..].contains(':') {
        t.to_string()
    } else {
        format!("{t}:latest")
    }
}
