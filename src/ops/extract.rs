//! Extract: copy an archive's images into the cache. Every blob is hashed while it is
//! copied and enters the cache only if it matches its digest; a compressed layer (gzip or
//! zstd) is also decompressed on the fly and checked against its config's diff_id, so a
//! layer that `docker load` would reject never looks valid in the cache. Blobs are copied in archive
//! order (one pass over a gzipped archive or a slow USB stick), manifests after them, and
//! the index last: an interrupted extract leaves nothing half-visible.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;

use crate::archive::Archive;
use crate::cache::Cache;
use crate::cache::index::{Entry, cache_name, now_rfc3339};
use crate::cache::partial::{Begun, PartialBlob};
use crate::error::{Error, Result};
use crate::image::digest::{Digest, Hasher};
use crate::image::reference::Reference;
use crate::image::{self, Artifact, Blob, BlobSource, MAX_JSON_BYTES, ManifestKind, media};
use crate::ui::progress::{Reporter, human_bytes};

#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Only the image with this tag or name (as `push --source-tag`).
    pub only: Option<String>,
    /// Store the (single) image under this name instead of the archive's.
    pub name: Option<Reference>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtractedImage {
    /// Full references the image is cached under (empty: cached by digest only).
    pub names: Vec<String>,
    pub digest: String,
    pub media_type: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExtractReport {
    pub images: Vec<ExtractedImage>,
    pub blobs: usize,
    pub blobs_copied: usize,
    pub blobs_present: usize,
    pub bytes_copied: u64,
    pub duration_seconds: f64,
}

pub fn extract(
    archive: &mut Archive,
    cache: &Cache,
    options: &ExtractOptions,
    reporter: &Reporter,
) -> Result<ExtractReport> {
    let chosen: Vec<usize> = match &options.only {
        Some(wanted) => vec![archive.choose(Some(wanted), None)?],
        None => (0..archive.candidates().len()).collect(),
    };
    if options.name.is_some() && chosen.len() > 1 {
        return Err(Error::usage(format!(
            "--name gives one name, but the archive holds {} images",
            chosen.len()
        ))
        .hint("choose one with --source-tag"));
    }
    let mut images = Vec::new();
    for index in chosen {
        let names: Vec<Reference> = match &options.name {
            Some(name) => vec![name.clone()],
            None => {
                let mut names: Vec<Reference> = archive.candidates()[index]
                    .names
                    .iter()
                    .filter_map(|n| cache_name(n))
                    .collect();
                names.dedup();
                names
            }
        };
        let artifact = archive.artifact(index)?;
        for note in &artifact.notes {
            reporter.warn(note);
        }
        images.push((names, artifact));
    }

    if !archive.excluded().is_empty() {
        let labelled: Vec<(String, &Artifact)> = images
            .iter()
            .map(|(names, artifact)| {
                let label = match names.first() {
                    Some(name) => name.to_string(),
                    None => artifact.root().digest.to_string(),
                };
                (label, artifact)
            })
            .collect();
        crate::ops::bundle::require_excluded(archive, cache, &labelled)?;
    }
    let _lock = cache
        .open_for_adding(&|| reporter.info("waiting for another process cleaning the cache"))?;
    let mut report = ExtractReport::default();
    copy_blobs(archive, cache, &images, reporter, &mut report)?;

    let added = now_rfc3339();
    let mut entries = Vec::new();
    for (names, artifact) in &images {
        for manifest in &artifact.manifests {
            cache.write_small_blob(&manifest.bytes)?;
        }
        let root = artifact.root();
        let entry = |name: Option<&Reference>| {
            Entry::new(
                &root.media_type,
                root.digest.clone(),
                root.bytes.len() as u64,
                root.platform.clone(),
                name,
                &added,
            )
        };
        if names.is_empty() {
            entries.push(entry(None));
        }
        entries.extend(names.iter().map(|n| entry(Some(n))));
        report.images.push(ExtractedImage {
            names: names.iter().map(|n| n.to_string()).collect(),
            digest: root.digest.to_string(),
            media_type: root.media_type.clone(),
        });
    }
    cache.update_index(|index| {
        for entry in entries {
            index.add(entry);
        }
    })?;
    report.duration_seconds = reporter.elapsed().as_secs_f64();
    Ok(report)
}

fn copy_blobs(
    archive: &Archive,
    cache: &Cache,
    images: &[(Vec<Reference>, Artifact)],
    reporter: &Reporter,
    report: &mut ExtractReport,
) -> Result<()> {
    let mut blobs: Vec<Blob> = Vec::new();
    let mut diff_ids: BTreeMap<Digest, Digest> = BTreeMap::new();
    for (_, artifact) in images {
        for blob in &artifact.blobs {
            if !blobs.iter().any(|b| b.digest == blob.digest) {
                blobs.push(blob.clone());
            }
        }
        diff_ids.extend(layer_diff_ids(archive, artifact)?);
    }
    blobs.sort_by_key(|b| archive.blob_position(&b.digest).unwrap_or(u64::MAX));
    report.blobs = blobs.len();
    for blob in &blobs {
        let waiting = || {
            reporter.info(&format!(
                "{}: waiting for another process writing it",
                blob.digest.short()
            ))
        };
        let mut partial = match cache.begin_blob(blob, &waiting)? {
            Begun::Present => {
                report.blobs_present += 1;
                reporter.detail(&format!("{}: already in the cache", blob.digest.short()));
                continue;
            }
            Begun::Partial(partial) => partial,
        };
        partial.restart()?;
        if let Err(e) = copy_one(archive, blob, diff_ids.get(&blob.digest), &mut partial) {
            partial.discard();
            return Err(e);
        }
        if let Err(e) = cache.commit_blob(&mut partial, &blob.digest) {
            partial.discard();
            return Err(Error::input(format!("the archive's {}", e.message))
                .hint("the archive is damaged; save or copy it again"));
        }
        report.blobs_copied += 1;
        report.bytes_copied += blob.size;
        reporter.info(&format!(
            "{}: extracted ({})",
            blob.digest.short(),
            human_bytes(blob.size)
        ));
    }
    Ok(())
}

/// Layer digest -> the diff_id its config gives it, for every image manifest.
fn layer_diff_ids(archive: &Archive, artifact: &Artifact) -> Result<BTreeMap<Digest, Digest>> {
    let mut map = BTreeMap::new();
    for raw in &artifact.manifests {
        let Ok((_, ManifestKind::Image(manifest))) =
            image::parse_manifest(&raw.bytes, &raw.media_type)
        else {
            continue;
        };
        let config_type = manifest.config.media_type.as_str();
        if config_type != media::OCI_CONFIG && config_type != media::DOCKER_CONFIG {
            continue;
        }
        let config = image::parse_config(&read_whole(
            archive,
            &Blob::from_descriptor(&manifest.config),
        )?)?;
        let diff_ids = config.diff_ids();
        if diff_ids.len() != manifest.layers.len() {
            continue;
        }
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            map.insert(layer.digest.clone(), diff_id.clone());
        }
    }
    Ok(map)
}

