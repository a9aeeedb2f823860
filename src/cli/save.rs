//! `save`: cached images into one archive.
//!
//! The flags of the subcommand, then running it.

use std::path::Path;

use argh::FromArgs;

use super::settings::{self, Env};
use super::verbosity;
use crate::cache::Cache;
use crate::compress::{Algorithm, Mode, Recipe};
use crate::error::Result;
use crate::ops::save::{self, SaveCompressionOptions};
use crate::ui::progress::{Reporter, human_bytes};

#[derive(FromArgs, Debug, Default)]
/// Write cached images to one archive that docker load, skopeo and extract read.
#[argh(
    subcommand,
    name = "save",
    example = "docker-image-pusher save registry.example.com/team/app:1.0 busybox:latest -o /mnt/usb/images.tar",
    note = "The archive has the layout docker save writes from Docker 25 on (an OCI image layout plus manifest.json). Environment: DOCKER_PUSHER_CACHE_DIR, DOCKER_PUSHER_COMPRESS, DOCKER_PUSHER_COMPRESS_THREADS.",
    error_code(2, "usage: the command line is wrong"),
    error_code(
        3,
        "input: the cache is unreadable or damaged, or the archive unwritable"
    )
)]
pub struct SaveArgs {
    /// images to save (reference, tag or digest)
    #[argh(positional)]
    pub images: Vec<String>,

    /// the archive to write
    #[argh(option, short = 'o')]
    pub output: String,

    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// show every blob
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// print only errors and the result line
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout
    #[argh(switch)]
    pub json: bool,

    /// compress uncompressed layers into the archive: none (default), gzip, zstd (images get OCI manifests), or auto (gzip)
    #[argh(option)]
    pub compress: Option<String>,

    /// threads compressing layers (default: one per CPU)
    #[argh(option)]
    pub compress_threads: Option<usize>,

    /// the most memory compressing may use, the whole process included (default 32M; suffixes K, M, G accepted); more lets more blocks compress at once
    #[argh(option, from_str_fn(settings::parse_size))]
    pub memory_limit: Option<u64>,
}

pub fn run_save(args: SaveArgs, env: Env) -> Result<()> {
    let verbose = settings::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = Reporter::new(verbosity(args.quiet, verbose));
    let cache = Cache::new(settings::cache_dir_setting(args.cache_dir.as_deref(), env));
    // No link to measure: `auto` makes the archive small.
    let compression = match settings::compress_setting(args.compress.as_deref(), env)? {
        Mode::None => None,
        Mode::Auto => Some(Algorithm::Gzip),
        Mode::Use(algorithm) => Some(algorithm),
    }
    .map(|algorithm| {
        Ok::<_, crate::error::Error>(SaveCompressionOptions {
            recipe: Recipe::of(algorithm),
            threads: settings::compress_threads_setting(args.compress_threads, env)?,
            memory_limit: settings::memory_limit_setting(args.memory_limit, env)?,
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
