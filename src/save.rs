//! Save: cached images into one archive that `docker load`, skopeo and this tool's
//! `extract` and `push` all read, in the layout `docker save` writes from Docker 25 on: an
//! OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) plus the older
//! `manifest.json` and `repositories`. Every blob is re-hashed on its way into the archive
//! so a damaged cache cannot travel to an air-gapped network unnoticed, and the archive is
//! written under a temporary name and renamed when complete, so a full USB stick or a
//! pulled plug never leaves a file that looks whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde_json::json;

use crate::cache::files::{LockMode, TempFile};
use crate::cache::reach::reach;
use crate::cache::{Cache, Entry};
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result, io_error};
use crate::image::{
    self, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Blob, BlobSource, ManifestKind,
};
use crate::layout::{self, BlobStore};
use crate::progress::{Reporter, human_bytes};
use crate::reference::Reference;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SaveReport {
    pub output: String,
    /// Names (or digests, for unnamed images) written.
    pub images: Vec<String>,
    pub blobs: usize,
    pub bytes: u64,
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
    reporter: &Reporter,
) -> Result<SaveReport> {
    if queries.is_empty() {
        return Err(Error::usage("name at least one cached image to save"));
    }
    let _lock = cache.lock(LockMode::Shared, &|| {
        reporter.info("waiting for another process cleaning the cache")
    })?;
    let index = cache.read_index()?;
    let mut chosen: Vec<Chosen> = Vec::new();
    for query in queries {
        let found = index.find(query);
        if found.is_empty() {
            index.find_one(query, cache.root())?;
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
    let mut descriptors = Vec::new();
    let mut items = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
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
        descriptors.extend(index_descriptors(image));
        let (item, config) = manifest_item(cache, image)?;
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

    let directory = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temp = TempFile::create(directory, ".docker-image-pusher-save")?;
    let bytes = write_archive(
        cache,
        temp.file(),
        &blobs,
        &descriptors,
        &items,
        &repositories,
        reporter,
    )
    .map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            Error::input(format!("a blob in the cache is damaged: {e}"))
                .hint("run `docker-image-pusher verify`, then pull or extract the image again")
        }
        _ => io_error("write", output, e),
    })?;
    temp.commit(output)?;
    Ok(SaveReport {
        output: output.display().to_string(),
        images: chosen
            .iter()
            .map(|c| match c.names.first() {
                Some(name) => name.to_string(),
                None => c.entry.digest.to_string(),
            })
            .collect(),
        blobs: blobs.len(),
        bytes,
    })
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
fn manifest_item(cache: &Cache, image: &Chosen) -> Result<(serde_json::Value, Option<Digest>)> {
    let mut descriptor = image.entry.descriptor();
    for _ in 0..4 {
        let bytes = layout::read_verified(cache, &descriptor)?;
        match image::parse_manifest(&bytes, &descriptor.media_type)?.1 {
            ManifestKind::Index(index) => {
                let host = crate::pull::host_platform();
                let Some(child) = crate::pull::choose_platform(&index.manifests, &host)
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

fn write_archive(
    cache: &Cache,
    file: &mut File,
    blobs: &BTreeMap<Digest, u64>,
    descriptors: &[serde_json::Value],
    items: &[serde_json::Value],
    repositories: &BTreeMap<String, BTreeMap<String, String>>,
    reporter: &Reporter,
) -> io::Result<u64> {
    let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, &mut *file));
    builder.mode(tar::HeaderMode::Deterministic);
    for directory in ["blobs/", "blobs/sha256/"] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder.append_data(&mut header, directory, io::empty())?;
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
        let blob = Blob {
            digest: digest.clone(),
            size,
            media_type: String::new(),
        };
        let reader = VerifyingReader::new(cache.open_blob(&blob, 0)?, digest.clone(), size);
        let mut header = file_header(size);
        builder.append_data(
            &mut header,
            format!("blobs/sha256/{}", digest.hex()),
            reader,
        )?;
        total += size;
        if size > 1 << 20 {
            reporter.detail(&format!(
                "{}: saved ({})",
                digest.short(),
                human_bytes(size)
            ));
        }
    }
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
    for (name, bytes) in documents {
        let mut header = file_header(bytes.len() as u64);
        builder.append_data(&mut header, name, bytes.as_slice())?;
    }
    builder.into_inner()?.flush()?;
    Ok(total)
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
