//! Save: cached images into one archive that `docker load`, skopeo and this tool's
//! `extract` and `push` all read, in the layout `docker save` writes from Docker 25 on: an
//! OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) plus the older
//! `manifest.json` and `repositories`. Every blob is re-hashed on its way into the archive
//! so a damaged cache cannot travel to an air-gapped network unnoticed, and the archive is
//! written under a temporary name and renamed when complete, so a full USB stick or a
//! pulled plug never leaves a file that looks whole.

mod exclude;
mod split;

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::json;

use crate::archive::incremental;
use crate::cache::files::LockMode;
use crate::cache::reach::reach;
use crate::cache::variants::Variant;
use crate::cache::{Cache, Entry};
use crate::compress::manifest::{self, Compressed};
use crate::compress::{
    Compressor, FrameStream, Recipe, is_already_compressed, is_uncompressed_layer,
};
use crate::error::{Error, Result, io_error};
use crate::image::digest::{Digest, Hasher, VerifyingReader};
use crate::image::layout::{self, BlobStore};
use crate::image::reference::Reference;
use crate::image::{
    self, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Blob, BlobSource, Descriptor,
    ManifestKind, RawManifest,
};
use crate::ui::progress::{Reporter, human_bytes};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SaveReport {
    pub output: String,
    /// Names (or digests, for unnamed images) written.
    pub images: Vec<String>,
    pub blobs: usize,
    pub bytes: u64,
    /// With `--compress`: what was compressed on the way into the archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<SaveCompression>,
    /// With `--split`: the parts written, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// With `--exclude-from`: layers left out because the far side has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<SaveExcluded>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SaveExcluded {
    pub layers: usize,
    pub bytes: u64,
}

/// How the archive is laid out: cut into parts, and which blobs it leaves out.
#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// `--split`: the largest part, in bytes.
    pub split: Option<u64>,
    /// `--exclude-from`: digest lists or earlier bundles naming blobs the far side has.
    pub exclude_from: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SaveCompression {
    pub algorithm: &'static str,
    pub layers_compressed: usize,
    pub bytes_uncompressed: u64,
    pub bytes_compressed: u64,
}

/// How `save` compresses uncompressed layers: the recipe, the pool's threads and the
/// memory they may use (`--memory-limit`).
#[derive(Debug, Clone, Copy)]
pub struct SaveCompressionOptions {
    pub recipe: Recipe,
    pub threads: usize,
    pub memory_limit: u64,
}

/// One image to save: its index entry and every name it goes by.
struct Chosen {
    entry: Entry,
    names: Vec<Reference>,
}

