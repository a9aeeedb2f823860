//! Container image references, parsed with the docker/distribution grammar
//! (`github.com/distribution/reference`) by hand so that no regex crate is
//! needed and every rejection can carry a specific, human-readable reason.
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ registry "/" ] path
//! registry   := host [ ":" port ]
//! host       := domain-name | "[" ipv6 "]"
//! path       := component ( "/" component )*
//! ```
//!
//! References are normalised the way `docker pull` does it: `ubuntu` means
//! `docker.io/library/ubuntu`, and the Docker Hub aliases collapse to
//! `docker.io`. A [`Reference`]'s `Display` output always re-parses to an
//! equal value.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's canonical name is not the host that serves the v2 API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = [DOCKER_HUB, "index.docker.io", DOCKER_HUB_API];
const OFFICIAL_NAMESPACE: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_MAX_LEN: usize = 255;
const TAG_MAX_LEN: usize = 128;
/// Errors echo the input; cap it so a megabyte of garbage stays readable.
const ERROR_INPUT_MAX_CHARS: usize = 200;

/// Internal validators report only the reason; the public entry points attach
/// the offending input.
type Reason = String;

/// A parsed, normalised image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// URL scheme given to [`parse_target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceError {
    input: String,
    reason: String,
}

impl ReferenceError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        Self {
            input: without_password(input),
            reason: reason.into(),
        }
    }

    /// The text that failed to parse, with any password in it replaced by `***`.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Short explanation, without the input.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown: String = self.input.chars().take(ERROR_INPUT_MAX_CHARS).collect();
        if shown.len() < self.input.len() {
            shown.push('…');
        }
        write!(f, "invalid reference {shown:?}: {}", self.reason)
    }
}

impl std::error::Error for ReferenceError {}

/// `input` with the secret part of a `user:password@` (or a lone `token@`) before the
/// host replaced by `***`, so an error that echoes a target never echoes a credential.
/// `name:tag@sha256:…` is a digest reference, not credentials, and stays as it is.
fn without_password(input: &str) -> String {
    let (scheme, rest) = match input.split_once("://") {
        Some((scheme, rest)) if is_scheme_like(scheme) => (Some(scheme), rest),
        _ => (None, input),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return input.to_string();
    };
    // Without a scheme, `@` before the first `/` is a digest unless a path follows
    // (digests have no `/`) or what follows is no known digest.
    let path_follows = rest.len() > authority.len();
    let is_digest = ["sha256:", "sha512:"]
        .iter()
        .any(|alg| host.to_ascii_lowercase().starts_with(alg));
    if scheme.is_none() && !path_follows && (is_digest || !userinfo.contains(':')) {
        return input.to_string();
    }
    let hidden = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    let prefix = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    format!("{prefix}{hidden}@{host}{}", &rest[authority.len()..])
}

impl Reference {
    /// Parses and normalises `input` (`ubuntu`, `ghcr.io/o/app:1@sha256:…`, …).
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        parse_reference(input).map_err(|reason| ReferenceError::new(input, reason))
    }

    /// Normalised registry, including any port: `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `host[:port]` to talk HTTP to.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Repository path inside the registry, e.g. `library/ubuntu`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// `algorithm:hex`, e.g. `sha256:<64 hex>`.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What to put after `/manifests/`: a digest pins content, so it wins.
    pub fn manifest_reference(&self) -> &str {
        self.digest().unwrap_or_else(|| self.tag_or_latest())
    }

    pub fn tag_or_latest(&self) -> &str {
        self.tag().unwrap_or(DEFAULT_TAG)
    }

    /// Same repository with `tag`; the digest is dropped because it would
    /// otherwise silently override the new tag.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        let candidate = format!("{}:{tag}", self.repository_reference());
        validate_tag(tag).map_err(|reason| ReferenceError::new(&candidate, reason))?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// Same repository and tag, pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> Result<Reference, ReferenceError> {
        let candidate = format!("{}@{digest}", self.repository_reference());
        validate_digest(digest).map_err(|reason| ReferenceError::new(&candidate, reason))?;
        Ok(Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn repository_reference(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Loopback registries are where plain HTTP is a reasonable default.
    pub fn is_loopback(&self) -> bool {
        let host = split_host_port(&self.registry).map_or(self.registry.as_str(), |(h, _)| h);
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback()),
            None => host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback()),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Accepts what the older CLI took for `-r`: a bare reference or
/// `http(s)://host/repository[:tag]`. Returns the scheme when a URL was given.
pub fn parse_target(input: &str) -> Result<(Option<Scheme>, Reference), ReferenceError> {
    let fail = |reason| ReferenceError::new(input, reason);
    let (scheme, rest) = split_scheme(input).map_err(fail)?;
    // Shell completion and copy-paste from browsers leave one behind.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let reference = match scheme {
        Some(_) => parse_url_rest(rest),
        None => parse_reference(rest),
    }
    .map_err(fail)?;
    Ok((scheme, reference))
}

