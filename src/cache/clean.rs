//! `clean`: removing images and the blobs only they used, or everything. Runs under the
//! exclusive cache lock, so no pull or extract is between "blob written" and "index
//! updated" while blobs are collected.

use std::collections::BTreeSet;
use std::fs;

use super::files::LockMode;
use super::reach::reach;
use super::{Cache, Entry};
use crate::digest::Digest;
use crate::error::{Error, Result, io_error};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CleanReport {
    /// Images removed (all of them when cleaning everything).
    pub images: Vec<String>,
    pub blobs_removed: usize,
    /// Partial downloads and temporary files of interrupted runs.
    pub leftovers_removed: usize,
    pub bytes_freed: u64,
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
    let _lock = cache.lock(LockMode::Exclusive, waiting)?;
    let index = cache.read_index()?;
    let mut report = CleanReport {
        dry_run,
        ..CleanReport::default()
    };
    if queries.is_empty() {
        report.images = index.manifests.iter().map(Entry::label).collect();
        report.blobs_removed = cache.stored_blobs()?.len();
        report.leftovers_removed = cache.leftovers().len();
        report.bytes_freed = if dry_run {
            super::disk_usage(cache.root())
        } else {
            cache.remove_everything()?
        };
        return Ok(report);
    }

    let mut doomed: BTreeSet<usize> = BTreeSet::new();
    for query in queries {
        let found = index.find(query);
        if found.is_empty() {
            return Err(Error::input(format!(
                "no image \"{query}\" in the cache {}",
                cache.root().display()
            ))
            .hint("`docker-image-pusher list` shows what is cached"));
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
            fs::remove_file(&blob.path).map_err(|e| io_error("remove", &blob.path, e))?;
        }
        report.blobs_removed += 1;
        report.bytes_freed += blob.size;
    }
    for (path, size) in cache.leftovers() {
        if !dry_run {
            fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
        }
        report.leftovers_removed += 1;
        report.bytes_freed += size;
    }
    Ok(report)
}
