//! The HTTP layer every registry request goes through. It composes, in this order: the
//! `/v2/` ping that picks the auth scheme, authentication (Basic or Bearer tokens, renewed
//! on a 401), redirects (never carrying credentials to another origin, never from TLS to
//! plain HTTP: see `origin`), retries with backoff for transient failures, and the verbose
//! request log. Code above it sends plain requests and never sees a token.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::auth::{self, Authenticator, Challenge, TokenRequest};
use super::credentials::Credentials;
use super::origin::{self, Origin, Pointer};
use super::retry::MinSpeed;
pub use super::retry::RetryPolicy;
use crate::error::{Error, Result};
use crate::image::reference::Scheme;
use crate::text::sanitize::{sanitize, sanitize_to};

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

pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Reopened for every try, so a retried upload streams from the source again.
    Stream {
        open: &'a (dyn Fn() -> io::Result<Box<dyn Read + Send>> + Sync),
        length: u64,
    },
}

pub struct Request<'a> {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
    /// Token scopes this request needs (ignored for Basic auth and anonymous registries).
    pub scopes: &'a [String],
    /// Whether transient failures may be retried here. Uploads that the registry may have
    /// partly received say no and recover by asking the registry where it stands.
    pub retry: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: &'static str, url: String, scopes: &'a [String]) -> Request<'a> {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: Body::Empty,
            scopes,
            retry: true,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Body<'a>) -> Self {
        self.body = body;
        self
    }

    pub fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }
}

pub struct Response {
    pub status: u16,
    pub url: String,
    headers: ureq::http::HeaderMap,
    body: ureq::Body,
    min_speed: MinSpeed,
}

/// Error bodies are short JSON documents; more than this is not worth reading.
const MAX_ERROR_BODY: u64 = 64 << 10;

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body, cut off with an error when it trickles slower than `--min-speed`.
    pub fn into_reader(self) -> impl Read + Send + 'static {
        self.min_speed.guard_download(self.body.into_reader())
    }

    /// Reads the body, refusing more than `limit` bytes.
    pub fn read_body(self, limit: u64) -> Result<Vec<u8>> {
        let url = self.url.clone();
        let mut body = Vec::new();
        self.into_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| network_error(ureq::Error::Io(e), &url))?;
        if body.len() as u64 > limit {
            return Err(Error::registry(format!(
                "the registry's answer is larger than {limit} bytes; refusing it"
            )));
        }
        Ok(body)
    }

    /// The registry's own explanation of an error (`{"errors":[{"code","message"}]}`).
    pub fn error_summary(self) -> (u16, Option<String>, String) {
        let status = self.status;
        let body = self.read_body(MAX_ERROR_BODY).unwrap_or_default();
        let (code, message) = parse_error_body(&body);
        (status, code, message)
    }
}

