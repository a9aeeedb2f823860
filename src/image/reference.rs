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
mod tests {
    use super::*;

    const SHA256: &str = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    const HEX64: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

    fn sha512() -> String {
        format!("sha512:{}", "f".repeat(128))
    }

    fn parse(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn reason(s: &str) -> String {
        match Reference::parse(s) {
            Ok(r) => panic!("{s:?} should be rejected, got {r}"),
            Err(e) => e.reason().to_string(),
        }
    }

    /// (input, registry, repository, tag, digest)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    fn check_valid(cases: &[Case]) {
        for &(input, registry, repository, tag, digest) in cases {
            let r = parse(input);
            assert_eq!(r.registry(), registry, "registry of {input:?}");
            assert_eq!(r.repository(), repository, "repository of {input:?}");
            assert_eq!(r.tag(), tag, "tag of {input:?}");
            assert_eq!(r.digest(), digest, "digest of {input:?}");
            assert_eq!(parse(&r.to_string()), r, "round trip of {input:?}");
        }
    }

    fn check_invalid(cases: &[(&str, &str)]) {
        for &(input, expected) in cases {
            let got = reason(input);
            assert!(
                got.contains(expected),
                "{input:?}: reason {got:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn familiar_names_default_to_docker_hub() {
        check_valid(&[
            ("ubuntu", "docker.io", "library/ubuntu", None, None),
            (
                "ubuntu:22.04",
                "docker.io",
                "library/ubuntu",
                Some("22.04"),
                None,
            ),
            ("user/app", "docker.io", "user/app", None, None),
            (
                "docker.io/ubuntu",
                "docker.io",
                "library/ubuntu",
                None,
                None,
            ),
            (
                "docker.io/library/foo/bar",
                "docker.io",
                "library/foo/bar",
                None,
                None,
            ),
            (
                "index.docker.io/library/debian",
                "docker.io",
                "library/debian",
                None,
                None,
            ),
            (
                "index.docker.io/debian",
                "docker.io",
                "library/debian",
                None,
                None,
            ),
            (
                "registry-1.docker.io/user/app:1",
                "docker.io",
                "user/app",
                Some("1"),
                None,
            ),
            ("DOCKER.IO/foo", "docker.io", "library/foo", None, None),
            (
                "docker.io/library",
                "docker.io",
                "library/library",
                None,
                None,
            ),
            ("test_com", "docker.io", "library/test_com", None, None),
            ("store/foo/bar", "docker.io", "store/foo/bar", None, None),
        ]);
    }

    #[test]
    fn single_component_with_colon_is_name_and_tag_not_registry() {
        check_valid(&[
            (
                "test.com:5000",
                "docker.io",
                "library/test.com",
                Some("5000"),
                None,
            ),
            (
                "localhost:5000",
                "docker.io",
                "library/localhost",
                Some("5000"),
                None,
            ),
            (
                "192.168.1.1",
                "docker.io",
                "library/192.168.1.1",
                None,
                None,
            ),
            (
                "192.168.1.1:tag",
                "docker.io",
                "library/192.168.1.1",
                Some("tag"),
                None,
            ),
            (
                "foo_bar.com:8080",
                "docker.io",
                "library/foo_bar.com",
                Some("8080"),
                None,
            ),
            (
                "foo/foo_bar.com:8080",
                "docker.io",
                "foo/foo_bar.com",
                Some("8080"),
                None,
            ),
            (
                "lowercase:Uppercase",
                "docker.io",
                "library/lowercase",
                Some("Uppercase"),
                None,
            ),
        ]);
    }

    #[test]
    fn explicit_registries_are_kept_as_written() {
        check_valid(&[
            ("localhost/foo", "localhost", "foo", None, None),
            ("localhost:5000/foo", "localhost:5000", "foo", None, None),
            (
                "127.0.0.1:5000/ns/app:v1",
                "127.0.0.1:5000",
                "ns/app",
                Some("v1"),
                None,
            ),
            (
                "192.168.1.1:5000/repo:5050",
                "192.168.1.1:5000",
                "repo",
                Some("5050"),
                None,
            ),
            ("test:5000/repo", "test:5000", "repo", None, None),
            ("test-com:8080/foo", "test-com:8080", "foo", None, None),
            ("Example.COM/foo", "Example.COM", "foo", None, None),
            ("example.com:65535/a", "example.com:65535", "a", None, None),
            (
                "xn--n3h.com/myimage:xn--n3h.com",
                "xn--n3h.com",
                "myimage",
                Some("xn--n3h.com"),
                None,
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io",
                "test.example.com/my-app",
                Some("test.example.com"),
                None,
            ),
        ]);
    }

    #[test]
    fn ipv6_registries_need_brackets_and_may_have_a_port() {
        check_valid(&[
            ("[::1]:5000/foo:bar", "[::1]:5000", "foo", Some("bar"), None),
            ("[2001:db8::1]/x", "[2001:db8::1]", "x", None, None),
            (
                "[2001:db8::]:5000/repo",
                "[2001:db8::]:5000",
                "repo",
                None,
                None,
            ),
            (
                "[2001:db8:1:2:3:4:5:6]/repo:tag",
                "[2001:db8:1:2:3:4:5:6]",
                "repo",
                Some("tag"),
                None,
            ),
            (
                "[fc00::1]:5000/docker/docker",
                "[fc00::1]:5000",
                "docker/docker",
                None,
                None,
            ),
            ("[FC00::1]/a", "[FC00::1]", "a", None, None),
        ]);
    }

    #[test]
    fn digests_and_tag_plus_digest() {
        let s512 = sha512();
        let with_512 = format!("xn--7o8h.com/myimage:xn--7o8h.com@{s512}");
        let hub_digest = format!("busybox:latest@{SHA256}");
        let port_digest = format!("test:5000/repo@{SHA256}");
        let v6_both = format!("[2001:db8::1]:5000/repo:tag@{SHA256}");
        check_valid(&[
            (
                &hub_digest,
                "docker.io",
                "library/busybox",
                Some("latest"),
                Some(SHA256),
            ),
            (&port_digest, "test:5000", "repo", None, Some(SHA256)),
            (
                &v6_both,
                "[2001:db8::1]:5000",
                "repo",
                Some("tag"),
                Some(SHA256),
            ),
            (
                &with_512,
                "xn--7o8h.com",
                "myimage",
                Some("xn--7o8h.com"),
                Some(&s512),
            ),
        ]);
        assert_eq!(
            parse(&hub_digest).to_string(),
            format!("docker.io/library/{hub_digest}")
        );
    }

    #[test]
    fn deep_paths_and_separators() {
        check_valid(&[
            ("a/b/c/d/e/f", "docker.io", "a/b/c/d/e/f", None, None),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com",
                "bar/baz/quux",
                Some("some-long-tag"),
                None,
            ),
            (
                "docker---rules/docker",
                "docker.io",
                "docker---rules/docker",
                None,
                None,
            ),
            (
                "dock__er/docker",
                "docker.io",
                "dock__er/docker",
                None,
                None,
            ),
            ("d/docker", "docker.io", "d/docker", None, None),
            ("jess/t", "docker.io", "jess/t", None, None),
            (
                "ns/a.b_c__d-e--f",
                "docker.io",
                "ns/a.b_c__d-e--f",
                None,
                None,
            ),
        ]);
    }

    #[test]
    fn hex_names_are_ids_unless_qualified() {
        let qualified = format!("docker.io/{HEX64}");
        check_valid(&[
            (
                &qualified,
                "docker.io",
                &format!("library/{HEX64}"),
                None,
                None,
            ),
            (
                &HEX64[..63],
                "docker.io",
                &format!("library/{}", &HEX64[..63]),
                None,
                None,
            ),
            (
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                "docker.io",
                "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                None,
                None,
            ),
        ]);
        check_invalid(&[(HEX64, "image ID")]);
    }

    #[test]
    fn rejects_malformed_input_with_a_specific_reason() {
        check_invalid(&[
            ("", "empty"),
            (" ubuntu", "whitespace"),
            ("ubuntu latest", "whitespace"),
            ("ubuntu\n", "whitespace"),
            ("ub\u{0}untu", "control"),
            ("ubüntu", "non-ASCII"),
            ("🐳", "non-ASCII"),
            (":justtag", "missing repository name"),
            ("https://github.com/docker/docker", "URL"),
            ("aa/asdf$$^/aa", "invalid repository path component"),
            ("-docker", "invalid repository path component"),
            ("docker-/docker", "invalid repository path component"),
            ("-docker-/docker", "invalid repository path component"),
            ("____/____", "invalid repository path component"),
            ("_docker/_docker", "invalid repository path component"),
            ("docker/dock..er", "invalid repository path component"),
            ("docker/dock_.er", "invalid repository path component"),
            ("docker/dock-.er", "invalid repository path component"),
            // A dot in the first component makes it a registry host.
            ("dock..er/docker", "empty label"),
            ("dock_.er/docker", "invalid registry"),
            ("dock-.er/docker", "invalid registry"),
            ("dock___er/docker", "invalid repository path component"),
            ("docker///docker", "empty component"),
            ("docker.io/docker///docker", "empty component"),
            ("docker/", "end with '/'"),
            ("/docker", "start with '/'"),
            ("docker.io/", "missing repository path"),
        ]);
    }

    #[test]
    fn rejects_uppercase_repository_paths() {
        check_invalid(&[
            ("Uppercase:tag", "repository name must be lowercase"),
            ("Foo/bar", "repository name must be lowercase"),
            ("docker/Docker", "repository name must be lowercase"),
            (
                "docker.io/docker/Docker",
                "repository name must be lowercase",
            ),
            (
                "test:5000/Uppercase/lowercase:tag",
                "repository name must be lowercase",
            ),
        ]);
    }

    #[test]
    fn rejects_bad_registries() {
        check_invalid(&[
            ("-docker.io/docker/docker", "invalid registry"),
            ("example..com/foo", "empty label"),
            ("example.com./foo", "empty label"),
            ("exa_mple.com/foo", "host label"),
            ("localhost:/foo", "empty port"),
            ("localhost:0/foo", "between 1 and 65535"),
            ("localhost:65536/foo", "between 1 and 65535"),
            ("localhost:99999999999999999999/foo", "between 1 and 65535"),
            ("localhost:50a/foo", "numeric"),
            (":5000/foo", "empty host"),
            ("fc00::1:5000/debian", "brackets"),
            ("[2001:db8::1]", "without a repository path"),
            ("[2001:db8::1]:5000", "without a repository path"),
            ("[2001:db8::1]:tag", "without a repository path"),
            ("[fe80::1%eth0]:5000/repo", "zone"),
            ("[fe80::1%@invalidzone]:5000/repo", "zone"),
            ("[2001:db8:3:4::192.0.2.33]:5000/debian", "embedded IPv4"),
            ("[]:5000/foo", "empty IPv6"),
            ("[::1/foo", "unterminated"),
            ("[::1]x/foo", "after IPv6"),
            ("[1:2:3]/foo", "malformed IPv6"),
            ("[::1]:http/foo", "numeric"),
        ]);
    }

    #[test]
    fn rejects_bad_tags_and_digests() {
        let long_tag = format!("foo:{}", "a".repeat(129));
        let short = format!("repo@sha256:{}", "f".repeat(34));
        let upper = format!(
            "repo@{}",
            SHA256.to_uppercase().replacen("SHA256", "sha256", 1)
        );
        let invalid_alg = format!("validname@invaliddigest:{}", "f".repeat(64));
        let md5 = format!("repo@md5:{}", "f".repeat(32));
        let no_name = format!("@{SHA256}");
        let two = format!("repo@{SHA256}@{SHA256}");
        check_invalid(&[
            ("foo:", "empty tag"),
            ("foo:-bar", "must start with"),
            ("foo:.bar", "must start with"),
            ("foo:ba$r", "invalid character '$'"),
            ("foo:a:b", "invalid character ':'"),
            (&long_tag, "at most 128"),
            ("repo@", "empty digest"),
            ("repo@sha256", "sha256:<hex>"),
            ("repo@:abc", "missing its algorithm"),
            (&short, "64 hex characters, found 34"),
            (&upper, "lowercase hexadecimal"),
            (&invalid_alg, "unsupported digest algorithm"),
            (&md5, "unsupported digest algorithm"),
            (&no_name, "missing repository name"),
            (&two, "found 136"),
        ]);
        let max_tag = format!("foo:_{}", "a".repeat(127));
        assert_eq!(parse(&max_tag).tag().map(str::len), Some(128));
    }

    #[test]
    fn name_is_limited_to_255_characters_after_normalisation() {
        let at_limit = format!("example.com/{}", "a".repeat(243));
        assert_eq!(parse(&at_limit).repository_reference().len(), 255);
        let tagged = format!("{at_limit}:{}", "t".repeat(128));
        assert_eq!(parse(&tagged).tag().map(str::len), Some(128));

        let over = format!("example.com/{}", "a".repeat(244));
        let hub_over = format!("{}a:tag", "a/".repeat(127));
        let namespace = format!("{}/docker", "this_is_too_long".repeat(16));
        check_invalid(&[
            (&over, "more than 255"),
            (&hub_over, "more than 255"),
            (&namespace, "more than 255"),
        ]);
        let hub_fits = "a".repeat(NAME_MAX_LEN - "docker.io/library/".len());
        assert_eq!(parse(&hub_fits).repository_reference().len(), 255);
        check_invalid(&[(&format!("{hub_fits}a"), "more than 255")]);
    }

    #[test]
    fn accessors_and_display() {
        let r = parse("ubuntu");
        assert_eq!(r.to_string(), "docker.io/library/ubuntu");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.tag_or_latest(), "latest");
        assert_eq!(r.repository_reference(), "docker.io/library/ubuntu");

        let r = parse(&format!("localhost:5000/app:1.0@{SHA256}"));
        assert_eq!(r.api_host(), "localhost:5000");
        assert_eq!(r.manifest_reference(), SHA256);
        assert_eq!(r.tag_or_latest(), "1.0");
        assert_eq!(r.to_string(), format!("localhost:5000/app:1.0@{SHA256}"));

        let r: Reference = "ghcr.io/o/app:2".parse().unwrap();
        assert_eq!(r.manifest_reference(), "2");
        assert_eq!(r.to_string(), "ghcr.io/o/app:2");
    }

