//! `extract`: an archive's images into the cache.
//!
//! The flags of the subcommand, then running it.

use std::path::Path;

use argh::FromArgs;

use super::settings::{self, Env};
use super::verbosity;
use crate::archive::Archive;
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::ops::extract::{self, ExtractOptions};
use crate::text::plural::count;
use crate::ui::progress::{Reporter, human_bytes};

#[derive(FromArgs, Debug, Default)]
/// Copy the images of an archive into the local cache, verifying every blob (alias: e).
#[argh(
    subcommand,
    help_triggers("-h", "--help", "help"),
    name = "extract",
    example = "docker-image-pusher extract -f app.tar",
    example = "docker-image-pusher extract -f images.tar --source-tag app:1.0 --cache-dir /srv/cache",
    note = "Reads every format push reads: docker save (any version), OCI archives, either gzipped. Every image of the archive is extracted unless --source-tag picks one. Environment: DOCKER_PUSHER_CACHE_DIR, DOCKER_PUSHER_VERBOSE.",
    error_code(2, "usage: the command line is wrong"),
    error_code(
        3,
        "input: the archive is unreadable, malformed or corrupt, or the cache unwritable"
    )
)]
pub struct ExtractArgs {
    /// the archive: docker save output, an OCI archive, or either gzipped
    #[argh(option, short = 'f')]
    pub file: String,

    /// extract only the image with this tag or name:tag
    #[argh(option)]
    pub source_tag: Option<String>,

    /// cache the image under this name (registry/repository:tag) instead of the archive's
    #[argh(option)]
    pub name: Option<String>,

    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// show every blob
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// print only errors and the result lines
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout
    #[argh(switch)]
    pub json: bool,
}

pub fn run_extract(args: ExtractArgs, env: Env) -> Result<()> {
    let verbose = settings::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = Reporter::new(verbosity(args.quiet, verbose));
    let name = args
        .name
        .as_deref()
        .map(|n| {
            crate::cache::index::cache_name(n).ok_or_else(|| {
                Error::usage(format!("--name \"{n}\" is not an image reference")).hint(
                    "use registry/repository:tag, for example registry.example.com/team/app:1.0",
                )
            })
        })
        .transpose()?;
    let path = Path::new(&args.file);
    if !crate::archive::volume::exists(path) {
        return Err(Error::input(format!("{} does not exist", path.display()))
            .hint("check the -f/--file path"));
    }
    announce_part_check(path, &reporter);
    let mut archive = Archive::open(path)?;
    let cache = Cache::new(settings::cache_dir_setting(args.cache_dir.as_deref(), env));
    reporter.info(&format!(
        "extracting {} ({}) into {}",
        path.display(),
        archive.format().describe(),
        cache.root().display()
    ));
    let options = ExtractOptions {
        only: args.source_tag.clone(),
        name,
    };
    let report = extract::extract(&mut archive, &cache, &options, &reporter)?;
    if args.json {
        reporter.result(&serde_json::to_string(&report).unwrap_or_default());
        return Ok(());
    }
    reporter.info(&format!(
        "copied {} ({}), {} already cached",
        count(report.blobs_copied as u64, "blob"),
        human_bytes(report.bytes_copied),
        report.blobs_present
    ));
    for image in &report.images {
        let label = match image.names.as_slice() {
            [] => "<unnamed>".to_string(),
            names => names.join(", "),
        };
        reporter.result(&format!("{label}: digest: {}", image.digest));
    }
    Ok(())
}

/// Checking the parts of a split archive reads all of it: say so before the wait.
pub fn announce_part_check(path: &Path, reporter: &Reporter) {
    if let Ok(Some(base)) = crate::archive::volume::split_base(path) {
        reporter.info(&format!(
            "checking the parts of {} against {}",
            base.display(),
            crate::archive::volume::parts_path(&base).display()
        ));
    }
}