/// Extracts the first error's code and message from a distribution error body, made safe
/// to print (the registry wrote them, and they end up on the user's terminal).
pub fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(Errors { errors }) if !errors.is_empty() => {
            let first = &errors[0];
            (
                Some(sanitize_to(&first.code, 64)).filter(|c| !c.is_empty()),
                sanitize(first.message.trim()),
            )
        }
        _ => (None, sanitize(String::from_utf8_lossy(body).trim())),
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

    /// Every credential this transport holds (password, Basic header, tokens), so
    /// anything about to be written to disk can be checked against them.
    pub fn secrets(&self) -> Vec<String> {
        self.auth.secrets()
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
        Ok(())
    }

    fn ping(&self, scheme: Scheme) -> Result<()> {
        let url = format!("{}/v2/", self.base_url);
        let response = self.send(Request::new("GET", url, &[])).map_err(|e| {
            if scheme == Scheme::Https && looks_like_plain_http(&e) {
                Error::network(format!("{} does not speak TLS ({})", self.host, e.message))
                    .hint("if it is a plain-HTTP registry, use an http:// target, or --insecure with no scheme in the target")
            } else {
                e
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
                Err(Error::registry(format!(
                    "{} answered the API check with HTTP {status}: {message}",
                    self.host
                )))
            }
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
        match status {
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
            400 if code.as_deref() == Some("DIGEST_INVALID") => Error::input(format!(
                "{what}: the content does not match its digest ({detail})"
            ))
            .hint("the archive or cache is damaged; save or copy it again"),
            _ => Error::registry(format!("{what}: HTTP {status} ({detail})")),
        }
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

fn redirect_target(response: &Response) -> Option<String> {
    if matches!(response.status, 301 | 302 | 303 | 307 | 308) {
        response.header("location").map(str::to_string)
    } else {
        None
    }
}

/// How long the registry asked us to wait (`Retry-After` in seconds).
pub fn retry_after(response: &Response) -> Option<Duration> {
    response
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Resolves a `Location` header against the URL it answered.
pub fn resolve_url(current: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let (scheme, rest) = current.split_once("://").unwrap_or(("https", current));
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if let Some(path) = location.strip_prefix("//") {
        return format!("{scheme}://{path}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{host}{location}");
    }
    let path = rest[host.len()..].split(['?', '#']).next().unwrap_or("");
    let directory = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
    format!("{scheme}://{host}{directory}{location}")
}

pub use super::origin::redact_url;

fn is_transient(error: &Error) -> bool {
    !error.message.contains("cannot resolve")
        && !error.message.contains("certificate")
        && !error.message.contains("TLS")
}

/// A TLS handshake answered in plain HTTP fails with a record of the wrong content type;
/// any other TLS failure (an untrusted certificate above all) is not a scheme mix-up.
fn looks_like_plain_http(error: &Error) -> bool {
    let text = error.message.to_ascii_lowercase();
    text.contains("invalidcontenttype") || text.contains("corrupt message")
}

/// Maps a failed exchange to a network error that names the host and a likely fix.
pub fn network_error(err: ureq::Error, url: &str) -> Error {
    let host = auth::host_of(url).to_string();
    if let ureq::Error::Io(io) = &err
        && crate::interrupt::Stopped::is(io)
    {
        return Error::interrupted("stopped by a signal");
    }
    if let ureq::Error::Io(io) = &err
        && let Some(mismatch) = crate::image::digest::find_mismatch(io)
    {
        return Error::input(format!("source blob is corrupt: {mismatch}"))
            .hint("the archive or cache is damaged; save or copy it again");
    }
    if let ureq::Error::Io(io) = &err
        && io.kind() == io::ErrorKind::UnexpectedEof
        && io.to_string().contains("archive")
    {
        return Error::input(format!("reading the source failed: {io}"))
            .hint("the archive is truncated; copy it again");
    }
    match err {
        ureq::Error::HostNotFound => Error::network(format!("cannot resolve host {host}"))
            .hint("check the registry name and your DNS settings"),
        ureq::Error::ConnectionFailed => Error::network(format!("cannot connect to {host}"))
            .hint("check the address and port, and that the registry is running"),
        ureq::Error::Timeout(which) => {
            Error::network(format!("{host} did not answer in time ({which:?} timeout)"))
                .hint("the link is slow or the registry is stuck; raise --timeout or try again")
        }
        ureq::Error::Rustls(tls) => tls_error(&host, &tls.to_string()),
        ureq::Error::Tls(what) => tls_error(&host, what),
        ureq::Error::Io(io) if is_lookup_failure(&io) => {
            Error::network(format!("cannot resolve host {host}"))
                .hint("check the registry name and your DNS settings")
        }
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
            Error::network(format!("{host} refused the connection"))
                .hint("check the address and port, and that the registry is running")
        }
        ureq::Error::Io(io)
            if io.to_string().contains("certificate")
                || io.to_string().contains("InvalidContentType") =>
        {
            tls_error(&host, &io.to_string())
        }
        ureq::Error::Io(io) => Error::network(format!("connection to {host} failed: {io}"))
            .hint("the link dropped; run the same command again to resume"),
        other => Error::network(format!("request to {host} failed: {other}")),
    }
}

/// Name resolution failures reach us as plain I/O errors with the resolver's text.
fn is_lookup_failure(io: &io::Error) -> bool {
    let text = io.to_string().to_ascii_lowercase();
    text.contains("failed to lookup address")
        || text.contains("name or service not known")
        || text.contains("no address associated")
        || text.contains("temporary failure in name resolution")
}

fn tls_error(host: &str, what: &str) -> Error {
    let lower = what.to_ascii_lowercase();
    let hint = if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        "the certificate does not name this host; use the name it was issued for"
    } else if lower.contains("unknownissuer")
        || lower.contains("unknown issuer")
        || lower.contains("untrusted")
    {
        "the certificate is not trusted; pass the registry's CA with --ca-cert FILE (or --skip-tls to disable checks)"
    } else if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
        "the server does not speak TLS; use an http:// target or --insecure for a plain-HTTP registry"
    } else {
        "check the registry's certificate, or pass its CA with --ca-cert FILE"
    };
    Error::network(format!("TLS with {host} failed: {what}")).hint(hint)
}

fn build_agent(host: &str, options: &TransportOptions) -> Result<ureq::Agent> {
    let tls = if options.skip_tls_verify {
        TlsConfig::builder().disable_verification(true).build()
    } else {
        TlsConfig::builder()
            .root_certs(root_certs(host, &options.ca_certs)?)
            .build()
    };
    let loopback = is_loopback_host(host);
    let timeout = Some(options.timeout);
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("docker-image-pusher/", env!("CARGO_PKG_VERSION")))
        .accept_encoding("identity")
        .tls_config(tls)
        // A proxy for the internet is never the way to a registry on this machine.
        .proxy(if loopback {
            None
        } else {
            ureq::Proxy::try_from_env()
        })
        .timeout_resolve(timeout)
        .timeout_connect(timeout)
        .timeout_per_read(timeout)
        .timeout_per_write(timeout)
        .timeout_recv_response(timeout)
        .timeout_send_request(timeout)
        .max_idle_connections_per_host(16)
        .build();
    let connector = ureq::unversioned::transport::DefaultConnector::new();
    Ok(ureq::Agent::with_parts(
        config,
        connector,
        crate::registry::http::resolve::HostResolver::default(),
    ))
}

