//! Settings from the command line and the environment: the older flat form (`-r URL -f FILE`
//! means push), subcommand aliases, sizes, speeds and durations, and merging flags with
//! `DOCKER_PUSHER_*` environment variables (a flag always beats the environment).

use crate::error::{Error, Result};

/// Parses byte sizes like `1073741824`, `512M`, `1G`, `64MiB`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("\"{text}\" is not a size in bytes"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "\"{text}\" has an unknown size unit (use K, M, G or T)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("\"{text}\" is not a usable size"))
}

/// What numeric settings may be: beyond these a value is a typo or an attack, and would
/// spawn a million threads, allocate a terabyte or wait for years.
pub mod limits {
    pub const CONCURRENT: (usize, usize) = (1, 64);
    pub const COMPRESS_THREADS: (usize, usize) = (1, 256);
    pub const RETRY_ATTEMPTS: (u32, u32) = (0, 100);
    pub const TIMEOUT_SECONDS: (u64, u64) = (1, 86_400);
    pub const CHUNK_SIZE: (u64, u64) = (512, 4 << 30);
    pub const LARGE_LAYER_THRESHOLD: (u64, u64) = (1, 1 << 40);
    pub const MEMORY_LIMIT: (u64, u64) = (1, 1 << 40);
    pub const SPEED_THRESHOLD_MB: f64 = 100_000.0;
}

/// Refuses a setting outside `(min, max)` with a usage error naming the allowed range.
pub fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    value: T,
    flag: &str,
    (min, max): (T, T),
) -> Result<T> {
    if value >= min && value <= max {
        return Ok(value);
    }
    Err(Error::usage(format!(
        "{flag} {value} is out of range: use {min} to {max}"
    )))
}

/// `--min-speed`: bytes per second like `--chunk-size` (`512`, `1K`, `2M`); `0` turns the
/// check off. Above 1 GiB/s no link could keep it.
pub fn parse_min_speed(text: &str) -> std::result::Result<u64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    parse_size(text)
        .ok()
        .filter(|speed| *speed <= 1 << 30)
        .ok_or_else(|| format!("\"{text}\" is not a speed between 0 (off) and 1G bytes/s"))
}

/// `--deadline` and `--min-speed-window`: `90`, `30s`, `45m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    crate::registry::http::retry::parse_duration(text)
}

/// A duration setting: the flag, else the environment variable, else none.
pub fn duration_setting(
    flag: Option<std::time::Duration>,
    env: Env,
    name: &str,
) -> Result<Option<std::time::Duration>> {
    if flag.is_some() {
        return Ok(flag);
    }
    env(name)
        .map(|text| parse_duration(&text).map_err(|e| Error::usage(format!("{name}: {e}"))))
        .transpose()
}

/// Subcommand aliases users know from the earlier versions.
fn canonical_subcommand(name: &str) -> Option<&'static str> {
    match name {
        "push" | "ps" => Some("push"),
        "pull" | "p" => Some("pull"),
        "extract" | "e" => Some("extract"),
        "list" | "l" | "ls" => Some("list"),
        "clean" | "c" => Some("clean"),
        "save" => Some("save"),
        "copy" | "cp" => Some("copy"),
        "verify" => Some("verify"),
        _ => None,
    }
}

/// Long flags of the earlier flat form, renamed in the subcommand form.
fn modern_flag(flag: &str) -> &str {
    match flag {
        "--repository-url" => "--target",
        "--file" => "--source",
        "--concurrency" | "-j" => "--max-concurrent",
        "--retry" => "--retry-attempts",
        "--force" => "--force-upload",
        "-n" => "--dry-run",
        "-k" => "--skip-tls",
        "-c" => "--chunk-size",
        other => other,
    }
}

/// Turns the process arguments into subcommand form: resolves aliases and maps the
/// flat form (arguments starting with a flag) onto `push`.
pub fn normalize_args(args: &[String]) -> Vec<String> {
    let Some(first) = args.first() else {
        return Vec::new();
    };
    if let Some(name) = canonical_subcommand(first) {
        return std::iter::once(name.to_string())
            .chain(args[1..].iter().cloned())
            .collect();
    }
    let flat = first.starts_with('-')
        && !matches!(
            first.as_str(),
            "--help" | "-h" | "help" | "--version" | "-V"
        );
    if !flat {
        return args.to_vec();
    }
    let mut out = vec!["push".to_string()];
    out.extend(args.iter().map(|a| match a.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => format!("{}={value}", modern_flag(flag)),
        _ => modern_flag(a).to_string(),
    }));
    out
}

/// Reads the environment; a function so tests can supply their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The cache directory: the flag, else `DOCKER_PUSHER_CACHE_DIR`, else `.cache`.
pub fn cache_dir_setting(flag: Option<&str>, env: Env) -> std::path::PathBuf {
    flag.map(str::to_string)
        .or_else(|| env(crate::cache::ENV_DIR))
        .unwrap_or_else(|| crate::cache::DEFAULT_DIR.to_string())
        .into()
}

