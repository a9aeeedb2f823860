//! Push: write an artifact to a repository. Every blob goes up on the worker pool (largest
//! first, so the longest transfer starts first), then the manifests in order, children
//! before the index that names them, the last one under the target's tag.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::error::{Class, Error, Result};
use crate::image::{Artifact, Blob, BlobSource};
use crate::monitor::{self, Analytics, Change, Sources, Status, Tracker, Tuning};
use crate::progress::{Reporter, class_counts, human_bytes, render_analytics};
use crate::reference::Reference;
use crate::registry::{Initiated, Repository};
use crate::scheduler::{ClassCaps, Gate, PriorityChannel, SizeClass, run_pool};
use crate::units::{human_duration, human_rate};
use crate::upload::{Outcome, UploadOptions, Uploader};

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub upload: UploadOptions,
    /// Worker threads: the most blobs that may upload at once.
    pub max_concurrent: usize,
    /// Dynamic mode: the controller's settings (its `max` is `max_concurrent`). `None`
    /// keeps `max_concurrent` blobs uploading at once throughout.
    pub dynamic: Option<Tuning>,
    /// Caps per size class, within the overall limit.
    pub class_caps: ClassCaps,
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
    pub bytes_reused: u64,
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
    pub seconds: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ConcurrencyReport {
    /// `fixed` or `dynamic`.
    pub mode: &'static str,
    pub min: usize,
    pub max: usize,
    pub initial: usize,
    #[serde(rename = "final")]
    pub final_limit: usize,
    pub peak_speed: f64,
    /// Running uploads over allowed ones while anything was uploading (0..1).
    pub utilization: f64,
    pub changes: Vec<Change>,
}

pub fn push(
    artifact: &Artifact,
    source: &dyn BlobSource,
    repository: &Repository,
    target: &Reference,
    options: &PushOptions,
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
    let analytics = upload_blobs(artifact, source, repository, options, reporter, &mut report)?;
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

/// Uploads every blob on the worker pool while the monitor thread samples the transfer,
/// drives the display and (in dynamic mode) resizes the gate. Returns the monitor's
/// figures for the report.
fn upload_blobs(
    artifact: &Artifact,
    source: &dyn BlobSource,
    repository: &Repository,
    options: &PushOptions,
    reporter: &Arc<Reporter>,
    report: &mut PushReport,
) -> Result<Option<Analytics>> {
    reporter.begin_layers(&artifact.blobs);
    let queue = PriorityChannel::new();
    for (index, blob) in artifact.blobs.iter().enumerate() {
        // Largest first: the longest transfer starts first and nothing big straggles.
        queue.send(blob.size, index);
    }
    let initial = match &options.dynamic {
        Some(tuning) => tuning.initial(artifact.blobs.len()),
        None => options.max_concurrent,
    };
    let gate = Gate::with_caps(initial, options.class_caps);
    let work = |index: usize| {
        let blob = &artifact.blobs[index];
        reporter.layer_started(index);
        let started = Instant::now();
        let uploader = Uploader {
            repository,
            source,
            options: &options.upload,
            progress: reporter.layer_progress(index),
        };
        let result = uploader.upload(blob);
        let took = started.elapsed();
        let event = match &result {
            Ok(outcome) => describe(blob, outcome, took),
            Err(e) => format!("{}: failed: {}", blob.digest.short(), e.message),
        };
        reporter.layer_finished(index, &event);
        (index, result, took)
    };
    let stop =
        |(_, result, _): &(usize, Result<Outcome>, Duration)| result.as_ref().is_err_and(is_fatal);

    let sent = || reporter.counters.sent();
    let queued = || queue.len();
    let sources = Sources {
        gate: &gate,
        sent: &sent,
        queued: &queued,
    };
    let show = |status: &Status, change: Option<&Change>| reporter.tick(status, change);
    let (stop_monitor, stopped) = crossbeam_channel::bounded::<()>(0);
    let mut tracker = Tracker::new(options.dynamic.clone(), initial);
    let (results, monitored) = std::thread::scope(|scope| {
        let monitor = scope.spawn(|| {
            monitor::watch(&sources, &mut tracker, &show, &stopped);
        });
        let results = run_pool(options.max_concurrent, &gate, &queue, &work, &stop);
        drop(stop_monitor);
        (results, monitor.join().is_ok())
    });
    reporter.finish_live();
    let analytics = monitored.then(|| tracker.analytics());

    let mut layers: Vec<Option<LayerReport>> = vec![None; artifact.blobs.len()];
    let mut first_error = None;
    for (index, result, took) in results {
        let blob = &artifact.blobs[index];
        let mut layer = LayerReport {
            digest: blob.digest.to_string(),
            size: blob.size,
            media_type: blob.media_type.clone(),
            size_class: SizeClass::of(blob.size),
            outcome: "uploaded",
            mounted_from: None,
            bytes_sent: 0,
            bytes_reused: 0,
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
            Ok(Outcome::Uploaded { sent, reused }) => {
                report.blobs_uploaded += 1;
                report.bytes_sent += sent;
                report.bytes_reused += reused;
                layer.bytes_sent = sent;
                layer.bytes_reused = reused;
            }
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        }
        layers[index] = Some(layer);
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    report.layers = layers.into_iter().flatten().collect();
    if let Some(analytics) = &analytics {
        report.average_speed = analytics.average_speed.round();
        report.concurrency = Some(ConcurrencyReport {
            mode: if analytics.dynamic {
                "dynamic"
            } else {
                "fixed"
            },
            min: options
                .dynamic
                .as_ref()
                .map_or(options.max_concurrent, |t| t.min),
            max: options.max_concurrent,
            initial,
            final_limit: analytics.final_limit,
            peak_speed: analytics.peak_speed.round(),
            utilization: (analytics.utilization * 1000.0).round() / 1000.0,
            changes: analytics.changes.clone(),
        });
    }
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
