//! Verify: re-hash the cache's blobs (all, or one image's) and check that every cached
//! image has all its blobs, for use after copying a cache or an archive around. Damage is
//! reported with the images it hurts; `--remove-damaged` deletes the damaged blobs so the
//! next pull or extract of those images stores good copies.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use crate::cache::Cache;
use crate::cache::files::LockMode;
use crate::cache::reach::reach;
use crate::cache::trust;
use crate::error::Result;
use crate::image::digest::{Digest, Hasher};
use crate::pool::scheduler::{Gate, PriorityChannel, run_pool};
use crate::ui::progress::Reporter;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Damage {
    pub digest: String,
    pub problem: String,
    /// Cached images that use the blob.
    pub images: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Incomplete {
    pub image: String,
    pub problem: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    pub damaged: Vec<Damage>,
    pub incomplete: Vec<Incomplete>,
    pub removed: usize,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.incomplete.is_empty()
    }
}

/// A blob to hash: where it is and what it must be.
struct Check {
    digest: Digest,
    path: PathBuf,
    expected_size: Option<u64>,
}

pub fn verify(
    cache: &Cache,
    queries: &[String],
    remove_damaged: bool,
    workers: usize,
    reporter: &Reporter,
) -> Result<VerifyReport> {
    let mode = if remove_damaged {
        // Removal happens only in a cache the tool made, never through a linked directory;
        // checked before the lock, whose file would already change a foreign directory.
        trust::check_deletable(cache.root(), &cache.temp_dir())?;
        trust::real_dir(cache.root(), &["blobs", "sha256"])?;
        LockMode::Exclusive
    } else {
        LockMode::Shared
    };
    let _lock = cache.lock(mode, &|| {
        reporter.info("waiting for other processes using the cache")
    })?;
    let index = cache.read_index()?;
    let positions: Vec<usize> = if queries.is_empty() {
        (0..index.manifests.len()).collect()
    } else {
        let mut positions = Vec::new();
        for query in queries {
            match index.find(query) {
                found if found.is_empty() => positions.push(index.find_one(query, cache.root())?),
                found => positions.extend(found),
            }
        }
        positions.sort();
        positions.dedup();
        positions
    };

    let mut report = VerifyReport::default();
    // Which images use each blob, to say what a damaged blob breaks.
    let mut users: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
    for &position in &positions {
        let entry = &index.manifests[position];
        users
            .entry(entry.digest.clone())
            .or_default()
            .push(entry.label());
        match reach(cache, &entry.descriptor()) {
            Ok(reached) => {
                for missing in &reached.missing {
                    report.incomplete.push(Incomplete {
                        image: entry.label(),
                        problem: format!("lacks blob {missing}"),
                    });
                }
                for (digest, size) in reached.blobs {
                    let names = users.entry(digest.clone()).or_default();
                    if !names.contains(&entry.label()) {
                        names.push(entry.label());
                    }
                    sizes.insert(digest, size);
                }
            }
            // A manifest that cannot be read: its own blob shows up damaged below.
            Err(e) => report.incomplete.push(Incomplete {
                image: entry.label(),
                problem: e.message,
            }),
        }
    }

    let checks: Vec<Check> = if queries.is_empty() {
        cache
            .stored_blobs()?
            .into_iter()
            .filter_map(|stored| {
                let digest = stored.digest?;
                Some(Check {
                    expected_size: sizes.get(&digest).copied(),
                    digest,
                    path: stored.path,
                })
            })
            .collect()
    } else {
        sizes
            .iter()
            .filter(|(digest, _)| cache.blob_path(digest).exists())
            .map(|(digest, size)| Check {
                digest: digest.clone(),
                path: cache.blob_path(digest),
                expected_size: Some(*size),
            })
            .collect()
    };

    let queue = PriorityChannel::new();
    for check in checks {
        let size = fs::metadata(&check.path).map(|m| m.len()).unwrap_or(0);
        queue.send(size, check);
    }
    let gate = Gate::new(workers);
    let work = |check: Check| {
        let outcome = check_blob(&check);
        (check, outcome)
    };
    let results = run_pool(workers, &gate, &queue, &work, &|_| false);
    for (check, outcome) in results {
        report.blobs_checked += 1;
        match outcome {
            Ok(size) => report.bytes_checked += size,
            Err(problem) => {
                let images = users.get(&check.digest).cloned().unwrap_or_default();
                reporter.warn(&format!(
                    "{} is damaged: {problem}{}",
                    check.digest,
                    if images.is_empty() {
                        String::new()
                    } else {
                        format!(" (used by {})", images.join(", "))
                    }
                ));
                if remove_damaged {
                    trust::remove_entry(&check.path)?;
                    report.removed += 1;
                }
                report.damaged.push(Damage {
                    digest: check.digest.to_string(),
                    problem,
                    images,
                });
            }
        }
    }
    report.damaged.sort_by(|a, b| a.digest.cmp(&b.digest));
    for incomplete in &report.incomplete {
        reporter.warn(&format!(
            "{} is incomplete: {}",
            incomplete.image, incomplete.problem
        ));
    }
    Ok(report)
}

/// Hashes one blob file; `Ok(size)` when it is what its name and descriptor say.
fn check_blob(check: &Check) -> std::result::Result<u64, String> {
    let mut file = File::open(&check.path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read it: {e}")),
        }
    }
    let size = hasher.position();
    if let Some(expected) = check.expected_size
        && expected != size
    {
        return Err(format!("it has {size} bytes, its image says {expected}"));
    }
    let actual = hasher.digest();
    if actual != check.digest {
        return Err(format!("its content hashes to {actual}"));
    }
    Ok(size)
}
