//! Image archives: legacy `docker save`, Docker 25+ `docker save` (an OCI layout plus
//! `manifest.json`), OCI archives (skopeo, podman, buildah), each optionally gzipped whole.
//! An archive is read in place and turned into an [`Artifact`] for one chosen image.

pub(crate) mod dir;
pub mod docker;
pub(crate) mod files;
pub mod headers;
pub mod incremental;
pub(crate) mod stream;
pub(crate) mod tarball;
pub mod volume;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::Path;

use crate::error::{Cause, Error, Result};
use crate::image::digest::Digest;
use crate::image::layout::{self, BlobStore};
use crate::image::reference::Reference;
use crate::image::{Artifact, Blob, BlobSource, Descriptor, MAX_JSON_BYTES};
use crate::text::sanitize::sanitize;
use files::Files;
use tarball::Tarball;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `manifest.json` with `<id>/layer.tar` entries (docker save before 25, skopeo docker-archive).
    DockerLegacy,
    /// `docker save` from Docker 25 on: OCI layout and `manifest.json` side by side.
    DockerOci,
    /// An OCI image layout in a tar (oci-archive).
    Oci,
    /// An OCI image layout directory (skopeo `oci:DIR`, podman `oci-dir`, buildah,
    /// kaniko, buildkit `tar=false`).
    OciDir,
}

impl Format {
    pub fn describe(self) -> &'static str {
        match self {
            Format::DockerLegacy => "docker save archive",
            Format::DockerOci => "docker save archive (Docker 25+ OCI layout)",
            Format::Oci => "OCI archive",
            Format::OciDir => "OCI image layout directory",
        }
    }
}

/// One image (or index) an archive offers, with the names it is tagged with.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub names: Vec<String>,
    origin: Origin,
}

#[derive(Debug, Clone)]
enum Origin {
    Layout(Descriptor),
    Legacy(docker::LegacyImage),
}

impl Candidate {
    fn label(&self) -> String {
        match (&self.origin, self.names.first()) {
            (_, Some(name)) => name.clone(),
            (Origin::Layout(d), None) => d.digest.to_string(),
            (Origin::Legacy(image), None) => image.config.clone(),
        }
    }
}

pub struct Archive {
    files: Files,
    format: Format,
    candidates: Vec<Candidate>,
    /// Where blobs without a `blobs/sha256/<hex>` entry live (legacy layer paths).
    blob_paths: HashMap<Digest, String>,
    /// In an incremental bundle, the layers left out (digest -> size).
    excluded: BTreeMap<Digest, u64>,
}

