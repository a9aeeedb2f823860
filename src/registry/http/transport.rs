//! The HTTP layer every registry request goes through. It composes, in this order: the
//! `/v2/` ping that picks the auth scheme, authentication (Basic or Bearer tokens, renewed
//! on a 401), redirects (never carrying credentials to another origin, never from TLS to
//! plain HTTP: see `origin`), retries with backoff for transient failures, and the verbose
//! request log. Code above it sends plain requests and never sees a token.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::auth::{self, Authenticator, Challenge, TokenRequest};
use super::credentials::Credentials;
use super::errors::{is_transient, looks_like_plain_http};
pub use super::errors::{network_error, parse_error_body, reason_phrase};
use super::origin::{self, Origin, Pointer};
use super::request::MAX_ERROR_BODY;
pub use super::request::{Body, Request, Response};
pub use super::retry::RetryPolicy;
use super::tls::build_agent;
use super::url::redirect_target;
pub use super::url::resolve_url;
use crate::error::{Cause, Error, Result};
use crate::image::reference::Scheme;

/// A sink for the per-request log (`--verbose`). Messages never contain credentials.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

pub fn silent_log() -> Log {
    Arc::new(|_| {})
}

#[derive(Clone)]
pub struct TransportOptions {
    /// Speak plain HTTP (`http://` targets and `--insecure`).
    pub plain_http: bool,
    /// `--insecure`: an `https://` registry may send requests on to plain HTTP (warned).
    pub allow_plain_http: bool,
    pub skip_tls_verify: bool,
    pub ca_certs: Vec<PathBuf>,
    /// Inactivity limit for connecting, each read and write, and waiting for a response.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub log: Log,
    /// Where security warnings go: shown even with `--quiet`.
    pub warn: Log,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            plain_http: false,
            allow_plain_http: false,
            skip_tls_verify: false,
            ca_certs: Vec::new(),
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            log: silent_log(),
            warn: silent_log(),
        }
    }
}

/// One registry host: a configured HTTP agent, the scheme and auth learned from the ping.
pub struct Transport {
    agent: ureq::Agent,
    base_url: String,
    origin: Origin,
    host: String,
    auth: Authenticator,
    retry: RetryPolicy,
    log: Log,
    retries: AtomicU64,
    allow_plain_http: bool,
    warn: Log,
    warned_plain_http: AtomicBool,
}

