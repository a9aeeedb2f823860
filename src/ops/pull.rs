//! Pull: a registry image into the cache. The manifest is fetched and checked against its
//! digest, an index is narrowed to one platform (or kept whole), every blob the cache
//! lacks is downloaded on the worker pool (largest first, as push uploads), then the
//! manifests are stored and the index updated last, so the cache never names an image
//! whose blobs are not all there.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::index::{Entry, now_rfc3339};
use crate::cache::state::StateDir;
use crate::cache::{Cache, CachedCopy, space};
use crate::error::{Class, Error, Result};
use crate::image::digest::Digest;
use crate::image::platform::{choose_platform, host_platform, is_attestation};
use crate::image::reference::Reference;
use crate::image::walk::{self, Parsed};
use crate::image::{self, Blob, Descriptor, ManifestKind, Platform, RawManifest};
use crate::ops::batch::{self, Concurrency, ConcurrencyReport};
use crate::registry::Repository;
use crate::registry::http::transport::RetryPolicy;
use crate::text::plural::count;
use crate::text::sanitize::sanitize;
use crate::transfer::download::{Downloader, Outcome};
use crate::transfer::upload::Progress;
use crate::ui::progress::{AnalyticsSummary, Reporter, human_bytes};

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to take from an index; `None` means this machine's.
    pub platform: Option<Platform>,
    /// Keep the whole index with every platform.
    pub all_platforms: bool,
    pub concurrency: Concurrency,
    pub retry: RetryPolicy,
    /// Re-hash blobs already in the cache before trusting them (their size is always
    /// checked).
    pub verify_cached: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PullReport {
    /// The name the image is cached under.
    pub reference: String,
    pub digest: String,
    pub media_type: String,
    pub manifest_size: usize,
    pub platforms: Vec<String>,
    pub blobs: usize,
    pub blobs_downloaded: usize,
    pub blobs_cached: usize,
    /// Cached copies found damaged (wrong size, or with `--verify` wrong content) and
    /// downloaded again.
    pub blobs_repaired: usize,
    pub bytes_total: u64,
    pub bytes_downloaded: u64,
    pub bytes_resumed: u64,
    pub retries: u64,
    pub duration_seconds: f64,
    /// Bytes per second over the blob downloads.
    pub average_speed: f64,
    /// How the worker pool ran (absent when nothing was downloaded).
    pub concurrency: Option<ConcurrencyReport>,
    pub analytics: Option<AnalyticsSummary>,
}

