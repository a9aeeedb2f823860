//! The monitor thread: samples on a tick, feeds the tracker, applies its limit to the gate.

use super::*;

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
