//! Failed exchanges turned into errors that name the host and a likely fix, and registry
//! error bodies made safe to print.

use std::io;

use super::auth;
use crate::error::{self, Cause, Error, SourceEnded, TlsFailure};
use crate::text::sanitize::{sanitize, sanitize_to};

/// Extracts the first error's code and message from a distribution error body, made safe
/// to print (the registry wrote them, and they end up on the user's terminal).
pub fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default, deserialize_with = "crate::image::nullable::or_empty")]
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default, deserialize_with = "crate::image::nullable::or_empty")]
        code: String,
        #[serde(default, deserialize_with = "crate::image::nullable::or_empty")]
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
        _ => (None, sanitize(&first_line_of_text(body))),
    }
}

/// What a body that is not the registry's JSON says, in one line: the first line of its
/// text, with an HTML page's markup (a proxy's 413 or 502 page) left out, so the title
/// stands for the page and the page never reaches the terminal whole.
fn first_line_of_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut plain = String::new();
    if text.trim_start().starts_with('<') {
        let mut in_tag = false;
        for c in text.chars() {
            match c {
                '<' => in_tag = true,
                '>' if in_tag => {
                    in_tag = false;
                    // Block elements end lines in a browser; a tag boundary is close enough.
                    plain.push('\n');
                }
                _ if !in_tag => plain.push(c),
                _ => {}
            }
        }
    } else {
        plain = text.into_owned();
    }
    plain
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// The standard reason phrase of an HTTP status (`Payload Too Large`), or nothing.
pub fn reason_phrase(status: u16) -> &'static str {
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Whether trying again may help: a name that does not resolve or a certificate that is
/// refused will fail the same way next time.
pub(crate) fn is_transient(error: &Error) -> bool {
    !matches!(error.cause, Some(Cause::Dns | Cause::Tls(_)))
}

/// A TLS handshake answered in plain HTTP fails with a record of the wrong content type;
/// any other TLS failure (an untrusted certificate above all) is not a scheme mix-up.
pub(crate) fn looks_like_plain_http(error: &Error) -> bool {
    error.cause == Some(Cause::Tls(TlsFailure::PlainHttp))
}

/// A plain-HTTP request that a TLS server refused (`what` is how it failed), with the
/// hint that mirrors the one for the opposite mistake.
pub(crate) fn tls_only_error(host: &str, what: &str) -> Error {
    let mut error = tls_error(host, TlsFailure::TlsOnly, what);
    error.message = format!("{host} speaks TLS, but was asked in plain HTTP ({what})");
    error
}

/// Maps a failed exchange to a network error that names the host and a likely fix.
pub fn network_error(err: ureq::Error, url: &str) -> Error {
    let host = auth::host_of(url).to_string();
    if let ureq::Error::Io(io) = &err {
        if crate::interrupt::Stopped::is(io) {
            return Error::interrupted("stopped by a signal");
        }
        if let Some(mismatch) = crate::image::digest::find_mismatch(io) {
            return Error::caused(
                Cause::SourceCorrupt,
                format!("source blob is corrupt: {mismatch}"),
            )
            .hint("the archive or cache is damaged; save or copy it again");
        }
        if io.kind() == io::ErrorKind::UnexpectedEof && error::find::<SourceEnded>(io).is_some() {
            return Error::caused(
                Cause::SourceTruncated,
                format!("reading the source failed: {io}"),
            )
            .hint("the archive is truncated; copy it again");
        }
        if let Some(tls) = error::find::<rustls::Error>(io) {
            return tls_error(&host, tls_failure(tls), &io.to_string());
        }
    }
    match err {
        ureq::Error::HostNotFound => {
            Error::caused(Cause::Dns, format!("cannot resolve host {host}"))
                .hint("check the registry name and your DNS settings")
        }
        ureq::Error::ConnectionFailed => {
            Error::caused(Cause::Refused, format!("cannot connect to {host}"))
                .hint("check the address and port, and that the registry is running")
        }
        ureq::Error::Timeout(which) => Error::caused(
            Cause::Timeout,
            format!("{host} did not answer in time ({which:?} timeout)"),
        )
        .hint("the link is slow or the registry is stuck; raise --timeout or try again"),
        ureq::Error::Rustls(tls) => tls_error(&host, tls_failure(&tls), &tls.to_string()),
        ureq::Error::Tls(what) => tls_error(&host, TlsFailure::Other, what),
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
            Error::caused(Cause::Refused, format!("{host} refused the connection"))
                .hint("check the address and port, and that the registry is running")
        }
        ureq::Error::Io(io) => {
            Error::caused(Cause::Dropped, format!("connection to {host} failed: {io}"))
                .hint("the link dropped; run the same command again to resume")
        }
        other => Error::network(format!("request to {host} failed: {other}")),
    }
}

/// What a TLS failure asks the user to fix, from rustls's own error type.
pub(crate) fn tls_failure(error: &rustls::Error) -> TlsFailure {
    use rustls::{CertificateError, InvalidMessage};
    match error {
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType) => TlsFailure::PlainHttp,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => TlsFailure::WrongName,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => TlsFailure::Untrusted,
        _ => TlsFailure::Other,
    }
}

pub(crate) fn tls_error(host: &str, failure: TlsFailure, what: &str) -> Error {
    let hint = match failure {
        TlsFailure::WrongName => {
            "the certificate does not name this host; use the name it was issued for"
        }
        TlsFailure::Untrusted => {
            "the certificate is not trusted; pass the registry's CA with --ca-cert FILE (or --skip-tls to disable checks)"
        }
        TlsFailure::PlainHttp => {
            "the server does not speak TLS; use an http:// target or --insecure for a plain-HTTP registry"
        }
        TlsFailure::TlsOnly => {
            "the registry speaks TLS: drop --insecure (and any http:// from the target)"
        }
        TlsFailure::Other => "check the registry's certificate, or pass its CA with --ca-cert FILE",
    };
    Error::caused(
        Cause::Tls(failure),
        format!("TLS with {host} failed: {what}"),
    )
    .hint(hint)
}