pub fn pull(
    repository: &Repository,
    reference: &Reference,
    cache: &Cache,
    options: &PullOptions,
    reporter: &Arc<Reporter>,
) -> Result<PullReport> {
    let top = own_media_type(repository.fetch_manifest(reference.manifest_reference())?)?;
    let wanted = Wanted {
        platform: options.platform.as_ref(),
        all_platforms: options.all_platforms,
    };
    let (manifests, name) = resolve(repository, reference, top, &wanted, reporter)?;
    let blobs = blobs_of(&manifests, reporter)?;
    let root = manifests
        .last()
        .expect("resolve returns the root last")
        .clone();
    let mut report = PullReport {
        reference: name.to_string(),
        digest: root.digest.to_string(),
        media_type: root.media_type.clone(),
        manifest_size: root.bytes.len(),
        blobs: blobs.len(),
        bytes_total: blobs.iter().map(|b| b.size).fold(0, u64::saturating_add),
        ..PullReport::default()
    };
    reporter.info(&format!(
        "pulling {name} ({}, {})",
        count(blobs.len() as u64, "blob"),
        human_bytes(report.bytes_total)
    ));

    let _lock = cache
        .open_for_adding(&|| reporter.info("waiting for another process cleaning the cache"))?;
    download_blobs(repository, cache, &blobs, options, reporter, &mut report)?;
    for manifest in &manifests {
        cache.write_small_blob(&manifest.bytes)?;
    }
    let descriptor = root.descriptor();
    let reach = crate::cache::reach::reach(cache, &descriptor)?;
    if !reach.is_complete() {
        return Err(Error::registry(format!(
            "{name} references blobs the registry did not provide: {}",
            reach
                .missing
                .iter()
                .map(Digest::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    report.platforms = reach.platforms.iter().map(Platform::to_string).collect();
    let platform = match reach.platforms.as_slice() {
        [one] if image::media::is_manifest(&root.media_type) => Some(one.clone()),
        _ => None,
    };
    let entry = Entry::new(
        &root.media_type,
        root.digest.clone(),
        root.bytes.len() as u64,
        platform,
        Some(&name),
        &now_rfc3339(),
    );
    cache.update_index(|index| index.add(entry))?;
    // A later push of these blobs to another repository of this registry can mount them
    // from here instead of uploading them.
    let state = StateDir::for_cache(cache.root());
    if let Err(e) = state.record_locations(
        repository.host(),
        repository.name(),
        blobs.iter().map(|b| &b.digest),
    ) {
        reporter.detail(&format!("cannot record blob locations: {e}"));
    }
    report.retries = repository.transport().retries();
    report.duration_seconds = reporter.elapsed().as_secs_f64();
    Ok(report)
}

/// Which part of an index to take: one platform's image (`platform`, else this machine's),
/// or the whole index.
pub(crate) struct Wanted<'a> {
    pub platform: Option<&'a Platform>,
    pub all_platforms: bool,
}

/// The manifests to store, children before the index naming them, the root last; and the
/// name to cache the root under.
pub(crate) fn resolve(
    repository: &Repository,
    reference: &Reference,
    top: RawManifest,
    options: &Wanted,
    reporter: &Reporter,
) -> Result<(Vec<RawManifest>, Reference)> {
    let default_name = || match (reference.tag(), reference.digest()) {
        (None, None) => reference
            .with_tag("latest")
            .map_err(|e| Error::usage(e.to_string())),
        _ => Ok(reference.clone()),
    };
    let ManifestKind::Index(index) = parse(&top)? else {
        return Ok((vec![top], default_name()?));
    };
    if options.all_platforms {
        return Ok((fetch_graph(repository, top)?, default_name()?));
    }
    let wanted = options.platform.cloned().unwrap_or_else(host_platform);
    let child = choose_platform(&index.manifests, &wanted).ok_or_else(|| {
        let offered: Vec<String> = index
            .manifests
            .iter()
            .filter(|d| !is_attestation(d))
            .filter_map(|d| d.platform.as_ref().map(|p| sanitize(&p.to_string())))
            .collect();
        Error::usage(format!(
            "{reference} has no image for {wanted}; it offers {}",
            if offered.is_empty() {
                "no platforms".to_string()
            } else {
                offered.join(", ")
            }
        ))
        .hint("choose one with --platform, or keep them all with --all-platforms")
    })?;
    let manifest = fetch_child(repository, child)?;
    if !matches!(parse(&manifest)?, ManifestKind::Image(_)) {
        return Err(Error::registry(format!(
            "the {wanted} entry of {reference} is not an image manifest"
        )));
    }
    reporter.info(&format!(
        "{reference}: using the {} image {} of index {}",
        child
            .platform
            .as_ref()
            .map(|p| sanitize(&p.to_string()))
            .unwrap_or_else(|| wanted.to_string()),
        child.digest,
        top.digest
    ));
    // A digest names content exactly: the platform image has a digest of its own.
    let name = match reference.digest() {
        Some(_) => reference
            .with_digest(child.digest.as_str())
            .map_err(|e| Error::usage(e.to_string()))?,
        None => default_name()?,
    };
    Ok((vec![manifest], name))
}

/// A manifest's media type is the one it declares itself; the `Content-Type` it came with
/// is only a fallback (some registries send none, or a generic one).
pub(crate) fn own_media_type(mut manifest: RawManifest) -> Result<RawManifest> {
    let (media_type, _) = image::parse_manifest(&manifest.bytes, &manifest.media_type)
        .map_err(|e| Error::registry(format!("manifest {}: {}", manifest.digest, e.message)))?;
    manifest.media_type = media_type;
    Ok(manifest)
}

fn parse(manifest: &RawManifest) -> Result<ManifestKind> {
    image::parse_manifest(&manifest.bytes, &manifest.media_type)
        .map(|(_, kind)| kind)
        .map_err(|e| Error::registry(format!("manifest {}: {}", manifest.digest, e.message)))
}

fn fetch_child(repository: &Repository, descriptor: &Descriptor) -> Result<RawManifest> {
    let mut manifest = repository.fetch_manifest(descriptor.digest.as_str())?;
    if manifest.media_type.is_empty() {
        manifest.media_type = descriptor.media_type.clone();
    }
    let manifest = own_media_type(manifest)?;
    if manifest.bytes.len() as u64 != descriptor.size {
        return Err(Error::registry(format!(
            "manifest {} is {} bytes but its index says {}",
            descriptor.digest,
            manifest.bytes.len(),
            descriptor.size
        )));
    }
    Ok(manifest)
}

/// Every manifest an index reaches, each fetched once (see `image::walk`), children
/// before the index naming them and `top` last.
fn fetch_graph(repository: &Repository, top: RawManifest) -> Result<Vec<RawManifest>> {
    let root = top.descriptor();
    let mut top = Some(top);
    let graph = walk::walk(&root, Error::registry, &mut |descriptor| {
        let manifest = match top.take() {
            Some(top) => top,
            None => fetch_child(repository, descriptor)?,
        };
        Ok(Some(Parsed {
            kind: parse(&manifest)?,
            media_type: manifest.media_type,
            bytes: manifest.bytes,
        }))
    })?;
    Ok(graph
        .nodes
        .into_iter()
        .filter_map(|node| node.content)
        .map(|parsed| RawManifest::new(parsed.media_type, parsed.bytes))
        .collect())
}

/// Config and layers of every image manifest, each once.
pub(crate) fn blobs_of(manifests: &[RawManifest], reporter: &Reporter) -> Result<Vec<Blob>> {
    let mut blobs: Vec<Blob> = Vec::new();
    // A 16 MiB manifest can list 100,000 layers: no quadratic duplicate check.
    let mut seen: HashSet<Digest> = HashSet::new();
    for manifest in manifests {
        let ManifestKind::Image(image) = parse(manifest)? else {
            continue;
        };
        for descriptor in std::iter::once(&image.config).chain(&image.layers) {
            if descriptor.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                reporter.warn(&format!(
                    "layer {} is non-distributable (it lives at its URL); not pulled",
                    descriptor.digest.short()
                ));
                continue;
            }
            if seen.insert(descriptor.digest.clone()) {
                let blob = Blob::from_descriptor(descriptor);
                space::check_plausible(&blob)?;
                blobs.push(blob);
            }
        }
    }
    Ok(blobs)
}

/// Downloads what the cache lacks on the worker pool, with the same monitor, display and
/// concurrency control as push's uploads.
fn download_blobs(
    repository: &Repository,
    cache: &Cache,
    blobs: &[Blob],
    options: &PullOptions,
    reporter: &Arc<Reporter>,
    report: &mut PullReport,
) -> Result<()> {
    let mut missing: Vec<Blob> = Vec::new();
    let mut damaged: Vec<bool> = Vec::new();
    for blob in blobs {
        match cache.cached_copy(blob, options.verify_cached) {
            CachedCopy::Intact => {
                report.blobs_cached += 1;
                reporter.detail(&format!("{}: already in the cache", blob.digest.short()));
            }
            CachedCopy::Absent => {
                missing.push(blob.clone());
                damaged.push(false);
            }
            CachedCopy::Damaged(problem) => {
                reporter.warn(&format!(
                    "{}: the cached copy is damaged ({problem}); downloading it again",
                    blob.digest.short()
                ));
                report.blobs_repaired += 1;
                missing.push(blob.clone());
                damaged.push(true);
            }
        }
    }
    if let Some(line) = cached_line(report.blobs_cached, blobs.len()) {
        reporter.info(&line);
    }
    space::check_room(cache, space::bytes_to_write(cache, &missing))?;
    let run = |index: usize, progress: Arc<dyn Progress>| {
        let downloader = Downloader {
            repository,
            cache,
            retry: &options.retry,
            progress,
            replace: damaged[index],
        };
        downloader.download(&missing[index])
    };
    let describe_result = |index: usize, result: &Result<Outcome>, _took: Duration| match result {
        Ok(outcome) => describe(&missing[index], outcome),
        Err(e) => format!("{}: failed: {}", missing[index].digest.short(), e.message),
    };
    let fatal = |result: &Result<Outcome>| {
        result.as_ref().is_err_and(|e| {
            matches!(
                e.class,
                Class::Auth | Class::Usage | Class::Input | Class::Interrupted
            )
        })
    };
    let work = batch::Work {
        run: &run,
        describe: &describe_result,
        fatal: &fatal,
        cancel: &|| options.retry.stop.request(),
        position: &|_| None,
        claim: &|_| None,
    };
    let outcome = batch::run(&missing, &options.concurrency, reporter, work, None);
    let mut first_error = None;
    for finished in outcome.finished {
        match finished.result {
            Ok(Outcome::Cached) => report.blobs_cached += 1,
            Ok(Outcome::Downloaded {
                received,
                resumed_from,
            }) => {
                report.blobs_downloaded += 1;
                report.bytes_downloaded += received;
                report.bytes_resumed += resumed_from;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(analytics) = &outcome.analytics {
        report.average_speed = analytics.average_speed.round();
        report.analytics = Some(AnalyticsSummary::of(analytics));
        reporter.report_analytics(analytics, missing.iter().map(|b| b.size));
    }
    report.concurrency = outcome.concurrency;
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// What the cache already held, when it held anything: a pull that has nothing to fetch
/// says so rather than leaving the user to wonder why nothing moved.
fn cached_line(cached: usize, total: usize) -> Option<String> {
    match (cached, total) {
        (0, _) => None,
        (1, 1) => Some("its one blob is already in the cache".to_string()),
        (c, t) if c == t => Some(format!("all {t} blobs already in the cache")),
        (c, t) => Some(format!(
            "{c} of {} already in the cache",
            count(t as u64, "blob")
        )),
    }
}

fn describe(blob: &Blob, outcome: &Outcome) -> String {
    let id = blob.digest.short();
    match outcome {
        Outcome::Cached => format!("{id}: already in the cache"),
        Outcome::Downloaded { resumed_from, .. } if *resumed_from > 0 => format!(
            "{id}: downloaded ({}, resumed after {})",
            human_bytes(blob.size),
            human_bytes(*resumed_from)
        ),
        Outcome::Downloaded { .. } => format!("{id}: downloaded ({})", human_bytes(blob.size)),
    }
}
