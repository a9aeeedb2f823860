//! What the user sees while a transfer runs. Everything goes to stderr except the final
//! result (the `tag: digest: ... size: N` line or the `--json` summary), which goes to
//! stdout so scripts can capture it.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Shared transfer counters, read by the progress display and the monitor.
#[derive(Default)]
pub struct Counters {
    /// Bytes handed to the network, resends included.
    pub sent: AtomicU64,
    /// Bytes that will be sent again because the registry lost them.
    pub rewound: AtomicU64,
}

impl Counters {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

pub struct Reporter {
    verbosity: Verbosity,
    started: Instant,
    pub counters: Counters,
    out: Mutex<()>,
}

impl Reporter {
    pub fn new(verbosity: Verbosity) -> Reporter {
        Reporter {
            verbosity,
            started: Instant::now(),
            counters: Counters::default(),
            out: Mutex::new(()),
        }
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    fn print(&self, line: &str) {
        let _guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    }

    /// Normal progress messages (hidden by `--quiet`).
    pub fn info(&self, line: &str) {
        if self.verbosity >= Verbosity::Normal {
            self.print(line);
        }
    }

    /// Details shown only with `--verbose` (the per-request log among them).
    pub fn detail(&self, line: &str) {
        if self.verbosity >= Verbosity::Verbose {
            self.print(line);
        }
    }

    pub fn warn(&self, line: &str) {
        if self.verbosity >= Verbosity::Normal {
            self.print(&format!("warning: {line}"));
        }
    }

    /// The final result line on stdout (also shown with `--quiet`).
    pub fn result(&self, line: &str) {
        let _guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
}

impl crate::upload::Progress for Reporter {
    fn sent(&self, bytes: u64) {
        self.counters.sent.fetch_add(bytes, Ordering::Relaxed);
    }

    fn rewound(&self, bytes: u64) {
        self.counters.rewound.fetch_add(bytes, Ordering::Relaxed);
    }

    fn note(&self, message: &str) {
        self.info(message);
    }
}

/// Human-readable byte counts, as docker prints them (base 1000 like docker's `units`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_like_docker() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(2_000_000_000), "2.0 GB");
    }
}
