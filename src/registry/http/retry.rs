//! The one retry policy every loop that talks to a registry follows (a request in the
//! transport, a monolithic or chunked upload, a compressed stream, a download): how often
//! to try again, how long to wait (backoff, or what `Retry-After` asked), a pause a stop
//! request cuts short, the slowest transfer still counted as moving, and per blob a
//! budget that "progress" cannot refill forever. A registry that accepts bytes and then
//! loses them, or a link that trickles, ends the run in bounded time and bytes.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Class, Error};
use crate::interrupt::StopSignal;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first try, and failures in a row a blob may have.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub min_speed: MinSpeed,
    /// Cuts pauses short (Ctrl-C, `--deadline`).
    pub stop: StopSignal,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            min_speed: MinSpeed::default(),
            stop: StopSignal::new(),
        }
    }
}

/// The longest wait a registry's `Retry-After` may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl RetryPolicy {
    /// Exponential backoff with jitter, or what the registry asked for with `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(MAX_RETRY_AFTER);
        }
        let exponential = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        let capped = exponential.min(self.max_delay);
        // Jitter spreads workers that failed together so they do not retry together.
        capped.mul_f64(0.5 + 0.5 * jitter())
    }

    /// Waits `wait`, waking early when a stop is requested.
    pub fn pause(&self, wait: Duration) {
        pause(wait, &self.stop)
    }
}

/// Sleeps in short slices so a stop request (Ctrl-C, the deadline) is seen within 50 ms.
pub fn pause(wait: Duration, stop: &StopSignal) {
    let until = Instant::now() + wait;
    while Instant::now() < until && !stop.is_requested() {
        std::thread::sleep(Duration::from_millis(50).min(wait));
    }
}

fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    (hasher.finish() % 10_000) as f64 / 10_000.0
}

/// Why a blob's budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// More failures in a row than `--retry-attempts`. `registry` when the last one was
    /// the registry accepting data without keeping any, not the link failing.
    Failures { count: u32, registry: bool },
    /// More failures in all than the blob's size allows, however much each "progressed".
    Attempts { count: u32 },
    /// More bytes sent again than the blob's size allows.
    Resent { bytes: u64, limit: u64 },
}

impl Exhausted {
    #[cfg(test)]
    pub fn class(&self) -> Class {
        match self {
            Exhausted::Failures {
                registry: false, ..
            } => Class::Network,
            _ => Class::Registry,
        }
    }

