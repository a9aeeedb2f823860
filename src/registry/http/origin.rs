//! Where a URL points, as far as trust goes: scheme, host and port (the web's "origin").
//! Credentials belong to the exact origin the user named; once that origin is `https://`,
//! nothing the registry hands back (a redirect, an upload `Location`, a token realm) may
//! move a request onto plain HTTP unless the user allowed it.

use crate::error::{Error, Result};
use crate::image::reference::Scheme;

/// Scheme, lowercase host and port (the scheme's default when the URL names none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// The origin of an absolute `http://` or `https://` URL; `None` for anything else.
    pub fn of(url: &str) -> Option<Origin> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else {
            return None;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        // Userinfo never names the server; `https://good@evil/` goes to `evil`.
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = split_port(authority)?;
        if host.is_empty() {
            return None;
        }
        let port = match port {
            Some(port) => port.parse().ok()?,
            None if scheme == Scheme::Https => 443,
            None => 80,
        };
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::Https
    }
}

fn split_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let port = authority[end + 1..].strip_prefix(':');
        return Some((&authority[..=end], port.filter(|p| !p.is_empty())));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() => Some((host, Some(port))),
        Some((host, _)) => Some((host, None)),
        None => Some((authority, None)),
    }
}

/// Whether `url` is exactly `base`'s origin: only then may the registry's credentials go
/// with a request. With plain HTTP allowed (`--insecure` on an `https://` target), the
/// same host's plain-HTTP origin counts too, on the same port or HTTP's default.
pub fn credentials_go_to(base: &Origin, url: &str, allow_plain_http: bool) -> bool {
    let Some(origin) = Origin::of(url) else {
        return false;
    };
    if origin == *base {
        return true;
    }
    allow_plain_http
        && base.is_https()
        && origin.scheme == Scheme::Http
        && origin.host == base.host
        && (origin.port == base.port || origin.port == 80)
}

/// What the registry handed back that pointed somewhere, for the error that refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointer {
    Redirect,
    UploadLocation,
    TokenRealm,
    /// A URL from anywhere else (a saved session from an earlier run, for one).
    Request,
}

/// A plain-HTTP `url` reached from an `https://` registry: refused with an error naming
/// the registry's misconfiguration, unless plain HTTP is allowed (then `Ok(true)`: the
/// caller warns). `Ok(false)` when there is no downgrade.
pub fn check_downgrade(
    base: &Origin,
    url: &str,
    pointer: Pointer,
    allow_plain_http: bool,
) -> Result<bool> {
    let downgrade =
        base.is_https() && Origin::of(url).is_none_or(|origin| origin.scheme != Scheme::Https);
    if !downgrade {
        return Ok(false);
    }
    if allow_plain_http {
        return Ok(true);
    }
    let registry = authority(base);
    let shown = redact_url(url);
    let (what, fix) = match pointer {
        Pointer::Redirect => (
            format!("redirected to plain {shown}"),
            "its TLS proxy or storage redirect must use https://",
        ),
        Pointer::UploadLocation => (
            format!("answered an upload Location on plain {shown}"),
            "its TLS proxy must set X-Forwarded-Proto (or the registry its http.host to https://)",
        ),
        Pointer::TokenRealm => (
            format!("sent clients to a token service on plain {shown}"),
            "its auth.token.realm must be an https:// URL",
        ),
        Pointer::Request => (
            format!("was to be reached at plain {shown}"),
            "the URL must be https://",
        ),
    };
    Err(Error::registry(format!(
        "{registry} {what}: {fix}; refusing to send credentials and layer data without TLS"
    ))
    .hint(
        "fix the registry; to send them in the clear anyway, add --insecure to the https:// target",
    ))
}

/// A URL the registry pointed us to that the HTTP client cannot send to is the registry's
/// fault (or its proxy's): a registry error naming what it sent, never a usage error.
pub fn check_parsable(base: &Origin, url: &str, pointer: Pointer) -> Result<()> {
    let parsed = url.parse::<ureq::http::Uri>();
    if Origin::of(url).is_some() && parsed.is_ok_and(|uri| uri.host().is_some()) {
        return Ok(());
    }
    let what = match pointer {
        Pointer::Redirect => "redirected to a Location",
        Pointer::UploadLocation => "answered an upload Location",
        Pointer::TokenRealm => "named a token service",
        Pointer::Request => "was to be reached at an address",
    };
    Err(Error::registry(format!(
        "{} {what} that is not a URL: {}",
        authority(base),
        crate::text::sanitize::sanitize(&redact_url(url))
    ))
    .hint("the registry or the proxy in front of it is misconfigured; tell its operator"))
}

/// The message that goes with a downgrade the user allowed.
pub fn downgrade_warning(base: &Origin, url: &str) -> String {
    format!(
        "--insecure: {} sent this transfer to plain {}; credentials and layer data cross the network unencrypted",
        authority(base),
        super::auth::host_of(url)
    )
}

fn authority(origin: &Origin) -> String {
    let default = if origin.is_https() { 443 } else { 80 };
    if origin.port == default {
        origin.host.clone()
    } else {
        format!("{}:{}", origin.host, origin.port)
    }
}

