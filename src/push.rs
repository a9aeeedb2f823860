//! Push: write an artifact to a repository. Every blob goes up on the worker pool (largest
//! first, so the longest transfer starts first), then the manifests in order, children
//! before the index that names them, the last one under the target's tag.

use std::sync::Arc;
use std::time::Duration;

use crate::digest::Digest;
use crate::error::{Class, Error, Result};
use crate::image::{Artifact, Blob, BlobSource};
use crate::monitor::Analytics;
use crate::progress::{Reporter, class_counts, human_bytes, render_analytics};
use crate::reference::Reference;
use crate::registry::{Initiated, Repository};
use crate::scheduler::SizeClass;
use crate::state::StateDir;
use crate::transfer::{self, Concurrency, ConcurrencyReport};
use crate::units::{human_duration, human_rate};
use crate::upload::{Outcome, UploadOptions, Uploader};

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub upload: UploadOptions,
    pub concurrency: Concurrency,
    /// Check everything, upload nothing.
    pub dry_run: bool,
    /// Finish at once when the target tag already serves this exact manifest.
    pub skip_existing: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PushReport {
    pub reference: String,
    pub digest: String,
    pub manifest_size: usize,
    pub bytes_total: u64,
    pub bytes_sent: u64,
    pub bytes_skipped: u64,
    /// Bytes of partly uploaded blobs the registry held from an earlier run.
    pub bytes_reused: u64,
    /// Bytes sent more than once because a request failed part-way.
    pub bytes_resent: u64,
    /// Times an upload continued after a failure.
    pub resumes: u64,
    pub blobs: usize,
    pub blobs_uploaded: usize,
    pub blobs_existing: usize,
    pub blobs_mounted: usize,
    pub retries: u64,
    pub duration_seconds: f64,
    pub dry_run: bool,
    pub up_to_date: bool,
    /// Bytes per second over the blob uploads.
    pub average_speed: f64,
    /// Every blob, in manifest order (empty for a dry run or an up-to-date target).
    pub layers: Vec<LayerReport>,
    /// How the worker pool ran (absent when nothing was transferred).
    pub concurrency: Option<ConcurrencyReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerReport {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub size_class: SizeClass,
    /// `uploaded`, `existed` or `mounted`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounted_from: Option<String>,
    pub bytes_sent: u64,
    pub bytes_reused: u64,
    pub bytes_resent: u64,
    pub seconds: f64,
}

pub fn push(
    artifact: &Artifact,
    source: &dyn BlobSource,
    repository: &Repository,
    target: &Reference,
    options: &PushOptions,
    state: Option<&StateDir>,
    reporter: &Arc<Reporter>,
) -> Result<PushReport> {
    let root = artifact.root();
    if let Some(digest) = target.digest()
        && digest != root.digest.as_str()
    {
        return Err(Error::usage(format!(
            "the target names digest {digest}, but the image is {}",
            root.digest
        ))
        .hint("push by tag, or name the image's own digest"));
    }
    let mut report = PushReport {
        reference: target.to_string(),
        digest: root.digest.to_string(),
        manifest_size: root.bytes.len(),
        bytes_total: artifact.total_blob_bytes(),
        blobs: artifact.blobs.len(),
        dry_run: options.dry_run,
        ..PushReport::default()
    };
    if options.skip_existing && target_is_current(repository, target, &root.digest) {
        reporter.info(&format!(
            "{target} already serves {}; nothing to push",
            root.digest
        ));
        report.up_to_date = true;
        report.bytes_skipped = report.bytes_total;
        return Ok(report);
    }
    if options.dry_run {
        return dry_run(artifact, repository, report, reporter);
    }
    let analytics = upload_blobs(
        artifact,
        source,
        repository,
        options,
        state,
        reporter,
        &mut report,
    )
    .map_err(|error| interrupted_or(error, &report))?;
    if options.upload.stop.is_requested() {
        return Err(interrupted_or(
            Error::interrupted("stopped by a signal"),
            &report,
        ));
    }
    commit_manifests(artifact, repository, target, reporter)?;
    report.retries = repository.transport().retries();
    report.duration_seconds = reporter.elapsed().as_secs_f64();
    if let Some(analytics) = analytics {
        let classes = class_counts(artifact.blobs.iter().map(|b| b.size));
        for line in render_analytics(&analytics, &classes) {
            reporter.detail(&line);
        }
    }
    Ok(report)
}

fn target_is_current(repository: &Repository, target: &Reference, digest: &Digest) -> bool {
    repository
        .fetch_manifest(target.manifest_reference())
        .is_ok_and(|m| m.digest == *digest)
}

/// Says how far an interrupted push got; other errors pass through unchanged.
fn interrupted_or(error: Error, report: &PushReport) -> Error {
    if error.class != Class::Interrupted {
        return error;
    }
    let done = report.blobs_existing + report.blobs_mounted + report.blobs_uploaded;
    Error::interrupted(format!(
        "interrupted with {done} of {} blobs pushed; open uploads are saved",
        report.blobs
    ))
    .hint("run the same command again to resume where it stopped")
}

/// Uploads every blob on the worker pool while the monitor thread samples the transfer,
/// drives the display and (in dynamic mode) resizes the gate. Returns the monitor's
/// figures for the report.
fn upload_blobs(
    artifact: &Artifact,
    source: &dyn BlobSource,
    repository: &Repository,
    options: &PushOptions,
    state: Option<&StateDir>,
    reporter: &Arc<Reporter>,
    report: &mut PushReport,
) -> Result<Option<Analytics>> {
    let run = |index: usize, progress: Arc<dyn crate::upload::Progress>| {
        let uploader = Uploader {
            repository,
            source,
            options: &options.upload,
            progress,
            state,
        };
        uploader.upload(&artifact.blobs[index])
    };
    let describe_result = |index: usize, result: &Result<Outcome>, took: Duration| {
        let blob = &artifact.blobs[index];
        match result {
            Ok(outcome) => describe(blob, outcome, took),
            Err(e) => format!("{}: failed: {}", blob.digest.short(), e.message),
        }
    };
    let fatal = |result: &Result<Outcome>| result.as_ref().is_err_and(is_fatal);
    let work = transfer::Work {
        run: &run,
        describe: &describe_result,
        fatal: &fatal,
    };
    let transfer::Outcome {
        finished,
        analytics,
        concurrency,
    } = transfer::run(&artifact.blobs, &options.concurrency, reporter, work);

    let mut layers: Vec<Option<LayerReport>> = vec![None; artifact.blobs.len()];
    let mut first_error: Option<Error> = None;
    let mut present = Vec::new();
    for transfer::Finished {
        index,
        result,
        took,
    } in finished
    {
        let blob = &artifact.blobs[index];
        if result.is_ok() {
            present.push(blob.digest.clone());
        }
        let mut layer = LayerReport {
            digest: blob.digest.to_string(),
            size: blob.size,
            media_type: blob.media_type.clone(),
            size_class: SizeClass::of(blob.size),
            outcome: "uploaded",
            mounted_from: None,
            bytes_sent: 0,
            bytes_reused: 0,
            bytes_resent: 0,
            seconds: seconds(took),
        };
        match result {
            Ok(Outcome::Existed) => {
                report.blobs_existing += 1;
                report.bytes_skipped += blob.size;
                layer.outcome = "existed";
            }
            Ok(Outcome::Mounted { from }) => {
                report.blobs_mounted += 1;
                report.bytes_skipped += blob.size;
                layer.outcome = "mounted";
                layer.mounted_from = Some(from);
            }
            Ok(Outcome::Uploaded {
                sent,
                reused,
                resent,
                resumes,
            }) => {
                report.blobs_uploaded += 1;
                report.bytes_sent += sent;
                report.bytes_reused += reused;
                report.bytes_resent += resent;
                report.resumes += u64::from(resumes);
                layer.bytes_sent = sent;
                layer.bytes_reused = reused;
                layer.bytes_resent = resent;
            }
            Err(e) => {
                // An interruption says less than a failure that may have come with it.
                if first_error
                    .as_ref()
                    .is_none_or(|first| first.class == Class::Interrupted)
                {
                    first_error = Some(e);
                }
                continue;
            }
        }
        layers[index] = Some(layer);
    }
    // Later pushes to other repositories of this registry can mount these instead of
    // uploading them again.
    if let Some(state) = state
        && let Err(e) = state.record_locations(repository.host(), repository.name(), &present)
    {
        reporter.detail(&format!("cannot record blob locations: {e}"));
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    report.layers = layers.into_iter().flatten().collect();
    if let Some(analytics) = &analytics {
        report.average_speed = analytics.average_speed.round();
    }
    report.concurrency = concurrency;
    Ok(analytics)
}

/// Errors that make the other uploads pointless: nothing else will succeed either.
fn is_fatal(error: &Error) -> bool {
    matches!(
        error.class,
        Class::Auth | Class::Usage | Class::Input | Class::Interrupted
    )
}

fn describe(blob: &Blob, outcome: &Outcome, took: Duration) -> String {
    let id = blob.digest.short();
    let timing = || {
        let seconds = took.as_secs_f64();
        if seconds >= 1.0 {
            format!(
                " in {}, {}",
                human_duration(seconds),
                human_rate(blob.size as f64 / seconds)
            )
        } else {
            String::new()
        }
    };
    match outcome {
        Outcome::Existed => format!("{id}: already exists"),
        Outcome::Mounted { from } => format!("{id}: mounted from {from}"),
        Outcome::Uploaded { reused, .. } if *reused > 0 => {
            format!(
                "{id}: pushed ({}{}, resumed after {})",
                human_bytes(blob.size),
                timing(),
                human_bytes(*reused)
            )
        }
        Outcome::Uploaded { .. } => {
            format!("{id}: pushed ({}{})", human_bytes(blob.size), timing())
        }
    }
}

fn commit_manifests(
    artifact: &Artifact,
    repository: &Repository,
    target: &Reference,
    reporter: &Reporter,
) -> Result<()> {
    let (children, root) = artifact.manifests.split_at(artifact.manifests.len() - 1);
    for child in children {
        repository.commit_manifest(child.digest.as_str(), child)?;
        let platform = child
            .platform
            .as_ref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        reporter.detail(&format!(
            "manifest {}{platform} pushed",
            child.digest.short()
        ));
    }
    let reference = target
        .digest()
        .map(str::to_string)
        .unwrap_or_else(|| target.tag_or_latest().to_string());
    repository.commit_manifest(&reference, &root[0])?;
    Ok(())
}

fn dry_run(
    artifact: &Artifact,
    repository: &Repository,
    mut report: PushReport,
    reporter: &Reporter,
) -> Result<PushReport> {
    // Opening (and at once abandoning) an upload session is the one reliable way to learn
    // whether these credentials may push, without writing anything.
    match repository.initiate_upload(None)? {
        Initiated::Session(session) => repository.cancel_upload(&session),
        Initiated::Mounted => {}
    }
    for blob in &artifact.blobs {
        if repository.check_existing_blob(&blob.digest)?.is_some() {
            report.blobs_existing += 1;
            report.bytes_skipped += blob.size;
            reporter.info(&format!("{}: already exists", blob.digest.short()));
        } else {
            report.blobs_uploaded += 1;
            report.bytes_sent += blob.size;
            reporter.info(&format!(
                "{}: would upload {}",
                blob.digest.short(),
                human_bytes(blob.size)
            ));
        }
    }
    reporter.info(&format!(
        "dry run: {} to upload in {} blobs, {} already present; push permission confirmed; nothing was uploaded",
        human_bytes(report.bytes_sent),
        report.blobs_uploaded,
        human_bytes(report.bytes_skipped)
    ));
    report.duration_seconds = reporter.elapsed().as_secs_f64();
    Ok(report)
}

/// The `--verbose` resume report: what earlier runs and failures cost or saved.
pub fn resume_line(report: &PushReport) -> String {
    format!(
        "resume: {} reused from earlier runs, {} re-sent after {} failure{}, {} mounted or already present",
        human_bytes(report.bytes_reused),
        human_bytes(report.bytes_resent),
        report.resumes,
        if report.resumes == 1 { "" } else { "s" },
        human_bytes(report.bytes_skipped)
    )
}

/// The line `docker push` ends with: `TAG: digest: sha256:... size: N`.
pub fn result_line(target: &Reference, report: &PushReport) -> String {
    let name = target
        .digest()
        .map(str::to_string)
        .unwrap_or_else(|| target.tag_or_latest().to_string());
    format!(
        "{name}: digest: {} size: {}",
        report.digest, report.manifest_size
    )
}

/// Keeps a timing value printable in JSON with a sensible precision.
pub fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}