fn split_scheme(input: &str) -> Result<(Option<Scheme>, &str), Reason> {
    let Some((scheme, rest)) = input.split_once("://") else {
        return Ok((None, input));
    };
    // Anything that is not scheme-shaped is left for the reference parser,
    // which has a better message for it.
    if !is_scheme_like(scheme) {
        return Ok((None, input));
    }
    if scheme.eq_ignore_ascii_case("https") {
        Ok((Some(Scheme::Https), rest))
    } else if scheme.eq_ignore_ascii_case("http") {
        Ok((Some(Scheme::Http), rest))
    } else {
        Err(format!(
            "unsupported URL scheme {scheme:?} (use http:// or https://)"
        ))
    }
}

fn is_scheme_like(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

fn parse_url_rest(rest: &str) -> Result<Reference, Reason> {
    check_charset(rest)?;
    if rest.contains('?') {
        return Err("URL query strings are not allowed".into());
    }
    if rest.contains('#') {
        return Err("URL fragments are not allowed".into());
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    check_url_authority(authority)?;
    check_url_path(path)?;
    parse_reference(rest)
}

fn check_url_authority(authority: &str) -> Result<(), Reason> {
    if authority.is_empty() {
        return Err("URL has no registry host".into());
    }
    if authority.contains('@') {
        return Err(
            "credentials in the URL (user@host) are not supported; pass them separately".into(),
        );
    }
    // Otherwise Display would print a name that re-parses as a Docker Hub
    // namespace instead of this host.
    if !looks_like_registry(authority) {
        return Err(format!(
            "{authority:?} is not recognised as a registry host; \
             it needs a '.', a ':port', or must be 'localhost'"
        ));
    }
    Ok(())
}

fn check_url_path(path: &str) -> Result<(), Reason> {
    if path.is_empty() {
        return Err("URL has no repository path (expected scheme://host/repository[:tag])".into());
    }
    if path == "v2" || path.starts_with("v2/") {
        return Err("drop the \"/v2/\" API prefix: write scheme://host/repository[:tag]".into());
    }
    Ok(())
}

fn parse_reference(s: &str) -> Result<Reference, Reason> {
    check_charset(s)?;
    check_not_special(s)?;
    let (name_and_tag, digest) = split_digest(s)?;
    let (name, tag) = split_tag(name_and_tag)?;
    let (registry, repository) = split_name(name)?;
    check_name_len(&registry, &repository)?;
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// Past this point the input is printable ASCII, so byte offsets are char
/// boundaries and slicing cannot panic.
fn check_charset(s: &str) -> Result<(), Reason> {
    if s.is_empty() {
        return Err("reference is empty".into());
    }
    match s.chars().find(|c| !c.is_ascii_graphic()) {
        None => Ok(()),
        Some(c) if c.is_whitespace() => Err("reference contains whitespace".into()),
        Some(c) if c.is_control() => Err(format!("reference contains control character {c:?}")),
        Some(c) => Err(format!("reference contains non-ASCII character {c:?}")),
    }
}

/// Catches inputs that are well-formed as something else, where the generic
/// grammar error would mislead.
fn check_not_special(s: &str) -> Result<(), Reason> {
    if s.contains("://") {
        return Err("a URL is not an image reference; drop the scheme://".into());
    }
    // distribution refuses these so an image ID is never mistaken for a name.
    if s.len() == 64 && s.bytes().all(is_lower_hex) {
        return Err("a 64-character hex string is an image ID, not a repository name".into());
    }
    if s.starts_with('[') && !s.contains('/') {
        return Err("registry address without a repository path".into());
    }
    Ok(())
}

fn split_digest(s: &str) -> Result<(&str, Option<String>), Reason> {
    match s.split_once('@') {
        None => Ok((s, None)),
        Some((name, digest)) => {
            validate_digest(digest)?;
            Ok((name, Some(digest.to_string())))
        }
    }
}

fn validate_digest(digest: &str) -> Result<(), Reason> {
    if digest.is_empty() {
        return Err("empty digest after '@'".into());
    }
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("digest must look like sha256:<hex>".into());
    };
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        "" => return Err("digest is missing its algorithm".into()),
        other => {
            return Err(format!(
                "unsupported digest algorithm {other:?} (expected sha256 or sha512)"
            ));
        }
    };
    if hex.len() != want {
        return Err(format!(
            "{algorithm} digest must have {want} hex characters, found {}",
            hex.len()
        ));
    }
    if !hex.bytes().all(is_lower_hex) {
        return Err("digest must be lowercase hexadecimal".into());
    }
    Ok(())
}

/// The tag colon is the first one after the last `/`; earlier colons belong
/// to the registry's port or IPv6 address.
fn split_tag(s: &str) -> Result<(&str, Option<String>), Reason> {
    let last_component = s.rfind('/').map_or(0, |i| i + 1);
    let Some(offset) = s[last_component..].find(':') else {
        return Ok((s, None));
    };
    let colon = last_component + offset;
    let tag = &s[colon + 1..];
    validate_tag(tag)?;
    Ok((&s[..colon], Some(tag.to_string())))
}

fn validate_tag(tag: &str) -> Result<(), Reason> {
    let Some(&first) = tag.as_bytes().first() else {
        return Err("empty tag after ':'".into());
    };
    if tag.len() > TAG_MAX_LEN {
        return Err(format!("tag must be at most {TAG_MAX_LEN} characters"));
    }
    if !is_word(first) {
        return Err("tag must start with a letter, digit or '_'".into());
    }
    match tag
        .chars()
        .find(|&c| !(c.is_ascii() && is_tag_byte(c as u8)))
    {
        Some(c) => Err(format!("tag contains invalid character {c:?}")),
        None => Ok(()),
    }
}

/// Returns the normalised `(registry, repository)`.
fn split_name(name: &str) -> Result<(String, String), Reason> {
    if name.is_empty() {
        return Err("missing repository name".into());
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if looks_like_registry(first) => (normalize_registry(first)?, rest),
        _ => (DOCKER_HUB.to_string(), name),
    };
    validate_path(path)?;
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("{OFFICIAL_NAMESPACE}{path}")
    } else {
        path.to_string()
    };
    Ok((registry, repository))
}

