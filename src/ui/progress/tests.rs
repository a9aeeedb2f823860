use super::*;
use crate::pool::monitor::Strategy;

fn status(strategy: Option<Strategy>) -> Status {
    Status {
        elapsed: 30.0,
        speed: 12_300_000.0,
        trend: Trend::Rising,
        confidence: 0.84,
        running: 3,
        limit: 4,
        max: 8,
        peak: 13_000_000.0,
        strategy,
        compression: None,
    }
}

fn view(strategy: Option<Strategy>, running: usize) -> View {
    View {
        status: status(strategy),
        done: 1_234_000_000,
        total: 2_700_000_000,
        sent: 1_234_000_000,
        tasks: Tasks {
            total: 51,
            done: 23,
            active: running,
        },
        running: (0..running)
            .map(|i| LayerView {
                id: format!("{i:012x}"),
                size: 620_000_000,
                done: 300_000_000,
            })
            .collect(),
    }
}

fn has_control_codes(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n')
}

#[test]
fn live_block_fits_80_columns() {
    let lines = render_live(&view(Some(Strategy::HighPerformance), 12), 80, false);
    assert_eq!(lines.len(), 2 + MAX_LAYER_LINES + 1);
    for line in &lines {
        assert!(line.chars().count() < 80, "too wide: {line:?}");
        assert!(!has_control_codes(line), "{line:?}");
    }
    assert_eq!(
        lines[0],
        "[============>                 ]  45% 1.2 GB/2.7 GB 12.3 MB/s ↑ ETA 1m59s (84%)"
    );
    assert_eq!(
        lines[1],
        "T:23/51 A:12  workers 3/4 (max 8)  auto: holding the best level"
    );
    assert_eq!(
        lines[2],
        "  000000000000 [========>           ]  48% 300.0 MB/620.0 MB"
    );
    assert_eq!(lines.last().unwrap(), "  … and 4 more");
}

#[test]
fn narrow_terminals_drop_the_bar_and_cut_lines() {
    for width in [20, 40, 60] {
        for line in render_live(&view(None, 2), width, true) {
            let visible = strip_codes(&line);
            assert!(visible.chars().count() < width, "{width}: {visible:?}");
        }
    }
    // At 40 columns the ETA no longer fits; a short bar still does.
    let lines = render_live(&view(None, 0), 40, false);
    assert_eq!(lines[0], "[=>    ]  45% 1.2 GB/2.7 GB 12.3 MB/s ↑");
    assert_eq!(lines[1], "T:23/51 A:0  workers 3/4  fixed");
}

#[test]
fn colour_only_when_allowed() {
    let colored = render_live(&view(Some(Strategy::AdaptiveBoost), 1), 80, true);
    assert!(colored[0].contains("\x1b[32m"));
    assert!(colored[1].contains("\x1b[36mauto: adding workers\x1b[0m"));
    let plain = render_live(&view(Some(Strategy::AdaptiveBoost), 1), 80, false);
    assert!(plain.iter().all(|l| !has_control_codes(l)));
    assert_eq!(
        plain.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        colored.iter().map(|l| strip_codes(l)).collect::<Vec<_>>()
    );
}

fn strip_codes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn display_follows_terminal_term_no_color_and_columns() {
    assert_eq!(
        Display::choose(false, Some("xterm"), None, None),
        Display::Lines
    );
    assert_eq!(
        Display::choose(true, Some("dumb"), None, None),
        Display::Lines
    );
    assert_eq!(
        Display::choose(true, Some("xterm"), None, None),
        Display::Live {
            color: true,
            width: 80
        }
    );
    assert_eq!(
        Display::choose(true, None, Some("1"), Some("132")),
        Display::Live {
            color: false,
            width: 132
        }
    );
    // An empty NO_COLOR does not count; nonsense widths fall back to 80.
    assert_eq!(
        Display::choose(true, None, Some(""), Some("wide")),
        Display::Live {
            color: true,
            width: 80
        }
    );
}

#[test]
fn summary_line_is_plain_text() {
    let line = render_summary(&view(Some(Strategy::SpeedDecline), 3));
    assert_eq!(
        line,
        "progress: 45% (1.2 GB of 2.7 GB) at 12.3 MB/s (rising); T:23/51 A:3; workers 3/4 (max 8), auto: speed fell, stepping down; ETA 1m59s (84%)"
    );
    assert!(!has_control_codes(&line));
    let unknown_speed = View {
        status: Status {
            speed: 0.0,
            ..status(None)
        },
        ..view(None, 0)
    };
    assert!(render_summary(&unknown_speed).ends_with("; ETA --"));
}

#[test]
fn classes_are_counted_largest_first() {
    let counts = class_counts([5 << 30, 10, 20, 200 << 20]);
    assert_eq!(
        counts,
        vec![
            ClassCount {
                class: SizeClass::Large,
                blobs: 1,
                bytes: 5 << 30
            },
            ClassCount {
                class: SizeClass::Medium,
                blobs: 1,
                bytes: 200 << 20
            },
            ClassCount {
                class: SizeClass::Small,
                blobs: 2,
                bytes: 30
            },
        ]
    );
}

#[test]
fn bar_colour_follows_the_speed_against_the_best_seen() {
    assert_eq!(speed_color(10.0, 0.0), GREEN, "no best yet");
    assert_eq!(speed_color(9.0, 10.0), GREEN);
    assert_eq!(speed_color(6.0, 10.0), YELLOW);
    assert_eq!(speed_color(2.0, 10.0), RED);
    let mut slow = view(None, 1);
    slow.status.speed = 2_000_000.0;
    let lines = render_live(&slow, 80, true);
    assert!(lines[0].starts_with("[\x1b[31m"), "{:?}", lines[0]);
    let lines = render_live(&view(None, 1), 80, true);
    assert!(lines[0].starts_with("[\x1b[32m"), "{:?}", lines[0]);
}

#[test]
fn compression_shows_its_speed_and_the_bottleneck() {
    use crate::pool::monitor::{Bottleneck, CompressionStatus};
    let mut view = view(None, 0);
    view.status.compression = Some(CompressionStatus {
        speed: 85_000_000.0,
        ratio: 0.33,
        busy: 0.95,
        threads: 2,
        bottleneck: Bottleneck::Compression,
    });
    // A third of the bytes on the wire: the ETA counts in layer bytes.
    view.sent = view.done / 3;
    let lines = render_live(&view, 100, false);
    assert_eq!(
        lines[1],
        "T:23/51 A:0  workers 3/4  fixed  compress 85.0 MB/s (33%), bottleneck: compression"
    );
    assert!(lines[0].ends_with("ETA 40s (84%)"), "{}", lines[0]);
    assert!(
        render_summary(&view).contains(
            "; compressing 85.0 MB/s to 33% (2 threads 95% busy), bottleneck compression;"
        ),
        "{}",
        render_summary(&view)
    );
}

#[test]
fn change_log_line() {
    let change = Change {
        at_seconds: 9.0,
        from: 8,
        to: 4,
        strategy: Strategy::NetworkOptimization,
        reason: "the link is full".to_string(),
    };
    assert_eq!(
        describe_change(&change),
        "[monitor] 9.0s 8 -> 4 workers, NetworkOptimization: the link is full"
    );
}
