//! `save`: cached images into one archive.

use std::path::Path;

use super::verbosity;
use crate::cache::Cache;
use crate::cli::{self, Env, SaveArgs};
use crate::compress::{Algorithm, Mode, Recipe};
use crate::error::Result;
use crate::progress::{Reporter, human_bytes};
use crate::save::{self, SaveCompressionOptions};

pub fn run_save(args: SaveArgs, env: Env) -> Result<()> {
    let verbose = cli::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = Reporter::new(verbosity(args.quiet, verbose));
    let cache = Cache::new(cli::cache_dir_setting(args.cache_dir.as_deref(), env));
    // No link to measure: `auto` makes the archive small.
    let compression = match cli::compress_setting(args.compress.as_deref(), env)? {
        Mode::None => None,
        Mode::Auto => Some(Algorithm::Gzip),
        Mode::Use(algorithm) => Some(algorithm),
    }
    .map(|algorithm| {
        Ok::<_, crate::error::Error>(SaveCompressionOptions {
            recipe: Recipe::of(algorithm),
            threads: cli::compress_threads_setting(args.compress_threads, env)?,
        })
    })
    .transpose()?;
    let report = save::save(
        &cache,
        &args.images,
        Path::new(&args.output),
        compression,
        &reporter,
    )?;
    if args.json {
        reporter.result(&serde_json::to_string(&report).unwrap_or_default());
        return Ok(());
    }
    for image in &report.images {
        reporter.info(&format!("saved {image}"));
    }
    if let Some(c) = &report.compression {
        reporter.info(&format!(
            "compressed {} layers with {}: {} -> {}",
            c.layers_compressed,
            c.algorithm,
            human_bytes(c.bytes_uncompressed),
            human_bytes(c.bytes_compressed)
        ));
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
