//! `push --all`: every image of a bundle (or of the cache) into one registry, each under its
//! own repository. One worker pool for all of them, one task per distinct blob: the task
//! uploads the blob into the first repository that needs it and mounts it from there into
//! every other one, so a base layer shared by ten images crosses the link once. Then each
//! image's manifests go up, children first; an image whose blobs or manifests failed is
//! reported and the others still finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::state::StateDir;
use crate::error::{Class, Error, Result};
use crate::image::reference::Reference;
use crate::image::{Artifact, Blob, BlobSource};
use crate::ops::batch;
use crate::registry::Repository;
use crate::transfer::upload::{Outcome, Progress, Uploader};
use crate::ui::progress::{Reporter, human_bytes};

use super::{PushOptions, commit_manifests, target_is_current};

/// One image of the bundle and where it goes.
pub struct Image {
    /// How the bundle names it.
    pub name: String,
    pub target: Reference,
    pub artifact: Artifact,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImageReport {
    pub reference: String,
    pub source: String,
    pub digest: String,
    pub manifest_size: usize,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_existing: usize,
    pub up_to_date: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MirrorReport {
    pub images: Vec<ImageReport>,
    pub images_failed: usize,
    /// Distinct blobs over all images, and what happened to each upload or mount.
    pub blobs: usize,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_existing: usize,
    pub bytes_sent: u64,
    pub duration_seconds: f64,
    /// The first failure, whose class sets the exit code.
    #[serde(skip)]
    pub first_error: Option<Error>,
}

/// What one blob task did in each repository that needs the blob, in `holders` order.
type BlobResults = Vec<Result<Outcome>>;

/// Pushes every image; `registry` is any repository of the target registry (its
/// connection is shared by all). Failures are in the report, not the result: the result is
/// an error only for an interruption.
pub fn push_all(
    images: &[Image],
    source: &dyn BlobSource,
    registry: &Repository,
    options: &PushOptions,
    state: Option<&StateDir>,
    reporter: &Arc<Reporter>,
) -> Result<MirrorReport> {
    let mut report = MirrorReport::default();
    let current: Vec<bool> = images
        .iter()
        .map(|image| options.skip_existing && is_current(registry, image))
        .collect();
    let plan = Plan::of(images, &current, registry);
    report.blobs = plan.blobs.len();
    let results = upload_blobs(&plan, source, options, state, reporter, &mut report);
    if options.upload.stop.is_requested() {
        return Err(Error::interrupted("interrupted; open uploads are saved")
            .hint("run the same command again to resume where it stopped"));
    }
    for (index, image) in images.iter().enumerate() {
        let mut entry = ImageReport {
            reference: image.target.to_string(),
            source: image.name.clone(),
            digest: image.artifact.root().digest.to_string(),
            manifest_size: image.artifact.root().bytes.len(),
            up_to_date: current[index],
            ..ImageReport::default()
        };
        if !current[index]
            && let Err(e) = finish_image(&plan, index, image, &results, &mut entry, reporter)
        {
            report.images_failed += 1;
            entry.error = Some(e.to_string());
            report.first_error.get_or_insert(e);
        }
        report.images.push(entry);
    }
    if let Some(state) = state {
        for (repository, digests) in plan.held(&results) {
            if let Err(e) = state.record_locations(registry.host(), repository.name(), digests) {
                reporter.detail(&format!("cannot record blob locations: {e}"));
            }
        }
    }
    report.duration_seconds = reporter.elapsed().as_secs_f64();
    Ok(report)
}

fn is_current(registry: &Repository, image: &Image) -> bool {
    let repository = registry.sibling(image.target.repository(), "pull");
    target_is_current(&repository, &image.target, &image.artifact.root().digest)
}

/// The distinct repositories and blobs, and which repositories need which blob.
struct Plan {
    repositories: Vec<Repository>,
    /// The repository of each image.
    image_repository: Vec<usize>,
    blobs: Vec<Blob>,
    /// For each blob, the repositories needing it, in image order.
    holders: Vec<Vec<usize>>,
}

impl Plan {
    fn of(images: &[Image], current: &[bool], registry: &Repository) -> Plan {
        let mut plan = Plan {
            repositories: Vec::new(),
            image_repository: Vec::new(),
            blobs: Vec::new(),
            holders: Vec::new(),
        };
        let mut repository_of: HashMap<&str, usize> = HashMap::new();
        let mut blob_of = HashMap::new();
        for (image, &current) in images.iter().zip(current) {
            let name = image.target.repository();
            let repository = *repository_of.entry(name).or_insert_with(|| {
                plan.repositories.push(registry.sibling(name, "pull,push"));
                plan.repositories.len() - 1
            });
            plan.image_repository.push(repository);
            if current {
                continue;
            }
            for blob in &image.artifact.blobs {
                let index = *blob_of.entry(blob.digest.clone()).or_insert_with(|| {
                    plan.blobs.push(blob.clone());
                    plan.holders.push(Vec::new());
                    plan.blobs.len() - 1
                });
                if !plan.holders[index].contains(&repository) {
                    plan.holders[index].push(repository);
                }
            }
        }
        plan
    }

    /// The result of blob `digest` in `repository`, when its task ran.
    fn result<'r>(
        &self,
        results: &'r [Option<BlobResults>],
        blob: &Blob,
        repository: usize,
    ) -> Option<&'r Result<Outcome>> {
        let index = self.blobs.iter().position(|b| b.digest == blob.digest)?;
        let slot = self.holders[index].iter().position(|&r| r == repository)?;
        results[index].as_ref()?.get(slot)
    }

