//! One error type for the whole tool. Every error belongs to a class that decides the
//! process exit code, so scripts can tell "fix your command line" from "the network is down".

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

/// An error with a message for the person at the terminal and, where we know one, the
/// likely fix. Both render on one line.
#[derive(Debug, Clone)]
pub struct Error {
    pub class: Class,
    pub message: String,
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(class: Class, message: impl Into<String>) -> Error {
        Error {
            class,
            message: message.into(),
            hint: None,
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
        Error::new(Class::Interrupted, message)
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
        let message = one_line(&self.message);
        match &self.hint {
            Some(hint) => write!(f, "{message} ({})", one_line(hint)),
            None => f.write_str(&message),
        }
    }
}

impl std::error::Error for Error {}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Describes an I/O error on a local path for the user.
pub fn io_error(action: &str, path: &std::path::Path, err: std::io::Error) -> Error {
    let hint = match err.kind() {
        std::io::ErrorKind::NotFound => Some("check the path"),
        std::io::ErrorKind::PermissionDenied => Some("check the file permissions"),
        std::io::ErrorKind::UnexpectedEof => Some("the file is truncated; copy it again"),
        _ => None,
    };
    let error = Error::input(format!("cannot {action} {}: {err}", path.display()));
    match hint {
        Some(hint) => error.hint(hint),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn display_is_a_single_line_with_the_hint() {
        let err = Error::registry("server said:\n  boom\n").hint("try\nagain");
        assert_eq!(err.to_string(), "server said: boom (try again)");
    }
}
