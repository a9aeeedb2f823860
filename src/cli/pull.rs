//! `pull`: a registry image into the cache.
//!
//! The flags of the subcommand, then running it.

use argh::FromArgs;

use super::settings::{self, Env};
use super::{Connection, ConnectionFlags, concurrency, parse_target, transfer_reporter, verbosity};
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::image::Platform;
use crate::ops::pull::{self, PullOptions};
use crate::registry::http::retry::Deadline;

#[derive(FromArgs, Debug, Default)]
/// Download an image from a registry into the local cache (alias: p).
#[argh(
    subcommand,
    help_triggers("-h", "--help", "help"),
    name = "pull",
    example = "docker-image-pusher pull -i registry.example.com/team/app:1.0",
    example = "docker-image-pusher pull -i busybox:latest --platform linux/arm64 --cache-dir /mnt/usb/cache",
    note = "Images are named in the cache by their full reference (docker.io/library/busybox:latest). An interrupted pull resumes where it stopped when run again. Environment: DOCKER_PUSHER_CACHE_DIR, DOCKER_PUSHER_USERNAME, DOCKER_PUSHER_PASSWORD, DOCKER_PUSHER_MAX_CONCURRENT, DOCKER_PUSHER_TIMEOUT, DOCKER_PUSHER_RETRY_ATTEMPTS, DOCKER_PUSHER_MIN_SPEED, DOCKER_PUSHER_MIN_SPEED_WINDOW, DOCKER_PUSHER_DEADLINE, DOCKER_PUSHER_SKIP_TLS, DOCKER_PUSHER_VERBOSE.",
    error_code(2, "usage: the command line is wrong"),
    error_code(3, "input: the cache is unwritable or damaged, or too small"),
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
pub struct PullArgs {
    /// the image to pull: [http[s]://]registry/repository[:tag|@digest]
    #[argh(positional)]
    pub image_positional: Option<String>,

    /// the image to pull (same as the positional argument)
    #[argh(option, short = 'i')]
    pub image: Option<String>,

    /// platform to take from a multi-platform image: os/arch[/variant] (default: this machine's)
    #[argh(option)]
    pub platform: Option<String>,

    /// keep every platform of a multi-platform image (the whole index)
    #[argh(switch)]
    pub all_platforms: bool,

    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
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

    /// log every request
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// print only errors and the final digest line
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout instead of the digest line
    #[argh(switch)]
    pub json: bool,

    /// exactly this many blobs download at once (fixed mode); by default the tool adapts it to the link, up to 8, and with --enable-dynamic-concurrency this is that upper bound
    #[argh(option)]
    pub max_concurrent: Option<usize>,

    /// adapt how many blobs download at once to the measured link (the default unless --max-concurrent is given alone)
    #[argh(switch)]
    pub enable_dynamic_concurrency: bool,

    /// fewest blobs downloading at once in dynamic mode (default 1)
    #[argh(option)]
    pub min_concurrent: Option<usize>,

    /// at most this many blobs under 100 MiB download at once (default: no cap of their own)
    #[argh(option)]
    pub small_file_concurrent: Option<usize>,

    /// at most this many blobs over 1 GiB download at once (default: no cap of their own)
    #[argh(option)]
    pub large_file_concurrent: Option<usize>,

    /// in dynamic mode, add no workers once the pull moves this many MB/s (default: none)
    #[argh(option)]
    pub speed_threshold: Option<f64>,

    /// in dynamic mode, seconds of steady measurement at a concurrency level before judging it (default 2)
    #[argh(option)]
    pub speed_check_interval: Option<f64>,

    /// retries for a failed request before giving up (default 3)
    #[argh(option)]
    pub retry_attempts: Option<u32>,

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

    /// re-hash the blobs already in the cache instead of trusting their size; damaged ones are downloaded again
    #[argh(switch)]
    pub verify: bool,
}

impl PullArgs {
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

pub const DEFAULT_MAX_CONCURRENT: usize = 3;

pub fn run_pull(args: PullArgs, env: Env) -> Result<()> {
    let verbose = settings::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = transfer_reporter(verbosity(args.quiet, verbose), env);
    let image = match (&args.image, &args.image_positional) {
        (Some(_), Some(_)) => {
            return Err(Error::usage(
                "name the image once, with -i or as an argument",
            ));
        }
        (Some(image), None) | (None, Some(image)) => image.clone(),
        (None, None) => {
            return Err(Error::usage("which image? pass it with -i IMAGE")
                .hint("for example: docker-image-pusher pull -i busybox:latest"));
        }
    };
    if args.platform.is_some() && args.all_platforms {
        return Err(Error::usage(
            "--platform and --all-platforms cannot be used together",
        ));
    }
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let (reference, plain_http) = parse_target(&image, args.insecure)?;
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
    let options = PullOptions {
        platform,
        all_platforms: args.all_platforms,
        concurrency: concurrency::resolve(&args.concurrency_flags(), env, DEFAULT_MAX_CONCURRENT)?,
        retry: connection.retry.clone(),
        verify_cached: args.verify,
    };
    let deadline =
        (connection.deadline).map(|limit| Deadline::start(limit, &connection.retry.stop));
    let explain = |e| match &deadline {
        Some(deadline) => deadline.explain(e),
        None => e,
    };
    let cache = Cache::new(settings::cache_dir_setting(args.cache_dir.as_deref(), env));
    let repository = connection.open(&reference, env, &reporter, "pull")?;
    let report =
        pull::pull(&repository, &reference, &cache, &options, &reporter).map_err(explain)?;
    if args.json {
        reporter.result(&serde_json::to_string(&report).unwrap_or_default());
    } else {
        reporter.result(&format!(
            "{}: digest: {} size: {}",
            report.reference, report.digest, report.manifest_size
        ));
    }
    Ok(())
}
