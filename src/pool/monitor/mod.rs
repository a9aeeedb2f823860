//! The monitor: a thread that samples how many bytes have gone out, how many uploads run
//! and how many wait, and (in dynamic mode) resizes the worker gate.
//!
//! The controller (`decide`) is pure logic over a sliding window of samples. It treats
//! the window as a table of measured throughput per concurrency level and moves to the
//! smallest level that comes within `TOLERANCE` of the best one measured; at that level
//! it probes the next level up (twice as many workers) when that level has not been
//! measured recently, and the next level down to find out whether fewer workers keep up:
//! at once while it is still descending from the start level (so a short push gets a
//! measured decision), else after a long quiet hold. A confident falling trend at a steady
//! level steps down. The window is also the controller's memory: a level that did not help
//! is not tried again until its measurement slides out, which is what keeps it from
//! oscillating.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use crate::compress::MeterReading;
use crate::pool::scheduler::Gate;
use crate::text::units::human_rate;

mod bottleneck;
mod controller;
mod fit;
mod tracker;
mod watch;
pub use bottleneck::*;
pub use controller::*;
pub use fit::*;
pub use tracker::*;
pub use watch::*;

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

    /// The situation in words, for the live line.
    pub fn words(self) -> &'static str {
        match self {
            Strategy::Initial => "measuring the start level",
            Strategy::HighPerformance => "holding the best level",
            Strategy::SpeedDecline => "speed fell, stepping down",
            Strategy::NetworkOptimization => "trimming workers the link does not reward",
            Strategy::ResourceConservation => "no use for more workers",
            Strategy::AdaptiveBoost => "adding workers",
        }
    }
}

#[cfg(test)]
mod tests;