/// A numeric setting: the flag, else the environment variable, else the default.
pub fn number_setting<T: std::str::FromStr + Copy>(
    flag: Option<T>,
    env: Env,
    name: &str,
    default: T,
) -> Result<T> {
    if let Some(value) = flag {
        return Ok(value);
    }
    match env(name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| Error::usage(format!("{name}=\"{text}\" is not a valid number"))),
    }
}

pub fn size_setting(flag: Option<u64>, env: Env, name: &str, default: u64) -> Result<u64> {
    if let Some(value) = flag {
        return Ok(value);
    }
    match env(name) {
        None => Ok(default),
        Some(text) => parse_size(&text).map_err(|e| Error::usage(format!("{name}: {e}"))),
    }
}

/// A numeric setting without a default: the flag, else the environment variable, else none.
pub fn optional_number<T: std::str::FromStr + Copy>(
    flag: Option<T>,
    env: Env,
    name: &str,
) -> Result<Option<T>> {
    if flag.is_some() {
        return Ok(flag);
    }
    env(name)
        .map(|text| {
            text.trim()
                .parse()
                .map_err(|_| Error::usage(format!("{name}=\"{text}\" is not a valid number")))
        })
        .transpose()
}

/// `--compress` (or `DOCKER_PUSHER_COMPRESS`), `none` when neither is given.
pub fn compress_setting(flag: Option<&str>, env: Env) -> Result<crate::compress::Mode> {
    match flag
        .map(str::to_string)
        .or_else(|| env("DOCKER_PUSHER_COMPRESS"))
    {
        Some(text) => crate::compress::Mode::parse(&text),
        None => Ok(crate::compress::Mode::None),
    }
}

/// `--compress-threads` (or `DOCKER_PUSHER_COMPRESS_THREADS`): at least 1, one per CPU
/// by default.
pub fn compress_threads_setting(flag: Option<usize>, env: Env) -> Result<usize> {
    match optional_number(flag, env, "DOCKER_PUSHER_COMPRESS_THREADS")? {
        Some(n) => in_range(n, "--compress-threads", limits::COMPRESS_THREADS),
        None => Ok(crate::compress::Compressor::default_threads()),
    }
}

/// `--memory-limit` (or `DOCKER_PUSHER_MEMORY_LIMIT`): the most memory a compressing push
/// or save may use, 32M by default; below the room for one block it cannot compress.
pub fn memory_limit_setting(flag: Option<u64>, env: Env) -> Result<u64> {
    use crate::compress::budget::{DEFAULT_LIMIT, MIN_LIMIT};
    let limit = size_setting(flag, env, "DOCKER_PUSHER_MEMORY_LIMIT", DEFAULT_LIMIT)?;
    if limit < MIN_LIMIT {
        let given = if limit % (1 << 20) == 0 {
            format!("{}M", limit >> 20)
        } else {
            limit.to_string()
        };
        return Err(Error::usage(format!(
            "--memory-limit {given} is too small: compressing needs at least {}M",
            MIN_LIMIT.div_ceil(1 << 20)
        )));
    }
    in_range(limit, "--memory-limit", limits::MEMORY_LIMIT)
}

/// A switch: on when given, else when the environment variable says true.
pub fn switch_setting(flag: bool, env: Env, name: &str) -> Result<bool> {
    Ok(optional_switch(flag, env, name)?.unwrap_or(false))
}

