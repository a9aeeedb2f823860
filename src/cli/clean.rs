//! `clean`: remove images (and the blobs only they use), or everything.
//!
//! The flags of the subcommand, then running it.

use argh::FromArgs;

use super::settings::{self, Env};
use super::verbosity;
use crate::cache::Cache;
use crate::cache::clean;
use crate::error::Result;
use crate::text::plural::count;
use crate::ui::progress::{Reporter, human_bytes};

#[derive(FromArgs, Debug, Default)]
/// Remove images from the local cache, or everything (alias: c).
#[argh(
    subcommand,
    help_triggers("-h", "--help", "help"),
    name = "clean",
    example = "docker-image-pusher clean registry.example.com/team/app:1.0",
    example = "docker-image-pusher clean",
    note = "With images, removes them and every blob no other cached image uses. With none, removes every file the tool created there (files it did not create stay). Partial downloads of interrupted pulls go either way. Only a directory the tool made (oci-layout and the docker-image-pusher-cache marker) is cleaned; symlinks are never followed. Environment: DOCKER_PUSHER_CACHE_DIR.",
    error_code(2, "usage: the command line is wrong"),
    error_code(
        3,
        "input: the directory is not the tool's cache, or cannot be cleaned"
    )
)]
pub struct CleanArgs {
    /// images to remove (reference, tag or digest); none means everything
    #[argh(positional)]
    pub images: Vec<String>,

    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// show what would be removed, remove nothing
    #[argh(switch)]
    pub dry_run: bool,

    /// print only the result line
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout
    #[argh(switch)]
    pub json: bool,
}

pub fn run_clean(args: CleanArgs, env: Env) -> Result<()> {
    let reporter = Reporter::new(verbosity(args.quiet, false));
    let cache = Cache::new(settings::cache_dir_setting(args.cache_dir.as_deref(), env));
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
            "left {} docker-image-pusher did not create in {}",
            count(report.foreign_kept as u64, "entry"),
            cache.root().display()
        ));
    }
    let leftovers = match report.leftovers_removed {
        0 => String::new(),
        n => format!(" and {}", count(n as u64, "leftover partial file")),
    };
    reporter.result(&format!(
        "{}: {}, {}{leftovers}, {} {}",
        cache.root().display(),
        count(report.images.len() as u64, "image"),
        count(report.blobs_removed as u64, "blob"),
        human_bytes(report.bytes_freed),
        if report.dry_run {
            "would be freed"
        } else {
            "freed"
        }
    ));
    Ok(())
}
