//! `copy`: an image from one registry to another, without a file in between.
//!
//! The flags of the subcommand (the network flags twice, one set per side, spelled as
//! skopeo spells them), then running it.

use argh::FromArgs;

use super::push::{SizeFlags, upload_options};
use super::settings::{self, Env, parse_size};
use super::{Connection, ConnectionFlags, concurrency, parse_target, transfer_reporter, verbosity};
use crate::cache::state::StateDir;
use crate::error::{Error, Result};
use crate::image::Platform;
use crate::image::reference::Reference;
use crate::ops::copy::{self, CopyOptions, Ends};
use crate::ops::push::{self, PushOptions};
use crate::registry::http::retry::Deadline;

#[derive(FromArgs, Debug, Default)]
/// Copy an image from one registry to another, streaming its blobs (alias: cp).
#[argh(
    subcommand,
    name = "copy",
    example = "docker-image-pusher copy docker.io/library/nginx:1.27 registry.internal/mirror/nginx:1.27",
    example = "docker-image-pusher copy ghcr.io/org/app:2 http://127.0.0.1:5000/app:2 --platform linux/arm64",
    example = "echo \"$TOKEN\" | docker-image-pusher copy --dest-creds ci registry.a/app:1 registry.b/app:1",
    note = "A multi-platform image is copied whole (every platform, then the index) unless --platform picks one. A destination without a tag takes the source's tag (or digest). Blobs on the same registry are mounted, not copied. Credentials come from --src-creds/--dest-creds, else from ~/.docker/config.json (or $DOCKER_CONFIG); DOCKER_PUSHER_USERNAME and DOCKER_PUSHER_PASSWORD apply to the destination only. An interrupted copy continues where it stopped when run again (its upload sessions are kept in the cache directory). Environment: DOCKER_PUSHER_CACHE_DIR, DOCKER_PUSHER_MAX_CONCURRENT, DOCKER_PUSHER_TIMEOUT, DOCKER_PUSHER_RETRY_ATTEMPTS, DOCKER_PUSHER_CHUNK_SIZE, DOCKER_PUSHER_LARGE_LAYER_THRESHOLD, DOCKER_PUSHER_MIN_SPEED, DOCKER_PUSHER_MIN_SPEED_WINDOW, DOCKER_PUSHER_DEADLINE, DOCKER_PUSHER_SKIP_TLS, DOCKER_PUSHER_VERBOSE.",
    error_code(2, "usage: the command line is wrong"),
    error_code(
        3,
        "input: a blob did not match its digest, or the cache directory is unusable"
    ),
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
        "registry: a registry refused the request or answered something unusable"
    ),
    error_code(
        130,
        "stopped: Ctrl-C, SIGTERM or --deadline (run the same command again to resume)"
    )
)]
pub struct CopyArgs {
    /// the image to copy: [http[s]://]registry/repository[:tag|@digest]
    #[argh(positional)]
    pub source: String,

    /// where to copy it: [http[s]://]registry/repository[:tag]
    #[argh(positional)]
    pub destination: String,

    /// copy only this platform's image of a multi-platform source: os/arch[/variant]
    #[argh(option)]
    pub platform: Option<String>,

    /// credentials for the source registry: USER[:PASSWORD] (without the password, it is read from standard input)
    #[argh(option)]
    pub src_creds: Option<String>,

    /// credentials for the destination registry: USER[:PASSWORD] (without the password, it is read from standard input)
    #[argh(option)]
    pub dest_creds: Option<String>,

    /// allow plain HTTP to the source registry
    #[argh(switch)]
    pub src_insecure: bool,

    /// allow plain HTTP to the destination registry
    #[argh(switch)]
    pub dest_insecure: bool,

    /// trust this CA certificate (PEM) for the source registry (repeatable)
    #[argh(option)]
    pub src_ca_cert: Vec<String>,

    /// trust this CA certificate (PEM) for the destination registry (repeatable)
    #[argh(option)]
    pub dest_ca_cert: Vec<String>,

    /// do not verify the source registry's TLS certificate (insecure)
    #[argh(switch)]
    pub src_skip_tls: bool,

    /// do not verify the destination registry's TLS certificate (insecure)
    #[argh(switch)]
    pub dest_skip_tls: bool,

    /// the directory keeping the upload state an interrupted copy resumes from (default .cache, or DOCKER_PUSHER_CACHE_DIR); no blob is stored there
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// log every request and print a detailed report
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// print only errors and the final digest line
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout instead of the digest line
    #[argh(switch)]
    pub json: bool,

