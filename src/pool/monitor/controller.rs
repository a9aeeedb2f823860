//! The controller: what to do with the gate, from the measured throughput per level.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not enough settled measurement at the current level yet.
    Wait,
    /// Keep the limit; the situation is `strategy`.
    Hold { strategy: Strategy, reason: String },
    Resize {
        limit: usize,
        strategy: Strategy,
        reason: String,
    },
}

pub(super) fn hold(strategy: Strategy, reason: String) -> Decision {
    Decision::Hold { strategy, reason }
}

pub(super) fn resize(limit: usize, strategy: Strategy, reason: String) -> Decision {
    Decision::Resize {
        limit,
        strategy,
        reason,
    }
}

/// Throughput between two consecutive samples.
#[derive(Debug, Clone, Copy)]
pub(super) struct Interval {
    pub(super) start: f64,
    pub(super) end: f64,
    pub(super) rate: f64,
    pub(super) limit: usize,
    /// Every allowed worker was uploading at both ends, so the interval measures `limit`.
    pub(super) busy: bool,
}

impl Interval {
    pub(super) fn seconds(&self) -> f64 {
        self.end - self.start
    }
}

pub(super) fn intervals(window: &[Sample]) -> Vec<Interval> {
    window
        .windows(2)
        .filter_map(|pair| {
            let (a, b) = (pair[0], pair[1]);
            let seconds = b.at - a.at;
            (seconds > 0.0).then(|| Interval {
                start: a.at,
                end: b.at,
                rate: b.sent.saturating_sub(a.sent) as f64 / seconds,
                limit: b.limit,
                busy: a.running == b.limit && b.running == b.limit,
            })
        })
        .collect()
}

/// A run of intervals at one limit.
pub(super) struct Epoch<'a> {
    pub(super) limit: usize,
    pub(super) start: f64,
    pub(super) end: f64,
    pub(super) intervals: &'a [Interval],
}

pub(super) const EPSILON: f64 = 1e-9;

impl Epoch<'_> {
    /// Intervals after the settling time in which every allowed worker was busy.
    pub(super) fn measured(&self, settle: f64) -> Vec<Interval> {
        self.intervals
            .iter()
            .filter(|i| i.busy && i.start + EPSILON >= self.start + settle)
            .copied()
            .collect()
    }

    pub(super) fn settled_seconds(&self, settle: f64) -> f64 {
        self.end - (self.start + settle)
    }
}

pub(super) fn epochs(intervals: &[Interval]) -> Vec<Epoch<'_>> {
    let mut epochs = Vec::new();
    let mut begin = 0;
    for end in 1..=intervals.len() {
        if end == intervals.len() || intervals[end].limit != intervals[begin].limit {
            let run = &intervals[begin..end];
            epochs.push(Epoch {
                limit: run[0].limit,
                start: run[0].start,
                end: run[run.len() - 1].end,
                intervals: run,
            });
            begin = end;
        }
    }
    epochs
}

/// Average throughput and total seconds of some intervals.
pub(super) fn throughput(intervals: &[Interval]) -> (f64, f64) {
    let seconds: f64 = intervals.iter().map(Interval::seconds).sum();
    let bytes: f64 = intervals.iter().map(|i| i.rate * i.seconds()).sum();
    if seconds > 0.0 {
        (bytes / seconds, seconds)
    } else {
        (0.0, 0.0)
    }
}

/// The most recent measured throughput of every level in the window. Older epochs count
/// when at least half a check interval of them was measured.
pub(super) fn levels(epochs: &[Epoch], tuning: &Tuning) -> BTreeMap<usize, f64> {
    let mut levels = BTreeMap::new();
    for epoch in epochs {
        let (rate, seconds) = throughput(&epoch.measured(tuning.settle));
        if seconds + EPSILON >= tuning.check_interval / 2.0 {
            levels.insert(epoch.limit, rate);
        }
    }
    levels
}

pub(super) fn workers(n: usize) -> String {
    if n == 1 {
        "1 worker".to_string()
    } else {
        format!("{n} workers")
    }
}

