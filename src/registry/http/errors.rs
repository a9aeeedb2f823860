//! Failed exchanges turned into errors that name the host and a likely fix, and registry
//! error bodies made safe to print.

use std::io;

use super::auth;
use crate::error::Error;
use crate::text::sanitize::{sanitize, sanitize_to};

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

pub(crate) fn is_transient(error: &Error) -> bool {
    !error.message.contains("cannot resolve")
        && !error.message.contains("certificate")
        && !error.message.contains("TLS")
}

/// A TLS handshake answered in plain HTTP fails with a record of the wrong content type;
/// any other TLS failure (an untrusted certificate above all) is not a scheme mix-up.
pub(crate) fn looks_like_plain_http(error: &Error) -> bool {
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
pub(crate) fn is_lookup_failure(io: &io::Error) -> bool {
    let text = io.to_string().to_ascii_lowercase();
    text.contains("failed to lookup address")
        || text.contains("name or service not known")
        || text.contains("no address associated")
        || text.contains("temporary failure in name resolution")
}

pub(crate) fn tls_error(host: &str, what: &str) -> Error {
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

impl From<ureq::http::Error> for Error {
    fn from(err: ureq::http::Error) -> Error {
        Error::usage(format!("invalid request: {err}"))
    }
}