    /// exactly this many blobs copy at once (fixed mode); by default the tool adapts it to the link, up to 8
    #[argh(option)]
    pub max_concurrent: Option<usize>,

    /// adapt how many blobs copy at once to the measured link (the default unless --max-concurrent is given alone)
    #[argh(switch)]
    pub enable_dynamic_concurrency: bool,

    /// fewest blobs copying at once in dynamic mode (default 1)
    #[argh(option)]
    pub min_concurrent: Option<usize>,

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

    /// end a request that moves fewer than this many bytes per second over a --min-speed-window, and retry it (default 1K; 0 turns the check off)
    #[argh(option, from_str_fn(settings::parse_min_speed))]
    pub min_speed: Option<u64>,

    /// seconds (or 30s, 2m) over which --min-speed is averaged (default 60s)
    #[argh(option, from_str_fn(settings::parse_duration))]
    pub min_speed_window: Option<std::time::Duration>,

    /// stop the whole run after this long (e.g. 90m, 2h), saving what is needed to resume; exit code 130
    #[argh(option, from_str_fn(settings::parse_duration))]
    pub deadline: Option<std::time::Duration>,

    /// finish without copying when the destination tag already has this exact image
    #[argh(switch)]
    pub skip_existing: bool,

    /// upload blobs even when the destination already has them
    #[argh(switch)]
    pub force_upload: bool,

    /// check both ends, credentials and push permission, read the blobs the destination lacks, and upload nothing
    #[argh(switch)]
    pub dry_run: bool,
}

/// The variables that carry credentials: they name the destination's, as for push.
const CREDENTIAL_VARIABLES: [&str; 4] = [
    "DOCKER_PUSHER_USERNAME",
    "DOCKER_PUSHER_PASSWORD",
    "REGISTRY_USERNAME",
    "REGISTRY_PASSWORD",
];

pub fn run_copy(args: CopyArgs, env: Env) -> Result<()> {
    let verbose = settings::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = transfer_reporter(verbosity(args.quiet, verbose), env);
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let (source, source_plain) = parse_target(&args.source, args.src_insecure)?;
    let (destination, destination_plain) = parse_target(&args.destination, args.dest_insecure)?;
    let destination = destination_name(destination, &source, platform.is_some())?;
    let src_creds = args.src_creds.as_deref().map(Creds::parse).transpose()?;
    let dest_creds = args.dest_creds.as_deref().map(Creds::parse).transpose()?;
    if let (Some(Creds { password: None, .. }), Some(Creds { password: None, .. })) =
        (&src_creds, &dest_creds)
    {
        return Err(Error::usage(
            "only one of --src-creds and --dest-creds can read its password from standard input",
        )
        .hint("give the other one as USER:PASSWORD, or use the docker config for it"));
    }
    let source_env = |name: &str| {
        if CREDENTIAL_VARIABLES.contains(&name) {
            None
        } else {
            env(name)
        }
    };
    let mut source_connection = resolve_side(
        &args,
        Side {
            plain_http: source_plain,
            insecure: args.src_insecure,
            skip_tls: args.src_skip_tls,
            ca_cert: &args.src_ca_cert,
            creds: src_creds.as_ref(),
        },
        &source_env,
    )?;
    let destination_connection = resolve_side(
        &args,
        Side {
            plain_http: destination_plain,
            insecure: args.dest_insecure,
            skip_tls: args.dest_skip_tls,
            ca_cert: &args.dest_ca_cert,
            creds: dest_creds.as_ref(),
        },
        env,
    )?;
    // One stop for the whole run: Ctrl-C and the deadline end both sides.
    let stop = destination_connection.retry.stop.clone();
    source_connection.retry.stop = stop.clone();
    let deadline = (destination_connection.deadline).map(|limit| Deadline::start(limit, &stop));

    let state = StateDir::for_cache(&settings::cache_dir_setting(args.cache_dir.as_deref(), env));
    super::push::stop_uploads_on_signal(&stop, &state, &reporter)?;

    let options = CopyOptions {
        push: PushOptions::uncompressed(
            upload_options(
                SizeFlags {
                    large_layer_threshold: args.large_layer_threshold,
                    chunk_size: args.chunk_size,
                },
                args.force_upload,
                Vec::new(),
                &destination_connection,
                env,
            )?,
            concurrency::resolve(
                &crate::cli::ConcurrencyFlags {
                    max_concurrent: args.max_concurrent,
                    enable_dynamic: args.enable_dynamic_concurrency,
                    min_concurrent: args.min_concurrent,
                    ..Default::default()
                },
                env,
                super::push::DEFAULT_FIXED_CONCURRENCY,
            )?,
            args.dry_run,
            settings::switch_setting(args.skip_existing, env, "DOCKER_PUSHER_SKIP_EXISTING")?,
        ),
        platform,
    };
    let source_repository = source_connection.open(&source, &source_env, &reporter, "pull")?;
    let destination_repository =
        destination_connection.open(&destination, env, &reporter, "pull,push")?;
    let ends = Ends {
        source: &source_repository,
        source_reference: &source,
        destination: &destination_repository,
        destination_reference: &destination,
    };
    let report = copy::copy(&ends, &options, &state, &reporter).map_err(|e| match &deadline {
        Some(deadline) => deadline.explain(e),
        None => e,
    })?;
    reporter.detail(&push::resume_line(&report));
    if args.json {
        reporter.result(&serde_json::to_string(&report).unwrap_or_default());
    } else if report.dry_run {
        reporter.result(&format!(
            "dry run: {}",
            push::result_line(&destination, &report)
        ));
    } else {
        reporter.result(&push::result_line(&destination, &report));
    }
    Ok(())
}

