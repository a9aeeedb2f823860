//! Running a set of blob transfers, uploads or downloads alike, on the worker pool: tasks
//! queued largest first, a gate deciding how many run at once, and the monitor thread
//! sampling throughput, resizing the gate in dynamic mode and driving the display.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::compress::MeterReading;
use crate::image::Blob;
use crate::pool::monitor::{
    self, Analytics, Change, Priority, Sources, Status, Tasks, Tracker, Tuning, WorkerTime,
};
use crate::pool::scheduler::{ClassCaps, Gate, PriorityChannel, run_pool_in_order};
use crate::transfer::upload::Progress;
use crate::ui::progress::Reporter;

/// How many transfers run at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Concurrency {
    /// Worker threads: the most transfers that may run at once.
    pub max: usize,
    /// Dynamic mode: the controller's settings (its `max` is `max`). `None` keeps `max`
    /// transfers running throughout.
    pub dynamic: Option<Tuning>,
    /// Caps per size class, within the overall limit.
    pub class_caps: ClassCaps,
}

impl Concurrency {
    #[cfg(test)]
    pub fn fixed(max: usize) -> Concurrency {
        Concurrency {
            max: max.max(1),
            dynamic: None,
            class_caps: ClassCaps::default(),
        }
    }

    fn initial(&self, blobs: usize) -> usize {
        match &self.dynamic {
            Some(tuning) => tuning.initial(blobs),
            None => self.max,
        }
    }
}

/// What one transfer produced, with the time it took.
pub struct Finished<R> {
    pub index: usize,
    pub result: R,
    pub took: Duration,
}

/// How the pool ran, for reports (`--json`, `--verbose`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConcurrencyReport {
    /// `fixed` or `dynamic`.
    pub mode: &'static str,
    pub min: usize,
    pub max: usize,
    pub initial: usize,
    #[serde(rename = "final")]
    pub final_limit: usize,
    pub peak_speed: f64,
    /// Running transfers over allowed ones while anything was running (0..1).
    pub utilization: f64,
    pub changes: Vec<Change>,
}

pub struct Outcome<R> {
    /// In completion order.
    pub finished: Vec<Finished<R>>,
    pub analytics: Option<Analytics>,
    pub concurrency: Option<ConcurrencyReport>,
}

/// The work for one blob: its index in `blobs` and the progress sink for its bytes. The
/// result comes back with a line for the display (`describe`); a `fatal` result stops
/// queued transfers from starting and `cancel`s the running ones (they would all fail the
/// same way). A fatal failure gets no line of its own: the command's error line tells it.
pub struct Work<'a, R> {
    pub run: &'a (dyn Fn(usize, Arc<dyn Progress>) -> R + Sync),
    pub describe: &'a (dyn Fn(usize, &R, Duration) -> String + Sync),
    pub fatal: &'a (dyn Fn(&R) -> bool + Sync),
    /// Asks the running transfers to stop at their next safe point.
    pub cancel: &'a (dyn Fn() + Sync),
    /// Where a blob starts in a source read front to back (a whole-gzipped archive), see
    /// [`crate::image::BlobSource::stream_position`]; such blobs go in stream order.
    pub position: &'a (dyn Fn(usize) -> Option<u64> + Sync),
    /// What a blob holds from the moment it leaves the queue until its transfer ends: its
    /// claim on a stream read front to back ([`crate::image::BlobSource::announce`]).
    pub claim: &'a (dyn Fn(usize) -> Option<Box<dyn Send>> + Sync),
}

/// The compression threads' meter, for transfers that compress on the way: the monitor
/// then reports compression speed beside network speed, and which one limits.
pub struct Meter<'a> {
    pub read: &'a (dyn Fn() -> MeterReading + Sync),
    pub threads: usize,
    /// `gzip` or `zstd`.
    pub algorithm: &'static str,
}

