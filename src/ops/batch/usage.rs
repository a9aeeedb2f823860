//! What this process used while a transfer ran: CPU time and peak memory, from
//! `getrusage`.

use std::time::Instant;

use crate::pool::monitor::Resources;

/// The process's CPU time at one instant.
pub(super) struct Usage {
    at: Instant,
    cpu_seconds: f64,
}

fn rusage() -> Option<libc::rusage> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given and touches nothing else.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    // SAFETY: a zero status means the kernel filled the struct.
    (status == 0).then(|| unsafe { usage.assume_init() })
}

fn seconds(time: libc::timeval) -> f64 {
    time.tv_sec as f64 + time.tv_usec as f64 / 1e6
}

impl Usage {
    pub(super) fn now() -> Usage {
        Usage {
            at: Instant::now(),
            cpu_seconds: rusage().map_or(0.0, |u| seconds(u.ru_utime) + seconds(u.ru_stime)),
        }
    }

    /// CPU used since `self` over the wall time since, and the process's peak resident
    /// memory so far (Linux counts `ru_maxrss` in KiB).
    pub(super) fn since(&self) -> Resources {
        let now = Usage::now();
        let wall = (now.at - self.at).as_secs_f64();
        let cpu = (now.cpu_seconds - self.cpu_seconds).max(0.0);
        Resources {
            cpu_percent: if wall > 0.0 { cpu / wall * 100.0 } else { 0.0 },
            peak_rss_bytes: rusage()
                .map_or(0, |u| (u.ru_maxrss.max(0) as u64).saturating_mul(1024)),
        }
    }
}