impl Transport {
    /// Pings `/v2/` on `host` (an API host such as `registry-1.docker.io` or
    /// `127.0.0.1:5000`) to learn the scheme's viability and the auth challenge.
    pub fn connect(
        host: &str,
        options: &TransportOptions,
        credentials: Option<Credentials>,
    ) -> Result<Transport> {
        let scheme = if options.plain_http {
            Scheme::Http
        } else {
            Scheme::Https
        };
        let base_url = format!(
            "{}://{host}",
            if scheme == Scheme::Http {
                "http"
            } else {
                "https"
            }
        );
        let origin = Origin::of(&base_url).ok_or_else(|| {
            Error::usage(format!(
                "{host} is not a registry address this tool can reach"
            ))
        })?;
        let transport = Transport {
            agent: build_agent(host, options)?,
            base_url,
            origin,
            host: host.to_string(),
            auth: Authenticator::new(credentials),
            retry: options.retry.clone(),
            log: options.log.clone(),
            retries: AtomicU64::new(0),
            allow_plain_http: options.allow_plain_http,
            warn: options.warn.clone(),
            warned_plain_http: AtomicBool::new(false),
        };
        transport.ping(scheme)?;
        Ok(transport)
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn tokens_fetched(&self) -> u64 {
        self.auth.tokens_fetched()
    }

    /// Whether `url` may be written to disk: it carries none of the credentials this
    /// transport holds (password, Basic header, tokens) and nothing that looks like one.
    pub fn may_store(&self, url: &str) -> bool {
        self.auth.may_store(url)
    }

    pub fn log(&self, message: &str) {
        (self.log)(message)
    }

    /// Refuses `url`, which the registry pointed us to, when it leaves TLS for plain HTTP
    /// without the user's leave; with it, warns once.
    pub fn check_url(&self, url: &str, pointer: Pointer) -> Result<()> {
        if origin::check_downgrade(&self.origin, url, pointer, self.allow_plain_http)?
            && !self.warned_plain_http.swap(true, Ordering::Relaxed)
        {
            (self.warn)(&origin::downgrade_warning(&self.origin, url));
        }
        origin::check_parsable(&self.origin, url, pointer)
    }

    fn ping(&self, scheme: Scheme) -> Result<()> {
        let url = format!("{}/v2/", self.base_url);
        let response = self.send(Request::new("GET", url, &[])).map_err(|e| {
            if scheme == Scheme::Https && looks_like_plain_http(&e) {
                Error::network(format!("{} does not speak TLS ({})", self.host, e.message))
                    .hint("if it is a plain-HTTP registry, use an http:// target, or --insecure with no scheme in the target")
            } else {
                self.tls_only_after(scheme, e)
            }
        })?;
        match response.status {
            200..=299 => Ok(()),
            401 => {
                let challenge = response
                    .header("www-authenticate")
                    .and_then(auth::parse_challenge);
                if challenge.is_none() {
                    return Err(Error::registry(format!(
                        "{} asks for authentication in a way this tool does not support",
                        self.host
                    )));
                }
                // `send` already answered the Basic challenge with our credentials; a
                // second 401 is the registry refusing them. Say so now, before any upload.
                if challenge == Some(Challenge::Basic)
                    && let Some(user) = self.auth.username()
                {
                    return Err(Error::auth(format!(
                        "{} rejected the credentials for user \"{user}\"",
                        self.host
                    ))
                    .hint("check the username and password (or token)"));
                }
                self.auth.set_challenge(challenge);
                Ok(())
            }
            404 => Err(Error::registry(format!(
                "{} is not a container registry (no /v2/ API)",
                self.host
            ))
            .hint("check the registry address and port")),
            _ => {
                let (status, _, message) = response.error_summary();
                if let Some(error) = self.tls_only(scheme, &format!("HTTP {status}")) {
                    return Err(error);
                }
                let detail = match message.as_str() {
                    "" => String::new(),
                    text => format!(": {text}"),
                };
                Err(Error::registry(format!(
                    "{} answered the API check with HTTP {status}{detail}",
                    self.host
                )))
            }
        }
    }

    /// A failed plain-HTTP ping to a server that speaks TLS: the user's `--insecure` (or
    /// `http://`) is the mistake, and the error says so.
    fn tls_only(&self, scheme: Scheme, what: &str) -> Option<Error> {
        (scheme == Scheme::Http && super::tls::speaks_tls(&self.agent, &self.host))
            .then(|| super::errors::tls_only_error(&self.host, what))
    }

    /// [`Transport::tls_only`] for a ping that got no answer: only a connection that was
    /// made and then broke or answered garbage may have been a TLS server; a name that
    /// does not resolve, a refused connection or a silent host is not worth a probe.
    fn tls_only_after(&self, scheme: Scheme, error: Error) -> Error {
        match error.cause {
            Some(Cause::Dns | Cause::Refused | Cause::Timeout | Cause::Stopped) => error,
            _ => self.tls_only(scheme, &error.message).unwrap_or(error),
        }
    }

    /// Sends a request with authentication, redirects and retries applied. Any HTTP status
    /// comes back as a response; only failures to get one are errors.
    pub fn send(&self, request: Request<'_>) -> Result<Response> {
        let mut url = request.url.clone();
        let mut attempt = 0;
        let mut reauthenticated = false;
        let mut redirects = 0;
        let mut method = request.method;
        loop {
            self.check_url(&url, Pointer::Request)?;
            let same_host = origin::credentials_go_to(&self.origin, &url, self.allow_plain_http);
            let authorization = if same_host {
                self.auth
                    .authorization(request.scopes, &|token| self.fetch_token(token))?
            } else {
                None
            };
            let started = Instant::now();
            let result = self.exchange(method, &url, &request, authorization);
            match result {
                Ok(response) => {
                    self.log_exchange(method, &url, Some(response.status), started, &request);
                    if response.status == 401 && same_host && !reauthenticated {
                        reauthenticated = true;
                        self.auth
                            .refused(request.scopes, response.header("www-authenticate"));
                        continue;
                    }
                    if let Some(next) = redirect_target(&response) {
                        redirects += 1;
                        if redirects > 5 {
                            return Err(Error::registry(format!(
                                "too many redirects from {}",
                                auth::host_of(&url)
                            )));
                        }
                        let target = resolve_url(&url, &next);
                        self.check_url(&target, Pointer::Redirect)?;
                        url = target;
                        if response.status == 303 {
                            method = "GET";
                        }
                        continue;
                    }
                    let transient = matches!(response.status, 429 | 500 | 502 | 503 | 504);
                    if transient && request.retry && attempt < self.retry.attempts {
                        let wait = self.retry.delay(attempt, retry_after(&response));
                        self.note_retry(method, &url, &format!("HTTP {}", response.status), wait);
                        attempt += 1;
                        continue;
                    }
                    return Ok(response);
                }
                Err(err) => {
                    self.log_exchange(method, &url, None, started, &request);
                    let error = network_error(err, &url);
                    if error.class == crate::error::Class::Network
                        && request.retry
                        && attempt < self.retry.attempts
                        && is_transient(&error)
                    {
                        let wait = self.retry.delay(attempt, None);
                        self.note_retry(method, &url, &error.message, wait);
                        attempt += 1;
                        continue;
                    }
                    return Err(error);
                }
            }
        }
    }

    fn note_retry(&self, method: &str, url: &str, why: &str, wait: Duration) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.log(&format!(
            "retry {method} {} in {:.1}s: {why}",
            redact_url(url),
            wait.as_secs_f64()
        ));
        self.retry.pause(wait);
    }

