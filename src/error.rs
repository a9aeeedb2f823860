//! One error type for the whole tool. Every error belongs to a class that decides the
//! process exit code, so scripts can tell "fix your command line" from "the network is down".
//! Where the failure has a typed cause (from ureq's and io's error types, never from message
//! text), the error carries it and the class follows from it.

use std::fmt;

/// What kind of failure this is, from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The command line is wrong (argh also exits 2 for these).
    Usage,
    /// The archive, cache or local file is unreadable, malformed or corrupt.
    Input,
    /// Credentials were refused or lack permission.
    Auth,
    /// The registry could not be reached or the connection failed.
    Network,
    /// The registry answered, but with an error we cannot work around.
    Registry,
    /// The user pressed Ctrl-C; state was saved.
    Interrupted,
}

impl Class {
    pub fn exit_code(self) -> i32 {
        match self {
            Class::Usage => 2,
            Class::Input => 3,
            Class::Auth => 4,
            Class::Network => 5,
            Class::Registry => 6,
            Class::Interrupted => 130,
        }
    }
}

/// Why an exchange or a read failed, as far as the error types tell. Code that decides
/// (retry or not, which hint, which exit code) matches on this, not on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The registry's host name did not resolve.
    Dns,
    /// The TLS handshake failed.
    Tls(TlsFailure),
    /// No connection could be made: refused, or no address answered.
    Refused,
    /// The registry did not answer in time.
    Timeout,
    /// An open connection failed mid-exchange.
    Dropped,
    /// The registry answered with this HTTP status.
    Status(u16),
    /// The source (archive or cache) holds bytes that do not match their digest.
    SourceCorrupt,
    /// The source (archive or cache) ended early.
    SourceTruncated,
    /// A manifest in the source lists a different number of layers than its config.
    LayerCountMismatch,
    /// A stop request (Ctrl-C, SIGTERM, a deadline) ended the work at a safe point.
    Stopped,
}

/// What about a TLS handshake failed, for the hint that fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server answered in plain HTTP.
    PlainHttp,
    /// The other way round: a plain-HTTP request reached a server that speaks TLS.
    TlsOnly,
    /// The certificate chains to no trusted CA.
    Untrusted,
    /// The certificate does not name this host.
    WrongName,
    Other,
}

impl Cause {
    /// The class, and so the exit code, an error with this cause has.
    pub fn class(self) -> Class {
        match self {
            Cause::Dns | Cause::Tls(_) | Cause::Refused | Cause::Timeout | Cause::Dropped => {
                Class::Network
            }
            Cause::Status(401 | 403) => Class::Auth,
            Cause::Status(_) => Class::Registry,
            Cause::SourceCorrupt | Cause::SourceTruncated | Cause::LayerCountMismatch => {
                Class::Input
            }
            Cause::Stopped => Class::Interrupted,
        }
    }
}

/// An error with a message for the person at the terminal and, where we know one, the
/// likely fix. Both render on one line.
#[derive(Debug, Clone)]
pub struct Error {
    pub class: Class,
    /// Set where the failure came from a typed error; `class` is then `cause.class()`.
    pub cause: Option<Cause>,
    pub message: String,
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(class: Class, message: impl Into<String>) -> Error {
        Error {
            class,
            cause: None,
            message: message.into(),
            hint: None,
        }
    }

    /// An error whose class follows from its cause.
    pub fn caused(cause: Cause, message: impl Into<String>) -> Error {
        Error {
            cause: Some(cause),
            ..Error::new(cause.class(), message)
        }
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Class::Usage, message)
    }

    pub fn input(message: impl Into<String>) -> Error {
        Error::new(Class::Input, message)
    }

    pub fn auth(message: impl Into<String>) -> Error {
        Error::new(Class::Auth, message)
    }

    pub fn network(message: impl Into<String>) -> Error {
        Error::new(Class::Network, message)
    }

    pub fn registry(message: impl Into<String>) -> Error {
        Error::new(Class::Registry, message)
    }

    pub fn interrupted(message: impl Into<String>) -> Error {
        Error::caused(Cause::Stopped, message)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// Prefixes the message with where the failure happened, keeping class and hint.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.class.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, always: newlines from remote error bodies would break log parsers.
        // A detail that turned out empty must not leave "...failed:" dangling.
        let message = one_line(&self.message);
        let message = message.trim_end_matches([':', ' ']);
        match &self.hint {
            Some(hint) => write!(f, "{message} ({})", one_line(hint)),
            None => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Carried inside the `io::Error` of a source (archive) that ended early, so a request
/// whose body failed that way is reported as a damaged source, not as a network failure.
#[derive(Debug, Clone, Copy)]
pub struct SourceEnded(pub &'static str);

impl fmt::Display for SourceEnded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for SourceEnded {}

impl SourceEnded {
    pub fn io_error(what: &'static str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, SourceEnded(what))
    }
}

/// Finds an error of type `T` in `err` or what it wraps, stepping into `io::Error`s (whose
/// `source` skips the error they carry).
pub fn find<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Describes an I/O error on a local path for the user.
pub fn io_error(action: &str, path: &std::path::Path, err: std::io::Error) -> Error {
    let hint = match err.kind() {
        std::io::ErrorKind::NotFound => Some("check the path"),
        std::io::ErrorKind::PermissionDenied => Some("check the file permissions"),
        std::io::ErrorKind::UnexpectedEof => Some("the file is truncated; copy it again"),
        _ => None,
    };
    let mut error = Error::input(format!("cannot {action} {}: {err}", path.display()));
    if err.kind() == std::io::ErrorKind::UnexpectedEof {
        error.cause = Some(Cause::SourceTruncated);
    }
    match hint {
        Some(hint) => error.hint(hint),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_whose_detail_is_empty_never_ends_in_a_colon() {
        let empty_body = Error::registry(format!("GET /v2/ failed: {}", ""));
        assert_eq!(empty_body.to_string(), "GET /v2/ failed");
        let with_hint = Error::network("")
            .context("pinging r.example")
            .hint("try again");
        assert_eq!(with_hint.to_string(), "pinging r.example (try again)");
    }

    #[test]
    fn every_class_has_a_distinct_exit_code() {
        let classes = [
            Class::Usage,
            Class::Input,
            Class::Auth,
            Class::Network,
            Class::Registry,
            Class::Interrupted,
        ];
        let mut codes: Vec<i32> = classes.iter().map(|c| c.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), classes.len());
        assert!(!codes.contains(&0) && !codes.contains(&1));
    }

    #[test]
    fn the_class_follows_the_cause() {
        assert_eq!(Error::caused(Cause::Dns, "x").exit_code(), 5);
        assert_eq!(
            Error::caused(Cause::Tls(TlsFailure::Untrusted), "x").exit_code(),
            5
        );
        assert_eq!(Error::caused(Cause::Status(401), "x").exit_code(), 4);
        assert_eq!(Error::caused(Cause::Status(500), "x").exit_code(), 6);
        assert_eq!(Error::caused(Cause::SourceTruncated, "x").exit_code(), 3);
        assert_eq!(Error::interrupted("x").cause, Some(Cause::Stopped));
        assert_eq!(Error::interrupted("x").exit_code(), 130);
    }

    #[test]
    fn display_is_a_single_line_with_the_hint() {
        let err = Error::registry("server said:\n  boom\n").hint("try\nagain");
        assert_eq!(err.to_string(), "server said: boom (try again)");
    }
}