/// One side's TLS choices and credentials: plain HTTP from the reference, then
/// `--*-insecure`, `--*-skip-tls`, `--*-ca-cert` and `--*-creds`.
struct Side<'a> {
    plain_http: bool,
    insecure: bool,
    skip_tls: bool,
    ca_cert: &'a [String],
    creds: Option<&'a Creds>,
}

fn resolve_side(args: &CopyArgs, side: Side<'_>, env: Env) -> Result<Connection> {
    let username = side.creds.map(|c| c.user.clone());
    let password = side.creds.and_then(|c| c.password.clone());
    Connection::resolve(
        ConnectionFlags {
            plain_http: side.plain_http,
            allow_plain_http: side.insecure,
            skip_tls: side.skip_tls,
            ca_cert: side.ca_cert,
            timeout: args.timeout,
            retry_attempts: args.retry_attempts,
            min_speed: args.min_speed,
            min_speed_window: args.min_speed_window,
            deadline: args.deadline,
            username: &username,
            password: &password,
            password_stdin: side.creds.is_some_and(|c| c.password.is_none()),
        },
        env,
    )
}

/// The destination as written, or, without a tag or digest, under the source's tag (or
/// its digest, for a source named by digest and copied whole).
fn destination_name(
    destination: Reference,
    source: &Reference,
    one_platform: bool,
) -> Result<Reference> {
    if destination.tag().is_some() || destination.digest().is_some() {
        return Ok(destination);
    }
    let named = match (source.tag(), source.digest()) {
        (Some(tag), _) => destination.with_tag(tag),
        // One platform out of an index has a digest of its own: tag it `latest`.
        (None, Some(digest)) if !one_platform => destination.with_digest(digest),
        _ => destination.with_tag("latest"),
    };
    named.map_err(|e| Error::usage(e.to_string()))
}

/// `USER[:PASSWORD]` as skopeo takes it.
struct Creds {
    user: String,
    password: Option<String>,
}

impl Creds {
    fn parse(text: &str) -> Result<Creds> {
        let (user, password) = match text.split_once(':') {
            Some((user, password)) => (user, Some(password.to_string())),
            None => (text, None),
        };
        if user.is_empty() {
            return Err(Error::usage(
                "credentials need a user name: USER[:PASSWORD]",
            ));
        }
        Ok(Creds {
            user: user.to_string(),
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Reference {
        Reference::parse(text).unwrap()
    }

    #[test]
    fn a_destination_without_a_tag_takes_the_source_tag_or_digest() {
        let source = reference("example.com/a/app:1.2");
        let named = destination_name(reference("registry.local/b/app"), &source, false).unwrap();
        assert_eq!(named.tag(), Some("1.2"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let by_digest = reference(&format!("example.com/a/app@{digest}"));
        let named = destination_name(reference("registry.local/b/app"), &by_digest, false).unwrap();
        assert_eq!(named.digest(), Some(digest.as_str()));
        let named = destination_name(reference("registry.local/b/app"), &by_digest, true).unwrap();
        assert_eq!(named.tag(), Some("latest"));
        let kept = destination_name(reference("registry.local/b/app:9"), &source, false).unwrap();
        assert_eq!(kept.tag(), Some("9"));
    }

    #[test]
    fn creds_split_at_the_first_colon() {
        let creds = Creds::parse("ci:pa:ss").unwrap();
        assert_eq!(
            (creds.user.as_str(), creds.password.as_deref()),
            ("ci", Some("pa:ss"))
        );
        assert!(Creds::parse("ci").unwrap().password.is_none());
        assert!(Creds::parse(":secret").is_err());
    }
}
