//! Registry authentication: parsing `WWW-Authenticate` challenges, Basic credentials, and
//! the Bearer token flow (realm/service/scope), with tokens shared by every worker and
//! renewed in one place when they expire or the registry refuses them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use super::credentials::Credentials;
use super::storable::storable_url;

/// How the registry asked us to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        error: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value. Unknown schemes yield `None`. Parameters are
/// `key=value` or `key="quoted value"` (with backslash escapes), separated by commas.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |key: &str| params.get(key).cloned();
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: get("realm").filter(|r| !r.is_empty())?,
            service: get("service"),
            scope: get("scope"),
            error: get("error"),
        }),
        _ => None,
    }
}

fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            return params;
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
            value = value.trim().to_string();
        }
        params.insert(key, value);
    }
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    expires: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    /// Any JSON: a token service may send a float, a negative or a 20-digit number here.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// Registries that issue no lifetime give tokens 60 seconds (the distribution spec default).
const DEFAULT_TOKEN_LIFETIME: u64 = 60;
/// Longer lifetimes are cut to this: a token is renewed on a 401 anyway, and an absurd
/// `expires_in` must not overflow the clock.
const MAX_TOKEN_LIFETIME: u64 = 24 * 60 * 60;
/// Renew a little early so a token never expires in the middle of a request.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// Parses a token endpoint's answer into the token and how long to use it.
pub fn parse_token_response(body: &[u8]) -> Option<(String, Duration)> {
    let response: TokenResponse = serde_json::from_slice(body).ok()?;
    let value = response
        .token
        .or(response.access_token)
        .filter(|t| !t.is_empty())?;
    Some((value, token_lifetime(response.expires_in.as_ref())))
}

/// `expires_in` clamped to 1 second .. 24 hours; not a number means the default.
fn token_lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let seconds = match expires_in.and_then(serde_json::Value::as_f64) {
        Some(s) if s.is_nan() => DEFAULT_TOKEN_LIFETIME,
        // `as` saturates: negatives become 0, anything past u64 becomes u64::MAX.
        Some(s) => s as u64,
        None => DEFAULT_TOKEN_LIFETIME,
    };
    Duration::from_secs(seconds.clamp(1, MAX_TOKEN_LIFETIME))
}

/// Authentication state for one registry, shared by all requests and workers. It holds
/// the password and the tokens, so it is never handed out of `registry::http`.
pub(super) struct Authenticator {
    credentials: Option<Credentials>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, Token>>,
    /// Held while fetching a token, so many workers hitting an expired token cause one
    /// fetch, not one each.
    fetching: Mutex<()>,
    tokens_fetched: std::sync::atomic::AtomicU64,
}

/// What the transport must do to get a token: it owns the HTTP client.
pub(super) struct TokenRequest {
    pub url: String,
    pub basic: Option<String>,
}