pub fn save(
    cache: &Cache,
    queries: &[String],
    output: &Path,
    compression: Option<SaveCompressionOptions>,
    bundle: &BundleOptions,
    reporter: &Reporter,
) -> Result<SaveReport> {
    if queries.is_empty() {
        return Err(Error::usage("name at least one cached image to save"));
    }
    if compression.is_some() && !bundle.exclude_from.is_empty() {
        // Compressed layers get new digests, which no list from the far side names.
        return Err(
            Error::usage("--exclude-from cannot be combined with --compress")
                .hint("save the incremental bundle without --compress"),
        );
    }
    let present = exclude::present_blobs(&bundle.exclude_from)?;
    let _lock = cache.lock(LockMode::Shared, &|| {
        reporter.info("waiting for another process cleaning the cache")
    })?;
    let index = cache.read_index()?;
    let mut chosen: Vec<Chosen> = Vec::new();
    for query in queries {
        let mut found = index.find(query);
        if found.is_empty() {
            found.push(index.find_one(query, cache.root())?);
        }
        for position in found {
            let entry = &index.manifests[position];
            let name = entry.name().and_then(|n| Reference::parse(n).ok());
            match chosen.iter_mut().find(|c| c.entry.digest == entry.digest) {
                Some(existing) => existing
                    .names
                    .extend(name.filter(|n| !existing.names.contains(n))),
                None => chosen.push(Chosen {
                    entry: entry.clone(),
                    names: name.into_iter().collect(),
                }),
            }
        }
    }

    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut artifacts = Vec::new();
    for image in &chosen {
        let reached = reach(cache, &image.entry.descriptor())?;
        if !reached.is_complete() {
            return Err(Error::input(format!(
                "{} is incomplete in the cache: it lacks blob {}",
                image.entry.label(),
                reached.missing[0]
            ))
            .hint("pull or extract it again, then save"));
        }
        blobs.extend(reached.blobs);
        if compression.is_some() || !bundle.exclude_from.is_empty() {
            artifacts.push(cache.artifact(&image.entry)?);
        }
    }
    let mut excluded: BTreeMap<Digest, u64> = BTreeMap::new();
    if !bundle.exclude_from.is_empty() {
        for (digest, size) in exclude::layers(&artifacts)? {
            if present.contains(&digest) && blobs.remove(&digest).is_some() {
                excluded.insert(digest, size);
            }
        }
    }
    if let Some(size) = bundle.split
        && compression.is_none()
    {
        split::check_part_count(blobs.values().sum(), size)?;
    }
    // Layers to compress, and the manifests that are written after them (rebuilt around
    // the compressed layers, or as they are).
    let mut layers: BTreeMap<Digest, Blob> = BTreeMap::new();
    if compression.is_some() {
        for artifact in &artifacts {
            for manifest in &artifact.manifests {
                blobs.remove(&manifest.digest);
            }
            for blob in artifact.blobs.iter().filter(|b| is_uncompressed_layer(b)) {
                blobs.remove(&blob.digest);
                layers.insert(blob.digest.clone(), blob.clone());
            }
        }
    }

    let mut sink = split::Sink::create(output, bundle.split)?;
    let mut writer = ArchiveWriter::new(sink.writer());
    let failed = |e: io::Error| match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            Error::input(format!("a blob in the cache is damaged: {e}"))
                .hint("run `docker-image-pusher verify`, then pull or extract the image again")
        }
        _ => io_error("write", output, e),
    };
    let mut total = writer.blobs(cache, &blobs, reporter).map_err(failed)?;
    let mut count = blobs.len();
    // Manifests as written (rebuilt or not), by the digest they had in the cache.
    let mut roots: BTreeMap<Digest, RawManifest> = BTreeMap::new();
    let mut written_manifests: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
    let mut summary = None;
    if let Some(options) = compression {
        let state = crate::cache::state::StateDir::for_cache(cache.root());
        let compressor =
            Compressor::with_spill_dir(options.threads, options.memory_limit, Some(state.root()));
        let mut compressed: BTreeMap<Digest, Compressed> = BTreeMap::new();
        let mut bytes_uncompressed = 0;
        for layer in layers.values() {
            let written = writer
                .compressed_layer(cache, layer, options.recipe, &compressor, reporter)
                .map_err(failed)?;
            count += 1;
            match written {
                Some(form) => {
                    total += form.size;
                    bytes_uncompressed += layer.size;
                    compressed.insert(layer.digest.clone(), form);
                }
                None => total += layer.size,
            }
        }
        for artifact in &artifacts {
            let rewritten = manifest::rewrite(&artifact.manifests, &compressed)?;
            for manifest in &rewritten.manifests {
                written_manifests
                    .entry(manifest.digest.clone())
                    .or_insert_with(|| manifest.bytes.clone());
            }
            let old = &artifact.root().digest;
            let new = rewritten.manifests.last().expect("a root manifest").clone();
            roots.insert(old.clone(), new);
        }
        for (digest, bytes) in &written_manifests {
            writer
                .blob(&format!("blobs/sha256/{}", digest.hex()), bytes)
                .map_err(failed)?;
            total += bytes.len() as u64;
            count += 1;
        }
        summary = Some(SaveCompression {
            algorithm: options.recipe.algorithm.name(),
            layers_compressed: compressed.len(),
            bytes_uncompressed,
            bytes_compressed: compressed.values().map(|c| c.size).sum(),
        });
    }

    // index.json, manifest.json and repositories name the manifests as written.
    let store = Overlay {
        cache,
        manifests: &written_manifests,
    };
    let mut descriptors = Vec::new();
    let mut items = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in &mut chosen {
        if let Some(root) = roots.get(&image.entry.digest) {
            image.entry.digest = root.digest.clone();
            image.entry.size = root.bytes.len() as u64;
            image.entry.media_type = root.media_type.clone();
        }
        descriptors.extend(index_descriptors(image));
        let (item, config) = manifest_item(&store, image)?;
        items.push(item);
        for name in &image.names {
            if let (Some(tag), Some(config)) = (name.tag(), &config) {
                repositories
                    .entry(familiar_repository(name))
                    .or_default()
                    .insert(tag.to_string(), config.hex().to_string());
            }
        }
    }
    // Nothing left out: a full archive, which docker load reads.
    let incremental = (!excluded.is_empty()).then_some(&excluded);
    writer
        .documents(&descriptors, &items, &repositories, incremental)
        .map_err(failed)?;
    let parts = sink.commit(output)?;
    Ok(SaveReport {
        output: output.display().to_string(),
        images: chosen
            .iter()
            .map(|c| match c.names.first() {
                Some(name) => name.to_string(),
                None => c.entry.digest.to_string(),
            })
            .collect(),
        blobs: count,
        bytes: total,
        compression: summary,
        parts,
        excluded: (!bundle.exclude_from.is_empty()).then(|| SaveExcluded {
            layers: excluded.len(),
            bytes: excluded.values().sum(),
        }),
    })
}

