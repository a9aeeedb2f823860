//! The end-of-transfer analytics: the `--verbose` report in sections (pipeline,
//! concurrency, network and regression, bottleneck, resources, recommendations) and the
//! same figures as the `analytics` object of `--json`.

use super::*;
use std::collections::BTreeMap;

use crate::pool::monitor::{Priority, Resources, Stage, Tasks, verdict};

mod advice;
pub use advice::recommendations;

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

pub(super) fn confidence_word(r2: f64) -> &'static str {
    if r2 >= 0.8 {
        "high"
    } else if r2 >= 0.5 {
        "medium"
    } else {
        "low"
    }
}

/// How even the speed was, from its variation in percent.
pub fn stability(variance_pct: f64) -> &'static str {
    if variance_pct < 15.0 {
        "stable"
    } else if variance_pct < 40.0 {
        "variable"
    } else {
        "unstable"
    }
}

/// Which way the speed went over the transfer: only a confident line counts.
pub fn direction(a: &Analytics) -> &'static str {
    let change = if a.average_speed > 0.0 {
        a.trend_slope * a.seconds / a.average_speed
    } else {
        0.0
    };
    match (a.trend_r2 >= 0.5, change) {
        (true, c) if c >= 0.1 => "rising",
        (true, c) if c <= -0.1 => "falling",
        _ => "steady",
    }
}

fn efficiency(a: &Analytics) -> f64 {
    if a.peak_speed > 0.0 {
        (a.average_speed / a.peak_speed).min(1.0)
    } else {
        1.0
    }
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// The `analytics` object of `--json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AnalyticsSummary {
    pub tasks: Tasks,
    pub priority: Priority,
    pub speed: SpeedSummary,
    pub trend: TrendSummary,
    pub bottleneck: BottleneckSummary,
    pub resources: Resources,
    pub recommendations: Vec<String>,
}

/// Bytes per second.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpeedSummary {
    pub current: f64,
    pub average: f64,
    pub peak: f64,
    pub variance_pct: f64,
    pub stability: &'static str,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrendSummary {
    /// Bytes per second, per second.
    pub slope: f64,
    pub r_squared: f64,
    /// `high`, `medium` or `low`, from R².
    pub confidence: &'static str,
    /// `rising`, `steady` or `falling`.
    pub direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BottleneckSummary {
    /// `network`, `registry`, `source`, `compression`, or `none` when too little was
    /// measured.
    pub kind: Stage,
    /// Its share of the workers' time, 0..1.
    pub share: f64,
    /// Every stage's share: the verdict is the largest.
    pub measured: BTreeMap<&'static str, f64>,
    /// The workers' time the shares divide.
    pub worker_seconds: f64,
}

impl AnalyticsSummary {
    pub fn of(a: &Analytics) -> AnalyticsSummary {
        let verdict = verdict(&a.time);
        AnalyticsSummary {
            tasks: a.tasks,
            priority: a.priority,
            speed: SpeedSummary {
                current: a.current_speed.round(),
                average: a.average_speed.round(),
                peak: a.peak_speed.round(),
                variance_pct: round(a.variance_pct, 1),
                stability: stability(a.variance_pct),
            },
            trend: TrendSummary {
                slope: round(a.trend_slope, 1),
                r_squared: round(a.trend_r2, 3),
                confidence: confidence_word(a.trend_r2),
                direction: direction(a),
            },
            bottleneck: BottleneckSummary {
                kind: a.bottleneck,
                share: round(a.bottleneck_share, 3),
                measured: verdict
                    .shares
                    .iter()
                    .map(|&(stage, share)| (stage.name(), round(share, 3)))
                    .collect(),
                worker_seconds: round(verdict.seconds, 3),
            },
            resources: Resources {
                cpu_percent: round(a.resources.cpu_percent, 1),
                peak_rss_bytes: a.resources.peak_rss_bytes,
            },
            recommendations: recommendations(a),
        }
    }
}

