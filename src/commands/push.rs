//! `push`: an archive to a repository.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Connection, DEFAULT_TIMEOUT_SECONDS, parse_target, verbosity};
use crate::archive::Archive;
use crate::cli::{self, Env, PushArgs};
use crate::error::{Error, Result};
use crate::progress::Reporter;
use crate::push::{self, PushOptions};
use crate::registry::transport::RetryPolicy;
use crate::upload::UploadOptions;

pub const DEFAULT_CHUNK_SIZE: u64 = 32 << 20;
pub const DEFAULT_LARGE_LAYER_THRESHOLD: u64 = 1 << 30;

pub fn run_push(args: PushArgs, env: Env) -> Result<()> {
    let verbose = cli::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = Arc::new(Reporter::new(verbosity(args.quiet, verbose)));
    let (target, plain_http) = parse_target(&args.target, args.insecure)?;
    let connection = Connection {
        plain_http,
        skip_tls: cli::switch_setting(args.skip_tls, env, "DOCKER_PUSHER_SKIP_TLS")?,
        ca_certs: args.ca_cert.clone(),
        timeout: Duration::from_secs(
            cli::number_setting(
                args.timeout,
                env,
                "DOCKER_PUSHER_TIMEOUT",
                DEFAULT_TIMEOUT_SECONDS,
            )?
            .max(1),
        ),
        retry_attempts: cli::number_setting(
            args.retry_attempts,
            env,
            "DOCKER_PUSHER_RETRY_ATTEMPTS",
            3,
        )?,
        username: args.username.clone(),
        password: args.password.clone(),
        password_stdin: args.password_stdin,
    };
    let options = PushOptions {
        upload: UploadOptions {
            large_layer_threshold: cli::size_setting(
                args.large_layer_threshold,
                env,
                "DOCKER_PUSHER_LARGE_LAYER_THRESHOLD",
                DEFAULT_LARGE_LAYER_THRESHOLD,
            )?,
            chunk_size: cli::size_setting(
                args.chunk_size,
                env,
                "DOCKER_PUSHER_CHUNK_SIZE",
                DEFAULT_CHUNK_SIZE,
            )?,
            force: args.force_upload,
            mount_from: Vec::new(),
            retry: RetryPolicy {
                attempts: connection.retry_attempts,
                ..RetryPolicy::default()
            },
        },
        max_concurrent: cli::number_setting(
            args.max_concurrent,
            env,
            "DOCKER_PUSHER_MAX_CONCURRENT",
            1usize,
        )?
        .max(1),
        dry_run: args.dry_run,
        skip_existing: cli::switch_setting(args.skip_existing, env, "DOCKER_PUSHER_SKIP_EXISTING")?,
    };

    let path = Path::new(&args.source);
    if !path.exists() {
        return Err(Error::input(format!("{} does not exist", path.display()))
            .hint("check the --source path"));
    }
    let mut archive = Archive::open(path)?;
    // A target without a tag is pushed as `latest`, so `latest` is also the tag that
    // picks the image from a multi-image archive; a digest target names no tag.
    let target_tag = match target.digest() {
        Some(_) => target.tag(),
        None => Some(target.tag_or_latest()),
    };
    let artifact = archive.select(args.source_tag.as_deref(), target_tag)?;
    reporter.info(&format!(
        "pushing {} ({}, {} blobs, {}) to {target}",
        path.display(),
        archive.format().describe(),
        artifact.blobs.len(),
        crate::progress::human_bytes(artifact.total_blob_bytes())
    ));
    for note in &artifact.notes {
        reporter.warn(note);
    }
    let repository = connection.open(&target, env, &reporter, "pull,push")?;
    let report = push::push(
        &artifact,
        &archive,
        &repository,
        &target,
        &options,
        &reporter,
    )?;
    if args.json {
        let json = serde_json::to_string(&report).unwrap_or_default();
        reporter.result(&json);
    } else if report.dry_run {
        reporter.result(&format!("dry run: {}", push::result_line(&target, &report)));
    } else {
        reporter.result(&push::result_line(&target, &report));
    }
    Ok(())
}
