//! Where a response points: redirects and `Location` headers resolved against the URL
//! they answered.

use super::request::Response;

pub(crate) fn redirect_target(response: &Response) -> Option<String> {
    if matches!(response.status, 301 | 302 | 303 | 307 | 308) {
        response.header("location").map(str::to_string)
    } else {
        None
    }
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
