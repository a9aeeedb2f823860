//! The monitor: a thread that samples how many bytes have gone out, how many uploads run
//! and how many wait, and (in dynamic mode) resizes the worker gate.
//!
//! The controller (`decide`) is pure logic over a sliding window of samples. It treats
//! the window as a table of measured throughput per concurrency level and moves to the
//! smallest level that comes within `TOLERANCE` of the best one measured; at that level
//! it probes the next level up (twice as many workers) when that level has not been
//! measured recently, and after a long quiet hold the next level down, to find out whether
//! fewer workers keep up. A confident falling trend at a steady level steps down. The
//! window is also the controller's memory: a level that did not help is not tried again
//! until its measurement slides out, which is what keeps it from oscillating.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use crate::compress::MeterReading;
use crate::pool::scheduler::Gate;
use crate::text::units::human_rate;

/// How often the monitor wakes: the live display redraws at this pace (8 times a second).
pub const TICK: Duration = Duration::from_millis(125);
/// Every second tick feeds a sample to the controller.
const SAMPLE_EVERY: u32 = 2;
/// How far back the controller remembers, in seconds.
pub const MEMORY: f64 = 60.0;
/// Seconds ignored after a level starts: new connections are still opening and ramping up.
pub const SETTLE: f64 = 1.0;
/// Levels whose throughput differs by less than this fraction count as equal; among equal
/// levels the controller prefers fewer workers.
pub const TOLERANCE: f64 = 0.05;
/// R² a trend needs before the controller acts on it.
pub const CONFIDENCE: f64 = 0.6;
/// Change over a measurement, as a fraction of its mean, that counts as a trend.
pub const TREND: f64 = 0.2;
/// Coefficient of variation above which a measurement is too uneven to compare.
pub const NOISE: f64 = 0.5;
/// Seconds at one level before the controller checks whether fewer workers keep up.
pub const EXPLORE_AFTER: f64 = 30.0;
/// The display's speed is the average over this many seconds.
const SPEED_SPAN: f64 = 3.0;
/// The display's trend arrow and ETA confidence look back this far.
const TREND_SPAN: f64 = 5.0;
/// The peak speed in the report is the best average over this many seconds...
const PEAK_SPAN: f64 = 5.0;
/// ...counted from this many seconds in: at first, socket buffers swallow bytes far
/// faster than the link carries them.
const PEAK_SKIP: f64 = 3.0;
/// Strategy changes kept for the report.
const MAX_CHANGES: usize = 500;

pub const DEFAULT_MIN: usize = 1;
pub const DEFAULT_MAX: usize = 8;
pub const DEFAULT_CHECK_INTERVAL: f64 = 2.0;

/// What the monitor sees at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the transfer started.
    pub at: f64,
    /// Bytes handed to the network so far, resends included.
    pub sent: u64,
    /// Uploads running.
    pub running: usize,
    /// The gate's limit in force since the previous sample.
    pub limit: usize,
    /// Blobs waiting for a worker.
    pub queued: usize,
}

/// The controller's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    pub min: usize,
    pub max: usize,
    /// Seconds of settled measurement a level needs before it is judged.
    pub check_interval: f64,
    /// Bytes per second that are enough: no workers are added once throughput reaches it.
    pub speed_target: Option<f64>,
    pub settle: f64,
    pub explore_after: f64,
}

impl Tuning {
    pub fn new(min: usize, max: usize, check_interval: f64, speed_target: Option<f64>) -> Tuning {
        let min = min.max(1);
        Tuning {
            min,
            max: max.max(min),
            check_interval,
            speed_target,
            settle: SETTLE,
            explore_after: EXPLORE_AFTER,
        }
    }

    /// The level to start at: one worker per blob, within [min, max]. Starting high costs
    /// nothing on a link that more workers do not help (the controller steps down), while
    /// starting low costs the whole climb on a push made of many small blobs.
    pub fn initial(&self, blobs: usize) -> usize {
        blobs.clamp(self.min, self.max)
    }

    fn step_up(&self, level: usize) -> Option<usize> {
        (level < self.max).then(|| (level * 2).min(self.max))
    }

    fn step_down(&self, level: usize) -> Option<usize> {
        (level > self.min).then(|| level.div_ceil(2).max(self.min))
    }
}

/// The named situations the controller recognises (the names come from the earlier tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Strategy {
    /// Measuring the starting level.
    Initial,
    /// Holding the best level found.
    HighPerformance,
    /// Throughput fell at a steady level: one step down.
    SpeedDecline,
    /// Removing workers the link does not reward (it is full, or more workers slowed it),
    /// checking whether fewer keep up, or waiting out a link too uneven to measure.
    NetworkOptimization,
    /// More workers would sit idle: nothing is queued, size-class caps hold the queued
    /// blobs back, or the speed target is met.
    ResourceConservation,
    /// Adding workers: the level above is untried, or was faster.
    AdaptiveBoost,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Initial => "Initial",
            Strategy::HighPerformance => "HighPerformance",
            Strategy::SpeedDecline => "SpeedDecline",
            Strategy::NetworkOptimization => "NetworkOptimization",
            Strategy::ResourceConservation => "ResourceConservation",
            Strategy::AdaptiveBoost => "AdaptiveBoost",
        }
    }
}

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

