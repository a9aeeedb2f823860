//! `pull`: a registry image into the cache.

use std::sync::Arc;
use std::time::Duration;

use super::{Connection, DEFAULT_TIMEOUT_SECONDS, parse_target, verbosity};
use crate::cache::Cache;
use crate::cli::{self, Env, PullArgs};
use crate::error::{Error, Result};
use crate::image::Platform;
use crate::progress::Reporter;
use crate::pull::{self, PullOptions};
use crate::registry::transport::RetryPolicy;

pub const DEFAULT_MAX_CONCURRENT: usize = 3;

pub fn run_pull(args: PullArgs, env: Env) -> Result<()> {
    let verbose = cli::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = Arc::new(Reporter::new(verbosity(args.quiet, verbose)));
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
    let retry_attempts =
        cli::number_setting(args.retry_attempts, env, "DOCKER_PUSHER_RETRY_ATTEMPTS", 3)?;
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
        retry_attempts,
        username: args.username.clone(),
        password: args.password.clone(),
        password_stdin: args.password_stdin,
    };
    let options = PullOptions {
        platform,
        all_platforms: args.all_platforms,
        max_concurrent: cli::number_setting(
            args.max_concurrent,
            env,
            "DOCKER_PUSHER_MAX_CONCURRENT",
            DEFAULT_MAX_CONCURRENT,
        )?
        .max(1),
        retry: RetryPolicy {
            attempts: retry_attempts,
            ..RetryPolicy::default()
        },
    };
    let cache = Cache::new(cli::cache_dir_setting(args.cache_dir.as_deref(), env));
    let repository = connection.open(&reference, env, &reporter, "pull")?;
    let report = pull::pull(&repository, &reference, &cache, &options, &reporter)?;
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
