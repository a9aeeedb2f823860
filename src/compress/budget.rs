//! The memory that compression may hold at once, shared by every layer of a run. A block
//! takes a [`Lease`] before it is read and keeps it until its frame has been written out,
//! so the blocks in flight across all layers (and so the pool's work queue) stay within
//! `--memory-limit` whatever the number of layers, their sizes or the core count. Layers
//! wait here for memory, not only for a worker. The budget changes when blocks are read,
//! never what they compress to: the output stays the same bytes at any limit.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::BLOCK_SIZE;

/// What the process holds besides the blocks: code, thread stacks, TLS and HTTP buffers,
/// archive readers. Measured at about 6 MiB for a plain push; the rest is margin.
pub const PROCESS_RESERVE: u64 = 10 << 20;
/// What one block costs at most while it is compressed: its input, its frame (up to the
/// input's size for content that does not compress) and the encoder's state.
pub const PER_BLOCK: u64 = 2 * BLOCK_SIZE + (1 << 20);
/// The default `--memory-limit`.
pub const DEFAULT_LIMIT: u64 = 32 << 20;
/// The smallest `--memory-limit`: room for one block beside the process itself.
pub const MIN_LIMIT: u64 = PROCESS_RESERVE + PER_BLOCK;

/// Bytes the blocks may hold under a memory limit of `limit` bytes for the whole process.
pub fn for_blocks(limit: u64) -> u64 {
    limit.saturating_sub(PROCESS_RESERVE).max(PER_BLOCK)
}

/// Makes freed blocks go back to the system at once. glibc's allocator otherwise raises
/// its mmap threshold after the first large free and serves later blocks from its heaps,
/// which keep freed memory: measured, that doubled the peak of a compressing push.
pub fn return_freed_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes allocator parameters; it is called once, before the
        // compression threads exist.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        });
    }
}

/// A count of bytes in use against a capacity; clones share it.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

impl Budget {
    /// `capacity` bytes; a single lease larger than that is cut to it, so any one block
    /// can always go once nothing else is held.
    pub fn new(capacity: u64) -> Budget {
        Budget {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                used: Mutex::new(0),
                freed: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.inner.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    pub fn used(&self) -> u64 {
        *self.lock()
    }

    /// Waits until `bytes` are free and takes them. Only for a caller that holds no lease
    /// itself: one that does could wait for memory only it can free.
    pub fn acquire(&self, bytes: u64) -> Lease {
        let bytes = bytes.min(self.inner.capacity);
        let mut used = self.lock();
        while *used + bytes > self.inner.capacity {
            used = self
                .inner
                .freed
                .wait(used)
                .unwrap_or_else(|p| p.into_inner());
        }
        *used += bytes;
        self.lease(bytes)
    }

    /// Takes `bytes` when they are free now.
    pub fn try_acquire(&self, bytes: u64) -> Option<Lease> {
        let bytes = bytes.min(self.inner.capacity);
        let mut used = self.lock();
        if *used + bytes > self.inner.capacity {
            return None;
        }
        *used += bytes;
        Some(self.lease(bytes))
    }

    fn lease(&self, bytes: u64) -> Lease {
        Lease {
            budget: self.clone(),
            bytes,
        }
    }

    fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut used = self.lock();
        *used = used.saturating_sub(bytes);
        self.inner.freed.notify_all();
    }
}

/// Bytes taken from a [`Budget`], given back when dropped.
pub struct Lease {
    budget: Budget,
    bytes: u64,
}

impl Lease {
    /// Gives back all but `bytes` (a block whose input is gone keeps only its frame).
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.budget.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({} bytes)", self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn leases_are_given_back_when_dropped_or_shrunk() {
        let budget = Budget::new(100);
        let mut a = budget.acquire(60);
        assert!(budget.try_acquire(50).is_none());
        a.shrink_to(10);
        let b = budget.try_acquire(50).expect("freed by the shrink");
        assert_eq!(budget.used(), 60);
        drop((a, b));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_lease_larger_than_the_budget_is_cut_to_it() {
        let budget = Budget::new(100);
        let whole = budget.acquire(500);
        assert_eq!(budget.used(), 100);
        drop(whole);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_waiting_acquire_goes_on_when_memory_is_freed() {
        let budget = Budget::new(100);
        let held = budget.acquire(80);
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.acquire(50).bytes)
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "waits while the memory is held");
        drop(held);
        assert_eq!(waiter.join().unwrap(), 50);
    }

    #[test]
    fn the_block_budget_follows_the_limit() {
        assert_eq!(for_blocks(DEFAULT_LIMIT), DEFAULT_LIMIT - PROCESS_RESERVE);
        assert_eq!(for_blocks(MIN_LIMIT), PER_BLOCK);
        assert_eq!(for_blocks(1), PER_BLOCK);
    }
}
