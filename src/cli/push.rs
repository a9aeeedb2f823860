//! `push`: an archive to a repository.
//!
//! The flags of the subcommand (and of the older flat form), then running it.

use std::path::Path;
use std::sync::Arc;

use argh::FromArgs;

use super::settings::parse_size;
use super::settings::{self, Env};
use super::{Connection, ConnectionFlags, concurrency, parse_target, transfer_reporter, verbosity};
use crate::archive::Archive;
use crate::cache::Cache;
use crate::cache::files::{Lock, LockMode};
use crate::cache::state::StateDir;
use crate::error::{Class, Error, Result};
use crate::image::reference::Reference;
use crate::image::{Artifact, BlobSource};
use crate::interrupt;
use crate::ops::bundle;
use crate::ops::push::{self, PushOptions};
use crate::registry::http::retry::Deadline;
use crate::transfer::upload::UploadOptions;
use crate::ui::progress::{Reporter, Verbosity};

#[derive(FromArgs, Debug, Default)]
/// Push an image archive or a cached image to a registry (alias: ps).
#[argh(
    subcommand,
    help_triggers("-h", "--help", "help"),
    name = "push",
    example = "docker-image-pusher push --source app.tar --target registry.example.com/team/app:1.0",
    example = "docker-image-pusher push -s app.tar -r http://127.0.0.1:5000/app:latest -u ci --password-stdin",
    example = "docker-image-pusher push --source registry.example.com/team/app:1.0 --target registry.internal/team/app:1.0",
    example = "docker-image-pusher push --source bundle.tar --all --target registry.internal/mirror",
    note = "Environment: DOCKER_PUSHER_CACHE_DIR, DOCKER_PUSHER_USERNAME, DOCKER_PUSHER_PASSWORD (or REGISTRY_USERNAME, REGISTRY_PASSWORD), DOCKER_PUSHER_MAX_CONCURRENT, DOCKER_PUSHER_ENABLE_DYNAMIC_CONCURRENCY, DOCKER_PUSHER_MIN_CONCURRENT, DOCKER_PUSHER_SMALL_FILE_CONCURRENT, DOCKER_PUSHER_LARGE_FILE_CONCURRENT, DOCKER_PUSHER_SPEED_THRESHOLD, DOCKER_PUSHER_SPEED_CHECK_INTERVAL, DOCKER_PUSHER_TIMEOUT, DOCKER_PUSHER_LARGE_LAYER_THRESHOLD, DOCKER_PUSHER_CHUNK_SIZE, DOCKER_PUSHER_RETRY_ATTEMPTS, DOCKER_PUSHER_MIN_SPEED, DOCKER_PUSHER_MIN_SPEED_WINDOW, DOCKER_PUSHER_DEADLINE, DOCKER_PUSHER_SKIP_TLS, DOCKER_PUSHER_VERBOSE, DOCKER_PUSHER_SKIP_EXISTING, DOCKER_PUSHER_COMPRESS, DOCKER_PUSHER_COMPRESS_THREADS. Credentials are also read from ~/.docker/config.json (or $DOCKER_CONFIG).",
    error_code(2, "usage: the command line is wrong"),
    error_code(3, "input: the archive or cache is unreadable, malformed or corrupt"),
    error_code(
        4,
        "authentication: credentials missing, rejected or lacking permission"
    ),
    error_code(
        5,
        "network: unreachable, DNS, TLS, timeout or a cut connection (run again to resume)"
    ),
    error_code(
        6,
        "registry: the registry refused the request or answered something unusable"
    ),
    error_code(
        130,
        "stopped: Ctrl-C, SIGTERM or --deadline (run the same command again to resume)"
    )
)]
pub struct PushArgs {
    /// what to push: an archive (docker save output, an OCI archive, or either gzipped), or a cached image (name:tag or digest; a short name like postgres:13 finds it whatever registry it came from) when no such file exists; -f and --file mean the same
    #[argh(option, short = 's')]
    pub source: Option<String>,

    /// the older spelling of --source, kept out of the help
    #[argh(option, short = 'f', hidden_help)]
    pub file: Option<String>,

    /// where to push: [http[s]://]registry/repository[:tag]
    #[argh(option, short = 'r')]
    pub target: String,

    /// which image of a multi-image archive to push (tag or name:tag)
    #[argh(option)]
    pub source_tag: Option<String>,

    /// push every image of the archive (or of the cache directory given as --source) to REGISTRY[/PREFIX] given as --target, each under its own repository path
    #[argh(switch)]
    pub all: bool,

    /// the cache directory to push cached images from, which also keeps the upload state an interrupted push resumes from (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// registry username
    #[argh(option, short = 'u')]
    pub username: Option<String>,

