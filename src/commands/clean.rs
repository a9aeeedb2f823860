//! `clean`: remove images (and the blobs only they use), or everything.

use super::verbosity;
use crate::cache::Cache;
use crate::cache::clean;
use crate::cli::{self, CleanArgs, Env};
use crate::error::Result;
use crate::progress::{Reporter, human_bytes};

pub fn run_clean(args: CleanArgs, env: Env) -> Result<()> {
    let reporter = Reporter::new(verbosity(args.quiet, false));
    let cache = Cache::new(cli::cache_dir_setting(args.cache_dir.as_deref(), env));
    let report = clean::clean(&cache, &args.images, args.dry_run, &|| {
        reporter.info("waiting for other processes using the cache to finish")
    })?;
    if args.json {
        reporter.result(&serde_json::to_string(&report).unwrap_or_default());
        return Ok(());
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for image in &report.images {
        reporter.info(&format!("{verb} {image}"));
    }
    if report.foreign_kept > 0 {
        reporter.info(&format!(
            "left {} entries docker-image-pusher did not create in {}",
            report.foreign_kept,
            cache.root().display()
        ));
    }
    let leftovers = match report.leftovers_removed {
        0 => String::new(),
        n => format!(" and {n} leftover partial files"),
    };
    reporter.result(&format!(
        "{}: {} images, {} blobs{leftovers}, {} {}",
        cache.root().display(),
        report.images.len(),
        report.blobs_removed,
        human_bytes(report.bytes_freed),
        if report.dry_run {
            "would be freed"
        } else {
            "freed"
        }
    ));
    Ok(())
}
