//! The worker pool: a fixed set of blocking threads taking tasks from a priority channel,
//! with a permit gate between them and the work so the monitor can change how many run at
//! once without stopping or starting threads.
//!
//! Tasks are ordered by size, largest first, so the longest transfer starts first and
//! nothing big straggles at the end. On top of the gate's overall limit, each size class
//! can have its own cap (`--small-file-concurrent`, `--large-file-concurrent`): a worker
//! whose next task would exceed its class's cap takes the largest task of a class that
//! still has room instead, and waits only when no queued task fits.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};

/// Blobs under this size are "small" (`--small-file-concurrent`).
pub const SMALL_BELOW: u64 = 100 << 20;
/// Blobs over this size are "large" (`--large-file-concurrent`).
pub const LARGE_ABOVE: u64 = 1 << 30;

/// Small blobs cost mostly round trips (HEAD, POST, PUT), so they gain from running many
/// at once; large ones cost bandwidth and disk reads, and each one in flight is work at
/// risk when the link drops. The classes let a user cap each kind separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeClass {
    Small,
    Medium,
    Large,
}

impl SizeClass {
    pub const ALL: [SizeClass; 3] = [SizeClass::Small, SizeClass::Medium, SizeClass::Large];

    pub fn of(size: u64) -> SizeClass {
        if size < SMALL_BELOW {
            SizeClass::Small
        } else if size > LARGE_ABOVE {
            SizeClass::Large
        } else {
            SizeClass::Medium
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            SizeClass::Small => "small (<100 MiB)",
            SizeClass::Medium => "medium",
            SizeClass::Large => "large (>1 GiB)",
        }
    }
}

/// How many tasks of a size class may run at once, within the gate's overall limit.
/// `None` means only the overall limit applies. Medium blobs have no cap of their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCaps {
    pub small: Option<usize>,
    pub large: Option<usize>,
}

impl ClassCaps {
    fn as_array(self) -> [usize; 3] {
        let cap = |c: Option<usize>| c.map_or(usize::MAX, |n| n.max(1));
        [cap(self.small), usize::MAX, cap(self.large)]
    }
}

/// (priority, higher first; sending order) -> (size, task).
type Queue<T> = BTreeMap<(Reverse<u64>, u64), (u64, T)>;

/// A multi-producer multi-consumer channel that hands out the largest task first.
/// Crossbeam carries one ticket per task (blocking, wake-ups and disconnection come from
/// it); the ordered map decides which task a ticket buys, so a worker can pass over tasks
/// whose size class is at its cap.
pub struct PriorityChannel<T> {
    queue: Mutex<Queue<T>>,
    tickets: Receiver<()>,
    sender: Mutex<Option<Sender<()>>>,
    sequence: AtomicU64,
}

impl<T> Default for PriorityChannel<T> {
    fn default() -> Self {
        let (sender, tickets) = crossbeam_channel::unbounded();
        PriorityChannel {
            queue: Mutex::new(BTreeMap::new()),
            tickets,
            sender: Mutex::new(Some(sender)),
            sequence: AtomicU64::new(0),
        }
    }
}