    fn log_exchange(
        &self,
        method: &str,
        url: &str,
        status: Option<u16>,
        started: Instant,
        request: &Request<'_>,
    ) {
        let size = match request.body {
            Body::Empty => String::new(),
            Body::Bytes(b) => format!(" {} B", b.len()),
            Body::Stream { length, .. } => format!(" {length} B"),
        };
        let outcome = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "failed".into());
        self.log(&format!(
            "{method} {}{size} -> {outcome} ({:.2}s)",
            redact_url(url),
            started.elapsed().as_secs_f64()
        ));
    }

    fn exchange(
        &self,
        method: &str,
        url: &str,
        request: &Request<'_>,
        authorization: Option<String>,
    ) -> std::result::Result<Response, ureq::Error> {
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        let sends_body = matches!(method, "PUT" | "POST" | "PATCH");
        let response = match (&request.body, sends_body) {
            (_, false) => self.agent.run(builder.body(())?),
            (Body::Empty, true) => self
                .agent
                .run(builder.header("content-length", "0").body(&[][..])?),
            (Body::Bytes(bytes), true) => self.agent.run(
                builder
                    .header("content-length", bytes.len().to_string())
                    .body(*bytes)?,
            ),
            (Body::Stream { open, length }, true) => {
                let reader = open().map_err(ureq::Error::Io)?;
                let reader = self.retry.min_speed.guard_upload(reader);
                let body = ureq::SendBody::from_owned_reader(reader);
                self.agent.run(
                    builder
                        .header("content-length", length.to_string())
                        .body(body)?,
                )
            }
        }?;
        let (parts, body) = response.into_parts();
        Ok(Response {
            status: parts.status.as_u16(),
            url: url.to_string(),
            headers: parts.headers,
            body,
            min_speed: self.retry.min_speed,
        })
    }

    fn fetch_token(&self, token: TokenRequest) -> Result<Vec<u8>> {
        self.check_url(&token.url, Pointer::TokenRealm)?;
        let realm_host = auth::host_of(&token.url).to_string();
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let mut builder = ureq::http::Request::builder().method("GET").uri(&token.url);
            if let Some(basic) = &token.basic {
                builder = builder.header("authorization", basic);
            }
            let request = builder
                .body(())
                .map_err(|e| Error::auth(format!("invalid token service address: {e}")))?;
            let result = self.agent.run(request);
            self.log(&format!(
                "GET {} (token) -> {} ({:.2}s)",
                redact_url(&token.url),
                result
                    .as_ref()
                    .map(|r| r.status().as_u16().to_string())
                    .unwrap_or_else(|_| "failed".into()),
                started.elapsed().as_secs_f64()
            ));
            let error = match result {
                Ok(response) if response.status().is_success() => {
                    let mut body = response.into_body();
                    return body
                        .with_config()
                        .limit(MAX_ERROR_BODY * 16)
                        .read_to_vec()
                        .map_err(|e| network_error(e, &token.url));
                }
                Ok(response) if matches!(response.status().as_u16(), 401 | 403) => {
                    return Err(match self.auth.username() {
                        Some(user) => Error::auth(format!("{realm_host} rejected the credentials for user \"{user}\""))
                            .hint("check the username and password (or token)"),
                        None => Error::auth(format!("{} requires credentials", self.host))
                            .hint("pass -u/--username with --password-stdin, set DOCKER_PUSHER_USERNAME/PASSWORD, or docker login"),
                    });
                }
                Ok(response) if matches!(response.status().as_u16(), 429 | 500..=599) => {
                    Error::network(format!(
                        "token service {realm_host} answered HTTP {}",
                        response.status().as_u16()
                    ))
                }
                Ok(response) => {
                    return Err(Error::auth(format!(
                        "token service {realm_host} answered HTTP {}",
                        response.status().as_u16()
                    )));
                }
                Err(err) => network_error(err, &token.url),
            };
            if attempt >= self.retry.attempts || !is_transient(&error) {
                return Err(error);
            }
            let wait = self.retry.delay(attempt, None);
            self.note_retry("GET", &token.url, &error.message, wait);
            attempt += 1;
        }
    }

    /// Explains a response that is not what the caller needed, in the user's terms.
    pub fn status_error(&self, response: Response, action: &str) -> Error {
        let (status, code, message) = response.error_summary();
        let detail = match &code {
            Some(code) if !message.is_empty() => format!("{code}: {message}"),
            Some(code) => code.clone(),
            None if !message.is_empty() => message.clone(),
            None => format!("HTTP {status}"),
        };
        let what = format!("{action} failed on {}", self.host);
        let digest_invalid = status == 400 && code.as_deref() == Some("DIGEST_INVALID");
        let mut error = match status {
            401 => {
                let basic = self.auth.challenge() == Some(Challenge::Basic);
                match (self.auth.username(), refusal(self.auth.has_credentials(), basic)) {
                    (_, Refusal::NoCredentials) => {
                        Error::auth(format!("{what}: authentication required ({detail})"))
                            .hint("pass -u/--username with --password-stdin, set DOCKER_PUSHER_USERNAME/PASSWORD, or docker login")
                    }
                    (user, Refusal::BadCredentials) => Error::auth(format!(
                        "{what}: the registry rejected the credentials for user \"{}\"",
                        user.unwrap_or_default()
                    ))
                    .hint("check the username and password (or token)"),
                    (user, Refusal::NoPermission) => Error::auth(format!(
                        "{what}: access denied for user \"{}\" ({detail})",
                        user.unwrap_or_default()
                    ))
                    .hint("the account lacks permission for this repository, or may not create it; check the account's rights"),
                }
            }
            403 => Error::auth(format!("{what}: access denied ({detail})"))
                .hint("the account lacks permission for this repository"),
            404 if code.as_deref() == Some("NAME_UNKNOWN") => Error::registry(format!(
                "{what}: repository not found ({detail})"
            ))
            .hint("check the repository name; some registries need the repository created first"),
            429 => Error::registry(format!("{what}: rate limited ({detail})"))
                .hint("wait and try again"),
            400 if digest_invalid => Error::input(format!(
                "{what}: the content does not match its digest ({detail})"
            ))
            .hint("the archive or cache is damaged; save or copy it again"),
            _ => {
                let status_line = format!("HTTP {status} {}", super::errors::reason_phrase(status));
                match (&code, message.is_empty()) {
                    (None, true) => Error::registry(format!("{what}: {}", status_line.trim_end())),
                    _ => Error::registry(format!("{what}: {} ({detail})", status_line.trim_end())),
                }
            }
        };
        let cause = if digest_invalid {
            Cause::SourceCorrupt
        } else {
            Cause::Status(status)
        };
        debug_assert_eq!(error.class, cause.class());
        error.cause = Some(cause);
        error
    }
}

/// What a 401 on a request that carried our best credentials means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// We sent none; the registry wants some.
    NoCredentials,
    /// Basic auth has no per-repository scopes, so a 401 there means the password was refused.
    BadCredentials,
    /// The token service accepted the credentials (a wrong password fails there), so the
    /// token it issued lacks the action: the account may not do this.
    NoPermission,
}

fn refusal(has_credentials: bool, basic: bool) -> Refusal {
    match (has_credentials, basic) {
        (false, _) => Refusal::NoCredentials,
        (true, true) => Refusal::BadCredentials,
        (true, false) => Refusal::NoPermission,
    }
}

/// How long the registry asked us to wait (`Retry-After` in seconds).
pub fn retry_after(response: &Response) -> Option<Duration> {
    response
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

pub use super::origin::redact_url;

#[cfg(test)]
mod tests;
