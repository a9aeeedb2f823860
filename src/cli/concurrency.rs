//! Concurrency settings shared by the commands that transfer blobs (push, pull): fixed or
//! dynamic, size-class caps, resolved from flags and `DOCKER_PUSHER_*` variables.

use super::settings::{self, Env};
use crate::error::{Error, Result};
use crate::ops::batch::Concurrency;
use crate::pool::monitor::{self, Tuning};
use crate::pool::scheduler::ClassCaps;

/// The one switch for making dynamic concurrency the default. While false, it is opt-in
/// (`--enable-dynamic-concurrency`). When true, it is on unless `--max-concurrent` (or
/// `DOCKER_PUSHER_MAX_CONCURRENT`) is given without `--enable-dynamic-concurrency`, or
/// `DOCKER_PUSHER_ENABLE_DYNAMIC_CONCURRENCY=false`.
pub const DYNAMIC_BY_DEFAULT: bool = true;

/// The concurrency flags as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct ConcurrencyFlags {
    pub max_concurrent: Option<usize>,
    pub enable_dynamic: bool,
    pub min_concurrent: Option<usize>,
    pub small_file_concurrent: Option<usize>,
    pub large_file_concurrent: Option<usize>,
    pub speed_threshold: Option<f64>,
    pub speed_check_interval: Option<f64>,
}

/// How many transfers run at once, resolved from flags, environment and defaults;
/// `default_fixed` is the command's own fixed concurrency.
pub fn resolve(args: &ConcurrencyFlags, env: Env, default_fixed: usize) -> Result<Concurrency> {
    let max = settings::optional_number(args.max_concurrent, env, "DOCKER_PUSHER_MAX_CONCURRENT")?
        .map(|n| settings::in_range(n, "--max-concurrent", settings::limits::CONCURRENT))
        .transpose()?;
    let dynamic = settings::optional_switch(
        args.enable_dynamic,
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
            max: max.unwrap_or(default_fixed).max(1),
            dynamic: None,
            class_caps,
        });
    }
    let max = max.unwrap_or(monitor::DEFAULT_MAX).max(1);
    let min = settings::optional_number(args.min_concurrent, env, "DOCKER_PUSHER_MIN_CONCURRENT")?
        .unwrap_or(monitor::DEFAULT_MIN.min(max));
    if min == 0 || min > max {
        return Err(Error::usage(format!(
            "--min-concurrent {min} must be between 1 and --max-concurrent {max}"
        )));
    }
    let speed_target = settings::optional_number(
        args.speed_threshold,
        env,
        "DOCKER_PUSHER_SPEED_THRESHOLD",
    )?
    .map(|mb| {
        let most = settings::limits::SPEED_THRESHOLD_MB;
        if mb.is_finite() && mb > 0.0 && mb <= most {
            Ok(mb * 1_000_000.0)
        } else {
            Err(Error::usage(format!(
                "--speed-threshold {mb} is out of range: use a positive number of MB/s up to {most}"
            )))
        }
    })
    .transpose()?;
    let check_interval = settings::number_setting(
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
        max,
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
    settings::optional_number(flag, env, &variable)?
        .map(|n| settings::in_range(n, &format!("--{name}"), settings::limits::CONCURRENT))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::PushArgs;

    const DEFAULT_FIXED: usize = 1;

    fn args(extra: &[&str]) -> ConcurrencyFlags {
        let mut all = vec!["-f", "a.tar", "-r", "r.io/x:1"];
        all.extend_from_slice(extra);
        <PushArgs as argh::FromArgs>::from_args(&["push"], &all)
            .unwrap()
            .concurrency_flags()
    }

    fn concurrency(flags: &ConcurrencyFlags, env: Env) -> Result<Concurrency> {
        resolve(flags, env, DEFAULT_FIXED)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn dynamic_by_default_and_fixed_when_max_concurrent_is_given() {
        let resolved = concurrency(&args(&[]), &no_env).unwrap();
        assert_eq!(
            resolved,
            if DYNAMIC_BY_DEFAULT {
                Concurrency {
                    max: monitor::DEFAULT_MAX,
                    dynamic: Some(Tuning::new(1, monitor::DEFAULT_MAX, 2.0, None)),
                    class_caps: ClassCaps::default(),
                }
            } else {
                Concurrency::fixed(DEFAULT_FIXED)
            }
        );
        let off = |name: &str| {
            (name == "DOCKER_PUSHER_ENABLE_DYNAMIC_CONCURRENCY").then(|| "false".to_string())
        };
        assert_eq!(
            concurrency(&args(&[]), &off).unwrap(),
            Concurrency::fixed(DEFAULT_FIXED)
        );
        let fixed = concurrency(&args(&["--max-concurrent", "4"]), &no_env).unwrap();
        assert_eq!((fixed.max, fixed.dynamic), (4, None));
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
        assert_eq!(resolved.max, 8);
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
        assert_eq!(resolved.max, 6);
        assert_eq!(resolved.dynamic, Some(Tuning::new(3, 6, 1.5, None)));
        assert_eq!(resolved.class_caps.large, Some(1));
    }

    #[test]
    fn inconsistent_settings_are_usage_errors() {
        for bad in [
            &["--max-concurrent", "2", "--min-concurrent", "1"][..],
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
