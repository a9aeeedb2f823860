//! Push: write an artifact to a repository. Every blob goes up on the worker pool (largest
//! first, so the longest transfer starts first), then the manifests in order, children
//! before the index that names them, the last one under the target's tag.

pub mod all;
mod auto;
pub mod check;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::cache::state::StateDir;
use crate::compress::manifest::{self, Compressed};
use crate::compress::{Algorithm, MeterReading, Mode};
use crate::error::{Class, Error, Result};
use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::{Artifact, Blob, BlobSource, RawManifest, media};
use crate::ops::batch::{self, Concurrency, ConcurrencyReport};
use crate::pool::monitor::{Analytics, Bottleneck};
use crate::pool::scheduler::SizeClass;
use crate::registry::Repository;
use crate::text::units::{human_duration, human_rate};
use crate::transfer::compressed_upload::{Done, LayerCompression};
use crate::transfer::upload::{Outcome, UploadOptions, Uploader};
use crate::ui::progress::{AnalyticsSummary, Reporter, human_bytes};
use plan::Plan;

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub upload: UploadOptions,
    pub concurrency: Concurrency,
    /// Check everything, upload nothing.
    pub dry_run: bool,
    /// Finish at once when the target tag already serves this exact manifest.
    pub skip_existing: bool,
    /// `--compress`.
    pub compress: Mode,
    /// Compression threads (the pool every compressed layer shares).
    pub compress_threads: usize,
    /// `--memory-limit`: what the compressing process may use, in bytes.
    pub memory_limit: u64,
}

