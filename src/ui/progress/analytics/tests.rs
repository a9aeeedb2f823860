use super::*;
use crate::pool::monitor::{
    Bottleneck, Change, CompressionAnalytics, LevelSpeed, Strategy, WorkerTime,
};

const MB: f64 = 1_000_000.0;

/// A 100-second dynamic push over a link that was full from 2 workers on.
fn analytics() -> Analytics {
    let mut a = Analytics {
        dynamic: true,
        seconds: 100.0,
        bytes_sent: 1_000_000_000,
        average_speed: 10.0 * MB,
        peak_speed: 12.5 * MB,
        utilization: 0.9,
        mean_running: 3.6,
        mean_limit: 4.0,
        final_limit: 2,
        trend_slope: -10_000.0,
        trend_r2: 0.3,
        changes: vec![Change {
            at_seconds: 3.0,
            from: 8,
            to: 4,
            strategy: Strategy::NetworkOptimization,
            reason:
                "8 workers moved 10.1 MB/s, (fewer not measured yet): checking whether 4 keep up"
                    .to_string(),
        }],
        compression: None,
        current_speed: 9.5 * MB,
        variance_pct: 8.0,
        levels: [(2, 10.0), (4, 10.1), (8, 10.2)]
            .map(|(workers, mb)| LevelSpeed {
                workers,
                speed: mb * MB,
                seconds: 20.0,
            })
            .to_vec(),
        max_workers: 8,
        time: WorkerTime::default(),
        bottleneck: Stage::None,
        bottleneck_share: 0.0,
        tasks: Tasks {
            total: 51,
            done: 51,
            active: 0,
        },
        priority: Priority {
            high: 0,
            medium: 1,
            low: 50,
        },
        resources: Resources {
            cpu_percent: 34.2,
            peak_rss_bytes: 45 << 20,
        },
    };
    a.measured(WorkerTime {
        busy: 400.0,
        network: 320.0,
        source: 20.0,
        compressed: 0.0,
        compressor: 0.0,
    });
    a
}

/// `--compress gzip` on a 3 MB/s link: the threads sat mostly idle, the workers sent.
fn compressed_on_a_slow_link() -> Analytics {
    let mut a = analytics();
    a.average_speed = 3.0 * MB;
    a.levels.clear();
    a.compression = Some(CompressionAnalytics {
        threads: 2,
        bytes_in: 300_000_000,
        bytes_out: 100_000_000,
        average_speed: 9.0 * MB,
        capacity: 120.0 * MB,
        busy: 0.07,
        // What the older per-interval judgement said for this push.
        compression_bound_seconds: 67.0,
        network_bound_seconds: 33.0,
        bottleneck: Bottleneck::Compression,
        algorithm: "gzip",
    });
    a.measured(WorkerTime {
        busy: 200.0,
        network: 170.0,
        source: 0.5,
        compressed: 20.0,
        compressor: 6.0,
    });
    a
}

#[test]
fn report_has_every_section_in_plain_text() {
    let lines = render_analytics(&analytics(), &class_counts([10, 200 << 20]));
    assert_eq!(
        lines,
        vec![
            "transfer report:",
            "  pipeline",
            "    tasks            51 of 51 done",
            "    speed            10.0 MB/s average, 12.5 MB/s peak (1.0 GB sent in 1m40s)",
            "    efficiency       80% of the peak speed",
            "  concurrency",
            "    workers          2 at the end, 8 at most (auto)",
            "    utilization      90% (3.6 of 4.0 allowed workers busy on average)",
            "    priority queue   medium 1 (medium, 209.7 MB), low 1 (small (<100 MiB), 10 B)",
            "  network and regression",
            "    speed            9.5 MB/s at the end, 10.0 MB/s average",
            "    trend            steady, slope -600.0 kB/s/min, R² 0.30 (low confidence)",
            "    variance         8% (stable)",
            "  bottleneck",
            "    verdict          network (80% of the workers' time sending bytes)",
            "    measured         network 80%, registry 15%, source 5%, compression 0% over 400.0 worker-seconds",
            "  resources",
            "    cpu              34% of one core while the transfer ran",
            "    peak memory      47.2 MB resident",
            "  recommendations",
            "    - the link was the bottleneck at every level from 2 workers: --max-concurrent 2 would do as well (2 workers 10.0 MB/s, 4 workers 10.1 MB/s, 8 workers 10.2 MB/s)",
            "  strategy changes (1)",
            "        3.0s  8 -> 4  NetworkOptimization: 8 workers moved 10.1 MB/s, (fewer not measured yet): checking whether 4 keep up",
        ]
    );
    assert!(lines.iter().all(|l| !l.contains('\x1b')));
}

