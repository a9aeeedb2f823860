//! What the user sees while a transfer runs. Everything goes to stderr except the final
//! result (the `tag: digest: ... size: N` line or the `--json` summary), which goes to
//! stdout so scripts can capture it.
//!
//! On a terminal, a live block at the bottom (overall bar, workers, one line per running
//! layer) is redrawn in place while finished layers and messages scroll above it. In a
//! log or pipe there are no control codes: one line per layer event and a summary line
//! every few seconds. The rendering is pure (state in, lines out); `Reporter` does the I/O.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::image::Blob;
use crate::pool::monitor::{Analytics, Change, Status, Tasks, Trend};
use crate::pool::scheduler::SizeClass;
use crate::text::units::{human_duration, human_rate};
use crate::transfer::upload::Wait;

mod analytics;
mod live;
pub use analytics::*;
pub use live::*;

pub use crate::text::units::human_bytes;

/// Seconds between summary lines when the output is not a terminal.
pub const SUMMARY_EVERY: f64 = 10.0;
/// Running layers shown in the live block; the rest are counted.
const MAX_LAYER_LINES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// How progress reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A terminal: the live block, redrawn in place.
    Live { color: bool, width: usize },
    /// A log or a pipe: plain lines only.
    Lines,
}

impl Display {
    /// Live only on a real terminal (not `TERM=dumb`); colour unless `NO_COLOR` is set to
    /// anything non-empty (no-color.org); the width from `COLUMNS`, else 80.
    pub fn choose(
        stderr_is_terminal: bool,
        term: Option<&str>,
        no_color: Option<&str>,
        columns: Option<&str>,
    ) -> Display {
        if !stderr_is_terminal || term == Some("dumb") {
            return Display::Lines;
        }
        let width = columns
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|&w| w >= 20)
            .unwrap_or(80);
        Display::Live {
            color: no_color.is_none_or(str::is_empty),
            width,
        }
    }
}

/// Shared transfer counters, read by the progress display and the monitor.
#[derive(Default)]
pub struct Counters {
    /// Bytes handed to the network, resends included.
    pub sent: AtomicU64,
    /// Bytes that will be sent again because the registry lost them.
    pub rewound: AtomicU64,
    /// Nanoseconds workers spent on each [`Wait`], summed over workers.
    waits: [AtomicU64; 3],
}

impl Counters {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn add_wait(&self, what: Wait, seconds: f64) {
        let slot = match what {
            Wait::Source => 0,
            Wait::Network => 1,
            Wait::Compressed => 2,
        };
        if seconds.is_finite() && seconds > 0.0 {
            self.waits[slot].fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
        }
    }

