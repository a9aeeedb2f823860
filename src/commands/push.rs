//! `push`: an archive to a repository.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Connection, DEFAULT_TIMEOUT_SECONDS, parse_target, verbosity};
use crate::archive::Archive;
use crate::cache::Cache;
use crate::cache::files::{Lock, LockMode};
use crate::cli::{self, Env, PushArgs};
use crate::error::{Error, Result};
use crate::image::{Artifact, BlobSource};
use crate::monitor::{self, Tuning};
use crate::progress::{Display, Reporter};
use crate::push::{self, PushOptions};
use crate::registry::transport::RetryPolicy;
use crate::scheduler::ClassCaps;
use crate::upload::UploadOptions;

pub const DEFAULT_CHUNK_SIZE: u64 = 32 << 20;
pub const DEFAULT_LARGE_LAYER_THRESHOLD: u64 = 1 << 30;
/// Blobs uploading at once when the concurrency is fixed and not given.
pub const DEFAULT_FIXED_CONCURRENCY: usize = 1;

/// The one switch for making dynamic concurrency the default. While false, it is opt-in
/// (`--enable-dynamic-concurrency`). When true, it is on unless `--max-concurrent` (or
/// `DOCKER_PUSHER_MAX_CONCURRENT`) is given without `--enable-dynamic-concurrency`, or
/// `DOCKER_PUSHER_ENABLE_DYNAMIC_CONCURRENCY=false`.
pub const DYNAMIC_BY_DEFAULT: bool = false;

pub fn run_push(args: PushArgs, env: Env) -> Result<()> {
    let verbose = cli::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let display = Display::choose(
        std::io::stderr().is_terminal(),
        env("TERM").as_deref(),
        env("NO_COLOR").as_deref(),
        env("COLUMNS").as_deref(),
    );
    let reporter = Arc::new(Reporter::with_display(
        verbosity(args.quiet, verbose),
        display,
    ));
    let concurrency = concurrency(&args, env)?;
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
        max_concurrent: concurrency.max_concurrent,
        dynamic: concurrency.dynamic,
        class_caps: concurrency.class_caps,
        dry_run: args.dry_run,
        skip_existing: cli::switch_setting(args.skip_existing, env, "DOCKER_PUSHER_SKIP_EXISTING")?,
    };

    let path = Path::new(&args.source);
    let cache = Cache::new(cli::cache_dir_setting(args.cache_dir.as_deref(), env));
    // A target without a tag is pushed as `latest`, so `latest` is also the tag that
    // picks the image from a multi-image archive; a digest target names no tag.
    let target_tag = match target.digest() {
        Some(_) => target.tag(),
        None => Some(target.tag_or_latest()),
    };
    let source = if path.exists() {
        Source::archive(path, args.source_tag.as_deref(), target_tag)?
    } else {
        Source::cached(&cache, &args.source, &reporter)?
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
    let repository = connection.open(&target, env, &reporter, "pull,push")?;
    let report = push::push(
        artifact,
        source.blobs.as_ref(),
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
            label: entry.label(),
            blobs: Box::new(Cache::new(cache.root())),
            _lock: Some(lock),
        })
    }
}

/// How many blobs upload at once, resolved from flags, environment and defaults.
#[derive(Debug, Clone, PartialEq)]
struct Concurrency {
    max_concurrent: usize,
    dynamic: Option<Tuning>,
    class_caps: ClassCaps,
}

fn concurrency(args: &PushArgs, env: Env) -> Result<Concurrency> {
    let max = cli::optional_number(args.max_concurrent, env, "DOCKER_PUSHER_MAX_CONCURRENT")?;
    let dynamic = cli::optional_switch(
        args.enable_dynamic_concurrency,
        env,
        "DOCKER_PUSHER_ENABLE_DYNAMIC_CONCURRENCY",
    )?
    .unwrap_or(DYNAMIC_BY_DEFAULT && max.is_none());
    let class_caps = ClassCaps {
        small: cap(args.small_file_concurrent, env, "small-file-concurrent")?,
        large: cap(args.large_file_concurrent, env, "large-file-concurrent")?,
    };
    if !dynamic {
        let only_dynamic = [
            (args.min_concurrent.is_some(), "--min-concurrent"),
            (args.speed_threshold.is_some(), "--speed-threshold"),
            (
                args.speed_check_interval.is_some(),
                "--speed-check-interval",
            ),
        ];
        if let Some((_, flag)) = only_dynamic.iter().find(|(given, _)| *given) {
            return Err(
                Error::usage(format!("{flag} applies to dynamic concurrency only"))
                    .hint("add --enable-dynamic-concurrency"),
            );
        }
        return Ok(Concurrency {
            max_concurrent: max.unwrap_or(DEFAULT_FIXED_CONCURRENCY).max(1),
            dynamic: None,
            class_caps,
        });
    }
    let max = max.unwrap_or(monitor::DEFAULT_MAX).max(1);
    let min = cli::optional_number(args.min_concurrent, env, "DOCKER_PUSHER_MIN_CONCURRENT")?
        .unwrap_or(monitor::DEFAULT_MIN.min(max));
    if min == 0 || min > max {
        return Err(Error::usage(format!(
            "--min-concurrent {min} must be between 1 and --max-concurrent {max}"
        )));
    }
    let speed_target =
        cli::optional_number(args.speed_threshold, env, "DOCKER_PUSHER_SPEED_THRESHOLD")?
            .map(|mb| {
                if mb.is_finite() && mb > 0.0 {
                    Ok(mb * 1_000_000.0)
                } else {
                    Err(Error::usage(format!(
                        "--speed-threshold {mb} is not a positive number of MB/s"
                    )))
                }
            })
            .transpose()?;
    let check_interval = cli::number_setting(
        args.speed_check_interval,
        env,
        "DOCKER_PUSHER_SPEED_CHECK_INTERVAL",
        monitor::DEFAULT_CHECK_INTERVAL,
    )?;
    if !(0.5..=600.0).contains(&check_interval) {
        return Err(Error::usage(format!(
            "--speed-check-interval {check_interval} must be between 0.5 and 600 seconds"
        )));
    }
    Ok(Concurrency {
        max_concurrent: max,
        dynamic: Some(Tuning::new(min, max, check_interval, speed_target)),
        class_caps,
    })
}