fn hold(strategy: Strategy, reason: String) -> Decision {
    Decision::Hold { strategy, reason }
}

fn resize(limit: usize, strategy: Strategy, reason: String) -> Decision {
    Decision::Resize {
        limit,
        strategy,
        reason,
    }
}

/// A least-squares line through (time, throughput) points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Change in throughput per second (bytes/s per s).
    pub slope: f64,
    pub mean: f64,
    /// Share of the variance the line explains (0 for a flat series).
    pub r2: f64,
    pub variance: f64,
    /// Seconds between the first and last point.
    pub span: f64,
}

impl Fit {
    pub fn of(points: &[(f64, f64)]) -> Option<Fit> {
        let mut sums = Sums::default();
        for &(x, y) in points {
            sums.add(x, y);
        }
        sums.fit()
    }

    /// The change the line predicts across the span, as a fraction of the mean.
    pub fn relative_change(&self) -> f64 {
        if self.mean > 0.0 {
            self.slope * self.span / self.mean
        } else {
            0.0
        }
    }

    /// Standard deviation over mean.
    pub fn variation(&self) -> f64 {
        if self.mean > 0.0 {
            self.variance.sqrt() / self.mean
        } else {
            0.0
        }
    }
}

/// Running sums for a least-squares fit, so the whole transfer can be fitted without
/// keeping every sample.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
    yy: f64,
    min_x: f64,
    max_x: f64,
}

impl Sums {
    fn add(&mut self, x: f64, y: f64) {
        if self.n == 0.0 {
            self.min_x = x;
            self.max_x = x;
        }
        self.min_x = self.min_x.min(x);
        self.max_x = self.max_x.max(x);
        self.n += 1.0;
        self.x += x;
        self.y += y;
        self.xx += x * x;
        self.xy += x * y;
        self.yy += y * y;
    }

    fn fit(&self) -> Option<Fit> {
        let n = self.n;
        if n < 2.0 {
            return None;
        }
        let sxx = self.xx - self.x * self.x / n;
        let sxy = self.xy - self.x * self.y / n;
        let syy = (self.yy - self.y * self.y / n).max(0.0);
        if sxx <= f64::EPSILON {
            return None;
        }
        let slope = sxy / sxx;
        let mean = self.y / n;
        // Below rounding noise the series is flat: nothing for a line to explain.
        let flat = syy <= 1e-9 * (mean * mean * n).max(1.0);
        let r2 = if flat {
            0.0
        } else {
            (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0)
        };
        Some(Fit {
            slope: if flat { 0.0 } else { slope },
            mean,
            r2,
            variance: if flat { 0.0 } else { syy / n },
            span: self.max_x - self.min_x,
        })
    }
}

/// Throughput between two consecutive samples.
#[derive(Debug, Clone, Copy)]
struct Interval {
    start: f64,
    end: f64,
    rate: f64,
    limit: usize,
    /// Every allowed worker was uploading at both ends, so the interval measures `limit`.
    busy: bool,
}

impl Interval {
    fn seconds(&self) -> f64 {
        self.end - self.start
    }
}

fn intervals(window: &[Sample]) -> Vec<Interval> {
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
struct Epoch<'a> {
    limit: usize,
    start: f64,
    end: f64,
    intervals: &'a [Interval],
}

const EPSILON: f64 = 1e-9;

impl Epoch<'_> {
    /// Intervals after the settling time in which every allowed worker was busy.
    fn measured(&self, settle: f64) -> Vec<Interval> {
        self.intervals
            .iter()
            .filter(|i| i.busy && i.start + EPSILON >= self.start + settle)
            .copied()
            .collect()
    }

    fn settled_seconds(&self, settle: f64) -> f64 {
        self.end - (self.start + settle)
    }
}

fn epochs(intervals: &[Interval]) -> Vec<Epoch<'_>> {
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
fn throughput(intervals: &[Interval]) -> (f64, f64) {
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
fn levels(epochs: &[Epoch], tuning: &Tuning) -> BTreeMap<usize, f64> {
    let mut levels = BTreeMap::new();
    for epoch in epochs {
        let (rate, seconds) = throughput(&epoch.measured(tuning.settle));
        if seconds + EPSILON >= tuning.check_interval / 2.0 {
            levels.insert(epoch.limit, rate);
        }
    }
    levels
}

fn workers(n: usize) -> String {
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
    if let Some(down) = tuning.step_down(current_limit)
        && !levels.contains_key(&down)
        && settled + EPSILON >= tuning.explore_after
    {
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
    hold(
        HighPerformance,
        format!("{}: the best level measured", moved(current_limit, rate)),
    )
}

/// Which way the speed is heading, for the display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    Rising,
    Steady,
    Falling,
}

/// What the display shows about the transfer as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub elapsed: f64,
    /// Bytes per second over the last few seconds.
    pub speed: f64,
    pub trend: Trend,
    /// 0..1: how steady the speed has been, hence how far to trust an ETA built on it.
    pub confidence: f64,
    pub running: usize,
    pub limit: usize,
    pub max: usize,
    /// `None` for a fixed concurrency.
    pub strategy: Option<Strategy>,
    /// While layers are compressed on the way: the compressors' side of the pipeline.
    pub compression: Option<CompressionStatus>,
}