/// The cache plus manifests that exist only in the archive being written.
struct Overlay<'a> {
    cache: &'a Cache,
    manifests: &'a BTreeMap<Digest, Vec<u8>>,
}

impl BlobStore for Overlay<'_> {
    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        match self.manifests.get(digest) {
            Some(bytes) => Some(bytes.len() as u64),
            None => self.cache.blob_size(digest),
        }
    }

    fn read_small_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        match self.manifests.get(digest) {
            Some(bytes) => Ok(bytes.clone()),
            None => self.cache.read_small_blob(digest, limit),
        }
    }
}

/// `index.json` entries the way Docker 25+ writes them: one per name, with the full name
/// and the tag; an unnamed image gets one bare entry.
fn index_descriptors(image: &Chosen) -> Vec<serde_json::Value> {
    let descriptor = |annotations: BTreeMap<&str, String>| {
        let mut value = json!({
            "mediaType": image.entry.media_type,
            "digest": image.entry.digest,
            "size": image.entry.size,
        });
        if !annotations.is_empty() {
            value["annotations"] = json!(annotations);
        }
        value
    };
    if image.names.is_empty() {
        return vec![descriptor(BTreeMap::new())];
    }
    image
        .names
        .iter()
        .map(|name| {
            let mut annotations = BTreeMap::new();
            annotations.insert(ANNOTATION_CONTAINERD_NAME, name.to_string());
            if let Some(tag) = name.tag() {
                annotations.insert(ANNOTATION_REF_NAME, tag.to_string());
            }
            descriptor(annotations)
        })
        .collect()
}