/// distribution's rule: only these first components are hosts; everything
/// else is a Docker Hub namespace. Unlike distribution, an uppercase first
/// component is not taken as a host: `MyUser/app` is far more likely a typo
/// than a registry, and "must be lowercase" says so.
fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.starts_with('[')
}

fn normalize_registry(registry: &str) -> Result<String, Reason> {
    validate_registry(registry).map_err(|r| format!("invalid registry {registry:?}: {r}"))?;
    let is_hub = DOCKER_HUB_ALIASES
        .iter()
        .any(|alias| alias.eq_ignore_ascii_case(registry));
    Ok(if is_hub { DOCKER_HUB } else { registry }.to_string())
}

fn validate_registry(registry: &str) -> Result<(), Reason> {
    let (host, port) = split_host_port(registry)?;
    if let Some(port) = port {
        validate_port(port)?;
    }
    if host.starts_with('[') {
        validate_ipv6(host)
    } else {
        validate_domain_name(host)
    }
}

/// The host keeps its brackets so callers can tell IPv6 apart.
fn split_host_port(registry: &str) -> Result<(&str, Option<&str>), Reason> {
    if registry.starts_with('[') {
        let end = registry
            .find(']')
            .ok_or("unterminated '[' in IPv6 address")?;
        let (host, rest) = registry.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => rest
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or_else(|| format!("unexpected {rest:?} after IPv6 address")),
        };
    }
    if registry.matches(':').count() > 1 {
        return Err("IPv6 addresses must be in brackets, e.g. [::1]:5000".into());
    }
    Ok(match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    })
}