impl PushOptions {
    /// A push that sends the source's bytes as they are (push --all, copy).
    pub fn uncompressed(
        upload: UploadOptions,
        concurrency: Concurrency,
        dry_run: bool,
        skip_existing: bool,
    ) -> PushOptions {
        PushOptions {
            upload,
            concurrency,
            dry_run,
            skip_existing,
            compress: Mode::None,
            compress_threads: 1,
            memory_limit: crate::compress::budget::DEFAULT_LIMIT,
        }
    }
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
    pub analytics: Option<AnalyticsSummary>,
    /// What compression did (absent with `--compress none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionReport>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CompressionReport {
    /// What `--compress` asked for: `auto`, `gzip` or `zstd`.
    pub mode: &'static str,
    /// What was used: `gzip`, `zstd`, or `none` (auto chose to send raw).
    pub algorithm: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u64>,
    pub threads: usize,
    /// Why `auto` chose what it chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub layers_compressed: usize,
    /// Size of the compressed layers before and after compression.
    pub bytes_uncompressed: u64,
    pub bytes_compressed: u64,
    /// Manifests that became OCI manifests because they got zstd layers.
    pub manifests_converted: usize,
    /// Uncompressed bytes per second compressed (0 when nothing had to be compressed).
    pub speed: f64,
    /// What the threads could do if never idle.
    pub capacity: f64,
    /// Share of the threads' time spent compressing.
    pub busy: f64,
    /// Network bytes per second while compressing.
    pub network_speed: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bottleneck: Option<Bottleneck>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerReport {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub size_class: SizeClass,
    /// `uploaded`, `existed` or `mounted`.
    pub outcome: &'static str,
    /// For a layer compressed on the way (`digest`, `size` and `media_type` are then the
    /// compressed blob's): the uncompressed layer it came from, and the algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<&'static str>,
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
    let cache = state.map(|s| Cache::new(s.cache_dir()));
    // A dry run measures nothing (auto would send a probe): it reports the raw layers.
    let mode = match options.compress {
        Mode::Auto if options.dry_run => Mode::None,
        mode => mode,
    };
    let plan = plan::prepare(&plan::Inputs {
        artifact,
        source,
        repository,
        state,
        cache: cache.as_ref(),
        reporter,
        mode,
        threads: options.compress_threads,
        memory_limit: options.memory_limit,
    })?;
    if let Some(reason) = &plan.reason {
        let chosen = plan.recipe.map_or("none", |r| r.algorithm.name());
        reporter.info(&format!("compression: {chosen} ({reason})"));
    }
    // The manifests are known in advance unless layers still have to be compressed to
    // learn their digests.
    let predicted = plan.predicted(artifact)?;
    let expected_root = match &predicted {
        Some(rewritten) => rewritten.manifests.last().map(|m| m.digest.clone()),
        None if !plan.is_active() => Some(root.digest.clone()),
        None => None,
    };
    if let (Some(digest), Some(expected)) = (target.digest(), &expected_root)
        && digest != expected.as_str()
    {
        return Err(Error::usage(format!(
            "the target names digest {digest}, but the image is {expected}"
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
    if let Some(rewritten) = &predicted
        && let Some(new_root) = rewritten.manifests.last()
    {
        report.digest = new_root.digest.to_string();
        report.manifest_size = new_root.bytes.len();
    }
    if options.skip_existing
        && let Some(expected) = &expected_root
        && target_is_current(repository, target, expected)
    {
        reporter.info(&format!(
            "{target} already serves {expected}; nothing to push"
        ));
        report.up_to_date = true;
        report.bytes_skipped = report.bytes_total;
        report.compression = compression_report(&plan, &BTreeMap::new(), 0, None, artifact);
        return Ok(report);
    }
    if options.dry_run {
        if plan.is_active() {
            reporter.info(&format!(
                "{} would be compressed with {} on the way",
                crate::text::plural::count(plan.layers.len() as u64, "uncompressed layer"),
                plan.recipe.map_or("none", |r| r.algorithm.name())
            ));
        }
        let force = options.upload.force;
        return check::dry_run(artifact, source, repository, force, report, reporter);
    }
    let job = Job {
        artifact,
        source,
        repository,
        options,
        state,
        cache: cache.as_ref(),
        plan: &plan,
        reporter,
    };
    let (analytics, compressed) =
        upload_blobs(&job, &mut report).map_err(|error| interrupted_or(error, &report))?;
    if options.upload.stop.is_requested() {
        return Err(interrupted_or(
            Error::interrupted("stopped by a signal"),
            &report,
        ));
    }
    let rewritten = manifest::rewrite(&artifact.manifests, &compressed)?;
    let new_root = rewritten
        .manifests
        .last()
        .expect("an artifact always has a root manifest");
    if let Some(digest) = target.digest()
        && digest != new_root.digest.as_str()
    {
        return Err(Error::usage(format!(
            "the target names digest {digest}, but the compressed image is {}",
            new_root.digest
        ))
        .hint("push by tag, or name the digest of the compressed image"));
    }
    if rewritten.converted > 0 {
        reporter.info(&format!(
            "zstd layers need OCI manifests (Docker schema 2 has no zstd type): {} manifest{} converted to OCI",
            rewritten.converted,
            if rewritten.converted == 1 { "" } else { "s" }
        ));
    }
    report.digest = new_root.digest.to_string();
    report.manifest_size = new_root.bytes.len();
    commit_manifests(&rewritten.manifests, repository, target, reporter)?;
    report.retries = repository.transport().retries();
    report.duration_seconds = reporter.elapsed().as_secs_f64();
    report.compression = compression_report(
        &plan,
        &compressed,
        rewritten.converted,
        analytics.as_ref(),
        artifact,
    );
    if let Some(analytics) = analytics {
        remember_link_speed(state, repository, &analytics, reporter);
        report.analytics = Some(AnalyticsSummary::of(&analytics));
        reporter.report_analytics(&analytics, artifact.blobs.iter().map(|b| b.size));
    }
    Ok(report)
}

/// Keeps the link speed this push measured for `--compress auto` next time, unless the
/// compressors (not the network) set the pace, or too little was sent to tell.
fn remember_link_speed(
    state: Option<&StateDir>,
    repository: &Repository,
    analytics: &Analytics,
    reporter: &Reporter,
) {
    const ENOUGH: u64 = 4 << 20;
    let network_bound = analytics
        .compression
        .is_none_or(|c| c.bottleneck == Bottleneck::Network);
    if let Some(state) = state
        && analytics.bytes_sent >= ENOUGH
        && network_bound
        && let Err(e) = state.record_link_speed(
            repository.host(),
            analytics.average_speed.max(analytics.peak_speed),
        )
    {
        reporter.detail(&format!("cannot remember the link speed: {e}"));
    }
}

fn compression_report(
    plan: &Plan,
    compressed: &BTreeMap<Digest, Compressed>,
    converted: usize,
    analytics: Option<&Analytics>,
    artifact: &Artifact,
) -> Option<CompressionReport> {
    if plan.mode == Mode::None {
        return None;
    }
    let sizes: BTreeMap<&Digest, u64> =
        artifact.blobs.iter().map(|b| (&b.digest, b.size)).collect();
    let figures = analytics.and_then(|a| a.compression.map(|c| (a, c)));
    Some(CompressionReport {
        mode: plan.mode.name(),
        algorithm: plan.recipe.map_or("none", |r| r.algorithm.name()),
        level: plan.recipe.map(|r| r.level),
        block_size: plan.recipe.map(|r| r.block_size),
        threads: plan.compressor.as_ref().map_or(0, |c| c.threads()),
        reason: plan.reason.clone(),
        layers_compressed: compressed.len(),
        bytes_uncompressed: compressed.keys().filter_map(|d| sizes.get(d)).sum(),
        bytes_compressed: compressed.values().map(|c| c.size).sum(),
        manifests_converted: converted,
        speed: figures.map_or(0.0, |(_, c)| c.average_speed.round()),
        capacity: figures.map_or(0.0, |(_, c)| c.capacity.round()),
        busy: figures.map_or(0.0, |(_, c)| (c.busy * 1000.0).round() / 1000.0),
        network_speed: figures.map_or(0.0, |(a, _)| a.average_speed.round()),
        bottleneck: figures.map(|(_, c)| c.bottleneck),
    })
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
        "interrupted with {done} of {} pushed; open uploads are saved",
        crate::text::plural::count(report.blobs as u64, "blob")
    ))
    .hint("run the same command again to resume where it stopped")
}

/// Everything the blob uploads of one push share.
struct Job<'a> {
    artifact: &'a Artifact,
    source: &'a dyn BlobSource,
    repository: &'a Repository,
    options: &'a PushOptions,
    state: Option<&'a StateDir>,
    cache: Option<&'a Cache>,
    plan: &'a Plan,
    reporter: &'a Arc<Reporter>,
}

/// Uploads every blob on the worker pool (compressing the layers the plan names on the
/// way) while the monitor thread samples the transfer, drives the display and (in
/// dynamic mode) resizes the gate. Returns the monitor's figures for the report and the
/// compressed form of every layer that got one.
fn upload_blobs(
    job: &Job,
    report: &mut PushReport,
) -> Result<(Option<Analytics>, BTreeMap<Digest, Compressed>)> {
    let Job {
        artifact,
        source,
        repository,
        options,
        state,
        cache,
        plan,
        reporter,
    } = *job;
    let run = |index: usize, progress: Arc<dyn crate::transfer::upload::Progress>| {
        let blob = &artifact.blobs[index];
        match (plan.compresses(blob), &plan.compressor, plan.recipe) {
            (true, Some(compressor), Some(recipe)) => LayerCompression {
                repository,
                source,
                options: &options.upload,
                progress,
                state,
                cache,
                compressor,
                recipe,
            }
            .upload(blob),
            _ => Uploader {
                repository,
                source,
                options: &options.upload,
                progress,
                state,
            }
            .upload(blob)
            .map(|outcome| Done {
                outcome,
                compressed: None,
            }),
        }
    };
    let describe_result = |index: usize, result: &Result<Done>, took: Duration| {
        let blob = &artifact.blobs[index];
        match result {
            Ok(done) => describe(blob, done, took),
            Err(e) => format!("{}: failed: {}", blob.digest.short(), e.message),
        }
    };
    let fatal = |result: &Result<Done>| result.as_ref().is_err_and(is_fatal);
    let work = batch::Work {
        run: &run,
        describe: &describe_result,
        fatal: &fatal,
        cancel: &|| options.upload.stop.request(),
        position: &|index| source.stream_position(&artifact.blobs[index]),
        claim: &|index| source.announce(&artifact.blobs[index]),
    };
    let read_meter = || {
        plan.compressor
            .as_ref()
            .map_or(MeterReading::default(), |c| c.meter().read())
    };
    let meter = plan
        .compressor
        .as_ref()
        .filter(|_| plan.is_active())
        .map(|c| batch::Meter {
            read: &read_meter,
            threads: c.threads(),
            algorithm: plan.recipe.map_or("", |r| r.algorithm.name()),
        });
    let batch::Outcome {
        finished,
        analytics,
        concurrency,
    } = batch::run(&artifact.blobs, &options.concurrency, reporter, work, meter);

    let mut layers: Vec<Option<LayerReport>> = vec![None; artifact.blobs.len()];
    let mut first_error: Option<Error> = None;
    let mut present = Vec::new();
    let mut compressed = BTreeMap::new();
    for batch::Finished {
        index,
        result,
        took,
    } in finished
    {
        let blob = &artifact.blobs[index];
        let mut layer = LayerReport {
            digest: blob.digest.to_string(),
            size: blob.size,
            media_type: blob.media_type.clone(),
            size_class: SizeClass::of(blob.size),
            outcome: "uploaded",
            uncompressed_digest: None,
            uncompressed_size: None,
            compression: None,
            mounted_from: None,
            bytes_sent: 0,
            bytes_reused: 0,
            bytes_resent: 0,
            seconds: seconds(took),
        };
        let result = result.map(|done| {
            match &done.compressed {
                Some(form) => {
                    present.push(form.digest.clone());
                    let oci =
                        blob.media_type == media::OCI_LAYER || form.algorithm == Algorithm::Zstd;
                    layer.digest = form.digest.to_string();
                    layer.size = form.size;
                    layer.media_type = form.algorithm.media_type(oci).to_string();
                    layer.uncompressed_digest = Some(blob.digest.to_string());
                    layer.uncompressed_size = Some(blob.size);
                    layer.compression = Some(form.algorithm.name());
                    compressed.insert(blob.digest.clone(), form.clone());
                }
                None => present.push(blob.digest.clone()),
            }
            done.outcome
        });
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
    Ok((analytics, compressed))
}

/// Errors that make the other uploads pointless: nothing else will succeed either.
fn is_fatal(error: &Error) -> bool {
    matches!(
        error.class,
        Class::Auth | Class::Usage | Class::Input | Class::Interrupted
    )
}

fn describe(blob: &Blob, done: &Done, took: Duration) -> String {
    let id = blob.digest.short();
    let outcome = &done.outcome;
    let size = match &done.compressed {
        Some(form) => format!(
            "{} as {} {}",
            human_bytes(blob.size),
            form.algorithm.name(),
            human_bytes(form.size)
        ),
        None => human_bytes(blob.size),
    };
    let existed = match &done.compressed {
        Some(form) => format!(
            "{id}: already exists (as {} {})",
            form.algorithm.name(),
            form.digest.short()
        ),
        None => format!("{id}: already exists"),
    };
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
        Outcome::Existed => existed,
        Outcome::Mounted { from } => format!("{id}: mounted from {from}"),
        Outcome::Uploaded { reused, .. } if *reused > 0 => {
            format!(
                "{id}: pushed ({size}{}, resumed after {})",
                timing(),
                human_bytes(*reused)
            )
        }
        Outcome::Uploaded { .. } => format!("{id}: pushed ({size}{})", timing()),
    }
}

fn commit_manifests(
    manifests: &[RawManifest],
    repository: &Repository,
    target: &Reference,
    reporter: &Reporter,
) -> Result<()> {
    let (children, root) = manifests.split_at(manifests.len() - 1);
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
