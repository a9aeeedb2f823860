//! What goes over the wire: a request (method, URL, headers, body) and the response read
//! back, its error body capped.

use std::io::{self, Read};

use super::errors::{network_error, parse_error_body};
use super::retry::MinSpeed;
use crate::error::{Error, Result};

pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Reopened for every try, so a retried upload streams from the source again.
    Stream {
        open: &'a (dyn Fn() -> io::Result<Box<dyn Read + Send>> + Sync),
        length: u64,
    },
}

pub struct Request<'a> {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
    /// Token scopes this request needs (ignored for Basic auth and anonymous registries).
    pub scopes: &'a [String],
    /// Whether transient failures may be retried here. Uploads that the registry may have
    /// partly received say no and recover by asking the registry where it stands.
    pub retry: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: &'static str, url: String, scopes: &'a [String]) -> Request<'a> {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: Body::Empty,
            scopes,
            retry: true,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Body<'a>) -> Self {
        self.body = body;
        self
    }

    pub fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }
}

pub struct Response {
    pub status: u16,
    pub url: String,
    pub(super) headers: ureq::http::HeaderMap,
    pub(super) body: ureq::Body,
    pub(super) min_speed: MinSpeed,
}

/// Error bodies are short JSON documents; more than this is not worth reading.
pub(crate) const MAX_ERROR_BODY: u64 = 64 << 10;

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body, cut off with an error when it trickles slower than `--min-speed`.
    pub fn into_reader(self) -> impl Read + Send + 'static {
        self.min_speed.guard_download(self.body.into_reader())
    }

    /// Reads the body, refusing more than `limit` bytes.
    pub fn read_body(self, limit: u64) -> Result<Vec<u8>> {
        let url = self.url.clone();
        let mut body = Vec::new();
        self.into_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| network_error(ureq::Error::Io(e), &url))?;
        if body.len() as u64 > limit {
            return Err(Error::registry(format!(
                "the registry's answer is larger than {limit} bytes; refusing it"
            )));
        }
        Ok(body)
    }

    /// The registry's own explanation of an error (`{"errors":[{"code","message"}]}`).
    pub fn error_summary(self) -> (u16, Option<String>, String) {
        let status = self.status;
        let body = self.read_body(MAX_ERROR_BODY).unwrap_or_default();
        let (code, message) = parse_error_body(&body);
        (status, code, message)
    }
}
