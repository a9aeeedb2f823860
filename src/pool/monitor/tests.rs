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
fn the_start_level_once_measured_is_followed_at_once_by_a_probe_down() {
    let window = trace(&[stretch(8, 3.0, &flat(10.0))]);
    assert_eq!(
        decide(&window, 8, &tuning()),
        resized(
            4,
            Strategy::NetworkOptimization,
            "8 workers moved 10.0 MB/s (fewer not measured yet): checking whether 4 keep up"
        )
    );
    // Each level down that keeps up is followed by the next one.
    let window = trace(&[stretch(8, 3.0, &flat(10.0)), stretch(4, 3.0, &flat(10.0))]);
    assert_eq!(
        decide(&window, 4, &tuning()),
        resized(
            2,
            Strategy::NetworkOptimization,
            "4 workers moved 10.0 MB/s (fewer not measured yet): checking whether 2 keep up"
        )
    );
    // A level left going up waits for a long hold before it goes down again.
    let window = trace(&[
        stretch(8, 3.0, &flat(10.0)),
        stretch(4, 3.0, &flat(6.0)),
        stretch(8, 3.0, &flat(10.0)),
        stretch(4, 3.0, &flat(10.0)),
    ]);
    assert!(matches!(
        decide(&window, 4, &tuning()),
        Decision::Hold { .. }
    ));
}

#[test]
fn at_the_maximum_the_best_level_is_held() {
    let window = trace(&[
        stretch(8, 3.0, &flat(10.0)),
        stretch(4, 3.0, &flat(6.0)),
        stretch(8, 3.0, &flat(10.0)),
    ]);
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

#[test]
fn a_short_push_gets_a_measured_decision_and_its_levels_are_kept() {
    let mut tracker = Tracker::new(Some(tuning()), 8);
    // A link full at any level: fewer workers do as well.
    let mut sent = 0.0;
    let mut changes = Vec::new();
    for k in 0..=40 {
        let limit = tracker.limit();
        if k > 0 {
            sent += 10.0 * MB * STEP;
        }
        changes.extend(tracker.observe(Sample {
            at: k as f64 * STEP,
            sent: sent as u64,
            running: limit,
            limit,
            queued: 10,
        }));
    }
    let first = changes.first().expect("a decision within 10 seconds");
    assert_eq!((first.from, first.to), (8, 4));
    assert!(first.at_seconds <= 4.0, "{first:?}");
    assert!(
        first.reason.contains("8 workers moved 10.0 MB/s"),
        "{first:?}"
    );
    let levels: Vec<usize> = tracker
        .analytics()
        .levels
        .iter()
        .map(|l| l.workers)
        .collect();
    assert!(levels.contains(&4) && levels.contains(&8), "{levels:?}");
    for level in tracker.analytics().levels {
        assert!((level.speed - 10.0 * MB).abs() < 0.01 * MB, "{level:?}");
    }
}