fn percent_of(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

fn row(label: &str, text: String) -> String {
    format!("    {label:<17}{text}")
}

/// The `--verbose` report at the end of a transfer: plain lines, no colour.
pub fn render_analytics(analytics: &Analytics, classes: &[ClassCount]) -> Vec<String> {
    let a = analytics;
    let mut lines = vec!["transfer report:".to_string()];
    lines.extend(pipeline(a));
    lines.extend(concurrency(a, classes));
    lines.extend(network(a));
    lines.extend(bottleneck(a));
    lines.push("  resources".to_string());
    lines.push(row(
        "cpu",
        format!(
            "{:.0}% of one core while the transfer ran",
            a.resources.cpu_percent
        ),
    ));
    lines.push(row(
        "peak memory",
        format!("{} resident", human_bytes(a.resources.peak_rss_bytes)),
    ));
    lines.push("  recommendations".to_string());
    let advice = recommendations(a);
    if advice.is_empty() {
        lines.push("    none: nothing in these figures calls for a change".to_string());
    }
    lines.extend(advice.iter().map(|line| format!("    - {line}")));
    if a.dynamic {
        lines.push(format!("  strategy changes ({})", a.changes.len()));
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

fn pipeline(a: &Analytics) -> Vec<String> {
    vec![
        "  pipeline".to_string(),
        row(
            "tasks",
            format!("{} of {} done", a.tasks.done, a.tasks.total),
        ),
        row(
            "speed",
            format!(
                "{} average, {} peak ({} sent in {})",
                human_rate(a.average_speed),
                human_rate(a.peak_speed),
                human_bytes(a.bytes_sent),
                human_duration(a.seconds)
            ),
        ),
        row(
            "efficiency",
            format!("{} of the peak speed", percent_of(efficiency(a))),
        ),
    ]
}

fn concurrency(a: &Analytics, classes: &[ClassCount]) -> Vec<String> {
    let mode = if a.dynamic { "auto" } else { "fixed" };
    let priority = if classes.is_empty() {
        "no blobs".to_string()
    } else {
        classes
            .iter()
            .map(|c| {
                let level = match c.class {
                    SizeClass::Large => "high",
                    SizeClass::Medium => "medium",
                    SizeClass::Small => "low",
                };
                format!(
                    "{level} {} ({}, {})",
                    c.blobs,
                    c.class.name(),
                    human_bytes(c.bytes)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        "  concurrency".to_string(),
        row(
            "workers",
            format!(
                "{} at the end, {} at most ({mode})",
                a.final_limit, a.max_workers
            ),
        ),
        row(
            "utilization",
            format!(
                "{} ({:.1} of {:.1} allowed workers busy on average)",
                percent_of(a.utilization),
                a.mean_running,
                a.mean_limit
            ),
        ),
        row("priority queue", priority),
    ]
}

fn network(a: &Analytics) -> Vec<String> {
    let sign = if a.trend_slope < 0.0 { "-" } else { "+" };
    vec![
        "  network and regression".to_string(),
        row(
            "speed",
            format!(
                "{} at the end, {} average",
                human_rate(a.current_speed),
                human_rate(a.average_speed)
            ),
        ),
        row(
            "trend",
            format!(
                "{}, slope {sign}{}/min, R² {:.2} ({} confidence)",
                direction(a),
                human_rate(a.trend_slope.abs() * 60.0),
                a.trend_r2,
                confidence_word(a.trend_r2)
            ),
        ),
        row(
            "variance",
            format!("{:.0}% ({})", a.variance_pct, stability(a.variance_pct)),
        ),
    ]
}

fn bottleneck(a: &Analytics) -> Vec<String> {
    let verdict = verdict(&a.time);
    let mut lines = vec!["  bottleneck".to_string()];
    lines.push(row(
        "verdict",
        match verdict.stage {
            Stage::None => "not measured: too little worker time".to_string(),
            stage => format!(
                "{} ({} of the workers' time {})",
                stage.name(),
                percent_of(verdict.share),
                stage.meaning()
            ),
        },
    ));
    lines.push(row(
        "measured",
        format!(
            "{} over {:.1} worker-seconds",
            verdict
                .shares
                .iter()
                .map(|&(stage, share)| format!("{} {}", stage.name(), percent_of(share)))
                .collect::<Vec<_>>()
                .join(", "),
            verdict.seconds
        ),
    ));
    if let Some(c) = &a.compression {
        lines.push(row(
            "compression",
            format!(
                "{} -> {} ({:.0}%) at {}; {} {:.0}% busy (capacity {})",
                human_bytes(c.bytes_in),
                human_bytes(c.bytes_out),
                c.bytes_out as f64 / c.bytes_in.max(1) as f64 * 100.0,
                human_rate(c.average_speed),
                crate::text::plural::count(c.threads as u64, "thread"),
                c.busy * 100.0,
                human_rate(c.capacity)
            ),
        ));
    }
    lines
}

#[cfg(test)]
mod tests;