impl Authenticator {
    pub fn new(credentials: Option<Credentials>) -> Authenticator {
        Authenticator {
            credentials,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            fetching: Mutex::new(()),
            tokens_fetched: Default::default(),
        }
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.username.as_str())
    }

    pub fn tokens_fetched(&self) -> u64 {
        self.tokens_fetched
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `url` may be written to disk: it carries none of the credentials held here
    /// and nothing that looks like one.
    pub fn may_store(&self, url: &str) -> bool {
        let secrets = self.secrets();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        storable_url(url, &secrets)
    }

    /// The password, its Basic header and every token held: what must never be written
    /// to disk or printed.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Some(c) = &self.credentials {
            secrets.push(c.password.expose().to_string());
        }
        if let Some(basic) = self.basic_header() {
            secrets.push(basic.trim_start_matches("Basic ").to_string());
        }
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        secrets.extend(tokens.values().map(|t| t.value.clone()));
        secrets.retain(|s| !s.is_empty());
        secrets
    }

    pub fn set_challenge(&self, challenge: Option<Challenge>) {
        *self.challenge.lock().unwrap_or_else(|p| p.into_inner()) = challenge;
    }

    pub fn challenge(&self) -> Option<Challenge> {
        self.challenge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn basic_header(&self) -> Option<String> {
        let c = self.credentials.as_ref()?;
        let raw = format!("{}:{}", c.username, c.password.expose());
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }

    /// The `Authorization` header for a request needing `scopes`, fetching a token
    /// through `fetch` when there is no valid one.
    pub fn authorization(
        &self,
        scopes: &[String],
        fetch: &dyn Fn(TokenRequest) -> crate::error::Result<Vec<u8>>,
    ) -> crate::error::Result<Option<String>> {
        match self.challenge() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.basic_header()),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = scopes.join(" ");
                if let Some(token) = self.valid_token(&key) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let _one_fetch_at_a_time = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(token) = self.valid_token(&key) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let url = token_url(&realm, service.as_deref(), scopes);
                let body = fetch(TokenRequest {
                    url,
                    basic: self.basic_header(),
                })?;
                let Some((value, lifetime)) = parse_token_response(&body) else {
                    return Err(crate::error::Error::auth(format!(
                        "the token service at {} returned no token",
                        host_of(&realm)
                    )));
                };
                self.tokens_fetched
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let now = Instant::now();
                let expires = now
                    .checked_add(lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2)))
                    .unwrap_or(now);
                self.tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        key,
                        Token {
                            value: value.clone(),
                            expires,
                        },
                    );
                Ok(Some(format!("Bearer {value}")))
            }
        }
    }

    fn valid_token(&self, key: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(key)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.value.clone())
    }

    /// Called on a 401: records the (possibly new) challenge and forgets the token for
    /// these scopes, so the next `authorization` call fetches a fresh one.
    pub fn refused(&self, scopes: &[String], www_authenticate: Option<&str>) {
        if let Some(challenge) = www_authenticate.and_then(parse_challenge) {
            self.set_challenge(Some(challenge));
        }
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&scopes.join(" "));
    }
}

fn token_url(realm: &str, service: Option<&str>, scopes: &[String]) -> String {
    let mut url = realm.to_string();
    let mut separator = if url.contains('?') { '&' } else { '?' };
    let mut push = |key: &str, value: &str| {
        url.push(separator);
        url.push_str(key);
        url.push('=');
        url.push_str(&percent_encode(value));
        separator = '&';
    };
    if let Some(service) = service {
        push("service", service);
    }
    for scope in scopes {
        push("scope", scope);
    }
    url
}

pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The host part of a URL, for messages that must not show paths, queries or userinfo.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority)
}