fn read_whole(archive: &Archive, blob: &Blob) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    archive
        .open_blob(blob, 0)
        .and_then(|r| r.take(MAX_JSON_BYTES).read_to_end(&mut bytes))
        .map_err(|e| {
            Error::input(format!(
                "cannot read blob {} from the archive: {e}",
                blob.digest
            ))
        })?;
    Ok(bytes)
}

/// Copies one blob into its partial file, checking a layer against its diff_id on the way.
fn copy_one(
    archive: &Archive,
    blob: &Blob,
    diff_id: Option<&Digest>,
    partial: &mut PartialBlob,
) -> Result<()> {
    let read_error = |e: io::Error| {
        Error::input(format!(
            "cannot read blob {} from the archive: {e}",
            blob.digest
        ))
        .hint("the archive is damaged or truncated; save or copy it again")
    };
    let source = archive.open_blob(blob, 0).map_err(read_error)?;
    let mut tee = Tee {
        inner: source,
        out: partial,
        write_error: None,
    };
    let result = copy_checked(&mut tee, blob, diff_id, &read_error);
    match tee.write_error.take() {
        Some(e) => Err(crate::error::io_error("write", tee.out.path(), e)
            .hint("free space where the cache is, or choose another --cache-dir")),
        None => result,
    }
}

