//! `save`: cached images into one archive.

use std::path::Path;

use super::verbosity;
use crate::cache::Cache;
use crate::cli::{self, Env, SaveArgs};
use crate::error::Result;
use crate::progress::{Reporter, human_bytes};
use crate::save;

pub fn run_save(args: SaveArgs, env: Env) -> Result<()> {
    let verbose = cli::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = Reporter::new(verbosity(args.quiet, verbose));
    let cache = Cache::new(cli::cache_dir_setting(args.cache_dir.as_deref(), env));
    let report = save::save(&cache, &args.images, Path::new(&args.output), &reporter)?;
    if args.json {
        reporter.result(&serde_json::to_string(&report).unwrap_or_default());
        return Ok(());
    }
    for image in &report.images {
        reporter.info(&format!("saved {image}"));
    }
    reporter.result(&format!(
        "{}: {} images, {} blobs, {}",
        report.output,
        report.images.len(),
        report.blobs,
        human_bytes(report.bytes)
    ));
    Ok(())
}
