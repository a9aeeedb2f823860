//! `push`: the flags of the push subcommand (and of the older flat form).

use argh::FromArgs;

use super::parse_size;

#[derive(FromArgs, Debug, Default)]
/// Push an image archive or a cached image to a registry (alias: ps).
#[argh(
    subcommand,
    name = "push",
    example = "docker-image-pusher push --source app.tar --target registry.example.com/team/app:1.0",
    example = "docker-image-pusher push -f app.tar -r http://127.0.0.1:5000/app:latest -u ci --password-stdin",
    example = "docker-image-pusher push --source registry.example.com/team/app:1.0 --target registry.internal/team/app:1.0",
    note = "Environment: DOCKER_PUSHER_CACHE_DIR, DOCKER_PUSHER_USERNAME, DOCKER_PUSHER_PASSWORD (or REGISTRY_USERNAME, REGISTRY_PASSWORD), DOCKER_PUSHER_MAX_CONCURRENT, DOCKER_PUSHER_ENABLE_DYNAMIC_CONCURRENCY, DOCKER_PUSHER_MIN_CONCURRENT, DOCKER_PUSHER_SMALL_FILE_CONCURRENT, DOCKER_PUSHER_LARGE_FILE_CONCURRENT, DOCKER_PUSHER_SPEED_THRESHOLD, DOCKER_PUSHER_SPEED_CHECK_INTERVAL, DOCKER_PUSHER_TIMEOUT, DOCKER_PUSHER_LARGE_LAYER_THRESHOLD, DOCKER_PUSHER_CHUNK_SIZE, DOCKER_PUSHER_RETRY_ATTEMPTS, DOCKER_PUSHER_MIN_SPEED, DOCKER_PUSHER_MIN_SPEED_WINDOW, DOCKER_PUSHER_DEADLINE, DOCKER_PUSHER_SKIP_TLS, DOCKER_PUSHER_VERBOSE, DOCKER_PUSHER_SKIP_EXISTING, DOCKER_PUSHER_COMPRESS, DOCKER_PUSHER_COMPRESS_THREADS. Credentials are also read from ~/.docker/config.json (or $DOCKER_CONFIG).",
    error_code(2, "usage error"),
    error_code(3, "bad input: unreadable, malformed or corrupt archive"),
    error_code(4, "authentication or permission failure"),
    error_code(5, "network failure"),
    error_code(6, "the registry refused the request"),
    error_code(
        130,
        "interrupted (Ctrl-C or SIGTERM); run the same command again to resume"
    )
)]
pub struct PushArgs {
    /// what to push: an archive (docker save output, an OCI archive, or either gzipped), or a cached image (name:tag or digest) when no such file exists
    #[argh(option, short = 'f')]
    pub source: String,

    /// where to push: [http[s]://]registry/repository[:tag]
    #[argh(option, short = 'r')]
    pub target: String,

    /// which image of a multi-image archive to push (tag or name:tag)
    #[argh(option)]
    pub source_tag: Option<String>,

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
    #[argh(option, from_str_fn(super::parse_min_speed))]
    pub min_speed: Option<u64>,
    /// seconds (or 30s, 2m) over which --min-speed is averaged (default 60s)
    #[argh(option, from_str_fn(super::parse_duration))]
    pub min_speed_window: Option<std::time::Duration>,
    /// stop the whole run after this long (e.g. 90m, 2h), saving what is needed to resume; exit code 130
    #[argh(option, from_str_fn(super::parse_duration))]
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

    /// upload blobs even when the registry already has them
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

    /// try to mount blobs from this repository of the same registry before uploading them (repeatable)
    #[argh(option)]
    pub mount_from: Vec<String>,
}

impl PushArgs {
    pub fn concurrency_flags(&self) -> crate::commands::ConcurrencyFlags {
        crate::commands::ConcurrencyFlags {
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
