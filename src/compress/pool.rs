//! The compression threads. One pool per run, shared by every layer being compressed, so
//! the CPU work never exceeds its thread budget however many uploads run at once: upload
//! workers wait on the network, compression threads on the CPU, and a 2-core machine gets
//! 2 of the latter by default. The [`Meter`] counts what went through, for the monitor.
//! The pool's [`Budget`] bounds the memory of the blocks queued and compressed, across
//! all layers.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::budget::{self, BlockMemory, Budget, Buffer};
use super::{Algorithm, Overflow, Recipe};

struct Job {
    recipe: Recipe,
    memory: BlockMemory,
    reply: Sender<io::Result<Encoded>>,
}

/// A compressed block: in the memory it was given, and the rest, if it needed more, in a
/// spill file.
pub struct Encoded {
    pub memory: Buffer,
    pub overflow: Option<Overflow>,
}

impl Encoded {
    pub fn size(&self) -> u64 {
        self.memory.len() as u64 + self.overflow.as_ref().map_or(0, |o| o.len)
    }

    /// Bytes from `position` on into `buf`; 0 at the end.
    pub fn read_at(&self, position: u64, buf: &mut [u8]) -> io::Result<usize> {
        let in_memory = self.memory.len() as u64;
        if position < in_memory {
            let rest = &self.memory[position as usize..];
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            return Ok(n);
        }
        let Some(overflow) = &self.overflow else {
            return Ok(0);
        };
        let at = position - in_memory;
        let want = (overflow.len.saturating_sub(at)).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        io::Read::read(
            &mut overflow.spill.reader(at, want as u64),
            &mut buf[..want],
        )
    }

    /// Hands every byte to `take`, in pieces; a failure reading the spill file becomes
    /// an `E` through `read_failed`.
    pub fn write_to<E>(
        &self,
        mut take: impl FnMut(&[u8]) -> Result<(), E>,
        read_failed: impl Fn(io::Error) -> E,
    ) -> Result<(), E> {
        take(&self.memory)?;
        let Some(overflow) = &self.overflow else {
            return Ok(());
        };
        let mut reader = overflow.spill.reader(0, overflow.len);
        let mut piece = vec![0u8; 1 << 16];
        loop {
            let n = io::Read::read(&mut reader, &mut piece).map_err(&read_failed)?;
            if n == 0 {
                return Ok(());
            }
            take(&piece[..n])?;
        }
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoded({} bytes)", self.size())
    }
}

/// What the compression threads did, cumulatively.
#[derive(Debug, Default)]
pub struct Meter {
    /// Uncompressed bytes compressed.
    bytes_in: AtomicU64,
    /// Compressed bytes produced.
    bytes_out: AtomicU64,
    /// Nanoseconds the threads spent compressing, summed over threads.
    busy_nanos: AtomicU64,
    /// Nanoseconds readers of compressed streams waited for a frame to be ready.
    starved_nanos: AtomicU64,
    /// Compressed bytes that went to a spill file: their block compressed worse than the
    /// memory given to its frame allowed for.
    overflowed: AtomicU64,
}

/// A copy of the meter's counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterReading {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub busy_seconds: f64,
    pub starved_seconds: f64,
}