/// A switch that can also be turned off explicitly: `Some(true)` when given or the
/// environment says true, `Some(false)` when the environment says false, else `None`.
pub fn optional_switch(flag: bool, env: Env, name: &str) -> Result<Option<bool>> {
    if flag {
        return Ok(Some(true));
    }
    match env(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(Some(true)),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(Some(false)),
        Some(v) => {
            Err(Error::usage(format!("{name}=\"{v}\" is not a boolean")).hint("use true or false"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use argh::FromArgs;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flat_form_means_push_with_modern_names() {
        let args = normalize_args(&strings(&[
            "-r",
            "https://r.example.com/a:1",
            "-f",
            "x.tar",
            "--concurrency",
            "4",
            "--file=y",
        ]));
        assert_eq!(
            args,
            strings(&[
                "push",
                "-r",
                "https://r.example.com/a:1",
                "-f",
                "x.tar",
                "--max-concurrent",
                "4",
                "--source=y"
            ])
        );
        let args = normalize_args(&strings(&[
            "--repository-url",
            "r.example.com/a",
            "--file",
            "x.tar",
        ]));
        assert_eq!(
            args,
            strings(&["push", "--target", "r.example.com/a", "--source", "x.tar"])
        );
    }

    #[test]
    fn aliases_and_help_pass_through() {
        assert_eq!(normalize_args(&strings(&["ps", "-f", "x"]))[0], "push");
        assert_eq!(normalize_args(&strings(&["--help"])), strings(&["--help"]));
        assert_eq!(
            normalize_args(&strings(&["pull", "x"])),
            strings(&["pull", "x"])
        );
        for (alias, name) in [
            ("p", "pull"),
            ("e", "extract"),
            ("l", "list"),
            ("ls", "list"),
            ("c", "clean"),
        ] {
            assert_eq!(normalize_args(&strings(&[alias]))[0], name);
        }
    }

    #[test]
    fn cache_dir_comes_from_flag_then_environment_then_default() {
        let env =
            |name: &str| (name == "DOCKER_PUSHER_CACHE_DIR").then(|| "/env/cache".to_string());
        let none = |_: &str| None;
        assert_eq!(
            cache_dir_setting(Some("/flag"), &env),
            std::path::PathBuf::from("/flag")
        );
        assert_eq!(
            cache_dir_setting(None, &env),
            std::path::PathBuf::from("/env/cache")
        );
        assert_eq!(
            cache_dir_setting(None, &none),
            std::path::PathBuf::from(".cache")
        );
    }

    #[test]
    fn flags_beat_environment_which_beats_defaults() {
        let env = |name: &str| match name {
            "N" => Some("8".to_string()),
            "BAD" => Some("x".to_string()),
            "ON" => Some("true".to_string()),
            _ => None,
        };
        assert_eq!(number_setting(Some(2usize), &env, "N", 1).unwrap(), 2);
        assert_eq!(number_setting(None, &env, "N", 1usize).unwrap(), 8);
        assert_eq!(number_setting(None, &env, "MISSING", 1usize).unwrap(), 1);
        assert!(number_setting::<usize>(None, &env, "BAD", 1).is_err());
        assert!(switch_setting(false, &env, "ON").unwrap());
        assert!(!switch_setting(false, &env, "MISSING").unwrap());
        assert!(switch_setting(false, &env, "BAD").is_err());
        assert_eq!(optional_number::<usize>(None, &env, "N").unwrap(), Some(8));
        assert_eq!(
            optional_number::<usize>(Some(3), &env, "N").unwrap(),
            Some(3)
        );
        assert_eq!(
            optional_number::<usize>(None, &env, "MISSING").unwrap(),
            None
        );
        assert!(optional_number::<f64>(None, &env, "BAD").is_err());
        let off = |name: &str| (name == "OFF").then(|| "no".to_string());
        assert_eq!(optional_switch(false, &off, "OFF").unwrap(), Some(false));
        assert_eq!(optional_switch(true, &off, "OFF").unwrap(), Some(true));
        assert_eq!(optional_switch(false, &off, "MISSING").unwrap(), None);
    }

    #[test]
    fn a_memory_limit_below_one_block_is_refused_naming_the_minimum() {
        let none = |_: &str| None;
        assert_eq!(memory_limit_setting(None, &none).unwrap(), 32 << 20);
        assert_eq!(
            memory_limit_setting(Some(512 << 20), &none).unwrap(),
            512 << 20
        );
        let error = memory_limit_setting(Some(8 << 20), &none).unwrap_err();
        assert_eq!(error.class, crate::error::Class::Usage);
        assert_eq!(
            error.message,
            "--memory-limit 8M is too small: compressing needs at least 20M"
        );
        let env = |_: &str| Some("64M".to_string());
        assert_eq!(memory_limit_setting(None, &env).unwrap(), 64 << 20);
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn speeds_and_durations_are_checked() {
        assert_eq!(parse_min_speed("0"), Ok(0));
        assert_eq!(parse_min_speed("1K"), Ok(1024));
        assert!(parse_min_speed("2G").is_err());
        assert!(parse_min_speed("fast").is_err());
        let env = |name: &str| match name {
            "D" => Some("2h".to_string()),
            "BAD" => Some("forever".to_string()),
            _ => None,
        };
        let two_hours = std::time::Duration::from_secs(7200);
        assert_eq!(duration_setting(None, &env, "D").unwrap(), Some(two_hours));
        assert_eq!(duration_setting(None, &env, "MISSING").unwrap(), None);
        assert!(duration_setting(None, &env, "BAD").is_err());
        let cli = Cli::from_args(
            &["docker-image-pusher"],
            &["pull", "x", "--deadline", "1000000000000h"],
        );
        assert!(cli.is_err(), "an absurd deadline is a usage error");
    }

    #[test]
    fn argh_parses_the_push_surface() {
        let cli = Cli::from_args(
            &["docker-image-pusher"],
            &[
                "push",
                "-f",
                "a.tar",
                "-r",
                "r.io/x:1",
                "-t",
                "5",
                "--chunk-size",
                "8M",
                "--ca-cert",
                "a.pem",
                "--ca-cert",
                "b.pem",
            ],
        )
        .unwrap();
        let Some(Command::Push(push)) = cli.command else {
            panic!("push parses as push");
        };
        assert_eq!(push.timeout, Some(5));
        assert_eq!(push.chunk_size, Some(8 << 20));
        assert_eq!(push.ca_cert.len(), 2);
        let missing = Cli::from_args(&["docker-image-pusher"], &["push", "-f", "a.tar"]);
        assert!(missing.is_err());
    }
}