impl Archive {
    /// Opens an archive file, or an OCI image layout directory.
    pub fn open(path: &Path) -> Result<Archive> {
        let files = if path.is_dir() {
            Files::Dir(dir::LayoutDir::new(path))
        } else {
            Files::Tar(Tarball::open(path)?)
        };
        let has_index = files.contains("index.json");
        let has_manifest = files.contains("manifest.json");
        let format = match (has_index, has_manifest) {
            (true, true) => Format::DockerOci,
            (true, false) if matches!(files, Files::Dir(_)) => Format::OciDir,
            (true, false) => Format::Oci,
            (false, true) => Format::DockerLegacy,
            (false, false) if matches!(files, Files::Dir(_)) => {
                return Err(Error::input(format!(
                    "{} is a directory but not an OCI image layout: it has no index.json",
                    path.display()
                ))
                .hint("pass a directory written by skopeo copy oci:DIR, podman save --format oci-dir, buildah or buildkit, or an archive file"));
            }
            (false, false) => {
                return Err(Error::input(format!(
                    "{} has neither manifest.json (docker save) nor index.json (OCI archive)",
                    path.display()
                ))
                .hint(
                    "pass an archive written by docker save, skopeo copy, podman save or buildah",
                ));
            }
        };
        let excluded = match files.contains(incremental::EXCLUDED_ENTRY) {
            true => {
                incremental::parse(&files.read_small(incremental::EXCLUDED_ENTRY, MAX_JSON_BYTES)?)?
            }
            false => BTreeMap::new(),
        };
        let mut archive = Archive {
            files,
            format,
            candidates: Vec::new(),
            blob_paths: HashMap::new(),
            excluded,
        };
        archive.candidates = archive.list_candidates()?;
        Ok(archive)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The layers an incremental bundle leaves out (empty for any other archive): its
    /// images name them, a cache must supply them.
    pub fn excluded(&self) -> &BTreeMap<Digest, u64> {
        &self.excluded
    }

    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn list_candidates(&self) -> Result<Vec<Candidate>> {
        if self.format == Format::DockerLegacy {
            return self.legacy_candidates();
        }
        let bytes = self.files.read_small("index.json", MAX_JSON_BYTES)?;
        let index = layout::parse_top_index(&bytes)?;
        let mut candidates: Vec<Candidate> = Vec::new();
        for descriptor in index.manifests {
            let names = layout::descriptor_names(&descriptor);
            // Docker writes one index.json entry per tag of the same image.
            match candidates
                .iter_mut()
                .find(|c| matches!(&c.origin, Origin::Layout(d) if d.digest == descriptor.digest))
            {
                Some(existing) => existing.names.extend(names),
                None => candidates.push(Candidate {
                    names,
                    origin: Origin::Layout(descriptor),
                }),
            }
        }
        // `docker save` by image ID (Docker 25+) leaves the index empty (`null`); its
        // manifest.json still lists the image.
        if candidates.is_empty() && self.format == Format::DockerOci {
            return self.legacy_candidates();
        }
        if candidates.is_empty() {
            return Err(Error::input(format!(
                "{}: index.json lists no images",
                self.files.path().display()
            )));
        }
        Ok(candidates)
    }

    fn legacy_candidates(&self) -> Result<Vec<Candidate>> {
        let bytes = self.files.read_small("manifest.json", MAX_JSON_BYTES)?;
        Ok(docker::parse_manifest_json(&bytes)?
            .into_iter()
            .map(|image| Candidate {
                names: image.repo_tags.clone().unwrap_or_default(),
                origin: Origin::Legacy(image),
            })
            .collect())
    }

    /// Picks the image to push: the one named `wanted` (tag or reference), else the only
    /// image, else the one tagged like the target. Ambiguity is an error listing choices.
    pub fn select(&mut self, wanted: Option<&str>, target_tag: Option<&str>) -> Result<Artifact> {
        let index = self.choose(wanted, target_tag)?;
        self.artifact(index)
    }

    /// The artifact of candidate `index` (see [`Archive::candidates`]).
    pub fn artifact(&mut self, index: usize) -> Result<Artifact> {
        let candidate = self.candidates[index].clone();
        match &candidate.origin {
            Origin::Layout(descriptor) => match layout::resolve(self, descriptor) {
                Err(e)
                    if self.format == Format::DockerOci
                        && e.cause == Some(Cause::LayerCountMismatch) =>
                {
                    // Docker 25.0.0 wrote OCI manifests without their layers; its
                    // manifest.json is still right, so build the image from that.
                    let mut artifact = self.legacy_for(&candidate)?;
                    artifact.notes.push(format!(
                        "ignored the archive's OCI manifest ({}); built one from manifest.json",
                        e.message
                    ));
                    Ok(artifact)
                }
                other => other,
            },
            Origin::Legacy(image) => {
                let (artifact, locations) = docker::build_artifact(&self.files, image)?;
                self.blob_paths.extend(locations);
                Ok(artifact)
            }
        }
    }

    fn legacy_for(&mut self, candidate: &Candidate) -> Result<Artifact> {
        let bytes = self.files.read_small("manifest.json", MAX_JSON_BYTES)?;
        let images = docker::parse_manifest_json(&bytes)?;
        let image = images
            .iter()
            .find(|image| {
                let tags = image.repo_tags.clone().unwrap_or_default();
                candidate
                    .names
                    .iter()
                    .any(|n| tags.iter().any(|t| names_match(t, n)))
            })
            .or(if images.len() == 1 {
                images.first()
            } else {
                None
            })
            .ok_or_else(|| {
                Error::input("the archive's manifest.json does not list the chosen image")
            })?;
        let (artifact, locations) = docker::build_artifact(&self.files, image)?;
        self.blob_paths.extend(locations);
        Ok(artifact)
    }

    /// Which candidate `select` would take (see there).
    pub fn choose(&self, wanted: Option<&str>, target_tag: Option<&str>) -> Result<usize> {
        let matching = |query: &str| -> Vec<usize> {
            (0..self.candidates.len())
                .filter(|&i| {
                    self.candidates[i]
                        .names
                        .iter()
                        .any(|n| names_match(n, query))
                })
                .collect()
        };
        if let Some(query) = wanted {
            return match matching(query).as_slice() {
                [one] => Ok(*one),
                [] => {
                    Err(self
                        .choice_error(&format!("no image in the archive is tagged \"{query}\"")))
                }
                _ => {
                    Err(self
                        .choice_error(&format!("several images in the archive match \"{query}\"")))
                }
            };
        }
        if self.candidates.len() == 1 {
            return Ok(0);
        }
        if let Some(tag) = target_tag
            && let [one] = matching(tag).as_slice()
        {
            return Ok(*one);
        }
        Err(self.choice_error(&format!(
            "the archive holds {} images",
            self.candidates.len()
        )))
    }

    fn choice_error(&self, problem: &str) -> Error {
        let labels: Vec<String> = self
            .candidates
            .iter()
            .map(|c| sanitize(&c.label()))
            .collect();
        Error::usage(format!("{problem}; it has: {}", labels.join(", ")))
            .hint("choose one with --source-tag")
    }

    /// Where a blob's bytes start in the (decompressed) archive: reading blobs in this
    /// order reads the archive front to back, which a gzipped archive or a USB stick needs.
    pub fn blob_position(&self, digest: &Digest) -> Option<u64> {
        self.files.position(&self.blob_path(digest))
    }

    /// Where a blob is: its legacy layer path, else `blobs/<algorithm>/<hex>`.
    fn blob_path(&self, digest: &Digest) -> String {
        self.blob_paths
            .get(digest)
            .cloned()
            .unwrap_or_else(|| format!("blobs/sha256/{}", digest.hex()))
    }
}

/// Whether an archive's name for an image matches what the user asked for: the same
/// string, the same tag (when only a tag is asked for), or the same normalized reference.
pub fn names_match(name: &str, query: &str) -> bool {
    if name == query {
        return true;
    }
    let tag_of = |text: &str| {
        Reference::parse(text)
            .ok()
            .and_then(|r| r.tag().map(str::to_string))
    };
    if !query.contains('/') && !query.contains(':') {
        return tag_of(name).as_deref() == Some(query);
    }
    match (Reference::parse(name), Reference::parse(query)) {
        (Ok(a), Ok(b)) => {
            a.repository_reference() == b.repository_reference()
                && a.tag_or_latest() == b.tag_or_latest()
        }
        _ => false,
    }
}

impl BlobStore for Archive {
    /// Layers an incremental bundle leaves out count as present, so its images resolve
    /// whole; reading one is left to a source that completes the bundle from a cache.
    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.files
            .size(&self.blob_path(digest))
            .or_else(|| self.excluded.get(digest).copied())
    }

