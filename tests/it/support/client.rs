//! A small registry client for *verifying* what the product did, written
//! independently of the product code (so a bug there cannot hide itself).
//!
//! Authentication follows the registry's challenges: on a 401 with
//! `Basic` it retries with the configured credentials; on `Bearer` it asks
//! the realm for a token for the challenged scope (with Basic credentials if
//! configured, anonymously otherwise) and retries. Tokens are cached per
//! repository and action set and reused until the registry rejects them.
//!
//! Every operation has a panicking form for the happy path (`put_blob`) and
//! a `try_` form returning [`HttpError`] for tests that expect failure.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::registry::TestRegistry;
use super::sha256_digest;

/// A failed request: unexpected status (`status` > 0) or transport error (`status` == 0).
#[derive(Clone, Debug)]
pub struct HttpError {
    /// What was attempted, e.g. `PUT http://127.0.0.1:5000/v2/a/manifests/v1`.
    pub context: String,
    pub status: u16,
    pub body: String,
    pub www_authenticate: Option<String>,
}

impl HttpError {
    fn from_response(context: String, resp: &RawResponse) -> HttpError {
        HttpError {
            context,
            status: resp.status,
            body: resp.text(),
            www_authenticate: resp.header("www-authenticate").map(str::to_string),
        }
    }

    fn transport(context: String, err: impl fmt::Display) -> HttpError {
        HttpError {
            context,
            status: 0,
            body: err.to_string(),
            www_authenticate: None,
        }
    }

    /// True for the registry's "token lacks the action" answer.
    pub fn is_insufficient_scope(&self) -> bool {
        self.www_authenticate
            .as_deref()
            .is_some_and(|w| w.contains("insufficient_scope"))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: status {}: {}", self.context, self.status, self.body)?;
        if let Some(w) = &self.www_authenticate {
            write!(f, " (WWW-Authenticate: {w})")?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpError {}

/// A response as received, headers with lowercase names.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct RegistryClient {
    agent: ureq::Agent,
    base: String,
    credentials: Option<(String, String)>,
    /// Bearer tokens keyed by `repo:actions`.
    tokens: Mutex<HashMap<String, String>>,
    /// Set once the registry asked for Basic auth; then it is sent up front.
    basic: AtomicBool,
}

/// Which repository and whether push is needed: the unit of token caching.
struct Need<'a> {
    repo: &'a str,
    push: bool,
}

impl Need<'_> {
    fn key(&self) -> String {
        format!(
            "{}:{}",
            self.repo,
            if self.push { "pull,push" } else { "pull" }
        )
    }

    fn scope(&self) -> String {
        format!("repository:{}", self.key())
    }
}

impl RegistryClient {
    /// Anonymous client (trusts the registry's test CA when TLS is on).
    pub fn new(registry: &TestRegistry) -> RegistryClient {
        RegistryClient {
            agent: registry.agent(),
            base: registry.url(),
            credentials: None,
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
        }
    }

    /// Client that answers Basic challenges with, and requests tokens as, `user`.
    pub fn with_credentials(registry: &TestRegistry, user: &str, password: &str) -> RegistryClient {
        RegistryClient {
            credentials: Some((user.to_string(), password.to_string())),
            ..RegistryClient::new(registry)
        }
    }

    /// Drops cached bearer tokens, forcing fresh ones on the next request.
    pub fn forget_tokens(&self) {
        self.tokens.lock().unwrap().clear();
    }

    // ---- manifests -------------------------------------------------------

