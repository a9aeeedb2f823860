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
use crate::pool::monitor::{Analytics, Change, Status, Trend};
use crate::pool::scheduler::SizeClass;
use crate::text::units::{human_duration, human_rate};

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
}

impl Counters {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
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

    /// The final result line on stdout (also shown with `--quiet`).
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
        self.info(event);
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

    fn note(&self, message: &str) {
        self.reporter.note(message);
    }
}

/// Everything the renderers need.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub status: Status,
    /// Bytes of all blobs done or in flight, of `total`.
    pub done: u64,
    pub total: u64,
    /// Bytes handed to the network (fewer than `done` when layers are compressed).
    pub sent: u64,
    pub running: Vec<LayerView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LayerView {
    pub id: String,
    pub size: u64,
    pub done: u64,
}

const GREEN: &str = "32";
const RED: &str = "31";
const CYAN: &str = "36";

/// A line built from pieces, some coloured, cut to a width counted in characters (never
/// in escape codes).
#[derive(Default)]
struct Line {
    pieces: Vec<(String, Option<&'static str>)>,
}

impl Line {
    fn plain(mut self, text: impl Into<String>) -> Line {
        self.pieces.push((text.into(), None));
        self
    }

    fn colored(mut self, text: impl Into<String>, color: &'static str) -> Line {
        self.pieces.push((text.into(), Some(color)));
        self
    }

    fn len(&self) -> usize {
        self.pieces.iter().map(|(t, _)| t.chars().count()).sum()
    }

    fn finish(self, width: usize, color: bool) -> String {
        let mut room = width;
        let mut out = String::new();
        for (text, style) in self.pieces {
            if room == 0 {
                break;
            }
            let piece: String = text.chars().take(room).collect();
            room -= piece.chars().count();
            match style {
                Some(code) if color && !piece.is_empty() => {
                    out.push_str(&format!("\x1b[{code}m{piece}\x1b[0m"));
                }
                _ => out.push_str(&piece),
            }
        }
        out
    }
}

fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (done as u128 * 100 / total as u128) as u64
    }
}

/// `[=====>    ]` split into the filled part and the rest, `inner` characters inside.
fn bar(done: u64, total: u64, inner: usize) -> (String, String) {
    let filled = if total == 0 {
        inner
    } else {
        (done as u128 * inner as u128 / total as u128) as usize
    }
    .min(inner);
    let mut head = "=".repeat(filled);
    if filled < inner && filled > 0 {
        head.pop();
        head.push('>');
    }
    (head, " ".repeat(inner - filled))
}

fn arrow(trend: Trend) -> (&'static str, Option<&'static str>) {
    match trend {
        Trend::Rising => ("↑", Some(GREEN)),
        Trend::Steady => ("→", None),
        Trend::Falling => ("↓", Some(RED)),
    }
}

/// The ETA and, when the speed is known, how far to trust it.
fn eta(view: &View) -> (String, Option<String>) {
    let remaining = view.total.saturating_sub(view.done);
    if remaining == 0 {
        return ("ETA 0s".to_string(), None);
    }
    // Compressed layers count in their own bytes; the network moves fewer.
    let speed = match view.status.compression {
        Some(_) if view.sent > 0 && view.done > 0 => {
            view.status.speed * view.done as f64 / view.sent as f64
        }
        _ => view.status.speed,
    };
    if speed <= 0.0 {
        return ("ETA --".to_string(), None);
    }
    (
        format!("ETA {}", human_duration(remaining as f64 / speed)),
        Some(format!("({:.0}%)", view.status.confidence * 100.0)),
    )
}

fn eta_text(view: &View) -> String {
    match eta(view) {
        (eta, Some(confidence)) => format!("{eta} {confidence}"),
        (eta, None) => eta,
    }
}

fn workers(status: &Status) -> String {
    if status.strategy.is_some() {
        format!(
            "workers {}/{} (max {})",
            status.running, status.limit, status.max
        )
    } else {
        format!("workers {}/{}", status.running, status.limit)
    }
}