impl Meter {
    pub fn read(&self) -> MeterReading {
        MeterReading {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            busy_seconds: self.busy_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            starved_seconds: self.starved_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// Compressed bytes that outgrew their frame's memory and went to disk.
    #[cfg(test)]
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    pub(crate) fn starved(&self, waited: Duration) {
        self.starved_nanos
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// A handle on the pool; clones share it. The threads end when the last handle (and
/// every stream holding one) is gone.
#[derive(Clone)]
pub struct Compressor {
    jobs: Sender<Job>,
    threads: usize,
    meter: Arc<Meter>,
    memory: Budget,
}

impl Compressor {
    /// A pool of `threads` compression threads (at least one) whose blocks in flight fit
    /// a process of at most `memory_limit` bytes.
    #[cfg(test)]
    pub fn new(threads: usize, memory_limit: u64) -> Compressor {
        Compressor::with_spill_dir(threads, memory_limit, None)
    }

    /// [`Compressor::new`], putting the part of a frame that outgrows its memory in
    /// `spill_dir` (the state directory; else the system's temporary directory).
    pub fn with_spill_dir(
        threads: usize,
        memory_limit: u64,
        spill_dir: Option<&std::path::Path>,
    ) -> Compressor {
        budget::return_freed_blocks();
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let meter = Arc::new(Meter::default());
        let threads = threads.max(1);
        let spill_dir: Option<Arc<std::path::Path>> = spill_dir.map(Arc::from);
        for n in 0..threads {
            let queue = queue.clone();
            let meter = meter.clone();
            let spill_dir = spill_dir.clone();
            std::thread::Builder::new()
                .name(format!("compress-{n}"))
                .spawn(move || work(&queue, &meter, spill_dir.as_deref()))
                .expect("the system can start a compression thread");
        }
        Compressor {
            jobs,
            threads,
            meter,
            memory: Budget::new(budget::for_blocks(memory_limit)),
        }
    }

    /// One thread per CPU the process may use.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The memory the blocks of every layer share.
    pub fn memory(&self) -> &Budget {
        &self.memory
    }

    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// Queues one block, read into `memory.input`; the frame arrives on the returned
    /// channel, in `memory.frame`. The input and the encoder go back to the budget as soon
    /// as the block is compressed.
    pub fn submit(&self, recipe: Recipe, memory: BlockMemory) -> Receiver<io::Result<Encoded>> {
        let (reply, result) = crossbeam_channel::bounded(1);
        let job = Job {
            recipe,
            memory,
            reply,
        };
        if let Err(unsent) = self.jobs.send(job) {
            let _ = unsent.0.reply.send(Err(io::Error::other(
                "the compression threads have stopped",
            )));
        }
        result
    }
}

fn work(queue: &Receiver<Job>, meter: &Meter, spill_dir: Option<&std::path::Path>) {
    for job in queue {
        let started = Instant::now();
        let BlockMemory {
            input,
            mut frame,
            mut encoder,
        } = job.memory;
        let room = frame.counted() as usize;
        let result = job
            .recipe
            .encode_into(&input, &mut frame, room, &mut encoder, spill_dir);
        frame.settle(match job.recipe.algorithm {
            Algorithm::Zstd => budget::ZSTD_SCRATCH,
            Algorithm::Gzip => 0,
        });
        meter
            .busy_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let result = result.map(|overflow| {
            let encoded = Encoded {
                memory: frame,
                overflow,
            };
            meter
                .bytes_in
                .fetch_add(input.len() as u64, Ordering::Relaxed);
            meter.bytes_out.fetch_add(encoded.size(), Ordering::Relaxed);
            if let Some(overflow) = &encoded.overflow {
                meter.overflowed.fetch_add(overflow.len, Ordering::Relaxed);
            }
            encoded
        });
        drop((input, encoder));
        // The reader may have gone (a failed upload): its frame is simply dropped.
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Algorithm;

    #[test]
    fn frames_come_back_whatever_the_thread_count() {
        let recipe = Recipe::of(Algorithm::Gzip);
        let input = vec![7u8; 100_000];
        let expected = recipe.encode_block(&input).unwrap();
        for threads in [1, 3] {
            let pool = Compressor::new(threads, budget::DEFAULT_LIMIT);
            let pending: Vec<_> = (0..6)
                .map(|_| {
                    let mut memory = pool
                        .memory()
                        .block(recipe, input.len() as u64, u64::MAX, true)
                        .unwrap();
                    memory.input.copy_from_slice(&input);
                    pool.submit(recipe, memory)
                })
                .collect();
            for result in pending {
                let encoded = result.recv().unwrap().unwrap();
                assert!(encoded.overflow.is_none());
                assert_eq!(*encoded.memory, expected);
            }
            let reading = pool.meter().read();
            assert_eq!(reading.bytes_in, 600_000);
            assert_eq!(reading.bytes_out, 6 * expected.len() as u64);
        }
    }
}
