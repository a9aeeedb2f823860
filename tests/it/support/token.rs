//! An in-process Docker token server (the "realm" of a Bearer challenge).
//!
//! Implements just enough of the Docker token flow
//! (<https://distribution.github.io/distribution/spec/auth/token/>) for tests:
//!
//! ```text
//! GET /token?service=SERVICE&scope=repository:NAME:pull,push[&scope=...]
//! Authorization: Basic ...            (optional; absent = anonymous)
//! ```
//!
//! How distribution 2.8 verifies the JWTs we mint (registry/auth/token/token.go):
//! - `iss` must equal `auth.token.issuer`, `aud` must equal `auth.token.service`;
//! - `exp`/`nbf` are checked with a fixed 60 s leeway (`token.Leeway`);
//! - the signing key is taken from the header, in order of preference `x5c`
//!   (certificate chain verified against `auth.token.rootcertbundle`), `jwk`,
//!   then `kid` (a libtrust key fingerprint). We use `x5c` holding the
//!   self-signed certificate of the signing key, which is also the only cert
//!   in the rootcertbundle; this is the simplest form 2.8 accepts and it
//!   also works with distribution 3.
//! - ES256 signatures are JOSE style: the 64-byte `r || s`, not DER
//!   (ring's `ECDSA_P256_SHA256_FIXED_SIGNING`).
//!
//! Because of the leeway, a token whose `exp` was honest would stay usable
//! for a minute after it expired, which makes expiry tests slow. We
//! therefore back-date `exp` by [`DISTRIBUTION_LEEWAY`], so the registry's
//! effective expiry is `lifetime` after issue (rounded up to the next whole
//! second, so a token lives at least `lifetime` and at most `lifetime + 1 s`).
//! `expires_in` in the response is the honest `lifetime`.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use super::pki;

/// distribution's `token.Leeway`: added to `exp` and subtracted from `nbf`.
pub const DISTRIBUTION_LEEWAY: Duration = Duration::from_secs(60);

/// Who a [`Grant`] applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// Everybody, including callers that sent no credentials. (What an
    /// anonymous caller may do, an authenticated one may do too.)
    Anonymous,
    /// Only this authenticated user.
    User(String),
}

/// Permission for `who` to perform `actions` on repositories matching
/// `repository`: an exact name, or a prefix ending in `*` (`"team/*"`,
/// `"*"` for all). An action `"*"` grants every requested action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub who: Who,
    pub repository: String,
    pub actions: Vec<String>,
}

impl Grant {
    pub fn user(user: &str, repository: &str, actions: &[&str]) -> Grant {
        Grant {
            who: Who::User(user.to_string()),
            repository: repository.to_string(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn anonymous(repository: &str, actions: &[&str]) -> Grant {
        Grant {
            who: Who::Anonymous,
            repository: repository.to_string(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn applies_to(&self, account: Option<&str>) -> bool {
        match &self.who {
            Who::Anonymous => true,
            Who::User(u) => account == Some(u.as_str()),
        }
    }

    fn matches_repository(&self, name: &str) -> bool {
        match self.repository.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.repository == name,
        }
    }
}

/// Configuration of a [`TokenServer`].
#[derive(Clone, Debug)]
pub struct TokenOptions {
    /// Accepted `(user, password)` pairs for HTTP Basic auth at the realm.
    pub users: Vec<(String, String)>,
    pub grants: Vec<Grant>,
    /// How long the registry accepts a token after issue (see module docs).
    pub lifetime: Duration,
    /// The `expires_in` announced to clients, when it should differ from
    /// `lifetime`: a longer one makes a client hold on to a token the
    /// registry already refuses (revocation, clock skew), so the 401 path
    /// is exercised instead of proactive renewal.
    pub advertised_lifetime: Option<Duration>,
    /// JWT `iss`; must match the registry's `auth.token.issuer`.
    pub issuer: String,
    /// JWT `aud`; must match the registry's `auth.token.service`.
    pub service: String,
}

impl Default for TokenOptions {
    fn default() -> Self {
        TokenOptions {
            users: Vec::new(),
            grants: Vec::new(),
            lifetime: Duration::from_secs(300),
            advertised_lifetime: None,
            issuer: "docker-image-pusher-test-issuer".to_string(),
            service: "docker-image-pusher-test-registry".to_string(),
        }
    }
}

impl TokenOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.users.push((user.to_string(), password.to_string()));
        self
    }

    pub fn grant(mut self, grant: Grant) -> Self {
        self.grants.push(grant);
        self
    }

    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    pub fn advertised_lifetime(mut self, lifetime: Duration) -> Self {
        self.advertised_lifetime = Some(lifetime);
        self
    }
}

/// One request seen by the token server. Passwords are never recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The Basic-auth user (or the `account` query parameter), if any.
    pub account: Option<String>,
    pub service: Option<String>,
    /// Scopes as requested, e.g. `repository:team/app:pull,push`. Action
    /// order is the client's (distribution's challenges vary it randomly);
    /// compare with [`same_scope`].
    pub scopes: Vec<String>,
    /// What the token actually grants, in the same `type:name:actions` form,
    /// actions sorted (`pull,push`).
    pub granted: Vec<String>,
    /// HTTP status returned (200 = a token was issued).
    pub status: u16,
}

impl fmt::Display for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "account={} scope={} granted={} status={}",
            self.account.as_deref().unwrap_or("<anonymous>"),
            self.scopes.join(" "),
            self.granted.join(" "),
            self.status
        )
    }
}