pub fn run<R: Send>(
    blobs: &[Blob],
    concurrency: &Concurrency,
    reporter: &Arc<Reporter>,
    work: Work<'_, R>,
    meter: Option<Meter<'_>>,
) -> Outcome<R> {
    reporter.begin_layers(blobs);
    let usage = usage::Usage::now();
    let meter_before = meter.as_ref().map(|m| (m.read)());
    let waits_before = reporter.counters.waits();
    let queue = PriorityChannel::new();
    for (index, blob) in blobs.iter().enumerate() {
        match (work.position)(index) {
            // A stream read out of order is inflated again from its top for every blob.
            Some(position) => queue.send_with_priority(u64::MAX - position, blob.size, index),
            // Largest first: the longest transfer starts first and nothing big straggles.
            None => queue.send(blob.size, index),
        };
    }
    let initial = concurrency.initial(blobs.len());
    let gate = Gate::with_caps(initial, concurrency.class_caps);
    let claims: Vec<Mutex<Option<Box<dyn Send>>>> =
        blobs.iter().map(|_| Mutex::new(None)).collect();
    let lock = |index: usize| claims[index].lock().unwrap_or_else(|p| p.into_inner());
    let taken = |&index: &usize| *lock(index) = (work.claim)(index);
    let not_run = |&index: &usize| drop(lock(index).take());
    let task = |index: usize| {
        let _claim = lock(index).take();
        reporter.layer_started(index);
        let started = Instant::now();
        let result = (work.run)(index, reporter.layer_progress(index));
        let took = started.elapsed();
        let line = if (work.fatal)(&result) {
            (work.cancel)();
            String::new()
        } else {
            (work.describe)(index, &result, took)
        };
        reporter.layer_finished(index, &line);
        Finished {
            index,
            result,
            took,
        }
    };
    let stop = |finished: &Finished<R>| (work.fatal)(&finished.result);

    let sent = || reporter.counters.sent();
    let queued = || queue.len();
    let sources = Sources {
        gate: &gate,
        sent: &sent,
        queued: &queued,
        compression: meter.as_ref().map(|m| m.read),
    };
    let show = |status: &Status, change: Option<&Change>| reporter.tick(status, change);
    let (stop_monitor, stopped) = crossbeam_channel::bounded::<()>(0);
    let mut tracker = Tracker::new(concurrency.dynamic.clone(), initial)
        .with_compressors(meter.as_ref().map_or(0, |m| m.threads));
    let (finished, monitored) = std::thread::scope(|scope| {
        let monitor = scope.spawn(|| {
            monitor::watch(&sources, &mut tracker, &show, &stopped);
        });
        let finished = run_pool_in_order(
            concurrency.max,
            &gate,
            &queue,
            (&taken, &not_run),
            &task,
            &stop,
        );
        drop(stop_monitor);
        (finished, monitor.join().is_ok())
    });
    reporter.finish_live();
    let analytics = monitored.then(|| {
        let mut analytics = tracker.analytics();
        let waits = reporter.counters.waits();
        let starved = match (meter_before, &meter) {
            (Some(before), Some(m)) => (m.read)().starved_seconds - before.starved_seconds,
            _ => 0.0,
        };
        analytics.measured(WorkerTime {
            busy: finished.iter().map(|f| f.took.as_secs_f64()).sum(),
            source: waits[0] - waits_before[0],
            network: waits[1] - waits_before[1],
            compressed: waits[2] - waits_before[2],
            compressor: starved,
        });
        if let (Some(c), Some(m)) = (&mut analytics.compression, &meter) {
            c.algorithm = m.algorithm;
        }
        analytics.tasks = Tasks {
            total: blobs.len(),
            done: finished.len(),
            active: 0,
        };
        analytics.priority = Priority::of(blobs.iter().map(|b| b.size));
        analytics.resources = usage.since();
        analytics
    });
    let report = analytics.as_ref().map(|analytics| ConcurrencyReport {
        mode: if analytics.dynamic {
            "dynamic"
        } else {
            "fixed"
        },
        min: concurrency
            .dynamic
            .as_ref()
            .map_or(concurrency.max, |t| t.min),
        max: concurrency.max,
        initial,
        final_limit: analytics.final_limit,
        peak_speed: analytics.peak_speed.round(),
        utilization: (analytics.utilization * 1000.0).round() / 1000.0,
        changes: analytics.changes.clone(),
    });
    Outcome {
        finished,
        analytics,
        concurrency: report,
    }
}

mod usage;

#[cfg(test)]
mod tests;
