//! The monitor's state between samples, what the display and the report read from it.

use super::*;

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
    /// The best speed seen so far (averaged over a few seconds), 0 before it is known.
    pub peak: f64,
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
    /// The side that limited the push: compression when the measured verdict says so
    /// (see [`Analytics::measured`]), else the network.
    pub bottleneck: Bottleneck,
    /// `gzip` or `zstd`, when known.
    pub algorithm: &'static str,
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
    /// Bytes per second over the last few seconds.
    pub current_speed: f64,
    /// Standard deviation of the per-sample speed over its mean, in percent.
    pub variance_pct: f64,
    /// Measured throughput of every level that ran with all its workers busy.
    pub levels: Vec<LevelSpeed>,
    /// The most workers allowed.
    pub max_workers: usize,
    /// What the workers' time went to, and the verdict on it (set by the pool's runner).
    pub time: WorkerTime,
    pub bottleneck: Stage,
    pub bottleneck_share: f64,
    pub tasks: Tasks,
    pub priority: Priority,
    pub resources: Resources,
}

/// Throughput measured at one concurrency level.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LevelSpeed {
    pub workers: usize,
    pub speed: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tasks {
    pub total: usize,
    pub done: usize,
    pub active: usize,
}

/// Blobs per place in the queue: large ones first (high), then medium, then small (low).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Priority {
    pub high: usize,
    pub medium: usize,
    pub low: usize,
}

impl Priority {
    pub fn of(sizes: impl IntoIterator<Item = u64>) -> Priority {
        use crate::pool::scheduler::SizeClass;
        let mut priority = Priority::default();
        for size in sizes {
            match SizeClass::of(size) {
                SizeClass::Large => priority.high += 1,
                SizeClass::Medium => priority.medium += 1,
                SizeClass::Small => priority.low += 1,
            }
        }
        priority
    }
}

/// What the process used while the transfer ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Resources {
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: f64,
    pub peak_rss_bytes: u64,
}

impl Analytics {
    /// Records where the workers' time went and judges the bottleneck from it; the
    /// compression figures then name the same side.
    pub fn measured(&mut self, time: WorkerTime) {
        let verdict = verdict(&time);
        self.time = time;
        self.bottleneck = verdict.stage;
        self.bottleneck_share = verdict.share;
        if let Some(c) = &mut self.compression {
            c.bottleneck = if verdict.stage == Stage::Compression {
                Bottleneck::Compression
            } else {
                Bottleneck::Network
            };
        }
    }
}

/// The monitor's state between samples: the window, running totals for the report and,
/// in dynamic mode, the controller's current limit and strategy. Pure: no clock, no I/O.
pub struct Tracker {
    pub(super) tuning: Option<Tuning>,
    pub(super) window: VecDeque<Sample>,
    pub(super) limit: usize,
    pub(super) max: usize,
    pub(super) strategy: Strategy,
    pub(super) changes: Vec<Change>,
    pub(super) whole: Sums,
    pub(super) running_seconds: f64,
    pub(super) limit_seconds: f64,
    pub(super) busy_seconds: f64,
    pub(super) peak: f64,
    pub(super) first: Option<Sample>,
    /// Compression meter readings (time, reading) over the last `MEMORY` seconds.
    pub(super) compression: VecDeque<(f64, MeterReading)>,
    pub(super) compression_first: Option<(f64, MeterReading)>,
    pub(super) compressor_threads: usize,
    /// Seconds judged compression-bound and network-bound.
    pub(super) bound: [f64; 2],
    /// Bytes and seconds measured per level (every allowed worker busy, settled).
    pub(super) levels: BTreeMap<usize, (f64, f64)>,
    /// When the current level came into force.
    pub(super) level_since: f64,
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
            levels: BTreeMap::new(),
            level_since: 0.0,
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

    pub(super) fn compression_status(&self) -> Option<CompressionStatus> {
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

    pub(super) fn compression_analytics(&self) -> Option<CompressionAnalytics> {
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
            algorithm: "",
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
                self.measure_level(&previous, &sample, rate * seconds);
            }
        } else {
            self.level_since = sample.at;
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

    /// Adds an interval to its level's measurement when every allowed worker was busy
    /// and the level had settled.
    fn measure_level(&mut self, previous: &Sample, sample: &Sample, bytes: f64) {
        if sample.limit != previous.limit {
            self.level_since = previous.at;
        }
        let full = previous.running == sample.limit && sample.running == sample.limit;
        let settle = self.tuning.as_ref().map_or(SETTLE, |t| t.settle);
        if full && previous.at + EPSILON >= self.level_since + settle {
            let level = self.levels.entry(sample.limit).or_insert((0.0, 0.0));
            level.0 += bytes;
            level.1 += sample.at - previous.at;
        }
    }

    /// Average speed over the last `span` seconds, or since the first sample when the
    /// window is shorter.
    pub(super) fn rate_over(&self, span: f64) -> Option<f64> {
        let last = self.window.back()?;
        let first = self
            .window
            .iter()
            .find(|s| last.at - s.at <= span + EPSILON)?;
        rate_between(first, last)
    }

    /// Average speed from the newest sample at least `span` seconds old, not counting
    /// the first `skip` seconds of the transfer.
    pub(super) fn rate_over_full(&self, span: f64, skip: f64) -> Option<f64> {
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
            peak: self.peak,
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
            current_speed: self.rate_over(SPEED_SPAN).unwrap_or(0.0),
            variance_pct: fit.map_or(0.0, |f| f.variation() * 100.0),
            levels: self
                .levels
                .iter()
                .filter(|&(_, &(_, seconds))| seconds > 0.0)
                .map(|(&workers, &(bytes, seconds))| LevelSpeed {
                    workers,
                    speed: bytes / seconds,
                    seconds,
                })
                .collect(),
            max_workers: self.max,
            time: WorkerTime::default(),
            bottleneck: Stage::None,
            bottleneck_share: 0.0,
            tasks: Tasks::default(),
            priority: Priority::default(),
            resources: Resources::default(),
        }
    }
}

pub(super) fn rate_between(first: &Sample, last: &Sample) -> Option<f64> {
    let seconds = last.at - first.at;
    (seconds > 0.0).then(|| last.sent.saturating_sub(first.sent) as f64 / seconds)
}