fn copy_checked<R: Read>(
    tee: &mut Tee<'_, R>,
    blob: &Blob,
    diff_id: Option<&Digest>,
    read_error: &dyn Fn(io::Error) -> Error,
) -> Result<()> {
    match diff_id {
        Some(diff_id) if is_gzip_layer(&blob.media_type) => {
            let decoder = MultiGzDecoder::new(&mut *tee);
            let uncompressed = hash_decoded(decoder, blob, "gzip")?;
            // Bytes after the gzip stream still belong to the blob and its digest.
            io::copy(tee, &mut io::sink()).map_err(read_error)?;
            if uncompressed != *diff_id {
                return Err(diff_id_error(blob, diff_id, &uncompressed));
            }
        }
        Some(diff_id) if is_zstd_layer(&blob.media_type) => {
            let decoder = zstd::stream::read::Decoder::new(&mut *tee).map_err(read_error)?;
            let uncompressed = hash_decoded(decoder, blob, "zstd")?;
            io::copy(tee, &mut io::sink()).map_err(read_error)?;
            if uncompressed != *diff_id {
                return Err(diff_id_error(blob, diff_id, &uncompressed));
            }
        }
        Some(diff_id) if is_plain_layer(&blob.media_type) && blob.digest != *diff_id => {
            return Err(diff_id_error(blob, diff_id, &blob.digest));
        }
        _ => {
            io::copy(tee, &mut io::sink()).map_err(read_error)?;
        }
    }
    Ok(())
}

/// The digest of what `decoder` decompresses to.
fn hash_decoded(mut decoder: impl Read, blob: &Blob, format: &str) -> Result<Digest> {
    let mut uncompressed = Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = decoder.read(&mut buf).map_err(|e| {
            Error::input(format!("layer {} is not valid {format}: {e}", blob.digest))
                .hint("the archive is damaged; save or copy it again")
        })?;
        if n == 0 {
            return Ok(uncompressed.digest());
        }
        uncompressed.update(&buf[..n]);
    }
}

fn diff_id_error(blob: &Blob, diff_id: &Digest, actual: &Digest) -> Error {
    Error::input(format!(
        "layer {} does not match its config's diff_id {diff_id} (its content is {actual})",
        blob.digest
    ))
    .hint("the archive is damaged; save it again")
}

fn is_gzip_layer(media_type: &str) -> bool {
    media_type == media::DOCKER_LAYER_GZIP || media_type == media::OCI_LAYER_GZIP
}

fn is_zstd_layer(media_type: &str) -> bool {
    media_type == media::DOCKER_LAYER_ZSTD || media_type == media::OCI_LAYER_ZSTD
}

fn is_plain_layer(media_type: &str) -> bool {
    media_type == media::DOCKER_LAYER || media_type == media::OCI_LAYER
}

/// Writes everything read through it to the partial blob (which hashes it). A failed
/// write (a full disk) is kept apart so it is not reported as a damaged archive.
struct Tee<'a, R> {
    inner: R,
    out: &'a mut PartialBlob,
    write_error: Option<io::Error>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let kind = e.kind();
            self.write_error = Some(e);
            return Err(io::Error::new(kind, "writing to the cache failed"));
        }
        Ok(n)
    }
}