    /// registry password (visible to other users; prefer --password-stdin)
    #[argh(option, short = 'p')]
    pub password: Option<String>,

    /// read the password from standard input
    #[argh(switch)]
    pub password_stdin: bool,

    /// log every request and print a detailed report
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// print only errors and the final digest line
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout instead of the digest line
    #[argh(switch)]
    pub json: bool,

    /// exactly this many blobs upload at once (fixed mode); by default the tool adapts it to the link, up to 8, and with --enable-dynamic-concurrency this is that upper bound
    #[argh(option)]
    pub max_concurrent: Option<usize>,

    /// adapt how many blobs upload at once to the measured link (the default unless --max-concurrent is given alone)
    #[argh(switch)]
    pub enable_dynamic_concurrency: bool,

    /// fewest blobs uploading at once in dynamic mode (default 1)
    #[argh(option)]
    pub min_concurrent: Option<usize>,

    /// at most this many blobs under 100 MiB upload at once (default: no cap of their own)
    #[argh(option)]
    pub small_file_concurrent: Option<usize>,

    /// at most this many blobs over 1 GiB upload at once (default: no cap of their own)
    #[argh(option)]
    pub large_file_concurrent: Option<usize>,

    /// in dynamic mode, add no workers once the push moves this many MB/s (default: none, go as fast as the link allows)
    #[argh(option)]
    pub speed_threshold: Option<f64>,

    /// in dynamic mode, seconds of steady measurement at a concurrency level before judging it (default 2)
    #[argh(option)]
    pub speed_check_interval: Option<f64>,

    /// retries for a failed request before giving up (default 3)
    #[argh(option)]
    pub retry_attempts: Option<u32>,

    /// blobs larger than this many bytes are uploaded in chunks (default 1073741824; suffixes K, M, G accepted)
    #[argh(option, from_str_fn(parse_size))]
    pub large_layer_threshold: Option<u64>,

    /// size of each chunk in bytes (default 33554432; suffixes K, M, G accepted)
    #[argh(option, from_str_fn(parse_size))]
    pub chunk_size: Option<u64>,

    /// network inactivity timeout in seconds (default 120)
    #[argh(option, short = 't')]
    pub timeout: Option<u64>,

    /// end a request that moves fewer than this many bytes per second over a --min-speed-window, and retry it (default 1K; 0 turns the check off; suffixes K, M accepted)
    #[argh(option, from_str_fn(settings::parse_min_speed))]
    pub min_speed: Option<u64>,
    /// seconds (or 30s, 2m) over which --min-speed is averaged (default 60s)
    #[argh(option, from_str_fn(settings::parse_duration))]
    pub min_speed_window: Option<std::time::Duration>,
    /// stop the whole run after this long (e.g. 90m, 2h), saving what is needed to resume; exit code 130
    #[argh(option, from_str_fn(settings::parse_duration))]
    pub deadline: Option<std::time::Duration>,
    /// do not verify the registry's TLS certificate (insecure)
    #[argh(switch)]
    pub skip_tls: bool,

    /// trust this CA certificate (PEM) in addition to the system's
    #[argh(option)]
    pub ca_cert: Vec<String>,

    /// allow plain HTTP: reach a target without https:// over it; with https://, let the registry move the transfer onto it (warned)
    #[argh(switch)]
    pub insecure: bool,

    /// finish without uploading when the target tag already has this exact image
    #[argh(switch)]
    pub skip_existing: bool,

    /// send every blob's bytes, even those the registry has or could mount from another of its repositories
    #[argh(switch)]
    pub force_upload: bool,

    /// check the archive, credentials and push permission, and report what would be uploaded
    #[argh(switch)]
    pub dry_run: bool,

    /// compress uncompressed layers on the way: none (default: layers keep their bytes), gzip, zstd (OCI manifests only; a Docker manifest becomes OCI), or auto (gzip when the link is slower than the compressor, always for quay.io)
    #[argh(option)]
    pub compress: Option<String>,

    /// threads compressing layers, shared by all uploads (default: one per CPU)
    #[argh(option)]
    pub compress_threads: Option<usize>,

    /// the most memory compressing may use, the whole process included (default 32M; suffixes K, M, G accepted); more lets more blocks compress at once
    #[argh(option, from_str_fn(parse_size))]
    pub memory_limit: Option<u64>,

    /// try to mount blobs from this repository of the same registry before uploading them (repeatable)
    #[argh(option)]
    pub mount_from: Vec<String>,
}