/// The token scope for pushing to or pulling from a repository.
pub fn repository_scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges_with_quoting_and_errors() {
        let header = r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push",error="insufficient_scope""#;
        assert_eq!(
            parse_challenge(header),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:a/b:pull,push".into()),
                error: Some("insufficient_scope".into()),
            })
        );
        let unquoted = "bearer realm=https://a/token, service=reg";
        assert!(
            matches!(parse_challenge(unquoted), Some(Challenge::Bearer { service: Some(s), .. }) if s == "reg")
        );
        let escaped = r#"Bearer realm="https://a/t\"x""#;
        assert!(
            matches!(parse_challenge(escaped), Some(Challenge::Bearer { realm, .. }) if realm == "https://a/t\"x")
        );
    }

    #[test]
    fn parses_basic_and_rejects_unknown_or_broken_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge(""), None);
        assert_eq!(
            parse_challenge("Bearer realm=\"unterminated"),
            Some(Challenge::Bearer {
                realm: "unterminated".into(),
                service: None,
                scope: None,
                error: None
            })
        );
    }

    #[test]
    fn token_response_accepts_both_field_names() {
        let (t, life) = parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!((t.as_str(), life.as_secs()), ("abc", 300));
        let (t, life) = parse_token_response(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!((t.as_str(), life.as_secs()), ("xyz", 60));
        assert!(parse_token_response(br#"{"token":""}"#).is_none());
        assert!(parse_token_response(b"<html>").is_none());
    }

    #[test]
    fn absurd_token_lifetimes_are_clamped_not_trusted() {
        let life = |expires_in: &str| {
            let body = format!(r#"{{"token":"t","expires_in":{expires_in}}}"#);
            parse_token_response(body.as_bytes()).unwrap().1.as_secs()
        };
        assert_eq!(life("9223372036854775807"), MAX_TOKEN_LIFETIME);
        assert_eq!(life("18446744073709551615"), MAX_TOKEN_LIFETIME);
        assert_eq!(life("1e308"), MAX_TOKEN_LIFETIME);
        assert_eq!(life("-9223372036854775808"), 1);
        assert_eq!(life("-5"), 1);
        assert_eq!(life("0"), 1);
        assert_eq!(life("299.9"), 299);
        assert_eq!(life(r#""300""#), DEFAULT_TOKEN_LIFETIME);
        assert_eq!(life("null"), DEFAULT_TOKEN_LIFETIME);
    }

    /// A Bearer challenge whose realm is never reached: the tests' fetch answers for it.
    fn bearer_challenge() -> Challenge {
        Challenge::Bearer {
            realm: "https://a/t".into(),
            service: None,
            scope: None,
            error: None,
        }
    }

    #[test]
    fn an_absurd_lifetime_yields_a_usable_token() {
        let auth = Authenticator::new(None);
        auth.set_challenge(Some(bearer_challenge()));
        let calls = std::cell::Cell::new(0);
        let fetch = |_: TokenRequest| {
            calls.set(calls.get() + 1);
            Ok(br#"{"token":"t1","expires_in":18446744073709551615}"#.to_vec())
        };
        let scopes = vec!["repository:a:pull".to_string()];
        assert_eq!(
            auth.authorization(&scopes, &fetch).unwrap().unwrap(),
            "Bearer t1"
        );
        auth.authorization(&scopes, &fetch).unwrap();
        assert_eq!(calls.get(), 1, "the clamped token is reused");
    }

    #[test]
    fn a_url_holding_the_password_or_a_token_held_may_not_be_stored() {
        let auth = Authenticator::new(Some(Credentials {
            username: "alice".into(),
            password: crate::registry::http::credentials::Secret::new("s3cr3t-pw"),
        }));
        let session = "https://r/v2/a/blobs/uploads/u?_state=abc";
        assert!(auth.may_store(session));
        assert!(!auth.may_store("https://r/v2/a/blobs/uploads/u?_state=s3cr3t-pw"));
        let basic = auth.basic_header().unwrap();
        let basic = basic.trim_start_matches("Basic ");
        assert!(!auth.may_store(&format!("https://r/v2/a/blobs/uploads/{basic}")));
        assert!(!auth.may_store("https://alice@r/v2/a/blobs/uploads/u"));
        assert!(!auth.may_store("https://r/v2/a/blobs/uploads/u?access_token=x"));

        auth.set_challenge(Some(bearer_challenge()));
        let with_token = "https://r/v2/a/blobs/uploads/u?_state=eyJ0b2tlbiJ9.sig";
        assert!(auth.may_store(with_token), "before the token is held");
        let fetch = |_: TokenRequest| Ok(br#"{"token":"eyJ0b2tlbiJ9.sig"}"#.to_vec());
        auth.authorization(&["repository:a:push".to_string()], &fetch)
            .unwrap();
        assert!(!auth.may_store(with_token), "once the token is held");
        assert!(auth.may_store(session));
    }

    #[test]
    fn token_url_encodes_scopes() {
        let url = token_url(
            "https://auth/token",
            Some("reg"),
            &["repository:a/b:pull,push".into()],
        );
        assert_eq!(
            url,
            "https://auth/token?service=reg&scope=repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert!(token_url("https://auth/token?x=1", None, &[]).ends_with("?x=1"));
    }

    #[test]
    fn tokens_are_reused_until_refused() {
        let auth = Authenticator::new(None);
        auth.set_challenge(Some(bearer_challenge()));
        let calls = std::cell::Cell::new(0);
        let fetch = |_: TokenRequest| {
            calls.set(calls.get() + 1);
            Ok(br#"{"token":"t1","expires_in":300}"#.to_vec())
        };
        let scopes = vec!["repository:a:pull".to_string()];
        assert_eq!(
            auth.authorization(&scopes, &fetch).unwrap().unwrap(),
            "Bearer t1"
        );
        auth.authorization(&scopes, &fetch).unwrap();
        assert_eq!(calls.get(), 1);
        auth.refused(&scopes, None);
        auth.authorization(&scopes, &fetch).unwrap();
        assert_eq!(calls.get(), 2);
    }
}