impl<T> PriorityChannel<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self) -> MutexGuard<'_, Queue<T>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a task of `size` bytes; larger tasks run first, equal ones in sending order.
    /// Returns false after `close`.
    pub fn send(&self, size: u64, task: T) -> bool {
        self.send_with_priority(size, size, task)
    }

    /// Queues a task of `size` bytes (for the size-class caps) that runs before tasks of
    /// lower `priority`.
    pub fn send_with_priority(&self, priority: u64, size: u64, task: T) -> bool {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = sender.as_ref() else {
            return false;
        };
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        self.queue()
            .insert((Reverse(priority), sequence), (size, task));
        sender.send(()).is_ok()
    }

    /// No more tasks will come: receivers drain what is queued, then get `None`.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Blocks until a task is available (largest first) or the channel is closed and empty.
    #[cfg(test)]
    pub fn recv(&self) -> Option<T> {
        if !self.reserve() {
            return None;
        }
        self.take_first(|_| true).map(|(_, task)| task)
    }

    /// Blocks until one queued task is set aside for the caller (true), or the channel is
    /// closed and empty (false). Every reservation is matched by one `take_first`.
    fn reserve(&self) -> bool {
        self.tickets.recv().is_ok()
    }

    /// Removes the first task (by priority) whose size `admit` accepts.
    fn take_first(&self, admit: impl Fn(u64) -> bool) -> Option<(u64, T)> {
        let mut queue = self.queue();
        let key = *queue
            .iter()
            .find(|(_, (size, _))| admit(*size))
            .map(|(key, _)| key)?;
        queue.remove(&key)
    }

    /// Tasks queued and not yet taken by a worker.
    pub fn len(&self) -> usize {
        self.queue().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every queued task (used when the run is cancelled).
    pub fn drain(&self) {
        while self.tickets.try_recv().is_ok() {}
        self.queue().clear();
    }
}

/// Limits how many workers run at once. The limit can change at any time: lowering it
/// lets running tasks finish (nothing is aborted), raising it wakes waiting workers at once.
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Clone, Copy)]
struct GateState {
    /// Permits held: workers running a task or about to take one.
    held: usize,
    limit: usize,
    /// Tasks running, per size class.
    running: [usize; 3],
    caps: [usize; 3],
}

impl GateState {
    fn has_room(&self, class: SizeClass) -> bool {
        self.running[class.index()] < self.caps[class.index()]
    }
}

impl Gate {
    pub fn new(limit: usize) -> Gate {
        Gate::with_caps(limit, ClassCaps::default())
    }

    pub fn with_caps(limit: usize, caps: ClassCaps) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                held: 0,
                limit: limit.max(1),
                running: [0; 3],
                caps: caps.as_array(),
            }),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn acquire(&self) -> Permit<'_> {
        let mut state = self.state();
        while state.held >= state.limit {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.held += 1;
        Permit {
            gate: self,
            class: None,
        }
    }

    /// With a permit and a reservation in hand, takes the largest queued task whose size
    /// class has room, waiting while none has. `None` when the queue was drained meanwhile.
    /// `taken` runs under the gate's lock, so for any two tasks it runs in the order they
    /// were taken.
    fn admit<T>(
        &self,
        permit: &mut Permit<'_>,
        queue: &PriorityChannel<T>,
        taken: &dyn Fn(&T),
    ) -> Option<T> {
        let mut state = self.state();
        loop {
            let next = queue.take_first(|size| state.has_room(SizeClass::of(size)));
            if let Some((size, task)) = next {
                let class = SizeClass::of(size);
                state.running[class.index()] += 1;
                permit.class = Some(class);
                taken(&task);
                return Some(task);
            }
            if queue.is_empty() {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub fn set_limit(&self, limit: usize) {
        let mut state = self.state();
        state.limit = limit.max(1);
        self.changed.notify_all();
    }

    pub fn limit(&self) -> usize {
        self.state().limit
    }

    /// Permits held (workers running a task or waiting for a size-class slot).
    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.state().held
    }

    /// Tasks running right now.
    pub fn running(&self) -> usize {
        self.state().running.iter().sum()
    }
}

pub struct Permit<'a> {
    gate: &'a Gate,
    class: Option<SizeClass>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.state();
        state.held -= 1;
        if let Some(class) = self.class {
            state.running[class.index()] -= 1;
        }
        self.gate.changed.notify_all();
    }
}

/// Runs every queued task on `workers` threads, at most `gate.limit()` at a time (and
/// within the gate's size-class caps), and returns the results in completion order. After
/// `work` reports a fatal result (`stop` returns true), queued tasks are dropped; running
/// ones finish.
pub fn run_pool<T: Send, R: Send>(
    workers: usize,
    gate: &Gate,
    queue: &PriorityChannel<T>,
    work: &(dyn Fn(T) -> R + Sync),
    stop: &(dyn Fn(&R) -> bool + Sync),
) -> Vec<R> {
    let ignore = |_: &T| {};
    run_pool_in_order(workers, gate, queue, (&ignore, &ignore), work, stop)
}