/// The live block: the overall bar, the workers and strategy, one line per running layer.
/// No line is wider than `width - 1` characters, so nothing wraps.
pub fn render_live(view: &View, width: usize, color: bool) -> Vec<String> {
    let width = width.max(20) - 1;
    let status = &view.status;
    let (symbol, arrow_color) = arrow(status.trend);
    let figures = format!(
        "{:>3}% {}/{} {} ",
        percent(view.done, view.total),
        human_bytes(view.done),
        human_bytes(view.total),
        human_rate(status.speed)
    );
    // On narrow terminals the ETA's confidence goes first, then the ETA.
    let text = figures.chars().count() + symbol.chars().count();
    let tail = match eta(view) {
        (eta, Some(confidence)) if text + eta.len() + confidence.len() + 2 <= width => {
            format!(" {eta} {confidence}")
        }
        (eta, _) if text + eta.len() < width => format!(" {eta}"),
        _ => String::new(),
    };
    let text_width = text + tail.chars().count();
    // The bar takes what the figures leave, up to 30 characters; below 5 it is dropped.
    let inner = width.saturating_sub(text_width + 3).min(30);
    let mut overall = Line::default();
    if inner >= 5 {
        let (head, rest) = bar(view.done, view.total, inner);
        overall = overall
            .plain("[")
            .colored(head, GREEN)
            .plain(format!("{rest}] "));
    }
    let overall = match arrow_color {
        Some(c) => overall.plain(figures).colored(symbol, c),
        None => overall.plain(figures).plain(symbol),
    }
    .plain(tail);
    let mut lines = vec![overall.finish(width, color)];

    let mut engine = Line::default().plain(workers(status));
    match status.strategy {
        Some(strategy) => engine = engine.plain("  ").colored(strategy.name(), CYAN),
        None => engine = engine.plain("  fixed"),
    }
    if let Some(compression) = &status.compression {
        engine = engine
            .plain(format!(
                "  compress {} ({:.0}%), bottleneck: ",
                human_rate(compression.speed),
                compression.ratio * 100.0
            ))
            .colored(compression.bottleneck.name(), CYAN);
    }
    lines.push(engine.finish(width, color));

    for layer in view.running.iter().take(MAX_LAYER_LINES) {
        let figures = format!(
            " {:>3}% {}/{}",
            percent(layer.done, layer.size),
            human_bytes(layer.done),
            human_bytes(layer.size)
        );
        let mut line = Line::default().plain(format!("  {} ", layer.id));
        let inner = width
            .saturating_sub(line.len() + figures.chars().count() + 2)
            .min(20);
        if inner >= 5 {
            let (head, rest) = bar(layer.done, layer.size, inner);
            line = line
                .plain("[")
                .colored(head, GREEN)
                .plain(format!("{rest}]"));
        }
        lines.push(line.plain(figures).finish(width, color));
    }
    if view.running.len() > MAX_LAYER_LINES {
        lines.push(
            Line::default()
                .plain(format!(
                    "  … and {} more",
                    view.running.len() - MAX_LAYER_LINES
                ))
                .finish(width, color),
        );
    }
    lines
}

/// The periodic line for logs and pipes.
pub fn render_summary(view: &View) -> String {
    let status = &view.status;
    let trend = match status.trend {
        Trend::Rising => "rising",
        Trend::Steady => "steady",
        Trend::Falling => "falling",
    };
    let mut engine = match status.strategy {
        Some(strategy) => format!("{}, {}", workers(status), strategy.name()),
        None => workers(status),
    };
    if let Some(c) = &status.compression {
        engine.push_str(&format!(
            "; compressing {} to {:.0}% ({} threads {:.0}% busy), bottleneck {}",
            human_rate(c.speed),
            c.ratio * 100.0,
            c.threads,
            c.busy * 100.0,
            c.bottleneck.name()
        ));
    }
    format!(
        "progress: {}% ({} of {}) at {} ({trend}); {engine}; {}",
        percent(view.done, view.total),
        human_bytes(view.done),
        human_bytes(view.total),
        human_rate(status.speed),
        eta_text(view)
    )
}