#[test]
fn json_summary_carries_every_figure() {
    let json = serde_json::to_value(AnalyticsSummary::of(&analytics())).unwrap();
    assert_eq!(
        json["tasks"],
        serde_json::json!({"total": 51, "done": 51, "active": 0})
    );
    assert_eq!(
        json["priority"],
        serde_json::json!({"high": 0, "medium": 1, "low": 50})
    );
    assert_eq!(
        json["speed"],
        serde_json::json!({"current": 9.5e6, "average": 1e7, "peak": 1.25e7,
            "variance_pct": 8.0, "stability": "stable"})
    );
    assert_eq!(json["trend"]["slope"], -10_000.0);
    assert_eq!(json["trend"]["r_squared"], 0.3);
    assert_eq!(json["trend"]["confidence"], "low");
    assert_eq!(json["bottleneck"]["kind"], "network");
    assert_eq!(json["bottleneck"]["share"], 0.8);
    assert_eq!(json["bottleneck"]["measured"]["registry"], 0.15);
    assert_eq!(json["resources"]["cpu_percent"], 34.2);
    assert_eq!(json["resources"]["peak_rss_bytes"], 45 << 20);
    assert_eq!(json["recommendations"].as_array().unwrap().len(), 1);
}

#[test]
fn the_verdict_agrees_with_the_compression_figures_beside_it() {
    let a = compressed_on_a_slow_link();
    assert_eq!(a.bottleneck, Stage::Network);
    assert_eq!(
        a.compression.unwrap().bottleneck,
        Bottleneck::Network,
        "the compression figures name the same side"
    );
    let lines = render_analytics(&a, &[]);
    let verdict = lines.iter().find(|l| l.contains("verdict")).unwrap();
    assert!(verdict.contains("network (85%"), "{verdict}");
    assert!(
        lines.iter().any(|l| l.contains("2 threads 7% busy")),
        "{lines:?}"
    );
    assert_eq!(
        recommendations(&a),
        vec![
            "compression kept up with a 3.0 MB/s link and cut the bytes sent to 33%: --compress gzip helps on this link"
        ]
    );
}

#[test]
fn busy_compressors_get_the_verdict_and_the_advice_to_match() {
    let mut a = compressed_on_a_slow_link();
    if let Some(c) = &mut a.compression {
        c.busy = 0.97;
    }
    a.measured(WorkerTime {
        busy: 100.0,
        network: 20.0,
        source: 0.0,
        compressed: 75.0,
        compressor: 70.0,
    });
    assert_eq!(a.bottleneck, Stage::Compression);
    assert_eq!(a.compression.unwrap().bottleneck, Bottleneck::Compression);
    let advice = recommendations(&a);
    assert_eq!(advice.len(), 1);
    assert!(
        advice[0].starts_with("the compression threads bounded the push (70% of the workers' time waiting for 2 threads 97% busy"),
        "{advice:?}"
    );
}

#[test]
fn fewer_workers_are_recommended_only_from_where_every_level_kept_up() {
    let mut a = analytics();
    a.levels[0].speed = 6.0 * MB;
    let advice = recommendations(&a);
    assert!(
        advice[0].starts_with(
            "the link was the bottleneck at every level from 4 workers: --max-concurrent 4"
        ),
        "{advice:?}"
    );
    // One level measured says nothing about the others.
    a.levels.drain(..2);
    assert!(recommendations(&a).is_empty());
    // The levels name the stage the verdict found.
    let mut a = analytics();
    a.measured(WorkerTime {
        busy: 400.0,
        network: 100.0,
        source: 20.0,
        compressed: 0.0,
        compressor: 0.0,
    });
    assert_eq!(a.bottleneck, Stage::Registry);
    assert!(
        recommendations(&a)[0].starts_with(
            "waiting for the registry's answers was the bottleneck at every level from 2 workers"
        ),
        "{:?}",
        recommendations(&a)
    );
    // More workers are advised only when the most workers were still clearly the fastest.
    a.final_limit = 8;
    a.levels[2].speed = 10.2 * MB;
    a.levels.truncate(3);
    a.levels[0].speed = 4.0 * MB;
    a.levels[1].speed = 7.0 * MB;
    assert_eq!(
        recommendations(&a),
        vec![
            "waiting for the registry's answers took 70% of the workers' time, and the most workers were still the fastest (8 workers 10.2 MB/s, 4 workers 7.0 MB/s): --max-concurrent 16 would overlap more of it"
        ]
    );
    a.levels[1].speed = 10.0 * MB;
    assert_eq!(
        recommendations(&a),
        vec![
            "waiting for the registry's answers was the bottleneck at every level from 4 workers: --max-concurrent 4 would do as well (4 workers 10.0 MB/s, 8 workers 10.2 MB/s)"
        ]
    );
}

#[test]
fn a_run_too_short_to_measure_says_so() {
    let mut a = analytics();
    a.measured(WorkerTime::default());
    let lines = render_analytics(&a, &[]);
    assert!(
        lines.contains(&"    verdict          not measured: too little worker time".to_string())
    );
    assert!(lines.contains(&"    none: nothing in these figures calls for a change".to_string()));
    let json = serde_json::to_value(AnalyticsSummary::of(&a)).unwrap();
    assert_eq!(json["bottleneck"]["kind"], "none");
}

#[test]
fn stability_and_direction_in_words() {
    assert_eq!(stability(5.0), "stable");
    assert_eq!(stability(25.0), "variable");
    assert_eq!(stability(80.0), "unstable");
    let mut a = analytics();
    a.trend_r2 = 0.9;
    a.trend_slope = 20_000.0; // +2 MB/s over 100 s at 10 MB/s: a fifth more
    assert_eq!(direction(&a), "rising");
    a.trend_slope = -20_000.0;
    assert_eq!(direction(&a), "falling");
    a.trend_r2 = 0.2;
    assert_eq!(direction(&a), "steady");
}