fn is_loopback_host(host: &str) -> bool {
    let name = if host.starts_with('[') {
        host.split(']')
            .next()
            .unwrap_or(host)
            .trim_start_matches('[')
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name == "localhost" || name.starts_with("127.") || name == "::1"
}

/// Trust: the system's CA bundle, docker's per-registry `certs.d` directories, and any
/// `--ca-cert` files. With none of these, the built-in Mozilla roots.
fn root_certs(host: &str, extra: &[PathBuf]) -> Result<RootCerts> {
    let mut certs = Vec::new();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/ssl/cert.pem",
                "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
            ]
            .map(PathBuf::from),
        );
    if let Some(bundle) = system.into_iter().find(|p| p.is_file()) {
        certs.extend(read_pem_certs(&bundle).unwrap_or_default());
    }
    for dir in ["/etc/docker/certs.d", "/etc/containers/certs.d"] {
        let Ok(entries) = std::fs::read_dir(Path::new(dir).join(host)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "crt") {
                certs.extend(read_pem_certs(&entry.path()).unwrap_or_default());
            }
        }
    }
    for path in extra {
        let found = read_pem_certs(path)?;
        if found.is_empty() {
            return Err(
                Error::usage(format!("{} contains no PEM certificate", path.display()))
                    .hint("--ca-cert takes a PEM file with -----BEGIN CERTIFICATE----- blocks"),
            );
        }
        certs.extend(found);
    }
    if certs.is_empty() {
        return Ok(RootCerts::WebPki);
    }
    Ok(RootCerts::from(certs))
}

fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let bytes = std::fs::read(path)
        .map_err(|e| crate::error::io_error("read", path, e).hint("check the --ca-cert path"))?;
    Ok(ureq::tls::parse_pem(&bytes)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect())
}

impl From<ureq::http::Error> for Error {
    fn from(err: ureq::http::Error) -> Error {
        Error::usage(format!("invalid request: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations_like_a_browser() {
        let base = "https://r.example.com:5000/v2/a/blobs/uploads/?x=1";
        assert_eq!(
            resolve_url(base, "/v2/a/blobs/uploads/u1?_state=s"),
            "https://r.example.com:5000/v2/a/blobs/uploads/u1?_state=s"
        );
        assert_eq!(
            resolve_url(base, "https://s3.example.com/b?sig=1"),
            "https://s3.example.com/b?sig=1"
        );
        assert_eq!(
            resolve_url(base, "//cdn.example.com/x"),
            "https://cdn.example.com/x"
        );
        assert_eq!(
            resolve_url(base, "u2"),
            "https://r.example.com:5000/v2/a/blobs/uploads/u2"
        );
    }

    #[test]
    fn a_401_is_explained_by_what_was_sent() {
        assert_eq!(refusal(false, true), Refusal::NoCredentials);
        assert_eq!(refusal(false, false), Refusal::NoCredentials);
        assert_eq!(refusal(true, true), Refusal::BadCredentials);
        assert_eq!(refusal(true, false), Refusal::NoPermission);
    }

    #[test]
    fn only_a_plain_http_answer_counts_as_no_tls() {
        let plain = tls_error("h:1", "received corrupt message of type InvalidContentType");
        assert!(looks_like_plain_http(&plain));
        let untrusted = tls_error("h:1", "invalid peer certificate: UnknownIssuer");
        assert!(!looks_like_plain_http(&untrusted));
    }

    #[test]
    fn distribution_error_bodies_are_summarized() {
        let (code, message) = parse_error_body(br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#);
        assert_eq!(code.as_deref(), Some("NAME_UNKNOWN"));
        assert_eq!(message, "repository name not known to registry");
        assert_eq!(parse_error_body(b"oops").1, "oops");
    }

    #[test]
    fn error_bodies_lose_their_escape_sequences_and_length() {
        let hostile = "{\"errors\":[{\"code\":\"DENIED\\u001b[2J\",\"message\":\"no\\u001b]0;pwned\\u0007\"}]}";
        let (code, message) = parse_error_body(hostile.as_bytes());
        assert_eq!(code.as_deref(), Some("DENIED\u{FFFD}[2J"));
        assert_eq!(message, "no\u{FFFD}]0;pwned\u{FFFD}");
        let (_, message) =
            parse_error_body(format!("<html>\x1b[31m{}", "x".repeat(10_000)).as_bytes());
        assert!(!message.contains('\x1b'), "{message}");
        assert!(
            message.chars().count() <= crate::text::sanitize::MAX_CHARS,
            "{message}"
        );
    }

    #[test]
    fn loopback_hosts_are_recognized() {
        for host in [
            "localhost:5000",
            "127.0.0.1:1234",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        assert!(!is_loopback_host("registry.example.com:5000"));
    }
}
