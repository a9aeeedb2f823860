//! The memory that compression may hold at once, shared by every layer of a run. Every
//! block's input buffer, frame buffer and encoder state comes from the [`Budget`] and goes
//! back to it, so the blocks in flight across all layers (and so the pool's work queue)
//! stay within `--memory-limit` whatever the number of layers, their sizes or the core
//! count. Layers wait here for memory, not only for a worker.
//!
//! What comes back is kept for the next block rather than freed: a freed 4 MiB buffer goes
//! back to the system (see [`return_freed_blocks`]) and the next one costs a thousand page
//! faults, which measured as 15% of a zstd push on a fast link. Kept buffers count against
//! the budget like buffers in use, and are freed only to make room for a block that cannot
//! reuse them. The budget changes when blocks are read, never what they compress to: the
//! output stays the same bytes at any limit.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{Algorithm, BLOCK_SIZE, Encoder, Recipe};

/// What the process holds besides the blocks: code, thread stacks, TLS and HTTP buffers,
/// archive readers. Measured at about 6 MiB for a plain push; the rest is margin.
pub const PROCESS_RESERVE: u64 = 10 << 20;
/// What a zstd context is counted at: at level 3, once it has compressed a 4 MiB block,
/// it measures 1.24 MiB (`ZSTD_sizeof_CCtx`; a test checks it still fits).
pub const ZSTD_STATE: u64 = 3 << 19;
/// What a deflate encoder is counted at while it compresses: miniz_oxide's state and
/// flate2's buffer come to about 300 KiB. It is made for each block, never kept.
pub const GZIP_STATE: u64 = 1 << 19;
/// What one block costs at most while it is compressed: its input, its frame (up to the
/// input's size, and a little more for content that does not compress) and the encoder.
pub const PER_BLOCK: u64 = BLOCK_SIZE + frame_bound(BLOCK_SIZE) + ZSTD_STATE;
/// The default `--memory-limit`.
pub const DEFAULT_LIMIT: u64 = 32 << 20;
/// The smallest `--memory-limit`: room for one block beside the process itself.
pub const MIN_LIMIT: u64 = PROCESS_RESERVE + PER_BLOCK;
/// How far past its end zstd may have written scratch bytes into a frame: it writes a
/// block before it knows whether to store it raw instead (128 KiB at most).
pub const ZSTD_SCRATCH: u64 = 128 << 10;

/// Room for the frame of `input` bytes whatever they hold: zstd's `compress_bound` and
/// deflate's stored blocks both stay well inside it, so a frame never reallocates.
pub const fn frame_bound(input: u64) -> u64 {
    input + input / 128 + (16 << 10)
}

fn state_cost(recipe: Recipe) -> u64 {
    match recipe.algorithm {
        Algorithm::Gzip => GZIP_STATE,
        Algorithm::Zstd => ZSTD_STATE,
    }
}

/// Bytes the blocks may hold under a memory limit of `limit` bytes for the whole process.
pub fn for_blocks(limit: u64) -> u64 {
    limit.saturating_sub(PROCESS_RESERVE).max(PER_BLOCK)
}

/// Makes freed buffers go back to the system at once. glibc's allocator otherwise raises
/// its mmap threshold after the first large free and serves later buffers from its heaps,
/// which keep freed memory: measured, that doubled the peak of a compressing push. The
/// budget keeps the buffers worth keeping itself.
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

/// The memory of the blocks; clones share it.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: u64,
    state: Mutex<Held>,
    freed: Condvar,
}

/// A kept buffer: its bytes, and how many of them were ever written, which is what it
/// holds of the process's memory (the system maps the rest only when it is written).
struct Spare {
    bytes: Vec<u8>,
    touched: u64,
}

/// Everything the budget counts: buffers and encoders out in blocks, and those kept.
#[derive(Default)]
struct Held {
    /// Bytes out in blocks and kept, together.
    used: u64,
    spare_buffers: Vec<Spare>,
    /// zstd encoders with their contexts, each counted at [`ZSTD_STATE`].
    spare_encoders: Vec<Encoder>,
}

/// Which kept buffers and encoder a block would reuse, and what it needs besides.
struct Plan {
    input: Option<usize>,
    frame: Option<usize>,
    encoder: Option<usize>,
    new_bytes: u64,
}

impl Held {
    fn spare_bytes(&self) -> u64 {
        let buffers: u64 = self.spare_buffers.iter().map(|s| s.touched).sum();
        buffers + self.spare_encoders.len() as u64 * ZSTD_STATE
    }

