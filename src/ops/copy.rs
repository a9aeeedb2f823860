//! Copy: an image from one registry to another, blob bytes streamed from the source's GET
//! into the destination's upload on the worker pool, never stored on the way. The source
//! becomes an [`Artifact`] as a pull sees it (a whole index, or one platform's image), its
//! blobs a [`RegistrySource`], and the rest is a push: the same uploads, resumed from the
//! destination's offset and from sessions saved by an interrupted run, and the manifests
//! pushed byte for byte, so the destination serves the source's digests.

use crate::text::plural::count;
use std::sync::Arc;

use crate::cache::state::StateDir;
use crate::error::{Cause, Error, Result};
use crate::image::reference::Reference;
use crate::image::{Artifact, Platform};
use crate::ops::pull::{self, Wanted};
use crate::ops::push::{self, PushOptions, PushReport};
use crate::registry::Repository;
use crate::transfer::relay::RegistrySource;
use crate::ui::progress::{Reporter, human_bytes};

pub struct CopyOptions {
    pub push: PushOptions,
    /// One platform's image out of an index; `None` copies the index whole.
    pub platform: Option<Platform>,
}

/// The two ends of a copy, each with its own connection and credentials.
pub struct Ends<'a> {
    pub source: &'a Repository,
    pub source_reference: &'a Reference,
    pub destination: &'a Repository,
    pub destination_reference: &'a Reference,
}

pub fn copy(
    ends: &Ends,
    options: &CopyOptions,
    state: &StateDir,
    reporter: &Arc<Reporter>,
) -> Result<PushReport> {
    let artifact = source_artifact(ends.source, ends.source_reference, options, reporter)?;
    reporter.info(&format!(
        "copying {} ({}, {}, {}) to {}",
        ends.source_reference,
        count(artifact.manifests.len() as u64, "manifest"),
        count(artifact.blobs.len() as u64, "blob"),
        human_bytes(artifact.total_blob_bytes()),
        ends.destination_reference
    ));
    let mut push_options = options.push.clone();
    if same_registry(ends.source, ends.destination) {
        // Within one registry a blob is linked into the other repository, never sent.
        push_options
            .upload
            .mount_from
            .push(ends.source.name().to_string());
    }
    let source = RegistrySource {
        repository: ends.source.clone(),
        retry: push_options.upload.retry.clone(),
    };
    push::push(
        &artifact,
        &source,
        ends.destination,
        ends.destination_reference,
        &push_options,
        Some(state),
        reporter,
    )
    .map_err(|e| source_blame(e, ends.source))
}

/// A blob that does not match its digest came from the source registry, not from an
/// archive or cache the user could copy again: say so, as a registry error.
fn source_blame(error: Error, source: &Repository) -> Error {
    if error.cause != Some(Cause::SourceCorrupt) {
        return error;
    }
    Error::registry(format!(
        "{} served a blob that does not match its digest ({})",
        source.host(),
        error.message
    ))
    .hint("the source registry's storage or a proxy on the way is damaging data; nothing was tagged at the destination")
}

/// What the source reference names, as push writes it: every manifest an index reaches
/// (children first), or with a platform the one image manifest; and each blob once.
fn source_artifact(
    repository: &Repository,
    reference: &Reference,
    options: &CopyOptions,
    reporter: &Reporter,
) -> Result<Artifact> {
    let top = pull::own_media_type(repository.fetch_manifest(reference.manifest_reference())?)?;
    let wanted = Wanted {
        platform: options.platform.as_ref(),
        all_platforms: options.platform.is_none(),
    };
    let (manifests, _) = pull::resolve(repository, reference, top, &wanted, reporter)?;
    let blobs = pull::blobs_of(&manifests, reporter)?;
    Ok(Artifact {
        blobs,
        manifests,
        notes: Vec::new(),
    })
}

/// Both ends on one registry (the same host and port): mounts can replace uploads.
fn same_registry(source: &Repository, destination: &Repository) -> bool {
    source.transport().base_url() == destination.transport().base_url()
}
