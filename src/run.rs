//! From parsed command line to finished work: settings are resolved (flags, environment,
//! defaults), inputs opened, and the command carried out. Errors come back with a class
//! that `main` turns into the exit code.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;

use crate::archive::Archive;
use crate::cli::{self, Cli, Command, Env, PushArgs};
use crate::error::{Error, Result};
use crate::progress::{Reporter, Verbosity};
use crate::push::{self, PushOptions};
use crate::reference::{self, Reference, Scheme};
use crate::registry::Repository;
use crate::registry::credentials::{self, Credentials, Secret};
use crate::registry::transport::{RetryPolicy, Transport, TransportOptions};
use crate::upload::UploadOptions;

pub const DEFAULT_CHUNK_SIZE: u64 = 32 << 20;
pub const DEFAULT_LARGE_LAYER_THRESHOLD: u64 = 1 << 30;
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 120;

/// Runs the tool with `args` (without the program name) and returns the exit code.
pub fn main_with_args(program: &str, args: &[String]) -> i32 {
    let args = cli::normalize_args(args);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cli = match Cli::from_args(&[program], &refs) {
        Ok(cli) => cli,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    0
                }
                Err(()) => {
                    eprintln!("{}", early.output.trim_end());
                    2
                }
            };
        }
    };
    match run(cli, &cli::process_env) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

fn run(cli: Cli, env: Env) -> Result<()> {
    match cli.command {
        Command::Push(args) => run_push(args, env),
    }
}

fn verbosity(quiet: bool, verbose: bool) -> Verbosity {
    if quiet {
        Verbosity::Quiet
    } else if verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    }
}

/// Everything about reaching a registry that the network commands share.
pub struct Connection {
    pub plain_http: bool,
    pub skip_tls: bool,
    pub ca_certs: Vec<String>,
    pub timeout: Duration,
    pub retry_attempts: u32,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_stdin: bool,
}

impl Connection {
    /// Connects to the registry of `target` with credentials from flags, environment or
    /// the docker config.
    pub fn open(
        &self,
        target: &Reference,
        env: Env,
        reporter: &Arc<Reporter>,
        actions: &str,
    ) -> Result<Repository> {
        if self.skip_tls && !self.plain_http {
            reporter.warn("--skip-tls: the registry's certificate is not checked; anyone on the path can read and change this transfer");
        }
        let credentials = self.credentials(target, env, reporter)?;
        let log_reporter = reporter.clone();
        let options = TransportOptions {
            plain_http: self.plain_http,
            skip_tls_verify: self.skip_tls,
            ca_certs: self.ca_certs.iter().map(Into::into).collect(),
            timeout: self.timeout,
            retry: RetryPolicy {
                attempts: self.retry_attempts,
                ..RetryPolicy::default()
            },
            log: Arc::new(move |line| log_reporter.detail(&format!("[http] {line}"))),
        };
        let transport = Transport::connect(target.api_host(), &options, credentials)?;
        Ok(Repository::new(
            Arc::new(transport),
            target.repository(),
            actions,
        ))
    }

    fn credentials(
        &self,
        target: &Reference,
        env: Env,
        reporter: &Reporter,
    ) -> Result<Option<Credentials>> {
        if self.password.is_some() {
            reporter.warn("a password given with -p/--password can be read by other users of this machine; use --password-stdin or DOCKER_PUSHER_PASSWORD");
        }
        let password = if self.password_stdin {
            if self.password.is_some() {
                return Err(Error::usage(
                    "--password and --password-stdin cannot be used together",
                ));
            }
            Some(read_password_stdin()?)
        } else {
            self.password.clone()
        };
        let username = self
            .username
            .clone()
            .or_else(|| env("DOCKER_PUSHER_USERNAME"))
            .or_else(|| env("REGISTRY_USERNAME"));
        let password = password
            .or_else(|| env("DOCKER_PUSHER_PASSWORD"))
            .or_else(|| env("REGISTRY_PASSWORD"));
        match (username, password) {
            (Some(username), Some(password)) => Ok(Some(Credentials {
                username,
                password: Secret::new(password),
            })),
            (Some(username), None) => Err(Error::usage(format!(
                "a username ({username}) was given without a password"
            ))
            .hint("add --password-stdin, or set DOCKER_PUSHER_PASSWORD")),
            (None, Some(_)) => {
                Err(Error::usage("a password was given without a username")
                    .hint("add -u/--username"))
            }
            (None, None) => credentials::from_docker_config(target.registry()),
        }
    }
}

fn read_password_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 << 10)
        .read_to_string(&mut text)
        .map_err(|e| Error::usage(format!("cannot read the password from standard input: {e}")))?;
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Error::usage("--password-stdin: standard input was empty")
            .hint("pipe the password in: echo \"$PASS\" | docker-image-pusher ..."));
    }
    Ok(password)
}

fn parse_target(text: &str, insecure: bool) -> Result<(Reference, bool)> {
    let (scheme, target) =
        reference::parse_target(text).map_err(|e| Error::usage(e.to_string()))?;
    if insecure && scheme == Some(Scheme::Https) {
        return Err(
            Error::usage("--insecure asks for plain HTTP but the target says https://")
                .hint("drop one of them"),
        );
    }
    Ok((target, insecure || scheme == Some(Scheme::Http)))
}

fn run_push(args: PushArgs, env: Env) -> Result<()> {
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
            mount_from: Vec::new(),
            retry: RetryPolicy {
                attempts: connection.retry_attempts,
                ..RetryPolicy::default()
            },
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