struct Inner {
    opts: TokenOptions,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// base64 (standard alphabet, as RFC 7515 requires for x5c) of the cert DER.
    x5c: String,
    issued: AtomicU64,
    requests: Mutex<Vec<TokenRequest>>,
    shutdown: AtomicBool,
}

/// A running token server on `127.0.0.1:<ephemeral>`. Stops on drop.
pub struct TokenServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    root_cert: PathBuf,
    accept_thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Generates a signing key in `dir` (created if needed) and starts serving.
    pub fn start(opts: TokenOptions, dir: &Path) -> TokenServer {
        let signing = pki::make_signing_key(dir);
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &signing.pkcs8_der, &rng)
                .unwrap_or_else(|e| panic!("ring rejected the openssl-generated PKCS#8 key: {e}"));
        // Keep the listener for the server's whole life: unlike the registry's
        // port, this one can never be taken by another test in between.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            opts,
            key,
            rng,
            x5c: STANDARD.encode(&signing.cert_der),
            issued: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
        });
        let accept_inner = Arc::clone(&inner);
        let accept_thread = thread::Builder::new()
            .name(format!("token-server-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_inner))
            .expect("spawn token server thread");
        TokenServer {
            inner,
            addr,
            root_cert: signing.cert_pem_path,
            accept_thread: Some(accept_thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The realm URL to put in the registry config: `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn service(&self) -> &str {
        &self.inner.opts.service
    }

    pub fn issuer(&self) -> &str {
        &self.inner.opts.issuer
    }

    pub fn options(&self) -> &TokenOptions {
        &self.inner.opts
    }

    /// PEM certificate of the signing key (the registry's `rootcertbundle`).
    pub fn root_cert_path(&self) -> &Path {
        &self.root_cert
    }

    /// Number of tokens issued so far (HTTP 200 answers).
    pub fn tokens_issued(&self) -> u64 {
        self.inner.issued.load(Ordering::SeqCst)
    }

    /// Every request so far, formatted like
    /// `account=alice scope=repository:a:pull,push granted=repository:a:pull,push status=200`.
    pub fn requests(&self) -> Vec<String> {
        self.request_log().iter().map(|r| r.to_string()).collect()
    }

    /// Every request so far, structured.
    pub fn request_log(&self) -> Vec<TokenRequest> {
        self.inner.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    for stream in listener.incoming() {
        if inner.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let inner = Arc::clone(&inner);
        // A thread per connection: tests make few requests, and a slow or
        // stuck client must not block the others.
        let _ = thread::Builder::new()
            .name("token-conn".into())
            .spawn(move || {
                let _ = handle_connection(stream, &inner);
            });
    }
}

/// Reads one HTTP/1.1 request and answers it with `Connection: close`.
/// (One request per connection keeps this trivially correct; clients
/// simply reconnect.)
fn handle_connection(stream: TcpStream, inner: &Inner) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);

    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(()); // e.g. the shutdown wake-up connection
    }
    let mut headers: HashMap<String, String> = HashMap::new();
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    // Drain a body (e.g. an OAuth2 POST) so closing does not reset the socket
    // before the client has read our answer.
    if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::io::copy(
            &mut (&mut reader).take(len.min(1 << 20)),
            &mut std::io::sink(),
        )?;
    }

    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let (status, extra_headers, body) = if method == "GET" && path == "/token" {
        handle_token(inner, &parse_query(query), headers.get("authorization"))
    } else {
        // 404 (not 405) for POST /token: Docker-style clients treat a 404 on
        // the OAuth2 POST as "use GET instead".
        (
            404,
            vec![],
            error_json("NOT_FOUND", "only GET /token is served"),
        )
    };

    let mut out = stream;
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()?;
    let _ = out.shutdown(std::net::Shutdown::Write);
    Ok(())
}

type Answer = (u16, Vec<(&'static str, String)>, String);

fn handle_token(
    inner: &Inner,
    query: &[(String, String)],
    authorization: Option<&String>,
) -> Answer {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let service = param("service");
    // Clients may repeat `scope` or pack several into one, space-separated.
    let scopes: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| {
            v.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();

    let mut record = TokenRequest {
        account: param("account"),
        service: service.clone(),
        scopes: scopes.clone(),
        granted: Vec::new(),
        status: 0,
    };
    let answer = decide(
        inner,
        authorization,
        service.as_deref(),
        &scopes,
        &mut record,
    );
    record.status = answer.0;
    inner.requests.lock().unwrap().push(record);
    answer
}

fn decide(
    inner: &Inner,
    authorization: Option<&String>,
    service: Option<&str>,
    scopes: &[String],
    record: &mut TokenRequest,
) -> Answer {
    let opts = &inner.opts;
    let unauthorized = || {
        (
            401,
            vec![(
                "WWW-Authenticate",
                "Basic realm=\"test-token-server\"".to_string(),
            )],
            error_json(
                "UNAUTHORIZED",
                "authentication required or invalid credentials",
            ),
        )
    };

    // Authenticate. No Authorization header at all means anonymous; a Basic
    // header with an unknown user or a wrong password is an error, never a
    // silent downgrade to anonymous (that would hide client bugs).
    let account: Option<String> = match authorization {
        None => None,
        Some(value) => {
            let Some((user, password)) = parse_basic(value) else {
                return unauthorized();
            };
            record.account = Some(user.clone());
            let ok = opts.users.iter().any(|(u, p)| *u == user && *p == password);
            if !ok {
                return unauthorized();
            }
            Some(user)
        }
    };

    // A token for another service would be rejected by the registry
    // (aud mismatch); refuse early with a clear message instead.
    if let Some(s) = service
        && s != opts.service
    {
        return (
            400,
            vec![],
            error_json("DENIED", &format!("unknown service {s:?}")),
        );
    }

    // Intersect each requested scope with the grants of this caller.
    let mut access = Vec::new();
    for scope in scopes {
        let Some((rtype, name, requested)) = parse_scope(scope) else {
            return (
                400,
                vec![],
                error_json("INVALID_SCOPE", &format!("bad scope {scope:?}")),
            );
        };
        let mut allowed: Vec<String> = Vec::new();
        if rtype == "repository" {
            for grant in opts
                .grants
                .iter()
                .filter(|g| g.applies_to(account.as_deref()) && g.matches_repository(&name))
            {
                for action in &requested {
                    let ok = grant.actions.iter().any(|a| a == "*" || a == action);
                    if ok && !allowed.contains(action) {
                        allowed.push(action.clone());
                    }
                }
            }
        }
        // Sorted, so `granted` is deterministic: distribution builds its
        // challenge scopes from a Go map, so requests arrive as `pull,push`
        // or `push,pull` at random.
        allowed.sort();
        if !allowed.is_empty() {
            record
                .granted
                .push(format!("{rtype}:{name}:{}", allowed.join(",")));
            access.push(serde_json::json!({ "type": rtype, "name": name, "actions": allowed }));
        }
    }

    // Like Docker Hub, denial of a scope still yields a (less powerful)
    // token; the registry then answers 401 insufficient_scope.
    let token = mint(inner, account.as_deref().unwrap_or(""), access);
    inner.issued.fetch_add(1, Ordering::SeqCst);
    let now = unix_now();
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": ceil_secs(opts.advertised_lifetime.unwrap_or(opts.lifetime)),
        "issued_at": rfc3339(now.as_secs()),
    });
    (200, vec![], body.to_string())
}

/// Builds and signs the JWT.
fn mint(inner: &Inner, subject: &str, access: Vec<serde_json::Value>) -> String {
    static JTI: AtomicU64 = AtomicU64::new(0);
    let opts = &inner.opts;
    let now = unix_now();
    let iat = now.as_secs();
    // Round up so the token lives at least `lifetime`, then back-date by the
    // registry's leeway (see module docs). May be < iat; 2.8 does not care.
    let now_ceil = if now.subsec_nanos() > 0 { iat + 1 } else { iat };
    let exp = (now_ceil + ceil_secs(opts.lifetime)) as i64 - DISTRIBUTION_LEEWAY.as_secs() as i64;

    let header = serde_json::json!({ "typ": "JWT", "alg": "ES256", "x5c": [inner.x5c] });
    let claims = serde_json::json!({
        "iss": opts.issuer,
        "sub": subject,
        "aud": opts.service,
        "exp": exp,
        "nbf": iat,
        "iat": iat,
        "jti": format!("{:x}-{}", now.as_nanos(), JTI.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = inner
        .key
        .sign(&inner.rng, signing_input.as_bytes())
        .expect("ECDSA signing failed");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// Compares two `type:name:actions` scopes ignoring action order.
pub fn same_scope(a: &str, b: &str) -> bool {
    match (parse_scope(a), parse_scope(b)) {
        (Some((ta, na, mut aa)), Some((tb, nb, mut ab))) => {
            aa.sort();
            aa.dedup();
            ab.sort();
            ab.dedup();
            ta == tb && na == nb && aa == ab
        }
        _ => a == b,
    }
}

fn error_json(code: &str, message: &str) -> String {
    serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string()
}

fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `type:name:actions` where the name itself may contain `:` (e.g. a
/// registry host with a port), so split on the first and last colon.
fn parse_scope(scope: &str) -> Option<(String, String, Vec<String>)> {
    let (rtype, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if rtype.is_empty() || name.is_empty() {
        return None;
    }
    let actions = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    Some((rtype.to_string(), name.to_string(), actions))
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// application/x-www-form-urlencoded decoding (`+` is a space).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Formats Unix seconds as RFC 3339 UTC (`issued_at`), without a date crate.
fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
