//! `clean`: removing images and the blobs only they used, or everything. Runs under the
//! exclusive cache lock, so no pull or extract is between "blob written" and "index
//! updated" while blobs are collected. Only in a cache the tool made, only its own
//! files, never through a symlink (see `trust`).

use std::collections::BTreeSet;

use super::files::LockMode;
use super::reach::reach;
use super::{Cache, Entry, trust};
use crate::error::{Error, Result};
use crate::image::digest::Digest;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CleanReport {
    /// Images removed (all of them when cleaning everything).
    pub images: Vec<String>,
    pub blobs_removed: usize,
    /// Partial downloads and temporary files of interrupted runs.
    pub leftovers_removed: usize,
    pub bytes_freed: u64,
    /// Entries in the cache directory the tool did not create, left in place.
    pub foreign_kept: usize,
    pub dry_run: bool,
}

/// Removes the images matching `queries`, then every blob no remaining image uses and
/// every leftover of an interrupted run. With no queries, removes everything.
pub fn clean(
    cache: &Cache,
    queries: &[String],
    dry_run: bool,
    waiting: &dyn Fn(),
) -> Result<CleanReport> {
    let mut report = CleanReport {
        dry_run,
        ..CleanReport::default()
    };
    // Before the lock: taking it creates a file, and a directory that is not a cache
    // must be left exactly as it was.
    trust::check_deletable(cache.root(), &cache.temp_dir())?;
    let _lock = cache.lock(LockMode::Exclusive, waiting)?;
    let index = cache.read_index()?;
    if queries.is_empty() {
        report.images = index.manifests.iter().map(Entry::label).collect();
        let sweep = trust::sweep(cache.root(), dry_run)?;
        report.blobs_removed = sweep.blobs;
        report.leftovers_removed = sweep.leftovers;
        report.bytes_freed = sweep.bytes;
        report.foreign_kept = sweep.kept.len();
        return Ok(report);
    }
    // Refused before the index changes, so a refusal leaves the cache as it was.
    trust::real_dir(cache.root(), &["blobs", "sha256"])?;
    trust::real_dir(cache.root(), &[super::TEMP])?;

    let mut doomed: BTreeSet<usize> = BTreeSet::new();
    for query in queries {
        let mut found = index.find(query);
        if found.is_empty() {
            // A short name must name one image (its names on every registry go with it);
            // otherwise this is the error that lists the candidates or the nearest names.
            index.find_one(query, cache.root())?;
            found = super::lookup::by_short_name(&index, query);
        }
        doomed.extend(found);
    }
    let removed: Vec<Entry> = doomed.iter().map(|&i| index.manifests[i].clone()).collect();
    let mut keep: BTreeSet<Digest> = BTreeSet::new();
    for (position, entry) in index.manifests.iter().enumerate() {
        if doomed.contains(&position) {
            continue;
        }
        let reached = reach(cache, &entry.descriptor()).map_err(|e| {
            Error::input(format!(
                "cannot tell which blobs {} uses: {}",
                entry.label(),
                e.message
            ))
            .hint("that image is damaged; clean it too, or run verify")
        })?;
        keep.extend(reached.blobs.into_keys());
    }
    report.images = removed.iter().map(Entry::label).collect();

    if !dry_run {
        cache.update_index(|index| index.manifests.retain(|e| !removed.contains(e)))?;
    }
    for blob in cache.stored_blobs()? {
        let Some(digest) = &blob.digest else {
            continue;
        };
        if keep.contains(digest) {
            continue;
        }
        if !dry_run {
            trust::remove_entry(&blob.path)?;
        }
        report.blobs_removed += 1;
        report.bytes_freed += blob.size;
    }
    for (path, size) in cache.leftovers() {
        if !dry_run {
            trust::remove_entry(&path)?;
        }
        report.leftovers_removed += 1;
        report.bytes_freed += size;
    }
    Ok(report)
}
