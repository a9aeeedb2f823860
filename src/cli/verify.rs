//! `verify`: re-hash the cache and report damage.
//!
//! The flags of the subcommand, then running it.

use argh::FromArgs;

use super::settings::{self, Env};
use super::verbosity;
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::ops::verify;
use crate::text::plural::count;
use crate::ui::progress::{Reporter, human_bytes};

#[derive(FromArgs, Debug, Default)]
/// Re-hash the cache's blobs and report any damage.
#[argh(
    subcommand,
    help_triggers("-h", "--help", "help"),
    name = "verify",
    example = "docker-image-pusher verify",
    example = "docker-image-pusher verify registry.example.com/team/app:1.0 --cache-dir /mnt/usb/cache",
    note = "Exits 0 when everything is intact, 3 when a blob is damaged or an image incomplete. Environment: DOCKER_PUSHER_CACHE_DIR.",
    error_code(2, "usage: the command line is wrong"),
    error_code(3, "input: damage found, or the cache is unreadable")
)]
pub struct VerifyArgs {
    /// images to check (reference, tag or digest); none means every blob in the cache
    #[argh(positional)]
    pub images: Vec<String>,

    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// delete damaged blobs, so the next pull or extract stores good copies
    #[argh(switch)]
    pub remove_damaged: bool,

    /// how many blobs to hash at once (default: the number of CPUs, at most 4)
    #[argh(option)]
    pub max_concurrent: Option<usize>,

    /// print only problems and the result line
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout
    #[argh(switch)]
    pub json: bool,
}

pub fn run_verify(args: VerifyArgs, env: Env) -> Result<()> {
    let reporter = Reporter::new(verbosity(args.quiet, false));
    let cache = Cache::new(settings::cache_dir_setting(args.cache_dir.as_deref(), env));
    let workers = match args.max_concurrent {
        Some(n) => settings::in_range(n, "--max-concurrent", settings::limits::CONCURRENT)?,
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
            "{}: {} ({}) intact",
            cache.root().display(),
            count(report.blobs_checked as u64, "blob"),
            human_bytes(report.bytes_checked)
        ));
    }
    if report.is_clean() {
        return Ok(());
    }
    let mut problems = Vec::new();
    if !report.damaged.is_empty() {
        let damaged = report.damaged.len() as u64;
        problems.push(count(damaged, "damaged blob"));
    }
    if !report.incomplete.is_empty() {
        let incomplete = report.incomplete.len() as u64;
        problems.push(format!("{} with images", count(incomplete, "problem")));
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
