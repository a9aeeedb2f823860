use super::*;
use crate::registry::http::errors::{tls_error, tls_failure};
use crate::registry::http::tls::is_loopback_host;

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
    let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
    let plain = tls_error("h:1", tls_failure(&plain), &plain.to_string());
    assert!(looks_like_plain_http(&plain));
    let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
    let untrusted = tls_error("h:1", tls_failure(&untrusted), &untrusted.to_string());
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
fn html_error_pages_come_down_to_their_first_line_of_text() {
    let nginx = b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";
    assert_eq!(
        parse_error_body(nginx),
        (None, "413 Request Entity Too Large".into())
    );
    let (_, text) = parse_error_body(b"\n\nbad gateway\nupstream went away\n");
    assert_eq!(text, "bad gateway");
    assert_eq!(parse_error_body(b"<html><body></body></html>").1, "");
}

#[test]
fn error_bodies_lose_their_escape_sequences_and_length() {
    let hostile =
        "{\"errors\":[{\"code\":\"DENIED\\u001b[2J\",\"message\":\"no\\u001b]0;pwned\\u0007\"}]}";
    let (code, message) = parse_error_body(hostile.as_bytes());
    assert_eq!(code.as_deref(), Some("DENIED\u{FFFD}[2J"));
    assert_eq!(message, "no\u{FFFD}]0;pwned\u{FFFD}");
    let (_, message) = parse_error_body(format!("<html>\x1b[31m{}", "x".repeat(10_000)).as_bytes());
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