    /// Seconds spent reading sources, on the network, and waiting for compressed data.
    pub fn waits(&self) -> [f64; 3] {
        self.waits
            .each_ref()
            .map(|w| w.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Running,
    Done,
}

struct Layer {
    id: String,
    size: u64,
    /// Bytes of this blob the registry holds or is receiving, net of rewinds.
    position: Arc<AtomicU64>,
    phase: Phase,
}

/// What is on the terminal now.
#[derive(Default)]
struct Screen {
    /// The live block as last drawn (empty when nothing is drawn).
    block: Vec<String>,
    /// When the last summary line went out (non-terminal output).
    last_summary: f64,
}

pub struct Reporter {
    verbosity: Verbosity,
    display: Display,
    started: Instant,
    pub counters: Counters,
    layers: Mutex<Vec<Layer>>,
    screen: Mutex<Screen>,
}

impl Reporter {
    /// Plain line output (the right choice when stderr is not a terminal).
    pub fn new(verbosity: Verbosity) -> Reporter {
        Reporter::with_display(verbosity, Display::Lines)
    }

    pub fn with_display(verbosity: Verbosity, display: Display) -> Reporter {
        Reporter {
            verbosity,
            display,
            started: Instant::now(),
            counters: Counters::default(),
            layers: Mutex::new(Vec::new()),
            screen: Mutex::new(Screen::default()),
        }
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    fn screen(&self) -> MutexGuard<'_, Screen> {
        self.screen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn layers(&self) -> MutexGuard<'_, Vec<Layer>> {
        self.layers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a message line; on a terminal it goes above the live block, which is redrawn
    /// beneath it.
    fn print(&self, line: &str) {
        let screen = self.screen();
        let mut stderr = std::io::stderr().lock();
        let mut text = erase(screen.block.len());
        text.push_str(&crate::text::sanitize::inert_lines(line));
        text.push('\n');
        for drawn in &screen.block {
            text.push_str(drawn);
            text.push('\n');
        }
        let _ = stderr.write_all(text.as_bytes());
        let _ = stderr.flush();
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

    /// A warning about the user's safety (TLS off, a password on the command line): shown
    /// even with `--quiet`, as scripts that silence progress still need to hear it.
    pub fn security_warning(&self, line: &str) {
        self.print(&format!("warning: {line}"));
    }

    /// The final result line on stdout (also shown with `--quiet`). A closed stdout
    /// (`| head`) is ignored: the work is done, and the reader has gone.
    pub fn result(&self, line: &str) {
        let _guard = self.screen();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", crate::text::sanitize::inert_lines(line));
        let _ = stdout.flush();
    }

    /// Starts tracking the blobs of a transfer (index = position in `blobs`).
    pub fn begin_layers(&self, blobs: &[Blob]) {
        *self.layers() = blobs
            .iter()
            .map(|blob| Layer {
                id: blob.digest.short().to_string(),
                size: blob.size,
                position: Arc::new(AtomicU64::new(0)),
                phase: Phase::Queued,
            })
            .collect();
    }

    /// The progress sink for one blob's upload: feeds the shared counters and the blob's
    /// own line.
    pub fn layer_progress(
        self: &Arc<Self>,
        index: usize,
    ) -> Arc<dyn crate::transfer::upload::Progress> {
        let position = self
            .layers()
            .get(index)
            .map(|l| l.position.clone())
            .unwrap_or_default();
        Arc::new(LayerProgress {
            reporter: self.clone(),
            position,
            scale: AtomicU64::new(1f64.to_bits()),
        })
    }

    pub fn layer_started(&self, index: usize) {
        let event = {
            let mut layers = self.layers();
            let Some(layer) = layers.get_mut(index) else {
                return;
            };
            layer.phase = Phase::Running;
            format!("{}: started ({})", layer.id, human_bytes(layer.size))
        };
        // On a terminal the live block shows it; elsewhere it is a layer event line.
        if self.display == Display::Lines {
            self.info(&event);
        }
    }

    /// Marks a blob finished and prints `event`.
    pub fn layer_finished(&self, index: usize, event: &str) {
        if let Some(layer) = self.layers().get_mut(index) {
            layer.phase = Phase::Done;
            layer.position.store(layer.size, Ordering::Relaxed);
        }
        if !event.is_empty() {
            self.info(event);
        }
    }

    /// Called by the monitor every tick: redraws the live block, or prints a summary line
    /// now and then when the output is not a terminal; logs controller changes.
    pub fn tick(&self, status: &Status, change: Option<&Change>) {
        if let Some(change) = change {
            self.detail(&describe_change(change));
        }
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        let view = self.view(status);
        match self.display {
            Display::Live { color, width } => {
                let lines = render_live(&view, width, color);
                let mut screen = self.screen();
                let mut text = erase(screen.block.len());
                for line in &lines {
                    text.push_str(line);
                    text.push('\n');
                }
                screen.block = lines;
                let mut stderr = std::io::stderr().lock();
                let _ = stderr.write_all(text.as_bytes());
                let _ = stderr.flush();
            }
            Display::Lines => {
                let due = {
                    let mut screen = self.screen();
                    let due = status.elapsed - screen.last_summary >= SUMMARY_EVERY;
                    if due {
                        screen.last_summary = status.elapsed;
                    }
                    due
                };
                if due {
                    self.print(&render_summary(&view));
                }
            }
        }
    }

    /// The `--verbose` report at the end of a transfer of blobs of these sizes.
    pub fn report_analytics(&self, analytics: &Analytics, sizes: impl IntoIterator<Item = u64>) {
        for line in render_analytics(analytics, &class_counts(sizes)) {
            self.detail(&line);
        }
    }

    /// Removes the live block (the transfer is over, or failed).
    pub fn finish_live(&self) {
        let mut screen = self.screen();
        if screen.block.is_empty() {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(erase(screen.block.len()).as_bytes());
        let _ = stderr.flush();
        screen.block.clear();
    }

    fn view(&self, status: &Status) -> View {
        let layers = self.layers();
        let total = layers.iter().map(|l| l.size).sum();
        let position = |l: &Layer| l.position.load(Ordering::Relaxed).min(l.size);
        View {
            status: status.clone(),
            done: layers.iter().map(position).sum(),
            total,
            sent: self.counters.sent(),
            tasks: Tasks {
                total: layers.len(),
                done: layers.iter().filter(|l| l.phase == Phase::Done).count(),
                active: layers.iter().filter(|l| l.phase == Phase::Running).count(),
            },
            running: layers
                .iter()
                .filter(|l| l.phase == Phase::Running)
                .map(|l| LayerView {
                    id: l.id.clone(),
                    size: l.size,
                    done: position(l),
                })
                .collect(),
        }
    }
}

/// Moves the cursor to the start of a block of `lines` lines drawn just above it and
/// clears from there down.
fn erase(lines: usize) -> String {
    if lines == 0 {
        String::new()
    } else {
        format!("\x1b[{lines}A\r\x1b[J")
    }
}

impl crate::transfer::upload::Progress for Reporter {
    fn sent(&self, bytes: u64) {
        self.counters.sent.fetch_add(bytes, Ordering::Relaxed);
    }

    fn rewound(&self, bytes: u64) {
        self.counters.rewound.fetch_add(bytes, Ordering::Relaxed);
    }

    fn waited(&self, what: Wait, seconds: f64) {
        self.counters.add_wait(what, seconds);
    }

    fn note(&self, message: &str) {
        self.info(message);
    }
}

struct LayerProgress {
    reporter: Arc<Reporter>,
    position: Arc<AtomicU64>,
    /// Layer bytes per byte sent (f64 bits): 1 unless the layer is compressed on the way.
    scale: AtomicU64,
}

impl LayerProgress {
    fn scaled(&self, bytes: u64) -> u64 {
        (bytes as f64 * f64::from_bits(self.scale.load(Ordering::Relaxed))).round() as u64
    }
}

impl crate::transfer::upload::Progress for LayerProgress {
    fn sent(&self, bytes: u64) {
        self.reporter.sent(bytes);
        self.position
            .fetch_add(self.scaled(bytes), Ordering::Relaxed);
    }

    fn rewound(&self, bytes: u64) {
        self.reporter.rewound(bytes);
        let bytes = self.scaled(bytes);
        let _ = self
            .position
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(bytes))
            });
    }

    fn scale(&self, source_bytes_per_byte: f64) {
        if source_bytes_per_byte.is_finite() && source_bytes_per_byte > 0.0 {
            self.scale
                .store(source_bytes_per_byte.to_bits(), Ordering::Relaxed);
        }
    }

    fn waited(&self, what: Wait, seconds: f64) {
        // A layer compressed on the way reads its body from the compressed stream.
        let compressed = f64::from_bits(self.scale.load(Ordering::Relaxed)) != 1.0;
        let what = match what {
            Wait::Source if compressed => Wait::Compressed,
            other => other,
        };
        self.reporter.waited(what, seconds);
    }

    fn note(&self, message: &str) {
        self.reporter.note(message);
    }
}

#[cfg(test)]
mod tests;