/// Told of a task by the pool (see [`run_pool_in_order`]).
pub type TaskHook<'a, T> = dyn Fn(&T) + Sync + 'a;

/// As [`run_pool`], with `taken.0` told of each task as it leaves the queue, in queue
/// order even when workers race: what a task must claim before a later one starts (its
/// place in a stream read front to back) is claimed there, not when its worker gets to it.
/// `taken.1` is told of a task taken but then not run because the pool stopped, so its
/// claim can be let go.
pub fn run_pool_in_order<T: Send, R: Send>(
    workers: usize,
    gate: &Gate,
    queue: &PriorityChannel<T>,
    taken: (&TaskHook<'_, T>, &TaskHook<'_, T>),
    work: &(dyn Fn(T) -> R + Sync),
    stop: &(dyn Fn(&R) -> bool + Sync),
) -> Vec<R> {
    queue.close();
    let results = Mutex::new(Vec::new());
    let stopped = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let mut permit = gate.acquire();
                    if stopped.load(Ordering::Relaxed) || !queue.reserve() {
                        break;
                    }
                    let Some(task) = gate.admit(&mut permit, queue, taken.0) else {
                        break;
                    };
                    if stopped.load(Ordering::Relaxed) {
                        (taken.1)(&task);
                        break;
                    }
                    let result = work(task);
                    if stop(&result) {
                        stopped.store(true, Ordering::Relaxed);
                        queue.drain();
                    }
                    // Released after the drain, so workers waiting for a size-class slot
                    // wake to an empty queue and leave.
                    drop(permit);
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(result);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn tasks_are_told_taken_in_queue_order_however_workers_race() {
        let queue = PriorityChannel::new();
        for task in 0..200u64 {
            queue.send_with_priority(u64::MAX - task, 1, task);
        }
        let gate = Gate::new(8);
        let taken = Mutex::new(Vec::new());
        let record = |task: &u64| taken.lock().unwrap().push(*task);
        let work = |task: u64| std::thread::sleep(Duration::from_micros(task % 7 * 50));
        run_pool_in_order(8, &gate, &queue, (&record, &|_| {}), &work, &|_| false);
        assert_eq!(taken.into_inner().unwrap(), (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn largest_first_then_in_sending_order() {
        let channel = PriorityChannel::new();
        for (size, name) in [(1, "small"), (100, "big"), (50, "mid"), (100, "big2")] {
            channel.send(size, name);
        }
        channel.close();
        let order: Vec<_> = std::iter::from_fn(|| channel.recv()).collect();
        assert_eq!(order, vec!["big", "big2", "mid", "small"]);
    }

    #[test]
    fn size_classes_follow_the_documented_bounds() {
        assert_eq!(SizeClass::of(0), SizeClass::Small);
        assert_eq!(SizeClass::of(100 * MIB - 1), SizeClass::Small);
        assert_eq!(SizeClass::of(100 * MIB), SizeClass::Medium);
        assert_eq!(SizeClass::of(GIB), SizeClass::Medium);
        assert_eq!(SizeClass::of(GIB + 1), SizeClass::Large);
    }

    #[test]
    fn gate_limits_concurrency_and_can_grow() {
        let (finished, peak) = run_brief_tasks(4, &Gate::new(2), 12);
        assert_eq!(finished, 12);
        assert!(peak <= 2);
    }

    /// Runs `count` short tasks on `workers` workers; returns how many finished and the
    /// most that ran at once.
    fn run_brief_tasks(workers: usize, gate: &Gate, count: u64) -> (usize, usize) {
        let queue = PriorityChannel::new();
        for i in 0..count {
            queue.send(i, i);
        }
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let results = run_pool(
            workers,
            gate,
            &queue,
            &|_| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                running.fetch_sub(1, Ordering::SeqCst);
            },
            &|_| false,
        );
        (results.len(), peak.into_inner())
    }

    #[test]
    fn a_capped_class_lets_smaller_tasks_past_and_never_exceeds_its_cap() {
        // One large slot: the second large blob must wait, and the medium and small ones
        // behind it run in the meantime.
        let gate = Gate::with_caps(
            3,
            ClassCaps {
                small: None,
                large: Some(1),
            },
        );
        let queue = PriorityChannel::new();
        let tasks = [
            ("large-a", 3 * GIB),
            ("large-b", 2 * GIB),
            ("medium", 200 * MIB),
            ("small", MIB),
        ];
        for (name, size) in tasks {
            queue.send(size, (name, size));
        }
        let large_running = AtomicUsize::new(0);
        let large_peak = AtomicUsize::new(0);
        let started = Mutex::new(Vec::new());
        run_pool(
            3,
            &gate,
            &queue,
            &|(name, size): (&str, u64)| {
                started.lock().unwrap().push(name);
                if SizeClass::of(size) == SizeClass::Large {
                    let now = large_running.fetch_add(1, Ordering::SeqCst) + 1;
                    large_peak.fetch_max(now, Ordering::SeqCst);
                    // Long enough that the other workers pick their tasks meanwhile.
                    std::thread::sleep(Duration::from_millis(100));
                    large_running.fetch_sub(1, Ordering::SeqCst);
                }
            },
            &|_| false,
        );
        let started = started.into_inner().unwrap();
        assert_eq!(large_peak.load(Ordering::SeqCst), 1);
        assert_eq!(started.len(), 4);
        assert_eq!(started[3], "large-b", "order: {started:?}");
    }

    #[test]
    fn small_cap_holds_even_when_the_gate_allows_more() {
        let gate = Gate::with_caps(
            8,
            ClassCaps {
                small: Some(2),
                large: None,
            },
        );
        let (finished, peak) = run_brief_tasks(8, &gate, 10);
        assert_eq!(finished, 10);
        assert_eq!(peak, 2);
    }

    #[test]
    fn stop_drops_queued_tasks() {
        let gate = Gate::new(1);
        let queue = PriorityChannel::new();
        for i in 0..10u64 {
            queue.send(100 - i, i);
        }
        let results = run_pool(1, &gate, &queue, &|task| task, &|r| *r == 2);
        assert_eq!(results, vec![0, 1, 2]);
    }

    #[test]
    fn stop_releases_workers_waiting_for_a_class_slot() {
        // Two large tasks, a cap of one: the second worker waits for the slot, and the
        // first task's failure must end the run rather than leave that worker waiting.
        let gate = Gate::with_caps(
            2,
            ClassCaps {
                small: None,
                large: Some(1),
            },
        );
        let queue = PriorityChannel::new();
        queue.send(3 * GIB, "first");
        queue.send(2 * GIB, "second");
        let results = run_pool(
            2,
            &gate,
            &queue,
            &|task| {
                std::thread::sleep(Duration::from_millis(30));
                task
            },
            &|r| *r == "first",
        );
        assert_eq!(results, vec!["first"]);
        assert_eq!(gate.active(), 0);
        assert_eq!(gate.running(), 0);
    }

    #[test]
    fn raising_the_limit_wakes_waiting_workers() {
        let gate = Gate::new(1);
        let first = gate.acquire();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                let _second = gate.acquire();
            });
            std::thread::sleep(Duration::from_millis(20));
            gate.set_limit(2);
            waiter.join().unwrap();
        });
        drop(first);
        assert_eq!(gate.active(), 0);
    }

    #[test]
    fn lowering_the_limit_lets_running_tasks_finish() {
        let gate = Gate::new(2);
        let a = gate.acquire();
        let b = gate.acquire();
        gate.set_limit(1);
        assert_eq!(gate.active(), 2);
        drop(a);
        drop(b);
        let _c = gate.acquire();
        assert_eq!(gate.active(), 1);
    }
}
