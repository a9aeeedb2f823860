use super::*;

fn policy(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        ..RetryPolicy::default()
    }
}

#[test]
fn backoff_grows_caps_and_honours_retry_after() {
    let policy = RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    assert!(policy.delay(0, None) <= Duration::from_millis(100));
    assert!(policy.delay(0, None) >= Duration::from_millis(50));
    assert!(policy.delay(10, None) <= Duration::from_secs(1));
    assert_eq!(
        policy.delay(0, Some(Duration::from_secs(7))),
        Duration::from_secs(7)
    );
    assert_eq!(
        policy.delay(0, Some(Duration::from_secs(u64::MAX))),
        MAX_RETRY_AFTER
    );
}

#[test]
fn failures_in_a_row_beyond_the_attempts_give_up_as_a_network_failure() {
    let mut budget = Budget::for_blob(&policy(2), 100, 100);
    assert!(matches!(budget.record_failure(None), Verdict::Retry(_)));
    assert!(matches!(budget.record_failure(None), Verdict::Retry(_)));
    let verdict = budget.record_failure(None);
    assert_eq!(
        verdict,
        Verdict::GiveUp(Exhausted::Failures {
            count: 3,
            registry: false
        })
    );
    let Verdict::GiveUp(exhausted) = verdict else {
        unreachable!()
    };
    assert_eq!(exhausted.class(), Class::Network);
}

#[test]
fn stalls_in_a_row_give_up_as_the_registry_s_fault() {
    let mut budget = Budget::for_blob(&policy(1), 100, 10);
    assert!(matches!(budget.record_stall(), Verdict::Retry(_)));
    let Verdict::GiveUp(exhausted) = budget.record_stall() else {
        panic!("two stalls exceed one attempt");
    };
    assert_eq!(exhausted.class(), Class::Registry);
}

#[test]
fn progress_resets_failures_in_a_row_but_not_failures_in_all() {
    // 2 chunks, 3 attempts: (3 + 1) * (2 + 1) = 12 failures in all.
    let mut budget = Budget::for_blob(&policy(3), 200, 100);
    for _ in 0..12 {
        assert!(matches!(budget.record_failure(None), Verdict::Retry(_)));
        budget.record_progress();
    }
    assert_eq!(
        budget.record_failure(None),
        Verdict::GiveUp(Exhausted::Attempts { count: 13 })
    );
    assert_eq!(
        budget.record_failure(None).class_of_give_up(),
        Some(Class::Registry)
    );
}

impl Verdict {
    fn class_of_give_up(&self) -> Option<Class> {
        match self {
            Verdict::GiveUp(e) => Some(e.class()),
            Verdict::Retry(_) => None,
        }
    }
}

#[test]
fn failures_in_all_scale_with_the_blob_s_chunks() {
    let small = Budget::for_blob(&policy(3), 1, 1 << 20);
    let large = Budget::for_blob(&policy(3), 1000 << 20, 1 << 20);
    assert_eq!(small.max_failures, 8);
    assert_eq!(large.max_failures, 4 * 1001);
    let huge = Budget::for_blob(&policy(u32::MAX), u64::MAX, 1);
    assert_eq!(huge.max_failures, u32::MAX);
    assert_eq!(huge.max_resent, u64::MAX);
}

#[test]
fn resent_bytes_beyond_twice_the_blob_and_four_chunks_give_up() {
    let mut budget = Budget::for_blob(&policy(3), 1000, 100);
    // 2 * 1000 + 4 * 100
    assert!(budget.record_resend(2400).is_ok());
    assert_eq!(
        budget.record_resend(1),
        Err(Exhausted::Resent {
            bytes: 2401,
            limit: 2400
        })
    );
    assert_eq!(budget.resent(), 2401);
}

#[test]
fn a_blob_sent_in_one_request_may_be_sent_several_times() {
    let mut budget = Budget::for_blob(&policy(3), 1000, 1000);
    for _ in 0..3 {
        assert!(budget.record_resend(1000).is_ok());
    }
}

