//! The renderers, pure (state in, lines out): the live block redrawn on a terminal, the
//! summary line for logs, and a controller change as a sentence.

use super::*;
use crate::text::plural::count;

/// Everything the renderers need.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub status: Status,
    /// Bytes of all blobs done or in flight, of `total`.
    pub done: u64,
    pub total: u64,
    /// Bytes handed to the network (fewer than `done` when layers are compressed).
    pub sent: u64,
    /// Blobs done, of all, and running now.
    pub tasks: Tasks,
    pub running: Vec<LayerView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LayerView {
    pub id: String,
    pub size: u64,
    pub done: u64,
}

pub(super) const GREEN: &str = "32";
pub(super) const YELLOW: &str = "33";
pub(super) const RED: &str = "31";
pub(super) const CYAN: &str = "36";

/// A line built from pieces, some coloured, cut to a width counted in characters (never
/// in escape codes).
#[derive(Default)]
pub(super) struct Line {
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

pub(super) fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (done as u128 * 100 / total as u128) as u64
    }
}

/// `[=====>    ]` split into the filled part and the rest, `inner` characters inside.
pub(super) fn bar(done: u64, total: u64, inner: usize) -> (String, String) {
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

pub(super) fn arrow(trend: Trend) -> (&'static str, Option<&'static str>) {
    match trend {
        Trend::Rising => ("↑", Some(GREEN)),
        Trend::Steady => ("→", None),
        Trend::Falling => ("↓", Some(RED)),
    }
}

/// The ETA and, when the speed is known, how far to trust it.
pub(super) fn eta(view: &View) -> (String, Option<String>) {
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

pub(super) fn eta_text(view: &View) -> String {
    match eta(view) {
        (eta, Some(confidence)) => format!("{eta} {confidence}"),
        (eta, None) => eta,
    }
}

/// The bar's colour: the current speed against the best seen. Green until a best is known.
pub fn speed_color(speed: f64, peak: f64) -> &'static str {
    if peak <= 0.0 || speed >= 0.8 * peak {
        GREEN
    } else if speed >= 0.5 * peak {
        YELLOW
    } else {
        RED
    }
}

/// `T:23/51 A:6`: blobs done of all, and active.
pub(super) fn tasks(view: &View) -> String {
    format!(
        "T:{}/{} A:{}",
        view.tasks.done, view.tasks.total, view.tasks.active
    )
}

/// `auto: adding workers` or `fixed`.
pub(super) fn mode(status: &Status) -> String {
    match status.strategy {
        Some(strategy) => format!("auto: {}", strategy.words()),
        None => "fixed".to_string(),
    }
}

pub(super) fn workers(status: &Status) -> String {
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
            .colored(head, speed_color(status.speed, status.peak))
            .plain(format!("{rest}] "));
    }
    let overall = match arrow_color {
        Some(c) => overall.plain(figures).colored(symbol, c),
        None => overall.plain(figures).plain(symbol),
    }
    .plain(tail);
    let mut lines = vec![overall.finish(width, color)];

    let mut engine = Line::default()
        .plain(format!("{}  {}  ", tasks(view), workers(status)))
        .colored(mode(status), CYAN);
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
    let mut engine = format!("{}; {}, {}", tasks(view), workers(status), mode(status));
    if let Some(c) = &status.compression {
        engine.push_str(&format!(
            "; compressing {} to {:.0}% ({} {:.0}% busy), bottleneck {}",
            human_rate(c.speed),
            c.ratio * 100.0,
            count(c.threads as u64, "thread"),
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
        count(change.to as u64, "worker")
    } else {
        format!("{} -> {}", change.from, count(change.to as u64, "worker"))
    };
    format!(
        "[monitor] {:.1}s {limit}, {}: {}",
        change.at_seconds,
        change.strategy.name(),
        change.reason
    )
}
