//! `save`: cached images into one archive.
//!
//! The flags of the subcommand, then running it.

use std::path::Path;

use argh::FromArgs;

use super::settings::{self, Env, parse_size};
use super::verbosity;
use crate::cache::Cache;
use crate::compress::{Algorithm, Mode, Recipe};
use crate::error::Result;
use crate::ops::save::{self, BundleOptions, SaveCompressionOptions};
use crate::text::plural::count;
use crate::ui::progress::{Reporter, human_bytes};

#[derive(FromArgs, Debug, Default)]
/// Write cached images to one archive that docker load, skopeo and extract read.
#[argh(
    subcommand,
    help_triggers("-h", "--help", "help"),
    name = "save",
    example = "docker-image-pusher save registry.example.com/team/app:1.0 busybox:latest -o /mnt/usb/images.tar",
    example = "docker-image-pusher save app:2.0 -o /mnt/usb/app.tar --split 4000M",
    example = "docker-image-pusher save app:2.0 -o /mnt/usb/app-update.tar --exclude-from far-side-blobs.txt",
    note = "The archive has the layout docker save writes from Docker 25 on (an OCI image layout plus manifest.json). With --split the same archive is cut into FILE.001, FILE.002, ... (cat FILE.[0-9]* > FILE joins them) and FILE.parts lists their sizes and sha256; push and extract read the parts in place. With --exclude-from the archive is an incremental bundle that docker load cannot read: extract it into a cache holding the layers it leaves out. Environment: DOCKER_PUSHER_CACHE_DIR, DOCKER_PUSHER_COMPRESS, DOCKER_PUSHER_COMPRESS_THREADS.",
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

    /// cut the archive into parts FILE.001, FILE.002, ... of at most this size (e.g. 4000M for FAT32; at least 1M)
    #[argh(option, from_str_fn(parse_size))]
    pub split: Option<u64>,

    /// leave out the layers this file names: a digest list from `list --blobs`, or an earlier bundle (repeatable)
    #[argh(option)]
    pub exclude_from: Vec<String>,

    /// the most memory compressing may use, the whole process included (default 32M; suffixes K, M, G accepted); more lets more blocks compress at once
    #[argh(option, from_str_fn(settings::parse_size))]
    pub memory_limit: Option<u64>,
}

/// Parts smaller than this would only be a typo for a larger size.
const MIN_SPLIT: u64 = 1 << 20;

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
    if let Some(size) = args.split
        && size < MIN_SPLIT
    {
        return Err(crate::error::Error::usage(format!(
            "--split {size} is too small: parts must be at least 1M"
        )));
    }
    let bundle = BundleOptions {
        split: args.split,
        exclude_from: args.exclude_from.clone(),
    };
    let report = save::save(
        &cache,
        &args.images,
        Path::new(&args.output),
        compression,
        &bundle,
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
            "compressed {} with {}: {} -> {}",
            count(c.layers_compressed as u64, "layer"),
            c.algorithm,
            human_bytes(c.bytes_uncompressed),
            human_bytes(c.bytes_compressed)
        ));
    }
    if report.excluded.as_ref().is_some_and(|e| e.layers == 0) {
        reporter.info(
            "the far side has none of these layers: this is a full archive docker load reads",
        );
    } else if let Some(excluded) = &report.excluded {
        reporter.info(&format!(
            "left out {} ({}) the far side has: docker load cannot read this bundle",
            count(excluded.layers as u64, "layer"),
            human_bytes(excluded.bytes)
        ));
    }
    let output = match report.parts.as_slice() {
        [] => report.output.clone(),
        parts => format!(
            "{} ({}, listed in {}.parts)",
            report.output,
            count(parts.len() as u64, "part"),
            report.output
        ),
    };
    reporter.result(&format!(
        "{output}: {}, {}, {}",
        count(report.images.len() as u64, "image"),
        count(report.blobs as u64, "blob"),
        human_bytes(report.bytes)
    ));
    Ok(())
}