impl PushArgs {
    pub fn concurrency_flags(&self) -> crate::cli::ConcurrencyFlags {
        crate::cli::ConcurrencyFlags {
            max_concurrent: self.max_concurrent,
            enable_dynamic: self.enable_dynamic_concurrency,
            min_concurrent: self.min_concurrent,
            small_file_concurrent: self.small_file_concurrent,
            large_file_concurrent: self.large_file_concurrent,
            speed_threshold: self.speed_threshold,
            speed_check_interval: self.speed_check_interval,
        }
    }
}

pub const DEFAULT_CHUNK_SIZE: u64 = 32 << 20;
pub const DEFAULT_LARGE_LAYER_THRESHOLD: u64 = 1 << 30;
/// Blobs uploading at once when the concurrency is fixed and not given.
pub const DEFAULT_FIXED_CONCURRENCY: usize = 1;

pub fn run_push(args: PushArgs, env: Env) -> Result<()> {
    source_setting(&args)?;
    if args.all {
        return super::push_all::run_push_all(&args, env);
    }
    let verbose = settings::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = transfer_reporter(verbosity(args.quiet, verbose), env);
    let concurrency =
        concurrency::resolve(&args.concurrency_flags(), env, DEFAULT_FIXED_CONCURRENCY)?;
    let (target, plain_http) = parse_target(&args.target, args.insecure)?;
    let connection = Connection::resolve(connection_flags(&args, plain_http), env)?;
    let deadline =
        (connection.deadline).map(|limit| Deadline::start(limit, &connection.retry.stop));
    push_resolved(&args, env, &reporter, concurrency, &target, &connection).map_err(|e| {
        match &deadline {
            Some(deadline) => deadline.explain(e),
            None => e,
        }
    })
}

/// The network flags of a push; `plain_http` comes from the target's scheme.
pub(super) fn connection_flags(args: &PushArgs, plain_http: bool) -> ConnectionFlags<'_> {
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
    }
}

/// `--large-layer-threshold` and `--chunk-size` as given.
pub(super) struct SizeFlags {
    pub large_layer_threshold: Option<u64>,
    pub chunk_size: Option<u64>,
}

/// How blobs go up, from flags, environment and defaults (push and copy share it).
pub(super) fn upload_options(
    sizes: SizeFlags,
    force: bool,
    mount_from: Vec<String>,
    connection: &Connection,
    env: Env,
) -> Result<UploadOptions> {
    Ok(UploadOptions {
        large_layer_threshold: settings::in_range(
            settings::size_setting(
                sizes.large_layer_threshold,
                env,
                "DOCKER_PUSHER_LARGE_LAYER_THRESHOLD",
                DEFAULT_LARGE_LAYER_THRESHOLD,
            )?,
            "--large-layer-threshold",
            settings::limits::LARGE_LAYER_THRESHOLD,
        )?,
        chunk_size: settings::in_range(
            settings::size_setting(
                sizes.chunk_size,
                env,
                "DOCKER_PUSHER_CHUNK_SIZE",
                DEFAULT_CHUNK_SIZE,
            )?,
            "--chunk-size",
            settings::limits::CHUNK_SIZE,
        )?,
        force,
        mount_from,
        body_limit: Default::default(),
        retry: connection.retry.clone(),
        stop: connection.retry.stop.clone(),
    })
}

/// Ctrl-C and SIGTERM stop uploads at a safe point; the sessions to resume are in `state`.
pub(super) fn stop_uploads_on_signal(
    stop: &interrupt::StopSignal,
    state: &StateDir,
    reporter: &Reporter,
) -> Result<()> {
    let notice = (reporter.verbosity() > Verbosity::Quiet).then(|| {
        "stopping after the chunks in flight and saving the upload state (press Ctrl-C again to stop at once)".to_string()
    });
    let farewell = format!(
        "interrupted; open uploads are saved in {} (run the same command again to resume)",
        state.root().display()
    );
    interrupt::install(stop, notice, farewell)
        .map_err(|e| Error::usage(format!("cannot install the Ctrl-C handler: {e}")))
}

