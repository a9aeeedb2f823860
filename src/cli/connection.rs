//! Reaching a registry, what the network commands share: timeouts, retries and TLS
//! choices from flags and environment, credentials, and the target reference.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use super::settings::{self, Env};
use crate::error::{Error, Result};
use crate::image::reference::{self, Reference, Scheme};
use crate::registry::Repository;
use crate::registry::http::credentials::{self, Credentials, Secret};
use crate::registry::http::retry::{MinSpeed, RetryPolicy};
use crate::registry::http::transport::{Transport, TransportOptions};
use crate::ui::progress::Reporter;

pub const DEFAULT_TIMEOUT_SECONDS: u64 = 120;

/// Everything about reaching a registry that the network commands share.
pub struct Connection {
    pub plain_http: bool,
    /// `--insecure` on an `https://` target: TLS first, plain HTTP where the registry
    /// sends us (with a warning).
    pub allow_plain_http: bool,
    pub skip_tls: bool,
    pub ca_certs: Vec<String>,
    pub timeout: Duration,
    /// Shared by every retry loop of the run; its stop signal is the run's.
    pub retry: RetryPolicy,
    /// `--deadline`: how long the whole run may take.
    pub deadline: Option<Duration>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_stdin: bool,
}

/// The network flags push and pull share, as given on the command line.
pub struct ConnectionFlags<'a> {
    pub plain_http: bool,
    pub allow_plain_http: bool,
    pub skip_tls: bool,
    pub ca_cert: &'a [String],
    pub timeout: Option<u64>,
    pub retry_attempts: Option<u32>,
    pub min_speed: Option<u64>,
    pub min_speed_window: Option<Duration>,
    pub deadline: Option<Duration>,
    pub username: &'a Option<String>,
    pub password: &'a Option<String>,
    pub password_stdin: bool,
}

impl Connection {
    /// Resolves the flags against `DOCKER_PUSHER_*` variables and defaults.
    pub fn resolve(flags: ConnectionFlags<'_>, env: Env) -> Result<Connection> {
        let timeout = settings::number_setting(
            flags.timeout,
            env,
            "DOCKER_PUSHER_TIMEOUT",
            DEFAULT_TIMEOUT_SECONDS,
        )?;
        let timeout = settings::in_range(timeout, "--timeout", settings::limits::TIMEOUT_SECONDS)?;
        Ok(Connection {
            plain_http: flags.plain_http,
            allow_plain_http: flags.allow_plain_http,
            skip_tls: settings::switch_setting(flags.skip_tls, env, "DOCKER_PUSHER_SKIP_TLS")?,
            ca_certs: flags.ca_cert.to_vec(),
            timeout: Duration::from_secs(timeout),
            retry: RetryPolicy {
                attempts: settings::in_range(
                    settings::number_setting(
                        flags.retry_attempts,
                        env,
                        "DOCKER_PUSHER_RETRY_ATTEMPTS",
                        3,
                    )?,
                    "--retry-attempts",
                    settings::limits::RETRY_ATTEMPTS,
                )?,
                min_speed: MinSpeed {
                    bytes_per_second: match (flags.min_speed, env("DOCKER_PUSHER_MIN_SPEED")) {
                        (Some(speed), _) => speed,
                        (None, Some(text)) => settings::parse_min_speed(&text)
                            .map_err(|e| Error::usage(format!("DOCKER_PUSHER_MIN_SPEED: {e}")))?,
                        (None, None) => MinSpeed::default().bytes_per_second,
                    },
                    window: settings::duration_setting(
                        flags.min_speed_window,
                        env,
                        "DOCKER_PUSHER_MIN_SPEED_WINDOW",
                    )?
                    .unwrap_or(MinSpeed::default().window),
                },
                ..RetryPolicy::default()
            },
            deadline: settings::duration_setting(flags.deadline, env, "DOCKER_PUSHER_DEADLINE")?,
            username: flags.username.clone(),
            password: flags.password.clone(),
            password_stdin: flags.password_stdin,
        })
    }

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
            reporter.security_warning("--skip-tls: the registry's certificate is not checked; anyone on the path can read and change this transfer");
        }
        let credentials = self.credentials(target, env, reporter)?;
        let log_reporter = reporter.clone();
        let warn_reporter = reporter.clone();
        let options = TransportOptions {
            plain_http: self.plain_http,
            allow_plain_http: self.allow_plain_http,
            skip_tls_verify: self.skip_tls,
            ca_certs: self.ca_certs.iter().map(Into::into).collect(),
            timeout: self.timeout,
            retry: self.retry.clone(),
            log: Arc::new(move |line| log_reporter.detail(&format!("[http] {line}"))),
            warn: Arc::new(move |line| warn_reporter.security_warning(line)),
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
            reporter.security_warning("a password given with -p/--password, --src-creds or --dest-creds can be read by other users of this machine; pass it on standard input (--password-stdin, or --src-creds/--dest-creds USER alone) or in DOCKER_PUSHER_PASSWORD");
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

/// The target and whether to speak plain HTTP from the start. `--insecure` allows plain
/// HTTP: a target without a scheme is reached over it; an `https://` target starts with
/// TLS and follows the registry onto plain HTTP only where it sends us (with a warning).
pub(crate) fn parse_target(text: &str, insecure: bool) -> Result<(Reference, bool)> {
    let (scheme, target) =
        reference::parse_target(text).map_err(|e| Error::usage(e.to_string()))?;
    let plain_http = match scheme {
        Some(Scheme::Https) => false,
        Some(Scheme::Http) => true,
        None => insecure,
    };
    Ok((target, plain_http))
}