/// Which side limits a push that compresses: the compression threads or the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bottleneck {
    Network,
    Compression,
}

impl Bottleneck {
    /// Compression threads busy this share of the time or more are the bottleneck: the
    /// uploads wait for them. Below it they wait for the uploads (the network), which
    /// take compressed data only as fast as the link carries it.
    pub const BUSY: f64 = 0.75;

    pub fn of(busy: f64) -> Bottleneck {
        if busy >= Bottleneck::BUSY {
            Bottleneck::Compression
        } else {
            Bottleneck::Network
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Bottleneck::Network => "network",
            Bottleneck::Compression => "compression",
        }
    }
}

/// The compressors over the last few seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressionStatus {
    /// Uncompressed bytes compressed per second.
    pub speed: f64,
    /// Compressed bytes over uncompressed bytes, so far.
    pub ratio: f64,
    /// Share of the compression threads' time spent compressing.
    pub busy: f64,
    pub threads: usize,
    pub bottleneck: Bottleneck,
}

/// The compressors over the whole transfer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CompressionAnalytics {
    pub threads: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Uncompressed bytes per second over the transfer.
    pub average_speed: f64,
    /// What the threads would do if never idle: bytes in over busy time, times threads.
    pub capacity: f64,
    /// Share of the threads' time spent compressing.
    pub busy: f64,
    /// Seconds in which the compressors, and the network, limited the push.
    pub compression_bound_seconds: f64,
    pub network_bound_seconds: f64,
    /// The side that limited the push most of the time.
    pub bottleneck: Bottleneck,
}

/// A change the controller made, for the log and the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    pub at_seconds: f64,
    pub from: usize,
    pub to: usize,
    pub strategy: Strategy,
    pub reason: String,
}

/// The end-of-transfer figures for `--verbose` and `--json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Analytics {
    pub dynamic: bool,
    pub seconds: f64,
    pub bytes_sent: u64,
    /// Bytes per second over the whole transfer.
    pub average_speed: f64,
    /// Best average over a few seconds (after the first few).
    pub peak_speed: f64,
    /// Running uploads over allowed ones, while anything was uploading.
    pub utilization: f64,
    pub mean_running: f64,
    pub mean_limit: f64,
    pub final_limit: usize,
    /// Throughput trend over the whole transfer, bytes/s per second.
    pub trend_slope: f64,
    pub trend_r2: f64,
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionAnalytics>,
}

/// The monitor's state between samples: the window, running totals for the report and,
/// in dynamic mode, the controller's current limit and strategy. Pure: no clock, no I/O.
pub struct Tracker {
    tuning: Option<Tuning>,
    window: VecDeque<Sample>,
    limit: usize,
    max: usize,
    strategy: Strategy,
    changes: Vec<Change>,
    whole: Sums,
    running_seconds: f64,
    limit_seconds: f64,
    busy_seconds: f64,
    peak: f64,
    first: Option<Sample>,
    /// Compression meter readings (time, reading) over the last `MEMORY` seconds.
    compression: VecDeque<(f64, MeterReading)>,
    compression_first: Option<(f64, MeterReading)>,
    compressor_threads: usize,
    /// Seconds judged compression-bound and network-bound.
    bound: [f64; 2],
}

impl Tracker {
    /// `tuning` is `None` for a fixed concurrency of `limit`.
    pub fn new(tuning: Option<Tuning>, limit: usize) -> Tracker {
        let max = tuning.as_ref().map_or(limit, |t| t.max);
        Tracker {
            tuning,
            window: VecDeque::new(),
            limit,
            max,
            strategy: Strategy::Initial,
            changes: Vec::new(),
            whole: Sums::default(),
            running_seconds: 0.0,
            limit_seconds: 0.0,
            busy_seconds: 0.0,
            peak: 0.0,
            first: None,
            compression: VecDeque::new(),
            compression_first: None,
            compressor_threads: 0,
            bound: [0.0; 2],
        }
    }

    /// Also watches `threads` compression threads (see [`Tracker::observe_compression`]).
    pub fn with_compressors(mut self, threads: usize) -> Tracker {
        self.compressor_threads = threads;
        self
    }

    /// Adds a reading of the compression meter, taken at `at` seconds.
    pub fn observe_compression(&mut self, at: f64, reading: MeterReading) {
        if let Some(&(previous_at, previous)) = self.compression.back() {
            let seconds = at - previous_at;
            let compressed = reading.bytes_in > previous.bytes_in
                || reading.busy_seconds > previous.busy_seconds;
            if seconds > 0.0 && compressed {
                let busy = (reading.busy_seconds - previous.busy_seconds)
                    / (seconds * self.compressor_threads.max(1) as f64);
                match Bottleneck::of(busy) {
                    Bottleneck::Compression => self.bound[0] += seconds,
                    Bottleneck::Network => self.bound[1] += seconds,
                }
            }
        }
        self.compression_first.get_or_insert((at, reading));
        self.compression.push_back((at, reading));
        while self
            .compression
            .front()
            .is_some_and(|(t, _)| at - t > MEMORY)
        {
            self.compression.pop_front();
        }
    }