/// URLs in logs and messages lose their query (upload state tokens and signed storage
/// URLs live there) and any `user:password@`.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((_, host)) => {
            let path = &rest[authority.len()..];
            let scheme = if scheme.is_empty() {
                String::new()
            } else {
                format!("{scheme}://")
            };
            format!("{scheme}{host}{path}").into()
        }
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_never_show_query_strings_or_passwords() {
        assert_eq!(
            redact_url("https://h/v2/x?_state=secret&digest=1"),
            "https://h/v2/x"
        );
        assert_eq!(
            redact_url("https://user:secret@h:5000/v2/x?y=1"),
            "https://h:5000/v2/x"
        );
        assert_eq!(redact_url("token@h/v2/x"), "h/v2/x");
        assert_eq!(redact_url("https://h/v2/a@b"), "https://h/v2/a@b");
    }

    fn origin(url: &str) -> Origin {
        Origin::of(url).unwrap()
    }

    #[test]
    fn origins_are_scheme_host_and_port_with_defaults() {
        assert_eq!(
            origin("https://Registry.Example/v2/"),
            origin("https://registry.example:443/v2/x")
        );
        assert_ne!(
            origin("https://registry.example/"),
            origin("http://registry.example/")
        );
        assert_ne!(
            origin("https://registry.example:443/"),
            origin("http://registry.example:443/")
        );
        assert_ne!(
            origin("https://registry.example/"),
            origin("https://registry.example:5000/")
        );
        assert_eq!(origin("http://[::1]:5000/v2/").host, "[::1]");
        assert_eq!(origin("http://[::1]/v2/").port, 80);
        assert_eq!(
            origin("https://user:pw@evil.example/x").host,
            "evil.example"
        );
        assert!(Origin::of("ftp://h/x").is_none());
        assert!(Origin::of("/v2/relative").is_none());
        assert!(Origin::of("https://h:notaport/").is_none());
    }

    #[test]
    fn credentials_go_only_to_the_exact_origin() {
        let base = origin("https://registry.example:5000");
        assert!(credentials_go_to(
            &base,
            "https://registry.example:5000/v2/a",
            false
        ));
        assert!(credentials_go_to(
            &base,
            "https://REGISTRY.example:5000/v2/a",
            false
        ));
        for other in [
            "http://registry.example:5000/v2/a",
            "http://registry.example/v2/a",
            "https://registry.example/v2/a",
            "https://registry.example:5001/v2/a",
            "https://storage.example:5000/v2/a",
            "https://registry.example:5000@evil.example/v2/a",
            "not a url",
        ] {
            assert!(!credentials_go_to(&base, other, false), "{other}");
        }
        // Allowed plain HTTP widens the origin to the same host in the clear, nothing more.
        assert!(credentials_go_to(
            &base,
            "http://registry.example:5000/v2/a",
            true
        ));
        assert!(credentials_go_to(
            &base,
            "http://registry.example/v2/a",
            true
        ));
        assert!(!credentials_go_to(
            &base,
            "http://registry.example:8080/v2/a",
            true
        ));
        assert!(!credentials_go_to(&base, "http://evil.example/v2/a", true));
        let plain = origin("http://registry.example");
        assert!(!credentials_go_to(
            &plain,
            "https://registry.example/v2/a",
            true
        ));
    }

    #[test]
    fn a_plain_http_pointer_from_an_https_registry_is_refused_by_name() {
        let base = origin("https://registry.example");
        let err = check_downgrade(
            &base,
            "http://registry.example/v2/a/blobs/uploads/u?_state=secret",
            Pointer::UploadLocation,
            false,
        )
        .unwrap_err();
        assert_eq!(err.class, crate::error::Class::Registry);
        assert!(err.message.starts_with("registry.example answered an upload Location on plain http://registry.example/v2/a/blobs/uploads/u:"), "{}", err.message);
        assert!(err.message.contains("X-Forwarded-Proto"), "{}", err.message);
        assert!(!err.message.contains("secret"), "{}", err.message);
        let realm = check_downgrade(
            &base,
            "http://auth.example/token",
            Pointer::TokenRealm,
            false,
        )
        .unwrap_err();
        assert!(realm.message.contains("realm"), "{}", realm.message);
        let redirect =
            check_downgrade(&base, "http://cdn.example/b", Pointer::Redirect, false).unwrap_err();
        assert!(
            redirect.message.contains("redirected"),
            "{}",
            redirect.message
        );
    }

    #[test]
    fn https_pointers_and_plain_registries_are_no_downgrade() {
        let base = origin("https://registry.example");
        for url in [
            "https://auth.example/token",
            "https://registry.example:8443/x",
        ] {
            assert!(!check_downgrade(&base, url, Pointer::TokenRealm, false).unwrap());
        }
        let plain = origin("http://registry.example:5000");
        assert!(!check_downgrade(&plain, "http://other/x", Pointer::Redirect, false).unwrap());
        assert!(
            check_downgrade(&base, "http://registry.example/x", Pointer::Redirect, true).unwrap()
        );
    }
}
