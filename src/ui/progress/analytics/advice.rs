//! Recommendations drawn from a transfer's figures. Each one names the figures that
//! support it; a transfer whose figures support none gets none.

use super::*;
use crate::pool::monitor::{Bottleneck, CompressionAnalytics, TOLERANCE};

/// A stage must take at least this share of the workers' time before advice is based
/// on it being the bottleneck.
const CLEAR: f64 = 0.5;
/// Compression that left at least this fraction of the bytes did not pay.
const WORTH: f64 = 0.9;

pub fn recommendations(a: &Analytics) -> Vec<String> {
    let clear = a.bottleneck_share >= CLEAR;
    let mut advice = Vec::new();
    if clear {
        advice.extend(fewer_workers(a));
    }
    if let Some(c) = &a.compression {
        advice.extend(compression(a, c, clear));
    }
    if clear && a.bottleneck == Stage::Source {
        advice.push(format!(
            "reading the source took {} of the workers' time: read it from faster storage, or `extract` a compressed archive into the cache once and push from there",
            percent_of(a.bottleneck_share)
        ));
    }
    if clear
        && a.bottleneck == Stage::Registry
        && a.utilization >= 0.9
        && a.tasks.total > a.max_workers
        && let Some(gain) = gain_at_the_top(a)
    {
        advice.push(format!(
            "waiting for the registry's answers took {} of the workers' time, and the most workers were still the fastest ({gain}): --max-concurrent {} would overlap more of it",
            percent_of(a.bottleneck_share),
            a.max_workers * 2
        ));
    }
    advice
}

/// When the most workers allowed moved clearly more than the level below them: the two
/// speeds, in words.
fn gain_at_the_top(a: &Analytics) -> Option<String> {
    let [.., below, top] = a.levels.as_slice() else {
        return None;
    };
    (top.workers == a.max_workers && below.speed < (1.0 - TOLERANCE) * top.speed).then(|| {
        format!(
            "{} {}, {} {}",
            workers(top.workers),
            human_rate(top.speed),
            workers(below.workers),
            human_rate(below.speed)
        )
    })
}

/// What a stage bounding the transfer is called in a sentence.
fn bound_by(stage: Stage) -> &'static str {
    match stage {
        Stage::Network => "the link",
        Stage::Registry => "waiting for the registry's answers",
        Stage::Source => "reading the source",
        Stage::Compression => "compression",
        Stage::None => "nothing measured",
    }
}

/// The smallest level from which every level measured moved as much as the best one.
fn fewer_workers(a: &Analytics) -> Option<String> {
    let best = a.levels.iter().map(|l| l.speed).fold(0.0, f64::max);
    let knee = a
        .levels
        .iter()
        .position(|l| l.speed >= (1.0 - TOLERANCE) * best)?;
    let from = &a.levels[knee..];
    let all_full = from.iter().all(|l| l.speed >= (1.0 - TOLERANCE) * best);
    let knee = from[0].workers;
    (best > 0.0 && from.len() >= 2 && all_full && knee < a.max_workers).then(|| {
        let levels = from
            .iter()
            .map(|l| format!("{} {}", workers(l.workers), human_rate(l.speed)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{} was the bottleneck at every level from {}: --max-concurrent {knee} would do as well ({levels})",
            bound_by(a.bottleneck),
            workers(knee)
        )
    })
}

fn workers(n: usize) -> String {
    if n == 1 {
        "1 worker".to_string()
    } else {
        format!("{n} workers")
    }
}

fn compression(a: &Analytics, c: &CompressionAnalytics, clear: bool) -> Option<String> {
    let ratio = c.bytes_out as f64 / c.bytes_in.max(1) as f64;
    let flag = if c.algorithm.is_empty() {
        "--compress".to_string()
    } else {
        format!("--compress {}", c.algorithm)
    };
    if clear && a.bottleneck == Stage::Compression {
        return Some(format!(
            "the compression threads bounded the push ({} of the workers' time waiting for {} threads {:.0}% busy, capacity {}): more --compress-threads, or --compress none on a link faster than that",
            percent_of(a.bottleneck_share),
            c.threads,
            c.busy * 100.0,
            human_rate(c.capacity)
        ));
    }
    if c.bottleneck == Bottleneck::Network && ratio < WORTH && a.average_speed > 0.0 {
        return Some(format!(
            "compression kept up with a {} link and cut the bytes sent to {:.0}%: {flag} helps on this link",
            human_rate(a.average_speed),
            ratio * 100.0
        ));
    }
    if ratio >= WORTH {
        return Some(format!(
            "compression left {:.0}% of the bytes: these layers gain little from {flag}",
            ratio * 100.0
        ));
    }
    None
}
