//! The end-of-transfer analytics as text: size classes, speeds, what limited the transfer.

use super::*;

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
            "  compression        {} -> {} ({:.0}%) at {}; {} {:.0}% busy (capacity {})",
            human_bytes(c.bytes_in),
            human_bytes(c.bytes_out),
            c.bytes_out as f64 / c.bytes_in.max(1) as f64 * 100.0,
            human_rate(c.average_speed),
            crate::text::plural::count(c.threads as u64, "thread"),
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
