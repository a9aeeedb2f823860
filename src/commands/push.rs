//! `push`: an archive to a repository.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Connection, DEFAULT_TIMEOUT_SECONDS, parse_target, verbosity};
use crate::archive::Archive;
use crate::cli::{self, Env, PushArgs};
use crate::error::{Error, Result};
use crate::interrupt::{self, StopSignal};
use crate::progress::{Reporter, Verbosity};
use crate::push::{self, PushOptions};
use crate::registry::transport::RetryPolicy;
use crate::state::StateDir;
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
            mount_from: args.mount_from.clone(),
            retry: RetryPolicy {
                attempts: connection.retry_attempts,
                ..RetryPolicy::default()
            },
            stop: StopSignal::new(),
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

    let state = StateDir::for_cache(&cli::cache_dir_setting(args.cache_dir.as_deref(), env));
    let notice = (reporter.verbosity() > Verbosity::Quiet).then(|| {
        "stopping after the chunks in flight and saving the upload state (press Ctrl-C again to stop at once)".to_string()
    });
    let farewell = format!(
        "interrupted; open uploads are saved in {} (run the same command again to resume)",
        state.root().display()
    );
    interrupt::install(&options.upload.stop, notice, farewell)
        .map_err(|e| Error::usage(format!("cannot install the Ctrl-C handler: {e}")))?;

    let path = Path::new(&args.source);
    if !path.exists() {
        return Err(Error::input(format!("{} does not exist", path.display()))
            .hint("check the --source path"));
    }
    let mut archive = Archive::open(path)?;
    let artifact = archive.select(args.source_tag.as_deref(), target.tag())?;
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
        (!options.dry_run).then_some(&state),
        &reporter,
    )?;
    reporter.detail(&push::resume_line(&report));
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