/// The push once its settings are resolved; the deadline's clock is already running.
fn push_resolved(
    args: &PushArgs,
    env: Env,
    reporter: &Arc<Reporter>,
    concurrency: crate::ops::batch::Concurrency,
    target: &Reference,
    connection: &Connection,
) -> Result<()> {
    if args.force_upload && !args.mount_from.is_empty() {
        return Err(
            Error::usage("--force-upload and --mount-from contradict each other")
                .hint("a mount sends no bytes: drop one of them"),
        );
    }
    let options = PushOptions {
        upload: upload_options(
            SizeFlags {
                large_layer_threshold: args.large_layer_threshold,
                chunk_size: args.chunk_size,
            },
            args.force_upload,
            args.mount_from.clone(),
            connection,
            env,
        )?,
        concurrency,
        dry_run: args.dry_run,
        skip_existing: settings::switch_setting(
            args.skip_existing,
            env,
            "DOCKER_PUSHER_SKIP_EXISTING",
        )?,
        compress: settings::compress_setting(args.compress.as_deref(), env)?,
        compress_threads: settings::compress_threads_setting(args.compress_threads, env)?,
        memory_limit: settings::memory_limit_setting(args.memory_limit, env)?,
    };

    let source = source_setting(args)?;
    let path = Path::new(source);
    let cache_dir = settings::cache_dir_setting(args.cache_dir.as_deref(), env);
    let cache = Cache::new(&cache_dir);
    let state = StateDir::for_cache(&cache_dir);
    stop_uploads_on_signal(&options.upload.stop, &state, reporter)?;
    // A target without a tag is pushed as `latest`, so `latest` is also the tag that
    // picks the image from a multi-image archive; a digest target names no tag.
    let target_tag = match target.digest() {
        Some(_) => target.tag(),
        None => Some(target.tag_or_latest()),
    };
    let source = if crate::archive::volume::exists(path) {
        Source::archive(
            path,
            args.source_tag.as_deref(),
            target_tag,
            &cache,
            reporter,
        )?
    } else {
        Source::cached(&cache, source, reporter)?
    };
    let artifact = &source.artifact;
    reporter.info(&format!(
        "pushing {} ({}, {}, {}) to {target}",
        source.label,
        source.kind,
        crate::text::plural::count(artifact.blobs.len() as u64, "blob"),
        crate::ui::progress::human_bytes(artifact.total_blob_bytes())
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

/// `--source`, given once under any of its spellings (`-s`, `-f`, `--file`).
pub(super) fn source_setting(args: &PushArgs) -> Result<&str> {
    match (&args.source, &args.file) {
        (Some(source), None) | (None, Some(source)) => Ok(source),
        (Some(_), Some(_)) => Err(Error::usage(
            "the source is given twice (as -s/--source and as -f/--file)",
        )
        .hint("give the archive or cached image once")),
        (None, None) => Err(Error::usage("no --source given")
            .hint("name an archive or a cached image with -s/--source")),
    }
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
    /// An archive, whole or split; an incremental bundle is completed from the cache, or
    /// refused before anything is uploaded when the cache lacks what it left out.
    fn archive(
        path: &Path,
        source_tag: Option<&str>,
        target_tag: Option<&str>,
        cache: &Cache,
        reporter: &Reporter,
    ) -> Result<Source> {
        super::extract::announce_part_check(path, reporter);
        let mut archive = Archive::open(path)?;
        let artifact = archive.select(source_tag, target_tag)?;
        let kind = archive.format().describe();
        let label = path.display().to_string();
        if archive.excluded().is_empty() {
            return Ok(Source {
                artifact,
                kind,
                label,
                blobs: Box::new(archive),
                _lock: None,
            });
        }
        let lock = cache.lock(LockMode::Shared, &|| {
            reporter.info("waiting for another process cleaning the cache")
        })?;
        bundle::require_excluded(&archive, cache, &[(label.clone(), &artifact)])?;
        Ok(Source {
            artifact,
            kind: "incremental bundle, completed from the cache",
            label,
            blobs: Box::new(bundle::CompletedBundle {
                archive,
                cache: Cache::new(cache.root()),
            }),
            _lock: Some(lock),
        })
    }

    fn cached(cache: &Cache, name: &str, reporter: &Reporter) -> Result<Source> {
        let lock = cache.lock(LockMode::Shared, &|| {
            reporter.info("waiting for another process cleaning the cache")
        })?;
        let index = cache.read_index()?;
        // Not found at all: say that both a file and a cached image were looked for,
        // keeping the nearest cached names the lookup found.
        let found = index
            .find_one(name, cache.root())
            .map_err(|e| match e.class {
                Class::Input => Error::input(format!(
                    "{name} is neither a file nor an image in the cache {}",
                    cache.root().display()
                ))
                .hint(format!(
                    "check the --source path; {}",
                    e.hint
                        .as_deref()
                        .unwrap_or("pull or extract the image into the cache first")
                )),
                _ => e,
            })?;
        let entry = &index.manifests[found];
        let artifact = cache.artifact(entry)?;
        Ok(Source {
            artifact,
            kind: "cached image",
            label: crate::text::sanitize::sanitize(&entry.label()),
            blobs: Box::new(Cache::new(cache.root())),
            _lock: Some(lock),
        })
    }
}
