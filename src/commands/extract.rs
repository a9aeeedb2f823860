//! `extract`: an archive's images into the cache.

use std::path::Path;

use super::verbosity;
use crate::archive::Archive;
use crate::cache::Cache;
use crate::cli::{self, Env, ExtractArgs};
use crate::error::{Error, Result};
use crate::extract::{self, ExtractOptions};
use crate::progress::{Reporter, human_bytes};

pub fn run_extract(args: ExtractArgs, env: Env) -> Result<()> {
    let verbose = cli::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
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
    if !path.exists() {
        return Err(Error::input(format!("{} does not exist", path.display()))
            .hint("check the -f/--file path"));
    }
    let mut archive = Archive::open(path)?;
    let cache = Cache::new(cli::cache_dir_setting(args.cache_dir.as_deref(), env));
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
        "copied {} blobs ({}), {} already cached",
        report.blobs_copied,
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