    fn compression_status(&self) -> Option<CompressionStatus> {
        let &(last_at, last) = self.compression.back()?;
        let &(first_at, first) = self
            .compression
            .iter()
            .find(|(t, _)| last_at - t <= SPEED_SPAN + EPSILON)?;
        let seconds = last_at - first_at;
        if seconds <= 0.0 || last.bytes_in == 0 {
            return None;
        }
        let threads = self.compressor_threads.max(1);
        let busy =
            ((last.busy_seconds - first.busy_seconds) / (seconds * threads as f64)).clamp(0.0, 1.0);
        Some(CompressionStatus {
            speed: last.bytes_in.saturating_sub(first.bytes_in) as f64 / seconds,
            ratio: last.bytes_out as f64 / last.bytes_in as f64,
            busy,
            threads,
            bottleneck: Bottleneck::of(busy),
        })
    }

    fn compression_analytics(&self) -> Option<CompressionAnalytics> {
        let &(first_at, first) = self.compression_first.as_ref()?;
        let &(last_at, last) = self.compression.back()?;
        let seconds = last_at - first_at;
        let bytes_in = last.bytes_in.saturating_sub(first.bytes_in);
        if bytes_in == 0 || seconds <= 0.0 {
            return None;
        }
        let busy_seconds = last.busy_seconds - first.busy_seconds;
        let threads = self.compressor_threads.max(1);
        let [compression, network] = self.bound;
        Some(CompressionAnalytics {
            threads,
            bytes_in,
            bytes_out: last.bytes_out.saturating_sub(first.bytes_out),
            average_speed: bytes_in as f64 / seconds,
            capacity: if busy_seconds > 0.0 {
                bytes_in as f64 / busy_seconds * threads as f64
            } else {
                0.0
            },
            busy: (busy_seconds / (seconds * threads as f64)).clamp(0.0, 1.0),
            compression_bound_seconds: compression,
            network_bound_seconds: network,
            bottleneck: if compression > network {
                Bottleneck::Compression
            } else {
                Bottleneck::Network
            },
        })
    }

    #[cfg(test)]
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn strategy(&self) -> Option<Strategy> {
        self.tuning.as_ref().map(|_| self.strategy)
    }

    /// Adds a sample. In dynamic mode, returns the change when the controller made one
    /// (a new limit or a new strategy); the caller applies the limit to the gate.
    pub fn observe(&mut self, sample: Sample) -> Option<Change> {
        if let Some(previous) = self.window.back().copied() {
            let seconds = sample.at - previous.at;
            if seconds > 0.0 {
                let rate = sample.sent.saturating_sub(previous.sent) as f64 / seconds;
                if sample.running > 0 || previous.running > 0 {
                    self.whole.add((previous.at + sample.at) / 2.0, rate);
                }
                if sample.running > 0 {
                    self.running_seconds += sample.running.min(sample.limit) as f64 * seconds;
                    self.limit_seconds += sample.limit as f64 * seconds;
                    self.busy_seconds += seconds;
                }
            }
        }
        self.first.get_or_insert(sample);
        self.window.push_back(sample);
        while self
            .window
            .front()
            .is_some_and(|s| sample.at - s.at > MEMORY)
        {
            self.window.pop_front();
        }
        if let Some(rate) = self.rate_over_full(PEAK_SPAN, PEAK_SKIP) {
            self.peak = self.peak.max(rate);
        }
        let tuning = self.tuning.as_ref()?;
        let window: Vec<Sample> = self.window.iter().copied().collect();
        let (limit, strategy, reason) = match decide(&window, self.limit, tuning) {
            Decision::Wait => return None,
            Decision::Hold { strategy, reason } => (self.limit, strategy, reason),
            Decision::Resize {
                limit,
                strategy,
                reason,
            } => (limit, strategy, reason),
        };
        if limit == self.limit && strategy == self.strategy {
            return None;
        }
        let change = Change {
            at_seconds: (sample.at * 1000.0).round() / 1000.0,
            from: self.limit,
            to: limit,
            strategy,
            reason,
        };
        self.limit = limit;
        self.strategy = strategy;
        if self.changes.len() < MAX_CHANGES {
            self.changes.push(change.clone());
        }
        Some(change)
    }

    /// Average speed over the last `span` seconds, or since the first sample when the
    /// window is shorter.
    fn rate_over(&self, span: f64) -> Option<f64> {
        let last = self.window.back()?;
        let first = self
            .window
            .iter()
            .find(|s| last.at - s.at <= span + EPSILON)?;
        rate_between(first, last)
    }

    /// Average speed from the newest sample at least `span` seconds old, not counting
    /// the first `skip` seconds of the transfer.
    fn rate_over_full(&self, span: f64, skip: f64) -> Option<f64> {
        let last = self.window.back()?;
        let start = self.first?.at + skip;
        let first = self
            .window
            .iter()
            .rev()
            .find(|s| last.at - s.at + EPSILON >= span)
            .filter(|s| s.at + EPSILON >= start)?;
        rate_between(first, last)
    }