/// The `manifest.json` item (config and layer paths, tags) that `docker load` before
/// the containerd store and skopeo's docker-archive reader use. An index is represented by
/// this machine's platform, else its first image, as Docker does.
fn manifest_item(
    store: &dyn BlobStore,
    image: &Chosen,
) -> Result<(serde_json::Value, Option<Digest>)> {
    let mut descriptor: Descriptor = image.entry.descriptor();
    for _ in 0..4 {
        let bytes = layout::read_verified(store, &descriptor)?;
        match image::parse_manifest(&bytes, &descriptor.media_type)?.1 {
            ManifestKind::Index(index) => {
                let host = crate::image::platform::host_platform();
                let Some(child) = crate::image::platform::choose_platform(&index.manifests, &host)
                    .or_else(|| {
                        index
                            .manifests
                            .iter()
                            .find(|d| d.platform.as_ref().is_some_and(|p| p.os != "unknown"))
                    })
                    .or(index.manifests.first())
                else {
                    break;
                };
                descriptor = child.clone();
            }
            ManifestKind::Image(manifest) => {
                let path = |digest: &Digest| format!("blobs/sha256/{}", digest.hex());
                let tags: Vec<String> = image
                    .names
                    .iter()
                    .filter(|n| n.tag().is_some())
                    .map(familiar)
                    .collect();
                let item = json!({
                    "Config": path(&manifest.config.digest),
                    "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { json!(tags) },
                    "Layers": manifest.layers.iter().map(|l| path(&l.digest)).collect::<Vec<_>>(),
                });
                return Ok((item, Some(manifest.config.digest.clone())));
            }
        }
    }
    Ok((
        json!({"Config": "", "RepoTags": serde_json::Value::Null, "Layers": []}),
        None,
    ))
}

/// Docker's short form of a name: `busybox:latest` for `docker.io/library/busybox:latest`.
pub fn familiar(name: &Reference) -> String {
    format!("{}:{}", familiar_repository(name), name.tag_or_latest())
}

fn familiar_repository(name: &Reference) -> String {
    if name.registry() == "docker.io" {
        match name.repository().strip_prefix("library/") {
            Some(short) if !short.contains('/') => short.to_string(),
            _ => name.repository().to_string(),
        }
    } else {
        name.repository_reference()
    }
}

/// The archive as it is written: a tar of blobs, then the layout's documents.
struct ArchiveWriter<'f> {
    builder: tar::Builder<BufWriter<&'f mut dyn split::WriteSeek>>,
}

