//! `pull`: a registry image into the cache.

use super::{Connection, ConnectionFlags, concurrency, parse_target, transfer_reporter, verbosity};
use crate::cache::Cache;
use crate::cli::{self, Env, PullArgs};
use crate::error::{Error, Result};
use crate::image::Platform;
use crate::pull::{self, PullOptions};
use crate::registry::retry::Deadline;

pub const DEFAULT_MAX_CONCURRENT: usize = 3;

pub fn run_pull(args: PullArgs, env: Env) -> Result<()> {
    let verbose = cli::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
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
    let cache = Cache::new(cli::cache_dir_setting(args.cache_dir.as_deref(), env));
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