    /// The error that ends the transfer of `what`; `reason` is the last failure.
    pub fn error(&self, what: &str, reason: &str) -> Error {
        let lossy = "the registry keeps losing or refusing the data it is sent; check its storage and logs, or try again later";
        let times = |count: u32| crate::text::plural::count(u64::from(count), "time");
        match *self {
            Exhausted::Failures {
                count,
                registry: false,
            } => Error::network(format!("{what}: failed {} in a row ({reason})", times(count)))
                .hint("run the same command again to resume"),
            Exhausted::Failures { count, .. } => Error::registry(format!(
                "{what}: the registry made no progress {} in a row ({reason})",
                times(count)
            ))
            .hint(lossy),
            Exhausted::Attempts { count } => Error::registry(format!(
                "{what}: gave up after {} with too little progress (last: {reason})",
                crate::text::plural::count(u64::from(count), "failed attempt")
            ))
            .hint(lossy),
            Exhausted::Resent { bytes, limit } => Error::registry(format!(
                "{what}: gave up after sending {bytes} bytes again (this blob's budget is {limit}; last: {reason})"
            ))
            .hint(lossy),
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Retry(Duration),
    GiveUp(Exhausted),
}

/// Failures in all a blob may have, per request its size needs, beyond `--retry-attempts`
/// in a row: each chunk may fail about as often as one request may.
fn total_failures(attempts: u32, requests: u64) -> u32 {
    let per_request = u64::from(attempts) + 1;
    let total = per_request.saturating_mul(requests.saturating_add(1));
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// Extra requests' worth of bytes a blob may send again on top of twice its size.
const SPARE_REQUESTS: u64 = 4;

/// The retry budget of one blob. Progress resets the failures in a row (a flaky link that
/// moves forward keeps going) but never the failures in all or the bytes sent again, so a
/// registry that keeps "progressing" one byte and losing it cannot hold the run forever.
#[derive(Debug, Clone)]
pub struct Budget {
    policy: RetryPolicy,
    max_failures: u32,
    max_resent: u64,
    in_a_row: u32,
    failures: u32,
    resent: u64,
}

impl Budget {
    /// A blob of `size` bytes sent in requests of `unit` bytes (the chunk size, or the
    /// blob itself when it goes up in one request).
    pub fn for_blob(policy: &RetryPolicy, size: u64, unit: u64) -> Budget {
        let unit = unit.max(1);
        let requests = size.div_ceil(unit).max(1);
        Budget {
            policy: policy.clone(),
            max_failures: total_failures(policy.attempts, requests),
            max_resent: size
                .saturating_mul(2)
                .saturating_add(unit.min(size.max(1)).saturating_mul(SPARE_REQUESTS)),
            in_a_row: 0,
            failures: 0,
            resent: 0,
        }
    }

    /// A failure: wait this long and try again, or give up.
    pub fn record_failure(&mut self, retry_after: Option<Duration>) -> Verdict {
        self.fail(retry_after, false)
    }

    /// The registry accepted a request but kept nothing new: a failure of the registry's.
    pub fn record_stall(&mut self) -> Verdict {
        self.fail(None, true)
    }

    fn fail(&mut self, retry_after: Option<Duration>, registry: bool) -> Verdict {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.failures = self.failures.saturating_add(1);
        if self.in_a_row > self.policy.attempts {
            return Verdict::GiveUp(Exhausted::Failures {
                count: self.in_a_row,
                registry,
            });
        }
        if self.failures > self.max_failures {
            return Verdict::GiveUp(Exhausted::Attempts {
                count: self.failures,
            });
        }
        Verdict::Retry(self.policy.delay(self.in_a_row - 1, retry_after))
    }

    /// The registry holds more than before: the failures in a row start again.
    pub fn record_progress(&mut self) {
        self.in_a_row = 0;
    }

    /// `bytes` already sent must go again.
    pub fn record_resend(&mut self, bytes: u64) -> Result<(), Exhausted> {
        self.resent = self.resent.saturating_add(bytes);
        if self.resent > self.max_resent {
            return Err(Exhausted::Resent {
                bytes: self.resent,
                limit: self.max_resent,
            });
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// After a failed request that wasted `wasted` bytes.
    pub fn after_failure(&mut self, wasted: u64, retry_after: Option<Duration>) -> Verdict {
        match self.record_resend(wasted) {
            Ok(()) => self.record_failure(retry_after),
            Err(exhausted) => Verdict::GiveUp(exhausted),
        }
    }

    /// A request from `start` the registry accepted, after which it holds `held`:
    /// `None` when that is progress, else the verdict on a stall (no more than before).
    pub fn after_accepted(&mut self, start: u64, held: u64, wasted: u64) -> Option<Verdict> {
        match self.record_resend(wasted) {
            Err(exhausted) => Some(Verdict::GiveUp(exhausted)),
            Ok(()) if held > start => {
                self.record_progress();
                None
            }
            Ok(()) => Some(self.record_stall()),
        }
    }

    /// After a failed request from `start` and a look at the registry, which holds `held`.
    pub fn after_resume(&mut self, start: u64, held: u64, wasted: u64) -> Result<(), Exhausted> {
        if held > start {
            self.record_progress();
        }
        self.record_resend(wasted)
    }
}

impl Verdict {
    /// The wait before the next try, or the error ending the transfer of `what`.
    pub fn wait(self, what: &str, reason: &str) -> Result<Duration, Error> {
        match self {
            Verdict::Retry(wait) => Ok(wait),
            Verdict::GiveUp(exhausted) => Err(exhausted.error(what, reason)),
        }
    }
}

/// Bytes a request sent that the registry does not hold: sent from `start`, `sent` bytes,
/// and the registry now holds `held`. Includes earlier bytes when the registry went back.
pub fn wasted(start: u64, sent: u64, held: u64) -> u64 {
    start.saturating_add(sent).saturating_sub(held)
}

/// The slowest a transfer may move and still count as moving: fewer than
/// `bytes_per_second` on average over a `window` ends the request as a failure. The
/// per-read `--timeout` cannot see a peer that trickles one byte at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinSpeed {
    /// 0 turns the check off.
    pub bytes_per_second: u64,
    pub window: Duration,
}

pub const DEFAULT_MIN_SPEED: u64 = 1 << 10;
pub const DEFAULT_SPEED_WINDOW: Duration = Duration::from_secs(60);

impl Default for MinSpeed {
    fn default() -> Self {
        MinSpeed {
            bytes_per_second: DEFAULT_MIN_SPEED,
            window: DEFAULT_SPEED_WINDOW,
        }
    }
}

impl MinSpeed {
    pub fn off() -> MinSpeed {
        MinSpeed {
            bytes_per_second: 0,
            window: DEFAULT_SPEED_WINDOW,
        }
    }

    fn enabled(&self) -> bool {
        self.bytes_per_second > 0 && !self.window.is_zero()
    }

    /// Guards a response body: every read is the network.
    pub fn guard_download<R: Read>(&self, inner: R) -> SpeedGuard<R> {
        SpeedGuard::new(inner, *self, false)
    }

    /// Guards a request body: time spent reading the source (a slow disk, a compressor)
    /// is not the network's and does not count.
    pub fn guard_upload<R: Read>(&self, inner: R) -> SpeedGuard<R> {
        SpeedGuard::new(inner, *self, true)
    }
}

/// The check itself, over a clock the caller supplies, so it can be tested without time.
#[derive(Debug, Clone)]
pub struct RateWindow {
    limit: MinSpeed,
    /// Start of the current window; `None` until the first byte moves.
    start: Option<Duration>,
    bytes: u64,
}

impl RateWindow {
    pub fn new(limit: MinSpeed) -> RateWindow {
        RateWindow {
            limit,
            start: None,
            bytes: 0,
        }
    }

    /// `bytes` moved by time `now`; an error when a whole window moved too little.
    pub fn record(&mut self, bytes: u64, now: Duration) -> Result<(), String> {
        if !self.limit.enabled() {
            return Ok(());
        }
        let Some(start) = self.start else {
            if bytes > 0 {
                self.start = Some(now);
                self.bytes = bytes;
            }
            return Ok(());
        };
        let elapsed = now.saturating_sub(start);
        if elapsed < self.limit.window {
            self.bytes = self.bytes.saturating_add(bytes);
            return Ok(());
        }
        let needed = (self.limit.bytes_per_second as f64 * elapsed.as_secs_f64()) as u64;
        if self.bytes < needed {
            return Err(format!(
                "the transfer moved {} bytes in {:.0}s, slower than the minimum of {} bytes/s (--min-speed)",
                self.bytes,
                elapsed.as_secs_f64(),
                self.limit.bytes_per_second
            ));
        }
        self.start = Some(now);
        self.bytes = bytes;
        Ok(())
    }
}

/// A body reader that fails with `TimedOut` when the transfer falls below the minimum
/// speed, so the request ends and counts as a failure like any broken link.
pub struct SpeedGuard<R> {
    inner: R,
    window: RateWindow,
    started: Instant,
    exclude_inner: bool,
    /// Time spent inside the source's reads, taken off the clock for request bodies.
    inner_time: Duration,
}

impl<R> SpeedGuard<R> {
    fn new(inner: R, limit: MinSpeed, exclude_inner: bool) -> SpeedGuard<R> {
        SpeedGuard {
            inner,
            window: RateWindow::new(limit),
            started: Instant::now(),
            exclude_inner,
            inner_time: Duration::ZERO,
        }
    }
}

impl<R: Read> Read for SpeedGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let before = Instant::now();
        let n = self.inner.read(buf)?;
        let after = Instant::now();
        if self.exclude_inner {
            self.inner_time += after - before;
        }
        let clock = (after - self.started).saturating_sub(self.inner_time);
        self.window
            .record(n as u64, clock)
            .map_err(|why| io::Error::new(io::ErrorKind::TimedOut, why))?;
        Ok(n)
    }
}

/// `--deadline`: a whole-run time limit. When it passes, the run is asked to stop as
/// Ctrl-C would (chunks in flight finish, open sessions stay saved), and the error that
/// comes back says which limit ended it.
#[derive(Debug, Clone)]
pub struct Deadline {
    limit: Duration,
    passed: Arc<AtomicBool>,
}

impl Deadline {
    /// Starts the clock; a watcher thread requests `stop` when `limit` has passed.
    pub fn start(limit: Duration, stop: &StopSignal) -> Deadline {
        let passed = Arc::new(AtomicBool::new(false));
        let (flag, stop) = (passed.clone(), stop.clone());
        let until = Instant::now() + limit;
        // Detached: it sleeps until the deadline or the process ends.
        let _ = std::thread::Builder::new()
            .name("deadline".into())
            .spawn(move || {
                while Instant::now() < until {
                    std::thread::sleep((until - Instant::now()).min(Duration::from_millis(200)));
                }
                flag.store(true, Ordering::SeqCst);
                stop.request();
            });
        Deadline { limit, passed }
    }

    pub fn passed(&self) -> bool {
        self.passed.load(Ordering::SeqCst)
    }

    /// The error a run stopped by the deadline ends with; other errors pass unchanged.
    pub fn explain(&self, error: Error) -> Error {
        if !self.passed() || error.class != Class::Interrupted {
            return error;
        }
        Error::interrupted(format!(
            "the --deadline of {} passed; stopped with the open uploads saved",
            format_duration(self.limit)
        ))
        .hint("run the same command again to resume, or allow more time with --deadline")
    }
}

/// Longest `--deadline` and `--min-speed-window` accepted: beyond a week it is a typo.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses `90`, `30s`, `45m`, `2h`, `1d` (a bare number is seconds), between 1 s and a week.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("\"{text}\" is not a duration (use e.g. 90s, 45m, 2h)"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "\"{text}\" has an unknown time unit (use s, m, h or d)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .map(Duration::from_secs)
        .filter(|d| *d >= Duration::from_secs(1) && *d <= MAX_DURATION)
        .ok_or_else(|| format!("\"{text}\" is out of range (1s to 7d)"))
}

pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests;