    /// The smallest kept buffer of at least `bytes`, other than `taken`.
    fn fitting_buffer(&self, bytes: u64, taken: Option<usize>) -> Option<usize> {
        self.spare_buffers
            .iter()
            .enumerate()
            .filter(|&(i, s)| Some(i) != taken && s.bytes.capacity() as u64 >= bytes)
            .min_by_key(|(_, s)| s.bytes.capacity())
            .map(|(i, _)| i)
    }

    fn plan(&self, recipe: Recipe, input: u64, frame_room: u64) -> Plan {
        let input_index = self.fitting_buffer(input, None);
        let frame = self.fitting_buffer(frame_bound(input), input_index);
        let encoder = match recipe.algorithm {
            Algorithm::Zstd => self.spare_encoders.iter().position(|e| e.suits(recipe)),
            Algorithm::Gzip => None,
        };
        let growth = |index: Option<usize>, bytes: u64| match index {
            Some(i) => bytes.saturating_sub(self.spare_buffers[i].touched),
            None => bytes,
        };
        Plan {
            input: input_index,
            frame,
            encoder,
            new_bytes: growth(input_index, input)
                + growth(frame, frame_room)
                + encoder.map_or(state_cost(recipe), |_| 0),
        }
    }

    /// Frees one kept buffer or encoder that `plan` does not reuse.
    fn evict(&mut self, plan: &Plan) -> bool {
        let buffer = (0..self.spare_buffers.len())
            .filter(|&i| Some(i) != plan.input && Some(i) != plan.frame)
            .max_by_key(|&i| self.spare_buffers[i].touched);
        if let Some(i) = buffer {
            let freed = self.spare_buffers.swap_remove(i);
            self.used -= freed.touched;
            return true;
        }
        let encoder = (0..self.spare_encoders.len()).find(|&i| Some(i) != plan.encoder);
        if let Some(i) = encoder {
            self.spare_encoders.swap_remove(i);
            self.used -= ZSTD_STATE;
            return true;
        }
        false
    }

    /// Takes the kept buffers at `indices` out, higher index first so that the lower one
    /// still points at its buffer.
    fn take_spares(&mut self, indices: [Option<usize>; 2]) -> [Option<Spare>; 2] {
        let mut out = [None, None];
        let mut order = [0, 1];
        order.sort_by_key(|&k| std::cmp::Reverse(indices[k]));
        for k in order {
            out[k] = indices[k].map(|i| self.spare_buffers.swap_remove(i));
        }
        out
    }
}