    /// The blobs each repository now holds, for mounts by later runs.
    fn held<'p>(
        &'p self,
        results: &'p [Option<BlobResults>],
    ) -> Vec<(&'p Repository, Vec<&'p crate::image::digest::Digest>)> {
        let mut held: Vec<Vec<&crate::image::digest::Digest>> =
            vec![Vec::new(); self.repositories.len()];
        for (index, blob) in self.blobs.iter().enumerate() {
            let Some(outcomes) = &results[index] else {
                continue;
            };
            for (slot, outcome) in outcomes.iter().enumerate() {
                if outcome.is_ok() {
                    held[self.holders[index][slot]].push(&blob.digest);
                }
            }
        }
        self.repositories.iter().zip(held).collect()
    }
}

/// One task per distinct blob on the pool: upload into the first repository needing it,
/// mount into the others from wherever it already is.
fn upload_blobs(
    plan: &Plan,
    source: &dyn BlobSource,
    options: &PushOptions,
    state: Option<&StateDir>,
    reporter: &Arc<Reporter>,
    report: &mut MirrorReport,
) -> Vec<Option<BlobResults>> {
    let run = |index: usize, progress: Arc<dyn Progress>| -> BlobResults {
        let blob = &plan.blobs[index];
        let mut holding: Vec<String> = Vec::new();
        let mut outcomes = Vec::new();
        for &repository in &plan.holders[index] {
            let repository = &plan.repositories[repository];
            let mut upload = options.upload.clone();
            upload.mount_from.extend(holding.iter().cloned());
            let outcome = Uploader {
                repository,
                source,
                options: &upload,
                progress: progress.clone(),
                state,
            }
            .upload(blob);
            if outcome.is_ok() {
                holding.push(repository.name().to_string());
            }
            let stopped = outcome
                .as_ref()
                .is_err_and(|e| e.class == Class::Interrupted);
            outcomes.push(outcome);
            if stopped {
                break;
            }
        }
        outcomes
    };
    let describe = |index: usize, outcomes: &BlobResults, _took: Duration| {
        describe_blob(&plan.blobs[index], outcomes, plan.holders[index].len())
    };
    let fatal = |outcomes: &BlobResults| {
        outcomes
            .iter()
            .any(|o| o.as_ref().is_err_and(|e| e.class == Class::Interrupted))
    };
    let work = batch::Work {
        run: &run,
        describe: &describe,
        fatal: &fatal,
        cancel: &|| options.upload.stop.request(),
        position: &|index| source.stream_position(&plan.blobs[index]),
        claim: &|index| source.announce(&plan.blobs[index]),
    };
    let outcome = batch::run(&plan.blobs, &options.concurrency, reporter, work, None);
    let mut results: Vec<Option<BlobResults>> = vec![None; plan.blobs.len()];
    for finished in outcome.finished {
        for result in &finished.result {
            match result {
                Ok(Outcome::Uploaded { sent, .. }) => {
                    report.blobs_uploaded += 1;
                    report.bytes_sent += sent;
                }
                Ok(Outcome::Mounted { .. }) => report.blobs_mounted += 1,
                Ok(Outcome::Existed) => report.blobs_existing += 1,
                Err(_) => {}
            }
        }
        results[finished.index] = Some(finished.result);
    }
    results
}

fn describe_blob(blob: &Blob, outcomes: &BlobResults, needed: usize) -> String {
    let id = blob.digest.short();
    let count = |wanted: fn(&Outcome) -> bool| {
        outcomes
            .iter()
            .filter(|o| o.as_ref().is_ok_and(wanted))
            .count()
    };
    let uploaded = count(|o| matches!(o, Outcome::Uploaded { .. }));
    let mounted = count(|o| matches!(o, Outcome::Mounted { .. }));
    let existed = count(|o| matches!(o, Outcome::Existed));
    if let Some(Err(e)) = outcomes.iter().find(|o| o.is_err()) {
        let done = uploaded + mounted + existed;
        return format!(
            "{id}: failed in {} of {needed} repositories: {}",
            needed - done,
            e.message
        );
    }
    let mut parts = Vec::new();
    if uploaded > 0 {
        parts.push(format!("pushed ({})", human_bytes(blob.size)));
    }
    if mounted > 0 {
        let more = if uploaded > 0 { " more" } else { "" };
        parts.push(format!("mounted into {mounted}{more}"));
    }
    if existed > 0 {
        parts.push(format!("already in {existed}"));
    }
    format!("{id}: {}", parts.join(", "))
}

/// Commits one image's manifests once every blob it needs is in its repository.
fn finish_image(
    plan: &Plan,
    index: usize,
    image: &Image,
    results: &[Option<BlobResults>],
    entry: &mut ImageReport,
    reporter: &Reporter,
) -> Result<()> {
    let repository_index = plan.image_repository[index];
    for blob in &image.artifact.blobs {
        match plan.result(results, blob, repository_index) {
            Some(Ok(Outcome::Uploaded { .. })) => entry.blobs_uploaded += 1,
            Some(Ok(Outcome::Mounted { .. })) => entry.blobs_mounted += 1,
            Some(Ok(Outcome::Existed)) => entry.blobs_existing += 1,
            Some(Err(e)) => {
                return Err(Error::new(
                    e.class,
                    format!("blob {}: {}", blob.digest.short(), e.message),
                ));
            }
            None => {
                return Err(Error::network(format!(
                    "blob {} was not pushed (the run stopped before it)",
                    blob.digest.short()
                ))
                .hint("run the same command again"));
            }
        }
    }
    let repository = &plan.repositories[repository_index];
    commit_manifests(
        &image.artifact.manifests,
        repository,
        &image.target,
        reporter,
    )
}