    pub fn status(&self) -> Status {
        let last = self.window.back().copied();
        let recent: Vec<Sample> = self
            .window
            .iter()
            .filter(|s| last.is_some_and(|l| l.at - s.at <= TREND_SPAN + EPSILON))
            .copied()
            .collect();
        let points: Vec<(f64, f64)> = intervals(&recent)
            .iter()
            .map(|i| ((i.start + i.end) / 2.0, i.rate))
            .collect();
        let fit = Fit::of(&points);
        let trend = match fit {
            Some(f) if f.r2 >= 0.5 && f.relative_change() >= 0.1 => Trend::Rising,
            Some(f) if f.r2 >= 0.5 && f.relative_change() <= -0.1 => Trend::Falling,
            _ => Trend::Steady,
        };
        Status {
            elapsed: last.map_or(0.0, |s| s.at),
            speed: self.rate_over(SPEED_SPAN).unwrap_or(0.0),
            trend,
            confidence: fit.map_or(0.0, |f| (1.0 - f.variation()).clamp(0.0, 1.0)),
            running: last.map_or(0, |s| s.running),
            limit: self.limit,
            max: self.max,
            strategy: self.strategy(),
            compression: self.compression_status(),
        }
    }

    pub fn analytics(&self) -> Analytics {
        let (seconds, bytes_sent) = match (self.first, self.window.back()) {
            (Some(first), Some(last)) => (last.at - first.at, last.sent.saturating_sub(first.sent)),
            _ => (0.0, 0),
        };
        let average_speed = if seconds > 0.0 {
            bytes_sent as f64 / seconds
        } else {
            0.0
        };
        let fit = self.whole.fit();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Analytics {
            dynamic: self.tuning.is_some(),
            seconds,
            bytes_sent,
            average_speed,
            peak_speed: self.peak.max(average_speed),
            utilization: ratio(self.running_seconds, self.limit_seconds),
            mean_running: ratio(self.running_seconds, self.busy_seconds),
            mean_limit: ratio(self.limit_seconds, self.busy_seconds),
            final_limit: self.limit,
            trend_slope: fit.map_or(0.0, |f| f.slope),
            trend_r2: fit.map_or(0.0, |f| f.r2),
            changes: self.changes.clone(),
            compression: self.compression_analytics(),
        }
    }
}

fn rate_between(first: &Sample, last: &Sample) -> Option<f64> {
    let seconds = last.at - first.at;
    (seconds > 0.0).then(|| last.sent.saturating_sub(first.sent) as f64 / seconds)
}

/// What the monitor thread reads each sample.
pub struct Sources<'a> {
    pub gate: &'a Gate,
    pub sent: &'a (dyn Fn() -> u64 + Sync),
    pub queued: &'a (dyn Fn() -> usize + Sync),
    /// The compression meter, when layers are compressed on the way.
    pub compression: Option<&'a (dyn Fn() -> MeterReading + Sync)>,
}

