//! `push`: an archive to a repository.

use std::path::Path;

use super::{Connection, ConnectionFlags, concurrency, parse_target, transfer_reporter, verbosity};
use crate::archive::Archive;
use crate::cache::Cache;
use crate::cache::files::{Lock, LockMode};
use crate::cli::{self, Env, PushArgs};
use crate::error::{Error, Result};
use crate::image::{Artifact, BlobSource};
use crate::interrupt;
use crate::progress::{Reporter, Verbosity};
use crate::push::{self, PushOptions};
use crate::reference::Reference;
use crate::registry::retry::Deadline;
use crate::state::StateDir;
use crate::upload::UploadOptions;
use std::sync::Arc;

pub const DEFAULT_CHUNK_SIZE: u64 = 32 << 20;
pub const DEFAULT_LARGE_LAYER_THRESHOLD: u64 = 1 << 30;
/// Blobs uploading at once when the concurrency is fixed and not given.
pub const DEFAULT_FIXED_CONCURRENCY: usize = 1;

pub fn run_push(args: PushArgs, env: Env) -> Result<()> {
    let verbose = cli::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = transfer_reporter(verbosity(args.quiet, verbose), env);
    let concurrency =
        concurrency::resolve(&args.concurrency_flags(), env, DEFAULT_FIXED_CONCURRENCY)?;
    let (target, plain_http) = parse_target(&args.target, args.insecure)?;
    let connection = Connection::resolve(
        ConnectionFlags {
            plain_http,
            allow_plain_http: args.insecure,
            skip_tls: args.skip_tls,
            ca_cert: &args.ca_cert,
            timeout: args.timeout,
            retry_attempts: args.retry_attempts,
            min_speed: args.min_speed,
            min_speed_window: args.min_speed_window,
            deadline: args.deadline,
            username: &args.username,
            password: &args.password,
            password_stdin: args.password_stdin,
        },
        env,
    )?;
    let deadline =
        (connection.deadline).map(|limit| Deadline::start(limit, &connection.retry.stop));
    push_resolved(&args, env, &reporter, concurrency, &target, &connection).map_err(|e| {
        match &deadline {
            Some(deadline) => deadline.explain(e),
            None => e,
        }
    })
}

/// The push once its settings are resolved; the deadline's clock is already running.
fn push_resolved(
    args: &PushArgs,
    env: Env,
    reporter: &Arc<Reporter>,
    concurrency: crate::transfer::Concurrency,
    target: &Reference,
    connection: &Connection,
) -> Result<()> {
    let options = PushOptions {
        upload: UploadOptions {
            large_layer_threshold: cli::in_range(
                cli::size_setting(
                    args.large_layer_threshold,
                    env,
                    "DOCKER_PUSHER_LARGE_LAYER_THRESHOLD",
                    DEFAULT_LARGE_LAYER_THRESHOLD,
                )?,
                "--large-layer-threshold",
                cli::limits::LARGE_LAYER_THRESHOLD,
            )?,
            chunk_size: cli::in_range(
                cli::size_setting(
                    args.chunk_size,
                    env,
                    "DOCKER_PUSHER_CHUNK_SIZE",
                    DEFAULT_CHUNK_SIZE,
                )?,
                "--chunk-size",
                cli::limits::CHUNK_SIZE,
            )?,
            force: args.force_upload,
            mount_from: args.mount_from.clone(),
            retry: connection.retry.clone(),
            stop: connection.retry.stop.clone(),
        },
        concurrency,
        dry_run: args.dry_run,
        skip_existing: cli::switch_setting(args.skip_existing, env, "DOCKER_PUSHER_SKIP_EXISTING")?,
        compress: cli::compress_setting(args.compress.as_deref(), env)?,
        compress_threads: cli::compress_threads_setting(args.compress_threads, env)?,
    };

    let path = Path::new(&args.source);
    let cache_dir = cli::cache_dir_setting(args.cache_dir.as_deref(), env);
    let cache = Cache::new(&cache_dir);
    let state = StateDir::for_cache(&cache_dir);
    let notice = (reporter.verbosity() > Verbosity::Quiet).then(|| {
        "stopping after the chunks in flight and saving the upload state (press Ctrl-C again to stop at once)".to_string()
    });
    let farewell = format!(
        "interrupted; open uploads are saved in {} (run the same command again to resume)",
        state.root().display()
    );
    interrupt::install(&options.upload.stop, notice, farewell)
        .map_err(|e| Error::usage(format!("cannot install the Ctrl-C handler: {e}")))?;
    // A target without a tag is pushed as `latest`, so `latest` is also the tag that
    // picks the image from a multi-image archive; a digest target names no tag.
    let target_tag = match target.digest() {
        Some(_) => target.tag(),
        None => Some(target.tag_or_latest()),
    };
    let source = if path.exists() {
        Source::archive(path, args.source_tag.as_deref(), target_tag)?
    } else {
        Source::cached(&cache, &args.source, reporter)?
    };
    let artifact = &source.artifact;
    reporter.info(&format!(
        "pushing {} ({}, {} blobs, {}) to {target}",
        source.label,
        source.kind,
        artifact.blobs.len(),
        crate::progress::human_bytes(artifact.total_blob_bytes())
    ));
    for note in &artifact.notes {
        reporter.warn(note);
    }
    let repository = connection.open(target, env, reporter, "pull,push")?;
    let report = push::push(
        artifact,
        source.blobs.as_ref(),
        &repository,
        target,
        &options,
        (!options.dry_run).then_some(&state),
        reporter,
    )?;
    reporter.detail(&push::resume_line(&report));
    if args.json {
        let json = serde_json::to_string(&report).unwrap_or_default();
        reporter.result(&json);
    } else if report.dry_run {
        reporter.result(&format!("dry run: {}", push::result_line(target, &report)));
    } else {
        reporter.result(&push::result_line(target, &report));
    }
    Ok(())
}

/// What push reads: an archive file, or an image in the cache (held under the shared cache
/// lock, so a concurrent `clean` cannot remove its blobs mid-push).
struct Source {
    artifact: Artifact,
    blobs: Box<dyn BlobSource>,
    label: String,
    kind: &'static str,
    _lock: Option<Lock>,
}

impl Source {
    fn archive(path: &Path, source_tag: Option<&str>, target_tag: Option<&str>) -> Result<Source> {
        let mut archive = Archive::open(path)?;
        let artifact = archive.select(source_tag, target_tag)?;
        Ok(Source {
            artifact,
            kind: archive.format().describe(),
            label: path.display().to_string(),
            blobs: Box::new(archive),
            _lock: None,
        })
    }

    fn cached(cache: &Cache, name: &str, reporter: &Reporter) -> Result<Source> {
        let lock = cache.lock(LockMode::Shared, &|| {
            reporter.info("waiting for another process cleaning the cache")
        })?;
        let index = cache.read_index()?;
        let found = index.find_one(name, cache.root()).map_err(|e| {
            if index.find(name).is_empty() {
                Error::input(format!(
                    "{name} is neither a file nor an image in the cache {}",
                    cache.root().display()
                ))
                .hint("check the --source path, or pull or extract the image into the cache first")
            } else {
                e
            }
        })?;
        let entry = &index.manifests[found];
        let artifact = cache.artifact(entry)?;
        Ok(Source {
            artifact,
            kind: "cached image",
            label: crate::sanitize::sanitize(&entry.label()),
            blobs: Box::new(Cache::new(cache.root())),
            _lock: Some(lock),
        })
    }
}
