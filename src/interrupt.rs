//! Ctrl-C and SIGTERM. The first signal asks the run to stop at the next safe point:
//! no new blob starts, a chunked upload stops once the registry has confirmed the chunk
//! in flight (so the saved session is exact), a one-request upload is abandoned at once
//! (it cannot be continued anyway). The second signal exits at once. Either way every
//! open upload session is already in the state directory, written after each chunk, so
//! the next run continues where this one stopped; power loss is the same case.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Shared between the signal thread and the workers, which poll it at safe points.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Carried inside the `io::Error` of a request body that stopped reading because of a
/// stop request, so the request's failure is reported as an interruption.
#[derive(Debug, Clone, Copy)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stopped by a signal")
    }
}

impl std::error::Error for Stopped {}

impl Stopped {
    pub fn io_error() -> io::Error {
        io::Error::other(Stopped)
    }

    /// Whether `err`, however wrapped, is a stop request.
    pub fn is(err: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(err);
        while let Some(e) = current {
            if e.is::<Stopped>() {
                return true;
            }
            // An io::Error's `source` skips the error it wraps, so step into it by hand.
            current = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            };
        }
        false
    }
}

/// Routes SIGINT and SIGTERM to `stop` from a dedicated thread (signal handlers
/// themselves may do almost nothing safely; a thread may print and exit). `notice` is
/// printed on the first signal, `farewell` (how to resume) before exiting on the second.
pub fn install(stop: &StopSignal, notice: Option<String>, farewell: String) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let stop = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for (count, _signal) in signals.forever().enumerate() {
                if count == 0 {
                    stop.request();
                    if let Some(notice) = &notice {
                        eprintln!("{notice}");
                    }
                } else {
                    eprintln!("error: {farewell}");
                    std::process::exit(crate::error::Class::Interrupted.exit_code());
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_requests_are_seen_by_every_clone() {
        let stop = StopSignal::new();
        let worker = stop.clone();
        assert!(!worker.is_requested());
        stop.request();
        assert!(worker.is_requested());
    }

    #[test]
    fn stopped_is_found_inside_wrapped_io_errors() {
        let err = Stopped::io_error();
        assert!(Stopped::is(&err));
        let wrapped = io::Error::other(err);
        assert!(Stopped::is(&wrapped));
        assert!(!Stopped::is(&io::Error::other("broken pipe")));
    }
}