/// The monitor thread's loop: every tick, `show` gets the current status (and the
/// controller's change, if it made one); every second tick a sample goes to the tracker,
/// whose limit is applied to the gate. Returns when `stop` fires or disconnects.
pub fn watch(
    sources: &Sources,
    tracker: &mut Tracker,
    show: &(dyn Fn(&Status, Option<&Change>) + Sync),
    stop: &Receiver<()>,
) {
    let started = Instant::now();
    let ticker = crossbeam_channel::tick(TICK);
    let sample = |tracker: &mut Tracker| {
        let at = started.elapsed().as_secs_f64();
        if let Some(read) = sources.compression {
            tracker.observe_compression(at, read());
        }
        let change = tracker.observe(Sample {
            at,
            sent: (sources.sent)(),
            running: sources.gate.running(),
            limit: sources.gate.limit(),
            queued: (sources.queued)(),
        });
        if let Some(change) = &change
            && change.to != change.from
        {
            sources.gate.set_limit(change.to);
        }
        change
    };
    let first = sample(tracker);
    show(&tracker.status(), first.as_ref());
    let mut ticks = 0u32;
    loop {
        select! {
            recv(stop) -> _ => break,
            recv(ticker) -> _ => {
                ticks += 1;
                let change = if ticks.is_multiple_of(SAMPLE_EVERY) { sample(tracker) } else { None };
                show(&tracker.status(), change.as_ref());
            }
        }
    }
    sample(tracker);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1_000_000.0;
    const STEP: f64 = 0.25;

    /// One stretch of a synthetic trace: `limit` workers, all busy, for `seconds`, at a
    /// throughput given per moment within the stretch.
    struct Stretch<'a> {
        limit: usize,
        seconds: f64,
        rate: &'a dyn Fn(f64) -> f64,
    }

    fn stretch(limit: usize, seconds: f64, rate: &dyn Fn(f64) -> f64) -> Stretch<'_> {
        Stretch {
            limit,
            seconds,
            rate,
        }
    }

    /// Samples every 250 ms; the first stretch's limit also holds at t=0.
    fn trace(stretches: &[Stretch]) -> Vec<Sample> {
        let mut samples = vec![Sample {
            at: 0.0,
            sent: 0,
            running: stretches[0].limit,
            limit: stretches[0].limit,
            queued: 20,
        }];
        let (mut at, mut sent) = (0.0f64, 0.0f64);
        for s in stretches {
            let steps = (s.seconds / STEP).round() as usize;
            for k in 0..steps {
                sent += (s.rate)((k as f64 + 0.5) * STEP) * STEP;
                at += STEP;
                samples.push(Sample {
                    at,
                    sent: sent.round() as u64,
                    running: s.limit,
                    limit: s.limit,
                    queued: 20,
                });
            }
        }
        samples
    }

    fn tuning() -> Tuning {
        Tuning::new(1, 8, 2.0, None)
    }

    fn flat(mb_per_second: f64) -> impl Fn(f64) -> f64 {
        move |_| mb_per_second * MB
    }

    fn resized(limit: usize, strategy: Strategy, reason: &str) -> Decision {
        Decision::Resize {
            limit,
            strategy,
            reason: reason.to_string(),
        }
    }

    fn held(strategy: Strategy, reason: &str) -> Decision {
        Decision::Hold {
            strategy,
            reason: reason.to_string(),
        }
    }

    #[test]
    fn fit_recovers_a_line_and_its_confidence() {
        let points: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 + 2.0 * x as f64)).collect();
        let fit = Fit::of(&points).unwrap();
        assert!((fit.slope - 2.0).abs() < 1e-9);
        assert!((fit.r2 - 1.0).abs() < 1e-9);
        assert!((fit.mean - 12.0).abs() < 1e-9);
        assert_eq!(fit.span, 9.0);
        let flat = Fit::of(&[(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)]).unwrap();
        assert_eq!((flat.slope, flat.r2, flat.variance), (0.0, 0.0, 0.0));
        assert_eq!(Fit::of(&[(1.0, 1.0)]), None);
        assert_eq!(Fit::of(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn waits_until_a_level_has_been_measured_for_a_check_interval() {
        let window = trace(&[stretch(8, 2.75, &flat(10.0))]);
        assert_eq!(decide(&window, 8, &tuning()), Decision::Wait);
        // A limit just changed, no interval at it yet.
        assert_eq!(decide(&window, 4, &tuning()), Decision::Wait);
        assert_eq!(decide(&[], 4, &tuning()), Decision::Wait);
    }

    #[test]
    fn rising_trace_keeps_adding_workers_while_each_step_pays() {
        let window = trace(&[stretch(2, 3.0, &flat(5.0)), stretch(4, 3.0, &flat(9.5))]);
        assert_eq!(
            decide(&window, 4, &tuning()),
            resized(
                8,
                Strategy::AdaptiveBoost,
                "4 workers moved 9.5 MB/s, 2 workers moved 5.0 MB/s: trying 8"
            )
        );
        // The starting level probes upward as soon as it is measured.
        let start = trace(&[stretch(2, 3.0, &flat(5.0))]);
        assert_eq!(
            decide(&start, 2, &tuning()),
            resized(
                4,
                Strategy::AdaptiveBoost,
                "2 workers moved 5.0 MB/s: trying 4"
            )
        );
    }

    #[test]
    fn throughput_still_ramping_up_is_not_judged_yet() {
        let ramp = |t: f64| (4.0 + 3.0 * t) * MB;
        let window = trace(&[stretch(4, 3.0, &ramp)]);
        assert_eq!(decide(&window, 4, &tuning()), Decision::Wait);
    }

    #[test]
    fn falling_trace_steps_down() {
        let falling = |t: f64| (10.0 - t) * MB;
        let window = trace(&[stretch(8, 4.0, &falling)]);
        assert_eq!(
            decide(&window, 8, &tuning()),
            resized(
                4,
                Strategy::SpeedDecline,
                "throughput fell 37% over 2.8s with 8 workers (R² 1.00): trying 4"
            )
        );
        let at_minimum = Tuning::new(8, 8, 2.0, None);
        assert_eq!(
            decide(&window, 8, &at_minimum),
            held(
                Strategy::SpeedDecline,
                "throughput fell 37% over 2.8s with 8 workers (R² 1.00); already at the minimum"
            )
        );
    }

    #[test]
    fn a_fall_after_a_long_steady_hold_is_not_diluted_by_it() {
        let falling = |t: f64| (10.0 - t) * MB;
        let window = trace(&[stretch(8, 24.0, &flat(10.0)), stretch(8, 6.0, &falling)]);
        assert_eq!(
            decide(&window, 8, &tuning()),
            resized(
                4,
                Strategy::SpeedDecline,
                "throughput fell 82% over 5.8s with 8 workers (R² 1.00): trying 4"
            )
        );
    }

    #[test]
    fn noisy_trace_is_measured_longer_then_judged() {
        let noisy = |t: f64| {
            if ((t / STEP) as usize).is_multiple_of(2) {
                1.0 * MB
            } else {
                15.0 * MB
            }
        };
        let short = trace(&[stretch(4, 3.0, &noisy)]);
        assert_eq!(
            decide(&short, 4, &tuning()),
            held(
                Strategy::NetworkOptimization,
                "throughput too uneven to compare (±88%); measuring longer"
            )
        );
        // After three check intervals the average is trusted.
        let long = trace(&[stretch(4, 7.0, &noisy)]);
        assert_eq!(
            decide(&long, 4, &tuning()),
            resized(
                8,
                Strategy::AdaptiveBoost,
                "4 workers moved 8.0 MB/s: trying 8"
            )
        );
    }

    #[test]
    fn saturated_trace_returns_to_the_fewest_workers_that_fill_the_link() {
        let window = trace(&[stretch(4, 3.0, &flat(10.0)), stretch(8, 3.0, &flat(10.2))]);
        assert_eq!(
            decide(&window, 8, &tuning()),
            resized(
                4,
                Strategy::NetworkOptimization,
                "8 workers moved 10.2 MB/s, 4 workers moved 10.0 MB/s: the extra workers did not help; back to 4"
            )
        );
    }

    #[test]
    fn congested_trace_backs_off_to_the_faster_level() {
        let window = trace(&[stretch(4, 3.0, &flat(10.0)), stretch(8, 3.0, &flat(7.0))]);
        assert_eq!(
            decide(&window, 8, &tuning()),
            resized(
                4,
                Strategy::NetworkOptimization,
                "8 workers moved 7.0 MB/s, 4 workers moved 10.0 MB/s: the extra workers slowed the push; back to 4"
            )
        );
    }

    #[test]
    fn a_level_that_did_not_help_is_not_retried_while_remembered() {
        let window = trace(&[
            stretch(4, 3.0, &flat(10.0)),
            stretch(8, 3.0, &flat(10.2)),
            stretch(4, 3.0, &flat(10.0)),
        ]);
        assert_eq!(
            decide(&window, 4, &tuning()),
            held(
                Strategy::HighPerformance,
                "4 workers moved 10.0 MB/s: the best level measured"
            )
        );
        // After a long quiet hold it checks whether fewer workers keep up.
        let window = trace(&[
            stretch(4, 3.0, &flat(10.0)),
            stretch(8, 3.0, &flat(10.2)),
            stretch(4, 31.0, &flat(10.0)),
        ]);
        assert_eq!(
            decide(&window, 4, &tuning()),
            resized(
                2,
                Strategy::NetworkOptimization,
                "4 workers moved 10.0 MB/s for 30s: checking whether 2 keep up"
            )
        );
    }

    #[test]
    fn a_slower_level_returns_to_the_faster_one() {
        let window = trace(&[stretch(8, 3.0, &flat(10.0)), stretch(4, 3.0, &flat(6.0))]);
        assert_eq!(
            decide(&window, 4, &tuning()),
            resized(
                8,
                Strategy::AdaptiveBoost,
                "8 workers moved 10.0 MB/s, 4 workers moved 6.0 MB/s: back to 8"
            )
        );
    }

    #[test]
    fn at_the_maximum_the_best_level_is_held() {
        let window = trace(&[stretch(8, 3.0, &flat(10.0))]);
        assert_eq!(
            decide(&window, 8, &tuning()),
            held(
                Strategy::HighPerformance,
                "8 workers moved 10.0 MB/s: the best level measured"
            )
        );
    }

    #[test]
    fn no_workers_are_added_when_they_would_sit_idle() {
        let mut window = trace(&[stretch(4, 3.0, &flat(10.0))]);
        window.last_mut().unwrap().queued = 0;
        assert_eq!(
            decide(&window, 4, &tuning()),
            held(
                Strategy::ResourceConservation,
                "every blob has started; 4 still uploading"
            )
        );
        // Blobs queued but held back by a size-class cap: only 2 of 4 can run.
        let mut capped = trace(&[stretch(4, 3.0, &flat(10.0))]);
        for sample in &mut capped {
            sample.running = 2;
        }
        assert_eq!(
            decide(&capped, 4, &tuning()),
            held(
                Strategy::ResourceConservation,
                "4 workers allowed but workers sit idle: the queued blobs wait for a size-class slot"
            )
        );
    }

    #[test]
    fn uploads_above_a_lowered_limit_finish_before_it_is_measured() {
        let mut window = trace(&[stretch(8, 3.0, &flat(10.0)), stretch(4, 3.0, &flat(10.0))]);
        for sample in window.iter_mut().rev().take(4) {
            sample.running = 6;
        }
        assert_eq!(decide(&window, 4, &tuning()), Decision::Wait);
    }

    #[test]
    fn speed_target_stops_the_climb() {
        let window = trace(&[stretch(2, 3.0, &flat(10.0))]);
        let polite = Tuning::new(1, 8, 2.0, Some(8.0 * MB));
        assert_eq!(
            decide(&window, 2, &polite),
            held(
                Strategy::ResourceConservation,
                "10.0 MB/s meets the 8.0 MB/s target; not adding workers"
            )
        );
    }

    #[test]
    fn tracker_climbs_backs_off_and_settles_on_a_saturating_link() {
        let tuning = Tuning::new(1, 8, 2.0, None);
        let mut tracker = Tracker::new(Some(tuning), 2);
        // The link fills at 4 workers: 8 add almost nothing.
        let link = |workers: usize| match workers {
            2 => 5.0 * MB,
            4 => 9.5 * MB,
            _ => 9.6 * MB,
        };
        let mut sent = 0.0;
        let mut changes = Vec::new();
        for k in 0..=48 {
            let limit = tracker.limit();
            if k > 0 {
                sent += link(limit) * STEP;
            }
            changes.extend(tracker.observe(Sample {
                at: k as f64 * STEP,
                sent: sent as u64,
                running: limit,
                limit,
                queued: 10,
            }));
        }
        let steps: Vec<(f64, usize, usize, Strategy)> = changes
            .iter()
            .map(|c| (c.at_seconds, c.from, c.to, c.strategy))
            .collect();
        assert_eq!(
            steps,
            vec![
                (3.0, 2, 4, Strategy::AdaptiveBoost),
                (6.0, 4, 8, Strategy::AdaptiveBoost),
                (9.0, 8, 4, Strategy::NetworkOptimization),
                (12.0, 4, 4, Strategy::HighPerformance),
            ]
        );
        let analytics = tracker.analytics();
        assert!(analytics.dynamic);
        assert_eq!(analytics.final_limit, 4);
        assert_eq!(analytics.changes, changes);
        assert_eq!(analytics.seconds, 12.0);
        assert_eq!(tracker.status().strategy, Some(Strategy::HighPerformance));
    }

    #[test]
    fn fixed_mode_never_changes_the_limit_but_still_reports() {
        let mut tracker = Tracker::new(None, 3);
        for k in 0..=20u64 {
            let change = tracker.observe(Sample {
                at: k as f64 * STEP,
                sent: k * 2_500_000,
                running: 3,
                limit: 3,
                queued: 5,
            });
            assert_eq!(change, None);
        }
        let status = tracker.status();
        assert_eq!(status.strategy, None);
        assert_eq!(status.speed, 10.0 * MB);
        assert_eq!(status.trend, Trend::Steady);
        assert_eq!((status.running, status.limit, status.max), (3, 3, 3));
        let analytics = tracker.analytics();
        assert_eq!(analytics.average_speed, 10.0 * MB);
        assert_eq!(analytics.peak_speed, 10.0 * MB);
        assert_eq!(analytics.utilization, 1.0);
        assert_eq!(analytics.bytes_sent, 50_000_000);
    }

    #[test]
    fn busy_compressors_are_the_bottleneck_and_idle_ones_wait_for_the_network() {
        let reading = |bytes_in: u64, busy_seconds: f64| MeterReading {
            bytes_in,
            bytes_out: bytes_in / 3,
            busy_seconds,
            starved_seconds: 0.0,
        };
        // Two threads, each busy 90% of every second: compression limits the push.
        let mut tracker = Tracker::new(None, 2).with_compressors(2);
        for k in 0..=8u64 {
            tracker.observe_compression(k as f64 * 0.25, reading(k * 25_000_000, k as f64 * 0.45));
        }
        let status = tracker.compression_status().unwrap();
        assert_eq!(status.bottleneck, Bottleneck::Compression);
        assert!((status.busy - 0.9).abs() < 1e-9);
        assert_eq!(status.speed, 100.0 * MB);
        let analytics = tracker.compression_analytics().unwrap();
        assert_eq!(analytics.bottleneck, Bottleneck::Compression);
        assert_eq!(analytics.compression_bound_seconds, 2.0);
        assert!((analytics.capacity - 100.0 * MB / 0.9).abs() < 1.0);
        // Busy a tenth of the time: the compressors wait for the network.
        let mut tracker = Tracker::new(None, 2).with_compressors(2);
        for k in 0..=8u64 {
            tracker.observe_compression(k as f64 * 0.25, reading(k * 2_500_000, k as f64 * 0.05));
        }
        assert_eq!(
            tracker.compression_status().unwrap().bottleneck,
            Bottleneck::Network
        );
        assert_eq!(
            tracker
                .compression_analytics()
                .unwrap()
                .network_bound_seconds,
            2.0
        );
        // Nothing compressed: nothing to report.
        let mut idle = Tracker::new(None, 1).with_compressors(2);
        idle.observe_compression(0.0, MeterReading::default());
        idle.observe_compression(1.0, MeterReading::default());
        assert_eq!(idle.compression_status(), None);
        assert_eq!(idle.compression_analytics(), None);
    }

    #[test]
    fn initial_level_is_one_worker_per_blob_within_bounds() {
        let tuning = Tuning::new(2, 8, 2.0, None);
        assert_eq!(tuning.initial(1), 2);
        assert_eq!(tuning.initial(5), 5);
        assert_eq!(tuning.initial(40), 8);
        assert_eq!(tuning.step_up(5), Some(8));
        assert_eq!(tuning.step_up(8), None);
        assert_eq!(tuning.step_down(3), Some(2));
        assert_eq!(tuning.step_down(2), None);
    }
}
