//! Per-blob bookkeeping while bytes go out: the running hash, its checkpoint for rewinds,
//! and the readers that feed and count what the request bodies take.

use super::*;

/// Per-blob transfer bookkeeping: the running hash (shared with the request body reader),
/// a checkpoint at the start of the current chunk for cheap rewinds, and the numbers the
/// report shows.
pub(super) struct Transfer {
    pub(super) hasher: Arc<Mutex<Hasher>>,
    pub(super) checkpoint: Option<Hasher>,
    /// Bytes read into request bodies by this run, resends included.
    pub(super) sent: Arc<AtomicU64>,
    /// Bytes the registry held from an earlier run when this run took the session over.
    pub(super) reused: u64,
    pub(super) resumes: u32,
    pub(super) size: u64,
    pub(super) budget: Budget,
}

impl Transfer {
    pub(super) fn new(blob: &Blob, budget: Budget) -> Transfer {
        Transfer {
            hasher: Arc::new(Mutex::new(Hasher::new())),
            checkpoint: None,
            sent: Arc::default(),
            reused: 0,
            resumes: 0,
            size: blob.size,
            budget,
        }
    }

    pub(super) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(super) fn reset_hash(&mut self) {
        *self.hasher.lock().unwrap_or_else(|p| p.into_inner()) = Hasher::new();
        self.checkpoint = None;
    }

    /// After a failure: when the registry answered with a different, empty session, the
    /// earlier one was lost and the blob starts over (the earlier run's bytes with it).
    pub(super) fn restart_if_lost(&mut self, old: &Session, resumed: &Session, held: u64) -> bool {
        let lost = held == 0 && !same_session(old, resumed);
        if lost {
            self.reused = 0;
        }
        lost
    }

    pub(super) fn outcome(&self) -> Outcome {
        let sent = self.sent.load(Ordering::Relaxed);
        Outcome::Uploaded {
            sent,
            reused: self.reused,
            // Everything beyond the bytes that had to go up once was sent again.
            resent: (sent + self.reused).saturating_sub(self.size),
            resumes: self.resumes,
        }
    }

    pub(super) fn verify(&self, blob: &Blob) -> Result<()> {
        let hasher = self.hasher.lock().unwrap_or_else(|p| p.into_inner());
        let actual = hasher.digest();
        if hasher.position() != blob.size || actual != blob.digest {
            return Err(Error::input(format!(
                "source blob {} is corrupt: its content hashes to {actual}",
                blob.digest
            ))
            .hint("the archive or cache is damaged; save or copy it again"));
        }
        Ok(())
    }
}

/// Feeds everything read through it into a shared hash.
pub(super) struct HashFeed<R> {
    pub(super) inner: R,
    pub(super) hasher: Arc<Mutex<Hasher>>,
}

impl<R: Read> Read for HashFeed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(&buf[..n]);
        Ok(n)
    }
}

/// Reports bytes as the network takes them from the source, and ends the body early
/// when a stop is requested and `stop` is given. Times the reads (the source) and the gaps
/// between them (the transport writing what was read: the network).
pub(crate) struct Counting<R> {
    inner: R,
    progress: Arc<dyn Progress>,
    counter: Arc<AtomicU64>,
    stop: Option<StopSignal>,
    last_read: Option<Instant>,
}

impl<R> Counting<R> {
    pub(crate) fn new(
        inner: R,
        progress: Arc<dyn Progress>,
        counter: Arc<AtomicU64>,
        stop: Option<StopSignal>,
    ) -> Self {
        Counting {
            inner,
            progress,
            counter,
            stop,
            last_read: None,
        }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.as_ref().is_some_and(StopSignal::is_requested) {
            return Err(Stopped::io_error());
        }
        let asked = Instant::now();
        if let Some(last) = self.last_read {
            self.progress
                .waited(Wait::Network, (asked - last).as_secs_f64());
        }
        let n = self.inner.read(buf)?;
        let read = Instant::now();
        self.progress
            .waited(Wait::Source, (read - asked).as_secs_f64());
        // After the last byte the transport waits for the registry's answer, not the link.
        self.last_read = (n > 0).then_some(read);
        self.progress.sent(n as u64);
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