/// One controller change as a log line.
pub fn describe_change(change: &Change) -> String {
    let limit = if change.from == change.to {
        format!("{} workers", change.to)
    } else {
        format!("{} -> {} workers", change.from, change.to)
    };
    format!(
        "[monitor] {:.1}s {limit}, {}: {}",
        change.at_seconds,
        change.strategy.name(),
        change.reason
    )
}

/// How many blobs of each size class, and how many bytes: the order the pool works in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClassCount {
    pub class: SizeClass,
    pub blobs: usize,
    pub bytes: u64,
}

pub fn class_counts(sizes: impl IntoIterator<Item = u64>) -> Vec<ClassCount> {
    let mut counts: Vec<ClassCount> = SizeClass::ALL
        .iter()
        .rev()
        .map(|&class| ClassCount {
            class,
            blobs: 0,
            bytes: 0,
        })
        .collect();
    for size in sizes {
        if let Some(count) = counts.iter_mut().find(|c| c.class == SizeClass::of(size)) {
            count.blobs += 1;
            count.bytes += size;
        }
    }
    counts.retain(|c| c.blobs > 0);
    counts
}

fn confidence_word(r2: f64) -> &'static str {
    if r2 >= 0.8 {
        "high confidence"
    } else if r2 >= 0.5 {
        "medium confidence"
    } else {
        "low confidence"
    }
}