impl Budget {
    /// `capacity` bytes; a block larger than that still goes once nothing else is held.
    pub fn new(capacity: u64) -> Budget {
        Budget {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                state: Mutex::new(Held::default()),
                freed: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes counted: out in blocks and kept for reuse.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// Bytes out in blocks (not counting what is kept for reuse).
    #[cfg(test)]
    pub fn in_blocks(&self) -> u64 {
        let held = self.lock();
        held.used - held.spare_bytes()
    }

    /// The memory to compress one block of `input` bytes with `recipe`, its frame given
    /// `frame_room` bytes of memory (at most [`frame_bound`]; a gzip frame that outgrows
    /// them continues on disk). With `wait`, waits until it is free; without, gives up
    /// when it is not free now. Only a caller that holds no block memory itself may wait:
    /// one that does could wait for memory only it can free.
    pub fn block(
        &self,
        recipe: Recipe,
        input: u64,
        frame_room: u64,
        wait: bool,
    ) -> Option<BlockMemory> {
        let frame_room = frame_room.min(frame_bound(input));
        let mut held = self.lock();
        loop {
            let plan = held.plan(recipe, input, frame_room);
            if held.used + plan.new_bytes <= self.inner.capacity {
                return Some(self.take(&mut held, plan, recipe, input, frame_room));
            }
            // Free what this block will not reuse before waiting.
            if held.evict(&plan) {
                continue;
            }
            // A block larger than the whole budget goes once nothing else is out.
            if held.used == held.spare_bytes() {
                return Some(self.take(&mut held, plan, recipe, input, frame_room));
            }
            if !wait {
                return None;
            }
            held = self
                .inner
                .freed
                .wait(held)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn take(
        &self,
        held: &mut Held,
        plan: Plan,
        recipe: Recipe,
        input: u64,
        frame_room: u64,
    ) -> BlockMemory {
        held.used += plan.new_bytes;
        let [input_spare, frame_spare] = held.take_spares([plan.input, plan.frame]);
        let encoder = plan.encoder.map(|i| held.spare_encoders.swap_remove(i));
        let mut input_buffer = self.buffer(input_spare, input, input);
        // The block is read over the whole buffer: no need to clear what it held.
        input_buffer.bytes.resize(input as usize, 0);
        input_buffer.touched = input_buffer.touched.max(input);
        let mut frame = self.buffer(frame_spare, frame_bound(input), frame_room);
        frame.bytes.clear();
        BlockMemory {
            input: input_buffer,
            frame,
            encoder: Lent {
                budget: self.clone(),
                encoder: Some(encoder.unwrap_or_default()),
                counted: state_cost(recipe),
            },
        }
    }

    /// A buffer of `capacity` bytes (a kept one, or a new one) counted at `counted` bytes,
    /// or at what it had written if more: the system maps only the pages written to.
    fn buffer(&self, spare: Option<Spare>, capacity: u64, counted: u64) -> Buffer {
        let (vec, touched) = match spare {
            Some(spare) => (spare.bytes, spare.touched),
            None => (Vec::with_capacity(capacity as usize), 0),
        };
        Buffer {
            budget: self.clone(),
            counted: touched.max(counted),
            touched,
            bytes: vec,
        }
    }

    fn release(&self, bytes: u64) {
        if bytes > 0 {
            let mut held = self.lock();
            held.used = held.used.saturating_sub(bytes);
            self.inner.freed.notify_all();
        }
    }

    fn keep_buffer(&self, spare: Spare, counted: u64) {
        let mut held = self.lock();
        held.used = held.used.saturating_sub(counted - spare.touched);
        held.spare_buffers.push(spare);
        self.inner.freed.notify_all();
    }

    fn keep_encoder(&self, encoder: Encoder, counted: u64) {
        let mut held = self.lock();
        if encoder.holds_state() {
            held.used = held.used.saturating_sub(counted.saturating_sub(ZSTD_STATE));
            held.spare_encoders.push(encoder);
        } else {
            held.used = held.used.saturating_sub(counted);
        }
        self.inner.freed.notify_all();
    }
}

/// The memory of one block: its input (filled by the reader), room for its frame and an
/// encoder. Each part goes back to the budget on its own when dropped.
pub struct BlockMemory {
    pub input: Buffer,
    pub frame: Buffer,
    pub encoder: Lent,
}

/// Bytes from the budget, kept by it for reuse when dropped.
pub struct Buffer {
    budget: Budget,
    bytes: Vec<u8>,
    /// Bytes counted against the budget for this buffer.
    counted: u64,
    /// Bytes of it ever written (at most `counted`).
    touched: u64,
}

impl Buffer {
    /// The bytes counted for this buffer: all that may be written to it.
    pub fn counted(&self) -> u64 {
        self.counted
    }

    /// Counts only what has been written (and `scratch` bytes past it): a frame is counted
    /// at its room while it is compressed, and at its own size from then on.
    pub fn settle(&mut self, scratch: u64) {
        self.touched = self.written(scratch);
        self.budget.release(self.counted - self.touched);
        self.counted = self.touched;
    }

    fn written(&self, scratch: u64) -> u64 {
        let end = self.bytes.len() as u64 + scratch;
        self.touched.max(end).min(self.counted)
    }
}

impl Deref for Buffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let spare = Spare {
            touched: self.written(ZSTD_SCRATCH),
            bytes: std::mem::take(&mut self.bytes),
        };
        self.budget.keep_buffer(spare, self.counted);
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes)", self.bytes.len())
    }
}

/// An encoder from the budget, kept by it for reuse when dropped if it holds state.
pub struct Lent {
    budget: Budget,
    encoder: Option<Encoder>,
    counted: u64,
}

impl Deref for Lent {
    type Target = Encoder;
    fn deref(&self) -> &Encoder {
        self.encoder
            .as_ref()
            .expect("an encoder is held until dropped")
    }
}

impl DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut Encoder {
        self.encoder
            .as_mut()
            .expect("an encoder is held until dropped")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(encoder) = self.encoder.take() {
            self.budget.keep_encoder(encoder, self.counted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ZSTD: Recipe = Recipe {
        algorithm: Algorithm::Zstd,
        level: 3,
        block_size: BLOCK_SIZE,
    };

    fn block_cost(input: u64) -> u64 {
        input + frame_bound(input) + ZSTD_STATE
    }

    /// Compresses the block as a compression thread does.
    fn compress(mut memory: BlockMemory) -> Buffer {
        let room = memory.frame.counted() as usize;
        ZSTD.encode_into(
            &memory.input,
            &mut memory.frame,
            room,
            &mut memory.encoder,
            None,
        )
        .unwrap();
        memory.frame.settle(ZSTD_SCRATCH);
        memory.frame
    }

    #[test]
    fn what_a_block_gives_back_is_kept_and_reused() {
        let budget = Budget::new(10 * PER_BLOCK);
        let first = budget.block(ZSTD, 1000, u64::MAX, false).unwrap();
        let input_at = first.input.as_ptr();
        assert_eq!(first.input.len(), 1000);
        assert_eq!(budget.used(), block_cost(1000));
        drop(compress(first));
        assert_eq!(budget.in_blocks(), 0);
        let kept = budget.used();
        assert!(
            kept > ZSTD_STATE,
            "the buffers and the context are kept: {kept}"
        );
        let second = budget.block(ZSTD, 900, u64::MAX, false).unwrap();
        assert_eq!(
            second.input.as_ptr(),
            input_at,
            "the input buffer is reused"
        );
        assert_eq!(second.input.len(), 900);
        assert!(second.frame.is_empty());
        assert!(second.encoder.suits(ZSTD), "the context is reused");
        assert_eq!(budget.used(), kept, "nothing new was taken");
    }

    #[test]
    fn a_frame_is_counted_at_its_size_once_compressed() {
        let budget = Budget::new(10 * PER_BLOCK);
        let memory = budget.block(ZSTD, BLOCK_SIZE, u64::MAX, false).unwrap();
        assert_eq!(budget.used(), block_cost(BLOCK_SIZE));
        let frame = compress(memory);
        // Zeros compress to a few bytes: the frame keeps those and the scratch margin.
        let counted = frame.len() as u64 + ZSTD_SCRATCH;
        assert_eq!(budget.in_blocks(), counted);
        assert_eq!(budget.used(), BLOCK_SIZE + counted + ZSTD_STATE);
        drop(frame);
        assert_eq!(budget.in_blocks(), 0);
    }

    #[test]
    fn a_frame_given_less_room_is_counted_at_that_room() {
        let gzip = Recipe::of(Algorithm::Gzip);
        let budget = Budget::new(10 * PER_BLOCK);
        let memory = budget.block(gzip, BLOCK_SIZE, 1 << 20, false).unwrap();
        assert_eq!(memory.frame.counted(), 1 << 20);
        assert!(memory.frame.capacity() as u64 >= frame_bound(BLOCK_SIZE));
        assert_eq!(budget.used(), BLOCK_SIZE + (1 << 20) + GZIP_STATE);
    }

    #[test]
    fn kept_memory_is_freed_to_make_room_for_a_block_that_cannot_reuse_it() {
        let budget = Budget::new(block_cost(1 << 20) + 100);
        drop(compress(budget.block(ZSTD, 1000, u64::MAX, false).unwrap()));
        let large = budget
            .block(ZSTD, 1 << 20, u64::MAX, false)
            .expect("made room");
        assert!(budget.used() <= block_cost(1 << 20));
        assert!(
            budget.block(ZSTD, 1000, u64::MAX, false).is_none(),
            "no room now"
        );
        drop(large);
    }

    #[test]
    fn a_block_larger_than_the_budget_goes_when_nothing_else_is_out() {
        let budget = Budget::new(100);
        let whole = budget.block(ZSTD, 500, u64::MAX, false).unwrap();
        assert!(budget.block(ZSTD, 1, u64::MAX, false).is_none());
        drop(whole);
        assert_eq!(budget.in_blocks(), 0);
        assert!(budget.block(ZSTD, 500, u64::MAX, false).is_some());
    }

    #[test]
    fn a_waiting_block_goes_on_when_memory_is_given_back() {
        let budget = Budget::new(block_cost(1000) + 10);
        let held = budget.block(ZSTD, 1000, u64::MAX, false).unwrap();
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || {
                budget
                    .block(ZSTD, 1000, u64::MAX, true)
                    .map(|m| m.input.len())
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "waits while the memory is out");
        drop(held);
        assert_eq!(waiter.join().unwrap(), Some(1000));
    }

    #[test]
    fn the_block_budget_follows_the_limit() {
        assert_eq!(for_blocks(DEFAULT_LIMIT), DEFAULT_LIMIT - PROCESS_RESERVE);
        assert_eq!(for_blocks(MIN_LIMIT), PER_BLOCK);
        assert_eq!(for_blocks(1), PER_BLOCK);
        const { assert!(MIN_LIMIT <= 20 << 20, "the documented minimum is 20M") };
    }
}
