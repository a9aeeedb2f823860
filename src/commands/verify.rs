//! `verify`: re-hash the cache and report damage.

use super::verbosity;
use crate::cache::Cache;
use crate::cli::{self, Env, VerifyArgs};
use crate::error::{Error, Result};
use crate::progress::{Reporter, human_bytes};
use crate::verify;

pub fn run_verify(args: VerifyArgs, env: Env) -> Result<()> {
    let reporter = Reporter::new(verbosity(args.quiet, false));
    let cache = Cache::new(cli::cache_dir_setting(args.cache_dir.as_deref(), env));
    let workers = match args.max_concurrent {
        Some(n) => cli::in_range(n, "--max-concurrent", cli::limits::CONCURRENT)?,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4),
    };
    let report = verify::verify(
        &cache,
        &args.images,
        args.remove_damaged,
        workers.max(1),
        &reporter,
    )?;
    if args.json {
        reporter.result(&serde_json::to_string(&report).unwrap_or_default());
    } else if report.is_clean() {
        reporter.result(&format!(
            "{}: {} blobs ({}) intact",
            cache.root().display(),
            report.blobs_checked,
            human_bytes(report.bytes_checked)
        ));
    }
    if report.is_clean() {
        return Ok(());
    }
    let mut problems = Vec::new();
    if !report.damaged.is_empty() {
        problems.push(format!("{} damaged blobs", report.damaged.len()));
    }
    if !report.incomplete.is_empty() {
        problems.push(format!("{} problems with images", report.incomplete.len()));
    }
    let hint = if report.removed > 0 {
        "the damaged blobs were removed; pull or extract the affected images again"
    } else {
        "pull or extract the affected images again (verify --remove-damaged first drops the bad copies)"
    };
    Err(Error::input(format!(
        "{} is damaged: {}",
        cache.root().display(),
        problems.join(", ")
    ))
    .hint(hint))
}