    /// `(body, Content-Type, Docker-Content-Digest)`; panics on failure.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
    ) -> (Vec<u8>, String, String) {
        self.try_get_manifest(repo, reference, accept)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_get_manifest(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
    ) -> Result<(Vec<u8>, String, String), HttpError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let accept = accept.join(", ");
        let mut headers = vec![];
        if !accept.is_empty() {
            headers.push(("Accept", accept.as_str()));
        }
        let resp = self.send("GET", &url, &headers, None, &Need { repo, push: false })?;
        expect_status(&resp, 200, "GET", &url)?;
        let content_type = resp.header("content-type").unwrap_or_default().to_string();
        let digest = resp
            .header("docker-content-digest")
            .unwrap_or_default()
            .to_string();
        Ok((resp.body, content_type, digest))
    }

    /// PUTs a manifest; returns the registry's `Docker-Content-Digest`.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        self.try_put_manifest(repo, reference, media_type, bytes)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, HttpError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let headers = [("Content-Type", media_type)];
        let resp = self.send(
            "PUT",
            &url,
            &headers,
            Some(bytes),
            &Need { repo, push: true },
        )?;
        expect_status(&resp, 201, "PUT", &url)?;
        Ok(resp
            .header("docker-content-digest")
            .unwrap_or_default()
            .to_string())
    }

    // ---- blobs -----------------------------------------------------------

    /// Downloads a blob and checks that its content matches `digest`.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        self.try_get_blob(repo, digest)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_get_blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>, HttpError> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.send("GET", &url, &[], None, &Need { repo, push: false })?;
        expect_status(&resp, 200, "GET", &url)?;
        let actual = sha256_digest(&resp.body);
        if actual != digest {
            return Err(HttpError {
                context: format!("GET {url}"),
                status: resp.status,
                body: format!("content digest mismatch: got {actual}"),
                www_authenticate: None,
            });
        }
        Ok(resp.body)
    }

    /// HEAD on the blob: 200 = true, 404 = false, anything else panics.
    pub fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        self.try_blob_exists(repo, digest)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_blob_exists(&self, repo: &str, digest: &str) -> Result<bool, HttpError> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.send("HEAD", &url, &[], None, &Need { repo, push: false })?;
        match resp.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(HttpError::from_response(format!("HEAD {url}"), &resp)),
        }
    }

    /// Monolithic upload (POST then PUT with the whole body); returns the digest.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        self.try_put_blob(repo, bytes)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_put_blob(&self, repo: &str, bytes: &[u8]) -> Result<String, HttpError> {
        let location = self.try_start_upload(repo)?;
        self.try_finish_upload(repo, &location, bytes)
    }

    /// `POST /v2/<repo>/blobs/uploads/`; returns the absolute upload URL.
    /// Split out so tests can restart the registry mid-upload.
    pub fn try_start_upload(&self, repo: &str) -> Result<String, HttpError> {
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self.send("POST", &url, &[], Some(&[]), &Need { repo, push: true })?;
        expect_status(&resp, 202, "POST", &url)?;
        let location = resp
            .header("location")
            .ok_or_else(|| HttpError::from_response(format!("POST {url}: no Location"), &resp))?;
        Ok(self.absolute(location))
    }

    /// PUT of the complete content to an upload URL; returns the digest.
    pub fn try_finish_upload(
        &self,
        repo: &str,
        location: &str,
        bytes: &[u8],
    ) -> Result<String, HttpError> {
        let digest = sha256_digest(bytes);
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", percent_encode(&digest));
        let headers = [("Content-Type", "application/octet-stream")];
        let resp = self.send(
            "PUT",
            &url,
            &headers,
            Some(bytes),
            &Need { repo, push: true },
        )?;
        expect_status(&resp, 201, "PUT", &url)?;
        match resp.header("docker-content-digest") {
            Some(d) if d != digest => Err(HttpError::from_response(
                format!("PUT {url}: registry says digest {d}, expected {digest}"),
                &resp,
            )),
            _ => Ok(digest),
        }
    }

    // ---- tags ------------------------------------------------------------

    pub fn tags(&self, repo: &str) -> Vec<String> {
        self.try_tags(repo).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_tags(&self, repo: &str) -> Result<Vec<String>, HttpError> {
        let url = format!("{}/v2/{repo}/tags/list", self.base);
        let resp = self.send("GET", &url, &[], None, &Need { repo, push: false })?;
        expect_status(&resp, 200, "GET", &url)?;
        let json: serde_json::Value = serde_json::from_slice(&resp.body)
            .map_err(|e| HttpError::transport(format!("GET {url}: bad JSON"), e))?;
        // distribution answers `"tags": null` for a repository without tags.
        Ok(json["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    // ---- low level -------------------------------------------------------

    /// Asks the registry's token realm (found via the `GET /v2/` challenge)
    /// for a token with `scope` (e.g. `repository:a/b:pull`), using this
    /// client's credentials if any. Not cached.
    pub fn fetch_token(&self, scope: &str) -> Result<String, HttpError> {
        let url = format!("{}/v2/", self.base);
        let resp = self.raw("GET", &url, None)?;
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        let (scheme, params) = parse_challenge(challenge);
        if scheme != "bearer" {
            return Err(HttpError::from_response(
                format!("GET {url}: expected a Bearer challenge"),
                &resp,
            ));
        }
        self.request_token(&params, scope)
    }

    /// One request exactly as given: no automatic authentication, no retry.
    /// `path_or_url` may be `/v2/...` or absolute.
    pub fn raw(
        &self,
        method: &str,
        path_or_url: &str,
        authorization: Option<&str>,
    ) -> Result<RawResponse, HttpError> {
        let url = self.absolute(path_or_url);
        self.request(method, &url, &[], None, authorization)
    }

    fn absolute(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    fn basic_header(&self) -> Option<String> {
        self.credentials
            .as_ref()
            .map(|(u, p)| format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))))
    }

    /// Sends with the best auth we have, answers one challenge, retries once.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        need: &Need,
    ) -> Result<RawResponse, HttpError> {
        let cached = if self.basic.load(Ordering::SeqCst) {
            self.basic_header()
        } else {
            self.tokens
                .lock()
                .unwrap()
                .get(&need.key())
                .map(|t| format!("Bearer {t}"))
        };
        let resp = self.request(method, url, headers, body, cached.as_deref())?;
        if resp.status != 401 {
            return Ok(resp);
        }

        let (scheme, params) = parse_challenge(resp.header("www-authenticate").unwrap_or_default());
        let retry_auth = match scheme.as_str() {
            "basic" => match self.basic_header() {
                Some(h) => {
                    self.basic.store(true, Ordering::SeqCst);
                    h
                }
                None => return Ok(resp),
            },
            "bearer" => {
                // Prefer the scope the registry asked for; it knows best.
                let scope = params.get("scope").cloned().unwrap_or_else(|| need.scope());
                let token = self.request_token(&params, &scope)?;
                self.tokens
                    .lock()
                    .unwrap()
                    .insert(need.key(), token.clone());
                format!("Bearer {token}")
            }
            _ => return Ok(resp),
        };
        if cached.as_deref() == Some(retry_auth.as_str()) {
            return Ok(resp); // same credentials again would fail the same way
        }
        self.request(method, url, headers, body, Some(&retry_auth))
    }

    fn request_token(
        &self,
        challenge: &HashMap<String, String>,
        scope: &str,
    ) -> Result<String, HttpError> {
        let realm = challenge.get("realm").ok_or_else(|| {
            HttpError::transport("token request".into(), "challenge without realm")
        })?;
        let mut url = realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(service) = challenge.get("service") {
            url.push_str(&format!("{sep}service={}", percent_encode(service)));
            sep = '&';
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            url.push_str(&format!("{sep}scope={}", percent_encode(s)));
            sep = '&';
        }
        let auth = self.basic_header();
        let resp = self.request("GET", &url, &[], None, auth.as_deref())?;
        expect_status(&resp, 200, "GET", &url)?;
        let json: serde_json::Value = serde_json::from_slice(&resp.body)
            .map_err(|e| HttpError::transport(format!("GET {url}: bad token JSON"), e))?;
        json["token"]
            .as_str()
            .or_else(|| json["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                HttpError::from_response(format!("GET {url}: no token in answer"), &resp)
            })
    }

    fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        authorization: Option<&str>,
    ) -> Result<RawResponse, HttpError> {
        fn with<B>(
            mut rb: ureq::RequestBuilder<B>,
            headers: &[(&str, &str)],
            authorization: Option<&str>,
        ) -> ureq::RequestBuilder<B> {
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            if let Some(a) = authorization {
                rb = rb.header("Authorization", a);
            }
            rb
        }
        let body = body.unwrap_or(&[]);
        let result = match method {
            "GET" => with(self.agent.get(url), headers, authorization).call(),
            "HEAD" => with(self.agent.head(url), headers, authorization).call(),
            "DELETE" => with(self.agent.delete(url), headers, authorization).call(),
            "POST" => with(self.agent.post(url), headers, authorization).send(body),
            "PUT" => with(self.agent.put(url), headers, authorization).send(body),
            other => panic!("RegistryClient: unsupported method {other}"),
        };
        let context = format!("{method} {url}");
        let mut resp = result.map_err(|e| HttpError::transport(context.clone(), e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(u64::MAX) // blobs may exceed ureq's 10 MB default
                .read_to_vec()
                .map_err(|e| HttpError::transport(context.clone(), e))?
        };
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

fn expect_status(resp: &RawResponse, want: u16, method: &str, url: &str) -> Result<(), HttpError> {
    if resp.status == want {
        Ok(())
    } else {
        Err(HttpError::from_response(
            format!("{method} {url} (expected {want})"),
            resp,
        ))
    }
}

/// Parses `Scheme key="value", key=token, ...` into the lowercase scheme and
/// its parameters. Quoted values may contain commas (`scope="repository:a:pull,push"`).
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    (scheme.to_ascii_lowercase(), params)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