/// The `--verbose` report at the end of a transfer.
pub fn render_analytics(analytics: &Analytics, classes: &[ClassCount]) -> Vec<String> {
    let a = analytics;
    let efficiency = if a.peak_speed > 0.0 {
        a.average_speed / a.peak_speed * 100.0
    } else {
        100.0
    };
    let mode = if a.dynamic {
        format!("dynamic, ending at {}", a.final_limit)
    } else {
        format!("fixed at {}", a.final_limit)
    };
    let priority = if classes.is_empty() {
        "no blobs".to_string()
    } else {
        classes
            .iter()
            .map(|c| {
                let noun = if c.blobs == 1 { "blob" } else { "blobs" };
                format!(
                    "{} {} {noun}, {}",
                    c.class.name(),
                    c.blobs,
                    human_bytes(c.bytes)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut lines = vec![
        "transfer report:".to_string(),
        format!(
            "  pipeline speed     {} average, {} peak ({} sent in {})",
            human_rate(a.average_speed),
            human_rate(a.peak_speed),
            human_bytes(a.bytes_sent),
            human_duration(a.seconds)
        ),
        format!("  efficiency         {efficiency:.0}% of the peak speed"),
        format!(
            "  concurrency        {:.1} of {:.1} allowed workers busy on average ({:.0}% utilization); {mode}",
            a.mean_running,
            a.mean_limit,
            a.utilization * 100.0
        ),
        format!("  priority order     largest first: {priority}"),
        format!(
            "  speed trend        {}{}/min (R² {:.2}, {})",
            if a.trend_slope < 0.0 { "-" } else { "+" },
            human_rate(a.trend_slope.abs() * 60.0),
            a.trend_r2,
            confidence_word(a.trend_r2)
        ),
    ];
    if let Some(c) = &a.compression {
        let total = c.compression_bound_seconds + c.network_bound_seconds;
        let share = if total > 0.0 {
            let side = match c.bottleneck {
                crate::pool::monitor::Bottleneck::Compression => c.compression_bound_seconds,
                crate::pool::monitor::Bottleneck::Network => c.network_bound_seconds,
            };
            format!(" ({:.0}% of the time)", side / total * 100.0)
        } else {
            String::new()
        };
        lines.push(format!(
            "  compression        {} -> {} ({:.0}%) at {}; {} threads {:.0}% busy (capacity {})",
            human_bytes(c.bytes_in),
            human_bytes(c.bytes_out),
            c.bytes_out as f64 / c.bytes_in.max(1) as f64 * 100.0,
            human_rate(c.average_speed),
            c.threads,
            c.busy * 100.0,
            human_rate(c.capacity)
        ));
        lines.push(format!(
            "  bottleneck         {}{share}",
            c.bottleneck.name()
        ));
    }
    if a.dynamic {
        lines.push(format!("  strategy changes   {}", a.changes.len()));
        lines.extend(a.changes.iter().map(|c| {
            let limit = if c.from == c.to {
                format!("{}", c.to)
            } else {
                format!("{} -> {}", c.from, c.to)
            };
            format!(
                "    {:>7.1}s  {limit}  {}: {}",
                c.at_seconds,
                c.strategy.name(),
                c.reason
            )
        }));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::monitor::Strategy;

    fn status(strategy: Option<Strategy>) -> Status {
        Status {
            elapsed: 30.0,
            speed: 12_300_000.0,
            trend: Trend::Rising,
            confidence: 0.84,
            running: 3,
            limit: 4,
            max: 8,
            strategy,
            compression: None,
        }
    }

    fn view(strategy: Option<Strategy>, running: usize) -> View {
        View {
            status: status(strategy),
            done: 1_234_000_000,
            total: 2_700_000_000,
            sent: 1_234_000_000,
            running: (0..running)
                .map(|i| LayerView {
                    id: format!("{i:012x}"),
                    size: 620_000_000,
                    done: 300_000_000,
                })
                .collect(),
        }
    }

    fn has_control_codes(text: &str) -> bool {
        text.chars().any(|c| c.is_control() && c != '\n')
    }

    #[test]
    fn live_block_fits_80_columns() {
        let lines = render_live(&view(Some(Strategy::HighPerformance), 12), 80, false);
        assert_eq!(lines.len(), 2 + MAX_LAYER_LINES + 1);
        for line in &lines {
            assert!(line.chars().count() < 80, "too wide: {line:?}");
            assert!(!has_control_codes(line), "{line:?}");
        }
        assert_eq!(
            lines[0],
            "[============>                 ]  45% 1.2 GB/2.7 GB 12.3 MB/s ↑ ETA 1m59s (84%)"
        );
        assert_eq!(lines[1], "workers 3/4 (max 8)  HighPerformance");
        assert_eq!(
            lines[2],
            "  000000000000 [========>           ]  48% 300.0 MB/620.0 MB"
        );
        assert_eq!(lines.last().unwrap(), "  … and 4 more");
    }

    #[test]
    fn narrow_terminals_drop_the_bar_and_cut_lines() {
        for width in [20, 40, 60] {
            for line in render_live(&view(None, 2), width, true) {
                let visible = strip_codes(&line);
                assert!(visible.chars().count() < width, "{width}: {visible:?}");
            }
        }
        // At 40 columns the ETA no longer fits; a short bar still does.
        let lines = render_live(&view(None, 0), 40, false);
        assert_eq!(lines[0], "[=>    ]  45% 1.2 GB/2.7 GB 12.3 MB/s ↑");
        assert_eq!(lines[1], "workers 3/4  fixed");
    }

    #[test]
    fn colour_only_when_allowed() {
        let colored = render_live(&view(Some(Strategy::AdaptiveBoost), 1), 80, true);
        assert!(colored[0].contains("\x1b[32m"));
        assert!(colored[1].contains("\x1b[36mAdaptiveBoost\x1b[0m"));
        let plain = render_live(&view(Some(Strategy::AdaptiveBoost), 1), 80, false);
        assert!(plain.iter().all(|l| !has_control_codes(l)));
        assert_eq!(
            plain.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
            colored.iter().map(|l| strip_codes(l)).collect::<Vec<_>>()
        );
    }

    fn strip_codes(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn display_follows_terminal_term_no_color_and_columns() {
        assert_eq!(
            Display::choose(false, Some("xterm"), None, None),
            Display::Lines
        );
        assert_eq!(
            Display::choose(true, Some("dumb"), None, None),
            Display::Lines
        );
        assert_eq!(
            Display::choose(true, Some("xterm"), None, None),
            Display::Live {
                color: true,
                width: 80
            }
        );
        assert_eq!(
            Display::choose(true, None, Some("1"), Some("132")),
            Display::Live {
                color: false,
                width: 132
            }
        );
        // An empty NO_COLOR does not count; nonsense widths fall back to 80.
        assert_eq!(
            Display::choose(true, None, Some(""), Some("wide")),
            Display::Live {
                color: true,
                width: 80
            }
        );
    }

    #[test]
    fn summary_line_is_plain_text() {
        let line = render_summary(&view(Some(Strategy::SpeedDecline), 3));
        assert_eq!(
            line,
            "progress: 45% (1.2 GB of 2.7 GB) at 12.3 MB/s (rising); workers 3/4 (max 8), SpeedDecline; ETA 1m59s (84%)"
        );
        assert!(!has_control_codes(&line));
        let unknown_speed = View {
            status: Status {
                speed: 0.0,
                ..status(None)
            },
            ..view(None, 0)
        };
        assert!(render_summary(&unknown_speed).ends_with("; ETA --"));
    }

    #[test]
    fn classes_are_counted_largest_first() {
        let counts = class_counts([5 << 30, 10, 20, 200 << 20]);
        assert_eq!(
            counts,
            vec![
                ClassCount {
                    class: SizeClass::Large,
                    blobs: 1,
                    bytes: 5 << 30
                },
                ClassCount {
                    class: SizeClass::Medium,
                    blobs: 1,
                    bytes: 200 << 20
                },
                ClassCount {
                    class: SizeClass::Small,
                    blobs: 2,
                    bytes: 30
                },
            ]
        );
    }

    #[test]
    fn analytics_report_names_every_figure() {
        let analytics = Analytics {
            dynamic: true,
            seconds: 100.0,
            bytes_sent: 1_000_000_000,
            average_speed: 10_000_000.0,
            peak_speed: 12_500_000.0,
            utilization: 0.9,
            mean_running: 3.6,
            mean_limit: 4.0,
            final_limit: 4,
            trend_slope: -10_000.0,
            trend_r2: 0.3,
            changes: vec![Change {
                at_seconds: 3.0,
                from: 2,
                to: 4,
                strategy: Strategy::AdaptiveBoost,
                reason: "2 workers moved 5.0 MB/s: trying 4".to_string(),
            }],
            compression: None,
        };
        let lines = render_analytics(&analytics, &class_counts([10, 200 << 20]));
        assert_eq!(
            lines,
            vec![
                "transfer report:",
                "  pipeline speed     10.0 MB/s average, 12.5 MB/s peak (1.0 GB sent in 1m40s)",
                "  efficiency         80% of the peak speed",
                "  concurrency        3.6 of 4.0 allowed workers busy on average (90% utilization); dynamic, ending at 4",
                "  priority order     largest first: medium 1 blob, 209.7 MB; small (<100 MiB) 1 blob, 10 B",
                "  speed trend        -600.0 kB/s/min (R² 0.30, low confidence)",
                "  strategy changes   1",
                "        3.0s  2 -> 4  AdaptiveBoost: 2 workers moved 5.0 MB/s: trying 4",
            ]
        );
    }

    #[test]
    fn compression_shows_its_speed_and_the_bottleneck() {
        use crate::pool::monitor::{Bottleneck, CompressionStatus};
        let mut view = view(None, 0);
        view.status.compression = Some(CompressionStatus {
            speed: 85_000_000.0,
            ratio: 0.33,
            busy: 0.95,
            threads: 2,
            bottleneck: Bottleneck::Compression,
        });
        // A third of the bytes on the wire: the ETA counts in layer bytes.
        view.sent = view.done / 3;
        let lines = render_live(&view, 100, false);
        assert_eq!(
            lines[1],
            "workers 3/4  fixed  compress 85.0 MB/s (33%), bottleneck: compression"
        );
        assert!(lines[0].ends_with("ETA 40s (84%)"), "{}", lines[0]);
        assert!(
            render_summary(&view).contains(
                "; compressing 85.0 MB/s to 33% (2 threads 95% busy), bottleneck compression;"
            ),
            "{}",
            render_summary(&view)
        );
    }

    #[test]
    fn change_log_line() {
        let change = Change {
            at_seconds: 9.0,
            from: 8,
            to: 4,
            strategy: Strategy::NetworkOptimization,
            reason: "the link is full".to_string(),
        };
        assert_eq!(
            describe_change(&change),
            "[monitor] 9.0s 8 -> 4 workers, NetworkOptimization: the link is full"
        );
    }
}