    fn read_small_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = format!("blobs/sha256/{}", digest.hex());
        self.files.read_small(&path, limit)
    }
}

impl BlobSource for Archive {
    fn open_blob(&self, blob: &Blob, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let path = self.blob_path(&blob.digest);
        let size = self.files.size(&path).ok_or_else(|| {
            let why = match self.excluded.contains_key(&blob.digest) {
                true => "was left out of this incremental bundle",
                false => "is not in the archive",
            };
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("blob {} {why}", blob.digest),
            )
        })?;
        if size != blob.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is {size} bytes in the archive, expected {}",
                    blob.digest, blob.size
                ),
            ));
        }
        // Whoever consumes the bytes (uploader, cache writer) verifies the digest: it is the
        // one that knows whether it reads the blob whole or resumes in the middle.
        self.files.open(&path, offset)
    }

    fn stream_position(&self, blob: &Blob) -> Option<u64> {
        if self.files.is_stream() {
            self.blob_position(&blob.digest)
        } else {
            None
        }
    }

    fn announce(&self, blob: &Blob) -> Option<Box<dyn Send>> {
        self.files.announce(&self.blob_path(&blob.digest))
    }
}

impl Archive {
    /// Bytes decompressed so far to serve blob reads (0 for a plain tar).
    pub fn inflated_bytes(&self) -> u64 {
        self.files.inflated_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::names_match;

    #[test]
    fn names_match_by_tag_or_reference() {
        assert!(names_match("busybox:latest", "latest"));
        assert!(names_match(
            "docker.io/library/busybox:latest",
            "busybox:latest"
        ));
        assert!(names_match("busybox:latest", "docker.io/library/busybox"));
        assert!(names_match("1.0", "1.0"));
        assert!(!names_match("busybox:latest", "1.0"));
        assert!(!names_match("busybox:latest", "alpine:latest"));
    }
}