/// A size-class cap: `--NAME` or `DOCKER_PUSHER_NAME`, at least 1.
fn cap(flag: Option<usize>, env: Env, name: &str) -> Result<Option<usize>> {
    let variable = format!(
        "DOCKER_PUSHER_{}",
        name.replace('-', "_").to_ascii_uppercase()
    );
    match cli::optional_number(flag, env, &variable)? {
        Some(0) => Err(Error::usage(format!("--{name} must be at least 1"))),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> PushArgs {
        let mut all = vec!["-f", "a.tar", "-r", "r.io/x:1"];
        all.extend_from_slice(extra);
        <PushArgs as argh::FromArgs>::from_args(&["push"], &all).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn fixed_concurrency_by_default() {
        let resolved = concurrency(&args(&[]), &no_env).unwrap();
        assert_eq!(
            resolved,
            Concurrency {
                max_concurrent: DEFAULT_FIXED_CONCURRENCY,
                dynamic: if DYNAMIC_BY_DEFAULT {
                    Some(Tuning::new(1, 8, 2.0, None))
                } else {
                    None
                },
                class_caps: ClassCaps::default(),
            }
        );
        let fixed = concurrency(&args(&["--max-concurrent", "4"]), &no_env).unwrap();
        assert_eq!((fixed.max_concurrent, fixed.dynamic), (4, None));
    }

    #[test]
    fn dynamic_flags_and_environment() {
        let resolved = concurrency(
            &args(&[
                "--enable-dynamic-concurrency",
                "--min-concurrent",
                "2",
                "--speed-threshold",
                "12.5",
                "--speed-check-interval",
                "3",
                "--small-file-concurrent",
                "6",
            ]),
            &no_env,
        )
        .unwrap();
        assert_eq!(resolved.max_concurrent, 8);
        assert_eq!(
            resolved.dynamic,
            Some(Tuning::new(2, 8, 3.0, Some(12_500_000.0)))
        );
        assert_eq!(
            resolved.class_caps,
            ClassCaps {
                small: Some(6),
                large: None
            }
        );
        let env = |name: &str| {
            match name {
                "DOCKER_PUSHER_ENABLE_DYNAMIC_CONCURRENCY" => Some("true"),
                "DOCKER_PUSHER_MAX_CONCURRENT" => Some("6"),
                "DOCKER_PUSHER_MIN_CONCURRENT" => Some("3"),
                "DOCKER_PUSHER_LARGE_FILE_CONCURRENT" => Some("1"),
                "DOCKER_PUSHER_SPEED_CHECK_INTERVAL" => Some("1.5"),
                _ => None,
            }
            .map(str::to_string)
        };
        let resolved = concurrency(&args(&[]), &env).unwrap();
        assert_eq!(resolved.max_concurrent, 6);
        assert_eq!(resolved.dynamic, Some(Tuning::new(3, 6, 1.5, None)));
        assert_eq!(resolved.class_caps.large, Some(1));
    }

    #[test]
    fn inconsistent_settings_are_usage_errors() {
        for bad in [
            &["--min-concurrent", "2"][..],
            &["--enable-dynamic-concurrency", "--min-concurrent", "9"],
            &["--enable-dynamic-concurrency", "--speed-threshold", "0"],
            &[
                "--enable-dynamic-concurrency",
                "--speed-check-interval",
                "0",
            ],
            &["--large-file-concurrent", "0"],
        ] {
            let error = concurrency(&args(bad), &no_env).unwrap_err();
            assert_eq!(error.class, crate::error::Class::Usage, "{bad:?}");
        }
    }
}