/// The controller: what to do with the gate, given the recent samples (oldest first) and
/// the limit now in force.
pub fn decide(window: &[Sample], current_limit: usize, tuning: &Tuning) -> Decision {
    use Strategy::*;
    let Some(last) = window.last() else {
        return Decision::Wait;
    };
    if last.queued == 0 {
        return hold(
            ResourceConservation,
            format!("every blob has started; {} still uploading", last.running),
        );
    }
    // After a decrease, uploads above the new limit finish first; nothing to measure yet.
    if last.running > current_limit {
        return Decision::Wait;
    }
    let intervals = intervals(window);
    let epochs = epochs(&intervals);
    let Some(current) = epochs.last().filter(|e| e.limit == current_limit) else {
        return Decision::Wait;
    };
    let settled = current.settled_seconds(tuning.settle);
    if settled + EPSILON < tuning.check_interval {
        return Decision::Wait;
    }
    let measured = current.measured(tuning.settle);
    let (rate, seconds) = throughput(&measured);
    if seconds * 2.0 < settled {
        return hold(
            ResourceConservation,
            format!(
                "{} allowed but workers sit idle: the queued blobs wait for a size-class slot",
                workers(current_limit)
            ),
        );
    }
    if seconds + EPSILON < tuning.check_interval {
        return Decision::Wait;
    }
    // Trend and noise come from the latest stretch, so a recent change is not diluted
    // by a long steady hold.
    let recent_from = current.end - 3.0 * tuning.check_interval;
    let points: Vec<(f64, f64)> = measured
        .iter()
        .filter(|i| i.start + EPSILON >= recent_from)
        .map(|i| ((i.start + i.end) / 2.0, i.rate))
        .collect();
    let Some(fit) = Fit::of(&points) else {
        return Decision::Wait;
    };
    let long_enough = seconds + EPSILON >= 3.0 * tuning.check_interval;
    if fit.variation() > NOISE && !long_enough {
        return hold(
            NetworkOptimization,
            format!(
                "throughput too uneven to compare (±{:.0}%); measuring longer",
                fit.variation() * 100.0
            ),
        );
    }
    let change = fit.relative_change();
    if fit.r2 >= CONFIDENCE && change <= -TREND {
        let fell = format!(
            "throughput fell {:.0}% over {:.1}s with {} (R² {:.2})",
            -change * 100.0,
            fit.span,
            workers(current_limit),
            fit.r2
        );
        return match tuning.step_down(current_limit) {
            Some(lower) => resize(lower, SpeedDecline, format!("{fell}: trying {lower}")),
            None => hold(SpeedDecline, format!("{fell}; already at the minimum")),
        };
    }
    // Still ramping up: the average understates this level.
    if fit.r2 >= CONFIDENCE && change >= TREND && !long_enough {
        return Decision::Wait;
    }

    let levels = levels(&epochs, tuning);
    let best = levels.values().copied().fold(rate, f64::max);
    let knee = levels
        .iter()
        .find(|&(_, &r)| r >= (1.0 - TOLERANCE) * best)
        .map_or(current_limit, |(&level, _)| level);
    let knee_rate = levels.get(&knee).copied().unwrap_or(rate);
    let moved = |level: usize, rate: f64| format!("{} moved {}", workers(level), human_rate(rate));
    let target_met = tuning.speed_target.filter(|&target| rate >= target);
    let enough = |target: f64| {
        hold(
            ResourceConservation,
            format!(
                "{} meets the {} target; not adding workers",
                human_rate(rate),
                human_rate(target)
            ),
        )
    };

    if knee < current_limit {
        let verdict = if rate < (1.0 - TOLERANCE) * best {
            "the extra workers slowed the push"
        } else {
            "the extra workers did not help"
        };
        return resize(
            knee,
            NetworkOptimization,
            format!(
                "{}, {}: {verdict}; back to {knee}",
                moved(current_limit, rate),
                moved(knee, knee_rate)
            ),
        );
    }
    if knee > current_limit {
        if let Some(target) = target_met {
            return enough(target);
        }
        return resize(
            knee,
            AdaptiveBoost,
            format!(
                "{}, {}: back to {knee}",
                moved(knee, knee_rate),
                moved(current_limit, rate)
            ),
        );
    }
    if let Some(up) = tuning.step_up(current_limit)
        && !levels.contains_key(&up)
    {
        if let Some(target) = target_met {
            return enough(target);
        }
        let evidence = match levels.range(..current_limit).next_back() {
            Some((&below, &below_rate)) => format!(
                "{}, {}",
                moved(current_limit, rate),
                moved(below, below_rate)
            ),
            None => moved(current_limit, rate),
        };
        return resize(up, AdaptiveBoost, format!("{evidence}: trying {up}"));
    }
    // Going down from the start, each level that keeps up is followed at once by the
    // next one down: a short push gets its decisions too. Any other level waits for a
    // long quiet hold first, so a level just left is not tried again at once.
    let descending = epochs.windows(2).all(|pair| pair[1].limit < pair[0].limit);
    if let Some(down) = tuning.step_down(current_limit)
        && !levels.contains_key(&down)
    {
        if descending {
            return resize(
                down,
                NetworkOptimization,
                format!(
                    "{} (fewer not measured yet): checking whether {down} keep up",
                    moved(current_limit, rate)
                ),
            );
        }
        if settled + EPSILON >= tuning.explore_after {
            return resize(
                down,
                NetworkOptimization,
                format!(
                    "{} for {:.0}s: checking whether {down} keep up",
                    moved(current_limit, rate),
                    settled
                ),
            );
        }
    }
    hold(
        HighPerformance,
        format!("{}: the best level measured", moved(current_limit, rate)),
    )
}