#[test]
fn an_accepted_request_that_keeps_nothing_new_is_a_stall() {
    let mut budget = Budget::for_blob(&policy(1), 1000, 100);
    assert_eq!(budget.after_accepted(0, 100, 0), None);
    assert!(matches!(
        budget.after_accepted(100, 100, 100),
        Some(Verdict::Retry(_))
    ));
    let Some(Verdict::GiveUp(exhausted)) = budget.after_accepted(100, 0, 200) else {
        panic!("a second stall in a row with one attempt gives up");
    };
    assert_eq!(exhausted.class(), Class::Registry);
    assert_eq!(budget.resent(), 300);
}

#[test]
fn wasted_bytes_are_what_the_registry_does_not_hold() {
    assert_eq!(wasted(100, 50, 150), 0);
    assert_eq!(wasted(100, 50, 100), 50);
    assert_eq!(wasted(100, 50, 0), 150);
    assert_eq!(wasted(100, 50, 200), 0);
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_trickle_below_the_minimum_over_a_window_fails() {
    let limit = MinSpeed {
        bytes_per_second: 100,
        window: secs(10),
    };
    let mut window = RateWindow::new(limit);
    for s in 0..10 {
        assert!(window.record(1, secs(s)).is_ok());
    }
    let error = window.record(1, secs(10)).unwrap_err();
    assert!(error.contains("--min-speed"), "{error}");
}

#[test]
fn a_steady_transfer_at_the_minimum_passes_window_after_window() {
    let limit = MinSpeed {
        bytes_per_second: 100,
        window: secs(10),
    };
    let mut window = RateWindow::new(limit);
    for s in 0..100 {
        assert!(window.record(100, secs(s)).is_ok(), "second {s}");
    }
}

#[test]
fn the_clock_starts_with_the_first_byte_and_off_means_off() {
    let limit = MinSpeed {
        bytes_per_second: 100,
        window: secs(10),
    };
    let mut window = RateWindow::new(limit);
    assert!(window.record(0, secs(0)).is_ok());
    assert!(window.record(5000, secs(500)).is_ok());
    let mut off = RateWindow::new(MinSpeed::off());
    assert!(off.record(1, secs(0)).is_ok());
    assert!(off.record(1, secs(1_000_000)).is_ok());
}

#[test]
fn time_in_the_source_does_not_count_against_an_upload() {
    struct Slow;
    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(30));
            buf[0] = 1;
            Ok(1)
        }
    }
    let limit = MinSpeed {
        bytes_per_second: 1 << 20,
        window: Duration::from_millis(20),
    };
    let mut buf = [0u8; 4];
    let mut upload = limit.guard_upload(Slow);
    for _ in 0..5 {
        assert!(upload.read(&mut buf).is_ok());
    }
    let mut download = limit.guard_download(Slow);
    let failed = (0..5).any(|_| download.read(&mut buf).is_err());
    assert!(failed, "a trickling download is cut");
}

#[test]
fn durations_take_units_and_refuse_absurd_values() {
    assert_eq!(parse_duration("90"), Ok(secs(90)));
    assert_eq!(parse_duration("30s"), Ok(secs(30)));
    assert_eq!(parse_duration("45m"), Ok(secs(45 * 60)));
    assert_eq!(parse_duration("2h"), Ok(secs(7200)));
    assert_eq!(parse_duration("1d"), Ok(secs(86_400)));
    for bad in [
        "0",
        "8d",
        "-1",
        "1y",
        "",
        "h",
        "99999999999999999999",
        "18446744073709551615h",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert_eq!(format_duration(secs(7200)), "2h");
    assert_eq!(format_duration(secs(90)), "90s");
}

#[test]
fn the_deadline_stops_the_run_and_names_itself() {
    let stop = StopSignal::new();
    let deadline = Deadline::start(Duration::from_millis(50), &stop);
    let error = Error::interrupted("stopped by a signal");
    assert_eq!(deadline.explain(error.clone()).message, error.message);
    let started = Instant::now();
    pause(Duration::from_secs(5), &stop);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(stop.is_requested());
    // The watcher sets its flag before it requests the stop.
    assert!(deadline.passed());
    let explained = deadline.explain(error);
    assert!(explained.message.contains("--deadline"), "{explained}");
    assert_eq!(explained.class, Class::Interrupted);
    let other = deadline.explain(Error::network("down"));
    assert_eq!(other.message, "down");
}