    #[test]
    fn with_tag_replaces_tag_and_drops_digest() {
        let r = parse(&format!("example.com/app:old@{SHA256}"));
        let t = r.with_tag("new").unwrap();
        assert_eq!((t.tag(), t.digest()), (Some("new"), None));
        assert_eq!(t.to_string(), "example.com/app:new");
        let err = r.with_tag("-bad").unwrap_err();
        assert_eq!(err.input(), "example.com/app:-bad");
        assert!(err.reason().contains("must start with"));
    }

    #[test]
    fn with_digest_keeps_tag() {
        let r = parse("example.com/app:1");
        let d = r.with_digest(SHA256).unwrap();
        assert_eq!((d.tag(), d.digest()), (Some("1"), Some(SHA256)));
        assert_eq!(parse(&d.to_string()), d);
        let err = r.with_digest("md5:abc").unwrap_err();
        assert!(err.reason().contains("unsupported digest algorithm"));
        assert!(r.with_digest("sha256:abc").is_err());
    }

    #[test]
    fn errors_never_echo_a_password_from_the_input() {
        for (input, shown) in [
            (
                "https://user:hunter2@host.com/app",
                "https://user:***@host.com/app",
            ),
            (
                "http://user:hunter2@host.com:5000/a/b:1",
                "http://user:***@host.com:5000/a/b:1",
            ),
            ("https://hunter2@host.com/app", "https://***@host.com/app"),
            (
                "https://user:p@hunter2@host.com/app",
                "https://user:***@host.com/app",
            ),
            ("user:hunter2@host.com/app", "user:***@host.com/app"),
            ("user:hunter2@host.com", "user:***@host.com"),
            ("hunter2@host.com/app", "***@host.com/app"),
        ] {
            let err = parse_target(input).unwrap_err();
            assert_eq!(err.input(), shown, "{input:?}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        // Digest references keep what the user typed.
        let digest = format!("repo:tag@sha256:{}", "f".repeat(10));
        assert_eq!(Reference::parse(&digest).unwrap_err().input(), digest);
        assert_eq!(Reference::parse("repo@").unwrap_err().input(), "repo@");
    }

    #[test]
    fn error_message_names_input_and_reason() {
        let err = Reference::parse("Foo/bar").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid reference "Foo/bar": repository name must be lowercase"#
        );
        let huge = "A".repeat(100_000);
        let message = Reference::parse(&huge).unwrap_err().to_string();
        assert!(
            message.len() < 400,
            "long inputs are truncated: {}",
            message.len()
        );
        let err: Box<dyn std::error::Error> = Box::new(Reference::parse("").unwrap_err());
        assert!(err.to_string().contains("empty"));
    }

    #[test]
    fn is_loopback_ignores_port() {
        let cases = [
            ("localhost/a", true),
            ("localhost:5000/a", true),
            ("LocalHost:80/a", true),
            ("127.0.0.1:5000/a", true),
            ("127.1.2.3/a", true),
            ("[::1]:5000/a", true),
            ("[::1]/a", true),
            ("[0:0:0:0:0:0:0:1]/a", true),
            ("128.0.0.1/a", false),
            ("10.0.0.1:5000/a", false),
            ("ubuntu", false),
            ("localhost:5000", false),
            ("[2001:db8::1]/x", false),
            ("localhost.example.com/a", false),
            ("127.0.0.1.nip.io/a", false),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).is_loopback(), expected, "{input:?}");
        }
    }

    #[test]
    fn parse_target_accepts_urls_and_bare_references() {
        let cases = [
            (
                "https://registry.example.com/ns/app:1.0",
                Some(Scheme::Https),
                "registry.example.com/ns/app:1.0",
            ),
            (
                "https://registry.example.com/ns/app:1.0/",
                Some(Scheme::Https),
                "registry.example.com/ns/app:1.0",
            ),
            (
                "http://localhost:5000/app",
                Some(Scheme::Http),
                "localhost:5000/app",
            ),
            (
                "HTTPS://Registry.Example.com/app",
                Some(Scheme::Https),
                "Registry.Example.com/app",
            ),
            (
                "http://[::1]:5000/foo:bar",
                Some(Scheme::Http),
                "[::1]:5000/foo:bar",
            ),
            (
                "https://index.docker.io/ubuntu",
                Some(Scheme::Https),
                "docker.io/library/ubuntu",
            ),
            ("ns/app:1.0", None, "docker.io/ns/app:1.0"),
            ("localhost:5000/app/", None, "localhost:5000/app"),
        ];
        for (input, scheme, display) in cases {
            let (got_scheme, r) = parse_target(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got_scheme, scheme, "{input:?}");
            assert_eq!(r.to_string(), display, "{input:?}");
        }
    }

    #[test]
    fn parse_target_rejects_other_url_parts() {
        let cases = [
            ("ftp://host.com/app", "unsupported URL scheme"),
            ("https://host.com/app?x=1", "query"),
            ("https://host.com/app#frag", "fragment"),
            ("https://user:pw@host.com/app", "credentials"),
            ("https://host.com/v2/app/manifests/1", "/v2/"),
            ("https://host.com/v2/", "/v2/"),
            ("https://host.com", "no repository path"),
            ("https://host.com/", "no repository path"),
            ("https://", "empty"),
            ("https:///app", "no registry host"),
            ("https://myhost/app", "not recognised as a registry host"),
            ("https://host.com/app//", "end with '/'"),
            ("https://host.com/app:", "empty tag"),
            ("https:// host.com/app", "whitespace"),
            ("https://Host.com/App", "lowercase"),
            ("/", "empty"),
            ("", "empty"),
        ];
        for (input, expected) in cases {
            let err = parse_target(input).unwrap_err();
            if !input.contains('@') {
                assert_eq!(err.input(), input);
            }
            assert!(err.reason().contains(expected), "{input:?}: {err}");
        }
    }

    /// Deterministic xorshift so failures reproduce without a rand crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    fn garbage(rng: &mut XorShift) -> String {
        let digest = format!("@{SHA256}");
        let tokens = [
            "a",
            "b",
            "z9",
            "0",
            "A",
            "Z",
            ".",
            "-",
            "--",
            "_",
            "__",
            "/",
            "/",
            "/",
            ":",
            ":",
            "@",
            "[",
            "]",
            "::1",
            "[::1]",
            "localhost",
            "docker.io",
            "index.docker.io",
            "5000",
            "library",
            "sha256:",
            &digest,
            "é",
            "🐳",
            "ß",
            " ",
            "\t",
            "\u{0}",
            "%",
            "#",
            "?",
            "://",
            "http://",
            "https://",
            "v2",
            "ex.com",
        ];
        let len = rng.next() % 12;
        (0..len).map(|_| rng.pick(&tokens)).collect()
    }

    #[test]
    fn garbage_never_panics_and_valid_refs_round_trip() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for _ in 0..50_000 {
            let input = garbage(&mut rng);
            let _ = parse_target(&input);
            let Ok(r) = Reference::parse(&input) else {
                continue;
            };
            accepted += 1;
            let shown = r.to_string();
            let again =
                Reference::parse(&shown).unwrap_or_else(|e| panic!("{input:?} -> {shown:?}: {e}"));
            assert_eq!(again, r, "{input:?} -> {shown:?}");
            assert_eq!(again.to_string(), shown);
        }
        assert!(
            accepted > 500,
            "generator too hostile: only {accepted} accepted"
        );
    }

    #[test]
    fn pathological_inputs_do_not_panic() {
        let inputs = [
            "/".repeat(100_000),
            "[".repeat(100_000),
            ":".repeat(100_000),
            "@".repeat(100_000),
            "a".repeat(1_000_000),
            format!("{}a", "a-".repeat(100_000)),
            "é".repeat(10_000),
            "[]".to_string(),
            "[".to_string(),
            "]".to_string(),
            "[/".to_string(),
            "]/a".to_string(),
            "a:/".to_string(),
        ];
        for input in &inputs {
            assert!(Reference::parse(input).is_err());
            assert!(parse_target(input).is_err());
        }
    }
}