impl<'f> ArchiveWriter<'f> {
    fn new(file: &'f mut dyn split::WriteSeek) -> ArchiveWriter<'f> {
        let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
        builder.mode(tar::HeaderMode::Deterministic);
        ArchiveWriter { builder }
    }

    /// The directories, then every blob of `blobs` from the cache, re-hashed on the way.
    fn blobs(
        &mut self,
        cache: &Cache,
        blobs: &BTreeMap<Digest, u64>,
        reporter: &Reporter,
    ) -> io::Result<u64> {
        for directory in ["blobs/", "blobs/sha256/"] {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            self.builder
                .append_data(&mut header, directory, io::empty())?;
        }
        let mut total = 0;
        for (digest, &size) in blobs {
            // The descriptor's size is what the blob must be; the file is checked against it.
            let Some(stored) = cache.blob_size(digest) else {
                continue;
            };
            if stored != size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob {digest} is {stored} bytes, its descriptor says {size}"),
                ));
            }
            self.cached_blob(cache, digest, size)?;
            total += size;
            if size > 1 << 20 {
                reporter.detail(&format!(
                    "{}: saved ({})",
                    digest.short(),
                    human_bytes(size)
                ));
            }
        }
        Ok(total)
    }

    fn cached_blob(&mut self, cache: &Cache, digest: &Digest, size: u64) -> io::Result<()> {
        let blob = Blob {
            digest: digest.clone(),
            size,
            media_type: String::new(),
        };
        let reader = VerifyingReader::new(cache.open_blob(&blob, 0)?, digest.clone(), size);
        let mut header = file_header(size);
        self.builder.append_data(
            &mut header,
            format!("blobs/sha256/{}", digest.hex()),
            reader,
        )
    }

    fn blob(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let mut header = file_header(bytes.len() as u64);
        self.builder.append_data(&mut header, path, bytes)
    }

    /// Compresses `layer` from the cache into the archive. Its name and size are known
    /// only at the end, so its header is written as a placeholder and filled in once the
    /// data is down (the archive is a regular file: no temporary copy of the layer). A
    /// layer that turns out to be compressed already is copied as it is (`None`).
    fn compressed_layer(
        &mut self,
        cache: &Cache,
        layer: &Blob,
        recipe: Recipe,
        compressor: &Compressor,
        reporter: &Reporter,
    ) -> io::Result<Option<Compressed>> {
        let mut frames = FrameStream::open(compressor, recipe, cache, layer, 0)?;
        let first = match frames.next() {
            Some(Err(e)) if is_already_compressed(&e) => {
                self.cached_blob(cache, &layer.digest, layer.size)?;
                return Ok(None);
            }
            Some(first) => first?,
            None => return Err(io::Error::other("a layer without blocks")),
        };
        let writer = self.builder.get_mut();
        writer.flush()?;
        let header_at = writer.get_mut().stream_position()?;
        let placeholder = Digest::of(b"");
        let mut header = file_header(0);
        header.set_path(format!("blobs/sha256/{}", placeholder.hex()))?;
        header.set_cksum();
        writer.write_all(header.as_bytes())?;
        let mut hasher = Hasher::new();
        let mut sizes = Vec::new();
        for frame in std::iter::once(Ok(first)).chain(frames) {
            let frame = frame?;
            sizes.push(frame.data.size());
            frame.data.write_to(
                |piece| {
                    hasher.update(piece);
                    writer.write_all(piece)
                },
                |e| e,
            )?;
        }
        let size = hasher.position();
        let padding = (512 - size % 512) % 512;
        writer.write_all(&vec![0u8; padding as usize])?;
        writer.flush()?;
        let digest = hasher.digest();
        let file = writer.get_mut();
        let end = file.stream_position()?;
        let mut header = file_header(size);
        header.set_path(format!("blobs/sha256/{}", digest.hex()))?;
        header.set_cksum();
        file.seek(SeekFrom::Start(header_at))?;
        file.write_all(header.as_bytes())?;
        file.seek(SeekFrom::Start(end))?;
        let variant = Variant::new(&layer.digest, layer.size, &recipe, digest.clone(), sizes);
        if let Err(e) = cache.record_variant(&variant) {
            reporter.detail(&format!(
                "cannot remember the compressed form of layer {}: {e}",
                layer.digest.short()
            ));
        }
        reporter.detail(&format!(
            "{}: saved ({} as {} {})",
            layer.digest.short(),
            human_bytes(layer.size),
            recipe.algorithm.name(),
            human_bytes(size)
        ));
        Ok(Some(Compressed {
            digest,
            size,
            algorithm: recipe.algorithm,
        }))
    }

    /// The layout's documents. An incremental bundle has no `manifest.json` (which would
    /// send `docker load` after layer files that are not there) but the marker directory
    /// listing what it left out, see `archive::incremental`.
    fn documents(
        mut self,
        descriptors: &[serde_json::Value],
        items: &[serde_json::Value],
        repositories: &BTreeMap<String, BTreeMap<String, String>>,
        incremental: Option<&BTreeMap<Digest, u64>>,
    ) -> io::Result<()> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": image::media::OCI_INDEX,
            "manifests": descriptors,
        });
        let documents = [
            ("index.json", serde_json::to_vec(&index)?),
            ("manifest.json", serde_json::to_vec(items)?),
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("repositories", serde_json::to_vec(repositories)?),
        ];
        if let Some(excluded) = incremental {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            self.builder.append_data(
                &mut header,
                format!("{}/", incremental::MARKER_DIR),
                io::empty(),
            )?;
            self.blob(incremental::README_ENTRY, incremental::README.as_bytes())?;
            self.blob(incremental::EXCLUDED_ENTRY, &incremental::render(excluded))?;
        }
        for (name, bytes) in documents {
            let docker_only = name == "manifest.json" || name == "repositories";
            if incremental.is_none() || !docker_only {
                self.blob(name, &bytes)?;
            }
        }
        self.builder.into_inner()?.flush()
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(size);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names_drop_docker_hub_prefixes_only() {
        let f = |n: &str| familiar(&Reference::parse(n).unwrap());
        assert_eq!(f("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(f("docker.io/team/app:2"), "team/app:2");
        assert_eq!(
            f("127.0.0.1:5000/demo/app:1.0"),
            "127.0.0.1:5000/demo/app:1.0"
        );
    }
}