fn validate_port(port: &str) -> Result<(), Reason> {
    if port.is_empty() {
        return Err("empty port after ':'".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("port must be numeric".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("port must be between 1 and 65535".into()),
    }
}

/// distribution only checks the character set; parsing too means a later
/// HTTP client never sees an address it cannot connect to.
fn validate_ipv6(bracketed: &str) -> Result<(), Reason> {
    let inner = &bracketed[1..bracketed.len() - 1];
    if inner.is_empty() {
        return Err("empty IPv6 address".into());
    }
    if !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
        return Err("IPv6 address may only contain hex digits and ':' \
                    (no zone IDs or embedded IPv4)"
            .into());
    }
    match inner.parse::<Ipv6Addr>() {
        Ok(_) => Ok(()),
        Err(_) => Err("malformed IPv6 address".into()),
    }
}

fn validate_domain_name(host: &str) -> Result<(), Reason> {
    if host.is_empty() {
        return Err("empty host name".into());
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("host name has an empty label".into());
        }
        if !is_domain_label(label) {
            return Err(format!(
                "host label {label:?} must be letters, digits and inner '-'"
            ));
        }
    }
    Ok(())
}

fn is_domain_label(label: &str) -> bool {
    let b = label.as_bytes();
    let edge_ok = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    edge_ok(b.first())
        && edge_ok(b.last())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

fn validate_path(path: &str) -> Result<(), Reason> {
    if path.is_empty() {
        return Err("missing repository path after the registry".into());
    }
    if path.starts_with('/') {
        return Err("repository path must not start with '/'".into());
    }
    if path.ends_with('/') {
        return Err("repository path must not end with '/'".into());
    }
    path.split('/').try_for_each(validate_path_component)
}

fn validate_path_component(component: &str) -> Result<(), Reason> {
    if component.is_empty() {
        return Err("repository path contains an empty component (\"//\")".into());
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    if !is_path_component(component.as_bytes()) {
        return Err(format!(
            "invalid repository path component {component:?}: use lowercase letters and \
             digits joined by '.', '_', '__' or '-'"
        ));
    }
    Ok(())
}

/// Hand-rolled `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn is_path_component(b: &[u8]) -> bool {
    let mut i = 0;
    loop {
        let run_start = i;
        while i < b.len() && is_lower_alnum(b[i]) {
            i += 1;
        }
        if i == run_start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep_start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        if !is_path_separator(&b[sep_start..i]) {
            return false;
        }
    }
}

fn is_path_separator(sep: &[u8]) -> bool {
    matches!(sep, b"." | b"_" | b"__") || (!sep.is_empty() && sep.iter().all(|&c| c == b'-'))
}

/// Measured on the normalised name so that the limit is the same for
/// `ubuntu` and `docker.io/library/ubuntu`, and Display always re-parses.
fn check_name_len(registry: &str, repository: &str) -> Result<(), Reason> {
    let len = registry.len() + 1 + repository.len();
    if len > NAME_MAX_LEN {
        return Err(format!(
            "repository name must not be more than {NAME_MAX_LEN} characters (is {len})"
        ));
    }
    Ok(())
}

fn is_lower_hex(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

fn is_lower_alnum(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9')
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_tag_byte(b: u8) -> bool {
    is_word(b) || b == b'.' || b == b'-'
}

#[cfg(test)]
mod tests;
